"""The database schema as SQLAlchemy 2 typed models.

Timestamps are stored as timezone-aware UTC (`UtcDateTime`) so that SQLite and PostgreSQL
give back the same values. Raw inbound bytes are kept for every message, including the
quarantined ones.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out, on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def bind_processor(self, dialect: Dialect) -> Callable[[datetime | None], Any] | None:
        """On SQLite, the text SQLAlchemy stores for a datetime, made in one step.

        SQLite has no datetime type: SQLAlchemy keeps "YYYY-MM-DD HH:MM:SS.ffffff" and
        compares those strings. Through `process_bind_param` a value took three Python calls
        to get there; an ingested message binds some twenty datetimes. The text is the same
        (tests/test_store.py holds it to SQLAlchemy's own).
        """
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def process(value: datetime | None) -> str | None:
            if value is None:
                return None
            if value.tzinfo is None:
                raise ValueError("naive datetime given to the database")
            return value.astimezone(UTC).isoformat(" ", "microseconds")[:26]

        return process

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {dict[str, Any]: JSON, datetime: UtcDateTime}


class Ticket(Base):
    __tablename__ = "tickets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ref: Mapped[str] = mapped_column(String(32), unique=True)
    subject: Mapped[str] = mapped_column(Text)
    requester: Mapped[str] = mapped_column(String(320), index=True)
    requester_name: Mapped[str] = mapped_column(String(200), default="")
    status: Mapped[str] = mapped_column(String(20), default="new", index=True)
    level: Mapped[int] = mapped_column(Integer, default=1)
    department: Mapped[str | None] = mapped_column(String(64))
    priority: Mapped[str] = mapped_column(String(20), default="normal")
    language: Mapped[str] = mapped_column(String(8), default="en")
    mailbox: Mapped[str | None] = mapped_column(String(64))
    secret: Mapped[str] = mapped_column(String(64))  # in the agents' reply address
    assignee: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    first_response_at: Mapped[datetime | None]
    resolved_at: Mapped[datetime | None] = mapped_column(index=True)  # the survey job
    closed_at: Mapped[datetime | None]
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    # SLA state, kept current by maild.sla.engine.SlaEngine.refresh
    awaiting_reply_since: Mapped[datetime | None]  # the customer wrote after our answer
    sla_policy: Mapped[str | None] = mapped_column(String(100))
    sla_first_response_due: Mapped[datetime | None]
    sla_next_response_due: Mapped[datetime | None]
    sla_resolution_due: Mapped[datetime | None]
    sla_next_check_at: Mapped[datetime | None] = mapped_column(index=True)
    sla_pauses: Mapped[list[list[str | None]]] = mapped_column(JSON, default=list)
    sla_alerted: Mapped[list[str]] = mapped_column(JSON, default=list)
    linked_ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))

    messages: Mapped[list[Message]] = relationship(
        back_populates="ticket", order_by="Message.id", foreign_keys="Message.ticket_id"
    )
    events: Mapped[list[Event]] = relationship(back_populates="ticket", order_by="Event.id")


class Participant(Base):
    """Someone besides the requester in a ticket's conversation: put in To/Cc by a customer
    or added by an agent (confirmed: receives the agents' replies), or someone who joined by
    replying into the thread (unconfirmed: receives nothing until confirmed)."""

    __tablename__ = "participants"
    __table_args__ = (UniqueConstraint("ticket_id", "address", name="uq_participants"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    address: Mapped[str] = mapped_column(String(320))
    confirmed: Mapped[bool] = mapped_column(Boolean)
    added_by: Mapped[str] = mapped_column(String(320))
    added_at: Mapped[datetime]


class MessageRef(Base):
    """A Message-ID that a customer's message of a ticket referred to, whether maild holds
    that message or not: two replies to a parent maild never saw meet here (JWZ's
    placeholder containers)."""

    __tablename__ = "message_refs"

    message_id: Mapped[str] = mapped_column(String(998), primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"), index=True)


class SlaAlert(Base):
    """A warning or breach that was acted on. The unique key makes it happen once, across
    restarts and across daemons sharing the database."""

    __tablename__ = "sla_alerts"
    __table_args__ = (UniqueConstraint("ticket_id", "key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    key: Mapped[str] = mapped_column(String(80))
    target: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(10))  # warn | breach
    policy: Mapped[str] = mapped_column(String(100))
    due_at: Mapped[datetime]
    raised_at: Mapped[datetime]


class Message(Base):
    """A message of a ticket: inbound (from the customer), outbound, or an internal note."""

    __tablename__ = "messages"
    __table_args__ = (
        Index("ix_messages_ticket", "ticket_id", "id"),
        # Only a message without a Message-ID is looked up by its bytes
        # (TicketStore.delivered_before): indexing the others' hashes would only change a
        # page at a random place per row. In the database the index is partial,
        # `WHERE message_id IS NULL` (migration 0003 makes the schema: nothing creates
        # tables from these models). It is not declared so here: the dialect options would
        # make every process import the PostgreSQL dialect's modules, some 50 ms of a
        # read-only command that runs on SQLite.
        Index("ix_messages_raw_sha256", "raw_sha256"),
        # The report counts a period's inbound messages; rows come in time order, so the
        # index grows at its end.
        Index("ix_messages_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    # inbound | outbound | note (internal) | notification (to staff, not shown as a message)
    direction: Mapped[str] = mapped_column(String(12))
    message_id: Mapped[str | None] = mapped_column(String(998), unique=True)
    source_key: Mapped[str | None] = mapped_column(String(400), unique=True)
    raw_sha256: Mapped[str | None] = mapped_column(String(64))
    in_reply_to: Mapped[str | None] = mapped_column(Text)
    references: Mapped[str | None] = mapped_column(Text)
    from_addr: Mapped[str] = mapped_column(String(320))
    from_name: Mapped[str] = mapped_column(String(200), default="")
    to_addrs: Mapped[str] = mapped_column(Text, default="")
    subject: Mapped[str] = mapped_column(Text, default="")
    date: Mapped[datetime | None]
    body_text: Mapped[str] = mapped_column(Text, default="")
    automatic: Mapped[str | None] = mapped_column(String(200))
    raw: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]

    ticket: Mapped[Ticket] = relationship(back_populates="messages", foreign_keys=[ticket_id])


class Event(Base):
    """Something that happened to a ticket: the audit trail."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_ticket", "ticket_id", "id"),
        # The report reads a period's events of a few kinds (maild/reports/query.py).
        Index("ix_events_kind_at", "kind", "at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict[str, Any]] = mapped_column(default=dict)

    ticket: Mapped[Ticket] = relationship(back_populates="events")


class Outbox(Base):
    """A composed outbound message waiting to be sent.

    Written in the same transaction as the decision that caused it; its Message-ID is part
    of `raw` from the start, so a retry is recognisably the same message.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        Index("ix_outbox_due", "status", "next_attempt_at"),
        # The loop limits count by these; with the kind, from the index alone.
        Index("ix_outbox_rcpt", "rcpt_to", "created_at", "kind"),
        Index("ix_outbox_ticket", "ticket_id", "created_at"),
        Index("ix_outbox_kind", "kind", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))
    message_row_id: Mapped[int | None] = mapped_column(ForeignKey("messages.id"))
    message_id: Mapped[str] = mapped_column(String(998), unique=True)
    kind: Mapped[str] = mapped_column(String(40))
    mail_from: Mapped[str] = mapped_column(String(320))
    rcpt_to: Mapped[str] = mapped_column(Text)  # comma-separated addresses
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(10), default="pending")  # pending|sent|failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]

    message: Mapped[Message | None] = relationship()


class Quarantine(Base):
    """A message that could not be processed: raw bytes and the reason, nothing lost."""

    __tablename__ = "quarantine"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_key: Mapped[str | None] = mapped_column(String(400), unique=True)
    message_id: Mapped[str | None] = mapped_column(String(998))
    reason: Mapped[str] = mapped_column(Text)
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]


class Suppression(Base):
    """An address that failed permanently: no automatic mail to it until `until`."""

    __tablename__ = "suppressions"

    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    until: Mapped[datetime]
    reason: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class MailboxState(Base):
    """Per mailbox and folder: the UIDVALIDITY we last saw, to notice when it changes."""

    __tablename__ = "mailbox_state"

    mailbox: Mapped[str] = mapped_column(String(64), primary_key=True)
    folder: Mapped[str] = mapped_column(String(200), primary_key=True)
    uidvalidity: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime]


class KeyValue(Base):
    """Small persistent values, such as the generated Message-ID signing secret."""

    __tablename__ = "kv"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class JobRun(Base):
    """A scheduled job's run for one due time (or one item of it), claimed by the daemon
    that does it: the unique key makes it happen once across restarts and daemons. The row
    is inserted in the same transaction as what the run does (its outbox rows, events)."""

    __tablename__ = "job_runs"
    __table_args__ = (UniqueConstraint("job", "key", name="uq_job_runs_job_key"),
                      Index("ix_job_runs_job_at", "job", "run_at"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(200))
    run_at: Mapped[datetime] = mapped_column()
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)


class CsatOptOut(Base):
    """A customer who asked for no more satisfaction surveys (honoured for good)."""

    __tablename__ = "csat_optouts"

    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    created_at: Mapped[datetime]
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("tickets.id"))


class DaemonRow(Base):
    """A running daemon, as the others and `maild status` see it (its heartbeat)."""

    __tablename__ = "daemons"

    id: Mapped[str] = mapped_column(String(120), primary_key=True)  # host:pid:start
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]


class MailboxLease(Base):
    """Which daemon works a mailbox, until when: renewed by its heartbeat, taken over by
    another daemon once it has expired."""

    __tablename__ = "mailbox_leases"

    mailbox: Mapped[str] = mapped_column(String(64), primary_key=True)
    daemon_id: Mapped[str] = mapped_column(String(120))
    since: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    expires_at: Mapped[datetime]
class Draft(Base):
    """A trainee's reply held for their mentor (maild/training/): sent only when the mentor
    approves it (as written or edited), never when rejected. `mentor` is what the
    directory said when it was held (an agent's address or a team), so a trainee promoted
    meanwhile does not leave the draft without someone to decide it."""

    __tablename__ = "drafts"
    __table_args__ = (Index("ix_drafts_status", "status", "created_at"),
                      Index("ix_drafts_author", "author"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    author: Mapped[str] = mapped_column(String(320))  # the trainee's address
    author_name: Mapped[str] = mapped_column(String(200))
    mentor: Mapped[str] = mapped_column(String(320))
    text: Mapped[str] = mapped_column(Text)
    # "reply" (the agent's sign-off added), or "canned" (a canned answer with its own)
    template: Mapped[str] = mapped_column(String(64), default="reply")
    status: Mapped[str] = mapped_column(String(20))  # waiting, approved, edited, rejected
    created_at: Mapped[datetime]
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
    decided_by: Mapped[str | None] = mapped_column(String(320), default=None)
    sent_text: Mapped[str | None] = mapped_column(Text, default=None)
    advice: Mapped[str | None] = mapped_column(Text, default=None)


class Proposal(Base):
    """A text proposed as a canned answer by `#solution NAME` (maild/knowledge/), with the
    ticket it came from, until a knowledge owner accepts or declines it."""

    __tablename__ = "proposals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("tickets.id"))
    name: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8))
    text: Mapped[str] = mapped_column(Text)
    proposed_by: Mapped[str] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(20))  # open, accepted, declined
    created_at: Mapped[datetime]
    decided_at: Mapped[datetime | None] = mapped_column(default=None)
    decided_by: Mapped[str | None] = mapped_column(String(320), default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)


class CannedAnswerRow(Base):
    """An accepted canned answer, kept here as well as in its template file: a lost file
    is written again at start, so an answer accepted by mail survives a restart."""

    __tablename__ = "answers"
    __table_args__ = (UniqueConstraint("name", "language", name="uq_answers_name_language"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8))
    text: Mapped[str] = mapped_column(Text)  # the template file's whole text
    proposal_id: Mapped[int | None] = mapped_column(ForeignKey("proposals.id"), default=None)
    accepted_by: Mapped[str] = mapped_column(String(320))
    created_at: Mapped[datetime]


class CommandMail(Base):
    """A staff mail that belongs to no ticket (an agent's queue commands, maild/digest/),
    raw bytes kept, with what maild did with it."""

    __tablename__ = "command_mail"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    message_id: Mapped[str | None] = mapped_column(String(998), unique=True)
    from_addr: Mapped[str] = mapped_column(String(320))
    raw: Mapped[bytes] = mapped_column(LargeBinary)
    received_at: Mapped[datetime]
    result: Mapped[str] = mapped_column(Text)
