"""The daemon's own CPU time per message in the pipeline, without IMAP or SMTP.

    .venv/bin/python -m bench.pipeline                 # 1,000 messages, 3 rounds
    .venv/bin/python -m bench.pipeline --n 2000 --rounds 5

`bench.ingest` measures the whole path against Dovecot; this one isolates what happens
inside the daemon's process, where a few tenths of a millisecond a message decide that
ratio. The messages are `bench/mailmix.py`'s mix, handed to `Pipeline.process_batch` a batch
of 200 at a time, each batch submitted for parsing before the one before it is written (as
the mailbox worker does), on a fresh SQLite database with the shipped rules and SLA
policies, logging JSON lines to a file.

* **floor**: every message parsed beforehand; what is timed is the pipeline alone, the
  daemon's thread with nothing to hand over. No way of parsing in other processes can make
  the daemon's side cheaper than this.
* **workers**: parsing in the parse workers (`daemon.parse_workers`, default one per spare
  CPU), as the daemon runs: the daemon's CPU time, its working thread's, the workers' and
  the wall time. The ratio floor/daemon says how much of the daemon's time the hand-over
  costs: the pipes of `maild/pipeline/workers.py` were written when this measurement
  showed that `ProcessPoolExecutor`'s threads cost the working thread a fifth of its time
  (on one machine: floor 0.83 ms a message, with the pipes 1.05, with the executor 1.28).

Figures are printed, never asserted; the best of `--rounds` counts.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.mailmix import build_mix
from bench.phases import NO_BURST_LIMITS, _process_figures
from maild import logs
from maild.app import App, build
from maild.domain import Fetched, SourceRef
from maild.pipeline.prepare import PreparedBatch
from maild.settings import load_settings
from tests.kit import write_config

ROOT = Path(__file__).resolve().parent.parent
BATCH = 200


@dataclass(frozen=True)
class Figures:
    process_ms: float  # the daemon's CPU time a message, all its threads
    thread_ms: float  # its working thread's
    wall_ms: float
    workers_ms: float  # the parse workers' CPU time a message


def _app(folder: Path, workers: int) -> App:
    path = write_config(folder, db_url=f"sqlite:///{folder}/maild.db", safety=NO_BURST_LIMITS,
                        rules=str(ROOT / "config" / "rules.yaml"),
                        sla=str(ROOT / "config" / "sla.yaml"),
                        daemon={"parse_workers": workers})
    return build(load_settings(path))


def _workers_cpu(pids: Sequence[int]) -> float:
    return sum(_process_figures(pid)[0] for pid in pids)


def _timed(app: App, batches: list[list[Fetched]],
           submit: Callable[[list[Fetched]], PreparedBatch]) -> Figures:
    pipeline = app.pipeline
    pids = pipeline.parse_worker_pids()
    gc.collect()
    gc.freeze()  # as `maild run` does after start-up
    workers0 = _workers_cpu(pids)
    cpu0, thread0, wall0 = time.process_time(), time.thread_time(), time.perf_counter()
    ahead = submit(batches[0])
    for index, batch in enumerate(batches):
        current = ahead
        if index + 1 < len(batches):
            ahead = submit(batches[index + 1])  # parsed while this one is written
        pipeline.process_batch(batch, current)
    n = sum(len(b) for b in batches)
    figures = Figures(process_ms=1000 * (time.process_time() - cpu0) / n,
                      thread_ms=1000 * (time.thread_time() - thread0) / n,
                      wall_ms=1000 * (time.perf_counter() - wall0) / n,
                      workers_ms=1000 * (_workers_cpu(pids) - workers0) / n)
    gc.unfreeze()
    return figures


def floor_round(batches: list[list[Fetched]], folder: Path) -> Figures:
    app = _app(folder, workers=0)
    try:
        # Parsed here, before the clock starts: a PreparedBatch keeps its results, and
        # hands them out again to the pass that processes it.
        ready = {id(b): app.pipeline.prepare(b) for b in batches}
        for prepared in ready.values():
            for _ in prepared.results():
                pass
        return _timed(app, batches, lambda batch: ready[id(batch)])
    finally:
        app.dispose()


def workers_round(batches: list[list[Fetched]], folder: Path, workers: int) -> Figures:
    app = _app(folder, workers=workers)
    try:
        app.pipeline.start(wait=True)  # started with the daemon: not timed
        return _timed(app, batches, app.pipeline.prepare)
    finally:
        app.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="messages (default 1,000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; the best counts")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                        help="parse workers (default: CPUs - 1)")
    args = parser.parse_args(argv)
    mix = build_mix(args.n)
    items = [Fetched(SourceRef("support", "INBOX", 1, i + 1), raw)
             for i, raw in enumerate(mix.messages)]
    batches = [items[i:i + BATCH] for i in range(0, len(items), BATCH)]
    floors, pooled = [], []
    with tempfile.TemporaryFile("w") as log_file, contextlib.redirect_stderr(log_file):
        logs.configure("info", json=True)  # the daemon's JSON lines, as to journald
        for _ in range(args.rounds):
            with tempfile.TemporaryDirectory(prefix="maild-bench-") as folder:
                floors.append(floor_round(batches, Path(folder)))
            with tempfile.TemporaryDirectory(prefix="maild-bench-") as folder:
                pooled.append(workers_round(batches, Path(folder), args.workers))
    floor = min(floors, key=lambda f: f.process_ms)
    best = min(pooled, key=lambda f: f.wall_ms)
    print(f"maild pipeline, {args.n:,} messages of the bench mix, batches of {BATCH}, "
          f"SQLite, best of {args.rounds}; ms a message")
    print(f"  floor (parsed beforehand): daemon CPU {floor.process_ms:.3f}  "
          f"(rounds {', '.join(f'{f.process_ms:.3f}' for f in floors)})")
    print(f"  with {args.workers} parse worker(s):  daemon CPU {best.process_ms:.3f}, "
          f"its working thread {best.thread_ms:.3f}, wall {best.wall_ms:.3f}, "
          f"workers' CPU {best.workers_ms:.3f}  "
          f"(wall by round {', '.join(f'{f.wall_ms:.3f}' for f in pooled)})")
    print(f"  floor / daemon CPU: {floor.process_ms / best.process_ms:.2f}  "
          "(1.00: handing the parsing over costs the daemon nothing)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
