"""Who takes part in a ticket's conversation besides its requester, and who is one of us.

A customer's To and Cc name the people the conversation is with: they become confirmed
participants, who receive the agents' replies in Cc. Our own addresses never do (the
support address and its signed plus-addresses, the mailboxes' accounts, agents, teams,
intake): staff must not reach a customer-facing header, and maild must not write to itself.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from maild.domain import Inbound
from maild.outbound.compose import smtp_problem
from maild.rules.engine import Organisation
from maild.settings import Settings


@dataclass(frozen=True)
class Conversation:
    """The settings of conversations with several people."""

    reply_to_all: bool = True  # agents' replies go to the confirmed participants in Cc
    own: frozenset[str] = frozenset()  # our addresses besides the support address (mailboxes)


def conversation_settings(settings: Settings) -> Conversation:
    """From the configuration: `tickets.reply_to_all`, and the mailboxes' accounts (and the
    SMTP account) as our own addresses."""
    accounts = [m.imap.username for m in settings.mailboxes] + [settings.smtp.username]
    return Conversation(reply_to_all=settings.tickets.reply_to_all,
                        own=frozenset(a.lower() for a in accounts if a and "@" in a))


def staff_addresses(org: Organisation) -> set[str]:
    """Agents, teams and intake: addresses that are ours."""
    teams = [t.team for t in (*org.levels.values(), *org.departments.values()) if t.team]
    if org.management is not None:
        teams += [a for a in (org.management.address, org.management.team) if a]
    return {a.lower() for a in (*org.agents, *org.intake, *teams)}


def is_ours(address: str, support: str, own: Iterable[str], staff: set[str]) -> bool:
    address = address.lower()
    local, _, domain = support.lower().partition("@")
    if address == support.lower() or address in staff or address in {o.lower() for o in own}:
        return True
    # support+<anything>@domain: a ticket's or another kind's signed address
    return address.endswith("@" + domain) and address.startswith(local + "+")


def addressed(inbound: Inbound, *, exclude: Iterable[str], support: str, own: Iterable[str],
              staff: set[str]) -> list[str]:
    """The people a customer's mail is also addressed to (To and Cc), in order: not us,
    not those in `exclude`, and only addresses mail can be sent to."""
    skip = {e.lower() for e in exclude}
    found: list[str] = []
    for person in (*inbound.to, *inbound.cc):
        address = person.address.lower()
        if (not address or address in skip or address in found or smtp_problem(address)
                or is_ours(address, support, own, staff)):
            continue
        found.append(address)
    return found
