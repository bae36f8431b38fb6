"""The secretariat's mail: `#customer ADDRESS` (or `Name <address>`), optionally `#level N`,
`#department D` and `#priority P` on the first lines, then the call notes. The ticket is
opened by `TicketService.intake` (tickets/intake.py decides its place).
"""

from __future__ import annotations

from dataclasses import dataclass

from maild.agents.parse import INTAKE_COMMANDS, parse_agent_text
from maild.domain import Address
from maild.tickets.intake import IntakeError, customer_address


@dataclass(frozen=True)
class IntakeMail:
    customer: Address
    fields: dict[str, str]  # level, department, priority as written
    text: str  # the call notes


def read_intake_mail(body: str) -> IntakeMail:
    parsed = parse_agent_text(body, INTAKE_COMMANDS)
    fields = {c.name: c.argument.strip() for c in parsed.commands}
    customer = fields.pop("customer", "")
    if parsed.unknown or "@" not in customer:
        raise IntakeError("needs '#customer ADDRESS' on its first lines (and "
                          "knows only #customer #level #department #priority)")
    return IntakeMail(customer_address(customer), fields, parsed.text)
