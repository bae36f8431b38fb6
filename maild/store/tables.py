"""The database schema as SQLAlchemy Core tables.

The ORM classes of maild/store/models.py are mapped onto these tables; the read-only
commands (maild/readonly.py) query them directly. They are Core on purpose: a person types
`maild tickets list` and waits, and importing SQLAlchemy's ORM and configuring the mapped
classes would cost that command about a third of its time (bench.cli).

Timestamps are stored as timezone-aware UTC (`UtcDateTime`) so that SQLite and PostgreSQL
give back the same values. Raw inbound bytes are kept for every message, including the
quarantined ones. The migrations (maild/store/migrations/) make the schema; nothing creates
tables from these definitions, and tests/test_store.py holds the two to each other.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect


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


metadata = MetaData()


def _at(name: str, *args: Any, nullable: bool = False, **kwargs: Any) -> Column[datetime]:
    """A timestamp column (aware UTC)."""
    return Column(name, UtcDateTime(), *args, nullable=nullable, **kwargs)


def _ticket(*, nullable: bool = False, **kwargs: Any) -> Column[int]:
    return Column("ticket_id", Integer, ForeignKey("tickets.id"), nullable=nullable, **kwargs)


# Columns are NOT NULL unless they say otherwise.

tickets = Table(
    "tickets", metadata,
    Column("id", Integer, primary_key=True),
    Column("ref", String(32), unique=True, nullable=False),
    Column("subject", Text, nullable=False),
    Column("requester", String(320), index=True, nullable=False),
    Column("requester_name", String(200), default="", nullable=False),
    Column("status", String(20), default="new", index=True, nullable=False),
    Column("level", Integer, default=1, nullable=False),
    Column("department", String(64)),
    Column("priority", String(20), default="normal", nullable=False),
    Column("language", String(8), default="en", nullable=False),
    Column("mailbox", String(64)),
    Column("secret", String(64), nullable=False),  # in the agents' reply address
    Column("assignee", String(320)),
    _at("created_at"),
    _at("updated_at"),
    _at("first_response_at", nullable=True),
    _at("resolved_at", index=True, nullable=True),  # indexed for the survey job
    _at("closed_at", nullable=True),
    Column("tags", JSON, default=list, nullable=False),
    # SLA state, kept current by maild.sla.engine.SlaEngine.refresh.
    # awaiting_reply_since: the customer wrote after our answer.
    _at("awaiting_reply_since", nullable=True),
    Column("sla_policy", String(100)),
    _at("sla_first_response_due", nullable=True),
    _at("sla_next_response_due", nullable=True),
    _at("sla_resolution_due", nullable=True),
    _at("sla_next_check_at", index=True, nullable=True),
    Column("sla_pauses", JSON, default=list, nullable=False),
    Column("sla_alerted", JSON, default=list, nullable=False),
    Column("linked_ticket_id", Integer, ForeignKey("tickets.id")),
)

# Someone besides the requester in a ticket's conversation: put in To/Cc by a customer or
# added by an agent (confirmed: receives the agents' replies), or someone who joined by
# replying into the thread (unconfirmed: receives nothing until confirmed).
participants = Table(
    "participants", metadata,
    Column("id", Integer, primary_key=True),
    _ticket(),
    Column("address", String(320), nullable=False),
    Column("confirmed", Boolean, nullable=False),
    Column("added_by", String(320), nullable=False),
    _at("added_at"),
    UniqueConstraint("ticket_id", "address", name="uq_participants"),
)

# A Message-ID that a customer's message of a ticket referred to, whether maild holds that
# message or not: two replies to a parent maild never saw meet here (JWZ's placeholder
# containers).
message_refs = Table(
    "message_refs", metadata,
    Column("message_id", String(998), primary_key=True),
    _ticket(index=True),
)

# A warning or breach that was acted on. The unique key makes it happen once, across
# restarts and across daemons sharing the database.
sla_alerts = Table(
    "sla_alerts", metadata,
    Column("id", Integer, primary_key=True),
    _ticket(),
    Column("key", String(80), nullable=False),
    Column("target", String(20), nullable=False),
    Column("kind", String(10), nullable=False),  # warn | breach
    Column("policy", String(100), nullable=False),
    _at("due_at"),
    _at("raised_at"),
    UniqueConstraint("ticket_id", "key"),
)

# A message of a ticket: inbound (from the customer), outbound, an internal note, or a
# notification (to staff; not shown as a message of the conversation).
messages = Table(
    "messages", metadata,
    Column("id", Integer, primary_key=True),
    _ticket(),
    Column("direction", String(12), nullable=False),  # inbound|outbound|note|notification
    Column("message_id", String(998), unique=True),
    Column("source_key", String(400), unique=True),
    Column("raw_sha256", String(64)),
    Column("in_reply_to", Text),
    Column("references", Text),
    Column("from_addr", String(320), nullable=False),
    Column("from_name", String(200), default="", nullable=False),
    Column("to_addrs", Text, default="", nullable=False),
    Column("subject", Text, default="", nullable=False),
    _at("date", nullable=True),
    Column("body_text", Text, default="", nullable=False),
    Column("automatic", String(200)),
    Column("raw", LargeBinary),
    _at("created_at"),
    Index("ix_messages_ticket", "ticket_id", "id"),
    # Only a message without a Message-ID is looked up by its bytes
    # (TicketStore.delivered_before): indexing the others' hashes would only change a page
    # at a random place per row. In the database the index is partial, `WHERE message_id IS
    # NULL` (migration 0003). It is not declared so here: the dialect options would make
    # every process import the PostgreSQL dialect's modules, some 50 ms of a read-only
    # command that runs on SQLite.
    Index("ix_messages_raw_sha256", "raw_sha256"),
    # The report counts a period's inbound messages; rows come in time order, so the index
    # grows at its end.
    Index("ix_messages_created_at", "created_at"),
)

# Something that happened to a ticket: the audit trail.
events = Table(
    "events", metadata,
    Column("id", Integer, primary_key=True),
    _ticket(),
    _at("at"),
    Column("kind", String(40), nullable=False),
    Column("data", JSON, default=dict, nullable=False),
    Index("ix_events_ticket", "ticket_id", "id"),
    # The report reads a period's events of a few kinds (maild/reports/query.py).
    Index("ix_events_kind_at", "kind", "at"),
)

# A composed outbound message waiting to be sent. Written in the same transaction as the
# decision that caused it; its Message-ID is part of `raw` from the start, so a retry is
# recognisably the same message.
outbox = Table(
    "outbox", metadata,
    Column("id", Integer, primary_key=True),
    _ticket(nullable=True),
    Column("message_row_id", Integer, ForeignKey("messages.id")),
    Column("message_id", String(998), unique=True, nullable=False),
    Column("kind", String(40), nullable=False),
    Column("mail_from", String(320), nullable=False),
    Column("rcpt_to", Text, nullable=False),  # comma-separated addresses
    Column("raw", LargeBinary, nullable=False),
    Column("status", String(10), default="pending", nullable=False),  # pending|sent|failed
    Column("attempts", Integer, default=0, nullable=False),
    _at("next_attempt_at"),
    Column("last_error", Text),
    _at("created_at"),
    _at("sent_at", nullable=True),
    Index("ix_outbox_due", "status", "next_attempt_at"),
    # The loop limits count by these; with the kind, from the index alone.
    Index("ix_outbox_rcpt", "rcpt_to", "created_at", "kind"),
    Index("ix_outbox_ticket", "ticket_id", "created_at"),
    Index("ix_outbox_kind", "kind", "created_at"),
)

# A message that could not be processed: raw bytes and the reason, nothing lost.
quarantine = Table(
    "quarantine", metadata,
    Column("id", Integer, primary_key=True),
    Column("source_key", String(400), unique=True),
    Column("message_id", String(998)),
    Column("reason", Text, nullable=False),
    Column("raw", LargeBinary, nullable=False),
    _at("created_at"),
)

# An address that failed permanently: no automatic mail to it until `until`.
suppressions = Table(
    "suppressions", metadata,
    Column("address", String(320), primary_key=True),
    _at("until"),
    Column("reason", Text, nullable=False),
    _at("created_at"),
)

# Per mailbox and folder: the UIDVALIDITY we last saw, to notice when it changes.
mailbox_state = Table(
    "mailbox_state", metadata,
    Column("mailbox", String(64), primary_key=True),
    Column("folder", String(200), primary_key=True),
    Column("uidvalidity", BigInteger, nullable=False),
    _at("updated_at"),
)

# Small persistent values, such as the generated Message-ID signing secret.
kv = Table(
    "kv", metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# A scheduled job's run for one due time (or one item of it), claimed by the daemon that
# does it: the unique key makes it happen once across restarts and daemons. The row is
# inserted in the same transaction as what the run does (its outbox rows, events).
job_runs = Table(
    "job_runs", metadata,
    Column("id", Integer, primary_key=True),
    Column("job", String(64), nullable=False),
    Column("key", String(200), nullable=False),
    _at("run_at"),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    UniqueConstraint("job", "key", name="uq_job_runs_job_key"),
    Index("ix_job_runs_job_at", "job", "run_at"),
)

# A customer who asked for no more satisfaction surveys (honoured for good).
csat_optouts = Table(
    "csat_optouts", metadata,
    Column("address", String(320), primary_key=True),
    _at("created_at"),
    _ticket(nullable=True),
)

# A running daemon, as the others and `maild status` see it (its heartbeat).
daemons = Table(
    "daemons", metadata,
    Column("id", String(120), primary_key=True),  # host:pid:start
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    _at("started_at"),
    _at("heartbeat_at"),
)

# Which daemon works a mailbox, until when: renewed by its heartbeat, taken over by another
# daemon once it has expired.
mailbox_leases = Table(
    "mailbox_leases", metadata,
    Column("mailbox", String(64), primary_key=True),
    Column("daemon_id", String(120), nullable=False),
    _at("since"),
    _at("heartbeat_at"),
    _at("expires_at"),
)

# A trainee's reply held for their mentor (maild/training/): sent only when the mentor
# approves it (as written or edited), never when rejected. `mentor` is what the directory
# said when it was held (an agent's address or a team), so a trainee promoted meanwhile does
# not leave the draft without someone to decide it.
drafts = Table(
    "drafts", metadata,
    Column("id", Integer, primary_key=True),
    _ticket(),
    Column("author", String(320), nullable=False),  # the trainee's address
    Column("author_name", String(200), nullable=False),
    Column("mentor", String(320), nullable=False),
    Column("text", Text, nullable=False),
    # "reply" (the agent's sign-off added), or "canned" (a canned answer with its own)
    Column("template", String(64), default="reply", nullable=False),
    Column("status", String(20), nullable=False),  # waiting, approved, edited, rejected
    _at("created_at"),
    _at("decided_at", nullable=True),
    Column("decided_by", String(320)),
    Column("sent_text", Text),
    Column("advice", Text),
    Index("ix_drafts_status", "status", "created_at"),
    Index("ix_drafts_author", "author"),
)

# A text proposed as a canned answer by `#solution NAME` (maild/knowledge/), with the ticket
# it came from, until a knowledge owner accepts or declines it.
proposals = Table(
    "proposals", metadata,
    Column("id", Integer, primary_key=True),
    _ticket(),
    Column("name", String(64), nullable=False),
    Column("language", String(8), nullable=False),
    Column("text", Text, nullable=False),
    Column("proposed_by", String(320), nullable=False),
    Column("status", String(20), nullable=False),  # open, accepted, declined
    _at("created_at"),
    _at("decided_at", nullable=True),
    Column("decided_by", String(320)),
    Column("reason", Text),
)

# An accepted canned answer, kept here as well as in its template file: a lost file is
# written again at start, so an answer accepted by mail survives a restart.
answers = Table(
    "answers", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(64), nullable=False),
    Column("language", String(8), nullable=False),
    Column("text", Text, nullable=False),  # the template file's whole text
    Column("proposal_id", Integer, ForeignKey("proposals.id")),
    Column("accepted_by", String(320), nullable=False),
    _at("created_at"),
    UniqueConstraint("name", "language", name="uq_answers_name_language"),
)

# A staff mail that belongs to no ticket (an agent's queue commands, maild/digest/), raw
# bytes kept, with what maild did with it.
command_mail = Table(
    "command_mail", metadata,
    Column("id", Integer, primary_key=True),
    Column("message_id", String(998), unique=True),
    Column("from_addr", String(320), nullable=False),
    Column("raw", LargeBinary, nullable=False),
    _at("received_at"),
    Column("result", Text, nullable=False),
)
