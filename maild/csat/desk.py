"""Surveys out, ratings in, and the satisfaction guarantee, through the ticket service.

The survey's links are `mailto:` links to a signed rating address of the ticket
(`support+rate-t-k7qf2x-4.<signature>@`, tickets/address.py), one per score, and its
Reply-To is the same address without a score: one click in the mail client prepares the
answer, and nothing is recorded by merely opening a link (mail security scanners follow
links; they cannot send a mail).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

import structlog
from sqlalchemy import select

from maild.csat.reading import OptOut, Rating, needs_management, read_answer
from maild.domain import Address, Classification, Inbound, ThreadDecision, ThreadedBy
from maild.rules.engine import Organisation
from maild.settings import CsatSettings
from maild.store.models import CsatOptOut, Message, Ticket
from maild.store.ticketstore import TicketStore
from maild.tickets.address import signed_address
from maild.tickets.service import Notice, TicketService

log = structlog.get_logger("maild.csat")
TAG = "rate"
SKIPPED_TAGS = frozenset({"no-csat", "spam", "duplicate"})
HISTORY_DIRECTIONS = ("inbound", "outbound", "note")


def rating_ident(ref: str, score: int | None = None) -> str:
    return ref.lower() if score is None else f"{ref.lower()}-{score}"


@dataclass
class Satisfaction:
    tickets: TicketService
    settings: CsatSettings
    organisation: Callable[[], Organisation]

    def rating_address(self, ticket: Ticket, score: int | None = None) -> str:
        """Signed over the ticket alone: the score in it is the customer's own choice."""
        ids = self.tickets.outgoing.ids
        return signed_address(self.tickets.outgoing.support.address, TAG,
                              rating_ident(ticket.ref, score), ids.sign(f"{TAG}-{ticket.ref}"))

    def signature_for(self, ref: str) -> str:
        return self.tickets.outgoing.ids.sign(f"{TAG}-{ref.upper()}")

    def why_not(self, store: TicketStore, ticket: Ticket) -> str | None:
        """Why this resolved ticket gets no survey, or None."""
        if not self.settings.enabled:
            return "surveys are off"
        if SKIPPED_TAGS.intersection(ticket.tags or ()):
            return f"tagged {', '.join(sorted(SKIPPED_TAGS.intersection(ticket.tags)))}"
        if ticket.department == "management" or ticket.department in \
                self.settings.skip_departments or ticket.level in self.settings.skip_levels:
            return f"no surveys for {ticket.department or 'level ' + str(ticket.level)}"
        if "@" not in ticket.requester:
            return "the customer has no address"
        session = store.session
        if session.get(CsatOptOut, ticket.requester) is not None:
            return "the customer opted out of surveys"
        first = session.scalar(select(Message.automatic).where(
            Message.ticket_id == ticket.id, Message.direction == "inbound")
            .order_by(Message.id).limit(1))
        if first:
            return f"the ticket was opened by automatic mail ({first})"
        return None

    def survey(self, store: TicketStore, ticket: Ticket) -> bool:
        links = "\n".join(
            f"  {score}: mailto:{self.rating_address(ticket, score)}?subject="
            f"{quote(f'[{ticket.ref}] {score}')}" for score in range(5, 0, -1))
        sent = self.tickets.mail_customer(store, ticket, template="survey", kind="survey",
                                          text=links, reply_to=self.rating_address(ticket))
        if sent:
            self.tickets.record(store, ticket, "csat.survey_queued", to=ticket.requester)
        return sent

    def answer(self, store: TicketStore, ticket: Ticket, inbound: Inbound,
               score: int | None) -> str | None:
        """A customer's answer to the survey of `ticket`: recorded (a rating, with the
        guarantee when it is low; or the opt-out). The reason it was not, or None."""
        answer = read_answer(inbound.body_text, score)
        if answer is None:
            return "a survey answer without a rating (1 to 5 at the start of its first line)"
        self.tickets.add_message(store, ticket, inbound, direction="rating")
        if isinstance(answer, OptOut):
            address = ticket.requester
            if store.session.get(CsatOptOut, address) is None:
                store.session.add(CsatOptOut(address=address, created_at=self.tickets.clock.now(),
                                             ticket_id=ticket.id))
            self.tickets.record(store, ticket, "csat.opted_out", address=address)
            return None
        self.tickets.record(store, ticket, "csat.rated", score=answer.score,
                            comment=answer.comment, agent=ticket.assignee, level=ticket.level,
                            department=ticket.department, by=inbound.sender.address
                            if inbound.sender else None)
        log.info("csat.rated", ticket_id=ticket.id, score=answer.score)
        if needs_management(answer, self.settings.threshold, self.settings.words):
            self._guarantee(store, ticket, answer)
        return None

    def _guarantee(self, store: TicketStore, ticket: Ticket, rating: Rating) -> None:
        """The customer is not satisfied: a management case linked to the ticket (opened,
        or reopened), management told with the whole history, the customer told that
        management will get in touch."""
        t = self.tickets
        store.write()  # a case opened earlier in this batch is read back below
        session = store.session
        case = session.scalar(select(Ticket).where(
            Ticket.linked_ticket_id == ticket.id, Ticket.department == "management")
            .order_by(Ticket.id.desc()).limit(1))
        org = self.organisation()
        if case is None:
            mgmt = org.management
            case = t.open(store, requester=Address(ticket.requester_name, ticket.requester),
                          subject=f"Satisfaction guarantee: {ticket.subject}",
                          classification=Classification(
                              level=mgmt.level if mgmt else 2, department="management",
                              priority=mgmt.priority if mgmt else "high",
                              tags=("satisfaction-guarantee", "no-csat")),
                          language=ticket.language, mailbox=ticket.mailbox,
                          decision=ThreadDecision(None, ThreadedBy.NEW,
                                                  linked_ticket_id=ticket.id,
                                                  flags=("satisfaction-guarantee",)),
                          via="csat")
        elif case.status in ("resolved", "closed"):
            t.set_status(store, case, "open", "the customer rated again", "csat")
        t.record(store, ticket, "csat.guarantee", score=rating.score, comment=rating.comment,
                 case=case.ref)
        history = "\n\n".join(
            f"{m.created_at:%Y-%m-%d %H:%M} {m.direction} {m.from_addr}:\n{m.body_text.strip()}"
            for m in session.scalars(select(Message).where(
                Message.ticket_id == ticket.id, Message.direction.in_(HISTORY_DIRECTIONS))
                .order_by(Message.id)))
        t.notify_each(store, case, [Notice(
            "management", f"Satisfaction guarantee: rated {rating.score} of 5",
            f"Rating: {rating.score} of 5\nComment: {rating.comment or '-'}\n\n"
            f"The history of {ticket.ref}:\n\n{history}")], author="maild satisfaction survey")
        t.mail_customer(store, case, template="guarantee", kind="guarantee")
        t.sla.refresh(case)
