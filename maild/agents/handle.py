"""Agents' mail on a ticket: replies relayed to customers, internal notes, commands.

The pipeline's routing has already made sure that the sender is in the agents directory
AND wrote to that ticket's secret reply address. Here the mail is read (commands on its
first lines, then the text) and applied through the ticket service: all of it, or, when a
command is wrong, nothing but a note of the attempt and a mail telling the agent why.
Levels that do not write to customers (3 and 4 by default) always produce internal notes
for the nearest level below that does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parseaddr

import structlog

from maild.agents.parse import AgentText, Command, parse_agent_text
from maild.domain import Address, Inbound
from maild.knowledge.catalogue import SYSTEM_TEMPLATES, answers, catalogue, catalogue_text
from maild.knowledge.compose import AnswerText, find_answer, render_answer
from maild.knowledge.proposals import NAME_RE, Knowledge, remind_resolver
from maild.outbound.compose import smtp_problem
from maild.rules.engine import Organisation
from maild.rules.schema import PRIORITIES, Agent
from maild.store.models import Ticket
from maild.store.ticketstore import TicketStore
from maild.tickets.service import TicketService
from maild.training.drafts import Drafts
from maild.training.mentor import next_level_team
from maild.wishes.register import Register, WishError, read_command

WISH_COMMANDS = ("wish", "no")  # `#no TITLE`: the reply says "not possible"; a wish too

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


def cc_target(argument: str) -> tuple[str, str]:
    """`add ADDRESS` or `remove ADDRESS` (a bare address or `Name <address>`)."""
    verb, _, rest = argument.strip().partition(" ")
    address = parseaddr(rest.strip())[1].strip("<> ").lower()
    if verb.lower() not in ("add", "remove") or "@" not in address:
        raise CommandError("#cc: use '#cc add ADDRESS' or '#cc remove ADDRESS'")
    return verb.lower(), address


def _validate_cc(cmd: Command, ticket: Ticket, people: Callable[[], dict[str, bool]],
                 ours: Callable[[str], bool]) -> None:
    verb, address = cc_target(cmd.argument)
    if address == ticket.requester:
        raise CommandError(f"#cc: {address} is the ticket's requester")
    if verb == "add" and ours(address):
        raise CommandError(f"#cc: {address} is one of our own addresses; staff are never "
                           "copied on mail to customers")
    if verb == "add" and smtp_problem(address):
        raise CommandError(f"#cc: {address} {smtp_problem(address)}")
    if verb == "remove" and address not in people():
        raise CommandError(f"#cc: {address} does not take part in this ticket")


def _validate(commands: tuple[Command, ...], ticket: Ticket, org: Organisation,
              people: Callable[[], dict[str, bool]], ours: Callable[[str], bool]) -> None:
    """Reject the whole mail before anything is applied (no half-applied commands)."""
    for cmd in commands:
        if cmd.name == "cc":
            _validate_cc(cmd, ticket, people, ours)
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
        elif cmd.name == "solution" and not NAME_RE.match(cmd.argument.lower()):
            raise CommandError("#solution: give the canned answer a name (a-z, 0-9, _)")
        elif cmd.name == "solution" and cmd.argument.lower() in SYSTEM_TEMPLATES:
            raise CommandError(f"#solution: '{cmd.argument}' is the name of maild's own mail")
        elif cmd.name == "ask" and not cmd.argument:
            raise CommandError("#ask: write your question after #ask")
        elif cmd.name == "assign":
            who = cmd.argument.lower()
            if who != "me" and who not in org.agents:
                raise CommandError(f"#assign: {cmd.argument} is not in the agents directory")


def note_level(org: Organisation, level: int) -> int:
    """The nearest level below `level` that writes to customers (2 by default)."""
    for candidate in range(level - 1, 0, -1):
        info = org.levels.get(candidate)
        if info is not None and info.writes_to_customers:
            return candidate
    return 1


_STATUS_COMMANDS = {"pending": "waiting_customer", "resolve": "resolved", "close": "closed"}


class AgentDesk:
    def __init__(self, tickets: TicketService, knowledge_owners: tuple[str, ...] = ()) -> None:
        self._t = tickets
        self._wishes = Register(tickets)
        self._owners = knowledge_owners

    def handle_reply(self, store: TicketStore, ticket: Ticket, agent: Agent,
                     inbound: Inbound) -> Applied:
        org = self._t.organisation()
        parsed = parse_agent_text(inbound.body_text)
        try:
            if parsed.unknown:
                raise CommandError(f"unknown command {parsed.unknown[0]!r}; known: "
                                   "#note #escalate #department #priority #pending #resolve "
                                   "#close #assign #cc #wish #no #ask #answer #answers "
                                   "#solution #no-solution")
            _validate(parsed.commands, ticket, org,
                      lambda: store.participant_list(ticket.id), self._t.is_ours)
            for cmd in parsed.commands:
                if cmd.name in WISH_COMMANDS:
                    self._wishes.check(store, read_command(cmd.name, cmd.argument))
            answer = self._answer_of(parsed, agent, org)
            if any(c.name == "solution" for c in parsed.commands) and not parsed.text:
                raise CommandError("#solution: write the solution's text below the command")
        except (CommandError, WishError) as exc:
            self._t.add_message(store, ticket, inbound, direction="note")
            store.add_event(ticket.id, "command.rejected", self._t.clock.now(),
                            {"by": agent.address, "error": str(exc)})
            self._tell(store, ticket, agent, inbound, str(exc))
            return Applied(relayed=False, note=False, events=("command.rejected",))
        return self._apply(store, ticket, agent, inbound, parsed, org, answer)

    def _answer_of(self, parsed: AgentText, agent: Agent, org: Organisation
                   ) -> AnswerText | None:
        """The canned answer the mail asks for (checked to exist), or None."""
        leading = next((c.argument for c in parsed.commands if c.name == "answer"), None)
        answer = find_answer(parsed.text, leading)
        if answer is None:
            return None
        known = [a.name for a in answers(self._t.outgoing.templates)]
        if answer.name not in known:
            raise CommandError(f"#answer: no canned answer '{answer.name}' (known: "
                               f"{', '.join(known) or 'none'}; #answers WORD lists them)")
        if (any(c.name in ("note", "ask") for c in parsed.commands)
                or not org.levels[agent.level].writes_to_customers):
            raise CommandError("#answer writes to the customer: not with #note or #ask, "
                               f"and not from level {agent.level}")
        return answer

    def refuse(self, store: TicketStore, ticket: Ticket, agent: Agent, inbound: Inbound,
               reason: str) -> None:
        """Staff mail that may not act on the ticket (no valid secret): nothing of it is
        applied; the agent is told why, with their text to send again the right way."""
        self._tell(store, ticket, agent, inbound, reason + ". Please reply to a "
                   "notification of the ticket (its Reply-To is the ticket's own address).")

    def _tell(self, store: TicketStore, ticket: Ticket, agent: Agent, inbound: Inbound,
              why: str) -> None:
        """The mail that tells an agent their mail was not applied: why, and what they
        wrote quoted back, so nothing has to be typed again."""
        quoted = "\n".join(f"> {line}" for line in inbound.body_text.strip().splitlines())
        self._t.notify(store, ticket, agent.address, author="maild",
                       headline="Your mail was NOT applied or sent",
                       text=f"{why}\n\nWhat you wrote:\n{quoted}")

    def _apply(self, store: TicketStore, ticket: Ticket, agent: Agent, inbound: Inbound,
               parsed: AgentText, org: Organisation, answer: AnswerText | None) -> Applied:
        writes = org.levels[agent.level].writes_to_customers
        asking = next((c for c in parsed.commands if c.name == "ask"), None)
        internal = (any(c.name in ("note", "ask") for c in parsed.commands) or not writes)
        self._t.add_message(store, ticket, inbound, direction="note", body=parsed.text)
        events: list[str] = []
        relayed = False
        # Who is in the conversation is settled first: the answer in the same mail goes to
        # the participants as the agent left them.
        events += [e for cmd in parsed.commands if cmd.name == "cc"
                   for e in self._command(store, ticket, agent, cmd)]
        if answer is not None:
            relayed = self._send_answer(store, ticket, agent, answer, events)
        elif asking is not None:
            # Internal: to the trainee's mentor, or the next level's team.
            team = (agent.mentor if agent.trainee and agent.mentor
                    else next_level_team(agent.level))
            question = "\n\n".join(t for t in (asking.argument, parsed.text) if t)
            Drafts(self._t).ask(store, ticket, agent, team, question)
            events.append("question.asked")
        elif parsed.text and not internal and agent.trainee:
            # A trainee's reply is held for the mentor (maild/training/): nothing is sent.
            Drafts(self._t).hold(store, ticket, agent, parsed.text)
            events.append("draft.held")
        elif parsed.text and not internal:
            relayed = self._t.reply(store, ticket, agent=Address(agent.name, agent.address),
                                    text=parsed.text)
            events.append("replied")
        elif parsed.text:
            self._t.note(store, ticket, by=agent.address, level=agent.level)
            events.append("note.added")
            if not writes:
                below = note_level(org, agent.level)
                self._t.notify(store, ticket, f"level{below}", author=agent.name,
                               headline=f"Internal note from level {agent.level} "
                                        f"({agent.name})", text=parsed.text)
        for cmd in parsed.commands:
            if cmd.name != "cc":
                events.extend(self._command(store, ticket, agent, cmd, parsed.text))
        if ticket.status == "resolved" and "status.changed" in events and remind_resolver(
                self._t, store, ticket, agent):
            events.append("solution.reminded")
        ticket.updated_at = self._t.clock.now()
        log.info("agent.mail", ticket_id=ticket.id, agent=agent.address, relayed=relayed,
                 commands=[c.name for c in parsed.commands])
        return Applied(relayed=relayed, note=internal and bool(parsed.text),
                       events=tuple(events))

    def _send_answer(self, store: TicketStore, ticket: Ticket, agent: Agent,
                     answer: AnswerText, events: list[str]) -> bool:
        """A canned answer, rendered for this ticket, with the agent's text around it (held
        for the mentor when a trainee sends it); whether it went to the customer."""
        text = render_answer(self._t.outgoing, ticket, answer,
                             store.first_customer_text(ticket.id))
        self._t.event(store, ticket, "answer.used", name=answer.name, by=agent.address)
        if agent.trainee:
            Drafts(self._t).hold(store, ticket, agent, text, template="canned")
            events.append("draft.held")
            return False
        events.append("replied")
        return self._t.reply(store, ticket, agent=Address(agent.name, agent.address),
                             text=text, template="canned")

    def _catalogue(self, store: TicketStore, ticket: Ticket, agent: Agent, word: str) -> None:
        """#answers [WORD]: the canned answers, to the agent who asked."""
        entries = catalogue(self._t.outgoing.templates, store.session, self._t.clock.now(),
                            word)
        self._t.notify(store, ticket, agent.address, author="maild",
                       headline="Canned answers" + (f" matching '{word}'" if word else ""),
                       text=catalogue_text(entries, word))

    def _knowledge(self, store: TicketStore, ticket: Ticket, agent: Agent, cmd: Command,
                   text: str) -> list[str]:
        """#solution, #no-solution and #answers (maild/knowledge/)."""
        if cmd.name == "solution":
            Knowledge(self._t, self._owners).propose(store, ticket, agent,
                                                     cmd.argument.lower(), text)
            return ["solution.proposed"]
        if cmd.name == "no-solution":
            self._t.event(store, ticket, "solution.none", by=agent.address)
            return ["solution.none"]
        self._catalogue(store, ticket, agent, cmd.argument)
        return ["catalogue.sent"]

    def _command(self, store: TicketStore, ticket: Ticket, agent: Agent,
                 cmd: Command, text: str = "") -> list[str]:
        by = agent.address
        if cmd.name in ("solution", "no-solution", "answers"):
            return self._knowledge(store, ticket, agent, cmd, text)
        if cmd.name == "escalate":
            level, reason = _escalation_target(ticket, cmd.argument)
            self._t.escalate(store, ticket, level, by=by, reason=reason, author=agent.name)
            return ["escalated"]
        if cmd.name == "department":
            self._t.move(store, ticket, cmd.argument, by=by, author=agent.name)
            return ["department.changed"]
        if cmd.name == "priority":
            self._t.set_priority(store, ticket, cmd.argument.lower(), by=by)
            return ["priority.changed"]
        if cmd.name == "assign":
            who = by if cmd.argument.lower() == "me" else cmd.argument.lower()
            self._t.assign(store, ticket, who, by=by)
            return ["assigned"]
        if cmd.name == "cc":
            verb, address = cc_target(cmd.argument)
            if verb == "add":
                self._t.add_participant(store, ticket, address, by=by)
                return ["participant.added"]
            self._t.remove_participant(store, ticket, address, by=by)
            return ["participant.removed"]
        if cmd.name in WISH_COMMANDS:
            self._wishes.record(store, ticket, by=by,
                                command=read_command(cmd.name, cmd.argument))
            return ["wish.recorded"]
        if cmd.name in _STATUS_COMMANDS:
            self._t.set_status(store, ticket, _STATUS_COMMANDS[cmd.name], f"#{cmd.name}", by)
            return ["status.changed"]
        return []  # note: handled with the text
