"""A batch of fetched messages in one database transaction: retry and quarantine.

A batch first runs on a `BatchStore` (reads ahead, writes its rows together at the end)
without savepoints, which cost a round trip each. Should a message fail unexpectedly, that
attempt is rolled back whole and the batch runs again on a `DirectStore` with a savepoint
per message: the failing one's savepoint is rolled back, it is quarantined with its raw
bytes and the reason, and the batch goes on. Database errors are different: they abort
the whole batch so nothing is acknowledged on IMAP, and the caller retries later.

Only after the batch commits does the caller touch IMAP (DESIGN.md: acknowledge after
commit).
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import structlog
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from maild.clock import Clock
from maild.domain import Fetched, Outcome, SourceRef, Stop
from maild.pipeline.prepare import PreparedBatch, Result
from maild.store.automail import AutomailCounter
from maild.store.batchstore import BatchStore
from maild.store.models import Quarantine
from maild.store.ticketstore import DirectStore, TicketStore

log = structlog.get_logger("maild.pipeline")


@dataclass(frozen=True)
class Processed:
    """A message that reached a ticket."""

    ticket_id: int
    created: bool
    queued: int
    routed: tuple[int, str | None] = (1, None)  # level and department, for the metrics


@dataclass
class BatchResult:
    """What happened to each fetched message; the caller acts on IMAP accordingly."""

    done: list[SourceRef] = field(default_factory=list)
    held: list[tuple[SourceRef, str]] = field(default_factory=list)
    discarded: int = 0  # among `done`: duplicates and the like, stored nowhere
    created: list[tuple[int, str | None]] = field(default_factory=list)  # (level, department)
    queued: int = 0

    @property
    def tickets_created(self) -> int:
        return len(self.created)


W = TypeVar("W")
# Raises when the batch must not be committed (the mailbox's lease is lost: maild/cluster).
Fence = Callable[[Session], None]


class Stages(Protocol[W]):
    """What the batch runs for its messages (the pipeline, pipeline/runner.py)."""

    def look(self, ready: Result) -> W:
        """A prepared message with what it will be looked up by (worked out once)."""

    def read_ahead(self, store: TicketStore, group: Sequence[W]) -> None:
        """What the lookups of a group of messages will ask, read ahead into the store."""

    def process(self, store: TicketStore, item: Fetched, work: W) -> Processed | Outcome:
        """One message through the stages, in the batch's transaction."""


class _RetryWithSavepoints(Exception):
    """A message failed in a batch run without savepoints: run it again with them."""


class _Conflict(_RetryWithSavepoints):
    """The batch's rows collided with rows already in the database when it wrote them."""


class BatchRunner:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock,
                 counter: AutomailCounter) -> None:
        self._sessions = sessions
        self._clock = clock
        self._counter = counter

    def run(self, items: Sequence[Fetched], prepared: PreparedBatch, stages: Stages[W],
            fence: Fence | None = None) -> BatchResult:
        """Process `items` in one transaction. Raises only when the commit is impossible
        (or `fence`, asked just before it, says this daemon may no longer commit)."""
        try:
            try:
                return self._run(items, prepared, stages, fence, savepoints=False)
            except _Conflict:
                # Most often another mailbox's batch committed the same message (a customer
                # writing to two of the desk's addresses) while this one ran: once more as a
                # batch, whose read-ahead now sees that row, before message by message.
                return self._run(items, prepared, stages, fence, savepoints=False)
        except (_RetryWithSavepoints, DataError):
            return self._run(items, prepared, stages, fence, savepoints=True)

    def _run(self, items: Sequence[Fetched], prepared: PreparedBatch, stages: Stages[W],
             fence: Fence | None, *, savepoints: bool) -> BatchResult:
        result = BatchResult()
        with self._sessions() as session, session.begin():
            store: TicketStore
            if savepoints:
                store = DirectStore(session, self._counter)
            else:
                store = BatchStore(session, self._counter,
                                   quarantined=[i.source.key for i in items])
            for item, work in _in_groups(items, prepared, store, stages, savepoints):
                self._one(store, item, work, result, stages, savepoints)
            if not savepoints:
                try:
                    store.write()
                except IntegrityError as exc:
                    # A row the batch's notes did not foresee (they check what the lookups
                    # check): a concurrent batch's, or a culprit that only message by
                    # message, with savepoints, is found.
                    raise _Conflict from exc
                except DataError as exc:
                    raise _RetryWithSavepoints from exc
            if fence is not None:
                fence(session)
        return result

    def _one(self, store: TicketStore, item: Fetched, work: W, result: BatchResult,
             stages: Stages[W], savepoints: bool) -> None:
        session = store.session
        try:
            if savepoints:
                with session.begin_nested():
                    outcome = stages.process(store, item, work)
            else:
                outcome = stages.process(store, item, work)
        except DataError as exc:
            # The message carried something the database refuses (a value it cannot
            # store): quarantine it, or the mailbox would be stuck behind it for ever.
            if not savepoints:
                raise
            self._hold_after_error(store, item, result, exc)
            return
        except SQLAlchemyError:
            raise  # the database is the problem, not the message: retry the batch later
        except Exception as exc:
            if not savepoints:
                raise _RetryWithSavepoints from exc
            self._hold_after_error(store, item, result, exc)
            return
        if isinstance(outcome, Outcome):
            if outcome.stop is Stop.HOLD:
                self._quarantine(store, item, outcome.reason)
                result.held.append((item.source, outcome.reason))
            else:
                result.done.append(item.source)
                result.discarded += 1
            event = "message.held" if outcome.stop is Stop.HOLD else "message.discarded"
            log.info(event, mailbox=item.source.mailbox, uid=item.source.uid,
                     reason=outcome.reason)
            return
        result.done.append(item.source)
        result.queued += outcome.queued
        if outcome.created:
            result.created.append(outcome.routed)

    def _hold_after_error(self, store: TicketStore, item: Fetched, result: BatchResult,
                          exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"[:2000]
        log.warning("message.quarantined", mailbox=item.source.mailbox, uid=item.source.uid,
                    reason=reason, trace=traceback.format_exc(limit=5))
        self._quarantine(store, item, reason)
        result.held.append((item.source, reason))

    def _quarantine(self, store: TicketStore, item: Fetched, reason: str) -> None:
        if store.quarantined_before(item.source.key) is not None:
            return  # fetched again after a crash before the IMAP move: recorded already
        store.session.add(Quarantine(
            source_key=item.source.key, message_id=None, reason=reason, raw=item.raw,
            created_at=self._clock.now(),
        ))


def _in_groups(items: Sequence[Fetched], prepared: PreparedBatch, store: TicketStore,
               stages: Stages[W], savepoints: bool) -> Iterator[tuple[Fetched, W]]:
    """The items with their prepared results, a group of ready ones at a time, each group's
    lookups read ahead first (not with savepoints: there every lookup asks itself)."""
    done = 0
    for group in prepared.groups():
        works = [stages.look(ready) for ready in group]
        if not savepoints:
            stages.read_ahead(store, works)
        yield from zip(items[done:done + len(group)], works, strict=True)
        done += len(group)
