"""The measured phases, each run in a process of its own so that peak memory is its own.

    python -m bench.phases floor   SPEC.json   # imapclient fetch + mail-parser, nothing else
    python -m bench.phases maild   SPEC.json   # maild.daemon.run_once on a fresh database
    python -m bench.phases daemon  SPEC.json   # maild.daemon.run_forever until stdin closes

SPEC.json is written by bench.ingest; each phase writes its figures as JSON to
``spec["result"]``. Standard output and standard error are left to the caller (maild's log
lines go to standard error, as under systemd).
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import json
import logging
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

import mailparser
from imapclient import IMAPClient

BATCH = 200  # maild's default mailboxes[].batch_size


def _peak_rss_kib() -> int:
    """Peak RSS of this process image, in KiB.

    VmHWM, not ru_maxrss: after fork + exec, Linux carries the parent's high-water mark over
    into the child's ru_maxrss, so a child of a parent holding 10,000 messages would report
    the parent's peak.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def _process_figures(pid: int) -> tuple[float, int]:
    """CPU seconds and peak RSS (KiB) of another process of ours (a parse worker)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rpartition(")")[2].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            hwm = next((int(line.split()[1]) for line in status if line.startswith("VmHWM:")), 0)
    except (OSError, ValueError):
        return 0.0, 0
    return cpu, hwm


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _write(spec: dict[str, Any], figures: dict[str, Any]) -> None:
    Path(spec["result"]).write_text(json.dumps(figures), encoding="utf-8")


def floor(spec: dict[str, Any]) -> None:
    """A fresh connection fetches every message (BODY.PEEK[], 200 UIDs a command) and
    parses each with mail-parser; nothing is kept."""
    imap = spec["imap"]
    logging.getLogger("mailparser").setLevel(logging.ERROR)  # as maild does
    rss_before = _peak_rss_kib()
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    client = IMAPClient(imap["host"], port=imap["port"], ssl=False, timeout=60)
    client.login(imap["username"], imap["password"])
    client.select_folder(spec.get("folder", "INBOX"), readonly=True)
    uids = sorted(client.search(["ALL"]))
    parsed = 0
    size = 0
    for i in range(0, len(uids), BATCH):
        chunk = uids[i:i + BATCH]
        data = client.fetch(chunk, ["BODY.PEEK[]"])
        for uid in chunk:
            raw = bytes(data[uid][b"BODY[]"])
            size += len(raw)
            message = mailparser.parse_from_bytes(raw)
            parsed += bool(message.message.keys())
    client.logout()
    elapsed = time.perf_counter() - t0
    _write(spec, {
        "messages": len(uids), "parsed": parsed, "bytes": size, "seconds": elapsed,
        "cpu_seconds": _cpu_seconds() - cpu0,
        "rss_before_kib": rss_before, "peak_rss_kib": _peak_rss_kib(),
    })


# maild's limits on automatic mail (a loop brake: by default at most 2,000 an hour in total
# and 3 an hour per recipient) would suppress most acknowledgements of a 10,000-message
# backlog. The benchmark wants the full work, an acknowledgement for every new ticket, so it
# lifts them; the limit checks themselves still run for every acknowledgement.
NO_BURST_LIMITS = {key: [{"window": 3600, "max": 10_000_000}]
                   for key in ("per_recipient", "per_ticket", "total")}


def _settings(spec: dict[str, Any]) -> Any:
    from maild.settings import Settings, load_settings
    from tests.kit import write_config

    folder = Path(spec["workdir"])
    extra = dict(spec.get("config") or {})
    if "safety" in Settings.model_fields:
        extra["safety"] = NO_BURST_LIMITS
    path = write_config(folder, db_url=spec["db_url"], imap=spec["imap"], smtp=spec["smtp"],
                        mailbox=spec.get("mailbox") or {}, log_level=spec["log_level"],
                        **extra)
    return load_settings(path)


def _configure_logs(level: str) -> None:
    from maild import logs

    logs.configure(level, json=True)  # as `maild run` under systemd: JSON lines on stderr


def maild_once(spec: dict[str, Any]) -> None:
    """`maild.daemon.run_once` on the spec's mailbox and (fresh) database.

    `run_once` processes the whole mailbox (batches of 200, one transaction each, UID MOVE
    after commit), may run an SLA pass, and then drains the outbox once. Ingestion is
    complete when the mailbox worker's `run_once` returns: every batch committed with its
    acknowledgements queued. The drain returns once the SMTP sink has answered 250 to every
    queued message. Both moments are taken by wrapping those two methods, so what is timed
    is `maild.daemon.run_once` itself.
    """
    from maild import daemon
    from maild.app import build
    from maild.fetch.worker import MailboxWorker

    _configure_logs(spec["log_level"])
    settings = _settings(spec)
    app = build(settings)  # migrates the fresh database: not timed
    # Start-up, not timed either: the parse workers start with the daemon (run_once starts
    # them in the background too, which is then a no-op).
    app.pipeline.start(wait=True)
    gc.freeze()  # as `maild run` does after start-up
    marks: dict[str, float] = {}
    worker_run_once = MailboxWorker.run_once
    drain = app.sender.drain_once

    def timed_worker(self: MailboxWorker) -> Any:
        counters = worker_run_once(self)
        marks["ingested"], marks["ingested_cpu"] = time.perf_counter(), _cpu_seconds()
        marks["ingested_peak_kib"] = _peak_rss_kib()
        workers = [_process_figures(pid) for pid in app.pipeline.parse_worker_pids()]
        marks["workers"] = len(workers)
        marks["workers_cpu"] = sum(cpu for cpu, _ in workers)
        marks["workers_peak_kib"] = max((hwm for _, hwm in workers), default=0)
        return counters

    async def timed_drain() -> Any:
        marks["drain"] = time.perf_counter()
        return await drain()

    MailboxWorker.run_once = timed_worker  # type: ignore[method-assign]
    app.sender.drain_once = timed_drain  # type: ignore[method-assign]
    rss_before = _peak_rss_kib()
    profile = cProfile.Profile() if spec.get("profile") else None
    cpu0 = _cpu_seconds()
    t0 = time.perf_counter()
    run = daemon.run_once if profile is None else lambda a: profile.runcall(daemon.run_once, a)
    try:
        summary = run(app)
    except BaseException:
        app.dispose()  # the parse workers: else the process waits for them at its exit
        raise
    t_end = time.perf_counter()
    cpu = _cpu_seconds() - cpu0
    if profile is not None:
        profile.dump_stats(spec["profile"])
    app.dispose()
    counters = summary.mailboxes["support"]
    _write(spec, {
        "ingest_seconds": marks["ingested"] - t0,
        "between_seconds": marks["drain"] - marks["ingested"],  # e.g. the SLA pass
        "total_seconds": t_end - t0,
        "ingest_cpu_seconds": marks["ingested_cpu"] - cpu0,
        "cpu_seconds": cpu,
        "fetched": counters.fetched, "done": counters.done, "held": counters.held,
        "tickets_created": counters.tickets_created, "queued": counters.queued,
        "sent": summary.outbox.sent, "retried": summary.outbox.retried,
        "failed": summary.outbox.failed, "unreachable": summary.outbox.unreachable,
        "rss_before_kib": rss_before, "peak_rss_kib": _peak_rss_kib(),
        "ingest_peak_rss_kib": int(marks["ingested_peak_kib"]),
        # The parse workers (maild.pipeline.prepare), up to the end of ingestion.
        "workers": int(marks["workers"]), "workers_cpu_seconds": marks["workers_cpu"],
        "workers_peak_rss_kib": int(marks["workers_peak_kib"]),
    })


def maild_daemon(spec: dict[str, Any]) -> None:
    """`maild.daemon.run_forever` (IMAP IDLE + outbox sender) until standard input closes."""
    from maild import daemon
    from maild.app import build

    _configure_logs(spec["log_level"])
    app = build(_settings(spec))
    gc.freeze()  # as `maild run` does after start-up

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def wait_for_eof() -> None:
            sys.stdin.read()
            loop.call_soon_threadsafe(stop.set)

        threading.Thread(target=wait_for_eof, daemon=True).start()
        await daemon.run_forever(app, stop)

    try:
        asyncio.run(main())
    finally:
        app.dispose()
    _write(spec, {"peak_rss_kib": _peak_rss_kib()})


PHASES = {"floor": floor, "maild": maild_once, "daemon": maild_daemon}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in PHASES:
        print(f"usage: python -m bench.phases {{{'|'.join(PHASES)}}} SPEC.json",
              file=sys.stderr)
        return 2
    spec = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    PHASES[argv[0]](spec)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
