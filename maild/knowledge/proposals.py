"""Solutions that flow back: `#solution NAME` proposes a text as a canned answer; the
knowledge owners get it by mail with a signed address (`support+sol-<id>.<signature>@`);
`#accept` makes it a canned answer at once (a template file `<name>.<lang>.txt` in the
admin's templates folder, and a row in the database that writes a lost file again at
start), `#decline` records why not. Every step is an event on the source ticket."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.rules.schema import Agent
from maild.store.models import CannedAnswerRow, Event, Proposal, Ticket
from maild.store.ticketstore import TicketStore
from maild.tickets.address import signed_address
from maild.tickets.service import TicketService

SOL_TAG = "sol"
NAME_RE = re.compile(r"^[a-z0-9_]{1,64}$")
_SUBJECT = "Subject: [{{ ticket.ref }}] {{ ticket.subject }}"


class ProposalError(ValueError):
    """What the owner or agent must correct; nothing was applied."""


def template_text(text: str) -> str:
    """A canned answer's file: the ticket's subject, and the text as written (a raw block:
    braces in the text are never template code)."""
    if "endraw" in text:
        raise ProposalError("the text may not contain 'endraw'")
    return f"{_SUBJECT}\n\n{{% raw %}}{text.strip()}\n{{% endraw %}}\n"


def file_name(name: str, language: str) -> str:
    return f"{name}.{language}.txt"


@dataclass
class Knowledge:
    tickets: TicketService
    owners: tuple[str, ...]

    def sol_address(self, ident: str) -> str:
        out = self.tickets.outgoing
        return signed_address(out.support.address, SOL_TAG, ident,
                              out.ids.sign(f"{SOL_TAG}-{ident}"))

    def propose(self, store: TicketStore, ticket: Ticket, agent: Agent, name: str,
                text: str) -> Proposal:
        now = self.tickets.clock.now()
        languages = self.tickets.outgoing.templates.languages()
        language = ticket.language if ticket.language in languages else "en"
        proposal = Proposal(ticket_id=ticket.id, name=name, language=language, text=text,
                            proposed_by=agent.address.lower(), status="open", created_at=now)
        store.write()  # the ticket may be new in this batch
        store.session.add(proposal)
        store.session.flush()
        self.tickets.event(store, ticket, "solution.proposed", proposal=proposal.id,
                           name=name, by=agent.address)
        for owner in self.owners:
            self.tickets.notify(
                store, ticket, owner, template="proposal",
                headline=f"Proposed canned answer '{name}' ({language})",
                text=text, author=f"{agent.name} <{agent.address}>",
                reply_to=self.sol_address(str(proposal.id)))
        return proposal

    def accept(self, store: TicketStore, proposal: Proposal, *, by: str, name: str,
               language: str, text: str) -> None:
        folder = self.tickets.outgoing.templates.custom
        if folder is None:
            raise ProposalError("no templates folder is configured (`templates:` in the "
                                "configuration) to keep canned answers in")
        if not NAME_RE.match(name):
            raise ProposalError(f"'{name}' is no valid name (a-z, 0-9, _)")
        # Any ISO 639-1 code: an accepted answer may be the first template of a language.
        if not (len(language) == 2 and language.isalpha() and language.islower()):
            raise ProposalError(f"language '{language}': a two-letter code (en, de, fr ...)")
        content = template_text(text or proposal.text)
        session = store.session
        row = session.scalar(select(CannedAnswerRow).where(
            CannedAnswerRow.name == name, CannedAnswerRow.language == language))
        now = self.tickets.clock.now()
        if row is None:
            row = CannedAnswerRow(name=name, language=language, text=content,
                                  proposal_id=proposal.id, accepted_by=by, created_at=now)
            session.add(row)
        else:
            row.text, row.proposal_id, row.accepted_by, row.created_at = (
                content, proposal.id, by, now)
        proposal.status, proposal.decided_at, proposal.decided_by = "accepted", now, by
        proposal.name, proposal.language = name, language
        write_answer(folder, name, language, content)
        out = self.tickets.outgoing
        self.tickets.outgoing = type(out)(templates=out.templates.reloaded(), ids=out.ids,
                                          support=out.support)
        ticket = store.ticket(proposal.ticket_id)
        self.tickets.event(store, ticket, "solution.accepted", proposal=proposal.id,
                           name=name, language=language, by=by)
        self.tickets.notify(store, ticket, proposal.proposed_by, author=by,
                            headline=f"Your solution is now the canned answer '{name}'",
                            text=f"Agents send it with #answer {name}.")

    def decline(self, store: TicketStore, proposal: Proposal, *, by: str,
                reason: str) -> None:
        now = self.tickets.clock.now()
        proposal.status, proposal.decided_at, proposal.decided_by = "declined", now, by
        proposal.reason = reason
        ticket = store.ticket(proposal.ticket_id)
        self.tickets.event(store, ticket, "solution.declined", proposal=proposal.id,
                           name=proposal.name, by=by, reason=reason)
        self.tickets.notify(store, ticket, proposal.proposed_by, author=by,
                            headline=f"Your solution '{proposal.name}' was declined",
                            text=reason)


def remind_resolver(tickets: TicketService, store: TicketStore, ticket: Ticket,
                    agent: Agent) -> bool:
    """A ticket of level 3 or 4 resolved without any #solution (or #no-solution): its
    resolver is asked once whether the 1st or 2nd level could reuse the solution."""
    if ticket.level < 3:
        return False
    store.write()  # the events of this batch, for the lookup
    session = store.session
    if session.scalar(select(Proposal.id).where(Proposal.ticket_id == ticket.id).limit(1)):
        return False
    asked = session.scalar(select(Event.id).where(
        Event.ticket_id == ticket.id,
        Event.kind.in_(("solution.reminded", "solution.none"))).limit(1))
    if asked:
        return False
    tickets.event(store, ticket, "solution.reminded", to=agent.address)
    tickets.notify(store, ticket, agent.address, author="maild",
                   headline="Is this a solution the 1st/2nd level could reuse?",
                   text="You resolved a ticket of level 3/4 without proposing its solution. "
                        "If the 1st or 2nd level could answer the next customer with it, "
                        "reply to this mail with\n\n#solution NAME\nthe text for the "
                        "customer\n\nor with #no-solution.")
    return True


def write_answer(folder: Path, name: str, language: str, content: str) -> None:
    """Written whole or not at all (a reload never reads half a file)."""
    path = folder / file_name(name, language)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(content, encoding="utf-8")
    partial.replace(path)


def restore_answers(session: Session, folder: Path | None) -> int:
    """Write the accepted answers whose files are missing; how many."""
    if folder is None:
        return 0
    written = 0
    for row in session.scalars(select(CannedAnswerRow)):
        if not (folder / file_name(row.name, row.language)).exists():
            write_answer(folder, row.name, row.language, row.text)
            written += 1
    return written


def proposal(store: TicketStore, proposal_id: int) -> Proposal | None:
    return store.session.get(Proposal, proposal_id)
