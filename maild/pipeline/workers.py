"""Worker processes fed through pipes of their own, with no helper thread in the daemon.

The calling thread itself writes the calls and reads the answers, at the moments it asks
for a result. `concurrent.futures.ProcessPoolExecutor` would move them with two threads in
the calling process (a feeder that pickles and writes, a manager that reads and unpickles),
and each time one of them wakes it takes Python's lock from the thread doing the daemon's
work; `bench.pipeline` shows what the hand-over costs the daemon (bench/README.md).

So that neither side ever blocks on a full pipe while the other waits for it (a deadlock),
both write without blocking: what does not fit stays in a buffer, written when the pipe has
room (the caller, when it next asks; a worker, between calls). Pipes are enlarged to 1 MiB
where Linux allows, so a batch usually goes out at once.

A call whose worker died, or whose result could not be pickled, raises `WorkerLost` when
its result is asked for: the caller decides what to do instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pickle
import select
import signal
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from typing import Any

_HEAD = struct.Struct("!Q")  # the length of the pickle that follows
_PIPE_BYTES = 1 << 20
_READ_BYTES = 1 << 20


class WorkerLost(RuntimeError):
    """The worker of a call died, or its result could not travel back."""


def _enlarge(fd: int) -> None:
    size = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux only
    if size is not None:
        with contextlib.suppress(OSError):  # above /proc/sys/fs/pipe-max-size: keep the default
            fcntl.fcntl(fd, size, _PIPE_BYTES)


class _Frames:
    """Length-prefixed pickles over a pair of non-blocking pipe ends."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd, self.write_fd = read_fd, write_fd
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        self._in = bytearray()
        self._out = bytearray()
        self.eof = False

    def push(self, data: bytes) -> None:
        self._out += _HEAD.pack(len(data))
        self._out += data

    def flush(self) -> None:
        """Write what the pipe takes now. Raises BrokenPipeError when the reader is gone."""
        while self._out:
            try:
                written = os.write(self.write_fd, self._out)
            except BlockingIOError:
                return
            del self._out[:written]

    def fill(self) -> None:
        """Read what has arrived, without waiting."""
        while not self.eof:
            try:
                data = os.read(self.read_fd, _READ_BYTES)
            except BlockingIOError:
                return
            if not data:
                self.eof = True
            self._in += data

    def next_frame(self) -> bytes | None:
        if len(self._in) < _HEAD.size:
            return None
        (size,) = _HEAD.unpack_from(self._in)
        end = _HEAD.size + size
        if len(self._in) < end:
            return None
        frame = bytes(self._in[_HEAD.size:end])
        del self._in[:end]
        return frame

    def wait(self) -> None:
        """Block until there is something to read, or room for what waits to be written. (poll, not
        select: a descriptor above 1023, in a daemon with many open, is fine for it.)"""
        poller = select.poll()
        poller.register(self.read_fd, select.POLLIN)
        if self._out:
            poller.register(self.write_fd, select.POLLOUT)
        poller.poll()


def _answer(frame: bytes) -> bytes:
    """Run one call; its result, or why there is none, pickled."""
    try:
        function, args = pickle.loads(frame)  # noqa: S301 - from the daemon, over a pipe
        return pickle.dumps(("ok", function(*args)), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - the caller decides; the worker goes on
        return pickle.dumps(("lost", f"{type(exc).__name__}: {exc}"[:500]))


def serve(inbox: Connection, outbox: Connection) -> None:
    """A worker's loop: answer each call in order until the daemon closes the pipe.

    Results are buffered, never written blockingly: the daemon reads them only when it
    asks for one, and meanwhile may still be writing more calls.

    SIGTERM and SIGINT are ignored: systemd (KillMode=control-group) and a terminal's
    Ctrl-C signal the whole group, and the daemon, stopping cleanly, still finishes its
    batch with the workers' help before it closes their pipes. A daemon killed outright
    closes them too (the kernel does), and the worker ends at that end of its input.
    """
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    frames = _Frames(inbox.fileno(), outbox.fileno())
    try:
        while True:
            frame = frames.next_frame()
            if frame is not None:
                frames.push(_answer(frame))
            elif frames.eof:
                return  # the daemon is done with this worker: unread results go with it
            else:
                frames.wait()
            frames.flush()
            frames.fill()
    except BrokenPipeError:
        return  # the daemon closed its end while answers still waited to be written


@dataclass(frozen=True, eq=False)
class Call:
    """A call on its way to a worker: like a future, answered in the order the calls were
    made."""

    pool: WorkerPool
    worker: int
    number: int

    def done(self) -> bool:
        return self.pool.done(self)

    def result(self) -> Any:
        return self.pool.result(self)


class _Worker:
    def __init__(self, context: BaseContext) -> None:
        call_read, call_write = context.Pipe(duplex=False)
        answer_read, answer_write = context.Pipe(duplex=False)
        _enlarge(call_write.fileno())
        _enlarge(answer_write.fileno())
        self.process = context.Process(  # type: ignore[attr-defined]
            target=serve, args=(call_read, answer_write), daemon=True, name="maild-parse")
        self.process.start()
        call_read.close()
        answer_write.close()
        self._ends = (answer_read, call_write)  # closed with the worker
        self.frames = _Frames(answer_read.fileno(), call_write.fileno())
        self.sent = 0
        self.received = 0
        self.answers: dict[int, bytes] = {}

    def lost(self, why: object) -> WorkerLost:
        return WorkerLost(f"worker {self.process.pid}: {why}")

    def take_answers(self) -> None:
        """Move every complete answer that has arrived into `answers`."""
        self.frames.flush()
        self.frames.fill()
        while (frame := self.frames.next_frame()) is not None:
            self.answers[self.received] = frame
            self.received += 1

    def close(self, *, wait: bool) -> None:
        for end in self._ends:
            end.close()  # the worker reads the end of its input and exits
        self.process.join(timeout=5 if wait else 0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5)


class WorkerPool:
    """`size` worker processes; calls go to them in turn.

    Thread-safe (the daemon's mailbox threads share one pool): one lock covers the pipes,
    held while waiting for an answer, so a second thread waits at most as long as the
    worker takes for the calls before its own.
    """

    def __init__(self, size: int, context: BaseContext) -> None:
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._next = 0
        self._closed = False
        try:
            for _ in range(size):
                self._workers.append(_Worker(context))
        except BaseException:
            self.close(wait=False)
            raise

    def call(self, function: Callable[..., Any], *args: Any) -> Call:
        """Hand `function(*args)` to the next worker; never waits for it."""
        data = pickle.dumps((function, args), protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            if self._closed:
                raise WorkerLost("the pool is closed")
            index = self._next
            self._next = (index + 1) % len(self._workers)
            worker = self._workers[index]
            worker.frames.push(data)
            try:
                worker.frames.flush()
            except OSError as exc:
                raise worker.lost(exc) from exc
            call = Call(self, index, worker.sent)
            worker.sent += 1
            return call

    def done(self, call: Call) -> bool:
        with self._lock:
            if self._closed:
                return True  # result() says so
            worker = self._workers[call.worker]
            with contextlib.suppress(OSError):  # result() says what happened
                worker.take_answers()
            return call.number in worker.answers or worker.frames.eof

    def result(self, call: Call) -> Any:
        """The call's result, waiting for it. Raises WorkerLost."""
        with self._lock:
            if self._closed:
                raise WorkerLost("the pool was closed")
            worker = self._workers[call.worker]
            try:
                worker.take_answers()
                while call.number not in worker.answers:
                    if worker.frames.eof:
                        raise worker.lost(f"died (exit code {worker.process.exitcode})")
                    worker.frames.wait()
                    worker.take_answers()
            except OSError as exc:
                raise worker.lost(exc) from exc
            frame = worker.answers.pop(call.number)
        status, value = pickle.loads(frame)  # noqa: S301 - from our own worker
        if status != "ok":
            raise WorkerLost(str(value))
        return value

    def pids(self) -> list[int]:
        return sorted(w.process.pid for w in self._workers if w.process.pid is not None)

    def close(self, *, wait: bool = False) -> None:
        with self._lock:
            self._closed = True
            workers, self._workers = self._workers, []
        for worker in workers:
            worker.close(wait=wait)
