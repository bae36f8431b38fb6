"""Limits on automatic mail: the last line against loops, and suppression after bounces.

RFC 3834 headers stop polite autoresponders. An impolite one (no headers, a new subject
every time) would open a ticket per message and get an acknowledgement each time; windowed
limits per recipient, per ticket and in total stop that, and hitting one is an event on the
ticket. An address that failed permanently gets no automatic mail for a while.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from sqlalchemy import Select, and_, bindparam, func, select
from sqlalchemy.orm import Session

from maild.settings import SafetySettings, WindowLimit
from maild.store import pending
from maild.store.models import Outbox, Suppression
from maild.store.repo import read

AUTOMATIC_KINDS = ("acknowledgement", "answer")


_SUPPRESSED = select(Suppression.address, Suppression.until, Suppression.reason).where(
    Suppression.address.in_(bindparam("addresses", expanding=True)))


def _counting(limits: list[WindowLimit], *, keyed: bool) -> Select[*tuple[Any, ...]]:
    """Automatic mail in each limit's window (one index range scan).

    Counted for a recipient or a ticket (`keyed`), the kind is tested in the count, not in
    WHERE: given a kind in WHERE and a long list of recipients, SQLite chose the index on
    kind and read every automatic mail of the window instead of the recipients' own.
    """
    automatic = Outbox.kind.in_(AUTOMATIC_KINDS)
    windows = [Outbox.created_at > bindparam(f"since{i}") for i in range(len(limits))]
    counts = [func.count().filter(and_(automatic, w) if keyed else w) for w in windows]
    query = select(*counts).select_from(Outbox).where(Outbox.created_at > bindparam("oldest"))
    return query if keyed else query.where(automatic)


@dataclass(frozen=True)
class AutoLimiter:
    safety: SafetySettings

    def blocked(self, session: Session, ticket_id: int, address: str,
                now: datetime, *, new_ticket: bool = False) -> str | None:
        """Why automatic mail to `address` must not be sent now, or None.

        Every count is an index range scan (outbox: rcpt_to, ticket_id or kind with
        created_at). While a batch keeps notes, a recipient's counts and the total are read
        once, the first time the batch asks (before it queued anything for them), and what
        the batch queued since is added from the notes. A ticket opened in this
        transaction has sent nothing yet.
        """
        address = address.lower()
        noted = pending.of(session)
        if noted is not None:
            self.read_ahead(session, [address], now)  # nothing to do if read for the group
            suppressed = noted.ahead.suppressed[address]
        else:
            suppressed = self._suppressed(session, [address])[address]
        if suppressed is not None and suppressed[0] > now:
            return f"{address} is suppressed until {suppressed[0].isoformat()}: {suppressed[1]}"
        # What this batch queued (noted, not counted above) is all "now": inside every window.
        checks: list[tuple[str, str | int | None, int]] = [
            ("per recipient", address, noted.automatic_to[address] if noted else 0),
            ("in total", None, noted.automatic_total if noted else 0),
        ]
        if not new_ticket:
            checks.insert(1, ("per ticket", ticket_id,
                              noted.automatic_for[ticket_id] if noted else 0))
        for label, key, queued in checks:
            limits = self._statements[label][0]
            if not limits:
                continue
            if noted is not None and key == address and address in noted.ahead.automatic_to:
                counts = noted.ahead.automatic_to[address]
            elif key is None and noted is not None:
                # The same for every message of a batch: counted once (what the batch
                # adds is in `queued`).
                if noted.total_counts is None:
                    noted.total_counts = self._counts(session, label, key, now)
                counts = noted.total_counts
            else:
                counts = self._counts(session, label, key, now)
            for limit, count in zip(limits, counts, strict=True):
                sent = count + queued
                if sent >= limit.max:
                    return (f"limit {label} reached: {sent} automatic messages within "
                            f"{int(limit.window)} s (max {limit.max})")
        return None

    def read_ahead(self, session: Session, recipients: Sequence[str], now: datetime) -> None:
        """Suppressions and the counts per recipient of a group of messages, in two queries
        (kept in the batch's notes for `blocked`), instead of two a message. A recipient
        read before is not read again: the batch may have queued mail for them since,
        which the notes count."""
        noted = pending.of(session)
        if noted is None:
            return
        ahead = noted.ahead
        wanted = [a for a in dict.fromkeys(r.lower() for r in recipients)
                  if a not in ahead.suppressed]
        if not wanted:
            return
        ahead.suppressed.update(self._suppressed(session, wanted))
        limits = self.safety.per_recipient
        if not limits:
            return
        params = self._params(limits, now)
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            ahead.automatic_to.update((a, [0] * len(limits)) for a in chunk)
            rows = read(session, self._per_recipients, {**params, "keys": chunk})
            for *counts, rcpt in rows:
                ahead.automatic_to[rcpt] = [int(c or 0) for c in counts]

    def _suppressed(self, session: Session, addresses: list[str]
                    ) -> dict[str, tuple[datetime, str] | None]:
        found: dict[str, tuple[datetime, str] | None] = dict.fromkeys(addresses)
        for start in range(0, len(addresses), 500):
            rows = read(session, _SUPPRESSED, {"addresses": addresses[start:start + 500]})
            found.update((a, (until, reason)) for a, until, reason in rows)
        return found

    @cached_property
    def _statements(self) -> dict[str, tuple[list[WindowLimit], Select[*tuple[Any, ...]]]]:
        """Per check, its limits and one statement counting automatic mail in each limit's
        window (one index range scan), built once: only the times and the key change."""
        checks = {"per recipient": (self.safety.per_recipient, Outbox.rcpt_to),
                  "per ticket": (self.safety.per_ticket, Outbox.ticket_id),
                  "in total": (self.safety.total, None)}
        statements: dict[str, tuple[list[WindowLimit], Select[*tuple[Any, ...]]]] = {}
        for label, (limits, column) in checks.items():
            query = _counting(limits, keyed=column is not None)
            if column is not None:
                query = query.where(column == bindparam("key"))
            statements[label] = (limits, query)
        return statements

    @cached_property
    def _per_recipients(self) -> Select[*tuple[Any, ...]]:
        """The per-recipient counts of many recipients at once, one row for each that has
        any (the read-ahead)."""
        return _counting(self.safety.per_recipient, keyed=True).add_columns(Outbox.rcpt_to).where(
            Outbox.rcpt_to.in_(bindparam("keys", expanding=True))).group_by(Outbox.rcpt_to)

    @staticmethod
    def _params(limits: list[WindowLimit], now: datetime) -> dict[str, object]:
        """The start of each limit's window, and of the longest."""
        params: dict[str, object] = {
            f"since{i}": now - timedelta(seconds=limit.window) for i, limit in enumerate(limits)}
        params["oldest"] = now - timedelta(seconds=max(limit.window for limit in limits))
        return params

    def _counts(self, session: Session, label: str, key: str | int | None,
                now: datetime) -> list[int]:
        limits, statement = self._statements[label]
        params = self._params(limits, now)
        if key is not None:
            params["key"] = key
        return [int(count or 0) for count in read(session, statement, params).one()]

    def suppress(self, session: Session, address: str, reason: str, now: datetime) -> None:
        if self.safety.suppress_days <= 0:
            return
        address = address.lower()
        until = now + timedelta(days=self.safety.suppress_days)
        row = session.get(Suppression, address)
        if row is None:
            session.add(Suppression(address=address, until=until, reason=reason[:500],
                                    created_at=now))
        else:
            row.until, row.reason = until, reason[:500]
        noted = pending.of(session)
        if noted is not None:  # later messages of this batch see it before it is written
            noted.ahead.suppressed[address] = (until, reason[:500])
