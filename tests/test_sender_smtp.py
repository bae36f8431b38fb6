"""The outbox sender against a real aiosmtpd: each way a server can refuse a message, what
the row and the ticket then say, and that several senders on PostgreSQL never send a row
twice. The sender speaks the envelope itself (MAIL, RCPT, RSET), so these pin down that it
keeps aiosmtplib's `sendmail` outcomes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import create_engine, select
from sqlalchemy.pool import NullPool

from maild.app import App, build
from maild.clock import FixedClock
from maild.domain import Fetched, SourceRef
from maild.outbound.sender import DrainStats, OutboxSender
from maild.store.models import Event, Outbox
from tests.kit import SUPPORT, add_tickets, customer_mail, settings_for
from tests.servers.dovecot import HOST, free_port
from tests.servers.smtp import SmtpServer

RAW = b"From: support@example.test\r\nSubject: hello\r\n\r\nA message.\r\n"


def make_app(folder: Path, db_url: str, host: str, port: int, **outbox: Any) -> App:
    settings = settings_for(folder, db_url=db_url,
                            smtp={"host": host, "port": port, "security": "none"},
                            outbox={"backoff_initial": 1, "backoff_max": 4, **outbox})
    return build(settings, clock=FixedClock())


@pytest.fixture
def app(tmp_path: Path, sqlite_url: str, smtp_server: SmtpServer) -> Iterator[App]:
    application = make_app(tmp_path, sqlite_url, smtp_server.host, smtp_server.port)
    yield application
    application.dispose()


def queue(app: App, rcpt_to: str, raw: bytes = RAW, mail_from: str = SUPPORT,
          ticket_id: int | None = None) -> int:
    """An outbox row as maild composes them, due now; its id."""
    now = app.clock.now()
    with app.sessions() as session:
        row = Outbox(ticket_id=ticket_id, message_row_id=None,
                     message_id=f"{uuid.uuid4().hex}@example.test", kind="notification",
                     mail_from=mail_from, rcpt_to=rcpt_to, raw=raw, status="pending",
                     attempts=0, next_attempt_at=now, last_error=None, created_at=now,
                     sent_at=None)
        session.add(row)
        session.commit()
        return row.id


def rows(app: App) -> list[Outbox]:
    with app.sessions() as session:
        return list(session.scalars(select(Outbox).order_by(Outbox.id)))


def drain(app: App) -> DrainStats:
    return asyncio.run(app.sender.drain_once())


def test_refused_mail_from_fails_on_5xx_and_is_deferred_on_4xx(
    tmp_path: Path, db_url: str, smtp_server: SmtpServer
) -> None:
    """On both databases: every kind of outcome is written back by the same statement."""
    app = make_app(tmp_path, db_url, smtp_server.host, smtp_server.port)
    smtp_server.fail_next(1, code=550, text="5.7.1 sender rejected", stage="MAIL")
    smtp_server.fail_next(1, code=451, text="4.3.0 try later", stage="MAIL")
    first, second = queue(app, "a@example.com"), queue(app, "b@example.com")
    stats = drain(app)
    assert (stats.sent, stats.retried, stats.failed) == (0, 1, 1)
    assert smtp_server.messages == []
    failed, deferred = rows(app)
    assert (failed.id, failed.status, failed.attempts) == (first, "failed", 1)
    assert failed.last_error == "550 5.7.1 sender rejected"
    assert (deferred.id, deferred.status, deferred.attempts) == (second, "pending", 1)
    assert deferred.last_error == "451 4.3.0 try later"
    assert deferred.next_attempt_at == app.clock.now() + timedelta(seconds=1)

    assert isinstance(app.clock, FixedClock)
    app.clock.advance(timedelta(seconds=2))
    assert drain(app).sent == 1
    [message] = smtp_server.messages
    assert message.rcpt_tos == ["b@example.com"] and message.data == RAW
    sent = rows(app)[1]
    assert (sent.status, sent.attempts, sent.last_error) == ("sent", 2, None)
    assert sent.sent_at == app.clock.now()
    app.dispose()


def test_refused_recipient_fails_the_message_and_is_recorded_on_the_ticket(
    tmp_path: Path, sqlite_url: str, smtp_server: SmtpServer
) -> None:
    app = make_app(tmp_path, sqlite_url, smtp_server.host, smtp_server.port)
    smtp_server.reject_recipient("gone@example.org", code=550, text="5.1.1 no such user")
    app.pipeline.process_batch([Fetched(SourceRef("support", "INBOX", 1, 1),
                                        customer_mail(sender="gone@example.org"))])
    assert drain(app).failed == 1
    [ack] = rows(app)
    assert (ack.status, ack.attempts, ack.last_error) == ("failed", 1, "550 5.1.1 no such user")
    with app.sessions() as session:
        [event] = session.scalars(select(Event).where(Event.kind == "acknowledgement.failed"))
    assert event.ticket_id == ack.ticket_id
    assert event.data == {"message_id": ack.message_id, "code": 550,
                          "error": "5.1.1 no such user", "attempts": 1}
    assert smtp_server.messages == []
    app.dispose()


def test_a_message_goes_to_the_recipients_that_are_not_refused(
    app: App, smtp_server: SmtpServer
) -> None:
    """As with `sendmail`: refused only when every recipient is."""
    smtp_server.reject_recipient("gone@example.org")
    queue(app, "gone@example.org,erika@example.com")
    assert drain(app).sent == 1
    assert [m.rcpt_tos for m in smtp_server.messages] == [["erika@example.com"]]


def test_refused_data_fails_on_5xx_and_is_deferred_on_4xx(
    app: App, smtp_server: SmtpServer
) -> None:
    smtp_server.fail_next(1, code=554, text="5.6.0 content rejected", stage="DATA")
    smtp_server.fail_next(1, code=452, text="4.3.1 out of space", stage="DATA")
    queue(app, "a@example.com")
    queue(app, "b@example.com")
    stats = drain(app)
    assert (stats.sent, stats.retried, stats.failed) == (0, 1, 1)
    assert [(r.status, r.last_error) for r in rows(app)] == [
        ("failed", "554 5.6.0 content rejected"), ("pending", "452 4.3.1 out of space")]


@pytest.mark.parametrize("stage", ["MAIL", "RCPT"])
def test_after_a_refusal_the_next_message_on_the_connection_goes_through(
    app: App, smtp_server: SmtpServer, stage: str
) -> None:
    """Both rows go over one connection (a batch this small gets one). A refused RCPT
    leaves the sender in the envelope: without RSET the next MAIL would be refused
    ("503 nested MAIL command")."""
    if stage == "MAIL":
        smtp_server.fail_next(1, code=550, stage="MAIL")
    else:
        smtp_server.reject_recipient("gone@example.org")
    queue(app, "gone@example.org")
    queue(app, "erika@example.com")
    stats = drain(app)
    assert (stats.sent, stats.failed) == (1, 1)
    assert [m.rcpt_tos for m in smtp_server.messages] == [["erika@example.com"]]


def test_the_content_arrives_as_composed_with_leading_dots_stuffed(
    app: App, smtp_server: SmtpServer
) -> None:
    raw = b"Subject: dots\r\n\r\n.\r\n..two\r\n.three\r\nend"  # no final CRLF: DATA adds it
    queue(app, "erika@example.com", raw)
    assert drain(app).sent == 1
    [message] = smtp_server.messages
    assert message.data == raw + b"\r\n"


def test_an_address_smtp_cannot_carry_fails_its_row_and_the_rest_is_sent(
    app: App, smtp_server: SmtpServer
) -> None:
    """Never put on the command line (where it could add parameters), and no exception
    that would stop every later message from being sent."""
    bad = [queue(app, "foo bar@example.com"), queue(app, "a@example.com> NOTIFY=NEVER"),
           queue(app, "erika@example.com", mail_from="x@example.com\r\nRSET")]
    queue(app, "erika@example.com")
    stats = drain(app)
    assert (stats.sent, stats.failed) == (1, 3)
    states = {r.id: (r.status, (r.last_error or "")[:3]) for r in rows(app)}
    assert [states[i] for i in bad] == [("failed", "553")] * 3
    assert [m.rcpt_tos for m in smtp_server.messages] == [["erika@example.com"]]


def test_a_backlog_goes_over_connections_kept_from_batch_to_batch(
    tmp_path: Path, sqlite_url: str, smtp_server: SmtpServer
) -> None:
    """Three batches over one connection: connecting and EHLO once per drain, not per batch."""
    app = make_app(tmp_path, sqlite_url, smtp_server.host, smtp_server.port,
                   batch_size=3, connections=1)
    try:
        for i in range(9):
            queue(app, f"c{i}@example.com")
        assert drain(app).sent == 9
    finally:
        app.dispose()
    assert len(smtp_server.messages) == 9
    assert len({m.peer for m in smtp_server.messages}) == 1


def test_a_kept_connection_the_server_closed_is_opened_anew(
    tmp_path: Path, sqlite_url: str, smtp_server: SmtpServer
) -> None:
    """The server restarts as the first batch ends: the second batch goes out over a new
    connection, and no row waits for a retry."""
    app = make_app(tmp_path, sqlite_url, smtp_server.host, smtp_server.port,
                   batch_size=3, connections=1)
    end_batch = app.sender._end_batch
    restarted: list[bool] = []

    def end_then_restart(*args: Any) -> None:
        end_batch(*args)
        if not restarted:
            smtp_server.stop()
            smtp_server.start()
            restarted.append(True)

    app.sender._end_batch = end_then_restart  # type: ignore[method-assign,assignment]
    try:
        for i in range(6):
            queue(app, f"c{i}@example.com")
        stats = drain(app)
        assert (stats.sent, stats.unreachable) == (6, False)
        assert [r.status for r in rows(app)] == ["sent"] * 6
    finally:
        app.dispose()
    assert len({m.peer for m in smtp_server.messages}) == 2


def test_one_address_gets_each_tickets_mail_in_order_over_several_connections(
    tmp_path: Path, sqlite_url: str, smtp_server: SmtpServer
) -> None:
    """A team address gets the notifications of many tickets: they spread over the
    connections, and each ticket's mail still arrives in the order it was queued."""
    app = make_app(tmp_path, sqlite_url, smtp_server.host, smtp_server.port,
                   batch_size=200, connections=4)
    try:
        tickets = add_tickets(app, 8)
        for i in range(80):
            ticket = tickets[i % len(tickets)]
            queue(app, "team@example.com", f"Subject: {ticket} {i}\r\n\r\nx\r\n".encode(),
                  ticket_id=ticket)
        assert drain(app).sent == 80
    finally:
        app.dispose()
    received = [m.message["Subject"].split() for m in smtp_server.messages]
    for ticket in tickets:
        numbers = [int(n) for t, n in received if int(t) == ticket]
        assert numbers == sorted(numbers) and len(numbers) == 10
    assert len({m.peer for m in smtp_server.messages}) > 1


# -- a peer that shows the envelope and answers EHLO and HELO as told ----------------------


class Peer:
    """aiosmtpd handler: records (MAIL options, content) of each message; answers EHLO and
    HELO with `ehlo` and `helo` when given (a refusal), as aiosmtpd does otherwise."""

    def __init__(self, ehlo: str | None = None, helo: str | None = None) -> None:
        self.ehlo, self.helo = ehlo, helo
        self.received: list[tuple[list[str], bytes]] = []

    async def handle_EHLO(self, server: Any, session: Any, envelope: Any, hostname: str,
                          responses: list[str]) -> list[str]:
        if self.ehlo is not None:
            return [self.ehlo]
        session.host_name = hostname
        return responses

    async def handle_HELO(self, server: Any, session: Any, envelope: Any,
                          hostname: str) -> str:
        if self.helo is not None:
            return self.helo
        session.host_name = hostname
        return f"250 {server.hostname}"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.received.append((list(envelope.mail_options), bytes(envelope.original_content)))
        return "250 OK"


def serve(peer: Peer) -> Controller:
    controller = Controller(peer, hostname=HOST, port=free_port(), ready_timeout=10.0)
    controller.start()
    return controller


def test_size_is_the_length_of_what_data_sends(tmp_path: Path, sqlite_url: str) -> None:
    peer = Peer()
    controller = serve(peer)
    app = make_app(tmp_path, sqlite_url, HOST, controller.port)
    try:
        queue(app, "a@example.com", RAW)
        queue(app, "b@example.com", b"Subject: x\r\n\r\n.dot\r\nno final line end")
        assert drain(app).sent == 2
    finally:
        app.dispose()
        controller.stop()
    assert [options for options, _ in peer.received] == [
        [f"SIZE={len(content)}"] for _, content in peer.received]
    assert [content for _, content in peer.received] == [
        RAW, b"Subject: x\r\n\r\n.dot\r\nno final line end\r\n"]


def test_a_server_without_ehlo_is_greeted_with_helo(tmp_path: Path, sqlite_url: str) -> None:
    peer = Peer(ehlo="500 5.5.1 command unrecognized")
    controller = serve(peer)
    app = make_app(tmp_path, sqlite_url, HOST, controller.port)
    try:
        queue(app, "a@example.com")
        assert drain(app).sent == 1
    finally:
        app.dispose()
        controller.stop()
    assert peer.received == [([], RAW)]  # no SIZE: a HELO server announces no extensions


def test_a_server_refusing_ehlo_and_helo_refuses_the_session(
    tmp_path: Path, sqlite_url: str
) -> None:
    """As a refused login: nothing is sent and no attempt is used up."""
    peer = Peer(ehlo="554 5.7.1 go away", helo="554 5.7.1 go away")
    controller = serve(peer)
    app = make_app(tmp_path, sqlite_url, HOST, controller.port)
    try:
        queue(app, "a@example.com")
        stats = drain(app)
        [row] = rows(app)
    finally:
        app.dispose()
        controller.stop()
    assert stats.unreachable and stats.error is not None and "go away" in stats.error
    assert (row.status, row.attempts, row.last_error) == ("pending", 0, None)
    assert peer.received == []


# -- PostgreSQL: several daemons on one database ------------------------------------------


def test_senders_sharing_a_postgresql_database_send_every_row_once(
    tmp_path: Path, pg_url: str, smtp_server: SmtpServer
) -> None:
    """Small batches, so that each sender claims while the others hold claimed rows and
    talk SMTP: `FOR UPDATE SKIP LOCKED` must keep them from taking the same rows."""
    app = make_app(tmp_path, pg_url, smtp_server.host, smtp_server.port,
                   batch_size=4, connections=2)
    try:
        ids = [queue(app, f"c{i % 7}@example.com", f"Subject: {i}\r\n\r\nx\r\n".encode())
               for i in range(60)]
        senders = [OutboxSender(sessions=app.sessions, smtp=app.sender.smtp,
                                policy=app.sender.policy, clock=app.clock)
                   for _ in range(4)]

        async def all_at_once() -> list[DrainStats]:
            return await asyncio.gather(*(s.drain_once() for s in senders))

        stats = asyncio.run(all_at_once())
        assert sum(s.sent for s in stats) == len(ids)
        assert sum(1 for s in stats if s.sent) > 1  # the senders did share the work
        assert [(r.status, r.attempts) for r in rows(app)] == [("sent", 1)] * len(ids)
    finally:
        app.dispose()
    received = sorted(int(m.message["Subject"]) for m in smtp_server.messages)
    assert received == list(range(len(ids)))


# -- the crash window: one message per connection ------------------------------------------


class Witness(Peer):
    """A peer that, as each message's final dot arrives (before its 250 goes out), looks in
    the database whether every message it took before on that connection is recorded as
    sent; those that are not are noted in `unrecorded`."""

    def __init__(self, url: str) -> None:
        super().__init__()
        self.engine = create_engine(url, poolclass=NullPool)
        self.taken: dict[Any, list[str]] = {}
        self.unrecorded: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = bytes(envelope.original_content)
        message_id = content.split(b"X-Row: ", 1)[1].split(b"\r\n", 1)[0].decode()
        before = self.taken.setdefault(session.peer, [])
        with self.engine.connect() as conn:
            statuses = {m: s for m, s in conn.execute(
                select(Outbox.message_id, Outbox.status).where(Outbox.message_id.in_(before)))}
        self.unrecorded += [m for m in before if statuses.get(m) != "sent"]
        before.append(message_id)
        self.received.append((list(envelope.mail_options), content))
        return "250 OK"


def test_a_message_is_recorded_sent_before_the_next_one_on_its_connection_is_taken(
    tmp_path: Path, db_url: str
) -> None:
    """The crash window is one message per connection: when the server takes a message,
    everything it took before on that connection is already committed as sent."""
    witness = Witness(db_url)
    controller = serve(witness)
    app = make_app(tmp_path, db_url, HOST, controller.port, connections=4)
    try:
        row_ids = [queue(app, f"c{i}@example.com") for i in range(60)]
        with app.sessions() as session:
            for row_id in row_ids:
                row = session.get_one(Outbox, row_id)
                row.raw = f"X-Row: {row.message_id}\r\nSubject: x\r\n\r\nx\r\n".encode()
            session.commit()
        assert drain(app).sent == 60
    finally:
        app.dispose()
        controller.stop()
        witness.engine.dispose()
    assert len(witness.received) == 60
    assert len(witness.taken) > 1  # several connections
    assert witness.unrecorded == []
