"""The per-ticket reply address of staff notifications: `support+t-k7qf2x.<secret>@domain`.

Only someone who received a notification knows the secret, so only they can act on the
ticket by mail. A From header alone proves nothing.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class TicketAddress:
    ref: str  # upper case, as in subjects
    secret: str


def reply_address(support: str, ref: str, secret: str) -> str:
    local, _, domain = support.partition("@")
    return f"{local}+{ref.lower()}.{secret}@{domain}"


def address_pattern(support: str) -> re.Pattern[str]:
    local, _, domain = support.partition("@")
    return re.compile(
        rf"^{re.escape(local)}\+([a-z]{{1,6}}-[a-z0-9]{{4,12}})\.([0-9a-f]{{20}})@"
        rf"{re.escape(domain)}$", re.IGNORECASE)


def find_ticket_address(pattern: re.Pattern[str], recipients: Iterable[str]
                        ) -> TicketAddress | None:
    for address in recipients:
        found = pattern.match(address.strip().lower())
        if found:
            return TicketAddress(ref=found.group(1).upper(), secret=found.group(2).lower())
    return None


def secret_matches(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.lower(), expected.lower())
