"""The ticket store: every read and write of tickets, messages, events and queued mail that
the ticket service and the pipeline make, inside one transaction the caller owns.

`TicketStore` is the contract. `DirectStore` asks and writes through the session as it
goes (commands, the agents' desk outside a batch, tests). `BatchStore`
(store/batchstore.py) serves a batch of messages: it reads ahead what a group of messages
will ask, answers lookups from that and from what the batch added itself, and writes the
batch's rows one statement a table at the end. Both answer every lookup the same
(tests/test_batches.py holds them to that).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import Table, bindparam, insert, or_, select
from sqlalchemy.orm import Session, configure_mappers, make_transient_to_detached

from maild.domain import Inbound
from maild.mailsafety.limits import AutomaticSent
from maild.store import automail
from maild.store.automail import AutomailCounter
from maild.store.models import (
    Event,
    Message,
    MessageRef,
    Outbox,
    Participant,
    Quarantine,
    Suppression,
    Ticket,
)

CUSTOMER_FACING = ("inbound", "outbound")
# The lookups made for every message, built once (their SQL is compiled once and cached).
TICKETS_BY_MESSAGE_ID = select(Message.message_id, Message.ticket_id).where(
    Message.message_id.in_(bindparam("ids", expanding=True)))
TICKETS_BY_REFERENCE = select(MessageRef.message_id, MessageRef.ticket_id).where(
    MessageRef.message_id.in_(bindparam("ids", expanding=True)))
PARTICIPANTS = select(Participant.ticket_id, Participant.address, Participant.confirmed).where(
    Participant.ticket_id.in_(bindparam("tickets", expanding=True))).order_by(Participant.id)
MAX_LOOKUP_IDS = 200  # Message-IDs looked up for one message, its own first


class TicketStore(Protocol):
    """What the ticket service and the pipeline read and write in one transaction."""

    @property
    def session(self) -> Session: ...

    # -- lookups ---------------------------------------------------------------------
    def read_ahead(self, *, message_ids: Iterable[str], refs: Iterable[str],
                   recipients: Iterable[str], now: datetime) -> None:
        """A hint: what the lookups of a group of messages will ask (a no-op where each
        lookup asks the database itself)."""

    def quarantined_before(self, source_key: str) -> str | None:
        """The reason a message at this server position was quarantined, if it was."""

    def tickets_for_message_ids(self, ids: Sequence[str]) -> dict[str, int]:
        """The tickets of those of `ids` maild has seen or sent."""

    def delivered_before(self, inbound: Inbound) -> bool:
        """Whether a message without a Message-ID is one we have: the same server
        position, or the same bytes."""

    def ticket(self, ticket_id: int) -> Ticket: ...

    def ticket_id_by_ref(self, ref: str) -> int | None: ...

    def tickets_for_references(self, ids: Sequence[str]) -> dict[str, int]:
        """The tickets whose customers' mail referred to those of `ids` (In-Reply-To,
        References), whether maild holds the messages they name or not."""

    def participants(self, ticket_id: int) -> frozenset[str]:
        """Who may steer the ticket and receives its replies: the requester and the
        confirmed participants."""

    def participant_list(self, ticket_id: int) -> dict[str, bool]:
        """The participants besides the requester, in the order they came: address ->
        confirmed."""

    def customer_thread(self, ticket_id: int) -> tuple[str | None, tuple[str, ...]]:
        """In-Reply-To and References for mail to the customer: customer-facing ids."""

    def first_customer_text(self, ticket_id: int) -> str:
        """What the customer first wrote."""

    def suppression(self, address: str) -> tuple[datetime, str] | None: ...

    def automatic_sent(self, address: str, ticket_id: int | None,
                       now: datetime) -> AutomaticSent:
        """Automatic mail sent or queued within the limits' windows (`ticket_id` None:
        a ticket opened now, which has sent nothing)."""

    # -- writes ----------------------------------------------------------------------
    def insert_ticket(self, values: dict[str, Any]) -> Ticket:
        """A new ticket with its id (every column given but the id)."""

    def add_message(self, row: dict[str, Any]) -> None:
        """A message row."""

    def add_participant(self, ticket_id: int, address: str, *, confirmed: bool, by: str,
                        at: datetime) -> bool:
        """`address` takes part in the ticket (confirmed or not); a confirmed participant
        stays confirmed. Whether anything changed."""

    def remove_participant(self, ticket_id: int, address: str) -> bool:
        """`address` no longer takes part; whether it did."""

    def add_references(self, ticket_id: int, ids: Iterable[str]) -> None:
        """Remember the Message-IDs a customer's message of the ticket referred to, those
        not known yet (as a message or as a reference)."""

    def add_outgoing(self, message: dict[str, Any], outbox: dict[str, Any], *,
                     automatic: bool) -> None:
        """A queued mail: its message row and its outbox row."""

    def add_event(self, ticket_id: int, kind: str, at: datetime, data: dict[str, Any]) -> None:
        ...

    def suppress(self, address: str, until: datetime, reason: str, now: datetime) -> None:
        """No automatic mail to `address` until `until`."""

    def write(self) -> None:
        """Everything added so far reaches the database (within the transaction)."""


def new_ticket_object(ticket_id: int, row: dict[str, Any]) -> Ticket:
    """A Ticket holding `row`, every column given, made the way the ORM makes the objects
    it loads: the declarative constructor would set each of some thirty attributes through
    the instrumentation, with its events and history, at twenty times the cost. The row is
    written with Core, not by the unit of work; what is changed afterwards is tracked as
    usual."""
    if not Ticket.__mapper__.configured:  # before any query did it (a fresh process)
        configure_mappers()
    ticket: Ticket = Ticket.__mapper__.class_manager.new_instance()
    ticket.__dict__.update(row, id=ticket_id)
    return ticket


def ticket_row(values: dict[str, Any]) -> dict[str, Any]:
    """Every column of a new ticket but its id: those not given are NULL."""
    table = Ticket.__table__
    assert isinstance(table, Table)
    return {c.key: None for c in table.columns if c.key != "id"} | values


def upsert_suppression(session: Session, address: str, until: datetime, reason: str,
                       now: datetime) -> None:
    row = session.get(Suppression, address)
    if row is None:
        session.add(Suppression(address=address, until=until, reason=reason, created_at=now))
    else:
        row.until, row.reason = until, reason


class DirectStore:
    """Each lookup asks the database (flushing what was added first, as the ORM's
    autoflush would), each write goes to the session at once."""

    def __init__(self, session: Session, counter: AutomailCounter) -> None:
        self._session = session
        self._counter = counter

    @property
    def session(self) -> Session:
        return self._session

    def _read(self, statement: Any, params: dict[str, Any] | None = None) -> Any:
        self._session.flush()
        return self._session.connection().execute(statement, params)

    def read_ahead(self, *, message_ids: Iterable[str], refs: Iterable[str],
                   recipients: Iterable[str], now: datetime) -> None:
        return None

    def quarantined_before(self, source_key: str) -> str | None:
        reason: str | None = self._read(select(Quarantine.reason).where(
            Quarantine.source_key == source_key)).scalar()
        return reason

    def tickets_for_message_ids(self, ids: Sequence[str]) -> dict[str, int]:
        if not ids:
            return {}
        rows = self._read(TICKETS_BY_MESSAGE_ID, {"ids": list(ids[:MAX_LOOKUP_IDS])})
        return {mid: tid for mid, tid in rows if mid is not None}

    def delivered_before(self, inbound: Inbound) -> bool:
        conds = [Message.raw_sha256 == inbound.raw_sha256]
        if inbound.source:
            conds.append(Message.source_key == inbound.source.key)
        return self._read(select(Message.id).where(
            Message.message_id.is_(None), or_(*conds)).limit(1)).scalar() is not None

    def ticket(self, ticket_id: int) -> Ticket:
        return self._session.get_one(Ticket, ticket_id)

    def ticket_id_by_ref(self, ref: str) -> int | None:
        found: int | None = self._read(select(Ticket.id).where(Ticket.ref == ref)).scalar()
        return found

    def tickets_for_references(self, ids: Sequence[str]) -> dict[str, int]:
        if not ids:
            return {}
        rows = self._read(TICKETS_BY_REFERENCE, {"ids": list(ids[:MAX_LOOKUP_IDS])})
        return dict(rows.all())

    def participants(self, ticket_id: int) -> frozenset[str]:
        requester = self._read(select(Ticket.requester).where(Ticket.id == ticket_id)).scalar()
        confirmed = [a for a, yes in self.participant_list(ticket_id).items() if yes]
        return frozenset({requester or "", *confirmed} - {""})

    def participant_list(self, ticket_id: int) -> dict[str, bool]:
        rows = self._read(PARTICIPANTS, {"tickets": [ticket_id]})
        return {address: bool(confirmed) for _, address, confirmed in rows}

    def customer_thread(self, ticket_id: int) -> tuple[str | None, tuple[str, ...]]:
        return customer_thread(self._session, ticket_id)

    def first_customer_text(self, ticket_id: int) -> str:
        return first_customer_text(self._session, ticket_id)

    def suppression(self, address: str) -> tuple[datetime, str] | None:
        self._session.flush()
        return automail.suppressed(self._session.connection(), [address])[address]

    def automatic_sent(self, address: str, ticket_id: int | None,
                       now: datetime) -> AutomaticSent:
        self._session.flush()
        conn, count = self._session.connection(), self._counter.counts
        return AutomaticSent(
            per_recipient=count(conn, "per_recipient", address, now),
            per_ticket=None if ticket_id is None else count(conn, "per_ticket", ticket_id, now),
            total=count(conn, "total", None, now))

    def insert_ticket(self, values: dict[str, Any]) -> Ticket:
        row = ticket_row(values)
        # Core on the session's connection: one cached statement, no unit of work.
        table = Ticket.__table__
        assert isinstance(table, Table)
        ticket_id = self._session.connection().execute(
            insert(table).returning(table.c.id), row).scalar_one()
        ticket = new_ticket_object(ticket_id, row)
        make_transient_to_detached(ticket)
        self._session.add(ticket)
        return ticket

    def add_message(self, row: dict[str, Any]) -> None:
        self._session.add(Message(**row))

    def add_participant(self, ticket_id: int, address: str, *, confirmed: bool, by: str,
                        at: datetime) -> bool:
        self._session.flush()
        row = self._session.scalar(select(Participant).where(
            Participant.ticket_id == ticket_id, Participant.address == address))
        if row is None:
            self._session.add(Participant(ticket_id=ticket_id, address=address,
                                          confirmed=confirmed, added_by=by, added_at=at))
            return True
        if confirmed and not row.confirmed:
            row.confirmed, row.added_by, row.added_at = True, by, at
            return True
        return False

    def remove_participant(self, ticket_id: int, address: str) -> bool:
        self._session.flush()
        row = self._session.scalar(select(Participant).where(
            Participant.ticket_id == ticket_id, Participant.address == address))
        if row is None:
            return False
        self._session.delete(row)
        return True

    def add_references(self, ticket_id: int, ids: Iterable[str]) -> None:
        wanted = [i for i in dict.fromkeys(ids) if i][:MAX_LOOKUP_IDS]
        if not wanted:
            return
        known = {*self.tickets_for_message_ids(wanted), *self.tickets_for_references(wanted)}
        for mid in wanted:
            if mid not in known:
                self._session.add(MessageRef(message_id=mid, ticket_id=ticket_id))

    def add_outgoing(self, message: dict[str, Any], outbox: dict[str, Any], *,
                     automatic: bool) -> None:
        row = Message(**message)
        self._session.add(row)
        self._session.add(Outbox(**outbox, message=row))

    def add_event(self, ticket_id: int, kind: str, at: datetime, data: dict[str, Any]) -> None:
        self._session.add(Event(ticket_id=ticket_id, kind=kind, at=at, data=data))

    def suppress(self, address: str, until: datetime, reason: str, now: datetime) -> None:
        upsert_suppression(self._session, address, until, reason, now)

    def write(self) -> None:
        self._session.flush()


def customer_thread(session: Session, ticket_id: int) -> tuple[str | None, tuple[str, ...]]:
    ids = [m for m in session.scalars(
        select(Message.message_id).where(
            Message.ticket_id == ticket_id, Message.direction.in_(CUSTOMER_FACING),
            Message.message_id.is_not(None)).order_by(Message.id))]
    last_inbound = session.scalar(
        select(Message.message_id).where(
            Message.ticket_id == ticket_id, Message.direction == "inbound",
            Message.message_id.is_not(None)).order_by(Message.id.desc()).limit(1))
    return last_inbound, tuple(i for i in ids if i)[-20:]


def first_customer_text(session: Session, ticket_id: int) -> str:
    """One column of one row, not the whole thread."""
    return session.scalar(
        select(Message.body_text).where(Message.ticket_id == ticket_id,
                                        Message.direction == "inbound")
        .order_by(Message.id).limit(1)) or ""
