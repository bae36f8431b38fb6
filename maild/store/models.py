"""The ORM classes, mapped onto the tables of maild/store/tables.py.

The tables are the schema and say what each column holds; a class here adds the typed
attributes and the relationships that the daemon's code navigates.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import JSON
from sqlalchemy.orm import DeclarativeBase, Mapped, relationship

from maild.store import tables


class Base(DeclarativeBase):
    metadata = tables.metadata
    # For the classes that declare their own columns (maild/wishes/models.py).
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON,
                                                     datetime: tables.UtcDateTime}


class Ticket(Base):
    __table__ = tables.tickets

    id: Mapped[int]
    ref: Mapped[str]
    subject: Mapped[str]
    requester: Mapped[str]
    requester_name: Mapped[str]
    status: Mapped[str]
    level: Mapped[int]
    department: Mapped[str | None]
    priority: Mapped[str]
    language: Mapped[str]
    mailbox: Mapped[str | None]
    secret: Mapped[str]
    assignee: Mapped[str | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    first_response_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None]
    closed_at: Mapped[datetime | None]
    tags: Mapped[list[str]]
    awaiting_reply_since: Mapped[datetime | None]
    sla_policy: Mapped[str | None]
    sla_first_response_due: Mapped[datetime | None]
    sla_next_response_due: Mapped[datetime | None]
    sla_resolution_due: Mapped[datetime | None]
    sla_next_check_at: Mapped[datetime | None]
    sla_pauses: Mapped[list[list[str | None]]]
    sla_alerted: Mapped[list[str]]
    linked_ticket_id: Mapped[int | None]

    messages: Mapped[list[Message]] = relationship(
        back_populates="ticket", order_by="Message.id", foreign_keys="Message.ticket_id"
    )
    events: Mapped[list[Event]] = relationship(back_populates="ticket", order_by="Event.id")


class Participant(Base):
    __table__ = tables.participants

    id: Mapped[int]
    ticket_id: Mapped[int]
    address: Mapped[str]
    confirmed: Mapped[bool]
    added_by: Mapped[str]
    added_at: Mapped[datetime]


class MessageRef(Base):
    __table__ = tables.message_refs

    message_id: Mapped[str]
    ticket_id: Mapped[int]


class SlaAlert(Base):
    __table__ = tables.sla_alerts

    id: Mapped[int]
    ticket_id: Mapped[int]
    key: Mapped[str]
    target: Mapped[str]
    kind: Mapped[str]
    policy: Mapped[str]
    due_at: Mapped[datetime]
    raised_at: Mapped[datetime]


class Message(Base):
    __table__ = tables.messages

    id: Mapped[int]
    ticket_id: Mapped[int]
    direction: Mapped[str]
    message_id: Mapped[str | None]
    source_key: Mapped[str | None]
    raw_sha256: Mapped[str | None]
    in_reply_to: Mapped[str | None]
    references: Mapped[str | None]
    from_addr: Mapped[str]
    from_name: Mapped[str]
    to_addrs: Mapped[str]
    subject: Mapped[str]
    date: Mapped[datetime | None]
    body_text: Mapped[str]
    automatic: Mapped[str | None]
    raw: Mapped[bytes | None]
    created_at: Mapped[datetime]

    ticket: Mapped[Ticket] = relationship(back_populates="messages",
                                          foreign_keys="Message.ticket_id")


class Event(Base):
    __table__ = tables.events

    id: Mapped[int]
    ticket_id: Mapped[int]
    at: Mapped[datetime]
    kind: Mapped[str]
    data: Mapped[dict[str, Any]]

    ticket: Mapped[Ticket] = relationship(back_populates="events")


class Outbox(Base):
    __table__ = tables.outbox

    id: Mapped[int]
    ticket_id: Mapped[int | None]
    message_row_id: Mapped[int | None]
    message_id: Mapped[str]
    kind: Mapped[str]
    mail_from: Mapped[str]
    rcpt_to: Mapped[str]
    raw: Mapped[bytes]
    status: Mapped[str]
    attempts: Mapped[int]
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None]
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]

    message: Mapped[Message | None] = relationship()


class Quarantine(Base):
    __table__ = tables.quarantine

    id: Mapped[int]
    source_key: Mapped[str | None]
    message_id: Mapped[str | None]
    reason: Mapped[str]
    raw: Mapped[bytes]
    created_at: Mapped[datetime]


class Suppression(Base):
    __table__ = tables.suppressions

    address: Mapped[str]
    until: Mapped[datetime]
    reason: Mapped[str]
    created_at: Mapped[datetime]


class MailboxState(Base):
    __table__ = tables.mailbox_state

    mailbox: Mapped[str]
    folder: Mapped[str]
    uidvalidity: Mapped[int]
    updated_at: Mapped[datetime]


class KeyValue(Base):
    __table__ = tables.kv

    key: Mapped[str]
    value: Mapped[str]


class JobRun(Base):
    __table__ = tables.job_runs

    id: Mapped[int]
    job: Mapped[str]
    key: Mapped[str]
    run_at: Mapped[datetime]
    host: Mapped[str]
    pid: Mapped[int]


class CsatOptOut(Base):
    __table__ = tables.csat_optouts

    address: Mapped[str]
    created_at: Mapped[datetime]
    ticket_id: Mapped[int | None]


class DaemonRow(Base):
    __table__ = tables.daemons

    id: Mapped[str]
    host: Mapped[str]
    pid: Mapped[int]
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]


class MailboxLease(Base):
    __table__ = tables.mailbox_leases

    mailbox: Mapped[str]
    daemon_id: Mapped[str]
    since: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    expires_at: Mapped[datetime]
class Draft(Base):
    __table__ = tables.drafts

    id: Mapped[int]
    ticket_id: Mapped[int]
    author: Mapped[str]
    author_name: Mapped[str]
    mentor: Mapped[str]
    text: Mapped[str]
    template: Mapped[str]
    status: Mapped[str]
    created_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None]
    sent_text: Mapped[str | None]
    advice: Mapped[str | None]


class Proposal(Base):
    __table__ = tables.proposals

    id: Mapped[int]
    ticket_id: Mapped[int]
    name: Mapped[str]
    language: Mapped[str]
    text: Mapped[str]
    proposed_by: Mapped[str]
    status: Mapped[str]
    created_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None]
    reason: Mapped[str | None]


class CannedAnswerRow(Base):
    __table__ = tables.answers

    id: Mapped[int]
    name: Mapped[str]
    language: Mapped[str]
    text: Mapped[str]
    proposal_id: Mapped[int | None]
    accepted_by: Mapped[str]
    created_at: Mapped[datetime]


class CommandMail(Base):
    __table__ = tables.command_mail

    id: Mapped[int]
    message_id: Mapped[str | None]
    from_addr: Mapped[str]
    raw: Mapped[bytes]
    received_at: Mapped[datetime]
    result: Mapped[str]
