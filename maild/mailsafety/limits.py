"""Limits on automatic mail: the last line against loops, and suppression after bounces.

RFC 3834 headers stop polite autoresponders. An impolite one (no headers, a new subject
every time) would open a ticket per message and get an acknowledgement each time; windowed
limits per recipient, per ticket and in total stop that, and hitting one is an event on the
ticket. An address that failed permanently gets no automatic mail for a while.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from maild.settings import SafetySettings
from maild.store.models import Outbox, Suppression

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
        suppressed = session.get(Suppression, address)
        if suppressed is not None and suppressed.until > now:
            return (f"{address} is suppressed until {suppressed.until.isoformat()}: "
                    f"{suppressed.reason}")
        checks = [
            ("per recipient", self.safety.per_recipient, Outbox.rcpt_to == address),
            ("in total", self.safety.total, None),
        ]
        if not new_ticket:
            checks.insert(1, ("per ticket", self.safety.per_ticket,
                              Outbox.ticket_id == ticket_id))
        for label, limits, condition in checks:
            for limit in limits:
                query = select(func.count()).select_from(Outbox).where(
                    Outbox.kind.in_(AUTOMATIC_KINDS),
                    Outbox.created_at > now - timedelta(seconds=limit.window))
                if condition is not None:
                    query = query.where(condition)
                sent = session.scalar(query) or 0
                if sent >= limit.max:
                    return (f"limit {label} reached: {sent} automatic messages within "
                            f"{int(limit.window)} s (max {limit.max})")
        return None

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
