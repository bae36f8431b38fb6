"""Report benchmark: `maild report --json` for a month and a year over a large desk, against a
floor measured in the same run.

    .venv/bin/python -m bench.report                           # 1,000,000 tickets, both DBs
    .venv/bin/python -m bench.report --tickets 100000 --db postgresql
    .venv/bin/python -m bench.report --help

The desk (built once per size and database, then kept: `--cache` for SQLite files, a
PostgreSQL database named `maild_bench_report_<N>_v<version>`; `--rebuild` builds anew) is a
seeded, realistic mix over two years ending 2026-12-01: N tickets (customer service half,
technical, accounting, contracts; levels 1-3; 40 agents and unassigned ones; two mailboxes;
standard, premium and urgent SLA policies), their inbound messages (a customer follow-up for
three in ten) and outbound replies, and their events: created, the first reply or canned
answer sent (85 %), resolutions, closings, escalations, reopenings, CSAT surveys and
ratings, with SLA warnings and breaches in `sla_alerts`: about 5 messages and events a
ticket... of which 1.75 messages and 3.4 events, so 1,000,000 tickets make some 5,150,000
rows. Loaded with COPY (PostgreSQL) or one prepared INSERT executed for many rows (SQLite),
then ANALYZE.

Timed, warm (best of `--rounds`), in this process:

* **floor**: `SELECT t.department, count(*)` of the tickets created in the period (their
  `created` events joined to the tickets), grouped by department: the one read a report
  cannot do without;
* **maild**: `maild report --json --from ... --period month|year` through `maild.cli.main`
  (configuration, database opened and migration head checked, every query, the figures with
  business hours, the JSON written to a discarded stdout);
* also the same command as a new process (interpreter start and imports included), once.

Target (issue 15): a month over 1,000,000 tickets under 3 s on PostgreSQL, within 10x the
floor. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql as pgsql
from sqlalchemy import text

from maild.cli import main
from maild.reports.query import VOLUME_KINDS
from maild.store import db
from tests.kit import write_config
from tests.servers.postgres import ADMIN_DSN_ENV, DEFAULT_ADMIN_DSN, PgDatabase

VERSION = 2  # of the generated desk: a change to the mix makes the caches stale
END = datetime(2026, 12, 1, tzinfo=UTC)
SPAN = timedelta(days=730)
CHUNK = 50_000  # tickets generated and loaded at a time
DEPARTMENTS = (("customer_service", 0.5), ("technical", 0.3), ("accounting", 0.12),
               ("contracts", 0.08))
AGENTS = [f"agent{i:02d}@example.test" for i in range(40)]
REPO = Path(__file__).resolve().parent.parent

TICKET_COLUMNS = ("id", "ref", "subject", "requester", "requester_name", "status", "level",
                  "department", "priority", "language", "mailbox", "secret", "assignee",
                  "created_at", "updated_at", "first_response_at", "resolved_at", "closed_at",
                  "tags", "sla_policy", "sla_pauses", "sla_alerted")
MESSAGE_COLUMNS = ("id", "ticket_id", "direction", "from_addr", "from_name", "to_addrs",
                   "subject", "body_text", "automatic", "created_at", "date")
EVENT_COLUMNS = ("id", "ticket_id", "at", "kind", "data")
ALERT_COLUMNS = ("id", "ticket_id", "key", "target", "kind", "policy", "due_at", "raised_at")


class Desk:
    """The generated rows of one chunk of tickets, ids continuing from the chunk before."""

    def __init__(self) -> None:
        self.ids = {"messages": 0, "events": 0, "sla_alerts": 0}
        self.counts = dict.fromkeys(("tickets", "messages", "events", "sla_alerts"), 0)

    def _id(self, table: str) -> int:
        self.ids[table] += 1
        return self.ids[table]

    def chunk(self, rng: random.Random, first: int, created: Sequence[datetime]
              ) -> dict[str, list[tuple[Any, ...]]]:
        rows: dict[str, list[tuple[Any, ...]]] = {
            "tickets": [], "messages": [], "events": [], "sla_alerts": []}
        names = [d for d, _ in DEPARTMENTS]
        weights = [w for _, w in DEPARTMENTS]
        for offset, c in enumerate(created):
            self._ticket(rng, first + offset, c, rng.choices(names, weights)[0], rows)
        for table, found in rows.items():
            self.counts[table] += len(found)
        return rows

    def _ticket(  # noqa: C901 - one ticket's life, step by step, reads best in one place
            self, rng: random.Random, tid: int, c: datetime, department: str,
            rows: dict[str, list[tuple[Any, ...]]]) -> None:
        ev, msg = rows["events"], rows["messages"]
        r = rng.random()
        level = 1 if r < 0.85 else 2 if r < 0.97 else 3
        priority, policy = (("urgent", "urgent") if rng.random() < 0.05 else
                            ("normal", "premium") if rng.random() < 0.1 else
                            ("normal", "standard"))
        assignee = None if rng.random() < 0.15 else rng.choice(AGENTS)
        mailbox = "billing" if department == "accounting" and rng.random() < 0.7 \
            else "support"
        customer = f"c{rng.randrange(400_000)}@example.test"

        def event(at: datetime, kind: str, **data: Any) -> None:
            if at < END:
                ev.append((self._id("events"), tid, at, kind, json.dumps(data)))

        def message(at: datetime, direction: str) -> None:
            if at < END:
                msg.append((self._id("messages"), tid, direction, customer, "", "support@x",
                            "Subject", "text", None, at, at))

        event(c, "created", via="email")
        message(c, "inbound")
        status = "new"
        first = resolved = closed = None
        if rng.random() < 0.3:
            message(c + timedelta(hours=rng.lognormvariate(2.5, 1.0)), "inbound")
        if rng.random() < 0.05:
            self._alert(rows, tid, policy, "warn", "first_response",
                        c + timedelta(hours=rng.uniform(1, 6)))
        if rng.random() < 0.08:
            self._alert(rows, tid, policy, "breach", "first_response",
                        c + timedelta(hours=rng.uniform(2, 10)))
        if rng.random() < 0.08 and level < 3:
            event(c + timedelta(minutes=rng.uniform(10, 300)), "escalated", old=level,
                  new=level + 1, by="agent")
            level += 1
        old = END - c > timedelta(days=14)
        if rng.random() < 0.85:
            first = c + timedelta(hours=rng.lognormvariate(1.1, 1.2))
            event(first, "answer.sent" if rng.random() < 0.15 else "reply.sent")
            message(first, "outbound")
            status = "open"
            if rng.random() < (0.995 if old else 0.6):
                resolved = first + timedelta(hours=rng.lognormvariate(2.8, 1.3))
                event(resolved, "status.changed", old="open", new="resolved")
                status = "resolved"
                if rng.random() < 0.04:
                    again = resolved + timedelta(hours=rng.uniform(2, 100))
                    event(again, "status.changed", old="resolved", new="open")
                    resolved = again + timedelta(hours=rng.lognormvariate(2, 1))
                    event(resolved, "status.changed", old="open", new="resolved")
                if rng.random() < 0.1:
                    agent = {"agent": assignee, "level": level, "department": department}
                    event(resolved + timedelta(days=1), "csat.survey_queued", to=customer,
                          **agent)
                    if rng.random() < 0.4:
                        event(resolved + timedelta(days=1, hours=rng.uniform(1, 40)),
                              "csat.rated", score=rng.choice((1, 2, 3, 4, 4, 5, 5, 5)),
                              comment="", **agent)
                if rng.random() < 0.4:
                    closed = resolved + timedelta(days=7)
                    event(closed, "status.changed", old="resolved", new="closed")
                    status = "closed"
        elif first is None and old:
            # never answered (spam, a customer who solved it alone): closed by an agent
            closed = c + timedelta(days=rng.uniform(1, 14))
            event(closed, "status.changed", old="new", new="closed")
            status = "closed"
        for at in (first, resolved, closed):
            if at is not None and at >= END:
                status = "open"
        rows["tickets"].append((
            tid, f"T-{tid:07d}", "Subject", customer, "", status, level, department, priority,
            "en", mailbox, "s", assignee, c, c, first if first and first < END else None,
            resolved if resolved and resolved < END else None,
            closed if closed and closed < END else None, "[]", policy, "[]", "[]"))

    def _alert(self, rows: dict[str, list[tuple[Any, ...]]], tid: int, policy: str, kind: str,
               target: str, at: datetime) -> None:
        if at < END:
            rows["sla_alerts"].append((self._id("sla_alerts"), tid, f"{target}:{kind}:1",
                                       target, kind, policy, at, at))


def _sqlite_text(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(" ", "microseconds")[:26]
    return value


COLUMNS = {"tickets": TICKET_COLUMNS, "messages": MESSAGE_COLUMNS, "events": EVENT_COLUMNS,
           "sla_alerts": ALERT_COLUMNS}


def build(url: str, n: int) -> dict[str, int]:
    """Migrate the empty database at `url` and load the desk into it."""
    engine = db.make_engine(url)
    db.upgrade(engine)
    rng = random.Random(15)
    seconds = SPAN.total_seconds()
    created = sorted(END - SPAN + timedelta(seconds=rng.uniform(0, seconds)) for _ in range(n))
    desk = Desk()
    raw = engine.raw_connection()
    pg = engine.dialect.name == "postgresql"
    try:
        for first in range(0, n, CHUNK):
            rows = desk.chunk(rng, first + 1, created[first:first + CHUNK])
            if pg:
                conn = raw.driver_connection
                assert conn is not None
                with conn.cursor() as cur:
                    for table, found in rows.items():
                        names = ", ".join(COLUMNS[table])
                        with cur.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                            for row in found:
                                copy.write_row(row)
                raw.commit()
            else:
                cur = raw.cursor()
                cur.execute("BEGIN")
                for table, found in rows.items():
                    names = ", ".join(COLUMNS[table])
                    marks = ", ".join("?" * len(COLUMNS[table]))
                    cur.executemany(f"INSERT INTO {table} ({names}) VALUES ({marks})",
                                    [tuple(_sqlite_text(v) for v in row) for row in found])
                cur.execute("COMMIT")
            print(f"  loaded {min(first + CHUNK, n):,} tickets", file=sys.stderr, flush=True)
    finally:
        raw.close()
    with engine.begin() as conn:
        if pg:
            for table in COLUMNS:
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                  f"(SELECT max(id) FROM {table}))"))
        conn.execute(text("ANALYZE"))
        conn.execute(text("INSERT INTO kv (key, value) VALUES ('bench_report', :v)"),
                     {"v": json.dumps(desk.counts)})
    engine.dispose()
    return desk.counts


def _counts(url: str) -> dict[str, int] | None:
    engine = db.make_engine(url)
    try:
        with engine.connect() as conn:
            value = conn.execute(text("SELECT value FROM kv WHERE key = 'bench_report'")).scalar()
    except Exception:
        value = None
    finally:
        engine.dispose()
    return json.loads(value) if value else None


@contextlib.contextmanager
def database(kind: str, n: int, cache: Path, rebuild: bool, admin_dsn: str
             ) -> Iterator[tuple[str, dict[str, int]]]:
    """The cached desk's URL, built first where missing or stale."""
    if kind == "sqlite":
        cache.mkdir(parents=True, exist_ok=True)
        path = cache / f"report-{n}-v{VERSION}.db"
        url = f"sqlite:///{path}"
        if rebuild or _counts(url) is None:
            for stale in cache.glob(f"{path.name}*"):
                stale.unlink()
            print(f"building the SQLite desk in {path}", file=sys.stderr)
            build(url, n)
    else:
        database = PgDatabase(f"maild_bench_report_{n}_v{VERSION}", admin_dsn)
        url = database.url
        if rebuild or _counts(url) is None:
            print(f"building the PostgreSQL desk {database.name}", file=sys.stderr)
            database.drop()
            with psycopg.connect(admin_dsn, autocommit=True) as conn:
                conn.execute(pgsql.SQL("CREATE DATABASE {}").format(
                    pgsql.Identifier(database.name)))
            build(url, n)
    counts = _counts(url)
    assert counts is not None
    yield url, counts


def best(rounds: int, work: Callable[[], None]) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


FLOORS = {
    # The tickets created in the period, counted by department: the least any report reads.
    "created": "SELECT t.department, count(*) FROM events e JOIN tickets t "
               "ON t.id = e.ticket_id WHERE e.kind = 'created' AND e.at >= :s AND e.at < :e "
               "GROUP BY t.department",
    # Every row the report's volume counts (the period's created, status, sent events and
    # inbound messages), each with its ticket's department, counted in one pass: the index
    # scan and the join the report cannot avoid.
    "rows": "SELECT t.department, count(*) FROM ("
            " SELECT ticket_id FROM events WHERE kind IN"
            f" ({', '.join(repr(kind) for kind in VOLUME_KINDS)})"
            " AND at >= :s AND at < :e"
            " UNION ALL SELECT ticket_id FROM messages WHERE direction = 'inbound'"
            " AND created_at >= :s AND created_at < :e) x"
            " JOIN tickets t ON t.id = x.ticket_id GROUP BY t.department",
}


def floor(url: str, sql: str, start: datetime, end: datetime) -> Callable[[], None]:
    engine = db.make_engine(url)
    query = text(sql)
    sqlite = url.startswith("sqlite")

    def run() -> None:
        s, e = (_sqlite_text(start), _sqlite_text(end)) if sqlite else (start, end)
        with engine.connect() as conn:
            conn.execute(query, {"s": s, "e": e}).all()
    return run


def report(config: Path, argv: list[str]) -> Callable[[], None]:
    def run() -> None:
        with contextlib.redirect_stdout(io.StringIO()) as out:
            status = main(["-c", str(config), "report", "--json", *argv])
        if status != 0:
            raise RuntimeError(f"maild report exited {status}")
        json.loads(out.getvalue())
    return run


def as_process(config: Path, argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([str(REPO / ".venv/bin/maild"), "-c", str(config), "report", "--json",
                    *argv], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(kind: str, args: argparse.Namespace) -> None:
    with database(kind, args.tickets, args.cache, args.rebuild, args.admin_dsn) as (url, counts), \
            tempfile.TemporaryDirectory() as folder:
        config = write_config(Path(folder), db_url=url, sla=str(REPO / "config/sla.yaml"),
                              timezone="Europe/Berlin")
        print(f"\n{kind}: {counts['tickets']:,} tickets, {counts['messages']:,} messages, "
              f"{counts['events']:,} events, {counts['sla_alerts']:,} SLA alerts")
        print(f"{'period':<8}{'floor s':>9}{'rows s':>8}{'maild s':>9}{'ratio':>7}"
              f"{'/ rows':>8}{'process s':>11}")
        tz = ZoneInfo("Europe/Berlin")
        for name, first, unit in (("month", datetime(2026, 11, 1, tzinfo=tz), "month"),
                                  ("year", datetime(2025, 12, 1, tzinfo=tz), "year")):
            if name not in args.periods:
                continue
            end = datetime(2026, 12, 1, tzinfo=tz)
            argv = ["--from", first.date().isoformat(), "--period", unit]
            run = report(config, argv)
            run()  # warm: caches, imports
            f = best(args.rounds, floor(url, FLOORS["created"], first, end))
            r = best(args.rounds, floor(url, FLOORS["rows"], first, end))
            m = best(args.rounds, run)
            p = as_process(config, argv)
            print(f"{name:<8}{f:>9.3f}{r:>8.3f}{m:>9.3f}{m / f:>7.1f}{m / r:>8.1f}{p:>11.3f}",
                  flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tickets", type=int, default=1_000_000)
    p.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--rounds", type=int, default=3, help="timed runs, the best counting")
    p.add_argument("--cache", type=Path,
                   default=Path(tempfile.gettempdir()) / "maild-bench-report",
                   help="where the SQLite desks are kept between runs")
    p.add_argument("--rebuild", action="store_true", help="build the desks anew")
    p.add_argument("--periods", nargs="+", choices=["month", "year"],
                   default=["month", "year"], help="which periods to time")
    p.add_argument("--admin-dsn", default=os.environ.get(ADMIN_DSN_ENV, DEFAULT_ADMIN_DSN))
    return p.parse_args(argv)


def run(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    kinds = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    print(f"maild report benchmark, {args.tickets:,} tickets over two years to "
          f"{END.date()}; best of {args.rounds}; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for kind in kinds:
        measure(kind, args)
    return 0


if __name__ == "__main__":
    sys.exit(run())
