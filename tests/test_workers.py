"""Worker processes fed through pipes (maild.pipeline.workers): nothing blocks on a full pipe,
no helper thread runs in the daemon's process, and a lost call says so."""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from maild.pipeline.workers import WorkerLost, WorkerPool

MIB = 1 << 20


def echo(data: bytes, factor: int) -> bytes:
    return data * factor


def unpicklable() -> Any:
    return threading.Lock()  # cannot be pickled


def pid() -> int:
    return os.getpid()


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    pool = WorkerPool(2, multiprocessing.get_context("forkserver"))
    yield pool
    pool.close(wait=True)


@pytest.mark.timeout(60)
def test_many_megabytes_each_way_before_any_result_is_read(pool: WorkerPool) -> None:
    """Calls and answers far beyond what the pipes hold, all sent before one answer is
    read: with blocking writes on both sides this is a deadlock (the worker stuck writing
    an answer nobody reads, the daemon stuck writing a call nobody reads)."""
    calls = [(bytes([i]) * (3 * MIB), 2) for i in range(12)]  # 36 MiB out, 72 MiB back
    in_flight = [pool.call(echo, data, factor) for data, factor in calls]
    for call, (data, factor) in zip(in_flight, calls, strict=True):
        assert call.result() == data * factor  # each its own, in order


def test_no_helper_thread_in_the_calling_process(pool: WorkerPool) -> None:
    """The reason this module exists: a feeder or manager thread (as ProcessPoolExecutor
    has) takes Python's lock from the thread doing the daemon's work."""
    before = threading.active_count()
    in_flight = [pool.call(echo, b"x" * 100_000, 1) for _ in range(20)]
    assert threading.active_count() == before
    assert all(t.result() == b"x" * 100_000 for t in in_flight)
    assert threading.active_count() == before


def test_calls_go_to_the_workers_in_turn(pool: WorkerPool) -> None:
    pids = [pool.call(pid).result() for _ in range(4)]
    assert len(set(pids)) == 2 and sorted(set(pids)) == pool.pids()
    assert os.getpid() not in pids


def test_an_answer_that_cannot_travel_loses_only_that_call(pool: WorkerPool) -> None:
    first, lost, after = pool.call(echo, b"a", 1), pool.call(unpicklable), pool.call(echo, b"b", 1)
    assert first.result() == b"a" and after.result() == b"b"
    with pytest.raises(WorkerLost, match="pickle"):
        lost.result()
    assert pool.call(echo, b"c", 1).result() == b"c"  # that worker goes on


def test_a_killed_worker_is_reported_not_waited_for(pool: WorkerPool) -> None:
    victim, _ = pool.call(pid).result(), pool.call(pid).result()  # one each, in turn
    os.kill(victim, signal.SIGKILL)
    with pytest.raises(WorkerLost):  # from call() if its pipe is closed already, else result()
        pool.call(echo, b"never", 1).result()  # to the victim
    assert pool.call(echo, b"fine", 1).result() == b"fine"  # to the other worker


def test_a_worker_outlives_the_signals_a_stopping_service_sends(pool: WorkerPool) -> None:
    """systemd sends SIGTERM to every process of the service, a terminal SIGINT to the
    group: the daemon still finishes its batch with its workers, and ends them itself."""
    assert len({pool.call(pid).result() for _ in range(2)}) == 2  # both serving
    for number in (signal.SIGTERM, signal.SIGINT):
        for worker in pool.pids():
            os.kill(worker, number)
    assert [pool.call(echo, b"still here", 1).result() for _ in range(4)] == \
        [b"still here"] * 4


def test_threads_sharing_a_pool_get_their_own_answers(pool: WorkerPool) -> None:
    answers: dict[int, list[bytes]] = {}

    def work(n: int) -> None:
        in_flight = [pool.call(echo, bytes([n]) * 50_000, 2) for _ in range(30)]
        answers[n] = [t.result() for t in in_flight]

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert {n: set(a) for n, a in answers.items()} == \
        {n: {bytes([n]) * 100_000} for n in range(4)}


def test_a_closed_pool_answers_nothing_more() -> None:
    pool = WorkerPool(1, multiprocessing.get_context("forkserver"))
    call = pool.call(echo, b"late", 1)
    pids = pool.pids()
    pool.close(wait=True)
    with pytest.raises(WorkerLost):
        call.result()
    with pytest.raises(WorkerLost):
        pool.call(echo, b"x", 1)
    assert all(not _alive(p) for p in pids)


def _alive(process_id: int) -> bool:
    try:
        os.kill(process_id, 0)
    except ProcessLookupError:
        return False
    return True
