"""Writes to tickets, inside the runner's transaction: messages, events, queued mail.

One place knows how a ticket is opened, how a message is attached, and how staff are
notified, so the customer path, the agents' path and intake cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.agents.address import reply_address
from maild.clock import Clock
from maild.domain import Address, Classification, Inbound, OutboundDraft, ThreadDecision
from maild.mailsafety.limits import AutoLimiter
from maild.outbound.compose import smtp_problem
from maild.outbound.queue import Outgoing, enqueue
from maild.pipeline import respond
from maild.pipeline.thread import normalise_subject
from maild.rules.engine import Organisation
from maild.sla.engine import SlaEngine, raise_priority
from maild.sla.policy import Deadline, Policy
from maild.store import pending, repo
from maild.store.models import Message, Ticket

log = structlog.get_logger("maild.pipeline")
CUSTOMER_FACING = ("inbound", "outbound")


@dataclass
class TicketWriter:
    outgoing: Outgoing
    clock: Clock
    ref_prefix: str
    organisation: Callable[[], Organisation]  # read at use: a reload swaps it
    sla: SlaEngine
    limiter: AutoLimiter

    def store_message(self, session: Session, ticket: Ticket, inbound: Inbound, *,
                      direction: str = "inbound", body: str | None = None) -> None:
        sender = inbound.sender
        from_addr = sender.address if sender else ""
        row: dict[str, Any] = dict(
            ticket_id=ticket.id, direction=direction, message_id=inbound.message_id,
            source_key=inbound.source.key if inbound.source else None,
            raw_sha256=inbound.raw_sha256,
            in_reply_to=" ".join(inbound.in_reply_to) or None,
            references=" ".join(inbound.references) or None,
            from_addr=from_addr, from_name=(sender.name if sender else "")[:200],
            to_addrs=repo.addresses(a.address for a in (*inbound.to, *inbound.cc)),
            subject=inbound.subject, date=inbound.date,
            body_text=inbound.body_text if body is None else body,
            automatic=",".join(inbound.automatic)[:200] or None, raw=inbound.raw,
            created_at=self.clock.now(),
        )
        noted = pending.of(session)
        if noted is not None:
            noted.add_message(row, inbound_from=from_addr if direction == "inbound" else None)
        else:
            session.add(Message(**row))

    def open_ticket(self, session: Session, *, requester: Address, subject: str,
                    classification: Classification, language: str, mailbox: str | None,
                    decision: ThreadDecision | None = None, via: str = "email") -> Ticket:
        now = self.clock.now()
        ticket = repo.insert_ticket(
            session,
            ref=repo.new_ref(self.ref_prefix),
            subject=(normalise_subject(subject) or "(no subject)")[:500],
            requester=requester.address, requester_name=requester.name[:200], status="new",
            level=classification.level, department=classification.department,
            priority=classification.priority, language=language, mailbox=mailbox,
            secret=repo.new_secret(), created_at=now, updated_at=now,
            linked_ticket_id=decision.linked_ticket_id if decision else None,
            tags=list(classification.tags), sla_pauses=[], sla_alerted=[],
        )
        repo.add_event(session, ticket, "created", now, via=via,
                       threaded_by=decision.by.value if decision else None,
                       flags=list(decision.flags) if decision else [],
                       linked_ticket=ticket.linked_ticket_id)
        repo.add_event(session, ticket, "classified", now, level=classification.level,
                       department=classification.department,
                       priority=classification.priority, tags=list(classification.tags),
                       rules=[{"rule": h.name, "matched": h.matched}
                              for h in classification.hits])
        return ticket

    def acknowledge(self, session: Session, ticket: Ticket, inbound: Inbound | None,
                    classification: Classification, to: Address, body: str) -> int:
        """Queue the acknowledgement (or canned answer) for a new ticket; 0 or 1."""
        draft = (respond.acknowledgement(inbound, classification, new_ticket=True)
                 if inbound is not None else respond.intake_acknowledgement(
                     ticket.language, classification, to))
        if draft is None:
            return 0
        if inbound is not None and self.limiter.safety.trusted_authserv_ids:
            draft = dataclasses.replace(draft, sender_verified=inbound.verified_sender)
        problem = smtp_problem(draft.to.address)
        blocked = f"{draft.to.address} {problem}" if problem else None
        blocked = blocked or self.limiter.blocked(session, ticket.id, draft.to.address,
                                                  self.clock.now(), new_ticket=True)
        if blocked:
            repo.add_event(session, ticket, "autoreply.suppressed", self.clock.now(),
                           to=draft.to.address, reason=blocked)
            log.warning("autoreply.limited", ticket_id=ticket.id, reason=blocked)
            return 0
        kind = "answer" if classification.answer else "acknowledgement"
        enqueue(session, ticket, draft, self.outgoing, at=self.clock.now(), body=body,
                kind=kind)
        return 1

    def customer_thread(self, session: Session, ticket: Ticket) -> tuple[str | None,
                                                                         tuple[str, ...]]:
        """In-Reply-To and References for mail to the customer: customer-facing ids only."""
        pending.settle(session)  # this batch's messages count too
        ids = [m for m in session.scalars(
            select(Message.message_id).where(
                Message.ticket_id == ticket.id, Message.direction.in_(CUSTOMER_FACING),
                Message.message_id.is_not(None)).order_by(Message.id))]
        last_inbound = session.scalar(
            select(Message.message_id).where(
                Message.ticket_id == ticket.id, Message.direction == "inbound",
                Message.message_id.is_not(None)).order_by(Message.id.desc()).limit(1))
        return last_inbound, tuple(i for i in ids if i)[-20:]

    def notify(self, session: Session, ticket: Ticket, team: str, *, headline: str,
               text: str, author: str = "") -> bool:
        """Queue a notification to a team (a name from the organisation, or an address)."""
        address = self.organisation().team_address(team)
        if not address:
            return False
        support = self.outgoing.support.address
        draft = OutboundDraft(
            template="notification", language="en", to=Address("", address),
            in_reply_to=None, references=(), automatic=True, direction="notification",
            reply_to=reply_address(support, ticket.ref, ticket.secret), headline=headline,
            text=text, author=author,
        )
        enqueue(session, ticket, draft, self.outgoing, at=self.clock.now(), body=text,
                kind="notification")
        repo.add_event(session, ticket, "notified", self.clock.now(), team=team,
                       to=address, about=headline)
        return True

    def default_team(self, ticket: Ticket) -> str:
        """Who hears about a ticket: its department's team if it has one, else its level's."""
        org = self.organisation()
        if ticket.department == "management":
            return "management"
        dept = org.departments.get(ticket.department or "")
        if dept is not None and dept.team:
            return ticket.department or ""
        return f"level{ticket.level}"

    def set_status(self, session: Session, ticket: Ticket, status: str, reason: str,
                   by: str | None = None) -> None:
        if ticket.status == status:
            return
        now = self.clock.now()
        repo.add_event(session, ticket, "status.changed", now, old=ticket.status, new=status,
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

    def escalate(self, session: Session, ticket: Ticket, level: int, *, by: str,
                 reason: str, author: str, text: str) -> None:
        repo.add_event(session, ticket, "escalated", self.clock.now(), by=by,
                       old=ticket.level, new=level, reason=reason)
        ticket.level = level
        self.notify(session, ticket, f"level{level}", author=author,
                    headline=f"Escalated to level {level} by {author}"
                             + (f": {reason}" if reason else ""), text=text)

    def sla_act(self, session: Session, ticket: Ticket, policy: Policy,
                deadline: Deadline) -> tuple[str, ...]:
        """What a warning or breach does, through the outbox like all mail."""
        what = deadline.target.replace("_", " ")
        due = deadline.due.isoformat(timespec="minutes")
        actions: list[str] = []
        if deadline.kind == "warn":
            teams = policy.spec.warn_notify or [ticket.assignee or self.default_team(ticket)]
            for team in teams:
                if self.notify(session, ticket, team, author="maild SLA check",
                               headline=f"SLA warning: {what} due {due}",
                               text=f"Policy {policy.name}: the {what} is due at {due}."):
                    actions.append(f"notified:{team}")
            return tuple(actions)
        spec = policy.spec.on_breach
        if spec.raise_priority and ticket.priority != raise_priority(ticket.priority):
            new = raise_priority(ticket.priority)
            repo.add_event(session, ticket, "priority.changed", self.clock.now(), by="sla",
                           old=ticket.priority, new=new)
            ticket.priority = new
            actions.append(f"priority:{new}")
        if spec.escalate and ticket.level < 4:
            self.escalate(session, ticket, ticket.level + 1, by="sla",
                          reason=f"SLA {what} breached (policy {policy.name})",
                          author="maild SLA check", text=self.first_customer_text(ticket))
            actions.append(f"escalated:{ticket.level}")
        for team in spec.notify or ([] if spec.escalate else [self.default_team(ticket)]):
            if self.notify(session, ticket, team, author="maild SLA check",
                           headline=f"SLA breached: {what} was due {due}",
                           text=f"Policy {policy.name}: the {what} was due at {due}."):
                actions.append(f"notified:{team}")
        return tuple(actions)

    @staticmethod
    def first_customer_text(ticket: Ticket) -> str:
        """What the customer first wrote: one column of one row, not the whole thread."""
        session = Session.object_session(ticket)
        if session is None:
            return ""
        noted = pending.of(session)
        if noted is not None and ticket.id in noted.senders:
            noted.write(session)  # its first customer mail may be waiting in the notes
        with session.no_autoflush:  # what is pending is not what we look for
            return session.scalar(
                select(Message.body_text).where(Message.ticket_id == ticket.id,
                                                Message.direction == "inbound")
                .order_by(Message.id).limit(1)) or ""
