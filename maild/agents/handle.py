"""Agents' mail: replies relayed to customers, internal notes, commands, and intake.

An agent's mail acts on a ticket only when its sender is in the agents directory AND it was
sent to that ticket's secret reply address. The agent's own address never reaches the
customer: the relay is composed from the support address under the agent's name.
Levels that do not write to customers (3 and 4 by default) always produce internal notes
for the nearest level below that does.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import structlog
from sqlalchemy.orm import Session

from maild.agents.parse import AgentText, Command, parse_agent_text
from maild.domain import Address, Classification, Inbound, OutboundDraft
from maild.outbound.compose import smtp_problem
from maild.outbound.queue import enqueue
from maild.pipeline.persist import TicketWriter
from maild.rules.engine import Organisation
from maild.rules.schema import PRIORITIES, Agent
from maild.store import repo
from maild.store.models import Message, Ticket

log = structlog.get_logger("maild.agents")


class CommandError(ValueError):
    """A command the agent must correct; nothing of that mail is applied."""


@dataclass(frozen=True)
class Applied:
    relayed: bool
    note: bool
    events: tuple[str, ...]


def _escalation_target(ticket: Ticket, argument: str) -> tuple[int, str]:
    first, _, rest = argument.partition(" ")
    if first.isdigit():
        return int(first), rest.strip()
    return min(ticket.level + 1, 4), argument.strip()


def _validate(commands: tuple[Command, ...], ticket: Ticket, org: Organisation) -> None:
    """Reject the whole mail before anything is applied (no half-applied commands)."""
    for cmd in commands:
        if cmd.name == "escalate":
            level, _ = _escalation_target(ticket, cmd.argument)
            if not 1 <= level <= 4 or level <= ticket.level:
                raise CommandError(f"#escalate: level {level} is not above level "
                                   f"{ticket.level}")
        elif cmd.name == "department" and cmd.argument not in org.departments:
            raise CommandError(f"#department: unknown department '{cmd.argument}' (known: "
                               f"{', '.join(sorted(org.departments))})")
        elif cmd.name == "priority" and cmd.argument.lower() not in PRIORITIES:
            raise CommandError(f"#priority: use one of {', '.join(PRIORITIES)}")
        elif cmd.name == "assign":
            who = cmd.argument.lower()
            if who != "me" and who not in org.agents:
                raise CommandError(f"#assign: {cmd.argument} is not in the agents directory")


def intake_classification(base: Classification, fields: dict[str, str],
                          org: Organisation) -> Classification:
    """The rules' decision, overridden by what the intake chose (#level, #department ...)."""
    changes: dict[str, object] = {}
    if "level" in fields:
        if not fields["level"].isdigit() or not 1 <= int(fields["level"]) <= 4:
            raise ValueError(f"#level must be 1 to 4, not {fields['level']!r}")
        changes["level"] = int(fields["level"])
    if "department" in fields:
        if fields["department"] not in org.departments:
            raise ValueError(f"unknown department {fields['department']!r}")
        changes["department"] = fields["department"]
    if "priority" in fields:
        if fields["priority"].lower() not in PRIORITIES:
            raise ValueError(f"#priority must be one of {', '.join(PRIORITIES)}")
        changes["priority"] = fields["priority"].lower()
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def note_level(org: Organisation, level: int) -> int:
    """The nearest level below `level` that writes to customers (2 by default)."""
    for candidate in range(level - 1, 0, -1):
        info = org.levels.get(candidate)
        if info is not None and info.writes_to_customers:
            return candidate
    return 1


class AgentDesk:
    def __init__(self, writer: TicketWriter) -> None:
        self._w = writer

    def handle_reply(self, session: Session, ticket: Ticket, agent: Agent,
                     inbound: Inbound) -> Applied:
        org = self._w.organisation()
        parsed = parse_agent_text(inbound.body_text)
        try:
            if parsed.unknown:
                raise CommandError(f"unknown command {parsed.unknown[0]!r}; known: "
                                   "#note #escalate #department #priority #pending #resolve "
                                   "#close #assign")
            _validate(parsed.commands, ticket, org)
        except CommandError as exc:
            self._w.store_message(session, ticket, inbound, direction="note")
            repo.add_event(session, ticket, "command.rejected", self._w.clock.now(),
                           by=agent.address, error=str(exc))
            self._w.notify(session, ticket, agent.address, author="maild",
                           headline="Your mail was NOT applied or sent", text=str(exc))
            return Applied(relayed=False, note=False, events=("command.rejected",))
        return self._apply(session, ticket, agent, inbound, parsed, org)

    def _apply(self, session: Session, ticket: Ticket, agent: Agent, inbound: Inbound,
               parsed: AgentText, org: Organisation) -> Applied:
        now = self._w.clock.now()
        writes = org.levels[agent.level].writes_to_customers
        internal = any(c.name == "note" for c in parsed.commands) or not writes
        self._w.store_message(session, ticket, inbound, direction="note", body=parsed.text)
        events: list[str] = []
        relayed = False
        if parsed.text and not internal:
            self._relay(session, ticket, agent, parsed.text)
            relayed = True
            events.append("replied")
            ticket.awaiting_reply_since = None
            if ticket.first_response_at is None:
                ticket.first_response_at = now
            if ticket.status == "new":
                self._w.set_status(session, ticket, "open", "agent replied", agent.address)
        elif parsed.text:
            repo.add_event(session, ticket, "note.added", now, by=agent.address,
                           level=agent.level)
            events.append("note.added")
            if not writes:
                below = note_level(org, agent.level)
                self._w.notify(session, ticket, f"level{below}", author=agent.name,
                               headline=f"Internal note from level {agent.level} "
                                        f"({agent.name})", text=parsed.text)
        for cmd in parsed.commands:
            events.extend(self._command(session, ticket, agent, cmd))
        ticket.updated_at = now
        log.info("agent.mail", ticket_id=ticket.id, agent=agent.address, relayed=relayed,
                 commands=[c.name for c in parsed.commands])
        return Applied(relayed=relayed, note=internal and bool(parsed.text),
                       events=tuple(events))

    def _relay(self, session: Session, ticket: Ticket, agent: Agent, text: str) -> None:
        problem = smtp_problem(ticket.requester)
        if problem is not None:
            repo.add_event(session, ticket, "reply.failed", self._w.clock.now(),
                           by=agent.address, error=f"{ticket.requester} {problem}")
            self._w.notify(session, ticket, agent.address, author="maild",
                           headline="Your answer could not be sent",
                           text=f"{ticket.requester} {problem}. Please answer from your own "
                                "mail client.")
            return
        in_reply_to, references = self._w.customer_thread(session, ticket)
        draft = OutboundDraft(
            template="reply", language=ticket.language,
            to=Address(ticket.requester_name, ticket.requester), in_reply_to=in_reply_to,
            references=references, automatic=False, sender_name=(
                f"{agent.name} ({self._w.outgoing.support.name})"),
            text=text, author=agent.name,
        )
        enqueue(session, ticket, draft, self._w.outgoing, at=self._w.clock.now(), body=text,
                kind="reply")

    def _command(self, session: Session, ticket: Ticket, agent: Agent,
                 cmd: Command) -> list[str]:
        now = self._w.clock.now()
        by = agent.address
        if cmd.name == "escalate":
            level, reason = _escalation_target(ticket, cmd.argument)
            self._w.escalate(session, ticket, level, by=by, reason=reason, author=agent.name,
                             text=self._w.first_customer_text(ticket))
            return ["escalated"]
        if cmd.name == "department":
            repo.add_event(session, ticket, "department.changed", now, by=by,
                           old=ticket.department, new=cmd.argument)
            ticket.department = cmd.argument
            self._w.notify(session, ticket, cmd.argument, author=agent.name,
                           headline=f"Moved to {cmd.argument} by {agent.name}",
                           text=self._w.first_customer_text(ticket))
            return ["department.changed"]
        if cmd.name == "priority":
            repo.add_event(session, ticket, "priority.changed", now, by=by,
                           old=ticket.priority, new=cmd.argument.lower())
            ticket.priority = cmd.argument.lower()
            return ["priority.changed"]
        if cmd.name == "assign":
            who = by if cmd.argument.lower() == "me" else cmd.argument.lower()
            repo.add_event(session, ticket, "assigned", now, by=by, old=ticket.assignee,
                           new=who)
            ticket.assignee = who
            return ["assigned"]
        status = {"pending": "waiting_customer", "resolve": "resolved", "close": "closed"}
        if cmd.name in status:
            self._w.set_status(session, ticket, status[cmd.name], f"#{cmd.name}", by)
            return ["status.changed"]
        return []  # note: handled with the text

    def open_on_behalf(self, session: Session, *, customer: Address, subject: str,
                       text: str, classification: Classification, language: str,
                       opened_by: str, inbound: Inbound | None = None) -> Ticket:
        """Intake: a ticket for a caller, who gets the acknowledgement by email."""
        ticket = self._w.open_ticket(session, requester=customer, subject=subject,
                                     classification=classification, language=language,
                                     mailbox=None, via="intake")
        repo.add_event(session, ticket, "intake", self._w.clock.now(), by=opened_by)
        if inbound is not None:
            self._w.store_message(session, ticket, inbound, direction="note", body=text)
        else:
            now = self._w.clock.now()
            session.add(Message(ticket=ticket, direction="note", from_addr=opened_by,
                                subject=subject, body_text=text, date=now, created_at=now))
        self._w.acknowledge(session, ticket, None, classification, customer, text)
        self._w.notify(session, ticket, self._w.default_team(ticket), author=opened_by,
                       headline=f"New ticket logged by intake ({opened_by})", text=text)
        for team in classification.notify:
            self._w.notify(session, ticket, team, headline="New ticket", text=text)
        self._w.sla.refresh(ticket)
        return ticket
