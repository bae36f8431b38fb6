"""Start-up cost of the read-only commands, against a floor measured in the same run.

    .venv/bin/python -m bench.cli                 # best of 7, SQLite, ten tickets
    .venv/bin/python -m bench.cli --runs 11

A fresh SQLite database (migrated by `maild.app.build`, not timed) gets ten tickets with a
customer message, a reply and an internal note each. Then each command runs as its own
process, as a person or a script would start it:

* **floor** (issue 20's): the same interpreter importing SQLAlchemy's ORM and reading one
  row of the tickets table;
* **Core floor**: the same with SQLAlchemy Core only. The read-only commands read through
  Core (maild/readonly.py), so this is what none of them can go below; it is printed to
  show what the commands cost beyond SQLAlchemy (their settings, their queries);
* `maild tickets list`, `maild tickets show REF --json`, `maild check`.

For each: the best of `--runs` wall-clock and CPU (user + system of the child) times, and the
ratio to the floor's. Figures are printed, never asserted. Target (issue 20): within 1.5x of
the floor.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from maild.app import build
from maild.clock import FixedClock
from maild.settings import load_settings
from maild.store.models import Message, Ticket
from tests.kit import SUPPORT, write_config

ROOT = Path(__file__).resolve().parent.parent
FLOOR = """
import sys
from sqlalchemy import create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column
class Base(DeclarativeBase):
    pass
class T(Base):
    __tablename__ = "tickets"
    id: Mapped[int] = mapped_column(primary_key=True)
    ref: Mapped[str]
    subject: Mapped[str]
with Session(create_engine(sys.argv[1])) as s:
    row = s.scalars(select(T).limit(1)).one()
    print(row.ref, row.subject)
"""
CORE_FLOOR = """
import sys
from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, select
t = Table("tickets", MetaData(), Column("id", Integer, primary_key=True), Column("ref", String),
          Column("subject", String))
with create_engine(sys.argv[1]).connect() as c:
    row = c.execute(select(t).limit(1)).one()
    print(row.ref, row.subject)
"""


def populate(config: Path, n: int) -> str:
    """`n` tickets with a message, a reply and a note each; the last ticket's reference."""
    at = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    app = build(load_settings(config), clock=FixedClock(at))
    try:
        with app.sessions() as s, s.begin():
            ref = ""
            for i in range(n):
                ref = f"T-BENCH{i}"
                t = Ticket(ref=ref, subject=f"Request {i}", requester=f"c{i}@example.com",
                           requester_name=f"Customer {i}", secret=f"{i:020x}", status="open",
                           level=1 + i % 3, priority="normal", language="en",
                           created_at=at + timedelta(minutes=i), updated_at=at, tags=[],
                           sla_pauses=[], sla_alerted=[])
                app.sla.refresh(t)
                s.add(t)
                for k, (direction, sender) in enumerate((
                        ("inbound", f"c{i}@example.com"), ("outbound", SUPPORT),
                        ("note", "anna@example.test"))):
                    s.add(Message(ticket=t, direction=direction, from_addr=sender,
                                  to_addrs=SUPPORT, subject=f"Request {i}",
                                  message_id=f"m{i}.{k}@example.test",
                                  body_text=f"Text {k} of request {i}.\n" * 5,
                                  created_at=at + timedelta(minutes=i + k)))
        return ref
    finally:
        app.dispose()


def best(argv: list[str], runs: int) -> tuple[float, float]:
    """Best wall-clock and best CPU seconds (user + system of the child) of `runs` runs."""
    walls, cpus = [], []
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "0"}
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(argv, capture_output=True, env=env, check=False)
        walls.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed: {done.stderr.decode()[-500:]}")
    return min(walls), min(cpus)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cli", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--tickets", type=int, default=10)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="maild-bench-cli-") as tmp:
        folder = Path(tmp)
        url = f"sqlite:///{folder / 'maild.db'}"
        (folder / "rules.yaml").write_bytes((ROOT / "config" / "rules.yaml").read_bytes())
        (folder / "sla.yaml").write_bytes((ROOT / "config" / "sla.yaml").read_bytes())
        config = write_config(folder, db_url=url, rules="rules.yaml", sla="sla.yaml")
        ref = populate(config, args.tickets)
        maild = [sys.executable, "-m", "maild", "-c", str(config)]
        cases = {
            "floor (SQLAlchemy ORM, one row)": [sys.executable, "-c", FLOOR, url],
            "Core floor (no ORM, one row)": [sys.executable, "-c", CORE_FLOOR, url],
            "maild tickets list": [*maild, "tickets", "list"],
            "maild tickets show REF --json": [*maild, "tickets", "show", ref, "--json"],
            "maild check": [*maild, "check"],
        }
        print(f"best of {args.runs}, {args.tickets} tickets, SQLite, {sys.executable}")
        print(f"{'command':<34} {'wall s':>8} {'CPU s':>8} {'wall x':>7} {'CPU x':>7}")
        floor: tuple[float, float] | None = None
        for name, command in cases.items():
            wall, cpu = best(command, args.runs)
            floor = floor or (wall, cpu)
            print(f"{name:<34} {wall:>8.3f} {cpu:>8.3f} {wall / floor[0]:>7.2f} "
                  f"{cpu / floor[1]:>7.2f}")
        print("target: within 1.5x of the floor")
    return 0


if __name__ == "__main__":
    sys.exit(main())
