"""Stages 1 and 2 without the database: parse the raw bytes and inspect what kind of mail
it is, for a whole batch, in worker processes while the runner writes to the database.

Parsing (mail-parser) and the inspection for auto-replies and delivery reports need no
database and no shared state, and they are about a third of the CPU time of a message.
Python runs one thread at a time, so a backlog gets its parsing done in other processes,
started with the daemon: the runner takes the results in order, a group of ready ones at a
time, writing the first messages while later ones are still being parsed. A small batch
(mail arriving one by one while the daemon IDLEs) is parsed in the runner itself: handing
it to another process would only add latency.

Whatever happens in a worker comes back as that message's result: a reason it cannot be
parsed, or the exception it raised (which the runner handles exactly as if it had been
raised at home). A worker that dies, or a result that cannot travel back, costs nothing but
time: the affected messages are parsed in the runner, and the next batch gets a new pool.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import structlog

from maild.domain import Fetched, Inbound
from maild.mailsafety.bounce import Report
from maild.pipeline.guard import Guard
from maild.pipeline.language import SHIPPED
from maild.pipeline.language import load as load_language_model
from maild.pipeline.parse import ParseError, parse
from maild.pipeline.workers import Call, WorkerPool

log = structlog.get_logger("maild.pipeline")
CHUNK = 16  # messages a worker parses per round trip


@dataclass(frozen=True)
class Prepared:
    inbound: Inbound  # without its MIME tree: what needed it is done
    report: Report | None


@dataclass(frozen=True)
class Unparseable:
    reason: str


Result = Prepared | Unparseable | Exception


@dataclass(frozen=True)
class PrepareOptions:
    """What parsing and inspecting need; sent to the workers once per chunk (it is small)."""

    guard: Guard
    default_language: str
    max_bytes: int | None
    max_attachments: int | None
    languages: tuple[str, ...] = SHIPPED  # those of the templates: Templates.languages()


def prepare(item: Fetched, options: PrepareOptions) -> Prepared | Unparseable:
    try:
        inbound = parse(item.raw, item.source, default_language=options.default_language,
                        languages=options.languages,
                        max_bytes=options.max_bytes, max_attachments=options.max_attachments)
    except ParseError as exc:
        return Unparseable(f"unparseable: {exc}")
    inbound, report = options.guard.inspect(inbound)
    return Prepared(replace(inbound, mime=None), report)


def _prepare_chunk(items: Sequence[Fetched], options: PrepareOptions) -> list[Result]:
    """Every message's result, an exception included as a value."""
    out: list[Result] = []
    for item in items:
        try:
            out.append(prepare(item, options))
        except Exception as exc:  # noqa: BLE001 - handed to the runner, which decides
            out.append(exc)
    return out


# Where a chunk's results come from: a worker's call, or None (parsed at home when its
# turn comes).
Source = Call | None


class PreparedBatch:
    """The results of one submitted batch, in order. They are kept as they come, so that a
    second pass (the runner's retry with savepoints) gets them again without parsing again.
    """

    def __init__(self, pending: list[tuple[Sequence[Fetched], Source]], preparer: Preparer,
                 ) -> None:
        self._pending = pending
        self._preparer = preparer
        self._done: list[Result] = []

    def groups(self) -> Iterator[list[Result]]:
        """The results a group at a time: the next chunk's (waited for), and those of the
        chunks after it that are ready by then. The runner reads ahead what a group will
        look up, without waiting for the whole batch."""
        if self._done:
            yield self._done[:]
        while self._pending:
            group = self._take()
            while self._pending and _ready(self._pending[0][1]):
                group += self._take()
            self._done.extend(group)
            yield group

    def results(self) -> Iterator[Result]:
        for group in self.groups():
            yield from group

    def _take(self) -> list[Result]:
        chunk, source = self._pending.pop(0)
        return self._preparer.collect(chunk, source)


def _ready(source: Source) -> bool:
    return source is None or source.done()


def default_workers() -> int:
    """One worker fewer than the CPUs: the runner itself needs one."""
    return max(1, min(4, (os.cpu_count() or 1) - 1))


class Preparer:
    """Prepares batches, in `workers` processes for batches of at least `min_batch`."""

    def __init__(self, options: PrepareOptions, *, workers: int, min_batch: int = 16) -> None:
        self.options = options
        self._workers = workers
        self._min_batch = min_batch
        self._pool: WorkerPool | None = None
        self._lock = threading.Lock()  # mailbox workers are threads sharing one pool

    def submit(self, items: Sequence[Fetched]) -> PreparedBatch:
        """Start preparing `items`; the results come from the returned batch, in order.

        Submitted early (the mailbox worker hands in the next batch before it writes this
        one), the workers parse while the daemon writes.
        """
        chunks = [items[i:i + CHUNK] for i in range(0, len(items), CHUNK)]
        if self._workers <= 0 or len(items) < self._min_batch:
            sources: list[Source] = [None] * len(chunks)  # at home
        else:
            sources = list(self._submit(chunks))
        return PreparedBatch(list(zip(chunks, sources, strict=True)), self)

    def start(self, *, wait: bool = False) -> None:
        """Start the worker processes now (in the background unless `wait`), rather than
        when the first backlog arrives: starting them (and the fork server) takes a few
        tenths of a second, which a daemon spends better before the mail is there."""
        if self._workers <= 0:
            return
        if wait:
            self._warm_up()
        else:
            threading.Thread(target=self._warm_up, name="parse-workers-start",
                             daemon=True).start()

    def _warm_up(self) -> None:
        try:
            pool = self._pool_for_use()
            # Each worker loads the language model now, not on its first message.
            for call in [pool.call(load_language_model, self.options.languages)
                         for _ in range(self._workers)]:
                call.result()
        except Exception as exc:  # noqa: BLE001 - the first batch tries again and says so
            log.info("parse_pool.not_started", error=f"{type(exc).__name__}: {exc}")

    def results(self, items: Sequence[Fetched]) -> Iterator[Result]:
        """Each item's result, in order, as soon as it is ready."""
        return self.submit(items).results()

    def _submit(self, chunks: list[Sequence[Fetched]]) -> Sequence[Source]:
        """The chunks' calls; None for each where no pool takes them (parsed at home).

        A pool that broke (a worker died) is replaced once; when a new one cannot take
        work either (no processes, no shared memory where the daemon runs), parsing stays
        at home for the rest of the daemon's life, said once in the log.
        """
        for attempt in (1, 2):
            try:
                pool = self._pool_for_use()
                return [pool.call(_prepare_chunk, chunk, self.options) for chunk in chunks]
            except Exception as exc:  # noqa: BLE001 - see above: parse here instead
                self._discard_pool()
                if attempt == 2:
                    log.error("parse_pool.disabled", error=f"{type(exc).__name__}: {exc}")
                    self._workers = 0
        return [None] * len(chunks)

    def collect(self, chunk: Sequence[Fetched], source: Source) -> list[Result]:
        """A chunk's results, waiting for its worker if need be."""
        if source is not None:
            try:
                results: list[Result] = source.result()
                return results
            except Exception as exc:  # noqa: BLE001 - a worker died or a result did not travel
                log.warning("parse_pool.failed", error=f"{type(exc).__name__}: {exc}",
                            messages=len(chunk))
                self._discard_pool()
        return _prepare_chunk(chunk, self.options)

    def _pool_for_use(self) -> WorkerPool:
        with self._lock:
            if self._pool is None:
                # Workers are forked from a fork server, a single-threaded process that has
                # imported only this module: not forked from the daemon, whose threads
                # (mailbox workers, the scheduler) may hold locks a child would inherit
                # taken, and not spawned afresh, which would import the daemon's whole
                # main module again in every worker.
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload([__name__])
                self._pool = WorkerPool(self._workers, context)
            return self._pool

    def _discard_pool(self, *, wait: bool = False) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close(wait=wait)

    def worker_pids(self) -> list[int]:
        """The worker processes' ids (for measuring them: bench/phases.py)."""
        pool = self._pool
        return pool.pids() if pool is not None else []

    def close(self) -> None:
        self._discard_pool(wait=True)
