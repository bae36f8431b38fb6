"""Mail to a review address (pipeline/route.py sent it here after checking the signature):
a mentor's decision on a trainee's draft, or the answer to an agent's #ask.

The signature proves the sender got our mail; the directory decides whether they may act:
only the draft's mentor (that agent, or a full agent of that team) decides a draft, and
only an agent of the directory answers a question. Anything less changes nothing and is
held for a person to look at; a colleague of the directory is told why, with their text
quoted, a stranger is told nothing.

```
#approve                      send the draft as it is
#approve                      (then, on the next lines, an edited text: send that instead)
#reject Please check the contract first; the notice period is 3 months.
```
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from maild.agents.parse import parse_agent_text
from maild.domain import Inbound, Outcome, Stop
from maild.rules.schema import Agent
from maild.store.models import Ticket
from maild.store.ticketstore import TicketStore
from maild.tickets.service import TicketService
from maild.training import drafts
from maild.training.drafts import ASK_PREFIX, Drafts, quoted
from maild.training.mentor import may_decide

log = structlog.get_logger("maild.agents")
REVIEW_COMMANDS = ("approve", "reject")


@dataclass(frozen=True)
class Reviewed:
    ticket_id: int
    queued: int


@dataclass
class ReviewDesk:
    tickets: TicketService

    def handle(self, store: TicketStore, ident: str, inbound: Inbound) -> Reviewed | Outcome:
        assert inbound.sender is not None
        sender = inbound.sender.address.lower()
        agent = self.tickets.organisation().agents.get(sender)
        if ident.startswith(ASK_PREFIX):
            return self._answer(store, ident.removeprefix(ASK_PREFIX), agent, inbound)
        if not ident.isdigit():
            return Outcome(Stop.HOLD, f"review address {ident}: no such draft")
        draft = drafts.draft(store, int(ident))
        if draft is None:
            return Outcome(Stop.HOLD, f"review address {ident}: no such draft")
        ticket = store.ticket(draft.ticket_id)
        if agent is None or not may_decide(draft.mentor, draft.author, agent,
                                           self.tickets.organisation()):
            why = f"{sender} is not the mentor of draft {ident} ({draft.mentor})"
            if agent is not None:  # a colleague is told; a stranger learns nothing
                self._refuse(store, ticket, sender, ident, why, inbound)
            return Outcome(Stop.HOLD, f"{why}: not applied")
        self.tickets.add_message(store, ticket, inbound, direction="note",
                                 body=parse_agent_text(inbound.body_text,
                                                       REVIEW_COMMANDS).text)
        parsed = parse_agent_text(inbound.body_text, REVIEW_COMMANDS)
        names = [c.name for c in parsed.commands]
        problem = None
        if parsed.unknown:
            problem = f"unknown command {parsed.unknown[0]!r}; use #approve or #reject"
        elif len(names) != 1:
            problem = "write exactly one of #approve or #reject on the first line"
        elif draft.status != "waiting":
            problem = (f"this draft was decided already ({draft.status} by "
                       f"{draft.decided_by})")
        elif names == ["reject"] and not (parsed.commands[0].argument or parsed.text):
            problem = "#reject needs your advice for the trainee"
        if problem is not None:
            self._refuse(store, ticket, sender, ident, problem, inbound)
            return Reviewed(ticket.id, 0)
        desk = Drafts(self.tickets)
        if names == ["approve"]:
            edited = "\n".join(t for t in (parsed.commands[0].argument, parsed.text) if t)
            sent = desk.approve(store, draft, by=agent, edited=edited)
            log.info("draft.approved", draft=draft.id, ticket_id=ticket.id, by=sender)
            return Reviewed(ticket.id, int(sent))
        advice = "\n".join(t for t in (parsed.commands[0].argument, parsed.text) if t)
        desk.reject(store, draft, by=agent, advice=advice)
        log.info("draft.rejected", draft=draft.id, ticket_id=ticket.id, by=sender)
        return Reviewed(ticket.id, 0)

    def _refuse(self, store: TicketStore, ticket: Ticket, sender: str, ident: str,
                why: str, inbound: Inbound) -> None:
        """Tell a member of staff why their review was not applied, their text quoted."""
        self.tickets.event(store, ticket, "review.rejected", draft=int(ident), by=sender,
                           error=why)
        self.tickets.notify(store, ticket, sender, author="maild",
                            headline="Your review was NOT applied",
                            text=f"{why}.\n\nWhat you wrote:\n{quoted(inbound.body_text)}",
                            reply_to=Drafts(self.tickets).review_address(ident),
                            template="review")

    def _answer(self, store: TicketStore, ticket_id: str, agent: Agent | None,
                inbound: Inbound) -> Reviewed | Outcome:
        """The answer to a question lands on the ticket as an internal note."""
        assert inbound.sender is not None
        if agent is None or not ticket_id.isdigit():
            return Outcome(Stop.HOLD, f"answer to a question from {inbound.sender.address}, "
                           "who is not in the agents directory: not applied")
        ticket = store.ticket(int(ticket_id))
        text = parse_agent_text(inbound.body_text, ()).text
        self.tickets.add_message(store, ticket, inbound, direction="note", body=text)
        self.tickets.note(store, ticket, by=agent.address, level=agent.level)
        self.tickets.event(store, ticket, "question.answered", by=agent.address)
        return Reviewed(ticket.id, 0)
