"""Typed work items passed between pipeline stages, and the vocabulary every layer shares.

Each stage takes one of these and returns the next, or an `Outcome` that stops the message
early. Stopping early is an outcome, not an error: the runner decides what that means for
the IMAP message. `PRIORITIES` is here because rules set a priority, SLA policies match on
it and raise it, and agents change it; none of them owns it.

The bottom of maild: it imports nothing else of maild.
"""

from __future__ import annotations

import email.message
import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final, Literal

PRIORITIES: Final = ("low", "normal", "high", "urgent")
"""A ticket's priorities, lowest first."""
Priority = Literal["low", "normal", "high", "urgent"]


@dataclass(frozen=True)
class SourceRef:
    """Where an inbound message was fetched from: enough to find it again on the server."""

    mailbox: str
    folder: str
    uidvalidity: int
    uid: int

    @property
    def key(self) -> str:
        return f"{self.mailbox}/{self.folder}/{self.uidvalidity}/{self.uid}"


@dataclass(frozen=True)
class Fetched:
    """Raw bytes as they came off the server. Nothing is decoded yet."""

    source: SourceRef
    raw: bytes


@dataclass(frozen=True)
class Address:
    name: str
    address: str  # lower-cased

    def formatted(self) -> str:
        return f"{self.name} <{self.address}>" if self.name else self.address


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True)
class Inbound:
    """A parsed inbound message. `raw` is kept byte for byte."""

    source: SourceRef | None
    raw: bytes
    raw_sha256: str
    message_id: str | None  # without angle brackets
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]
    sender: Address | None
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    reply_to: tuple[Address, ...]
    subject: str
    date: datetime | None
    body_text: str
    language: str
    headers: tuple[tuple[str, str], ...]
    attachments: tuple[Attachment, ...] = ()
    defects: tuple[str, ...] = ()
    automatic: tuple[str, ...] = ()  # why this looks machine-generated; empty for a person
    verified_sender: bool = False  # Authentication-Results from a trusted server said so
    markers: tuple[str, ...] = ()  # our body markers found in the text (quoted replies)
    notes: tuple[str, ...] = ()  # what limits kept aside
    mime: email.message.Message | None = field(default=None, compare=False, repr=False)

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for key, value in self.headers:
            if key.lower() == lname:
                return value
        return None


class Stop(enum.StrEnum):
    """Why a message stopped before reaching a ticket."""

    DISCARD = "discard"  # duplicate or already recorded: acknowledge on IMAP, nothing else
    HOLD = "hold"  # needs a human: keep it aside (quarantine folder) with the reason


@dataclass(frozen=True)
class Outcome:
    stop: Stop
    reason: str


class ThreadedBy(enum.StrEnum):
    IN_REPLY_TO = "in-reply-to"
    REFERENCES = "references"
    MARKER = "marker"
    PLACEHOLDER = "placeholder"  # an id referred to before, by mail maild never held
    SUBJECT = "subject"
    NEW = "new"


@dataclass(frozen=True)
class ThreadDecision:
    """Which ticket a message belongs to, and why. `ticket_id` None opens a new ticket."""

    ticket_id: int | None
    by: ThreadedBy
    matched: str | None = None  # the Message-ID or ticket reference that decided it
    linked_ticket_id: int | None = None  # a ticket the new one must point to
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class RuleHit:
    name: str
    matched: bool


@dataclass(frozen=True)
class Classification:
    """Where a ticket goes; `hits` records which rules decided it."""

    level: int = 1
    department: str | None = None
    priority: str = "normal"
    template: str = "acknowledgement"
    tags: tuple[str, ...] = ()
    hits: tuple[RuleHit, ...] = ()
    acknowledge: bool = True
    answer: str | None = None  # a canned answer template, sent instead of the acknowledgement
    notify: tuple[str, ...] = ()  # team names or addresses to notify of the new ticket

    @property
    def matched(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.hits if h.matched)


@dataclass(frozen=True)
class OutboundDraft:
    """A message to send, decided but not yet composed."""

    template: str
    language: str
    to: Address
    in_reply_to: str | None
    references: tuple[str, ...]
    automatic: bool = True
    cc: tuple[Address, ...] = ()  # a ticket's confirmed participants (agents' replies)
    extra: dict[str, str] = field(default_factory=dict)
    direction: str = "outbound"  # or "notification": staff mail, not part of the thread
    sender_name: str | None = None  # e.g. the agent's name; the address stays ours
    reply_to: str | None = None
    headline: str = ""  # what a notification is about
    text: str = ""  # an agent's reply, a note, or the customer's message
    author: str = ""
    sender_verified: bool | None = None  # None: no trusted Authentication-Results configured
