"""The write side of the transactional outbox: a decision to send mail becomes the rows of
a rendered, composed message.

The ticket service stores them (an outbound `Message` row and an `Outbox` row) in the same
transaction as the decision itself. Nothing is sent here: the sender drains the outbox.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from maild.domain import Address, OutboundDraft
from maild.outbound.compose import compose
from maild.outbound.ids import MessageIdFactory
from maild.outbound.render import MailContext, PersonView, Rendered, Templates, TicketView
from maild.store.models import Ticket

EXCERPT_CHARS = 2000


@dataclass(frozen=True)
class Outgoing:
    """What composing needs: templates, Message-ID factory and who we are."""

    templates: Templates
    ids: MessageIdFactory
    support: Address


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    text = text.strip()
    return text if len(text) <= limit else text[:limit].rstrip() + " [...]"


def context_for(ticket: Ticket, support: Address, customer: Address, body: str,
                draft: OutboundDraft | None = None) -> MailContext:
    return MailContext(
        ticket=TicketView(
            ref=ticket.ref, subject=ticket.subject, level=ticket.level,
            department=ticket.department, priority=ticket.priority, status=ticket.status,
        ),
        customer=PersonView(name=customer.name, address=customer.address,
                            verified=draft.sender_verified if draft else None),
        support=PersonView(name=support.name, address=support.address),
        message_excerpt=excerpt(body),
        headline=draft.headline if draft else "",
        text=draft.text if draft else "",
        author=draft.author if draft else "",
    )


@dataclass(frozen=True)
class Queued:
    """One mail to send, rendered and composed: its message row (the conversation's record,
    and the Message-ID that replies thread by) and its outbox row (the exact bytes)."""

    message: dict[str, Any]
    outbox: dict[str, Any]
    message_id: str


def compose_queued(ticket: Ticket, draft: OutboundDraft, out: Outgoing, *, at: datetime,
                   body: str, kind: str) -> Queued:
    """Render and compose one message for `ticket`; the ticket service stores the rows.

    Whatever the draft says, the sender address is the support address: staff addresses
    never reach a customer-facing header.
    """
    customer = Address(ticket.requester_name, ticket.requester)
    rendered = out.templates.render(
        draft.template, draft.language, context_for(ticket, out.support, customer, body, draft)
    )
    message_id = out.ids.new(at)
    if draft.direction == "outbound":
        # The body marker: lets a reply from a client that drops In-Reply-To and References
        # find its ticket, verifiably (it is the signed part of our Message-ID).
        token = message_id.partition("@")[0].removeprefix("maild.")
        rendered = Rendered(rendered.subject, rendered.body.rstrip("\n") + f"\n\n[maild:{token}]\n")
    sender = Address(draft.sender_name or out.support.name, out.support.address)
    extra = dict(draft.extra)
    if draft.reply_to:
        extra["Reply-To"] = draft.reply_to
    envelope = compose(
        rendered, sender=sender, to=draft.to, message_id=message_id,
        in_reply_to=draft.in_reply_to, references=draft.references, date=at,
        automatic=draft.automatic, extra_headers=extra, cc=draft.cc,
    )
    # A staff notification is not part of the conversation: its row is there for its
    # Message-ID (an agent's reply threads by it), and its text is kept once, in the exact
    # bytes of its outbox row.
    body_text = "" if draft.direction == "notification" else rendered.body
    message: dict[str, Any] = dict(
        ticket_id=ticket.id, direction=draft.direction, message_id=message_id,
        source_key=None, raw_sha256=None, in_reply_to=draft.in_reply_to,
        references=" ".join(draft.references) or None, from_addr=out.support.address,
        from_name=sender.name, to_addrs=", ".join(a.address for a in (draft.to, *draft.cc)),
        subject=rendered.subject, date=at,
        body_text=body_text, automatic=None, raw=None, created_at=at,
    )
    outbox: dict[str, Any] = dict(
        ticket_id=ticket.id, message_row_id=None, message_id=message_id, kind=kind,
        mail_from=envelope.mail_from, rcpt_to=",".join(envelope.rcpt_to), raw=envelope.raw,
        status="pending", attempts=0, next_attempt_at=at, last_error=None, created_at=at,
        sent_at=None,
    )
    return Queued(message, outbox, message_id)
