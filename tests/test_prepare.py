"""Parsing in worker processes (maild.pipeline.prepare): the same results as parsing in the
daemon, and a worker that fails loses nothing."""

from __future__ import annotations

import multiprocessing
import os
import re
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from maild.domain import Fetched, Inbound, SourceRef
from maild.mailsafety.bounce import Report
from maild.pipeline.guard import Guard
from maild.pipeline.prepare import Prepared, PrepareOptions, Preparer, Result, Unparseable
from tests.kit import customer_mail

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


class DyingGuard(Guard):
    """Kills the worker process that inspects a message saying DIE (never the daemon)."""

    def inspect(self, inbound: Inbound) -> tuple[Inbound, Report | None]:
        if "DIE" in inbound.body_text and multiprocessing.parent_process() is not None:
            os._exit(3)
        return super().inspect(inbound)


class FailingGuard(Guard):
    def inspect(self, inbound: Inbound) -> tuple[Inbound, Report | None]:
        if "BOOM" in inbound.body_text:
            raise LookupError("inspection failed for this one")
        return super().inspect(inbound)


def options(guard: Guard | None = None) -> PrepareOptions:
    return PrepareOptions(guard=guard or Guard(frozenset({"support@example.test"})),
                          default_language="en", max_bytes=1_000_000, max_attachments=20)


def items(raws: list[bytes]) -> list[Fetched]:
    return [Fetched(SourceRef("support", "INBOX", 1, i + 1), raw) for i, raw in enumerate(raws)]


@pytest.fixture
def pooled() -> Iterator[Preparer]:
    preparer = Preparer(options(), workers=1, min_batch=1)
    yield preparer
    preparer.close()


def comparable(result: Result) -> object:
    if isinstance(result, Exception):
        return (type(result), str(result))
    if isinstance(result, Prepared):  # mail-parser names an unnamed attachment at random
        unnamed = re.compile(r"^[a-z]{10}\.txt$")
        attachments = tuple(replace(a, filename="") if unnamed.match(a.filename) else a
                            for a in result.inbound.attachments)
        return replace(result, inbound=replace(result.inbound, attachments=attachments))
    return result


def test_workers_give_what_the_daemon_gives(pooled: Preparer) -> None:
    files = sorted(p for p in (CORPUS / "malformed").rglob("*")
                   if p.is_file() and p.suffix != ".csv")
    files += sorted(p for p in (CORPUS / "autoreplies").rglob("*") if p.is_file())[:40]
    files += sorted((CORPUS / "threads" / "notmuch-threading").iterdir())
    batch = items([p.read_bytes() for p in files] + [b"", b"\r\n\r\n"])
    inline = list(Preparer(options(), workers=0).results(batch))
    remote = list(pooled.results(batch))
    assert [comparable(r) for r in remote] == [comparable(r) for r in inline]
    assert sum(isinstance(r, Prepared) for r in remote) > len(files) // 2
    assert sum(isinstance(r, Unparseable) for r in remote) >= 2  # the two empty ones
    assert any(isinstance(r, Prepared) and r.inbound.automatic for r in remote)
    assert all(r.inbound.mime is None for r in remote if isinstance(r, Prepared))


def test_a_worker_that_dies_loses_nothing() -> None:
    raws = [customer_mail(subject=f"n{i}", body="DIE" if i == 5 else f"hello {i}")
            for i in range(40)]
    preparer = Preparer(options(DyingGuard(frozenset())), workers=1, min_batch=1)
    try:
        results = list(preparer.results(items(raws)))
        assert [r.inbound.subject for r in results if isinstance(r, Prepared)] == \
            [f"n{i}" for i in range(40)]
        # the next batch gets a new pool
        again = list(preparer.results(items(raws[:3])))
        assert all(isinstance(r, Prepared) for r in again)
    finally:
        preparer.close()


def test_an_exception_in_a_worker_comes_back_as_that_messages_result() -> None:
    raws = [customer_mail(subject=f"n{i}", body="BOOM" if i == 2 else "fine")
            for i in range(20)]
    preparer = Preparer(options(FailingGuard(frozenset())), workers=1, min_batch=1)
    try:
        results = list(preparer.results(items(raws)))
    finally:
        preparer.close()
    assert isinstance(results[2], LookupError) and "inspection failed" in str(results[2])
    assert all(isinstance(r, Prepared) for i, r in enumerate(results) if i != 2)


def test_small_batches_are_parsed_at_home() -> None:
    preparer = Preparer(options(DyingGuard(frozenset())), workers=1, min_batch=16)
    results = list(preparer.results(items([customer_mail(body="DIE")])))
    assert isinstance(results[0], Prepared)  # the daemon's own process: nothing died
    assert preparer._pool is None  # no pool was started for it


def test_no_pool_where_processes_cannot_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the daemon may not start processes, it parses at home, and stops trying."""
    import maild.pipeline.prepare as prepare_module

    attempts: list[int] = []

    class NoProcesses:
        def __init__(self, *args: object, **kwargs: object) -> None:
            attempts.append(1)
            raise OSError("no shared memory here")

    monkeypatch.setattr(prepare_module, "WorkerPool", NoProcesses)
    preparer = Preparer(options(), workers=1, min_batch=1)
    raws = [customer_mail(subject=f"n{i}") for i in range(20)]
    for _ in range(3):
        results = list(preparer.results(items(raws)))
        assert [r.inbound.subject for r in results if isinstance(r, Prepared)] == \
            [f"n{i}" for i in range(20)]
    assert len(attempts) == 2  # a new pool once, then never again


class SlowGuard(Guard):
    """Takes its time over a message saying SLOW, in a worker only."""

    def inspect(self, inbound: Inbound) -> tuple[Inbound, Report | None]:
        if "SLOW" in inbound.body_text and multiprocessing.parent_process() is not None:
            time.sleep(1.5)
        return super().inspect(inbound)


def test_results_come_in_groups_without_waiting_for_the_whole_batch() -> None:
    """The runner gets the first messages while later ones are still being parsed: a
    group ends before a chunk that is not ready."""
    raws = [customer_mail(subject=f"n{i}", body="SLOW" if i == 20 else "fine")
            for i in range(40)]
    preparer = Preparer(options(SlowGuard(frozenset())), workers=1, min_batch=1)
    try:
        groups = list(preparer.submit(items(raws)).groups())
    finally:
        preparer.close()
    assert len(groups[0]) <= 16  # not the chunk of message 20, nor anything after it
    flat = [r for g in groups for r in g]
    assert [r.inbound.subject for r in flat if isinstance(r, Prepared)] == \
        [f"n{i}" for i in range(40)]
    assert all(isinstance(r, Prepared) and r.inbound.raw == raw
               for r, raw in zip(flat, raws, strict=True))


def test_workers_can_be_started_before_the_first_batch() -> None:
    preparer = Preparer(options(), workers=1, min_batch=1)
    try:
        preparer.start()  # in the background: returns at once
        deadline = time.monotonic() + 30
        while not preparer.worker_pids() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(preparer.worker_pids()) == 1
        [result] = list(preparer.results(items([customer_mail()])))
        assert isinstance(result, Prepared)
    finally:
        preparer.close()
