"""The read side of the outbox: an aiosmtplib sender with retries and backoff.

On PostgreSQL a batch of due rows is locked with `FOR UPDATE SKIP LOCKED` for as long as it
is being sent, so several daemons on one database never send the same row, and the locks of
a daemon that dies go with its connection. SQLite serves one daemon per database, so there it
claims without locking (a write lock held while talking SMTP would stall ingestion). Rows
are sent over one SMTP connection per batch and their results written back in one
transaction. A 4xx answer is retried with exponential backoff; a 5xx answer, or too many
attempts, marks the row failed and records it on the ticket. A server that cannot be
reached does not use up attempts.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import aiosmtplib
import structlog
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from maild.auth.oauth2 import smtp_login
from maild.auth.providers import TokenProviders
from maild.clock import Clock
from maild.errors import TransportError
from maild.fetch.imap import tls_context
from maild.metrics import Metrics
from maild.settings import OutboxSettings, Security, SmtpSettings
from maild.store.db import db_error
from maild.store.models import Outbox
from maild.store.repo import add_events

log = structlog.get_logger("maild.outbox")
CONNECTION_ERRORS = (
    aiosmtplib.SMTPConnectError, aiosmtplib.SMTPServerDisconnected,
    aiosmtplib.SMTPTimeoutError, aiosmtplib.SMTPConnectTimeoutError, OSError,
    asyncio.TimeoutError,
)


@dataclass
class DrainStats:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    unreachable: bool = False
    error: str | None = None


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
    _backoff: float = field(default=0.0, init=False)

    def _claim(self, session: Session, after: int) -> list[Outbox]:
        """Due rows, locked on PostgreSQL until `session` commits.

        In id order after `after`: one pass tries each due row once (a deferred row is due
        again only later), and keeps no growing list of what it tried.
        """
        query = (
            select(Outbox)
            .where(Outbox.status == "pending", Outbox.next_attempt_at <= self.clock.now(),
                   Outbox.id > after)
            .order_by(Outbox.id)
            .limit(self.policy.batch_size)
        )
        locking = session.get_bind().dialect.name == "postgresql"
        if locking:
            query = query.with_for_update(skip_locked=True)
        rows = list(session.scalars(query))
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
        """Try every due message once."""
        stats = DrainStats()
        last = 0
        while True:
            with self.sessions() as session:
                rows = await asyncio.to_thread(self._claim, session, last)
                if not rows:
                    return stats
                last = rows[-1].id
                results = await self._send(rows, stats)
                await asyncio.to_thread(self._record, session, rows, results, stats)
            if stats.unreachable:
                return stats

    async def _send(self, rows: list[Outbox], stats: DrainStats) -> list[_Result]:
        """Send `rows` over up to `outbox.connections` SMTP connections at once: each
        message costs several round trips, and a backlog should not wait for them one
        after the other. All mail to one recipient goes over one connection, in id order,
        so nobody gets our messages out of order."""
        n = max(1, min(self.policy.connections, len(rows) // 10 or 1))
        shares: list[list[Outbox]] = [[] for _ in range(n)]
        for row in rows:
            shares[zlib.crc32(row.rcpt_to.lower().encode()) % n].append(row)
        done = await asyncio.gather(*(self._send_share(share, stats) for share in shares))
        return [result for share in done for result in share]

    async def _send_share(self, rows: list[Outbox], stats: DrainStats) -> list[_Result]:
        results: list[_Result] = []
        client = self._client()
        try:
            await client.connect()
            username, password = self.smtp.username, self.smtp.secret()
            if self.smtp.oauth2 is not None and self.tokens is not None:
                provider = self.tokens.for_settings(self.smtp.oauth2)
                await smtp_login(client, username or "", provider)
            elif username and password is not None:
                await client.login(username, password)
            for row in rows:
                results.append(await self._send_one(client, row))
        except CONNECTION_ERRORS as exc:
            stats.unreachable = True
            stats.error = f"{type(exc).__name__}: {exc}"
            log.warning("smtp.unreachable", error=stats.error)
        except (aiosmtplib.SMTPException, TransportError) as exc:  # no STARTTLS, login refused
            stats.unreachable = True
            stats.error = f"{type(exc).__name__}: {exc}"
            log.error("smtp.refused_session", error=stats.error)
        finally:
            if client.is_connected:
                try:
                    await client.quit()
                except (aiosmtplib.SMTPException, *CONNECTION_ERRORS):
                    client.close()
        return results

    @staticmethod
    async def _send_one(client: aiosmtplib.SMTP, row: Outbox) -> _Result:
        try:
            await client.sendmail(row.mail_from, row.rcpt_to.split(","), row.raw)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            first = exc.recipients[0]
            return _Result(row.id, first.code, first.message)
        except aiosmtplib.SMTPResponseException as exc:
            return _Result(row.id, exc.code, exc.message)
        return _Result(row.id, None)

    def _next_attempt(self, now: datetime, attempts: int) -> datetime:
        delay = min(self.policy.backoff_initial * 2 ** max(attempts - 1, 0),
                    self.policy.backoff_max)
        return now + timedelta(seconds=delay)

    def _record(self, session: Session, rows: list[Outbox], results: list[_Result],
                stats: DrainStats) -> None:
        now = self.clock.now()
        by_id = {r.row_id: r for r in results}
        events: list[dict[str, object]] = []
        for row in rows:
            result = by_id.get(row.id)
            if result is None:  # never tried: the server went away
                row.next_attempt_at = self._next_attempt(now, row.attempts + 1)
                continue
            row.attempts += 1
            if result.code is None:
                row.status, row.sent_at, row.last_error = "sent", now, None
                stats.sent += 1
                self.metrics.sent.labels(row.kind).inc()
                self.metrics.last_send = time.monotonic()
                if row.ticket_id is not None:
                    events.append({"ticket_id": row.ticket_id, "kind": f"{row.kind}.sent",
                                   "at": now, "data": {"message_id": row.message_id}})
                log.info("reply.sent", ticket_id=row.ticket_id, message_id=row.message_id)
                continue
            row.last_error = f"{result.code} {result.text}"[:1000]
            permanent = result.code >= 500 or row.attempts >= self.policy.max_attempts
            if not permanent:
                row.next_attempt_at = self._next_attempt(now, row.attempts)
                stats.retried += 1
                self.metrics.deferred.inc()
                log.info("reply.deferred", ticket_id=row.ticket_id, code=result.code,
                         attempts=row.attempts)
                continue
            row.status = "failed"
            stats.failed += 1
            self.metrics.failed.labels(row.kind).inc()
            if row.ticket_id is not None:
                events.append({"ticket_id": row.ticket_id, "kind": f"{row.kind}.failed",
                               "at": now, "data": {"message_id": row.message_id,
                                                   "code": result.code,
                                                   "error": result.text[:500],
                                                   "attempts": row.attempts}})
            log.warning("reply.failed", ticket_id=row.ticket_id, code=result.code,
                        error=result.text[:200])
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
