"""Lifecycle: the long-running daemon and the one-pass `run --once`.

Each mailbox runs its IMAP loop in a worker thread; the outbox sender runs on the event loop
and is woken the moment a batch commits with messages queued, so an acknowledgement leaves
within a second of the mail arriving. SIGTERM and SIGINT stop cleanly.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.exc import SQLAlchemyError

from maild.app import App
from maild.cluster.leases import Identity, Leases
from maild.cluster.single import only_daemon
from maild.errors import ConfigError
from maild.fetch.worker import Counters, MailboxWorker
from maild.jobs.runner import Ran
from maild.metrics import serve
from maild.outbound.sender import DrainStats
from maild.sla.engine import Raised
from maild.store.db import db_error

log = structlog.get_logger("maild.daemon")


def sd_notify(state: str) -> None:
    """Tell systemd about our state when it is listening (Type=notify)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(state.encode())


@dataclass
class OnceSummary:
    mailboxes: dict[str, Counters] = field(default_factory=dict)
    sla: list[Raised] = field(default_factory=list)
    jobs: list[Ran] = field(default_factory=list)
    outbox: DrainStats = field(default_factory=DrainStats)


def workers_for(app: App, on_queued: Callable[[], None] = lambda: None,
                leases: Leases | None = None) -> list[MailboxWorker]:
    return [
        MailboxWorker(mailbox=m, pipeline=app.pipeline, sessions=app.sessions, clock=app.clock,
                      on_queued=on_queued, metrics=app.metrics, tokens=app.tokens,
                      leases=leases)
        for m in app.settings.mailboxes
    ]


def leases_for(app: App) -> Leases | None:
    """On PostgreSQL, the mailboxes are leased: several daemons may share them."""
    if app.engine.dialect.name != "postgresql":
        return None
    me = Identity(app.runner.host, app.runner.pid, datetime.now(UTC))
    return Leases(app.sessions, me, [m.name for m in app.settings.mailboxes],
                  ttl=app.settings.cluster.lease_seconds)


async def _heartbeat(leases: Leases, metrics_names: list[str], app: App) -> None:
    """Every third of the lease: alive, renewed, a fair share taken (cluster/leases.py)."""
    while True:
        before = {name for name in metrics_names if leases.holds(name)}
        held = await asyncio.to_thread(leases.beat)
        app.metrics.database_up.set(0 if leases.down_since is not None else 1)
        for name in held - before:
            app.metrics.polled(name)  # a mailbox taken over: its poll age starts now
        for name in metrics_names:
            app.metrics.lease_held.labels(name).set(1 if name in held else 0)
        await asyncio.sleep(leases.ttl / 3)


def reload(app: App) -> bool:
    """SIGHUP: new rules and templates, or the old ones kept and the error logged."""
    sd_notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
    try:
        app.reload()
    except ConfigError as exc:
        log.error("config.reload_failed", error=str(exc))
        return False
    finally:
        sd_notify("READY=1")
    log.info("config.reloaded", rules=len(app.rules.rules), source=app.rules.source)
    return True


# How long a thread may hold the GIL while another waits for it. The outbox sender and the
# scheduler run in threads of their own beside the mailbox threads: each SMTP command gives
# the GIL up and asks for it again, and while a mailbox thread works through a backlog, at
# Python's default of 5 ms every such turn could wait that long. (The parse workers are fed
# by the mailbox thread itself, pipeline/workers.py: no thread of theirs needs it.)
SWITCH_INTERVAL = 0.0002
JOBS_INTERVAL = 30.0  # seconds between asking the scheduled jobs what is due


def start_workers(app: App) -> None:
    """The parse workers, started before the mail is there, and the GIL handed on between
    the daemon's threads without long waits."""
    sys.setswitchinterval(SWITCH_INTERVAL)
    app.pipeline.start()


def run_once(app: App) -> OnceSummary:
    """Every message present now, every due outbox message once; then return."""
    summary = OnceSummary()
    start_workers(app)
    for worker in workers_for(app):
        summary.mailboxes[worker.mailbox.name] = worker.run_once()
    summary.sla = app.sla_pass()  # before the outbox, so its notifications go out now
    summary.jobs = app.run_jobs()
    summary.outbox = asyncio.run(app.sender.drain_once())
    return summary


def start_scheduler(app: App, wake: Callable[[], None]) -> AsyncIOScheduler:
    """The scheduled jobs of `maild run`: the SLA pass, at the SLA file's interval, and the
    other jobs (app.jobs), asked every JOBS_INTERVAL seconds what is due."""

    async def sla_job() -> None:
        try:
            raised = await asyncio.to_thread(app.sla_pass)
        except SQLAlchemyError as exc:
            log.warning("sla.pass_failed", error=db_error(exc))
            return
        if raised:
            wake()

    async def scheduled_jobs() -> None:
        try:
            ran = await asyncio.to_thread(app.run_jobs)
        except SQLAlchemyError as exc:
            log.warning("jobs.pass_failed", error=db_error(exc))
            return
        if ran:
            wake()

    scheduler = AsyncIOScheduler(timezone="UTC")
    scheduler.add_job(sla_job, "interval", seconds=app.sla.config.check_interval,
                      id="sla", max_instances=1, coalesce=True,
                      next_run_time=datetime.now(UTC))
    # Each job knows its own due times (maild/jobs/schedule.py); this only asks often
    # enough that none is late by more than the interval.
    scheduler.add_job(scheduled_jobs, "interval", seconds=JOBS_INTERVAL, id="jobs",
                      max_instances=1, coalesce=True, next_run_time=datetime.now(UTC))
    scheduler.start()
    return scheduler


def _in_thread(target: Callable[[], None], name: str) -> asyncio.Future[None]:
    """Run `target` in a daemon thread: a worker stuck in a network call cannot hold the
    process past its grace period."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def finish(error: BaseException | None) -> None:
        if done.done():
            return
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)

    def run() -> None:
        error: BaseException | None = None
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - handed to the event loop
            error = exc
        loop.call_soon_threadsafe(finish, error)

    threading.Thread(target=run, name=name, daemon=True).start()
    return done


async def _watchdog(interval: float) -> None:
    """WATCHDOG=1 at half the interval systemd asked for; stops if the loop stalls."""
    while True:
        sd_notify("WATCHDOG=1")
        await asyncio.sleep(interval)


def _start_http(app: App, leases: Leases | None) -> ThreadingHTTPServer | None:
    http = app.settings.http
    if http.port is None:
        return None

    def health() -> tuple[bool, dict[str, object]]:
        # With leases, only the mailboxes this daemon holds are its to poll.
        mailboxes = [m.name for m in app.settings.mailboxes
                     if leases is None or leases.holds(m.name)]
        return app.metrics.health(
            mailboxes=mailboxes, database=leases,
            max_poll_age=http.max_poll_age, max_send_age=http.max_send_age,
            outbox_waiting=lambda: app.sender.next_due() is not None)

    server = serve(app.metrics, http.listen, http.port, health)
    log.info("http.listening", address=f"{http.listen}:{server.server_address[1]}")
    return server


async def run_forever(app: App, stop: asyncio.Event | None = None) -> None:
    """The daemon: until SIGTERM/SIGINT (or until `stop` is set, when one is given)."""
    loop = asyncio.get_running_loop()
    signals = stop is None
    stop = stop or asyncio.Event()
    wake = asyncio.Event()
    if signals:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, reload, app)

    def on_queued() -> None:
        loop.call_soon_threadsafe(wake.set)

    start_workers(app)
    leases = leases_for(app)
    single = contextlib.ExitStack()
    if leases is None and app.engine.url.database and app.engine.url.database != ":memory:":
        single.enter_context(only_daemon(Path(app.engine.url.database)))
    background = []
    if leases is not None:
        await asyncio.to_thread(leases.beat)  # the mailboxes held from the start
        background.append(asyncio.create_task(_heartbeat(
            leases, [m.name for m in app.settings.mailboxes], app)))
    workers = workers_for(app, on_queued, leases)
    threads = [_in_thread(w.run_forever, f"mailbox-{w.mailbox.name}") for w in workers]
    sender_stop = asyncio.Event()  # the sender outlives the workers by the grace period
    sender = asyncio.create_task(app.sender.run(sender_stop, wake), name="outbox")
    scheduler = start_scheduler(app, on_queued)
    http = _start_http(app, leases)
    watchdog_usec = int(os.environ.get("WATCHDOG_USEC", "0") or 0)
    if watchdog_usec > 0:
        background.append(asyncio.create_task(_watchdog(watchdog_usec / 2e6)))
    sd_notify("READY=1")
    log.info("daemon.started", mailboxes=[w.mailbox.name for w in workers])
    stopping = asyncio.create_task(stop.wait())
    try:
        watched: list[asyncio.Future[Any]] = [stopping, *threads, sender]
        done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        failed = [t for t in done if t is not stopping]
        if failed:
            # A worker or the sender ended on its own: a bug. Stop everything and let the
            # service manager restart us rather than run half a daemon.
            error = failed[0].exception()
            log.error("daemon.component_failed", error=repr(error))
            raise RuntimeError(f"a component stopped: {error!r}")
    finally:
        await _shut_down(app, workers, threads, sender, sender_stop, scheduler, http,
                         background)
        if leases is not None:
            await asyncio.to_thread(leases.release)  # the others take over at once
        single.close()
        stopping.cancel()
        if signals:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        log.info("daemon.stopped")


async def _shut_down(app: App, workers: list[MailboxWorker],
                     threads: list[asyncio.Future[None]], sender: asyncio.Task[None],
                     sender_stop: asyncio.Event, scheduler: AsyncIOScheduler,
                     http: ThreadingHTTPServer | None,
                     background: list[asyncio.Task[None]]) -> None:
    """SIGTERM: finish the batch in hand, stop fetching, give the outbox the rest of the
    grace period, and return within it whatever is stuck."""
    sd_notify("STOPPING=1")
    grace = app.settings.daemon.shutdown_grace
    deadline = asyncio.get_running_loop().time() + grace
    log.info("daemon.stopping", grace_seconds=grace)
    scheduler.shutdown(wait=False)
    for w in workers:
        w.stop.set()
    if threads:
        await asyncio.wait(threads, timeout=grace)
    remaining = max(0.1, deadline - asyncio.get_running_loop().time())
    sender_stop.set()
    try:
        await asyncio.wait_for(asyncio.shield(sender), timeout=remaining)
    except TimeoutError:
        sender.cancel()
        log.warning("daemon.outbox_left", reason="grace period over; the rest is sent on "
                    "the next start")
    for task in background:
        task.cancel()
    if http is not None:
        http.shutdown()
        http.server_close()
