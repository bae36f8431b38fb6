"""Mail to a proposed canned answer's address (pipeline/route.py checked the signature): a
knowledge owner's decision. Only the configured owners (`knowledge.owners`) decide;
anything else changes nothing and is held (an agent of the directory is told why, with
their text quoted; a stranger is told nothing).

```
#accept                       the proposed name, language and text
#accept vpn_reset de          another name or language; text below replaces the proposal's
#decline too specific to this customer's setup
```
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from maild.agents.parse import parse_agent_text
from maild.agents.review import Reviewed
from maild.domain import Inbound, Outcome, Stop
from maild.knowledge import proposals
from maild.knowledge.proposals import Knowledge, ProposalError
from maild.store.models import Ticket
from maild.store.ticketstore import TicketStore
from maild.tickets.service import TicketService
from maild.training.drafts import quoted

log = structlog.get_logger("maild.agents")
OWNER_COMMANDS = ("accept", "decline")


@dataclass
class SolutionDesk:
    tickets: TicketService
    owners: tuple[str, ...]

    def handle(self, store: TicketStore, ident: str, inbound: Inbound) -> Reviewed | Outcome:
        assert inbound.sender is not None
        sender = inbound.sender.address.lower()
        found = proposals.proposal(store, int(ident)) if ident.isdigit() else None
        if found is None:
            return Outcome(Stop.HOLD, f"solution address {ident}: no such proposal")
        ticket = store.ticket(found.ticket_id)
        if sender not in self.owners:
            why = f"{sender} is not a knowledge owner (setting knowledge.owners)"
            if sender in self.tickets.organisation().agents:  # a stranger learns nothing
                self._refuse(store, ticket, found.id, ident, sender, why, inbound)
            return Outcome(Stop.HOLD, f"{why}: not applied")
        parsed = parse_agent_text(inbound.body_text, OWNER_COMMANDS)
        self.tickets.add_message(store, ticket, inbound, direction="note", body=parsed.text)
        desk = Knowledge(self.tickets, self.owners)
        names = [c.name for c in parsed.commands]
        try:
            if parsed.unknown:
                raise ProposalError(f"unknown command {parsed.unknown[0]!r}; use #accept or "
                                    "#decline")
            if len(names) != 1:
                raise ProposalError("write exactly one of #accept or #decline on the first "
                                    "line")
            if found.status != "open":
                raise ProposalError(f"this proposal was decided already ({found.status} by "
                                    f"{found.decided_by})")
            argument = parsed.commands[0].argument
            if names == ["accept"]:
                words = argument.split()
                desk.accept(store, found, by=sender,
                            name=words[0].lower() if words else found.name,
                            language=words[1].lower() if len(words) > 1 else found.language,
                            text=parsed.text)
            else:
                reason = "\n".join(t for t in (argument, parsed.text) if t)
                if not reason:
                    raise ProposalError("#decline needs a reason")
                desk.decline(store, found, by=sender, reason=reason)
        except ProposalError as exc:
            self._refuse(store, ticket, found.id, ident, sender, str(exc), inbound)
            return Reviewed(ticket.id, 0)
        log.info("solution.decided", proposal=found.id, decision=names[0], by=sender)
        return Reviewed(ticket.id, 0)

    def _refuse(self, store: TicketStore, ticket: Ticket, proposal: int, ident: str,
                sender: str, why: str, inbound: Inbound) -> None:
        """Tell a member of staff why their decision was not applied, their text quoted."""
        self.tickets.event(store, ticket, "solution.refused", proposal=proposal, by=sender,
                           error=why)
        self.tickets.notify(store, ticket, sender, author="maild", template="proposal",
                            headline="Your decision was NOT applied",
                            text=f"{why}.\n\nWhat you wrote:\n{quoted(inbound.body_text)}",
                            reply_to=Knowledge(self.tickets, self.owners).sol_address(ident))
