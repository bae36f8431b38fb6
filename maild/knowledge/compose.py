"""An agent's #answer: the canned answer rendered for the ticket as the rule-driven ones are
(the customer's language, English when there is none), with whatever the agent wrote above
or below the `#answer NAME` line around it."""

from __future__ import annotations

import re
from dataclasses import dataclass

from maild.domain import Address
from maild.outbound.queue import Outgoing, context_for
from maild.store.models import Ticket

_ANSWER_LINE = re.compile(r"^\s*#answer\s+(\S+)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class AnswerText:
    name: str
    above: str
    below: str


def find_answer(text: str, leading: str | None) -> AnswerText | None:
    """`#answer NAME` among the first lines' commands (`leading`: its argument; the text
    then comes below), or on a line of its own within the text."""
    if leading is not None:
        return AnswerText(leading.strip().split()[0] if leading.strip() else "", "", text)
    lines = text.split("\n")
    for i, line in enumerate(lines):
        found = _ANSWER_LINE.match(line)
        if found:
            return AnswerText(found.group(1), "\n".join(lines[:i]).strip(),
                              "\n".join(lines[i + 1:]).strip())
    return None


def render_answer(out: Outgoing, ticket: Ticket, answer: AnswerText, customer_text: str
                  ) -> str:
    customer = Address(ticket.requester_name, ticket.requester)
    rendered = out.templates.render(answer.name, ticket.language or "en",
                                    context_for(ticket, out.support, customer, customer_text))
    return "\n\n".join(p for p in (answer.above, rendered.body.strip(), answer.below) if p)
