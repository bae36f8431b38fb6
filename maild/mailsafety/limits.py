"""Limits on automatic mail: the last line against loops, and suppression after bounces.

RFC 3834 headers stop polite autoresponders. An impolite one (no headers, a new subject
every time) would open a ticket per message and get an acknowledgement each time; windowed
limits per recipient, per ticket and in total stop that, and hitting one is an event on the
ticket. An address that failed permanently gets no automatic mail for a while.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from maild.settings import SafetySettings, WindowLimit
from maild.store import pending
from maild.store.models import Outbox, Suppression
from maild.store.repo import read

AUTOMATIC_KINDS = ("acknowledgement", "answer")


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
        suppressed = read(session, select(Suppression.until, Suppression.reason).where(
            Suppression.address == address)).first()
        if suppressed is not None and suppressed.until > now:
            return (f"{address} is suppressed until {suppressed.until.isoformat()}: "
                    f"{suppressed.reason}")
        # What this batch queued (noted, not flushed) is all "now": inside every window.
        checks: list[tuple[str, list[WindowLimit], ColumnElement[bool] | None, int]] = [
            ("per recipient", self.safety.per_recipient, Outbox.rcpt_to == address,
             noted.automatic_to[address] if noted else 0),
            ("in total", self.safety.total, None, noted.automatic_total if noted else 0),
        ]
        if not new_ticket:
            checks.insert(1, ("per ticket", self.safety.per_ticket,
                              Outbox.ticket_id == ticket_id,
                              noted.automatic_for[ticket_id] if noted else 0))
        for label, limits, condition, queued in checks:
            if not limits:
                continue
            if condition is None and noted is not None:
                # The same for every message of a batch: counted once (what the batch
                # adds is in `queued`).
                if noted.total_counts is None:
                    noted.total_counts = self._counts(session, limits, condition, now)
                counts = noted.total_counts
            else:
                counts = self._counts(session, limits, condition, now)
            for limit, count in zip(limits, counts, strict=True):
                sent = count + queued
                if sent >= limit.max:
                    return (f"limit {label} reached: {sent} automatic messages within "
                            f"{int(limit.window)} s (max {limit.max})")
        return None

    @staticmethod
    def _counts(session: Session, limits: list[WindowLimit],
                condition: ColumnElement[bool] | None, now: datetime) -> list[int]:
        """Automatic mail in each limit's window, in one index range scan."""
        oldest = now - timedelta(seconds=max(limit.window for limit in limits))
        query = select(*(
            func.count().filter(Outbox.created_at > now - timedelta(seconds=limit.window))
            for limit in limits
        )).select_from(Outbox).where(Outbox.kind.in_(AUTOMATIC_KINDS),
                                     Outbox.created_at > oldest)
        if condition is not None:
            query = query.where(condition)
        return [int(count or 0) for count in read(session, query).one()]

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
