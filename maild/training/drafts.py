"""A trainee's reply held as a draft, and the mentor's decision on it.

Held: nothing reaches the customer; the mentor gets a review mail (the customer's last
message, the draft, the ticket) whose Reply-To is the draft's signed review address
(`support+review-<id>.<signature>@`), so only someone who got that mail can decide.
Approved: sent through `TicketService.reply` like any relayed reply (from the support
address, under the trainee's name), so the first response counts at that moment; the SLA
clock ran on while the draft waited, as the customer had no answer. Edited: the edited
text is sent and the trainee gets the difference. Rejected: nothing is sent, the advice
goes to the trainee. Every step is an event on the ticket.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from sqlalchemy import select

from maild.domain import Address
from maild.rules.schema import Agent
from maild.store.models import Draft, Message, Ticket
from maild.store.ticketstore import TicketStore
from maild.tickets.address import signed_address
from maild.tickets.service import TicketService

REVIEW_TAG = "review"
ASK_PREFIX = "ask-"  # a review-kind address whose answer becomes a note on the ticket


def quoted(text: str) -> str:
    return "\n".join(f"> {line}" for line in text.strip().splitlines())


def difference(draft: str, sent: str) -> str:
    """What the mentor changed, as a unified diff of lines."""
    return "\n".join(difflib.unified_diff(
        draft.strip().splitlines(), sent.strip().splitlines(), "your draft", "as sent",
        lineterm=""))


@dataclass
class Drafts:
    tickets: TicketService

    def review_address(self, ident: str) -> str:
        out = self.tickets.outgoing
        return signed_address(out.support.address, REVIEW_TAG, ident,
                              out.ids.sign(f"{REVIEW_TAG}-{ident}"))

    def hold(self, store: TicketStore, ticket: Ticket, agent: Agent, text: str,
             template: str = "reply") -> Draft:
        """Keep the trainee's reply as a draft and ask the mentor to review it."""
        assert agent.mentor is not None
        now = self.tickets.clock.now()
        draft = Draft(ticket_id=ticket.id, author=agent.address.lower(),
                      author_name=agent.name[:200], mentor=agent.mentor, text=text,
                      template=template, status="waiting", created_at=now)
        store.write()  # the ticket and its messages so far, for the draft and the lookup
        session = store.session
        session.add(draft)
        session.flush()
        self.tickets.event(store, ticket, "draft.held", draft=draft.id, by=draft.author,
                           mentor=draft.mentor)
        customer = last_customer_text(store, ticket.id)
        self.tickets.notify(
            store, ticket, draft.mentor, template="review",
            headline=f"Draft by {agent.name} to review",
            text=f"The customer wrote:\n{quoted(customer)}\n\n"
                 f"{agent.name}'s draft (not sent):\n{quoted(text)}",
            author=f"{agent.name} <{agent.address}>",
            reply_to=self.review_address(str(draft.id)))
        return draft

    def approve(self, store: TicketStore, draft: Draft, *, by: Agent, edited: str) -> bool:
        """Send the draft (or the mentor's edited text) to the customer."""
        ticket = store.ticket(draft.ticket_id)
        now = self.tickets.clock.now()
        text = edited.strip() or draft.text
        changed = bool(edited.strip()) and edited.strip() != draft.text.strip()
        sent = self.tickets.reply(store, ticket, agent=Address(draft.author_name, draft.author),
                                  text=text, template=draft.template)
        draft.status = "edited" if changed else "approved"
        draft.decided_at, draft.decided_by, draft.sent_text = now, by.address.lower(), text
        self.tickets.event(store, ticket, "draft.approved", draft=draft.id, by=by.address,
                           edited=changed, sent=sent,
                           waited=(now - draft.created_at).total_seconds())
        if changed:
            self.tickets.notify(
                store, ticket, draft.author, author=by.name,
                headline=f"Your draft was sent with changes by {by.name}",
                text=f"What {by.name} changed:\n\n{difference(draft.text, text)}")
        else:
            self.tickets.notify(store, ticket, draft.author, author=by.name,
                                headline=f"Your draft was approved by {by.name} and sent",
                                text=text)
        return sent

    def reject(self, store: TicketStore, draft: Draft, *, by: Agent, advice: str) -> None:
        """Send nothing; the advice goes to the trainee, who can write again."""
        ticket = store.ticket(draft.ticket_id)
        now = self.tickets.clock.now()
        draft.status = "rejected"
        draft.decided_at, draft.decided_by, draft.advice = now, by.address.lower(), advice
        self.tickets.event(store, ticket, "draft.rejected", draft=draft.id, by=by.address,
                           waited=(now - draft.created_at).total_seconds())
        self.tickets.notify(
            store, ticket, draft.author, author=by.name,
            headline=f"Your draft was NOT sent: advice from {by.name}",
            text=f"{advice}\n\nYour draft:\n{quoted(draft.text)}\n\nReply to this mail to "
                 "write again.")

    def ask(self, store: TicketStore, ticket: Ticket, agent: Agent, team: str,
            question: str) -> None:
        """An internal question to the mentor or the next level; the answer (a reply to
        this mail) lands on the ticket as a note."""
        self.tickets.event(store, ticket, "question.asked", by=agent.address, to=team)
        self.tickets.notify(
            store, ticket, team, author=f"{agent.name} <{agent.address}>",
            headline=f"Question from {agent.name}",
            text=f"{question}\n\nYour reply to this mail is kept on the ticket as an "
                 "internal note; the customer sees nothing of it.",
            reply_to=self.review_address(f"{ASK_PREFIX}{ticket.id}"))


def draft(store: TicketStore, draft_id: int) -> Draft | None:
    return store.session.get(Draft, draft_id)


def last_customer_text(store: TicketStore, ticket_id: int) -> str:
    text = store.session.scalar(
        select(Message.body_text).where(Message.ticket_id == ticket_id,
                                        Message.direction == "inbound")
        .order_by(Message.id.desc()).limit(1))
    return text or store.first_customer_text(ticket_id)
