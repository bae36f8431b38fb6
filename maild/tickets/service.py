"""The ticket service: open, add a message, acknowledge, reply, note, notify, escalate,
and change status, priority, department or assignee, each with the events it writes.

Every operation takes the `TicketStore` of the caller's transaction (store/ticketstore.py)
and never commits: the caller owns the transaction, and the mail an operation causes is
queued in it (the transactional outbox), so a decision and its mail stand or fall together.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import structlog

from maild.clock import Clock
from maild.domain import Address, Classification, Inbound, OutboundDraft, ThreadDecision
from maild.mailsafety import limits
from maild.mailsafety.bounce import Report
from maild.mailsafety.vocabulary import normalise_subject
from maild.outbound.compose import smtp_problem
from maild.outbound.queue import Outgoing, compose_queued
from maild.rules.engine import Organisation
from maild.settings import SafetySettings, WishSettings
from maild.sla.engine import SlaEngine, raise_priority
from maild.sla.policy import Deadline, Policy
from maild.store.ids import new_ref, new_secret
from maild.store.models import Outbox, Ticket
from maild.store.ticketstore import TicketStore
from maild.tickets import respond, staffmail
from maild.tickets.address import reply_address
from maild.tickets.people import Conversation, addressed, is_ours, staff_addresses
from maild.tickets.staffmail import StaffMail
from maild.tickets.times import staff_time

log = structlog.get_logger("maild.tickets")
STATUSES = ("new", "open", "waiting_customer", "resolved", "closed")


@dataclass(frozen=True)
class Notice:
    """One reason to tell a team about a ticket: whom, the headline, the text."""

    team: str  # a name from the organisation, or an address
    headline: str
    text: str


@dataclass
class TicketService:
    outgoing: Outgoing  # swapped on reload (templates)
    clock: Clock
    ref_prefix: str
    organisation: Callable[[], Organisation]  # read at use: a reload swaps it
    sla: SlaEngine
    safety: SafetySettings
    conversation: Conversation = field(default_factory=Conversation)
    wishes: WishSettings = field(default_factory=WishSettings)  # the register's settings
    staff_language: str = "en"  # notifications to teams and agents (settings.staff_language)

    # -- opening and messages ----------------------------------------------------------
    def open(self, store: TicketStore, *, requester: Address, subject: str,
             classification: Classification, language: str, mailbox: str | None,
             decision: ThreadDecision | None = None, via: str = "email") -> Ticket:
        """A new ticket, with its `created` and `classified` events."""
        now = self.clock.now()
        ticket = store.insert_ticket(dict(
            ref=new_ref(self.ref_prefix),
            subject=(normalise_subject(subject) or "(no subject)")[:500],
            requester=requester.address, requester_name=requester.name[:200], status="new",
            level=classification.level, department=classification.department,
            priority=classification.priority, language=language, mailbox=mailbox,
            secret=new_secret(), created_at=now, updated_at=now,
            linked_ticket_id=decision.linked_ticket_id if decision else None,
            tags=list(classification.tags), sla_pauses=[], sla_alerted=[],
        ))
        self._event(store, ticket, "created", via=via,
                    threaded_by=decision.by.value if decision else None,
                    flags=list(decision.flags) if decision else [],
                    linked_ticket=ticket.linked_ticket_id)
        self._event(store, ticket, "classified", level=classification.level,
                    department=classification.department, priority=classification.priority,
                    tags=list(classification.tags),
                    rules=[{"rule": h.name, "matched": h.matched} for h in classification.hits])
        return ticket

    def add_message(self, store: TicketStore, ticket: Ticket, inbound: Inbound, *,
                    direction: str = "inbound", body: str | None = None) -> None:
        """Keep a message on the ticket, raw bytes and all. A customer's: the Message-IDs
        it refers to are remembered for the ticket, held or not (placeholders)."""
        sender = inbound.sender
        from_addr = sender.address if sender else ""
        store.add_message(dict(
            ticket_id=ticket.id, direction=direction, message_id=inbound.message_id,
            source_key=inbound.source.key if inbound.source else None,
            raw_sha256=inbound.raw_sha256,
            in_reply_to=" ".join(inbound.in_reply_to) or None,
            references=" ".join(inbound.references) or None,
            from_addr=from_addr, from_name=(sender.name if sender else "")[:200],
            to_addrs=", ".join(a.address for a in (*inbound.to, *inbound.cc)),
            subject=inbound.subject, date=inbound.date,
            body_text=inbound.body_text if body is None else body,
            automatic=",".join(inbound.automatic)[:200] or None, raw=inbound.raw,
            created_at=self.clock.now(),
        ))
        if direction == "inbound":
            # Longer ids than the column holds are no Message-IDs anyone threads by.
            store.add_references(ticket.id, [m for m in (*inbound.in_reply_to,
                                                         *inbound.references)
                                             if len(m) <= 998])

    def add_note(self, store: TicketStore, ticket: Ticket, *, by: str, subject: str,
                 text: str) -> None:
        """A note written without a mail behind it (intake from the command line)."""
        now = self.clock.now()
        store.add_message(dict(
            ticket_id=ticket.id, direction="note", message_id=None, source_key=None,
            raw_sha256=None, in_reply_to=None, references=None, from_addr=by, from_name="",
            to_addrs="", subject=subject, date=now, body_text=text, automatic=None, raw=None,
            created_at=now))

    def customer_wrote(self, store: TicketStore, ticket: Ticket, inbound: Inbound,
                       decision: ThreadDecision) -> None:
        """A customer's mail threaded into `ticket`: kept, the ticket reopened if it was
        waiting or done, the next-response clock started, the team told."""
        now = self.clock.now()
        self.add_message(store, ticket, inbound)
        ticket.updated_at = now
        self._event(store, ticket, "message.received", message_id=inbound.message_id,
                    threaded_by=decision.by.value, matched=decision.matched,
                    automatic=list(inbound.automatic))
        if inbound.automatic:
            return
        self.take_in_copy(store, ticket, inbound)
        if ticket.status in ("waiting_customer", "resolved", "closed"):
            self.set_status(store, ticket, "open", "customer replied")
        if ticket.first_response_at is not None and ticket.awaiting_reply_since is None:
            ticket.awaiting_reply_since = now  # the next-response clock starts
        self.notify(store, ticket, ticket.assignee or self.default_team(ticket),
                    headline="The customer replied", text=inbound.body_text,
                    author=inbound.sender.formatted() if inbound.sender else "")

    def joined(self, store: TicketStore, ticket: Ticket, inbound: Inbound,
               decision: ThreadDecision) -> None:
        """Someone who is not a confirmed participant wrote into the conversation by its
        headers: the message is kept in the ticket (the thread stays whole) and the team
        told, and nothing else happens. They receive nothing of the ticket and change
        nothing of it until an agent confirms them (#cc add) or a customer of the ticket
        puts them in To or Cc."""
        assert inbound.sender is not None
        sender = inbound.sender.address
        self.add_message(store, ticket, inbound)
        self._event(store, ticket, "message.received", message_id=inbound.message_id,
                    threaded_by=decision.by.value, matched=decision.matched,
                    automatic=list(inbound.automatic), flags=list(decision.flags),
                    unconfirmed=sender)
        if inbound.automatic:
            return
        if store.add_participant(ticket.id, sender, confirmed=False, by=sender,
                                 at=self.clock.now()):
            self._event(store, ticket, "participant.joined", address=sender, confirmed=False)
        self.notify(store, ticket, ticket.assignee or self.default_team(ticket),
                    headline=f"Unconfirmed participant {sender} wrote",
                    text=f"{sender} is not a confirmed participant of this ticket: they "
                         f"receive nothing from it and change nothing in it. If they belong "
                         f"to the conversation, answer this mail with '#cc add {sender}'."
                         f"\n\n{inbound.body_text}",
                    author=inbound.sender.formatted())

    def take_in_copy(self, store: TicketStore, ticket: Ticket, inbound: Inbound) -> None:
        """The people a customer's mail is also addressed to (To, Cc) take part in the
        conversation, confirmed. Nobody is removed when a later mail leaves them out."""
        assert inbound.sender is not None
        now, sender = self.clock.now(), inbound.sender.address
        for address in addressed(inbound, exclude=(ticket.requester, sender),
                                 support=self.outgoing.support.address,
                                 own=self.conversation.own,
                                 staff=staff_addresses(self.organisation())):
            if store.add_participant(ticket.id, address, confirmed=True, by=sender, at=now):
                self._event(store, ticket, "participant.added", address=address,
                            confirmed=True, by=sender, via="cc")

    def add_participant(self, store: TicketStore, ticket: Ticket, address: str, *,
                        by: str) -> bool:
        """An agent's `#cc add`: `address` takes part, confirmed."""
        changed = store.add_participant(ticket.id, address, confirmed=True, by=by,
                                        at=self.clock.now())
        if changed:
            self._event(store, ticket, "participant.added", address=address, confirmed=True,
                        by=by, via="command")
        return changed

    def remove_participant(self, store: TicketStore, ticket: Ticket, address: str, *,
                           by: str) -> bool:
        """An agent's `#cc remove`."""
        changed = store.remove_participant(ticket.id, address)
        if changed:
            self._event(store, ticket, "participant.removed", address=address, by=by)
        return changed

    def is_ours(self, address: str) -> bool:
        """One of our own addresses (support, mailboxes, agents, teams, intake)."""
        return is_ours(address, self.outgoing.support.address, self.conversation.own,
                       staff_addresses(self.organisation()))

    def record_report(self, store: TicketStore, ticket: Ticket, inbound: Inbound,
                      report: Report) -> None:
        """A delivery report on mail of this ticket: kept, and a permanently failing
        address gets no automatic mail for a while."""
        for failed in report.recipients:
            if report.kind == "failure" and failed.permanent:
                self.suppress(store, failed.address, f"permanent failure: "
                              f"{failed.status or ''} {failed.diagnostic or report.reason}"
                              .strip())
        self.add_message(store, ticket, inbound)
        self._event(store, ticket, f"report.{report.kind}", message_id=inbound.message_id,
                    reason=report.reason,
                    recipients=[{"address": r.address, "status": r.status,
                                 "permanent": r.permanent} for r in report.recipients])

    def suppress(self, store: TicketStore, address: str, reason: str) -> None:
        if self.safety.suppress_days <= 0:
            return
        now = self.clock.now()
        store.suppress(address.lower(), now + timedelta(days=self.safety.suppress_days),
                       reason[:500], now)

    # -- mail ------------------------------------------------------------------------
    def acknowledge(self, store: TicketStore, ticket: Ticket, inbound: Inbound | None,
                    classification: Classification, to: Address, body: str) -> int:
        """Queue the acknowledgement (or canned answer) of a new ticket; 0 or 1."""
        draft = (respond.acknowledgement(inbound, classification, new_ticket=True)
                 if inbound is not None else respond.intake_acknowledgement(
                     ticket.language, classification, to))
        if draft is None:
            return 0
        if inbound is not None and self.safety.trusted_authserv_ids:
            draft = dataclasses.replace(draft, sender_verified=inbound.verified_sender)
        now = self.clock.now()
        address = draft.to.address.lower()
        problem = smtp_problem(draft.to.address)
        blocked = (f"{draft.to.address} {problem}" if problem else limits.blocked(
            self.safety, address, store.suppression(address),
            store.automatic_sent(address, None, now), now))
        if blocked:
            self._event(store, ticket, "autoreply.suppressed", to=draft.to.address,
                        reason=blocked)
            log.warning("autoreply.limited", ticket_id=ticket.id, reason=blocked)
            return 0
        kind = "answer" if classification.answer else "acknowledgement"
        self._queue(store, ticket, draft, body=body, kind=kind)
        return 1

    def mail_customer(self, store: TicketStore, ticket: Ticket, *, template: str, kind: str,
                      text: str = "", reply_to: str | None = None) -> bool:
        """Automatic mail to the requester in their language (a survey, the guarantee's
        notice), within the loop limits and never to a suppressed address; False (with the
        reason as an event) when it may not go."""
        now = self.clock.now()
        to = Address(ticket.requester_name, ticket.requester)
        problem = smtp_problem(to.address)
        blocked = (f"{to.address} {problem}" if problem else limits.blocked(
            self.safety, to.address, store.suppression(to.address),
            store.automatic_sent(to.address, ticket.id, now), now))
        if blocked:
            self._event(store, ticket, "autoreply.suppressed", to=to.address, reason=blocked,
                        mail=kind)
            return False
        in_reply_to, references = store.customer_thread(ticket.id)
        draft = OutboundDraft(template=template, language=ticket.language, to=to,
                              in_reply_to=in_reply_to, references=references, automatic=True,
                              text=text, reply_to=reply_to)
        self._queue(store, ticket, draft, body=text, kind=kind)
        return True

    def record(self, store: TicketStore, ticket: Ticket, kind: str, **data: Any) -> None:
        """An event on the ticket for what a part of maild beside the service decided (a
        rating, a survey skipped)."""
        self._event(store, ticket, kind, **data)

    def reply(self, store: TicketStore, ticket: Ticket, *, agent: Address,
              text: str, template: str = "reply") -> bool:
        """An agent's answer relayed to the customer from the support address under the
        agent's name; False (and the agent told why) when the address cannot be used."""
        now = self.clock.now()
        problem = smtp_problem(ticket.requester)
        if problem is not None:
            self._event(store, ticket, "reply.failed", by=agent.address,
                        error=f"{ticket.requester} {problem}")
            self.notify(store, ticket, agent.address, author="maild",
                        headline="Your answer could not be sent",
                        text=f"{ticket.requester} {problem}. Please answer from your own "
                             "mail client.")
            return False
        in_reply_to, references = store.customer_thread(ticket.id)
        copies: tuple[Address, ...] = ()
        if self.conversation.reply_to_all:
            copies = tuple(Address("", a) for a, confirmed in
                           store.participant_list(ticket.id).items()
                           if confirmed and a != ticket.requester and not self.is_ours(a)
                           and smtp_problem(a) is None)
        draft = OutboundDraft(
            template=template, language=ticket.language,
            to=Address(ticket.requester_name, ticket.requester), in_reply_to=in_reply_to,
            references=references, automatic=False, cc=copies,
            sender_name=f"{agent.name} ({self.outgoing.support.name})", text=text,
            author=agent.name,
        )
        self._queue(store, ticket, draft, body=text, kind="reply")
        ticket.awaiting_reply_since = None
        if ticket.first_response_at is None:
            ticket.first_response_at = now
        if ticket.status == "new":
            self.set_status(store, ticket, "open", "agent replied", agent.address)
        return True

    def notify(self, store: TicketStore, ticket: Ticket, team: str, *, headline: str,
               text: str, author: str = "", reply_to: str | None = None,
               template: str = "notification") -> bool:
        """Queue a notification to a team (a name from the organisation, or an address)
        whose Reply-To is the ticket's secret address (or `reply_to`: a signed address of
        another kind, such as a draft's review address)."""
        return bool(self.notify_each(store, ticket, [Notice(team, headline, text)],
                                     author=author, reply_to=reply_to, template=template))

    def notify_each(self, store: TicketStore, ticket: Ticket, notices: Sequence[Notice], *,
                    author: str = "", reply_to: str | None = None,
                    template: str = "notification") -> list[str]:
        """One mail per address for one event, whatever reasons led there (a department
        team that a rule also names, an escalation and a breach to the same team): the
        mail's headline lists the reasons, its text each different text once. The teams
        notified, in order."""
        by_address: dict[str, list[Notice]] = {}
        for notice in notices:
            address = self.organisation().team_address(notice.team)
            if address:
                by_address.setdefault(address.lower(), []).append(notice)
        support = self.outgoing.support.address
        notified: list[str] = []
        for address, reasons in by_address.items():
            headline = " · ".join(dict.fromkeys(n.headline for n in reasons))
            text = "\n\n".join(dict.fromkeys(n.text for n in reasons if n.text))
            teams = list(dict.fromkeys(n.team for n in reasons))
            draft = OutboundDraft(
                template=template, language=self.staff_language, to=Address("", address),
                in_reply_to=None, references=(), automatic=True, direction="notification",
                reply_to=reply_to or reply_address(support, ticket.ref, ticket.secret),
                headline=headline, text=text, author=author,
            )
            self._queue(store, ticket, draft, body=text, kind="notification")
            self._event(store, ticket, "notified", team=teams[0], to=address, about=headline,
                        **({"teams": teams} if len(teams) > 1 else {}))
            notified.extend(teams)
        return notified

    def default_team(self, ticket: Ticket) -> str:
        """Who hears about a ticket: its department's team if it has one, else its level's."""
        org = self.organisation()
        if ticket.department == "management":
            return "management"
        dept = org.departments.get(ticket.department or "")
        if dept is not None and dept.team:
            return ticket.department or ""
        return f"level{ticket.level}"

    def mail_staff(self, store: TicketStore, mail: StaffMail) -> None:
        """Queue staff mail about no single ticket (tickets/staffmail.py): an outbox row
        alone, in the caller's transaction like all mail."""
        row = staffmail.outbox_row(mail, self.outgoing, at=self.clock.now(),
                                   kind="notification", language=self.staff_language)
        store.session.add(Outbox(**row))

    def inform_customer(self, store: TicketStore, ticket: Ticket, *, template: str,
                        headline: str, text: str, kind: str) -> str | None:
        """Automatic mail to a ticket's customer about something decided elsewhere (a
        wish done), in their language, threaded into their ticket, within the loop limits
        and never to a suppressed address. None when queued, else why not (an event on
        the ticket says so too)."""
        now = self.clock.now()
        address = ticket.requester.lower()
        problem = smtp_problem(ticket.requester)
        blocked = (f"{ticket.requester} {problem}" if problem else limits.blocked(
            self.safety, address, store.suppression(address),
            store.automatic_sent(address, ticket.id, now), now))
        if blocked:
            self._event(store, ticket, "autoreply.suppressed", to=ticket.requester,
                        reason=blocked, template=template)
            return blocked
        in_reply_to, references = store.customer_thread(ticket.id)
        draft = OutboundDraft(
            template=template, language=ticket.language,
            to=Address(ticket.requester_name, ticket.requester), in_reply_to=in_reply_to,
            references=references, automatic=True, headline=headline, text=text)
        self._queue(store, ticket, draft, body=text, kind=kind)
        return None

    # -- changes -----------------------------------------------------------------------
    def set_status(self, store: TicketStore, ticket: Ticket, status: str, reason: str,
                   by: str | None = None) -> None:
        if ticket.status == status:
            return
        now = self.clock.now()
        self._event(store, ticket, "status.changed", old=ticket.status, new=status,
                    reason=reason, by=by)
        self.sla.status_changed(ticket, status, now)  # stops while waiting or resolved
        ticket.status = status
        ticket.updated_at = now
        if status == "resolved":
            ticket.resolved_at = now
        elif status == "closed":
            ticket.closed_at = now
        elif status in ("open", "new"):
            ticket.resolved_at = ticket.closed_at = None

    def escalate(self, store: TicketStore, ticket: Ticket, level: int, *, by: str,
                 reason: str, author: str, notify: bool = True) -> Notice:
        """To `level`, whose team is told with what the customer first wrote (unless the
        caller sends that notice with others: `notify_each`)."""
        self._event(store, ticket, "escalated", by=by, old=ticket.level, new=level,
                    reason=reason)
        ticket.level = level
        notice = Notice(f"level{level}", f"Escalated to level {level} by {author}"
                        + (f": {reason}" if reason else ""), store.first_customer_text(ticket.id))
        if notify:
            self.notify_each(store, ticket, [notice], author=author)
        return notice

    def move(self, store: TicketStore, ticket: Ticket, department: str, *, by: str,
             author: str) -> None:
        """To another department, whose team is told."""
        self._event(store, ticket, "department.changed", by=by, old=ticket.department,
                    new=department)
        ticket.department = department
        self.notify(store, ticket, department, author=author,
                    headline=f"Moved to {department} by {author}",
                    text=store.first_customer_text(ticket.id))

    def set_priority(self, store: TicketStore, ticket: Ticket, priority: str, *,
                     by: str) -> None:
        self._event(store, ticket, "priority.changed", by=by, old=ticket.priority,
                    new=priority)
        ticket.priority = priority

    def assign(self, store: TicketStore, ticket: Ticket, who: str, *, by: str) -> None:
        self._event(store, ticket, "assigned", by=by, old=ticket.assignee, new=who)
        ticket.assignee = who

    def note(self, store: TicketStore, ticket: Ticket, *, by: str, level: int) -> None:
        """An internal note was kept (its text is the agent's mail on the ticket)."""
        self._event(store, ticket, "note.added", by=by, level=level)

    # -- intake ------------------------------------------------------------------------
    def intake(self, store: TicketStore, *, customer: Address, subject: str, text: str,
               classification: Classification, language: str, opened_by: str,
               inbound: Inbound | None = None) -> Ticket:
        """A ticket on a caller's behalf (by the secretariat's mail or the command line):
        the caller gets the acknowledgement by email, the team is told."""
        ticket = self.open(store, requester=customer, subject=subject,
                           classification=classification, language=language, mailbox=None,
                           via="intake")
        self._event(store, ticket, "intake", by=opened_by)
        if inbound is not None:
            self.add_message(store, ticket, inbound, direction="note", body=text)
        else:
            self.add_note(store, ticket, by=opened_by, subject=subject, text=text)
        self.acknowledge(store, ticket, None, classification, customer, text)
        headline = "New ticket logged by the secretariat for the caller"
        self.notify_each(store, ticket, [
            Notice(team, headline, text)
            for team in (self.default_team(ticket), *classification.notify)], author=opened_by)
        self.sla.refresh(ticket)
        return ticket

    # -- SLA -------------------------------------------------------------------------
    def sla_act(self, store: TicketStore, ticket: Ticket, policy: Policy,
                deadline: Deadline) -> tuple[str, ...]:
        """What a warning or breach does, through the outbox like all mail."""
        what = deadline.target.replace("_", " ")
        due = staff_time(deadline.due, policy.calendar, self.clock.now())
        actions: list[str] = []
        if deadline.kind == "warn":
            teams = policy.spec.warn_notify or [ticket.assignee or self.default_team(ticket)]
            notified = self.notify_each(store, ticket, [
                Notice(team, f"SLA warning: {what} due {due}",
                       f"Policy {policy.name}: the {what} is due {due}.") for team in teams],
                author="maild SLA check")
            return tuple(f"notified:{team}" for team in notified)
        spec = policy.spec.on_breach
        if spec.raise_priority and ticket.priority != raise_priority(ticket.priority):
            new = raise_priority(ticket.priority)
            self.set_priority(store, ticket, new, by="sla")
            actions.append(f"priority:{new}")
        notices: list[Notice] = []
        if spec.escalate and ticket.level < 4:
            notices.append(self.escalate(
                store, ticket, ticket.level + 1, by="sla", author="maild SLA check",
                reason=f"SLA {what} breached, was due {due} (policy {policy.name})",
                notify=False))
            actions.append(f"escalated:{ticket.level}")
        escalated_to = notices[0].team if notices else None
        notices += [Notice(team, f"SLA breached: {what} was due {due}",
                           f"Policy {policy.name}: the {what} was due {due}.")
                    for team in spec.notify or ([] if spec.escalate
                                                else [self.default_team(ticket)])]
        notified = self.notify_each(store, ticket, notices, author="maild SLA check")
        # The escalation's own notice is in "escalated:N" already.
        actions += [f"notified:{team}" for team in notified
                    if team != escalated_to or team in spec.notify]
        return tuple(actions)

    def event(self, store: TicketStore, ticket: Ticket, kind: str, **data: Any) -> None:
        """An event of an operation kept outside the service (a draft's review, say)."""
        self._event(store, ticket, kind, **data)

    # -- helpers -----------------------------------------------------------------------
    def _event(self, store: TicketStore, ticket: Ticket, kind: str, **data: Any) -> None:
        store.add_event(ticket.id, kind, self.clock.now(), data)

    def _queue(self, store: TicketStore, ticket: Ticket, draft: OutboundDraft, *, body: str,
               kind: str) -> None:
        at = self.clock.now()
        queued = compose_queued(ticket, draft, self.outgoing, at=at, body=body, kind=kind)
        store.add_outgoing(queued.message, queued.outbox,
                           automatic=kind in limits.AUTOMATIC_KINDS)
        self._event(store, ticket, f"{kind}.queued", message_id=queued.message_id,
                    template=draft.template, language=draft.language, to=draft.to.address,
                    **({"cc": [c.address for c in draft.cc]} if draft.cc else {}))
