"""Limits on automatic mail: the last line against loops, and suppression after bounces.

RFC 3834 headers stop polite autoresponders. An impolite one (no headers, a new subject
every time) would open a ticket per message and get an acknowledgement each time; windowed
limits per recipient, per ticket and in total stop that, and hitting one is an event on the
ticket. An address that failed permanently gets no automatic mail for a while.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.orm import Session

from maild.settings import SafetySettings, WindowLimit
from maild.store import pending
from maild.store.models import Outbox, Suppression
from maild.store.repo import read

AUTOMATIC_KINDS = ("acknowledgement", "answer")


_SUPPRESSED = select(Suppression.until, Suppression.reason).where(
    Suppression.address == bindparam("address"))


@dataclass(frozen=True)
class AutoLimiter:
    safety: SafetySettings

    def blocked(self, session: Session, ticket_id: int, address: str,
                now: datetime, *, new_ticket: bool = False) -> str | None:
        """Why automatic mail to `address` must not be sent now, or None.

        Every count is an index range scan (outbox: rcpt_to, ticket_id or kind with
        created_at). A ticket opened in this transaction has sent nothing yet.
        """
        address = address.lower()
        noted = pending.of(session)
        suppressed = read(session, _SUPPRESSED, {"address": address}).first()
        if suppressed is not None and suppressed.until > now:
            return (f"{address} is suppressed until {suppressed.until.isoformat()}: "
                    f"{suppressed.reason}")
        # What this batch queued (noted, not flushed) is all "now": inside every window.
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
            if key is None and noted is not None:
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

    @cached_property
    def _statements(self) -> dict[str, tuple[list[WindowLimit], Select[*tuple[Any, ...]]]]:
        """Per check, its limits and one statement counting automatic mail in each limit's
        window (one index range scan), built once: only the times and the key change."""
        checks = {"per recipient": (self.safety.per_recipient, Outbox.rcpt_to),
                  "per ticket": (self.safety.per_ticket, Outbox.ticket_id),
                  "in total": (self.safety.total, None)}
        statements: dict[str, tuple[list[WindowLimit], Select[*tuple[Any, ...]]]] = {}
        for label, (limits, column) in checks.items():
            query = select(*(func.count().filter(Outbox.created_at > bindparam(f"since{i}"))
                             for i in range(len(limits)))).select_from(Outbox).where(
                Outbox.kind.in_(AUTOMATIC_KINDS), Outbox.created_at > bindparam("oldest"))
            if column is not None:
                query = query.where(column == bindparam("key"))
            statements[label] = (limits, query)
        return statements

    def _counts(self, session: Session, label: str, key: str | int | None,
                now: datetime) -> list[int]:
        limits, statement = self._statements[label]
        params: dict[str, object] = {
            f"since{i}": now - timedelta(seconds=limit.window) for i, limit in enumerate(limits)}
        params["oldest"] = now - timedelta(seconds=max(limit.window for limit in limits))
        if key is not None:
            params["key"] = key
        return [int(count or 0) for count in read(session, statement, params).one()]

    def suppress(self, session: Session, address: str, reason: str, now: datetime) -> None:
        if self.safety.suppress_days <= 0:
            return
        until = now + timedelta(days=self.safety.suppress_days)
        row = session.get(Suppression, address.lower())
        if row is None:
            session.add(Suppression(address=address.lower(), until=until, reason=reason[:500],
                                    created_at=now))
        else:
            row.until, row.reason = until, reason[:500]
