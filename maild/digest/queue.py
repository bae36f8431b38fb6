"""Queue listings (the digest's and the commands') and the queue commands by mail.

An agent's queue address is signed (`support+q-<key>.<signature>@...`, the Reply-To of
every digest and queue answer) and belongs to one agent: a mail to it counts only from
that agent's directory address. The signature proves the sender got our mail; the From
check that it is theirs. Neither alone is enough: From is easy to forge, and a digest may
be forwarded. Mail to the plain support address never reveals a queue.

```
#mine                     my open tickets, by urgency
#queue [LEVEL|DEPARTMENT] unassigned tickets (of my levels and departments, or the one named)
#due                      breached or due today, mine and unassigned ones of my teams
#find WORDS               tickets whose subject, reference or customer has every word
#take REF                 assign the ticket to me
```
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import ColumnElement, and_, or_, select

from maild.agents.parse import Command, parse_agent_text
from maild.businesstime.calendar import BusinessCalendar
from maild.digest.lines import OPEN, Line, Urgency, line, listing, ordered
from maild.domain import Inbound, Outcome, Stop
from maild.lifecycle.jobs import waiting_since
from maild.outbound.render import TicketView
from maild.rules.schema import Agent
from maild.store.models import CommandMail, SlaAlert, Ticket
from maild.store.ticketstore import TicketStore
from maild.tickets.address import reply_address, signed_address
from maild.tickets.service import TicketService
from maild.tickets.staffmail import StaffMail

log = structlog.get_logger("maild.digest")

QUEUE_TAG = "q"
COMMANDS = ("mine", "queue", "due", "find", "take")
LISTED = (*OPEN, "waiting_customer")
MAX_LINES = 50  # a listing longer than this is cut: #find narrows it
_LINK = re.compile(r"([A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+)")


def agent_key(address: str) -> str:
    """An agent's part of their queue address: stable, and no address in clear."""
    return hashlib.sha256(address.lower().encode()).hexdigest()[:16]


def as_html(text: str) -> str:
    """The plain text of a listing as HTML, addresses clickable (mailto:)."""
    body = _LINK.sub(lambda m: f'<a href="mailto:{m.group(1)}">{m.group(1)}</a>',
                     html.escape(text, quote=False))
    return ('<!DOCTYPE html><html><body><pre style="font-family: sans-serif; '
            f'white-space: pre-wrap">{body}</pre></body></html>')


@dataclass
class Queues:
    """Listings of tickets for staff, each line with its secret reply address."""

    tickets: TicketService
    calendar: Callable[[], BusinessCalendar]  # the organisation's

    def queue_address(self, agent: str) -> str:
        out = self.tickets.outgoing
        key = agent_key(agent)
        return signed_address(out.support.address, QUEUE_TAG, key,
                              out.ids.sign(f"{QUEUE_TAG}-{key}"))

    def lines(self, store: TicketStore, tickets: Sequence[Ticket], now: datetime
              ) -> list[Line]:
        ids = [t.id for t in tickets]
        breached = set(store.session.scalars(select(SlaAlert.ticket_id).where(
            SlaAlert.ticket_id.in_(ids), SlaAlert.kind == "breach"))) if ids else set()
        support, cal = self.tickets.outgoing.support.address, self.calendar()
        return ordered([line(t, reply_address(support, t.ref, t.secret), now, cal,
                             breached=t.id in breached, waiting_since=waiting_since(t))
                        for t in tickets])

    def select(self, store: TicketStore, *where: ColumnElement[bool]) -> list[Ticket]:
        return list(store.session.scalars(select(Ticket).where(
            Ticket.status.in_(LISTED), *where).order_by(Ticket.id)))

    def mine(self, store: TicketStore, agent: str) -> list[Ticket]:
        return self.select(store, Ticket.assignee == agent)

    def unassigned(self, store: TicketStore, teams: Iterable[str]) -> list[Ticket]:
        """Unassigned tickets that the named teams hear about (TicketService.default_team)."""
        wanted = set(teams)
        return [t for t in self.select(store, Ticket.assignee.is_(None),
                                       Ticket.status.in_(OPEN))
                if self.tickets.default_team(t) in wanted]

    def teams_of(self, agent: Agent) -> list[str]:
        return [f"level{agent.level}", *agent.departments]


@dataclass
class QueueDesk:
    """Mail to an agent's queue address: their commands, answered at once."""

    queues: Queues

    def handle(self, store: TicketStore, ident: str, inbound: Inbound, now: datetime
               ) -> Outcome:
        tickets = self.queues.tickets
        assert inbound.sender is not None
        sender = inbound.sender.address.lower()
        if store.session.scalar(select(CommandMail.id).where(
                CommandMail.message_id == inbound.message_id)) is not None:
            return Outcome(Stop.DISCARD, "queue command mail seen before")
        org = tickets.organisation()
        owner = next((a for a in org.agents.values() if agent_key(a.address) == ident), None)
        if owner is None or owner.address.lower() != sender:
            why = f"queue address {ident} is not {sender}'s: nothing listed, nothing changed"
            self._keep(store, inbound, sender, now, f"refused: {why}")
            return Outcome(Stop.HOLD, why)
        parsed = parse_agent_text(inbound.body_text, COMMANDS)
        quoted = "\n".join(f"> {x}" for x in inbound.body_text.strip().splitlines())
        try:
            if parsed.unknown:
                raise ValueError(f"unknown command {parsed.unknown[0]!r}; use "
                                 + ", ".join(f"#{c}" for c in COMMANDS))
            if not parsed.commands:
                raise ValueError("no command on the first lines; use "
                                 + ", ".join(f"#{c}" for c in COMMANDS))
            parts = [self._apply(store, owner, c.name, c.argument.strip(), now)
                     for c in self._checked(store, parsed.commands)]
        except ValueError as exc:
            self._answer(store, owner, inbound, "refused", "Your mail was NOT applied",
                         f"{exc}\n\nWhat you wrote:\n{quoted}")
            self._keep(store, inbound, sender, now, f"refused: {exc}")
            return Outcome(Stop.DISCARD, "queue command refused (kept in command_mail)")
        self._answer(store, owner, inbound, "queue", "Your queue", "\n\n".join(parts))
        self._keep(store, inbound, sender, now,
                   "answered: " + " ".join(f"#{c.name}" for c in parsed.commands))
        log.info("queue.answered", agent=owner.address,
                 commands=[c.name for c in parsed.commands])
        return Outcome(Stop.DISCARD, "queue commands answered (kept in command_mail)")

    def _checked(self, store: TicketStore, commands: Sequence[Command]) -> list[_Cmd]:
        """Every command validated before any is applied."""
        out: list[_Cmd] = []
        org = self.queues.tickets.organisation()
        for c in commands:
            name, argument = c.name, c.argument.strip()
            if name == "take" and self._by_ref(store, argument) is None:
                raise ValueError(f"#take: no open ticket {argument or '(no reference)'}")
            if name == "find" and not argument:
                raise ValueError("#find: write the words to look for after #find")
            if name == "queue" and argument and not (
                    argument.isdigit() and 1 <= int(argument) <= 4) and (
                    argument not in org.departments):
                raise ValueError(f"#queue: {argument!r} is neither a level (1-4) nor a "
                                 f"department ({', '.join(sorted(org.departments))})")
            out.append(_Cmd(name, argument))
        return out

    def _by_ref(self, store: TicketStore, ref: str) -> Ticket | None:
        return store.session.scalar(select(Ticket).where(
            Ticket.ref == ref.upper(), Ticket.status.in_(LISTED)))

    def _apply(self, store: TicketStore, agent: Agent, name: str, argument: str,
               now: datetime) -> str:
        q, language = self.queues, self.queues.tickets.staff_language
        if name == "take":
            ticket = self._by_ref(store, argument)
            assert ticket is not None
            q.tickets.assign(store, ticket, agent.address, by=agent.address)
            return (f"#take {ticket.ref}: assigned to you.\n\n"
                    + listing(q.lines(store, [ticket], now), language))
        if name == "mine":
            found = q.mine(store, agent.address)
        elif name == "queue":
            teams = ([f"level{argument}"] if argument.isdigit() else [argument]) if argument \
                else q.teams_of(agent)
            found = q.unassigned(store, teams)
        elif name == "due":
            found = [*q.mine(store, agent.address), *q.unassigned(store, q.teams_of(agent))]
        else:
            found = self._find(store, argument)
        lines = q.lines(store, found, now)
        if name == "due":
            lines = [x for x in lines if x.urgency in (Urgency.BREACHED, Urgency.TODAY)]
        more = f"\n(and {len(lines) - MAX_LINES} more)" if len(lines) > MAX_LINES else ""
        title = f"#{name}" + (f" {argument}" if argument else "")
        return f"{title}: {len(lines)}\n\n{listing(lines[:MAX_LINES], language)}{more}"

    def _find(self, store: TicketStore, words: str) -> list[Ticket]:
        terms = [w for w in words.split() if w][:10]
        like = [or_(Ticket.subject.ilike(f"%{w}%"), Ticket.ref.ilike(w),
                    Ticket.requester.ilike(f"%{w}%")) for w in terms]
        return self.queues.select(store, and_(*like))[:200]

    def _answer(self, store: TicketStore, agent: Agent, inbound: Inbound, template: str,
                headline: str, text: str) -> None:
        tickets = self.queues.tickets
        tickets.mail_staff(store, StaffMail(
            to=agent.address, template=template, headline=headline, text=text,
            about=TicketView(ref="", subject=inbound.subject or "(no subject)", level=0,
                             department=None, priority="-", status="-"),
            reply_to=self.queues.queue_address(agent.address), author="maild",
            in_reply_to=inbound.message_id, html=as_html(text)))

    @staticmethod
    def _keep(store: TicketStore, inbound: Inbound, sender: str, now: datetime,
              result: str) -> None:
        store.session.add(CommandMail(message_id=inbound.message_id, from_addr=sender,
                                      raw=inbound.raw, received_at=now, result=result))


@dataclass(frozen=True)
class _Cmd:
    name: str
    argument: str
