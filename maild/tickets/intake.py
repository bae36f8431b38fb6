"""Intake: the secretariat logs a call as a ticket on the caller's behalf, by mail
(agents/intake.py reads the mail) or on the command line. Both decide the ticket's place
here and open it with `TicketService.intake`.
"""

from __future__ import annotations

import dataclasses
from email.utils import parseaddr

from maild.domain import Address, Classification
from maild.rules.engine import Organisation
from maild.rules.schema import PRIORITIES


class IntakeError(ValueError):
    """What the secretariat must correct; nothing was opened."""


def customer_address(value: str) -> Address:
    """`addr` or `Name <addr>`, as given on the command line or after `#customer`."""
    name, address = parseaddr(value.strip())
    address = address.strip("<> ").lower()
    if "@" not in address:
        raise IntakeError(f"'{value.strip()}' is not an email address")
    return Address(name.strip(), address)


def intake_classification(base: Classification, fields: dict[str, str],
                          org: Organisation) -> Classification:
    """The rules' decision, overridden by what the intake chose (#level, #department ...)."""
    changes: dict[str, object] = {}
    if "level" in fields:
        if not fields["level"].isdigit() or not 1 <= int(fields["level"]) <= 4:
            raise IntakeError(f"#level must be 1 to 4, not {fields['level']!r}")
        changes["level"] = int(fields["level"])
    if "department" in fields:
        if fields["department"] not in org.departments:
            raise IntakeError(f"unknown department {fields['department']!r}")
        changes["department"] = fields["department"]
    if "priority" in fields:
        if fields["priority"].lower() not in PRIORITIES:
            raise IntakeError(f"#priority must be one of {', '.join(PRIORITIES)}")
        changes["priority"] = fields["priority"].lower()
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]
