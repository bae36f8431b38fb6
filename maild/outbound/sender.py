"""The read side of the outbox: an aiosmtplib sender with retries and backoff.

On PostgreSQL a batch of due rows is locked with `FOR UPDATE SKIP LOCKED` for as long as it
is being sent, so several daemons on one database never send the same row, and the locks of
a daemon that dies go with its connection. SQLite serves one daemon per database, so there it
claims without locking (a write lock held while talking SMTP would stall ingestion). A batch
is sent over a few SMTP connections at once, kept open for the next batch of the same drain,
and its results written back in one transaction. A 4xx answer is retried with exponential
backoff; a 5xx answer, or too many attempts, marks the row failed and records it on the
ticket. A server that cannot be reached does not use up attempts.

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
from sqlalchemy import bindparam, select, update
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
from maild.store.models import Outbox
from maild.store.repo import add_events
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


@dataclass
class OutboxSender:
    sessions: sessionmaker[Session]
    smtp: SmtpSettings
    policy: OutboxSettings
    clock: Clock
    metrics: Metrics = field(default_factory=Metrics)
    tokens: TokenProviders | None = None

    def _claim(self, session: Session, after: int) -> list[_Queued]:
        """Due rows, locked on PostgreSQL until `session` commits.

        In id order after `after`: one pass tries each due row once (a deferred row is due
        again only later), and keeps no growing list of what it tried.
        """
        query = (
            select(Outbox.id, Outbox.ticket_id, Outbox.message_id, Outbox.kind,
                   Outbox.mail_from, Outbox.rcpt_to, Outbox.raw, Outbox.attempts)
            .where(Outbox.status == "pending", Outbox.next_attempt_at <= self.clock.now(),
                   Outbox.id > after)
            .order_by(Outbox.id)
            .limit(self.policy.batch_size)
        )
        locking = session.get_bind().dialect.name == "postgresql"
        if locking:
            query = query.with_for_update(skip_locked=True)
        rows = [_Queued._make(row) for row in session.connection().execute(query)]
        if not locking:
            session.commit()
        return rows

    def _client(self) -> aiosmtplib.SMTP:
        cfg = self.smtp
        secure = cfg.security is not Security.NONE
        return aiosmtplib.SMTP(
            hostname=cfg.host, port=cfg.effective_port, timeout=cfg.timeout,
            use_tls=cfg.security is Security.TLS,
            start_tls=cfg.security is Security.STARTTLS,
            tls_context=tls_context(cfg.ca_file) if secure else None,
        )

    async def drain_once(self) -> DrainStats:
        """Try every due message once, over connections kept from one batch to the next."""
        stats = DrainStats()
        last = 0
        connections = _Connections(self._connect)
        try:
            while True:
                with self.sessions() as session:
                    rows = await asyncio.to_thread(self._claim, session, last)
                    if not rows:
                        return stats
                    last = rows[-1].id
                    results = await self._send(rows, stats, connections)
                    await asyncio.to_thread(self._record, session, rows, results, stats)
                if stats.unreachable:
                    return stats
        finally:
            await connections.close()

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
                    connections: _Connections) -> list[_Result]:
        """Send `rows` over up to `outbox.connections` SMTP connections at once: each
        message costs several round trips, and a backlog should not wait for them one
        after the other. The mail of one ticket to one recipient goes over one connection,
        in id order, so nobody reads a ticket's messages out of order; different tickets
        spread over the connections even when they go to one team address."""
        n = max(1, min(self.policy.connections, len(rows) // 10 or 1))
        shares: list[list[_Queued]] = [[] for _ in range(n)]
        for row in rows:
            key = f"{row.rcpt_to.lower()} {row.ticket_id}".encode()
            shares[zlib.crc32(key) % n].append(row)
        done = await asyncio.gather(*(self._send_share(connections, index, share, stats)
                                      for index, share in enumerate(shares) if share))
        return [result for share in done for result in share]

    async def _send_share(self, connections: _Connections, index: int, rows: list[_Queued],
                          stats: DrainStats) -> list[_Result]:
        results: list[_Result] = []
        try:
            client, kept = await connections.get(index)
            for row in rows:
                try:
                    result = await _send_one(client, row)
                except CONNECTION_ERRORS:
                    if not kept or results:
                        raise
                    # The server closed the connection kept from the last batch as this
                    # batch began: once more, on a new one.
                    connections.discard(index)
                    client, kept = await connections.get(index)
                    result = await _send_one(client, row)
                results.append(result)
        except (*CONNECTION_ERRORS, aiosmtplib.SMTPException, TransportError) as exc:
            connections.discard(index)
            stats.unreachable = True
            stats.error = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, CONNECTION_ERRORS):
                log.warning("smtp.unreachable", error=stats.error)
            else:  # no STARTTLS, login refused
                log.error("smtp.refused_session", error=stats.error)
        return results

    def _next_attempt(self, now: datetime, attempts: int) -> datetime:
        delay = min(self.policy.backoff_initial * 2 ** max(attempts - 1, 0),
                    self.policy.backoff_max)
        return now + timedelta(seconds=delay)

    def _record(self, session: Session, rows: list[_Queued], results: list[_Result],
                stats: DrainStats) -> None:
        """Write the outcomes back: one executemany UPDATE per kind of outcome, keyed by id,
        and the ticket events in one INSERT (the ORM's unit of work would issue an UPDATE
        per row, as each changes a different set of columns)."""
        now = self.clock.now()
        by_id = {r.row_id: r for r in results}
        changes: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        events: list[dict[str, object]] = []
        for row in rows:
            result = by_id.get(row.id)
            if result is None:  # never tried: the server went away
                changes["untried"].append(
                    {"row_id": row.id,
                     "next_attempt_at": self._next_attempt(now, row.attempts + 1)})
                continue
            attempts = row.attempts + 1
            if result.code is None:
                changes["sent"].append({"row_id": row.id, "attempts": attempts,
                                        "status": "sent", "sent_at": now, "last_error": None})
                stats.sent += 1
                self.metrics.sent.labels(row.kind).inc()
                self.metrics.last_send = time.monotonic()
                if row.ticket_id is not None:
                    events.append({"ticket_id": row.ticket_id, "kind": f"{row.kind}.sent",
                                   "at": now, "data": {"message_id": row.message_id}})
                log.info("reply.sent", ticket_id=row.ticket_id, message_id=row.message_id)
                continue
            error = f"{result.code} {result.text}"[:1000]
            permanent = result.code >= 500 or attempts >= self.policy.max_attempts
            if not permanent:
                changes["deferred"].append(
                    {"row_id": row.id, "attempts": attempts, "last_error": error,
                     "next_attempt_at": self._next_attempt(now, attempts)})
                stats.retried += 1
                self.metrics.deferred.inc()
                log.info("reply.deferred", ticket_id=row.ticket_id, code=result.code,
                         attempts=attempts)
                continue
            changes["failed"].append({"row_id": row.id, "attempts": attempts,
                                      "status": "failed", "last_error": error})
            stats.failed += 1
            self.metrics.failed.labels(row.kind).inc()
            if row.ticket_id is not None:
                events.append({"ticket_id": row.ticket_id, "kind": f"{row.kind}.failed",
                               "at": now, "data": {"message_id": row.message_id,
                                                   "code": result.code,
                                                   "error": result.text[:500],
                                                   "attempts": attempts}})
            log.warning("reply.failed", ticket_id=row.ticket_id, code=result.code,
                        error=result.text[:200])
        connection = session.connection()
        for params in changes.values():
            connection.execute(_UPDATE_BY_ID, params)
        add_events(session, events)
        session.commit()

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
                # The database is locked or gone: nothing was marked, so nothing is lost.
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


async def _send_one(client: aiosmtplib.SMTP, row: _Queued) -> _Result:
    """Send one composed row over `client`, with `sendmail`'s outcomes: refused when every
    recipient, the sender or the content is refused (with the first such answer), sent
    otherwise; after a refusal, RSET, so the next message on the connection starts clean.

    A composed row needs none of `sendmail`'s per-message preparation: its addresses are
    single addresses, sent as they are once `ascii_address` agrees, and its raw message has CRLF
    line ends already, so its SIZE is its length (plus the final CRLF that `data` adds when
    it is missing). `data` still dot-stuffs the content.
    """
    recipients = [address.strip() for address in row.rcpt_to.split(",")]
    unsendable = [a for a in (row.mail_from, *recipients) if ascii_address(a) != a]
    if unsendable:  # never put on the wire: a permanent failure, not a crash of the sender
        return _Result(row.id, 553, f"5.1.3 not sent: address {unsendable[0]!r} cannot be "
                                    "given to SMTP")
    refusal = await _refusal(client, row, recipients)
    if refusal is None:
        return _Result(row.id, None)
    with contextlib.suppress(ConnectionError, aiosmtplib.SMTPResponseException):
        await client.rset()
    return _Result(row.id, refusal.code, refusal.message)


async def _refusal(client: aiosmtplib.SMTP, row: _Queued,
                   recipients: list[str]) -> SMTPResponse | None:
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
    try:
        await client.data(row.raw)
    except aiosmtplib.SMTPDataError as exc:
        return SMTPResponse(exc.code, exc.message)
    return None
