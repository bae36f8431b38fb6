"""What each route does (pipeline/route.py decides which): through the ticket service, the
agents' desk and the rules. I/O happens here; the decisions were made before."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from maild.agents.handle import AgentDesk
from maild.agents.intake import read_intake_mail
from maild.agents.knowledge import SolutionDesk
from maild.agents.parse import strip_quoted
from maild.agents.review import ReviewDesk
from maild.csat.desk import Satisfaction
from maild.digest.queue import QueueDesk, Queues
from maild.domain import Classification, Inbound, Outcome, Stop, ThreadDecision
from maild.knowledge.suggest import Suggester, suggestion_text
from maild.mailsafety.bounce import Report
from maild.outbound.render import TicketView
from maild.pipeline.batch import Processed
from maild.pipeline.route import (
    AgentMail,
    Discard,
    Hold,
    Intake,
    Join,
    Open,
    QueueMail,
    Rate,
    RecordReport,
    RefuseStaff,
    Reply,
    ReviewMail,
    SolutionMail,
    WishCommandMail,
)
from maild.pipeline.route import Route as RouteType
from maild.pipeline.thread import strip_ref
from maild.rules.engine import Organisation
from maild.store.ticketstore import TicketStore
from maild.tickets.intake import IntakeError, intake_classification
from maild.tickets.service import Notice, TicketService
from maild.tickets.staffmail import StaffMail
from maild.wishes.inbox import WishInbox

log = structlog.get_logger("maild.pipeline")


@dataclass
class Handlers:
    tickets: TicketService
    desk: AgentDesk
    classify: Callable[[Inbound], Classification]
    organisation: Callable[[], Organisation]
    ref_re: re.Pattern[str]
    satisfaction: Satisfaction | None = None
    knowledge_owners: tuple[str, ...] = ()
    queues: Queues | None = None
    suggester: Suggester = field(default_factory=Suggester)

    def handle(self, store: TicketStore, inbound: Inbound, report: Report | None,
               route: RouteType) -> Processed | Outcome:
        match route:
            case Discard(reason) | Hold(reason):
                return Outcome(Stop.DISCARD if isinstance(route, Discard) else Stop.HOLD,
                               reason)
            case RecordReport(ticket_id):
                assert report is not None
                self.tickets.record_report(store, store.ticket(ticket_id), inbound, report)
                log.info("report.recorded", ticket_id=ticket_id, kind=report.kind)
                return Processed(ticket_id=ticket_id, created=False, queued=0)
            case WishCommandMail() | QueueMail() | ReviewMail() | SolutionMail():
                return self.signed(store, inbound, route)
            case RefuseStaff(ticket_id, agent, reason):
                self.desk.refuse(store, store.ticket(ticket_id), agent, inbound, reason)
                return Outcome(Stop.HOLD, reason)
            case Rate(ticket_id, score):
                return self.rate(store, inbound, ticket_id, score)
            case AgentMail(ticket_id, agent):
                applied = self.desk.handle_reply(store, store.ticket(ticket_id), agent, inbound)
                return Processed(ticket_id=ticket_id, created=False, queued=int(applied.relayed))
            case Intake():
                return self.intake(store, inbound)
            case Reply(decision):
                return self.reply(store, inbound, decision)
            case Join(decision):
                return self.join(store, inbound, decision)
            case Open(decision):
                return self.open(store, inbound, decision)
        raise AssertionError(f"unknown route {route!r}")

    def signed(self, store: TicketStore, inbound: Inbound,
               route: WishCommandMail | QueueMail | ReviewMail | SolutionMail
               ) -> Processed | Outcome:
        """Staff mail to one of our signed addresses (route.py checked the signature)."""
        match route:
            case WishCommandMail(ident):
                return WishInbox(self.tickets).handle(store, inbound, ident,
                                                      strip_quoted(inbound.body_text))
            case QueueMail(ident):
                if self.queues is None:
                    return Outcome(Stop.HOLD, "a queue command, but queues are not set up")
                return QueueDesk(self.queues).handle(store, ident, inbound,
                                                     self.tickets.clock.now())
        return self.review(store, inbound, route.ident, isinstance(route, ReviewMail))

    def review(self, store: TicketStore, inbound: Inbound, ident: str, draft: bool
               ) -> Processed | Outcome:
        """A mentor's decision on a draft or an answer to a question (`draft`), or a
        knowledge owner's on a proposed canned answer."""
        reviewed = (ReviewDesk(self.tickets).handle(store, ident, inbound) if draft else
                    SolutionDesk(self.tickets, self.knowledge_owners).handle(
                        store, ident, inbound))
        if isinstance(reviewed, Outcome):
            return reviewed
        return Processed(ticket_id=reviewed.ticket_id, created=False, queued=reviewed.queued)

    def rate(self, store: TicketStore, inbound: Inbound, ticket_id: int, score: int | None
             ) -> Processed | Outcome:
        """An answer to a satisfaction survey (maild/csat)."""
        if self.satisfaction is None:
            return Outcome(Stop.HOLD, "a survey answer, but surveys are not set up")
        why = self.satisfaction.answer(store, store.ticket(ticket_id), inbound, score)
        if why is not None:
            return Outcome(Stop.HOLD, why)
        return Processed(ticket_id=ticket_id, created=False, queued=0)

    def open(self, store: TicketStore, inbound: Inbound, decision: ThreadDecision
             ) -> Processed:
        sender = inbound.sender
        assert sender is not None
        classification = self.classify(inbound)
        t = self.tickets
        ticket = t.open(store, requester=sender, subject=strip_ref(inbound.subject, self.ref_re),
                        classification=classification, language=inbound.language,
                        mailbox=inbound.source.mailbox if inbound.source else None,
                        decision=decision)
        t.add_message(store, ticket, inbound)
        if not inbound.automatic:
            t.take_in_copy(store, ticket, inbound)
        if inbound.notes:
            store.add_event(ticket.id, "limits.applied", t.clock.now(),
                            {"notes": list(inbound.notes)})
        if sender.address in self.organisation().agents:
            # Staff are never acknowledged as customers (an agent's own question to the
            # desk is a ticket like any other, without the customer's mail).
            store.add_event(ticket.id, "acknowledgement.skipped", t.clock.now(),
                            {"reason": "the sender is in the agents directory"})
            queued = 0
        else:
            queued = t.acknowledge(store, ticket, inbound, classification, sender,
                                   inbound.body_text)
        if not inbound.automatic:
            t.notify_each(store, ticket, [
                Notice(t.default_team(ticket), "New ticket", self._suggesting(ticket.level,
                                                                              inbound)),
                *(Notice(team, "New ticket (rule)", inbound.body_text)
                  for team in classification.notify)], author=sender.formatted())
        log.info("ticket.created", ticket_id=ticket.id, ref=ticket.ref,
                 message_id=inbound.message_id, level=ticket.level, acknowledged=bool(queued))
        return Processed(ticket_id=ticket.id, created=True, queued=queued)

    def _suggesting(self, level: int, inbound: Inbound) -> str:
        """The customer's text, and for the 1st and 2nd level the canned answers most like
        it (maild/knowledge/suggest.py): suggested to the team, never sent."""
        if level > 2:
            return inbound.body_text
        catalogue = self.suggester.answers_of(self.tickets.outgoing.templates)
        found = suggestion_text(self.suggester.suggest(inbound.body_text, catalogue))
        return f"{inbound.body_text.rstrip()}\n\n{found}" if found else inbound.body_text

    def reply(self, store: TicketStore, inbound: Inbound, decision: ThreadDecision
              ) -> Processed:
        assert decision.ticket_id is not None
        ticket = store.ticket(decision.ticket_id)
        self.tickets.customer_wrote(store, ticket, inbound, decision)
        log.info("ticket.updated", ticket_id=ticket.id, ref=ticket.ref,
                 message_id=inbound.message_id, threaded_by=decision.by.value)
        return Processed(ticket_id=ticket.id, created=False, queued=0)

    def join(self, store: TicketStore, inbound: Inbound, decision: ThreadDecision
             ) -> Processed:
        """Someone unconfirmed wrote into a ticket's conversation: kept there, nothing
        else (TicketService.joined)."""
        assert decision.ticket_id is not None
        ticket = store.ticket(decision.ticket_id)
        self.tickets.joined(store, ticket, inbound, decision)
        log.info("ticket.joined", ticket_id=ticket.id, ref=ticket.ref,
                 message_id=inbound.message_id, threaded_by=decision.by.value)
        return Processed(ticket_id=ticket.id, created=False, queued=0)

    def intake(self, store: TicketStore, inbound: Inbound) -> Processed | Outcome:
        """The secretariat logs a call by mail (tickets/intake.py)."""
        assert inbound.sender is not None
        try:
            mail = read_intake_mail(inbound.body_text)
            classification = intake_classification(self.classify(inbound), mail.fields,
                                                   self.organisation())
        except IntakeError as exc:
            # The secretariat is staff: told at once, with what they wrote, to send again.
            wrote = "\n".join(f"> {line}" for line in inbound.body_text.strip().splitlines())
            self.tickets.mail_staff(store, StaffMail(
                to=inbound.sender.address, template="refused",
                about=TicketView(ref="", subject=inbound.subject or "(no subject)", level=0,
                                 department=None, priority="-", status="-"),
                headline="No ticket was opened for this call.",
                text=f"{exc}\n\nWhat you wrote:\n{wrote}", author="maild",
                in_reply_to=inbound.message_id))
            return Outcome(Stop.HOLD, f"intake mail: {exc}")
        ticket = self.tickets.intake(
            store, customer=mail.customer, subject=strip_ref(inbound.subject, self.ref_re),
            text=mail.text, classification=classification, language=inbound.language,
            opened_by=inbound.sender.address, inbound=inbound)
        return Processed(ticket_id=ticket.id, created=True, queued=1)
