"""Stage 3: which ticket a message belongs to.

Our own signed Message-IDs first (among In-Reply-To and References), then In-Reply-To and
References from the newest back against every Message-ID maild has seen or sent, then the
verified body markers, then In-Reply-To, References and the message's own id against the
ids that customers' mail referred to without maild ever holding them (placeholders: two
replies to a parent maild never saw meet there; so does the parent itself when it arrives
late). Then the ticket reference in the subject, but only for a sender who already takes
part in that ticket: a subject alone is easy to forge, so a stranger gets a new ticket that
links to the old one and is flagged for an agent. Else a new ticket.

The decision is a pure function of the keys and what the database knew about them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from maild.domain import Inbound, ThreadDecision, ThreadedBy


def ref_pattern(prefix: str) -> re.Pattern[str]:
    """The ticket reference as it appears in subjects: `[T-K7QF2X]`."""
    return re.compile(r"\[\s*(" + re.escape(prefix) + r"-[A-Z0-9]{4,12})\s*\]", re.IGNORECASE)


def subject_ref(subject: str, pattern: re.Pattern[str]) -> str | None:
    found = pattern.search(subject)
    return found.group(1).upper() if found else None


def strip_ref(subject: str, pattern: re.Pattern[str]) -> str:
    return " ".join(pattern.sub(" ", subject).split())


def candidate_ids(inbound: Inbound) -> tuple[str, ...]:
    """The Message-IDs a reply may point at, most specific first."""
    ids = [*inbound.in_reply_to, *reversed(inbound.references)]
    own = inbound.message_id
    return tuple(i for i in dict.fromkeys(ids) if i != own)


@dataclass(frozen=True)
class RefTicket:
    """What the database knows about the ticket named in a subject."""

    ticket_id: int
    participants: frozenset[str]


def decide_thread(
    inbound: Inbound,
    known: Mapping[str, int],
    ref: str | None,
    ref_ticket: RefTicket | None,
    markers: tuple[str, ...] = (),
    *,
    referenced: Mapping[str, int] | None = None,
    ours: Callable[[str], bool] = lambda mid: False,
) -> ThreadDecision:
    """Decide the ticket of `inbound` from the ids and reference the database recognised.

    `markers` are the verified Message-IDs behind body markers (quoted text of our mail).
    `referenced`: ids that customers' mail of a ticket referred to without maild holding
    them (placeholders, as in JWZ's threading), tried after every id maild holds. `ours`
    tells our signed Message-IDs, which decide before anything a customer's mail says.
    """
    own = inbound.message_id
    header = [(mid, ThreadedBy.IN_REPLY_TO if i == 0 else ThreadedBy.REFERENCES)
              for i, mid in enumerate(inbound.in_reply_to)]
    header += [(mid, ThreadedBy.REFERENCES) for mid in reversed(inbound.references)]
    header = [(mid, by) for mid, by in header if mid != own]
    for mid, by in header:
        if mid in known and ours(mid):
            return ThreadDecision(ticket_id=known[mid], by=by, matched=mid)
    for mid, by in header:
        if mid in known:
            return ThreadDecision(ticket_id=known[mid], by=by, matched=mid)
    for mid in markers:
        if mid in known:
            return ThreadDecision(ticket_id=known[mid], by=ThreadedBy.MARKER, matched=mid)
    referenced = referenced or {}
    for mid in (*(m for m, _ in header), *((own,) if own else ())):
        if mid in referenced:
            return ThreadDecision(ticket_id=referenced[mid], by=ThreadedBy.PLACEHOLDER,
                                  matched=mid)
    if ref is not None and ref_ticket is not None:
        sender = inbound.sender.address if inbound.sender else ""
        if sender and sender in ref_ticket.participants:
            return ThreadDecision(
                ticket_id=ref_ticket.ticket_id, by=ThreadedBy.SUBJECT, matched=ref
            )
        return ThreadDecision(
            ticket_id=None, by=ThreadedBy.NEW, matched=ref,
            linked_ticket_id=ref_ticket.ticket_id, flags=("subject-ref-from-non-participant",),
        )
    return ThreadDecision(ticket_id=None, by=ThreadedBy.NEW)
