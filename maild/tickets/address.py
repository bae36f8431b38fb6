"""Secret plus-addresses on the support address.

The per-ticket reply address of staff notifications is `support+t-k7qf2x.<secret>@domain`:
only someone who received a notification knows the secret, so only they can act on the
ticket by mail. A From header alone proves nothing.

Other things people answer by mail (a review, a wish, a rating, an agent's own queue) get a
signed address of their own kind: `support+<tag>-<id>.<signature>@domain`, the signature
made from tag and id under our secret (`MessageIdFactory.sign`), so nothing needs storing.
Tags in use: `staff`, `wish`, `review`, `rate`, `sol`; each is recognised before the ticket
form (whose `t-` prefix is the ticket references' own).
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


def address_pattern(support: str, ref_prefix: str = "T") -> re.Pattern[str]:
    """Ticket reply addresses: the reference (with the configured prefix) and the secret."""
    local, _, domain = support.partition("@")
    return re.compile(
        rf"^{re.escape(local)}\+({re.escape(ref_prefix.lower())}-[a-z0-9]{{4,12}})\."
        rf"([0-9a-f]{{20}})@{re.escape(domain)}$", re.IGNORECASE)


def find_ticket_address(pattern: re.Pattern[str], recipients: Iterable[str]
                        ) -> TicketAddress | None:
    for address in recipients:
        found = pattern.match(address.strip().lower())
        if found:
            return TicketAddress(ref=found.group(1).upper(), secret=found.group(2).lower())
    return None


def secret_matches(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.lower(), expected.lower())


@dataclass(frozen=True)
class SignedAddress:
    tag: str
    ident: str
    signature: str


def signed_address(support: str, tag: str, ident: str, signature: str) -> str:
    local, _, domain = support.partition("@")
    return f"{local}+{tag}-{ident}.{signature}@{domain}".lower()


def signed_pattern(support: str, tag: str) -> re.Pattern[str]:
    local, _, domain = support.partition("@")
    return re.compile(
        rf"^{re.escape(local)}\+{re.escape(tag)}-([a-z0-9_-]{{1,64}})\.([0-9a-f]{{20}})@"
        rf"{re.escape(domain)}$", re.IGNORECASE)


def find_signed_address(pattern: re.Pattern[str], tag: str, recipients: Iterable[str]
                        ) -> SignedAddress | None:
    """The first recipient of this kind (its signature still to be checked)."""
    for address in recipients:
        found = pattern.match(address.strip().lower())
        if found:
            return SignedAddress(tag, found.group(1), found.group(2))
    return None
