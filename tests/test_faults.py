"""Faults while the daemon runs: IMAP, SMTP and the database go away and come back.

The issue: "Dovecot stopped and started while the daemon runs, the SMTP server down for a while
and answering 4xx, the database locked: the daemon waits and retries with backoff, logs
clearly, and catches up afterwards with nothing lost and nothing sent twice."

Most tests run the real daemon (`python -m maild -c CONFIG run`) as a child process against a
real Dovecot and a real aiosmtpd, and read its JSON log lines from a file; the one that needs a
shorter SQLite busy timeout than maild's 30 s runs `daemon.run_forever` in a thread instead.
Every wait polls a condition (rows committed, folder counts, log events) under a deadline;
nothing sleeps to wait for work. Afterwards the counts are exact: one ticket and one
acknowledgement per new request, one quarantine row (and one message in the Quarantine folder)
per unusable message, every fetched message in Processed or Quarantine, and no acknowledgement
delivered twice (where the line to the SMTP server was cut while it worked: at most one per
connection, since SMTP cannot close the window between the server's 250 and maild's record).

An outage cuts the live connections, not only the server: stopping Dovecot leaves the
`imap` processes of open sessions serving, so the IMAP and SMTP tests put a TCP relay
(tests/servers/relay.py) between maild and the server and take it down (live connections
dropped, new ones refused); the PostgreSQL one terminates the daemon's backends and refuses
new connections to its database. Each asserts that the daemon saw the outage (its warnings
in the log, a new connection through the relay) before it asserts the recovery.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import structlog
from sqlalchemy import Engine, create_engine, event, func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool

from maild import daemon
from maild.app import App, build
from maild.clock import FixedClock
from maild.fetch.imap import ImapSource
from maild.store.models import Event, MailboxState, Message, Outbox, Quarantine, Ticket
from tests.kit import customer_mail, message_id_of, settings_for, write_config
from tests.servers.dovecot import MailUser
from tests.servers.postgres import outage as pg_outage
from tests.servers.relay import Relay
from tests.servers.smtp import SmtpServer, Stage

pytestmark = pytest.mark.slow

BATCH = {"batch_size": 10}
CATCH_UP = 120.0  # generous: other test runs share this machine; never unbounded


# -- the mail: new requests, replies, duplicates, unusable messages ---------------------------


@dataclass
class Load:
    raws: list[bytes] = field(default_factory=list)
    roots: list[bytes] = field(default_factory=list)  # new requests: a ticket and an ack each
    replies: int = 0
    duplicates: int = 0
    bad: int = 0  # no From: quarantined

    @property
    def good_ids(self) -> set[str]:
        """Message-IDs of the distinct messages that end in a ticket."""
        return {message_id_of(r).strip("<>") for r in self.raws if b"\r\nFrom:" in b"\r\n" + r}


def build_load(count: int, *, tag: str) -> Load:
    """`count` messages in a fixed pattern, each new request from its own customer (so the
    per-recipient limit on automatic mail never holds an acknowledgement back).

    Replies come from the customer who opened the ticket and thread by In-Reply-To and
    References; duplicates are byte-for-byte second deliveries; unusable messages have no
    From (and no Message-ID, so each is a distinct message).
    """
    load = Load()
    for i in range(count):
        if i % 20 == 7:
            load.raws.append(f"Subject: {tag} unusable {i}\r\n\r\nno from\r\n".encode())
            load.bad += 1
        elif i % 37 == 30:
            load.raws.append(load.roots[-2])  # delivered twice
            load.duplicates += 1
        elif i % 4 == 3 and load.roots:
            n = (i * 7) % len(load.roots)
            parent = load.roots[n]
            load.raws.append(customer_mail(
                sender=f"customer{n}.{tag}@example.com", subject=f"Re: {tag} request {n}",
                body=f"Some more details for request {n}.",
                in_reply_to=message_id_of(parent), references=[message_id_of(parent)]))
            load.replies += 1
        else:
            n = len(load.roots)
            raw = customer_mail(sender=f"Customer {n} <customer{n}.{tag}@example.com>",
                                subject=f"{tag} request {n}",
                                body=f"Request {n}: something does not work. Please help.")
            load.roots.append(raw)
            load.raws.append(raw)
    assert load.bad >= 2 and load.duplicates >= 1 and load.replies >= count // 8
    return load


# -- watching the daemon -----------------------------------------------------------------------


def wait_until(check: Callable[[], bool], what: str, timeout: float,
               alive: Callable[[], None] = lambda: None) -> None:
    """Poll `check` until it holds; fail after `timeout` seconds (or when `alive` fails)."""
    deadline = time.monotonic() + timeout
    while not check():
        alive()
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.05)


class DaemonProcess:
    """`maild run` as a child process; its JSON log lines go to `log`."""

    def __init__(self, config: Path, log: Path) -> None:
        self.config, self.log = config, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as err:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "maild", "-c", str(self.config), "run"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                start_new_session=True,
            )
        wait_until(lambda: self.seen("daemon.started"), "daemon.started", 60, self.alive)

    def alive(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            pytest.fail(f"the daemon exited (status {self.proc and self.proc.returncode}):\n"
                        + self.log.read_text(errors="replace")[-4000:])

    def stop(self) -> int:
        """SIGTERM and wait (bounded); SIGKILL if it does not stop."""
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            raise AssertionError("the daemon did not stop within 60 s of SIGTERM") from None

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # not a structlog line
            if isinstance(entry, dict) and (name is None or entry.get("event") == name):
                out.append(entry)
        return out

    def seen(self, name: str, count: int = 1) -> bool:
        return len(self.events(name)) >= count


@pytest.fixture
def run_daemon(tmp_path: Path) -> Iterator[Callable[[Path], DaemonProcess]]:
    started: list[DaemonProcess] = []

    def start(config: Path) -> DaemonProcess:
        proc = DaemonProcess(config, tmp_path / "daemon.log")
        started.append(proc)
        proc.start()
        return proc

    yield start
    for proc in started:
        proc.stop()


class Db:
    """Read-only look at the daemon's database (a connection per query: no lock held)."""

    def __init__(self, url: str) -> None:
        self.engine: Engine = create_engine(url, poolclass=NullPool)

    def count(self, model: type, *where: Any) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(model).where(*where)) or 0)

    def inbound(self) -> int:
        return self.count(Message, Message.direction == "inbound")

    def committed(self) -> int:
        """Messages the daemon is done with: stored (duplicates aside) or quarantined."""
        return self.inbound() + self.count(Quarantine)

    def committed_over(self, count: int) -> Callable[[], bool]:
        return lambda: self.committed() >= count

    def outbox(self) -> list[tuple[str, str, str, int]]:
        """(kind, message_id, status, attempts) of every outbox row."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(Outbox.kind, Outbox.message_id, Outbox.status,
                                       Outbox.attempts).order_by(Outbox.id))
            return [(k, m, s, a) for k, m, s, a in rows]

    def drained(self) -> bool:
        return all(status == "sent" for _, _, status, _ in self.outbox())


@pytest.fixture
def db_of() -> Iterator[Callable[[str], Db]]:
    made: list[Db] = []

    def make(url: str) -> Db:
        made.append(Db(url))
        return made[-1]

    yield make
    for db in made:
        db.engine.dispose()


def smtp_config(smtp: SmtpServer) -> dict[str, Any]:
    return {"host": smtp.host, "port": smtp.port, "security": "none"}


def assert_exact_outcome(load: Load, db: Db, user: MailUser, smtp: SmtpServer,
                         resent_at_most: int = 0) -> None:
    """Tickets, acknowledgements, quarantine and folders: exact counts, nothing twice.

    `resent_at_most`: a line cut while the sender works can drop the server's 250 of a
    message it has taken (SMTP cannot close that window): such a mail goes out again, at
    most one per SMTP connection a cut, never a third time.
    """
    roots = len(load.roots)
    assert db.count(Ticket) == roots
    with db.engine.connect() as conn:
        stored = Counter(conn.execute(
            select(Message.message_id).where(Message.direction == "inbound")).scalars())
    assert set(stored) == load.good_ids and set(stored.values()) == {1}
    assert db.count(Quarantine) == load.bad
    outbox = db.outbox()
    acks = [mid for kind, mid, _, _ in outbox if kind == "acknowledgement"]
    assert len(acks) == roots == len(set(acks))
    assert [row for row in outbox if row[2] != "sent"] == []
    assert user.count("INBOX") == 0
    assert user.count("Processed") + user.count("Quarantine") == len(load.raws)
    assert user.count("Quarantine") == load.bad
    received = Counter(str(m.message["Message-ID"]).strip("<>") for m in smtp.messages)
    assert set(received) == {mid for _, mid, _, _ in outbox}
    twice = {mid: n for mid, n in received.items() if n > 1}
    assert len(twice) <= resent_at_most and set(twice.values()) <= {2}, \
        f"delivered more than once: {twice}"


# -- IMAP cut off ------------------------------------------------------------------------------


@pytest.fixture
def imap_relay(mail_user: MailUser) -> Iterator[Relay]:
    """The line between maild and Dovecot. Stopping Dovecot would not do: its `imap`
    processes go on serving the sessions already open."""
    with Relay(mail_user.host, mail_user.port) as relay:
        yield relay


@pytest.fixture
def smtp_relay(smtp_server: SmtpServer) -> Iterator[Relay]:
    with Relay(smtp_server.host, smtp_server.port) as relay:
        yield relay


def via(relay: Relay, config: dict[str, Any]) -> dict[str, Any]:
    return {**config, "host": relay.host, "port": relay.port}


def reconnected(relay: Relay, before: int) -> Callable[[], bool]:
    return lambda: relay.accepted > before


def test_imap_cut_off_twice_during_a_run(
    tmp_path: Path, mail_user: MailUser, imap_relay: Relay, smtp_server: SmtpServer,
    db_url: str, run_daemon: Callable[[Path], DaemonProcess], db_of: Callable[[str], Db],
) -> None:
    """The live IMAP session is dropped and reconnecting refused for a while, twice."""
    load = build_load(220, tag="imap")
    mail_user.append_many(load.raws)
    config = write_config(tmp_path, db_url=db_url,
                          imap=via(imap_relay, mail_user.imap_config()),
                          smtp=smtp_config(smtp_server), mailbox=BATCH)
    db = db_of(db_url)
    proc = run_daemon(config)
    distinct = len(load.raws) - load.duplicates

    def warned(count: int) -> Callable[[], bool]:
        return lambda: len(proc.events("imap.disconnected")) >= count

    for threshold in (20, 110):
        wait_until(db.committed_over(threshold), f"{threshold} messages committed", 60,
                   proc.alive)
        before = len(proc.events("imap.disconnected"))
        sessions = imap_relay.accepted
        assert imap_relay.live >= 1, "maild holds an IMAP session"
        imap_relay.down()
        # The daemon notices, says so, and retries with a growing delay while IMAP is away.
        wait_until(warned(before + 2), "two imap.disconnected warnings", 30, proc.alive)
        progress = db.committed()
        assert progress < distinct, "the run was over before IMAP went away"
        imap_relay.up()
        wait_until(reconnected(imap_relay, sessions), "a new IMAP session", 60, proc.alive)
        wait_until(db.committed_over(progress + 1), "progress after the reconnect", 60,
                   proc.alive)
    wait_until(lambda: db.committed() >= distinct and
               mail_user.count("INBOX") == 0, "every message processed", CATCH_UP, proc.alive)
    smtp_server.wait_for(len(load.roots), timeout=CATCH_UP)
    wait_until(db.drained, "the outbox drained", CATCH_UP, proc.alive)
    assert proc.stop() == 0

    assert_exact_outcome(load, db, mail_user, smtp_server)
    warnings = proc.events("imap.disconnected")
    assert len(warnings) >= 4
    assert all(w["level"] == "warning" and w["error"] and w["mailbox"] == "support"
               for w in warnings)
    delays = [float(w["retry_in"]) for w in warnings]
    assert max(delays) >= 2 * min(delays), f"no backoff in the retry delays {delays}"
    refused = [w for w in warnings if f":{imap_relay.port}" in w["error"]]
    assert refused, "a failed reconnect names the server it could not reach"


def test_quarantined_message_fetched_again_goes_back_to_quarantine(
    tmp_path: Path, mail_user: MailUser, sqlite_url: str,
) -> None:
    """The window IMAP can close on: the batch is committed, the MOVE never happened.

    The message that was quarantined is fetched again after the reconnect; it belongs in the
    Quarantine folder (where the operator looks for it), without a second quarantine row.
    """
    settings = settings_for(tmp_path, db_url=sqlite_url, imap=mail_user.imap_config())
    app = build(settings, clock=FixedClock())
    try:
        mail_user.append(b"Subject: x\r\n\r\nno from\r\n")
        mail_user.append(customer_mail())
        source = ImapSource(settings.mailboxes[0])
        source.open()
        try:
            first = app.pipeline.process_batch(source.fetch(source.unacknowledged()))
        finally:
            source.close()  # committed, never acknowledged: IMAP went away here
        assert len(first.held) == 1 and len(first.done) == 1
        daemon.run_once(app)
        assert mail_user.count("INBOX") == 0
        with app.sessions() as s:
            assert s.scalar(select(func.count()).select_from(Quarantine)) == 1
            assert s.scalar(select(func.count()).select_from(Ticket)) == 1
        assert mail_user.count("Processed") == 1
        assert mail_user.count("Quarantine") == 1
    finally:
        app.dispose()


# -- SMTP down, SMTP answering 4xx -------------------------------------------------------------


CONNECTIONS = 4  # outbox.connections, maild's default


def test_smtp_down_for_a_while_then_back(
    tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, smtp_relay: Relay,
    sqlite_url: str, run_daemon: Callable[[Path], DaemonProcess], db_of: Callable[[str], Db],
) -> None:
    """The line to the SMTP server is cut as the first acknowledgements go out (the live
    sessions dropped, new ones refused), and back after a while."""
    load = build_load(150, tag="smtp")
    early, during, late = load.raws[:60], load.raws[60:130], load.raws[130:]
    config = write_config(tmp_path, db_url=sqlite_url, imap=mail_user.imap_config(),
                          smtp=via(smtp_relay, smtp_config(smtp_server)), mailbox=BATCH)
    db = db_of(sqlite_url)
    proc = run_daemon(config)
    mail_user.append_many(early)
    smtp_server.wait_for(10, timeout=60)
    smtp_relay.down()  # in the middle of sending the first acknowledgements
    mail_user.append_many(during)
    # Ingestion goes on without SMTP: every message becomes a ticket or is quarantined.
    in_time = sum(1 for i, r in enumerate(load.raws[:130]) if r not in load.raws[:i])
    wait_until(lambda: db.committed() >= in_time and mail_user.count("INBOX") == 0,
               "ingestion while SMTP is down", CATCH_UP, proc.alive)
    wait_until(lambda: proc.seen("smtp.unreachable", 2), "smtp.unreachable warnings", 60,
               proc.alive)
    # Besides the sessions the cut ended, a new one refused (the sender retries within
    # outbox.backoff_max, 4 s here): its warning names the server it could not reach.
    wait_until(lambda: any(f"port {smtp_relay.port}" in e["error"]
                           for e in proc.events("smtp.unreachable")),
               "a refused reconnect", 60, proc.alive)
    waiting = [row for row in db.outbox() if row[2] == "pending"]
    assert waiting, "the outbox should hold acknowledgements while SMTP is down"
    assert all(row[3] == 0 for row in waiting), "an unreachable server uses up no attempts"
    sessions = smtp_relay.accepted
    smtp_relay.up()
    mail_user.append_many(late)  # and mail keeps arriving
    smtp_server.wait_for(len(load.roots), timeout=CATCH_UP)
    wait_until(db.drained, "the outbox drained", CATCH_UP, proc.alive)
    assert smtp_relay.accepted > sessions, "the sender connected again"
    assert proc.stop() == 0

    assert_exact_outcome(load, db, mail_user, smtp_server, resent_at_most=CONNECTIONS)
    unreachable = proc.events("smtp.unreachable")
    assert all(e["level"] == "warning" and e["error"] for e in unreachable)


def test_smtp_back_after_a_short_outage_the_outbox_resumes_within_backoff_max(
    tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, smtp_relay: Relay,
    sqlite_url: str, run_daemon: Callable[[Path], DaemonProcess], db_of: Callable[[str], Db],
) -> None:
    """outbox.backoff_max is 4 s here (tests/kit.py): once SMTP answers again, the queued
    acknowledgements leave within a few of those periods, new mail or not."""
    load = build_load(80, tag="resume")
    config = write_config(tmp_path, db_url=sqlite_url, imap=mail_user.imap_config(),
                          smtp=via(smtp_relay, smtp_config(smtp_server)), mailbox=BATCH)
    db = db_of(sqlite_url)
    proc = run_daemon(config)
    smtp_relay.down()
    chunks = [load.raws[i:i + 10] for i in range(0, len(load.raws), 10)]
    for chunk in chunks:  # each batch wakes the sender, which finds SMTP down
        mail_user.append_many(chunk)
        wait_until(lambda: mail_user.count("INBOX") == 0, "a chunk processed", 60, proc.alive)
    wait_until(lambda: proc.seen("smtp.unreachable", 6), "six smtp.unreachable warnings", 60,
               proc.alive)
    assert not db.drained()
    assert smtp_server.messages == []
    smtp_relay.up()
    smtp_server.wait_for(len(load.roots), timeout=20)  # 5 x backoff_max: generous
    wait_until(db.drained, "the outbox drained", 20, proc.alive)
    assert smtp_relay.accepted >= 1
    assert proc.stop() == 0
    assert_exact_outcome(load, db, mail_user, smtp_server)


@pytest.mark.parametrize(("code", "stage"), [(451, "DATA"), (452, "RCPT"), (421, "DATA")])
def test_smtp_temporary_failures_are_retried_and_sent_once(
    tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, sqlite_url: str,
    run_daemon: Callable[[Path], DaemonProcess], db_of: Callable[[str], Db],
    code: int, stage: Stage,
) -> None:
    load = build_load(60, tag=f"smtp{code}")
    failures = 12
    smtp_server.fail_next(failures, code=code, stage=stage)
    config = write_config(tmp_path, db_url=sqlite_url, imap=mail_user.imap_config(),
                          smtp=smtp_config(smtp_server), mailbox=BATCH)
    db = db_of(sqlite_url)
    proc = run_daemon(config)
    mail_user.append_many(load.raws)
    smtp_server.wait_for(len(load.roots), timeout=CATCH_UP)
    wait_until(db.drained, "the outbox drained", CATCH_UP, proc.alive)
    assert proc.stop() == 0

    assert_exact_outcome(load, db, mail_user, smtp_server)
    attempts = sum(row[3] for row in db.outbox())
    # Each refusal costs the row it hit one attempt (421 closes the session: the rows not
    # tried in it keep their attempts).
    assert len(load.roots) < attempts <= len(load.roots) + failures
    deferred = proc.events("reply.deferred")
    assert deferred and all(e["code"] == code for e in deferred)


# -- the database locked -----------------------------------------------------------------------


def sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


class WriteLock:
    """A write lock on the daemon's database, held by the test: readers still read.

    SQLite: BEGIN EXCLUSIVE (in WAL mode readers go on). PostgreSQL: LOCK TABLE ... IN
    EXCLUSIVE MODE on every table the daemon writes to (SELECT still works, INSERT, UPDATE
    and SELECT ... FOR UPDATE wait).
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._sqlite: sqlite3.Connection | None = None
        self._pg: Any = None

    def __enter__(self) -> WriteLock:
        if self.url.startswith("sqlite"):
            self._sqlite = sqlite3.connect(sqlite_path(self.url), timeout=30,
                                           isolation_level=None)
            try:
                self._sqlite.execute("BEGIN EXCLUSIVE")
            except sqlite3.Error:
                self._sqlite.close()
                raise
            return self
        engine = create_engine(self.url, poolclass=NullPool)
        conn = engine.connect()
        self._pg = (engine, conn)
        tables = ", ".join(m.__table__.name for m in (Ticket, Message, Event, Outbox,
                                                      Quarantine, MailboxState))
        for attempt in range(5):
            try:
                conn.exec_driver_sql("SET LOCAL lock_timeout = '20s'")
                conn.exec_driver_sql(f"LOCK TABLE {tables} IN EXCLUSIVE MODE")
                return self
            except OperationalError as exc:
                # The daemon's transaction and ours can deadlock while the locks are taken
                # one table after the other; PostgreSQL then aborts one of them. Try again.
                conn.rollback()
                error = exc
                time.sleep(0.1 * (attempt + 1))
        self.__exit__()
        raise error

    def __exit__(self, *exc: object) -> None:
        if self._sqlite is not None:
            self._sqlite.rollback()
            self._sqlite.close()
        if self._pg is not None:
            engine, conn = self._pg
            self._pg = None
            conn.rollback()
            conn.close()
            engine.dispose()


def test_database_locked_for_a_few_seconds_the_daemon_waits_and_catches_up(
    tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, db_url: str,
    run_daemon: Callable[[Path], DaemonProcess], db_of: Callable[[str], Db],
) -> None:
    load = build_load(80, tag="lock")
    config = write_config(tmp_path, db_url=db_url, imap=mail_user.imap_config(),
                          smtp=smtp_config(smtp_server), mailbox=BATCH)
    db = db_of(db_url)
    proc = run_daemon(config)
    first = load.raws[:40]
    mail_user.append_many(first)
    wait_until(lambda: mail_user.count("INBOX") == 0, "the first messages", 60, proc.alive)
    wait_until(db.drained, "the first acknowledgements sent", 60, proc.alive)
    committed = db.committed()

    with WriteLock(db_url):
        mail_user.append_many(load.raws[40:])
        # While the lock is held nothing can be committed, so nothing is acknowledged on IMAP.
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            proc.alive()
            assert mail_user.count("INBOX") == len(load.raws) - 40
            time.sleep(0.2)
        assert db.committed() == committed
    wait_until(lambda: mail_user.count("INBOX") == 0, "catching up", CATCH_UP, proc.alive)
    smtp_server.wait_for(len(load.roots), timeout=CATCH_UP)
    wait_until(db.drained, "the outbox drained", CATCH_UP, proc.alive)
    assert proc.stop() == 0
    assert_exact_outcome(load, db, mail_user, smtp_server)


def test_postgresql_cut_off_for_a_while_the_daemon_sees_it_and_catches_up(
    tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, pg_url: str,
    run_daemon: Callable[[Path], DaemonProcess], db_of: Callable[[str], Db],
) -> None:
    """Every live connection of the daemon terminated and new ones refused for a while, as
    the mail keeps coming: both the mailbox worker and the outbox sender say so, and once
    the database is back they catch up with nothing lost."""
    load = build_load(120, tag="pgcut")
    config = write_config(tmp_path, db_url=pg_url, imap=mail_user.imap_config(),
                          smtp=smtp_config(smtp_server), mailbox=BATCH)
    db = db_of(pg_url)
    proc = run_daemon(config)
    mail_user.append_many(load.raws[:60])
    wait_until(db.committed_over(20), "20 messages committed", 60, proc.alive)
    seen = len(proc.events("db.unavailable"))
    with pg_outage(pg_url) as terminated:
        assert terminated >= 1, "the daemon held no connection to cut"
        mail_user.append_many(load.raws[60:])
        wait_until(lambda: len(proc.events("db.unavailable")) >= seen + 2,
                   "db.unavailable warnings", 60, proc.alive)
        inbox = mail_user.count("INBOX")
        assert inbox > 0, "nothing was waiting while the database was away"
    warned = {e.get("mailbox") or e.get("component") for e in proc.events("db.unavailable")}
    wait_until(lambda: mail_user.count("INBOX") == 0, "catching up", CATCH_UP, proc.alive)
    smtp_server.wait_for(len(load.roots), timeout=CATCH_UP)
    wait_until(db.drained, "the outbox drained", CATCH_UP, proc.alive)
    assert proc.stop() == 0
    assert "support" in warned, warned
    assert_exact_outcome(load, db, mail_user, smtp_server, resent_at_most=CONNECTIONS)


class FailingWrites:
    """Every INSERT into `messages` fails (an SQLite trigger), as on a database that accepts
    connections and reads but cannot write (disk full, a read-only replica after failover)."""

    def __init__(self, url: str) -> None:
        self.path = sqlite_path(url)

    def _run(self, sql: str) -> None:
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        try:
            conn.execute(sql)
        finally:
            conn.close()

    def __enter__(self) -> FailingWrites:
        self._run("CREATE TRIGGER maild_test_no_writes BEFORE INSERT ON messages "
                  "BEGIN SELECT RAISE(ABORT, 'simulated: database cannot write'); END")
        return self

    def __exit__(self, *exc: object) -> None:
        self._run("DROP TRIGGER maild_test_no_writes")


def test_database_refusing_writes_for_a_while_nothing_is_lost(
    tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, sqlite_url: str,
    run_daemon: Callable[[Path], DaemonProcess], db_of: Callable[[str], Db],
) -> None:
    load = build_load(40, tag="nowrite")
    config = write_config(tmp_path, db_url=sqlite_url, imap=mail_user.imap_config(),
                          smtp=smtp_config(smtp_server), mailbox=BATCH)
    db = db_of(sqlite_url)
    proc = run_daemon(config)
    with FailingWrites(sqlite_url):
        mail_user.append_many(load.raws)
        wait_until(lambda: proc.seen("db.unavailable", 2), "db.unavailable warnings", 60,
                   proc.alive)
        assert db.committed() == 0
        assert mail_user.count("INBOX") == len(load.raws)  # nothing acknowledged on IMAP
    wait_until(lambda: mail_user.count("INBOX") == 0, "catching up", CATCH_UP, proc.alive)
    smtp_server.wait_for(len(load.roots), timeout=CATCH_UP)
    wait_until(db.drained, "the outbox drained", CATCH_UP, proc.alive)
    assert proc.stop() == 0
    assert_exact_outcome(load, db, mail_user, smtp_server)
    assert all(w["level"] == "warning" for w in proc.events("db.unavailable"))


def test_database_refusing_writes_the_warning_names_the_cause(
    tmp_path: Path, mail_user: MailUser, sqlite_url: str,
    run_daemon: Callable[[Path], DaemonProcess],
) -> None:
    config = write_config(tmp_path, db_url=sqlite_url, imap=mail_user.imap_config(),
                          mailbox=BATCH)
    proc = run_daemon(config)
    with FailingWrites(sqlite_url):
        mail_user.append(customer_mail())
        wait_until(lambda: proc.seen("db.unavailable"), "a db.unavailable warning", 60,
                   proc.alive)
    [first, *_] = proc.events("db.unavailable")
    assert "database cannot write" in first["error"], first["error"]


def test_database_refusing_writes_the_retries_back_off(
    tmp_path: Path, mail_user: MailUser, sqlite_url: str,
    run_daemon: Callable[[Path], DaemonProcess],
) -> None:
    config = write_config(tmp_path, db_url=sqlite_url, imap=mail_user.imap_config(),
                          mailbox=BATCH)
    proc = run_daemon(config)
    with FailingWrites(sqlite_url):
        mail_user.append(customer_mail())
        wait_until(lambda: proc.seen("db.unavailable", 4), "four db.unavailable warnings", 60,
                   proc.alive)
    delays = [float(w["retry_in"]) for w in proc.events("db.unavailable")]
    assert delays[:4] == sorted(delays[:4]) and delays[3] > delays[0], delays


class InProcessDaemon:
    """`daemon.run_forever(app, stop)` on its own event loop in a thread."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.stop_event = asyncio.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="maild-daemon")

    def _run(self) -> None:
        try:
            self.loop.run_until_complete(daemon.run_forever(self.app, self.stop_event))
        except BaseException as exc:  # reported by the test, not the thread
            self.error = exc
        finally:
            self.loop.run_until_complete(self.loop.shutdown_default_executor())

    def start(self) -> None:
        self.thread.start()

    def alive(self) -> None:
        if not self.thread.is_alive():
            pytest.fail(f"the daemon stopped: {self.error!r}")

    def stop(self) -> None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.stop_event.set)
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "the daemon did not stop within 60 s"
        self.loop.close()


def test_sqlite_locked_longer_than_the_busy_timeout_is_retried_not_fatal(
    tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, sqlite_url: str,
    db_of: Callable[[str], Db],
) -> None:
    """A lock that outlasts SQLite's busy timeout (30 s in maild, shortened here to 0.3 s so
    the test stays short): the mailbox worker and the outbox sender get "database is locked".
    Both must log it, back off and retry; once the lock is gone the daemon catches up."""
    load = build_load(40, tag="longlock")
    settings = settings_for(tmp_path, db_url=sqlite_url, imap=mail_user.imap_config(),
                            smtp=smtp_config(smtp_server), mailbox=BATCH)
    app = build(settings)

    @event.listens_for(app.engine, "connect")
    def _short_busy_timeout(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.execute("PRAGMA busy_timeout=300")

    app.engine.dispose()  # connections made from now on get the short timeout
    db = db_of(sqlite_url)
    runner = InProcessDaemon(app)
    first, second = load.raws[:20], load.raws[20:]
    roots_first = sum(1 for r in first if r in load.roots)
    with structlog.testing.capture_logs() as logs:
        runner.start()
        try:
            # The first acknowledgements are refused once (451): they are due again ~1 s later,
            # while the database is locked, so the sender meets the lock too.
            smtp_server.fail_next(roots_first, code=451)
            mail_user.append_many(first)
            wait_until(lambda: sum(r[3] for r in db.outbox()) >= roots_first,
                       "the first acknowledgements deferred", 60, runner.alive)
            lock = sqlite3.connect(sqlite_path(sqlite_url), timeout=30, isolation_level=None)
            try:
                lock.execute("BEGIN EXCLUSIVE")
                mail_user.append_many(second)
                wait_until(lambda: sum(e["event"] == "db.unavailable" for e in logs) >= 2,
                           "two db.unavailable warnings", 60, runner.alive)
                deadline = time.monotonic() + 3  # the sender's retry falls due meanwhile
                while time.monotonic() < deadline:
                    runner.alive()
                    time.sleep(0.1)
            finally:
                lock.rollback()
                lock.close()
            wait_until(lambda: mail_user.count("INBOX") == 0, "catching up", CATCH_UP,
                       runner.alive)
            smtp_server.wait_for(len(load.roots), timeout=CATCH_UP)
            wait_until(db.drained, "the outbox drained", CATCH_UP, runner.alive)
        finally:
            runner.stop()
            app.dispose()
    assert runner.error is None
    assert_exact_outcome(load, db, mail_user, smtp_server)
    locked = [e for e in logs if e["event"] == "db.unavailable"]
    assert all(e["log_level"] == "warning" and "locked" in e["error"] for e in locked), locked
    assert {"support", "outbox"} <= {e.get("mailbox") or e.get("component") for e in locked}
    assert len({e["retry_in"] for e in locked}) >= 2, "the retries back off"
