"""Ingestion benchmark: maild against a floor measured in the same run.

    .venv/bin/python -m bench.ingest                      # N = 1,000 and 10,000 on SQLite
    .venv/bin/python -m bench.ingest --n 1000 --db postgresql

For each N, N messages of a realistic mix (bench/mailmix.py) are loaded into a fresh user on a
private Dovecot (not timed). Then, each in a process of its own so that each has its own peak
memory:

* the floor, twice (the better run counts, with warm caches): a fresh imapclient connection
  fetches every message with BODY.PEEK[] in batches of 200 UIDs and parses each with
  mail-parser, nothing else;
* maild: `maild.daemon.run_once` on a fresh database over the same mailbox, timed to (a) all
  tickets committed with their acknowledgements queued and (b) everything queued
  (acknowledgements and team notifications) accepted by the loopback aiosmtpd sink.

Finally, latency: `maild.daemon.run_forever` (IMAP IDLE) runs on the database and mailbox of the
largest N, K messages are appended one at a time, and each is timed from the APPEND returning
to its acknowledgement arriving at the sink.

Figures are printed, never asserted. Targets (the issue): maild/floor >= 0.5, and a median
acknowledgement latency <= 1 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import pstats
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.mailmix import Mix, build_mix
from tests.kit import message_id_of
from tests.servers.dovecot import Dovecot, MailUser
from tests.servers.postgres import PgDatabase
from tests.servers.smtp import ReceivedMessage, SmtpServer

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONFIG = ROOT / "config"
RATIO_TARGET = 0.5
LATENCY_TARGET_MS = 1000.0
PHASE_TIMEOUT = 3600.0
START_TIMEOUT = 120.0
IDLE_SETTLE = 0.2  # s after the inbox is empty: the daemon's last SEARCH and IDLE are sent


class BenchError(RuntimeError):
    """A phase failed or maild did not do what the mix requires."""


@dataclass
class SizeResult:
    """One round for one N: the floor (best of two) and maild, on the same mailbox."""

    n: int
    mix: dict[str, int]
    round: int = 1
    floor_runs: list[dict[str, Any]] = field(default_factory=list)
    maild: dict[str, Any] = field(default_factory=dict)
    load_before: dict[str, float] = field(default_factory=dict)

    @property
    def floor(self) -> dict[str, Any]:
        return min(self.floor_runs, key=lambda r: r["seconds"])

    @property
    def floor_rate(self) -> float:
        return self.n / self.floor["seconds"]

    @property
    def ingest_rate(self) -> float:
        return self.n / self.maild["ingest_seconds"]

    @property
    def delivered_rate(self) -> float:
        return self.n / self.maild["total_seconds"]

    @property
    def ratio(self) -> float:
        return self.ingest_rate / self.floor_rate

    @property
    def delivered_ratio(self) -> float:
        return self.delivered_rate / self.floor_rate


def median_round(rounds: list[SizeResult]) -> SizeResult:
    """The round with the median committed ratio (with an even count, the lower one)."""
    ordered = sorted(rounds, key=lambda r: r.ratio)
    return ordered[(len(ordered) - 1) // 2]


@dataclass
class LatencyResult:
    samples_ms: list[float]  # math.inf: no acknowledgement within the timeout
    on_n: int
    timeout: float
    peak_rss_kib: int = 0

    @property
    def misses(self) -> int:
        return sum(math.isinf(x) for x in self.samples_ms)

    @property
    def median(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p90(self) -> float:
        ordered = sorted(self.samples_ms)  # nearest rank: well defined with misses
        return ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]


def mib(kib: int) -> float:
    return kib / 1024


def load_average() -> float:
    return os.getloadavg()[0]


class Runner:
    """Runs phases as child processes and keeps their logs in the work directory."""

    def __init__(self, workdir: Path, log_level: str, config: dict[str, str]) -> None:
        self.workdir = workdir
        self.log_level = log_level
        self.config = config  # extra keys of maild.yaml: rules, sla
        self._count = 0

    def _files(self, phase: str, spec: dict[str, Any]) -> tuple[Path, Path, Path]:
        self._count += 1
        stem = f"{self._count:02d}-{phase}"
        spec_path = self.workdir / f"{stem}.spec.json"
        result = self.workdir / f"{stem}.result.json"
        log = self.workdir / f"{stem}.log"
        spec_path.write_text(json.dumps({**spec, "result": str(result),
                                         "log_level": self.log_level,
                                         "config": self.config}),
                             encoding="utf-8")
        return spec_path, result, log

    @staticmethod
    def _command(phase: str, spec_path: Path) -> list[str]:
        return [sys.executable, "-m", "bench.phases", phase, str(spec_path)]

    def run(self, phase: str, spec: dict[str, Any]) -> dict[str, Any]:
        spec_path, result, log = self._files(phase, spec)
        with log.open("wb") as out:
            code = subprocess.run(self._command(phase, spec_path), cwd=ROOT,
                                  stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=PHASE_TIMEOUT,
                                  check=False).returncode
        if code != 0 or not result.exists():
            raise BenchError(f"phase {phase} failed (exit {code}); log {log}:\n{tail(log)}")
        figures: dict[str, Any] = json.loads(result.read_text(encoding="utf-8"))
        return figures

    @contextlib.contextmanager
    def background(self, phase: str, spec: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Run `phase` while the block runs; it is told to stop by closing its stdin."""
        spec_path, result, log = self._files(phase, spec)
        figures: dict[str, Any] = {}
        with log.open("wb") as out:
            process = subprocess.Popen(self._command(phase, spec_path), cwd=ROOT,
                                       stdin=subprocess.PIPE, stdout=out,
                                       stderr=subprocess.STDOUT)
            try:
                yield figures
            finally:
                assert process.stdin is not None
                process.stdin.close()
                try:
                    code = process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    process.kill()
                    code = process.wait()
        if code != 0 or not result.exists():
            raise BenchError(f"phase {phase} failed (exit {code}); log {log}:\n{tail(log)}")
        figures.update(json.loads(result.read_text(encoding="utf-8")))


def tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def fresh_database(kind: str, folder: Path) -> Iterator[str]:
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'maild.db'}"
        return
    database = PgDatabase.create()
    try:
        yield database.url
    finally:
        database.drop()


def smtp_config(sink: SmtpServer) -> dict[str, Any]:
    return {"host": sink.host, "port": sink.port, "security": "none"}


def measure_size(
    n: int, args: argparse.Namespace, dovecot: Dovecot, sink: SmtpServer, runner: Runner,
    stack: contextlib.ExitStack,
) -> tuple[list[SizeResult], MailUser, str]:
    """`args.rounds` rounds of floor and maild for one N, each on a fresh copy of the
    mailbox and a fresh database; the user and database of the last round are returned
    for the latency measurement."""
    print(f"\n[N={n:,}] building the mix ...", flush=True)
    mix = build_mix(n, seed=args.seed)
    rounds = []
    for number in range(1, args.rounds + 1):
        folder = runner.workdir / f"db-{n}-{number}"
        folder.mkdir()
        db_url = stack.enter_context(fresh_database(args.db, folder))
        result, user = measure_round(n, number, mix, args, dovecot, sink, runner, db_url)
        rounds.append(result)
    return rounds, user, db_url


def measure_round(
    n: int, number: int, mix: Mix, args: argparse.Namespace, dovecot: Dovecot,
    sink: SmtpServer, runner: Runner, db_url: str,
) -> tuple[SizeResult, MailUser]:
    label = f"[N={n:,} round {number}/{args.rounds}]"
    result = SizeResult(n=n, round=number,
                        mix={"new": mix.new, "replies": mix.replies,
                             "duplicates": mix.duplicates, "bytes": mix.total_bytes})
    user = dovecot.new_user("bench")
    started = time.perf_counter()
    user.append_many(mix.messages)
    if user.count("INBOX") != n:
        raise BenchError(f"Dovecot holds {user.count('INBOX')} messages, not {n}")
    print(f"{label} loaded {n:,} messages ({mix.total_bytes / 2**20:.1f} MiB: "
          f"{mix.new:,} new, {mix.replies:,} replies, {mix.duplicates:,} duplicates) in "
          f"{time.perf_counter() - started:.1f} s", flush=True)
    imap = user.imap_config()
    for attempt in (1, 2):
        result.load_before[f"floor{attempt}"] = load_average()
        figures = runner.run("floor", {"imap": imap})
        if figures["messages"] != n or figures["parsed"] != n:
            raise BenchError(f"the floor saw {figures['messages']} messages, parsed "
                             f"{figures['parsed']}, of {n}")
        result.floor_runs.append(figures)
        print(f"{label} floor run {attempt}: {figures['seconds']:.2f} s, "
              f"{n / figures['seconds']:,.0f} msgs/s", flush=True)
    sink.clear()
    workdir = runner.workdir / f"maild-{n}-{number}"
    workdir.mkdir()
    result.load_before["maild"] = load_average()
    spec: dict[str, Any] = {"imap": imap, "smtp": smtp_config(sink), "db_url": db_url,
                            "workdir": str(workdir)}
    if args.profile:
        spec["profile"] = str(Path(args.profile).resolve()
                              / f"maild-{n}-{args.db}-{number}.pstats")
    # The sink runs in this process, whose main thread only waits for the phase: the CPU
    # time this process spends meanwhile is the sink's (what delivery costs the receiver).
    sink_cpu = time.process_time()
    figures = runner.run("maild", spec)
    figures["sink_cpu_seconds"] = time.process_time() - sink_cpu
    result.maild = figures
    check_maild(result, user, sink)
    print(f"{label} maild: committed+queued {figures['ingest_seconds']:.2f} s, "
          f"delivered {figures['total_seconds']:.2f} s; ratio {result.ratio:.2f}", flush=True)
    if args.profile:
        print_profile(spec["profile"])
    return result, user


def is_ack(message: ReceivedMessage) -> bool:
    """An acknowledgement (or canned answer) answers the customer's mail: it has an
    In-Reply-To. Notifications to the teams have none."""
    return message.message["In-Reply-To"] is not None


def check_maild(result: SizeResult, user: MailUser, sink: SmtpServer) -> None:
    """Did maild do the whole job? (Counts, not timings.)"""
    m, mix = result.maild, result.mix
    received = sink.messages
    acks = sum(is_ack(r) for r in received)
    problems = []
    if m["fetched"] != result.n or m["done"] != result.n:
        problems.append(f"fetched {m['fetched']}, done {m['done']} of {result.n}")
    if m["held"]:
        problems.append(f"{m['held']} quarantined")
    if m["tickets_created"] != mix["new"]:
        problems.append(f"{m['tickets_created']} tickets for {mix['new']} new mails")
    if m["queued"] != acks:
        problems.append(f"{m['queued']} acknowledgements queued, {acks} at the sink")
    if m["sent"] != len(received) or m["failed"] or m["unreachable"]:
        problems.append(f"{m['sent']} sent, {m['failed']} failed, {len(received)} at the sink")
    if user.count("INBOX") != 0:
        problems.append(f"{user.count('INBOX')} messages left in INBOX")
    if problems:
        raise BenchError("maild did not finish the job: " + "; ".join(problems))
    result.maild["acks_at_sink"] = acks
    result.maild["others_at_sink"] = len(received) - acks


def wait_for_answer(sink: SmtpServer, message_id: str, seen: int, timeout: float
                    ) -> tuple[bool, int]:
    """Block until the sink has a message in reply to `message_id`, at most `timeout`
    seconds; return whether it came and how many messages the sink had then."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            received = sink.wait_for(seen + 1, timeout=max(0.0, deadline - time.monotonic()))
        except TimeoutError:
            return False, seen
        for r in received[seen:]:
            if str(r.message["In-Reply-To"] or "").strip() == message_id:
                return True, len(received)
        seen = len(received)


def print_profile(path: str) -> None:
    print(f"\nprofile of run_once (timings under cProfile are inflated): {path}")
    stats = pstats.Stats(path, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(25)


def measure_latency(
    k: int, n: int, args: argparse.Namespace, user: MailUser, sink: SmtpServer, runner: Runner,
    db_url: str,
) -> LatencyResult:
    """run_forever with IDLE; K appends one at a time, each timed to its ack at the sink."""
    mix = build_mix(k + 2, seed=args.seed + 1, reply_share=0.0, duplicate_share=0.0,
                    distinct_senders=True)
    workdir = runner.workdir / "daemon"
    workdir.mkdir()
    spec = {"imap": user.imap_config(), "smtp": smtp_config(sink), "db_url": db_url,
            "workdir": str(workdir)}
    sink.clear()
    samples: list[float] = []
    print(f"\n[latency] run_forever (IDLE) on the database of N={n:,}; {k} appends ...",
          flush=True)
    seen = 0
    with runner.background("daemon", spec) as figures, user.connect() as client:
        for i, raw in enumerate(mix.messages):
            message_id = message_id_of(raw)
            client.append("INBOX", raw)
            appended = time.perf_counter()
            # the first wait includes the daemon's start (imports, migrations check)
            came, seen = wait_for_answer(sink, message_id, seen,
                                         args.ack_timeout if i else START_TIMEOUT)
            arrived = time.perf_counter()
            if not came:
                print(f"[latency] message {i + 1}: no acknowledgement within "
                      f"{args.ack_timeout if i else START_TIMEOUT:.0f} s", flush=True)
            if i >= 2:  # the first two only prove that the daemon is up and IDLE-ing
                samples.append((arrived - appended) * 1000 if came else math.inf)
            wait_until_idle(client)
    return LatencyResult(samples_ms=samples, on_n=n, timeout=args.ack_timeout,
                         peak_rss_kib=figures["peak_rss_kib"])


def wait_until_idle(client: Any, timeout: float = 10.0) -> None:
    """Until the daemon is done with the last message and back in IDLE, so that the next
    sample is a message arriving at an idle daemon.

    The acknowledgement goes out once the batch is committed, before the daemon moves the
    message and searches again; a message appended at once would be found by that search
    without IDLE, and measure a few milliseconds that a customer never sees.
    """
    deadline = time.monotonic() + timeout
    while client.folder_status("INBOX", ["MESSAGES"])[b"MESSAGES"] and \
            time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(IDLE_SETTLE)


def fmt_ms(value: float) -> str:
    return "missed" if math.isinf(value) else f"{value:.0f} ms"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _row(n: str, phase: str, seconds: float, rate: float, ratio: float, cpu_ms: float,
         peak: str = "", load: str = "") -> str:
    return (f"{n:>7}  {phase:<32}{seconds:>8.2f}{rate:>8,.0f}{ratio:>7.2f}{cpu_ms:>8.2f}"
            f"{peak:>15}{load:>6}")


def report(args: argparse.Namespace, sizes: list[SizeResult],
           latency: LatencyResult | None) -> None:
    rules = "none" if args.rules is None else os.path.relpath(args.rules, ROOT)
    sla = "none" if args.sla is None else os.path.relpath(args.sla, ROOT)
    title = (f"maild ingestion benchmark: db={args.db}, rules {rules}, sla {sla}, log level "
             f"{args.log_level}, {os.cpu_count()} CPUs, batch 200, mix seed {args.seed}")
    head = (f"{'N':>7}  {'phase':<32}{'seconds':>8}{'msgs/s':>8}{'ratio':>7}{'CPU ms':>8}"
            f"{'peak (start)':>15}{'load':>6}")
    print("\n" + "=" * len(head) + "\n" + title + "\n" + "=" * len(head))
    print(head)
    print("-" * len(head))
    by_n = _by_n(sizes)
    for rounds in by_n.values():
        s = median_round(rounds)
        f, m = s.floor, s.maild
        best = s.floor_runs.index(f)
        print(_row(f"{s.n:,}", "floor: fetch + parse (best of 2)", f["seconds"], s.floor_rate,
                   1.0, 1000 * f["cpu_seconds"] / s.n,
                   f"{mib(f['peak_rss_kib']):.0f} ({mib(f['rss_before_kib']):.0f}) MiB",
                   f"{s.load_before[f'floor{best + 1}']:.1f}"))
        print(_row("", "maild: committed, acks queued", m["ingest_seconds"], s.ingest_rate,
                   s.ratio, 1000 * m["ingest_cpu_seconds"] / s.n,
                   f"{mib(m['ingest_peak_rss_kib']):.0f} ({mib(m['rss_before_kib']):.0f}) MiB",
                   f"{s.load_before['maild']:.1f}"))
        print(_row("", "maild: + outbox delivered", m["total_seconds"], s.delivered_rate,
                   s.delivered_ratio, 1000 * m["cpu_seconds"] / s.n,
                   f"{mib(m['peak_rss_kib']):.0f} MiB"))
        delivered = m["acks_at_sink"] + m["others_at_sink"]
        print(f"{'':>9}+ the SMTP sink (aiosmtpd, in the benchmark's process): "
              f"{1000 * m['sink_cpu_seconds'] / max(delivered, 1):.2f} CPU ms a mail, "
              f"{m['sink_cpu_seconds']:.2f} s for {delivered:,} mails "
              f"({m['sink_cpu_seconds'] / f['seconds']:.1f}x the floor's time)")
        if m.get("workers"):
            print(f"{'':>9}+ {m['workers']} parse worker process(es): "
                  f"{1000 * m['workers_cpu_seconds'] / s.n:.2f} CPU ms a message, peak RSS "
                  f"{mib(m['workers_peak_rss_kib']):.0f} MiB each")
        other = s.floor_runs[1 - best]
        print(f"{'':>9}{m['tickets_created']:,} tickets for {s.mix['new']:,} new mails, "
              f"{s.mix['replies']:,} replies threaded, {s.mix['duplicates']:,} duplicates; "
              f"at the sink {m['acks_at_sink']:,} acks + {m['others_at_sink']:,} "
              f"notifications;\n{'':>9}other floor run {s.n / other['seconds']:,.0f} msgs/s; "
              f"between ingestion and delivery (SLA pass) {m['between_seconds']:.2f} s")
        if len(rounds) > 1:
            print(f"{'':>9}the median of {len(rounds)} rounds (round {s.round}); committed "
                  "ratio by round: " + ", ".join(f"{r.ratio:.2f}" for r in rounds)
                  + "; incl. delivery: "
                  + ", ".join(f"{r.delivered_ratio:.2f}" for r in rounds))
    print("\nratio = maild msgs/s / floor msgs/s, both in the same round.  CPU ms = CPU time of "
          "that process per "
          "message\n(Dovecot's and the sink's not included; maild's parse workers on a line of "
          "their own): it is steadier than wall time "
          "when other\nwork shares the machine.  load = 1-min load average just before.  peak = "
          "peak RSS (VmHWM)\nof the phase's own process, up to the end of that step; start = "
          "RSS after imports and set-up.")
    if latency is not None:
        ms = sorted(latency.samples_ms)
        print(f"\nacknowledgement latency (run_forever with IDLE, database of "
              f"N={latency.on_n:,}), from APPEND\nreturning to the ack at the sink, "
              f"{len(ms)} messages one at a time:")
        print(f"  median {fmt_ms(latency.median)}   p90 {fmt_ms(latency.p90)}   "
              f"min {fmt_ms(ms[0])}   max {fmt_ms(ms[-1])}   "
              f"daemon peak RSS {mib(latency.peak_rss_kib):.0f} MiB")
        if latency.misses:
            print(f"  MISSED: {latency.misses} of {len(ms)} got no acknowledgement within "
                  f"{latency.timeout:.0f} s (counted as infinitely late)")
    parent = mib(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    print(f"\n(this process, which holds the mix and runs the SMTP sink: peak RSS "
          f"{parent:.0f} MiB)")
    print("\nverdict against the targets (the median round):")
    for rounds in by_n.values():
        s = median_round(rounds)
        ingest, delivered = s.ratio, s.delivered_ratio
        cpu = s.floor["cpu_seconds"] / (s.maild["ingest_cpu_seconds"]
                                         + s.maild.get("workers_cpu_seconds", 0.0))
        print(f"  N={s.n:>6,}: maild/floor {ingest:.2f} committed "
              f"{verdict(ingest >= RATIO_TARGET)}, {delivered:.2f} incl. delivery "
              f"{verdict(delivered >= RATIO_TARGET)} (target >= {RATIO_TARGET}; "
              f"by CPU time {cpu:.2f})")
    if latency is not None:
        print(f"  median acknowledgement latency {fmt_ms(latency.median)} "
              f"{verdict(latency.median <= LATENCY_TARGET_MS)} "
              f"(target <= {LATENCY_TARGET_MS:.0f} ms)"
              + (f"; {latency.misses} of {len(latency.samples_ms)} acknowledgements never "
                 f"came within {latency.timeout:.0f} s" if latency.misses else ""))
    if args.json:
        print("\n" + json.dumps({
            "db": args.db, "rules": rules, "sla": sla,
            "sizes": [{**asdict(s), "floor_rate": s.floor_rate, "ingest_rate": s.ingest_rate,
                       "delivered_rate": s.delivered_rate} for s in sizes],
            "latency_ms": None if latency is None else {
                "median": none_if_inf(latency.median), "p90": none_if_inf(latency.p90),
                "misses": latency.misses,
                "samples": [none_if_inf(x) for x in latency.samples_ms]},
        }))


def _by_n(sizes: list[SizeResult]) -> dict[int, list[SizeResult]]:
    out: dict[int, list[SizeResult]] = {}
    for s in sizes:
        out.setdefault(s.n, []).append(s)
    return out


def none_if_inf(value: float) -> float | None:
    return None if math.isinf(value) else value


def example(name: str) -> str:
    path = EXAMPLE_CONFIG / name
    return str(path) if path.is_file() else "none"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.ingest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, nargs="+", default=[1000, 10000],
                   help="mailbox sizes (default: 1000 10000)")
    p.add_argument("--rounds", type=int, default=3, metavar="K",
                   help="rounds of floor and maild for each N, each on a fresh mailbox and "
                        "database; the median round is reported and judged (default 3)")
    p.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite",
                   help="sqlite: a file in a temporary directory; postgresql: a fresh database "
                        "through $MAILD_TEST_PG_DSN (default postgres@127.0.0.1:5432)")
    p.add_argument("--latency", type=int, default=30, metavar="K",
                   help="messages for the IDLE latency measurement; 0 skips it (default 30)")
    p.add_argument("--ack-timeout", type=float, default=30.0, metavar="SECONDS",
                   help="latency: how long to wait for one acknowledgement before counting "
                        "it as missed (default 30)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"],
                   help="maild's log level; its JSON log lines go to a file (default info, "
                        "as a deployment would run)")
    p.add_argument("--rules", default=example("rules.yaml"), metavar="PATH",
                   help="maild's rules file, 'none' for none (default: the example "
                        "config/rules.yaml, as a deployment would have rules)")
    p.add_argument("--sla", default=example("sla.yaml"), metavar="PATH",
                   help="maild's SLA file, 'none' for none (default: the example "
                        "config/sla.yaml when there is one)")
    p.add_argument("--seed", type=int, default=20261120, help="seed of the message mix")
    p.add_argument("--profile", metavar="DIR",
                   help="run maild's run_once under cProfile, write DIR/maild-N-DB.pstats and "
                        "print the top functions (inflates maild's timings)")
    p.add_argument("--json", action="store_true", help="also print the figures as JSON")
    p.add_argument("--keep", action="store_true",
                   help="keep the work directory (specs, results, maild's logs)")
    args = p.parse_args(argv)
    if args.latency == 1:
        p.error("--latency needs at least 2 messages (or 0)")
    if args.rounds < 1:
        p.error("--rounds needs at least 1")
    args.rules = None if args.rules == "none" else str(Path(args.rules).resolve())
    args.sla = None if args.sla == "none" else str(Path(args.sla).resolve())
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    return args


def _terminate(signum: int, _frame: object) -> None:
    # SIGTERM (and SIGINT, which a background job ignores) unwind like an exception, so
    # Dovecot, the sink, a running phase and a PostgreSQL database are cleaned up.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    workdir = Path(tempfile.mkdtemp(prefix="maild-bench-"))
    config = {k: v for k, v in (("rules", args.rules), ("sla", args.sla)) if v}
    runner = Runner(workdir, args.log_level, config)
    sizes: list[SizeResult] = []
    latency: LatencyResult | None = None
    try:
        with Dovecot() as dovecot, SmtpServer() as sink, contextlib.ExitStack() as stack:
            last: tuple[int, MailUser, str] | None = None
            for n in args.n:
                rounds, user, db_url = measure_size(n, args, dovecot, sink, runner, stack)
                sizes.extend(rounds)
                last = (n, user, db_url)
            if args.latency and last is not None:
                latency = measure_latency(args.latency, last[0], args, last[1], sink, runner,
                                          last[2])
    except BenchError as exc:
        print(f"\nbench: {exc}", file=sys.stderr)
        print(f"(work directory kept: {workdir})", file=sys.stderr)
        return 1
    except BaseException:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        raise
    report(args, sizes, latency)
    if args.keep:
        print(f"\nwork directory: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
