"""Lifecycle: the long-running daemon and the one-pass `run --once`.

Each mailbox runs its IMAP loop in a worker thread; the outbox sender runs on the event loop
and is woken the moment a batch commits with messages queued, so an acknowledgement leaves
within a second of the mail arriving. SIGTERM and SIGINT stop cleanly.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy.exc import SQLAlchemyError

from maild.app import App
from maild.errors import ConfigError
from maild.fetch.worker import Counters, MailboxWorker
from maild.outbound.sender import DrainStats
from maild.sla.engine import Raised

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
    outbox: DrainStats = field(default_factory=DrainStats)


def workers_for(app: App, on_queued: Callable[[], None] = lambda: None) -> list[MailboxWorker]:
    return [
        MailboxWorker(mailbox=m, pipeline=app.pipeline, sessions=app.sessions, clock=app.clock,
                      on_queued=on_queued)
        for m in app.settings.mailboxes
    ]


def reload(app: App) -> bool:
    """SIGHUP: new rules and templates, or the old ones kept and the error logged."""
    sd_notify("RELOADING=1")
    try:
        app.reload()
    except ConfigError as exc:
        log.error("config.reload_failed", error=str(exc))
        return False
    finally:
        sd_notify("READY=1")
    log.info("config.reloaded", rules=len(app.rules.rules), source=app.rules.source)
    return True


def run_once(app: App) -> OnceSummary:
    """Every message present now, every due outbox message once; then return."""
    summary = OnceSummary()
    for worker in workers_for(app):
        summary.mailboxes[worker.mailbox.name] = worker.run_once()
    summary.sla = app.sla_pass()  # before the outbox, so its notifications go out now
    summary.outbox = asyncio.run(app.sender.drain_once())
    return summary


def start_scheduler(app: App, wake: Callable[[], None]) -> AsyncIOScheduler:
    """The scheduled jobs of `maild run`: the SLA pass, at the SLA file's interval."""

    async def sla_job() -> None:
        try:
            raised = await asyncio.to_thread(app.sla_pass)
        except SQLAlchemyError as exc:
            log.warning("sla.pass_failed", error=str(exc).splitlines()[0])
            return
        if raised:
            wake()

    scheduler = AsyncIOScheduler(timezone="UTC")
    scheduler.add_job(sla_job, "interval", seconds=app.sla.config.check_interval,
                      id="sla", max_instances=1, coalesce=True,
                      next_run_time=datetime.now(UTC))
    scheduler.start()
    return scheduler


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

    workers = workers_for(app, on_queued)
    tasks = [asyncio.create_task(asyncio.to_thread(w.run_forever), name=w.mailbox.name)
             for w in workers]
    sender = asyncio.create_task(app.sender.run(stop, wake), name="outbox")
    scheduler = start_scheduler(app, on_queued)
    sd_notify("READY=1")
    log.info("daemon.started", mailboxes=[w.mailbox.name for w in workers])
    stopping = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait([stopping, *tasks, sender],
                                     return_when=asyncio.FIRST_COMPLETED)
        failed = [t for t in done if t is not stopping]
        if failed:
            # A worker or the sender ended on its own: a bug. Stop everything and let the
            # service manager restart us rather than run half a daemon.
            error = failed[0].exception()
            log.error("daemon.component_failed", component=failed[0].get_name(),
                      error=repr(error))
            raise RuntimeError(f"{failed[0].get_name()} stopped: {error!r}")
    finally:
        sd_notify("STOPPING=1")
        log.info("daemon.stopping")
        stop.set()
        scheduler.shutdown(wait=False)
        for w in workers:
            w.stop.set()
        await asyncio.gather(*tasks, sender, return_exceptions=True)
        stopping.cancel()
        if signals:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
        log.info("daemon.stopped")
