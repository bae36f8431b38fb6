"""One mailbox's loop: connect, notice UIDVALIDITY changes, drain, wait, reconnect.

Runs in a worker thread because imapclient is synchronous. The database commit happens in
the pipeline; only then are the UIDs moved on the server. A crash between the two costs a
re-fetch that the guard recognises as a duplicate. The commit is on disk before the move
(SQLite's `synchronous=FULL`, set for every connection in maild/store/db.py; PostgreSQL's
`synchronous_commit`): a move cannot be taken back, so a power cut must not be able to undo
the commit that preceded it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from maild.auth.providers import TokenProviders
from maild.clock import Clock
from maild.cluster.leases import LeaseLost, Leases
from maild.domain import Fetched
from maild.errors import TransportError
from maild.fetch.imap import CONNECTION_ERRORS, ImapSource, chunks
from maild.metrics import Metrics
from maild.pipeline.prepare import PreparedBatch
from maild.pipeline.runner import BatchResult, Pipeline
from maild.settings import MailboxSettings
from maild.store import repo
from maild.store.db import db_error

log = structlog.get_logger("maild.fetch")
RETRYABLE: tuple[type[BaseException], ...] = (TransportError, *CONNECTION_ERRORS)


@dataclass
class Counters:
    fetched: int = 0
    done: int = 0
    held: int = 0
    tickets_created: int = 0
    queued: int = 0


@dataclass
class MailboxWorker:
    mailbox: MailboxSettings
    pipeline: Pipeline
    sessions: sessionmaker[Session]
    clock: Clock
    on_queued: Callable[[], None] = lambda: None
    stop: threading.Event = field(default_factory=threading.Event)
    counters: Counters = field(default_factory=Counters)
    backoff_initial: float = 1.0
    backoff_max: float = 60.0
    metrics: Metrics = field(default_factory=Metrics)
    tokens: TokenProviders | None = None
    leases: Leases | None = None  # several daemons on PostgreSQL: work only what is held

    def _active(self) -> bool:
        return self.leases is None or self.leases.holds(self.mailbox.name)

    def _fence(self, session: Session) -> None:
        if self.leases is not None:
            self.leases.fence(session, self.mailbox.name)

    def run_once(self) -> Counters:
        """Process every message present now, then return (`maild run --once`)."""
        source = ImapSource(self.mailbox, self.tokens)
        source.open()
        try:
            self._check_uidvalidity(source)
            uids = source.unacknowledged()  # only what is there at start
            if len(uids) > self.mailbox.batch_size:
                log.info("imap.backlog", mailbox=self.mailbox.name, messages=len(uids))
            self._drain(source, uids)
            self.metrics.polled(self.mailbox.name)
        finally:
            source.close()
        return self.counters

    def run_forever(self) -> None:
        """IDLE (or poll) and process until `stop` is set; reconnect with backoff."""
        delay = self.backoff_initial
        bound = log.bind(mailbox=self.mailbox.name)
        while not self.stop.is_set():
            if not self._active():
                self.stop.wait(0.5)  # another daemon holds it, or the database is away
                continue
            source = ImapSource(self.mailbox, self.tokens)
            try:
                source.open()
                bound.info("imap.connected", uidvalidity=source.uidvalidity)
                self.metrics.imap_up.labels(self.mailbox.name).set(1)
                self._check_uidvalidity(source)
                while not self.stop.is_set() and self._active():
                    self._drain_all(source)
                    delay = self.backoff_initial  # a whole pass worked: start afresh
                    self.metrics.polled(self.mailbox.name)
                    source.wait(lambda: self.stop.is_set() or not self._active())
                if not self._active():
                    bound.info("lease.stopped_working")
                    delay = self.backoff_initial
            except LeaseLost:
                bound.warning("lease.lost_at_commit")  # rolled back: the new holder fetches
                delay = self.backoff_initial
            except RETRYABLE as exc:
                bound.warning("imap.disconnected", error=str(exc), retry_in=delay)
            except SQLAlchemyError as exc:
                # Nothing of the failed batch was acknowledged: it is fetched again.
                bound.warning("db.unavailable", error=db_error(exc), retry_in=delay)
            finally:
                self.metrics.imap_up.labels(self.mailbox.name).set(0)
                source.close()
            if self.stop.wait(delay):
                break
            delay = min(delay * 2, self.backoff_max)

    def _check_uidvalidity(self, source: ImapSource) -> None:
        with self.sessions() as session, session.begin():
            previous = repo.record_uidvalidity(
                session, self.mailbox.name, self.mailbox.folder, source.uidvalidity,
                self.clock.now())
        if previous is not None:
            # UIDs of the old generation mean nothing now. Every message still in the
            # folder is fetched again; the guard recognises those already processed.
            log.warning("imap.uidvalidity_changed", mailbox=self.mailbox.name,
                        old=previous, new=source.uidvalidity)

    def _drain_all(self, source: ImapSource) -> None:
        """Search and process until the folder has nothing left.

        Mail that arrives during a FETCH or MOVE is announced in that command's response,
        which imapclient does not hand on, and IDLE would not announce it again: so search
        once more after every pass, and go idle only when a search comes back empty.
        """
        while not self.stop.is_set():
            uids = source.unacknowledged()
            if not uids:
                return
            self._drain(source, uids)

    def _drain(self, source: ImapSource, uids: list[int]) -> None:
        """Fetch, process and acknowledge `uids` a batch at a time.

        The next batch is fetched and handed to the parse workers before this one is
        written, so that they parse while the daemon writes. It is only fetched (a peek):
        should the daemon stop or fail before processing it, it stays in the folder.

        A committed batch is moved on the server while the next one is written: its move
        is sent after the next fetch and answered before the fetch after that (the server
        would otherwise move while the daemon waits, and the daemon write while the server
        waits). The last batch's move is waited for before this returns.
        """
        done = 0
        started = time.monotonic()
        batches = list(chunks(uids, self.mailbox.batch_size))
        ahead: tuple[list[Fetched], PreparedBatch, float] | None = None
        committed: BatchResult | None = None  # processed; not yet acknowledged
        for index, chunk in enumerate(batches):
            if self.stop.is_set():
                break  # SIGTERM: the batch in hand was finished; stop fetching
            items, prepared, fetched_at = ahead or self._fetch(source, chunk)
            ahead = None
            if index + 1 < len(batches) and not self.stop.is_set():
                ahead = self._fetch(source, batches[index + 1])
            if committed is not None:
                self._acknowledge(source, committed, wait=False)
            result = committed = self.pipeline.process_batch(items, prepared, self._fence)
            self._count(items, result, time.monotonic() - fetched_at)
            if result.queued:
                self.on_queued()
            done += len(items)
            if len(uids) > self.mailbox.batch_size:
                # Long work shows progress: a first run over a mailbox with old mail.
                rate = done / max(time.monotonic() - started, 1e-6)
                log.info("imap.progress", mailbox=self.mailbox.name, done=done,
                         total=len(uids), per_second=round(rate, 1),
                         eta_seconds=round((len(uids) - done) / max(rate, 1e-6)))
        if committed is not None:
            self._acknowledge(source, committed, wait=True)

    def _acknowledge(self, source: ImapSource, result: BatchResult, *, wait: bool) -> None:
        """Committed: now, and only now, acknowledge on the server. The quarantined few
        first, so that the batch's move can go without waiting."""
        source.acknowledge([s.uid for s, _ in result.held], self.mailbox.quarantine_folder)
        source.acknowledge([s.uid for s in result.done], self.mailbox.processed_folder,
                           wait=wait)

    def _fetch(self, source: ImapSource, uids: list[int]
               ) -> tuple[list[Fetched], PreparedBatch, float]:
        fetched_at = time.monotonic()
        items = source.fetch(uids)
        for item in items:
            log.info("message.received", mailbox=self.mailbox.name, uid=item.source.uid,
                     size=len(item.raw))
        return items, self.pipeline.prepare(items), fetched_at

    def _count(self, items: list[Fetched], result: BatchResult, seconds: float) -> None:
        c, m, name = self.counters, self.metrics, self.mailbox.name
        c.fetched += len(items)
        c.done += len(result.done)
        c.held += len(result.held)
        c.tickets_created += result.tickets_created
        c.queued += result.queued
        m.fetched.labels(name).inc(len(items))
        m.processed.labels(name).inc(len(result.done))
        m.quarantined.labels(name).inc(len(result.held))
        for level, department in result.created:
            m.tickets.labels(str(level), department or "").inc()
        for _ in items:
            m.latency.observe(seconds)
