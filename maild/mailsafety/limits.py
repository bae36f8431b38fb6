"""Limits on automatic mail: the last line against loops, and suppression after bounces.

RFC 3834 headers stop polite autoresponders. An impolite one (no headers, a new subject
every time) would open a ticket per message and get an acknowledgement each time; windowed
limits per recipient, per ticket and in total stop that, and hitting one is an event on the
ticket. An address that failed permanently gets no automatic mail for a while.

This module decides; the counts it decides on come from the ticket store
(`maild.store.automail` counts what the outbox holds, a batch adds what it queued itself).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from maild.settings import SafetySettings, WindowLimit

# survey: the satisfaction survey (maild/csat/); wish_notice: a customer told that what
# they asked for is done (maild/wishes/).
AUTOMATIC_KINDS = ("acknowledgement", "answer", "survey", "wish_notice")


@dataclass(frozen=True)
class AutomaticSent:
    """Automatic mail already sent or queued, one count per window of each limit (in the
    order of the settings' lists). `per_ticket` is None for a ticket opened just now: it
    has sent nothing."""

    per_recipient: tuple[int, ...]
    per_ticket: tuple[int, ...] | None
    total: tuple[int, ...]


def blocked(safety: SafetySettings, address: str, suppressed: tuple[datetime, str] | None,
            sent: AutomaticSent, now: datetime) -> str | None:
    """Why automatic mail to `address` must not be sent now, or None."""
    if suppressed is not None and suppressed[0] > now:
        return f"{address} is suppressed until {suppressed[0].isoformat()}: {suppressed[1]}"
    checks: list[tuple[str, list[WindowLimit], tuple[int, ...] | None]] = [
        ("per recipient", safety.per_recipient, sent.per_recipient),
        ("per ticket", safety.per_ticket, sent.per_ticket),
        ("in total", safety.total, sent.total),
    ]
    for label, limits, counts in checks:
        if counts is None:
            continue
        for limit, count in zip(limits, counts, strict=True):
            if count >= limit.max:
                return (f"limit {label} reached: {count} automatic messages within "
                        f"{int(limit.window)} s (max {limit.max})")
    return None
