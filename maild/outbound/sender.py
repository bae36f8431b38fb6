"""The read side of the outbox: an aiosmtplib sender with retries and backoff.

A drain claims due rows a batch at a time and sends a batch over a few SMTP connections at
once, kept open for the next batch of the same drain. Each message's outcome is recorded, in
a transaction of its own, as soon as the server has answered it: a connection sends no
further message's final dot until the record of its previous message is committed. So a
kill, whenever it comes, leaves at most one message per connection that the server accepted
and the database does not know about (SMTP cannot close the window between the server's 250
and our commit); that message goes out again, with the same Message-ID, after the restart.
The outcomes that arrive while a commit is under way are written together by the next one
(`_Recorder`), so the connections share commits rather than queue for them. `reply.sent` is
logged after the commit.

Claiming, recording and releasing use one database connection held for the whole drain
(`_Ledger`). On PostgreSQL a claimed row is held with a session-level advisory lock, taken
in the claim's `FOR UPDATE SKIP LOCKED` transaction: unlike the row lock it outlives the
per-message commits, so several daemons on one database never send the same row, and the
locks of a daemon that dies go with its connection (its unsent rows are due again at once).
SQLite serves one daemon per database, so there it claims without locking (a write lock held
while talking SMTP would stall ingestion). A 4xx answer is retried with exponential backoff;
a 5xx answer, or too many attempts, marks the row failed and records it on the ticket. A
server that cannot be reached does not use up attempts.

Sending is the hot path of a backlog, so it does per message only what a composed row
needs: rows are read and written with Core statements rather than as ORM objects, and the
envelope goes out as plain MAIL and RCPT commands (see `_send_one`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import zlib
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import aiosmtplib
import structlog
from aiosmtplib import SMTPResponse, SMTPStatus
from sqlalchemy import Connection, Engine, bindparam, insert, select, text, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from maild.auth.oauth2 import smtp_login
from maild.auth.providers import TokenProviders
from maild.clock import Clock
from maild.errors import TransportError
from maild.metrics import Metrics
from maild.outbound.compose import ascii_address
from maild.settings import OutboxSettings, Security, SmtpSettings
from maild.store.db import db_error
from maild.store.models import Event, Outbox
from maild.tls import tls_context

log = structlog.get_logger("maild.outbox")
CONNECTION_ERRORS = (
    aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected,
    aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPConnectTimeoutError, OSError,
    asyncio.TimeoutError,
)
# One statement for every change of a row's state: the columns to set are the keys of the
# parameters it is executed with, besides `row_id`.
_UPDATE_BY_ID = update(Outbox).where(Outbox.id == bindparam("row_id"))
# The first key of the PostgreSQL advisory locks that hold claimed outbox rows (the second
# is the row id): "mail" in ASCII, so that they are recognisable in pg_locks.
_LOCK_SPACE = 0x6D61696C
_TRY_LOCK = text(
    "SELECT id FROM unnest(CAST(:ids AS bigint[])) AS claimed(id) "
    "WHERE pg_try_advisory_lock(:space, CAST(id % 2147483647 AS integer))")


@dataclass
class DrainStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    unreachable: bool = False
    error: str | None = None


class _Queued(NamedTuple):
    """What sending a due row and recording the outcome need of it."""

    id: int
    ticket_id: int | None
    message_id: str
    kind: str
    mail_from: str
    rcpt_to: str
    raw: bytes
    attempts: int


@dataclass(frozen=True)
class _Result:
    row_id: int
    code: int | None  # None: sent
    text: str = ""


@dataclass(frozen=True)
class _Outcome:
    """What one answer does to its row: `change` for the row (`_UPDATE_BY_ID`), and the
    ticket event, if any; `state` is sent, deferred or failed."""

    row: _Queued
    result: _Result
    state: str
    attempts: int
    change: dict[str, Any]
    event: dict[str, Any] | None


class _Ledger:
    """One drain's database connection: claims, outcomes and the end of each batch.

    Used from worker threads, one call at a time (the drain claims, then its recorder
    writes, then it ends the batch).
    """

    def __init__(self, engine: Engine) -> None:
        self._conn: Connection = engine.connect()
        self.locking = engine.dialect.name == "postgresql"

    def claim(self, now: datetime, after: int, limit: int) -> tuple[list[_Queued], int]:
        """Due rows in id order after `after`, and the last id looked at (a row another
        daemon holds is skipped, not waited for). One pass tries each due row once (a
        deferred row is due again only later), and keeps no growing list of what it tried.
        """
        query = (
            select(Outbox.id, Outbox.ticket_id, Outbox.message_id, Outbox.kind,
                   Outbox.mail_from, Outbox.rcpt_to, Outbox.raw, Outbox.attempts)
            .where(Outbox.status == "pending", Outbox.next_attempt_at <= now,
                   Outbox.id > after)
            .order_by(Outbox.id)
            .limit(limit)
        )
        conn = self._conn
        try:
            if self.locking:
                query = query.with_for_update(skip_locked=True)
            rows = [_Queued._make(row) for row in conn.execute(query)]
            last = rows[-1].id if rows else after
            if self.locking and rows:
                # While this transaction holds the rows FOR UPDATE, their status is the
                # latest committed one: a row another drain recorded has left the result,
                # and one it still holds fails the advisory lock.
                held = set(conn.execute(_TRY_LOCK, {"ids": [r.id for r in rows],
                                                    "space": _LOCK_SPACE}).scalars())
                rows = [r for r in rows if r.id in held]
            conn.commit()
        except BaseException:
            self._rollback()
            raise
        return rows, last

    def write(self, outcomes: list[_Outcome]) -> None:
        """The outcomes in one transaction: an executemany UPDATE per state (each changes
        other columns), the ticket events in one INSERT."""
        changes: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        for outcome in outcomes:
            changes[outcome.state].append(outcome.change)
        events = [o.event for o in outcomes if o.event is not None]
        self._execute(changes.values(), events)

    def end_batch(self, untried: list[dict[str, Any]]) -> None:
        """Rows the batch never tried (the server went away) wait for their next attempt;
        the batch's advisory locks are released."""
        self._execute([untried] if untried else [], [])
        if self.locking:
            try:
                self._conn.execute(text("SELECT pg_advisory_unlock_all()"))
                self._conn.commit()
            except BaseException:
                self._rollback()
                raise

    def _execute(self, updates: Any, events: list[dict[str, Any]]) -> None:
        try:
            for params in updates:
                self._conn.execute(_UPDATE_BY_ID, params)
            if events:
                self._conn.execute(insert(Event), events)
            self._conn.commit()
        except BaseException:
            self._rollback()
            raise

    def _rollback(self) -> None:
        with contextlib.suppress(SQLAlchemyError):
            self._conn.rollback()

    def close(self, *, failed: bool) -> None:
        """Back to the pool; after a failure on PostgreSQL the connection is closed
        instead, so that no advisory lock can stay behind on it."""
        if failed and self.locking:
            with contextlib.suppress(SQLAlchemyError):
                self._conn.invalidate()
        with contextlib.suppress(SQLAlchemyError):
            self._conn.close()


class _Recorder:
    """Writes outcomes as they come, several in one commit (a group commit).

    Every connection waits for the record of its previous message before it lets the
    server take the next, so the connections move in step with the commits: a write
    started with the first outcome that comes would take one, and the next the other
    three. So a write waits until every connection still sending has an outcome queued
    (or has finished), but never longer than `linger` seconds after the first: a slow
    connection does not hold the others' records back. Writes are in order, so an
    outcome's commit covers every outcome added before it; after a failed write every
    later one fails alike, without a write.
    """

    def __init__(self, write: Callable[[list[_Outcome]], Awaitable[None]],
                 linger: float = 0.01) -> None:
        self._write = write
        self._linger = linger
        self._queue: list[tuple[int, _Outcome, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._error: Exception | None = None
        self._sending: set[int] = set()  # the connections that may add more
        self._complete = asyncio.Event()

    def joined(self, share: int) -> None:
        self._sending.add(share)

    def left(self, share: int) -> None:
        self._sending.discard(share)
        self._check()

    def add(self, share: int, outcome: _Outcome) -> asyncio.Future[None]:
        """Write `outcome` (of connection `share`) soon; the future is done once it is
        committed."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._error is not None:
            done.set_exception(self._error)
            done.exception()
            return done
        self._queue.append((share, outcome, done))
        self._check()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="outbox-recorder")
        return done

    def _check(self) -> None:
        if self._sending <= {share for share, _, _ in self._queue}:
            self._complete.set()

    async def _run(self) -> None:
        try:
            while self._queue:
                if not self._complete.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._complete.wait(), self._linger)
                group, self._queue = self._queue, []
                self._complete.clear()
                try:
                    if self._error is not None:
                        raise self._error
                    await self._write([outcome for _, outcome, _ in group])
                except Exception as exc:  # noqa: BLE001 - handed to every waiter
                    self._error = exc
                    for _, _, done in group:
                        if not done.done():
                            done.set_exception(exc)
                            done.exception()  # whoever still waits gets it; nobody need
                    continue
                for _, _, done in group:
                    if not done.done():  # its sender may have been cancelled
                        done.set_result(None)
        finally:
            self._task = None

    async def flush(self) -> None:
        """Wait until everything added so far is written (or failed)."""
        while self._task is not None:
            await asyncio.shield(self._task)


@dataclass
class OutboxSender:
    sessions: sessionmaker[Session]
    smtp: SmtpSettings
    policy: OutboxSettings
    clock: Clock
    metrics: Metrics = field(default_factory=Metrics)
    tokens: TokenProviders | None = None

    def _client(self) -> aiosmtplib.SMTP:
        cfg = self.smtp
        secure = cfg.security is not Security.NONE
        return aiosmtplib.SMTP(
            hostname=cfg.host, port=cfg.effective_port, timeout=cfg.timeout,
            use_tls=cfg.security is Security.TLS,
            start_tls=cfg.security is Security.STARTTLS,
            tls_context=tls_context(cfg.ca_file) if secure else None,
        )

    def _ledger(self) -> _Ledger:
        with self.sessions() as session:
            engine = session.get_bind()
        assert isinstance(engine, Engine), "the sessions must be bound to an engine"
        return _Ledger(engine)

    async def drain_once(self) -> DrainStats:
        """Try every due message once, over connections kept from one batch to the next."""
        stats = DrainStats()
        last = 0
        connections = _Connections(self._connect)
        ledger = await asyncio.to_thread(self._ledger)
        failed = True
        try:
            while True:
                rows, seen = await asyncio.to_thread(
                    ledger.claim, self.clock.now(), last, self.policy.batch_size)
                if seen == last:
                    failed = False
                    return stats
                last = seen
                if not rows:
                    continue  # every row looked at is another daemon's: on to the next
                await self._send(rows, stats, connections, ledger)
                if stats.unreachable:
                    failed = False
                    return stats
        finally:
            await connections.close()
            await asyncio.to_thread(ledger.close, failed=failed)

    async def _connect(self) -> aiosmtplib.SMTP:
        """A connection ready for MAIL: connected, logged in where configured, greeted."""
        client = self._client()
        try:
            await client.connect()
            username, password = self.smtp.username, self.smtp.secret()
            if self.smtp.oauth2 is not None and self.tokens is not None:
                provider = self.tokens.for_settings(self.smtp.oauth2)
                await smtp_login(client, username or "", provider)
            elif username and password is not None:
                await client.login(username, password)
            await _greet(client)
        except BaseException:
            client.close()
            raise
        return client

    async def _send(self, rows: list[_Queued], stats: DrainStats,
                    connections: _Connections, ledger: _Ledger) -> None:
        """Send `rows` over up to `outbox.connections` SMTP connections at once: each
        message costs several round trips, and a backlog should not wait for them one
        after the other. The mail of one ticket to one recipient goes over one connection,
        in id order, so nobody reads a ticket's messages out of order; different tickets
        spread over the connections even when they go to one team address.

        Each outcome is recorded as it comes (`_Recorder`); the batch ends with the rows
        never tried. A failed record (the database went away) ends the drain with the
        error, after the other connections have stopped: at most one accepted message per
        connection is left unrecorded.
        """
        n = max(1, min(self.policy.connections, len(rows) // 10 or 1))
        shares: list[list[_Queued]] = [[] for _ in range(n)]
        for row in rows:
            key = f"{row.rcpt_to.lower()} {row.ticket_id}".encode()
            shares[zlib.crc32(key) % n].append(row)

        async def write(outcomes: list[_Outcome]) -> None:
            await asyncio.to_thread(ledger.write, outcomes)
            self._count(outcomes, stats)

        recorder = _Recorder(write)
        tried: set[int] = set()
        try:
            async with asyncio.TaskGroup() as group:
                for index, share in enumerate(shares):
                    if share:
                        group.create_task(self._send_share(connections, index, share,
                                                           stats, recorder, tried))
        except ExceptionGroup as errors:
            raise errors.exceptions[0] from None
        finally:
            await recorder.flush()
        now = self.clock.now()
        untried = [{"row_id": row.id, "next_attempt_at": self._next_attempt(now, row.attempts + 1)}
                   for row in rows if row.id not in tried]
        await asyncio.to_thread(self._end_batch, ledger, untried)

    def _end_batch(self, ledger: _Ledger, untried: list[dict[str, Any]]) -> None:
        ledger.end_batch(untried)

    async def _send_share(self, connections: _Connections, index: int, rows: list[_Queued],
                          stats: DrainStats, recorder: _Recorder, tried: set[int]) -> None:
        """Send `rows` in order over connection `index`. The final dot of a message goes
        only once the previous message's outcome is committed (its MAIL and RCPT go while
        the commit is under way)."""
        recorded: asyncio.Future[None] | None = None
        recorder.joined(index)
        try:
            client, kept = await connections.get(index)
            for row in rows:
                try:
                    result = await _send_one(client, row, recorded)
                except CONNECTION_ERRORS:
                    if not kept or recorded is not None:
                        raise
                    # The server closed the connection kept from the last batch as this
                    # batch began: once more, on a new one.
                    connections.discard(index)
                    client, kept = await connections.get(index)
                    result = await _send_one(client, row, recorded)
                tried.add(row.id)
                recorded = recorder.add(index, self._outcome(row, result))
        except (*CONNECTION_ERRORS, aiosmtplib.SMTPException, TransportError) as exc:
            connections.discard(index)
            stats.unreachable = True
            stats.error = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, CONNECTION_ERRORS):
                log.warning("smtp.unreachable", error=stats.error)
            else:  # no STARTTLS, login refused
                log.error("smtp.refused_session", error=stats.error)
        finally:
            recorder.left(index)
        if recorded is not None:
            await recorded

    def _next_attempt(self, now: datetime, attempts: int) -> datetime:
        delay = min(self.policy.backoff_initial * 2 ** max(attempts - 1, 0),
                    self.policy.backoff_max)
        return now + timedelta(seconds=delay)

    def _outcome(self, row: _Queued, result: _Result) -> _Outcome:
        """What the server's answer `result` does to `row`."""
        now = self.clock.now()
        attempts = row.attempts + 1
        if result.code is None:
            event = None if row.ticket_id is None else {
                "ticket_id": row.ticket_id, "kind": f"{row.kind}.sent", "at": now,
                "data": {"message_id": row.message_id}}
            return _Outcome(row, result, "sent", attempts,
                            {"row_id": row.id, "attempts": attempts, "status": "sent",
                             "sent_at": now, "last_error": None}, event)
        error = f"{result.code} {result.text}"[:1000]
        if result.code < 500 and attempts < self.policy.max_attempts:
            return _Outcome(row, result, "deferred", attempts,
                            {"row_id": row.id, "attempts": attempts, "last_error": error,
                             "next_attempt_at": self._next_attempt(now, attempts)}, None)
        event = None if row.ticket_id is None else {
            "ticket_id": row.ticket_id, "kind": f"{row.kind}.failed", "at": now,
            "data": {"message_id": row.message_id, "code": result.code,
                     "error": result.text[:500], "attempts": attempts}}
        return _Outcome(row, result, "failed", attempts,
                        {"row_id": row.id, "attempts": attempts, "status": "failed",
                         "last_error": error}, event)

    def _count(self, outcomes: list[_Outcome], stats: DrainStats) -> None:
        """Figures and log lines of committed outcomes."""
        for o in outcomes:
            row, code = o.row, o.result.code
            if o.state == "sent":
                stats.sent += 1
                self.metrics.sent.labels(row.kind).inc()
                self.metrics.last_send = time.monotonic()
                log.info("reply.sent", ticket_id=row.ticket_id, message_id=row.message_id)
            elif o.state == "deferred":
                stats.retried += 1
                self.metrics.deferred.inc()
                log.info("reply.deferred", ticket_id=row.ticket_id, code=code,
                         attempts=o.attempts)
            else:
                stats.failed += 1
                self.metrics.failed.labels(row.kind).inc()
                log.warning("reply.failed", ticket_id=row.ticket_id, code=code,
                            error=o.result.text[:200])

    def next_due(self) -> datetime | None:
        with self.sessions() as session:
            return session.scalar(
                select(Outbox.next_attempt_at).where(Outbox.status == "pending")
                .order_by(Outbox.next_attempt_at).limit(1)
            )

    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """Drain whenever woken or when the next retry is due, until `stop`."""
        pause = 1.0
        while not stop.is_set():
            wake.clear()
            try:
                stats = await self.drain_once()
                due = await asyncio.to_thread(self.next_due)
            except SQLAlchemyError as exc:
                # The database is locked or gone: what was not recorded is sent again.
                stats, due = DrainStats(unreachable=True), None
                log.warning("db.unavailable", component="outbox", error=db_error(exc),
                            retry_in=pause)
            pause = min(pause * 2, self.policy.backoff_max) if stats.unreachable else 1.0
            timeout = 30.0
            if due is not None:
                timeout = max(0.05, min(timeout, (due - self.clock.now()).total_seconds()))
            if stats.unreachable:
                timeout = max(timeout, pause)
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
            try:
                await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()


class _Connections:
    """One drain's SMTP connections by share index, opened when first needed and kept for
    the next batch: a backlog of thousands pays for connecting, logging in and EHLO once
    per connection, not once per batch. One the server closed meanwhile is opened anew."""

    def __init__(self, connect: Callable[[], Awaitable[aiosmtplib.SMTP]]) -> None:
        self._connect = connect
        self._open: dict[int, aiosmtplib.SMTP] = {}

    async def get(self, index: int) -> tuple[aiosmtplib.SMTP, bool]:
        """The connection for share `index`, and whether it was kept from a batch before."""
        client = self._open.get(index)
        if client is not None and client.is_connected:
            return client, True
        self.discard(index)
        client = self._open[index] = await self._connect()
        return client, False

    def discard(self, index: int) -> None:
        client = self._open.pop(index, None)
        if client is not None:
            client.close()

    async def close(self) -> None:
        clients, self._open = list(self._open.values()), {}
        for client in clients:
            if client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, *CONNECTION_ERRORS):
                    client.close()


async def _greet(client: aiosmtplib.SMTP) -> None:
    """EHLO (HELO for a server without ESMTP) unless connecting or logging in did already:
    `_send_one` asks the answer whether the server takes SIZE. Done once per connection,
    so a server that refuses both refuses the session, as a refused login does."""
    if client.is_ehlo_or_helo_needed:
        try:
            await client.ehlo()
        except aiosmtplib.SMTPHeloError:
            await client.helo()


async def _send_one(client: aiosmtplib.SMTP, row: _Queued,
                    before_data: Awaitable[None] | None = None) -> _Result:
    """Send one composed row over `client`, with `sendmail`'s outcomes: refused when every
    recipient, the sender or the content is refused (with the first such answer), sent
    otherwise; after a refusal, RSET, so the next message on the connection starts clean.

    A composed row needs none of `sendmail`'s per-message preparation: its addresses are
    single addresses, sent as they are once `ascii_address` agrees, and its raw message has CRLF
    line ends already, so its SIZE is its length (plus the final CRLF that `data` adds when
    it is missing). `data` still dot-stuffs the content.

    `before_data` (the record of the connection's previous message) is waited for after the
    envelope is accepted and before DATA: the server's 250 for this message must not come
    while the previous one is still unrecorded.
    """
    recipients = [address.strip() for address in row.rcpt_to.split(",")]
    unsendable = [a for a in (row.mail_from, *recipients) if ascii_address(a) != a]
    if unsendable:  # never put on the wire: a permanent failure, not a crash of the sender
        return _Result(row.id, 553, f"5.1.3 not sent: address {unsendable[0]!r} cannot be "
                                    "given to SMTP")
    refusal = await _refusal(client, row, recipients, before_data)
    if refusal is None:
        return _Result(row.id, None)
    with contextlib.suppress(ConnectionError, aiosmtplib.SMTPResponseException):
        await client.rset()
    return _Result(row.id, refusal.code, refusal.message)


async def _refusal(client: aiosmtplib.SMTP, row: _Queued, recipients: list[str],
                   before_data: Awaitable[None] | None) -> SMTPResponse | None:
    """The server's answer refusing the transaction, or None when it took the message."""
    options = []
    if client.supports_extension("size"):
        size = len(row.raw) + (0 if row.raw.endswith(b"\r\n") else 2)
        options.append(b"SIZE=%d" % size)
    reply = await client.execute_command(
        b"MAIL", b"FROM:<%s>" % row.mail_from.encode("ascii"), *options)
    if reply.code != SMTPStatus.completed:
        return reply
    refused = []
    for address in recipients:
        reply = await client.execute_command(b"RCPT", b"TO:<%s>" % address.encode("ascii"))
        if reply.code not in (SMTPStatus.completed, SMTPStatus.will_forward):
            refused.append(reply)
    if len(refused) == len(recipients):
        return refused[0]
    if before_data is not None:
        await before_data
    try:
        await client.data(row.raw)
    except aiosmtplib.SMTPDataError as exc:
        return SMTPResponse(exc.code, exc.message)
    return None
