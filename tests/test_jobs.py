"""Scheduled jobs: due times as pure functions, and each due time run once, across
restarts and daemons sharing a database (maild/jobs/)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from maild.app import App, build
from maild.clock import FixedClock
from maild.jobs import schedule
from maild.jobs.runs import Runner, last_runs
from maild.store.models import Event, JobRun
from maild.store.ticketstore import TicketStore
from tests.kit import add_tickets, settings_for

BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def weekdays(day: date) -> bool:
    return day.weekday() < 5 and day != date(2026, 12, 25)


@pytest.mark.parametrize(("now", "expected"), [
    (utc(2026, 12, 7, 6, 29), "2026-12-04"),  # Monday 07:29 Berlin: Friday's is the latest
    (utc(2026, 12, 7, 6, 30), "2026-12-07"),  # Monday 07:30 Berlin
    (utc(2026, 12, 6, 12, 0), "2026-12-04"),  # Sunday: Friday's
    (utc(2026, 12, 25, 9, 0), "2026-12-24"),  # a holiday: the day before
    (utc(2026, 7, 6, 5, 30), "2026-07-06"),  # summer time: 07:30 Berlin is 05:30 UTC
])
def test_daily_on_business_days(now: datetime, expected: str) -> None:
    assert schedule.daily(now, time(7, 30), BERLIN, weekdays) == expected


def test_weekly_and_every() -> None:
    monday_7 = time(7, 0)
    assert schedule.weekly(utc(2026, 12, 7, 5, 59), 0, monday_7, BERLIN) == "2026-11-30"
    assert schedule.weekly(utc(2026, 12, 7, 6, 0), 0, monday_7, BERLIN) == "2026-12-07"
    assert schedule.every(utc(2026, 12, 7, 0, 0, 59), 60) == schedule.every(
        utc(2026, 12, 7, 0, 0, 0), 60) != schedule.every(utc(2026, 12, 7, 0, 1, 0), 60)
    assert schedule.daily(utc(2026, 12, 7), time(7), BERLIN, lambda _d: False) is None


@dataclass
class MarkTicket:
    """A job that writes an event on a ticket each 07:30 of a business day (Berlin)."""

    ticket_id: int
    name: str = "mark"
    fail: bool = False

    def due(self, now: datetime) -> str | None:
        return schedule.daily(now, time(7, 30), BERLIN, weekdays)

    def run(self, store: TicketStore, key: str, now: datetime) -> int:
        store.add_event(self.ticket_id, "test.marked", now, {"key": key})
        if self.fail:
            raise RuntimeError("the job failed half-way")
        return 1


def marks(app: App) -> list[str]:
    with app.sessions() as s:
        return [e.data["key"] for e in s.scalars(
            select(Event).where(Event.kind == "test.marked").order_by(Event.id))]


def test_each_due_time_runs_once_across_restarts_and_daemons(
    tmp_path: Path, db_url: str
) -> None:
    clock = FixedClock(utc(2026, 12, 7, 6, 0))  # Monday 07:00 in Berlin
    first = build(settings_for(tmp_path, db_url=db_url), clock=clock)
    ticket = add_tickets(first, 1)[0]
    first.jobs = [MarkTicket(ticket)]
    assert [r.key for r in first.run_jobs()] == ["2026-12-04"]  # Friday's, missed
    assert first.run_jobs() == []
    first.dispose()
    # A restart, and a second daemon on the same database: nothing again.
    again = [build(settings_for(tmp_path, db_url=db_url), clock=clock) for _ in range(2)]
    for app, pid in zip(again, (101, 102), strict=True):
        app.jobs = [MarkTicket(ticket)]
        app.runner = Runner("host-b", pid)
        assert app.run_jobs() == []
    clock.advance(timedelta(minutes=30))  # 07:30: today's is due, once
    assert [len(app.run_jobs()) for app in again] == [1, 0]
    assert marks(again[1]) == ["2026-12-04", "2026-12-07"]
    with again[0].sessions() as s:
        runs = {r.job: (r.key, r.host, r.pid) for r in last_runs(s)}
    assert runs == {"mark": ("2026-12-07", "host-b", 101)}
    for app in again:
        app.dispose()


def test_a_failed_run_is_tried_again(tmp_path: Path, db_url: str) -> None:
    clock = FixedClock(utc(2026, 12, 7, 7, 0))
    app = build(settings_for(tmp_path, db_url=db_url), clock=clock)
    ticket = add_tickets(app, 1)[0]
    app.jobs = [MarkTicket(ticket, fail=True)]
    assert app.run_jobs() == []  # failed: its claim and its event rolled back
    with app.sessions() as s:
        assert s.scalar(select(func.count()).select_from(JobRun)) == 0
    assert marks(app) == []
    app.jobs = [MarkTicket(ticket)]
    assert [r.key for r in app.run_jobs()] == ["2026-12-07"]
    assert marks(app) == ["2026-12-07"]
    app.dispose()


def test_daemons_racing_for_a_due_time_run_it_once(tmp_path: Path, pg_url: str) -> None:
    """Eight daemons ask at the same moment: the unique claim lets exactly one act."""
    clock = FixedClock(utc(2026, 12, 7, 7, 0))
    apps = [build(settings_for(tmp_path, db_url=pg_url), clock=clock) for _ in range(8)]
    ticket = add_tickets(apps[0], 1)[0]
    start = threading.Barrier(len(apps))
    ran: list[int] = []

    def daemon(app: App) -> None:
        app.jobs = [MarkTicket(ticket)]
        start.wait()
        ran.append(len(app.run_jobs()))

    threads = [threading.Thread(target=daemon, args=(app,)) for app in apps]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(ran) == [0] * 7 + [1]
    assert marks(apps[0]) == ["2026-12-07"]
    for app in apps:
        app.dispose()
