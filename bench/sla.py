"""SLA benchmark: one SLA pass over N open tickets, against a floor measured in the same run.

    .venv/bin/python -m bench.sla                          # N = 100,000 and 1,000,000; both DBs
    .venv/bin/python -m bench.sla --n 100000 --db sqlite
    .venv/bin/python -m bench.sla --help                   # every option

For each database and N, a fresh database (SQLite in a temporary directory, or a new
PostgreSQL database) is migrated by `maild.app.build` and N open tickets are bulk-loaded
(not timed; COPY on PostgreSQL, then VACUUM ANALYZE; one prepared INSERT executed for many
rows on SQLite, then a WAL checkpoint). Their SLA columns are computed by maild's own policy
code (`config/sla.yaml` unless `--sla`), so the data is what a daemon passing every minute
would have left behind:

* T0 - 1 min, the previous pass; T0 (a Wednesday, 10:00 in Berlin), the light pass:
  `--due` (default 0.1 %) of the tickets have a warning or breach that fell due in the minute
  between the two;
* T1 = T0 + 1 min, the heavy pass: `--heavy` (default 1 %) fell due in that minute;
* every other ticket has no deadline in (T0 - 1 min, T1]; its alerts so far are in
  `sla_alerted` (and, as the daemon would have left them, in `sla_alerts`).

At each instant, with maild's JSON log going to a file as it would to journald:

* **floor**: what no implementation can avoid, the due tickets read through the index on
  `sla_next_check_at` (every column, with SQLAlchemy Core's type processing), best of three;
  and the bare `count(*)` of due tickets;
* **contrast**: the ids of all open tickets (`status IN ('new', 'open')`), the least a pass
  that loads every open ticket would read, best of two;
* **maild**: one `app.sla_pass()`, then a second pass right after at the same instant (it
  finds only what the first left due: tickets whose breach moved them to another policy).

Figures are printed, never asserted. Target (issue): one pass over 1,000,000 open tickets on
PostgreSQL under 1 s.

`--reuse` (PostgreSQL) keeps each loaded database as a template and clones it in later runs
with the same data options: a run of the 1,000,000 case then takes seconds, not minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import hashlib
import io
import json
import os
import pstats
import random
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql as pg_sql
from sqlalchemy import Engine, bindparam, event, func, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from maild import logs
from maild.app import App, build
from maild.businesstime.calendar import subtract_business_time
from maild.clock import FixedClock
from maild.settings import load_settings
from maild.sla.engine import SlaEngine, load_sla
from maild.sla.policy import Deadline, Policy, choose, deadlines
from maild.sla.retime import OPEN as RETIMED
from maild.sla.retime import READ as RETIME_COLUMNS
from maild.sla.retime import retime_if_changed
from maild.store.models import Event, Outbox, Ticket
from maild.store.tables import UtcDateTime
from tests.kit import SUPPORT, write_config
from tests.servers.postgres import ADMIN_DSN_ENV, DEFAULT_ADMIN_DSN, PgDatabase

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SLA = ROOT / "config" / "sla.yaml"
DEFAULT_RULES = ROOT / "config" / "rules.yaml"
TARGET_N = 1_000_000
TARGET_SECONDS = 1.0
T0 = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # Wednesday 10:00 in Berlin: office hours
MAX_AGE = timedelta(days=60)
CHUNK = 20_000
POOL = 5_000  # distinct SLA states of the tickets that are not due (shared by many rows)
DUE_POOL = 2_000  # distinct SLA states of the due tickets (each row is still checked alone)
OPEN = ("new", "open")

ROW_COLUMNS = ["id", "ref", "subject", "requester", "secret"]  # the rest: from the profile
PROFILE_COLUMNS = [c.name for c in Ticket.__table__.columns
                   if c.name not in ROW_COLUMNS and c.name != "linked_ticket_id"]
ALERT_COLUMNS = ["ticket_id", "key", "target", "kind", "policy", "due_at", "raised_at"]
MESSAGE_COLUMNS = ["ticket_id", "direction", "message_id", "from_addr", "from_name",
                   "to_addrs", "subject", "date", "body_text", "raw", "created_at"]
JSON_COLUMNS = {"tags", "sla_pauses", "sla_alerted"}
SUBJECTS = ("Login does not work", "Rechnung 2026-11 fehlt", "Server unreachable since 9:00",
            "Bitte Vertrag kündigen", "Password reset", "Mails bounce with 550",
            "Upgrade to the premium plan", "SSL certificate expired", "Backup restore",
            "DNS records for new domain", "Zahlung doppelt abgebucht", "API returns 500")
DEPARTMENTS = (None, None, "customer_service", "technical", "technical", "accounting",
               "contracts")
AGENTS = ("anna@example.test", "ben@example.test", "clara@example.test", "david@example.test")
BODY = ("Hello,\n\nsince this morning our customers cannot log in to the portal. "
        "The error says 'session expired'. Please have a look.\n\nRegards\n")


class BenchError(RuntimeError):
    """The data or maild did not behave as the benchmark requires."""


# --------------------------------------------------------------------------------------------
# Data: realistic open tickets whose SLA state maild's own policy code computed
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Profile:
    """Everything of a ticket that decides its SLA state, and that state."""

    fields: dict[str, Any]  # ticket columns except the per-ticket ones (ref, secret, ...)
    history: tuple[tuple[str, str, str, str, datetime], ...]  # alerts raised before


@dataclass
class Instants:
    previous: datetime  # the pass before the light one
    light: datetime  # T0
    heavy: datetime  # T1


class Profiles:
    """Random ticket facts, and their SLA state at an instant, computed by maild."""

    def __init__(self, sla: SlaEngine, rng: random.Random, at: Instants) -> None:
        self.sla = sla
        self.rng = rng
        self.at = at

    def facts(self) -> dict[str, Any]:
        rng, now = self.rng, self.at.previous
        age = min(timedelta(days=rng.expovariate(1 / 7)), MAX_AGE) + timedelta(minutes=2)
        created = (now - age).replace(microsecond=0)
        status = "new" if rng.random() < 0.35 else "open"
        first = awaiting = None
        if status == "open":
            first = created + (now - created) * rng.uniform(0.02, 0.5)
            if rng.random() < 0.3:
                awaiting = first + (now - first) * rng.uniform(0.05, 0.95)
        return {
            "status": status,
            "priority": rng.choices(("low", "normal", "high", "urgent"), (15, 65, 15, 5))[0],
            "level": rng.choices((1, 2, 3), (70, 25, 5))[0],
            "department": rng.choice(DEPARTMENTS),
            "tags": ["vip"] if rng.random() < 0.02 else [],
            "assignee": rng.choice(AGENTS) if status == "open" and rng.random() < 0.3 else None,
            "language": rng.choice(("en", "de")),
            "created_at": created, "first_response_at": first, "awaiting_reply_since": awaiting,
            "requester": (f"user{rng.randrange(5000)}@bigcorp.example" if rng.random() < 0.1
                          else f"customer{rng.randrange(300_000)}@example.com"),
        }

    def found(self, facts: dict[str, Any]) -> tuple[Policy | None, list[Deadline]]:
        t = self._ticket(facts)
        the_facts = self.sla.facts(t)
        policy = choose(self.sla.config.policies, the_facts)
        return policy, (deadlines(policy, the_facts) if policy else [])

    def state(self, facts: dict[str, Any], as_of: datetime) -> Profile:
        """The ticket as the pass at `as_of` leaves it: every deadline up to then alerted."""
        policy, found = self.found(facts)
        done = sorted((d for d in found if d.at <= as_of), key=lambda d: d.at)
        t = self._ticket(facts)
        t.sla_alerted = [d.key for d in done]
        self.sla.refresh(t)
        row = {**facts, **{c: getattr(t, c) for c in (
            "sla_policy", "sla_first_response_due", "sla_next_response_due",
            "sla_resolution_due", "sla_next_check_at", "sla_alerted")}}
        row |= {"requester_name": "", "mailbox": "support", "resolved_at": None,
                "closed_at": None, "sla_pauses": []}
        row["updated_at"] = max(v for v in (facts["created_at"], facts["first_response_at"],
                                            facts["awaiting_reply_since"]) if v is not None)
        name = policy.name if policy else ""
        return Profile(row, tuple((d.key, d.target, d.kind, name, d.at) for d in done))

    def quiet(self) -> Profile:
        """A ticket with nothing due between the previous pass and T1."""
        while True:
            facts = self.facts()
            _, found = self.found(facts)
            if not any(self.at.previous < d.at <= self.at.heavy for d in found):
                return self.state(facts, self.at.light)

    def due_in(self, lo: datetime, hi: datetime) -> Profile:
        """A ticket with a warning or breach in (lo, hi], as the pass at `lo` left it."""
        while True:
            facts = self.facts()
            policy, found = self.found(facts)
            if policy is None or not found:
                continue
            d = self.rng.choice(found)
            target = getattr(policy.spec, d.target)
            duration = target * policy.spec.warn_at if d.kind == "warn" else target
            at = hi - (hi - lo) * self.rng.random()
            shift = subtract_business_time(policy.calendar, at, duration) - d.start
            moved = {k: (v + shift if isinstance(v, datetime) else v) for k, v in facts.items()}
            if max(v for v in moved.values() if isinstance(v, datetime)) > lo \
                    or moved["created_at"] < lo - MAX_AGE:
                continue
            _, found = self.found(moved)
            if any(lo < x.at <= hi for x in found):
                return self.state(moved, lo)

    def _ticket(self, facts: dict[str, Any]) -> Ticket:
        keep = {"status", "priority", "level", "department", "tags", "requester", "created_at",
                "first_response_at", "awaiting_reply_since", "assignee"}
        return Ticket(**{k: v for k, v in facts.items() if k in keep},
                      sla_pauses=[], sla_alerted=[])


@dataclass
class Loaded:
    tickets: int
    due_light: int
    due_heavy: int
    alerts_before: int
    messages: int
    seconds: float


class Loader:
    """Bulk-loads rows given as tuples: COPY on PostgreSQL, one prepared INSERT executed for
    many rows on SQLite. On SQLite values are converted by the columns' own SQLAlchemy types
    (as the ORM would store them); `convert` is called once per shared profile, not per row."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.pg = engine.dialect.name == "postgresql"
        self._processors: dict[tuple[str, tuple[str, ...]], list[Any]] = {}

    def convert(self, table: str, columns: Sequence[str], values: Sequence[Any]) -> tuple[Any, ...]:
        key = (table, tuple(columns))
        if key not in self._processors:
            types, dialect = Ticket.metadata.tables[table].c, self.engine.dialect
            self._processors[key] = [
                (json.dumps if c in JSON_COLUMNS else None) if self.pg
                else types[c].type.dialect_impl(dialect).bind_processor(dialect)
                for c in columns]
        return tuple(v if p is None else p(v)
                     for p, v in zip(self._processors[key], values, strict=True))

    def load(self, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> None:
        if not rows:
            return
        raw = self.engine.raw_connection()
        try:
            if self.pg:
                pg = raw.driver_connection
                assert pg is not None
                sql = f"COPY {table} ({', '.join(columns)}) FROM STDIN"
                with pg.cursor() as cur, cur.copy(sql) as copy:
                    for row in rows:
                        copy.write_row(row)
                raw.commit()
            else:  # pysqlite is in autocommit mode under maild: one explicit transaction
                cur = raw.cursor()
                cur.execute("BEGIN")
                cur.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
                                f"({', '.join('?' * len(columns))})", rows)
                cur.execute("COMMIT")
        finally:
            raw.close()

    def finish(self) -> None:
        raw = self.engine.raw_connection()
        try:
            cur = raw.cursor()
            if self.pg:
                for table in ("tickets", "sla_alerts", "messages"):
                    cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                                f"coalesce(max(id), 1)) FROM {table}")
                raw.commit()
                pg = raw.driver_connection
                assert pg is not None
                pg.autocommit = True
                pg.execute("VACUUM ANALYZE")  # as autovacuum would have done by now
                pg.autocommit = False
            else:
                cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            raw.close()


def load_tickets(app: App, n: int, at: Instants, args: argparse.Namespace) -> Loaded:
    """N open tickets, `args.due` % due at T0 and `args.heavy` % more at T1 (not timed)."""
    t0 = time.perf_counter()
    rng = random.Random(args.seed)
    profiles = Profiles(app.sla, rng, at)
    n_light = round(n * args.due / 100)
    n_heavy = round(n * args.heavy / 100)
    print(f"  computing SLA states with maild's policy code ({POOL:,} + due pools) ...",
          flush=True)
    quiet = [profiles.quiet() for _ in range(min(POOL, n))]
    light = [profiles.due_in(at.previous, at.light) for _ in range(min(DUE_POOL, n_light))]
    heavy = [profiles.due_in(at.light, at.heavy) for _ in range(min(DUE_POOL, n_heavy))]
    chosen = rng.sample(range(1, n + 1), n_light + n_heavy)  # due tickets: all over the table
    kind = dict.fromkeys(chosen[:n_light], light) | dict.fromkeys(chosen[n_light:], heavy)
    loader = Loader(app.engine)
    shared: dict[int, tuple[tuple[Any, ...], list[tuple[Any, ...]]]] = {}
    for p in (*quiet, *light, *heavy):
        shared[id(p)] = (
            loader.convert("tickets", PROFILE_COLUMNS, [p.fields[c] for c in PROFILE_COLUMNS]),
            [loader.convert("sla_alerts", ALERT_COLUMNS[1:], (*h, h[-1])) for h in p.history])
    alerts = messages = 0
    print(f"  {time.perf_counter() - t0:.0f} s; loading {n:,} tickets ...", flush=True)
    for start in range(1, n + 1, CHUNK):
        tickets: list[tuple[Any, ...]] = []
        history: list[tuple[Any, ...]] = []
        inbound: list[tuple[Any, ...]] = []
        for i in range(start, min(start + CHUNK, n + 1)):
            pool = kind.get(i, quiet)
            p = pool[rng.randrange(len(pool))]
            fields, earlier = shared[id(p)]
            own = ticket_own(i, p, rng)
            tickets.append(loader.convert("tickets", ROW_COLUMNS, own) + fields)
            if args.history:
                history.extend((i, *h) for h in earlier)
            if pool is not quiet:  # escalation on breach quotes the customer's first mail
                inbound.append(loader.convert("messages", MESSAGE_COLUMNS,
                                              message_row(i, own, p)))
        loader.load("tickets", ROW_COLUMNS + PROFILE_COLUMNS, tickets)
        loader.load("sla_alerts", ALERT_COLUMNS, history)
        loader.load("messages", MESSAGE_COLUMNS, inbound)
        alerts += len(history)
        messages += len(inbound)
    loader.finish()
    return Loaded(n, n_light, n_heavy, alerts, messages, time.perf_counter() - t0)


def ticket_own(i: int, p: Profile, rng: random.Random) -> tuple[Any, ...]:
    """The columns of ROW_COLUMNS, which no two tickets share."""
    domain = p.fields["requester"].rpartition("@")[2]  # decides customer attributes
    return (i, f"BENCH-{i:08d}", f"{SUBJECTS[i % len(SUBJECTS)]} ({i})",
            f"customer{rng.randrange(300_000)}@{domain}", f"{rng.getrandbits(128):032x}")


def message_row(i: int, own: tuple[Any, ...], p: Profile) -> tuple[Any, ...]:
    created = p.fields["created_at"]
    return (i, "inbound", f"<bench-{i}@example.com>", own[3], "", SUPPORT, own[2], created,
            BODY, BODY.encode(), created)


# --------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------


@dataclass
class Case:
    db: str
    n: int
    label: str
    at: str
    expected_due: int
    due: int = 0
    load_avg: float = 0.0
    plan: str = ""
    floor_count_s: float = 0.0
    floor_read_s: float = 0.0
    scan_s: float = 0.0
    scan_rows: int = 0
    pass_s: float = 0.0
    pass_cpu_s: float = 0.0
    raised: dict[str, int] = field(default_factory=dict)
    statements: dict[str, int] = field(default_factory=dict)  # SQL sent by the pass, by verb
    events: int = 0
    outbox: int = 0
    left_due: int = 0
    second_s: float = 0.0
    second_raised: int = 0
    profiled: bool = False

    @property
    def ratio(self) -> float:
        return self.floor_read_s / self.pass_s if self.pass_s else 0.0


def best_of(times: int, work: Callable[[], Any]) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(times):
        t0 = time.perf_counter()
        out = work()
        best = min(best, time.perf_counter() - t0)
    return best, out


def due_query(now: datetime) -> Any:
    return select(Ticket.__table__).where(Ticket.sla_next_check_at <= now) \
        .order_by(Ticket.sla_next_check_at)


def query_plan(engine: Engine, now: datetime) -> str:
    """How the database finds the pass's first batch (the engine's query, by hand)."""
    pg = engine.dialect.name == "postgresql"
    sql = ("SELECT * FROM tickets WHERE sla_next_check_at <= :now "
           "ORDER BY sla_next_check_at LIMIT 500" + (" FOR UPDATE SKIP LOCKED" if pg else ""))
    explain = "EXPLAIN " if pg else "EXPLAIN QUERY PLAN "
    stmt = text(explain + sql).bindparams(bindparam("now", type_=UtcDateTime()))
    with engine.connect() as conn:
        rows = conn.execute(stmt, {"now": now}).all()
    return " / ".join(str(r[0] if pg else r[-1]).strip() for r in rows)


def count(session: Session, what: Any, *where: Any) -> int:
    return int(session.scalar(select(func.count()).select_from(what).where(*where)) or 0)


def measure(app: App, clock: FixedClock, case: Case, profile_dir: Path | None) -> Case:
    now = clock.now()
    engine = app.engine
    case.load_avg = os.getloadavg()[0]
    case.plan = query_plan(engine, now)
    due_where = Ticket.sla_next_check_at <= now

    def count_due() -> int:
        with app.sessions() as s:
            return count(s, Ticket, due_where)

    def read_due() -> int:
        with engine.connect() as conn:
            return len(conn.execute(due_query(now)).all())

    def scan() -> int:
        with engine.connect() as conn:
            return len(conn.execute(select(Ticket.id).where(Ticket.status.in_(OPEN))).all())

    case.floor_count_s, case.due = best_of(3, count_due)
    case.floor_read_s, read = best_of(3, read_due)
    case.scan_s, case.scan_rows = best_of(2, scan)
    if read != case.due or case.due != case.expected_due:
        raise BenchError(f"{case.label}: {case.due} due (read {read}), "
                         f"expected {case.expected_due}")
    with app.sessions() as s:
        before = (count(s, Event), count(s, Outbox))
    profiler = cProfile.Profile() if profile_dir else None

    def on_statement(*args: Any) -> None:  # (conn, cursor, statement, ...): a round trip
        verb = args[2].split(None, 1)[0].upper()
        case.statements[verb] = case.statements.get(verb, 0) + 1

    # maild's batch inserts on PostgreSQL are COPY, straight on the psycopg cursor, which
    # SQLAlchemy's events do not see: counted where psycopg starts them.
    copy = psycopg.Cursor.copy

    def counted_copy(cursor: psycopg.Cursor[Any], statement: Any, *args: Any,
                     **kwargs: Any) -> Any:
        case.statements["COPY"] = case.statements.get("COPY", 0) + 1
        return copy(cursor, statement, *args, **kwargs)

    event.listen(engine, "before_cursor_execute", on_statement)
    psycopg.Cursor.copy = counted_copy  # type: ignore[method-assign]
    try:
        cpu0, t0 = time.process_time(), time.perf_counter()
        if profiler:
            profiler.enable()
        raised = app.sla_pass()
        if profiler:
            profiler.disable()
        case.pass_s = time.perf_counter() - t0
        case.pass_cpu_s = time.process_time() - cpu0
    finally:
        psycopg.Cursor.copy = copy  # type: ignore[method-assign]
        event.remove(engine, "before_cursor_execute", on_statement)
    case.profiled = profiler is not None
    for r in raised:
        case.raised[f"{r.target}:{r.kind}"] = case.raised.get(f"{r.target}:{r.kind}", 0) + 1
    with app.sessions() as s:
        case.events = count(s, Event) - before[0]
        case.outbox = count(s, Outbox) - before[1]
        case.left_due = count(s, Ticket, due_where)
    t0 = time.perf_counter()
    case.second_raised = len(app.sla_pass())
    case.second_s = time.perf_counter() - t0
    if profiler and profile_dir:
        name = f"sla-{case.db}-{case.n}-{case.label.split()[0]}.pstats"
        dump_profile(profiler, profile_dir / name)
    return case


@dataclass
class RetimeCase:
    db: str
    n: int
    label: str
    floor_s: float = 0.0
    retime_s: float = 0.0
    retime_cpu_s: float = 0.0
    policies: str = ""
    checked: int = 0
    changed: int = 0

    @property
    def ratio(self) -> float:
        return self.floor_s / self.retime_s if self.retime_s else 0.0


def measure_retime(app: App, case: RetimeCase) -> RetimeCase:
    """Re-time the open tickets for the engine's current SLA configuration: floor = reading
    the columns re-timing reads of every open ticket, in one query (Core, typed)."""

    def read_inputs() -> int:
        with app.engine.connect() as conn:
            return len(conn.execute(select(*RETIME_COLUMNS).where(
                Ticket.status.in_(RETIMED))).all())

    case.floor_s, _ = best_of(1, read_inputs)
    cpu0, t0 = time.process_time(), time.perf_counter()
    done = retime_if_changed(app.sla, app.sessions)
    case.retime_s = time.perf_counter() - t0
    case.retime_cpu_s = time.process_time() - cpu0
    if done is None:
        raise BenchError(f"{case.label}: nothing was re-timed")
    case.policies = "all" if done.policies is None else ", ".join(done.policies)
    case.checked, case.changed = done.checked, done.changed
    return case


def edited_sla(source: Path, folder: Path) -> Path:
    """The SLA file with its first policy's targets shortened by a quarter: only its tickets
    need new times."""
    import yaml

    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    first = data["policies"][0]
    for target in ("first_response", "next_response", "resolution"):
        if target in first:
            first[target] = f"{parse_minutes(first[target]) * 3 / 4:g}m"
    path = folder / "sla-edited.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def policy_added(source: Path, folder: Path) -> Path:
    """The SLA file with a policy first that matches no loaded ticket: which policy a ticket
    gets may have changed, so every open ticket is checked; none changes."""
    import yaml

    data = yaml.safe_load(source.read_text(encoding="utf-8"))
    data["policies"].insert(0, {"name": "bench-vip", "match": {"tag": ["bench-vip"]},
                                "first_response": "10m"})
    path = folder / "sla-added.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def parse_minutes(value: Any) -> float:
    from maild.sla.policy import parse_duration

    return parse_duration(value).total_seconds() / 60


def print_retime(c: RetimeCase) -> None:
    print(f"  -- re-time, {c.label}: policies {c.policies}; {c.checked:,} tickets checked, "
          f"{c.changed:,} changed")
    print(f"     {'floor: read their inputs (one query)':<44}{ms(c.floor_s):>11}")
    print(f"     {'maild: retime_if_changed()':<44}{ms(c.retime_s):>11}"
          f"{c.retime_s / max(c.checked, 1) * 1000:>11.4f}{c.ratio:>8.3f}"
          f"   CPU {ms(c.retime_cpu_s)} ms", flush=True)


def dump_profile(profiler: cProfile.Profile, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    profiler.dump_stats(path)
    out = io.StringIO()
    pstats.Stats(str(path), stream=out).sort_stats("cumulative").print_stats(25)
    print(f"  profile written to {path}; top functions by cumulative time:")
    print("\n".join("    " + line for line in out.getvalue().splitlines()[6:40]))


@contextlib.contextmanager
def fresh_database(kind: str, folder: Path, admin_dsn: str | None,
                   template: str | None = None) -> Iterator[str]:
    """A new database, dropped afterwards; on PostgreSQL a copy of `template` if given."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'maild.db'}"
        return
    database = Snapshots(admin_dsn).clone(template) if template else PgDatabase.create(admin_dsn)
    try:
        yield database.url
    finally:
        database.drop()


class Snapshots:
    """Loaded PostgreSQL databases kept as templates (`--reuse`), so that a run with the same
    data options clones one (`CREATE DATABASE ... TEMPLATE`, seconds) instead of computing and
    loading a million tickets again. Each pass changes the database it runs on, so every run
    works on a clone of its own; the template is never touched after it is written.

    The name carries a digest of everything that decides the data: N, the options, the SLA and
    rules files, the loader's constants and the ticket table's columns. It does not cover the
    code: when a change alters the SLA state maild's policy code computes for the loader, drop
    the templates (`DROP DATABASE maild_bench_sla_...`; a run prints the name it uses).
    """

    PREFIX = "maild_bench_sla_"

    def __init__(self, admin_dsn: str | None) -> None:
        self.dsn = admin_dsn or os.environ.get(ADMIN_DSN_ENV) or DEFAULT_ADMIN_DSN

    def name(self, n: int, args: argparse.Namespace) -> str:
        files = [path.read_bytes().hex() if path else "" for path in (args.sla, args.rules)]
        key = json.dumps([n, args.due, args.heavy, args.seed, args.history, files, POOL,
                          DUE_POOL, T0.isoformat(), MAX_AGE.total_seconds(),
                          [c.name for c in Ticket.__table__.columns]])
        return f"{self.PREFIX}{n}_{hashlib.sha256(key.encode()).hexdigest()[:12]}"

    def find(self, name: str) -> Loaded | None:
        """What was loaded into the template `name`, or None if there is no such template."""
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=10) as conn:
            row = conn.execute("SELECT shobj_description(oid, 'pg_database') FROM pg_database "
                               "WHERE datname = %s", (name,)).fetchone()
        return Loaded(**json.loads(row[0])) if row and row[0] else None

    def clone(self, name: str) -> PgDatabase:
        """A new database, a copy of the template `name`; drop() removes it."""
        database = PgDatabase(f"maild_test_{secrets.token_hex(6)}", self.dsn)
        self._copy(name, database.name)
        return database

    def save(self, url: str, name: str, loaded: Loaded) -> None:
        """Keep the database at `url` (no connection may be open to it) as template `name`.

        What was loaded goes into the template's comment, written last: a template without
        one (a run stopped while saving) is not found, and is replaced by the next save."""
        source = make_url(url).database
        assert source is not None
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=10) as conn:
            conn.execute(pg_sql.SQL("DROP DATABASE IF EXISTS {}").format(
                pg_sql.Identifier(name)))
        self._copy(source, name)
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=10) as conn:
            conn.execute(pg_sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                pg_sql.Identifier(name), pg_sql.Literal(json.dumps(asdict(loaded)))))

    def _copy(self, source: str, target: str) -> None:
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=10) as conn:
            # FILE_COPY (PostgreSQL 15+) copies the files instead of WAL-logging every page.
            strategy = " STRATEGY FILE_COPY" if conn.info.server_version >= 150000 else ""
            conn.execute(pg_sql.SQL("CREATE DATABASE {} TEMPLATE {}" + strategy).format(
                pg_sql.Identifier(target), pg_sql.Identifier(source)))


def run_size(kind: str, n: int, args: argparse.Namespace, workdir: Path,
             retimes: list[RetimeCase]) -> list[Case]:
    folder = workdir / f"{kind}-{n}"
    folder.mkdir()
    cases: list[Case] = []
    snapshots = Snapshots(args.admin_dsn) if kind == "postgresql" and args.reuse else None
    template = snapshots.name(n, args) if snapshots else None
    saved = snapshots.find(template) if snapshots and template else None
    t0 = time.perf_counter()
    with fresh_database(kind, folder, args.admin_dsn, template if saved else None) as url:
        extra: dict[str, Any] = {"rules": str(args.rules)} if args.rules else {}
        settings = load_settings(write_config(folder, db_url=url, sla=str(args.sla), **extra))
        clock = FixedClock(T0)
        app = build(settings, clock=clock)  # migrates the fresh database: not timed
        interval = timedelta(seconds=app.sla.config.check_interval)
        at = Instants(previous=T0 - interval, light=T0, heavy=T0 + interval)
        try:
            print(f"\n[{kind}, N={n:,}]", flush=True)
            loaded = saved or load_tickets(app, n, at, args)
            print(f"  loaded {loaded.tickets:,} tickets, {loaded.alerts_before:,} earlier alerts,"
                  f" {loaded.messages:,} messages in {loaded.seconds:.0f} s", flush=True)
            if saved:
                print(f"  (into template {template}; this copy of it took "
                      f"{time.perf_counter() - t0:.0f} s)", flush=True)
            if snapshots and template and not saved:
                app.engine.dispose()  # a template must have no connections
                t0 = time.perf_counter()
                snapshots.save(url, template, loaded)
                print(f"  kept as template {template} ({time.perf_counter() - t0:.0f} s)",
                      flush=True)
            clock.at = at.light
            # The first start: no timing recorded, so every open ticket is re-timed (their
            # columns are what the loader computed: none changes).
            retimes.append(measure_retime(app, RetimeCase(
                kind, n, "first start (nothing recorded)")))
            print_retime(retimes[-1])
            for label, instant, expected in (
                    (f"{args.due:g} % due", at.light, loaded.due_light),
                    (f"{args.heavy:g} % due", at.heavy, loaded.due_heavy)):
                clock.at = instant
                case = Case(kind, n, label, instant.isoformat(), expected)
                cases.append(measure(app, clock, case, args.profile))
                print_case(case)
            edited = edited_sla(args.sla, folder)
            app.sla.config = load_sla(edited)  # as a reload does
            retimes.append(measure_retime(app, RetimeCase(
                kind, n, "first policy's targets shortened")))
            print_retime(retimes[-1])
            app.sla.config = load_sla(policy_added(edited, folder))
            retimes.append(measure_retime(app, RetimeCase(
                kind, n, "a policy added first (no ticket's)")))
            print_retime(retimes[-1])
        finally:
            app.dispose()
    if kind == "sqlite" and not args.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return cases


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f}"


def print_case(c: Case) -> None:
    per = c.pass_s / c.due * 1000 if c.due else 0.0
    raised = ", ".join(f"{v:,} {k}" for k, v in sorted(c.raised.items())) or "none"
    flag = "  (under cProfile: inflated)" if c.profiled else ""
    print(f"  -- {c.label} at {c.at} ({c.due:,} due; load {c.load_avg:.1f})")
    print(f"     plan: {c.plan}")
    print(f"     {'phase':<44}{'ms':>11}{'ms/ticket':>11}{'ratio':>8}")
    print(f"     {'floor: count(*) of due tickets (index)':<44}{ms(c.floor_count_s):>11}")
    print(f"     {'floor: read every due ticket (index)':<44}{ms(c.floor_read_s):>11}"
          f"{c.floor_read_s / max(c.due, 1) * 1000:>11.3f}{1:>8.2f}")
    print(f"     {f'contrast: ids of all {c.scan_rows:,} open tickets':<44}{ms(c.scan_s):>11}")
    print(f"     {'maild: app.sla_pass()':<44}{ms(c.pass_s):>11}{per:>11.3f}{c.ratio:>8.3f}"
          f"{flag}")
    print(f"     {'maild: next pass, same instant':<44}{ms(c.second_s):>11}")
    print(f"     pass CPU {ms(c.pass_cpu_s)} ms in this process; raised {raised}; "
          f"{c.events:,} events, {c.outbox:,} outbox rows; still due after: {c.left_due}; "
          f"raised by the next pass: {c.second_raised}")
    sql = sum(c.statements.values())
    verbs = ", ".join(f"{v:,} {k}" for k, v in sorted(c.statements.items(), key=lambda x: -x[1]))
    print(f"     the pass sent {sql:,} SQL statements ({sql / max(c.due, 1):.1f} per ticket "
          f"checked): {verbs}", flush=True)


def report(cases: list[Case]) -> None:
    print("\n" + "=" * 106)
    print(f"{'db':<11}{'N':>10}  {'case':<10}{'checked':>8}{'floor ms':>10}{'scan ms':>10}"
          f"{'pass ms':>11}{'CPU ms':>10}{'SQL/t':>6}{'ratio':>7}{'alerts':>8}{'next ms':>9}"
          f"{'load':>6}")
    for c in cases:
        print(f"{c.db:<11}{c.n:>10,}  {c.label:<10}{c.due:>8,}{ms(c.floor_read_s):>10}"
              f"{ms(c.scan_s):>10}{ms(c.pass_s):>11}{ms(c.pass_cpu_s):>10}"
              f"{sum(c.statements.values()) / max(c.due, 1):>6.1f}{c.ratio:>7.3f}"
              f"{sum(c.raised.values()):>8,}{ms(c.second_s):>9}{c.load_avg:>6.1f}")
    print("checked = tickets due at the pass; floor = reading them all through the index; "
          "scan = ids of all open\ntickets (no index); CPU = the pass's CPU time in this "
          "process (not the database's);\nSQL/t = statements the pass sent per ticket "
          "checked; ratio = floor / pass.")
    target = [c for c in cases if c.db == "postgresql" and c.n == TARGET_N]
    if not target:
        print(f"verdict: no PostgreSQL run with N = {TARGET_N:,}; the target is not judged.")
    for c in target:
        verdict = "PASS" if c.pass_s < TARGET_SECONDS else "FAIL"
        print(f"verdict ({c.label}): one SLA pass over {TARGET_N:,} open tickets on PostgreSQL "
              f"took {c.pass_s:.3f} s, target < {TARGET_SECONDS:.0f} s: {verdict}"
              + (" (profiled run: not a valid measurement)" if c.profiled else ""))
    if any(c.load_avg > 1.5 for c in cases):
        print("note: a load average above 1.5 on two cores makes wall-clock figures suspect.")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.sla", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[100_000, 1_000_000],
                        help="numbers of open tickets (default: 100000 1000000)")
    parser.add_argument("--db", nargs="+", choices=("sqlite", "postgresql"),
                        default=["sqlite", "postgresql"])
    parser.add_argument("--due", type=float, default=0.1,
                        help="percent of tickets due at the light pass (default 0.1)")
    parser.add_argument("--heavy", type=float, default=1.0,
                        help="percent of tickets due at the heavy pass (default 1)")
    parser.add_argument("--sla", type=Path, default=DEFAULT_SLA,
                        help="SLA policies (default: config/sla.yaml)")
    parser.add_argument("--rules", default="none",
                        help="rules file, 'config' for config/rules.yaml (team addresses, so "
                             "warnings and breaches queue notifications), or 'none' (default)")
    parser.add_argument("--no-history", dest="history", action="store_false",
                        help="do not load the sla_alerts rows of earlier passes")
    parser.add_argument("--seed", type=int, default=4)
    parser.add_argument("--admin-dsn", default=None,
                        help="PostgreSQL DSN for CREATE/DROP DATABASE (default: "
                             "$MAILD_TEST_PG_DSN or postgresql://postgres@127.0.0.1:5432/test)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="run each pass under cProfile and write DIR/*.pstats (inflates it)")
    parser.add_argument("--log", type=Path, default=None,
                        help="maild's JSON log (default: a file in the work directory)")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the SQLite databases")
    parser.add_argument("--reuse", action="store_true",
                        help="PostgreSQL: keep the loaded database as a template "
                             "(maild_bench_sla_N_DIGEST) and clone it in later runs with the "
                             "same data options instead of loading again")
    args = parser.parse_args(argv)
    args.rules = {"none": None, "config": DEFAULT_RULES}.get(args.rules, args.rules)
    args.rules = Path(args.rules).resolve() if args.rules else None
    args.sla = args.sla.resolve()
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="maild-bench-sla-"))
    log_path = args.log or workdir / "maild.log"
    print(f"work directory {workdir}; maild's log {log_path}; SLA {args.sla}; "
          f"rules {args.rules or 'none'}; {os.cpu_count()} CPUs; load "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    cases: list[Case] = []
    retimes: list[RetimeCase] = []
    with log_path.open("a", encoding="utf-8") as log:
        with contextlib.redirect_stderr(log):
            logs.configure("info", json=True)  # as `maild run` under systemd, into the file
        try:
            for kind in args.db:
                for n in args.n:
                    cases.extend(run_size(kind, n, args, workdir, retimes))
        finally:
            if cases:
                report(cases)
            for r in retimes:
                print(f"re-time {r.db:<11}{r.n:>10,}  {r.label:<34} {r.checked:>9,} checked "
                      f"{r.changed:>9,} changed {r.retime_s:>8.2f} s (floor {r.floor_s:.2f} s, "
                      f"{r.retime_s / max(r.checked, 1) * 1e6:.1f} us/ticket)")
            if args.json:
                args.json.write_text(json.dumps(
                    [asdict(c) for c in cases] + [asdict(r) for r in retimes], indent=2),
                    encoding="utf-8")
            if not args.keep and args.log is None:
                shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
