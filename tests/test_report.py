"""`maild report`: figures checked against hand-computed values for a small fixed desk, on
SQLite and PostgreSQL; the pure parts (periods, quantiles, business clock) by tables; the CLI's
JSON, CSV and text output.

The desk (Europe/Berlin; the week reported is Mon 2026-11-23 to Sun 2026-11-29; the office
calendar is Mon-Fri 09:00-17:00 with Wed 2026-11-25 a holiday):

T1 technical L1 a@ standard  created Fri 20 16:00, reply sent Mon 23 10:00, resolved Mon 12:00
T2 technical L1->2 b@ standard created Tue 24 08:00, warned and breached first response,
   escalated Tue 15:00, replies sent Thu 26 10:00 and 15:00, resolution breached Thu 14:00,
   resolved Thu 16:00; an automatic inbound message Tue 09:00 (not counted)
T3 accounting L1 - billing urgent (24x7) created Sat 28 10:00, canned answer sent 10:30,
   resolved 11:00, reopened Sun 29 09:00 (open at the end)
T4 accounting L1 a@ no policy created Wed 25 09:00, customer wrote again Thu 26 09:00; new
T5 technical L2 b@ standard created Sun 1 Nov, waiting for the customer at the end, resolved
   after it (Tue 1 Dec)
T6 technical L2 a@ standard created Thu 26 10:00, closed (never resolved) 11:00
CSAT: surveys for T1 (Tue 24), T2 and T6 (Fri 27); T1 rated 2 on Wed 25 then 5 on Thu 26
(a@, L1, technical); T2 rated 3 on Sat 28 (b@, L2, technical).
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from maild.businesstime.calendar import BusinessCalendar, business_time_between
from maild.cli import main
from maild.clock import FixedClock
from maild.reports import RATED, SURVEY_QUEUED
from maild.reports.business import BusinessClock
from maild.reports.command import Options, build
from maild.reports.figures import quantile
from maild.reports.period import offsets, resolve
from maild.store import db
from maild.store.models import Event, Message, SlaAlert, Ticket
from tests.kit import write_config

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)  # Wednesday after the week reported
SLA_YAML = """
calendars:
  office:
    timezone: Europe/Berlin
    hours: {mon-fri: ["09:00-17:00"]}
    holidays: ["2026-11-25"]
policies:
  - name: urgent
    match: {priority: [urgent]}
    calendar: 24x7
    first_response: 1h
    resolution: 8h
  - name: standard
    calendar: office
    first_response: 4h
    resolution: 16h
"""


def at(day: int, hour: int, minute: int = 0, month: int = 11) -> datetime:
    return datetime(2026, month, day, hour, minute, tzinfo=BERLIN)


class Desk:
    def __init__(self, session: Any) -> None:
        self.session = session
        self.n = 0

    def ticket(self, created: datetime, *, department: str, level: int, assignee: str | None,
               mailbox: str | None, policy: str | None, status: str,
               priority: str = "normal") -> Ticket:
        self.n += 1
        t = Ticket(ref=f"T-{self.n}", subject=f"ticket {self.n}", requester=f"c{self.n}@x.test",
                   status=status, level=level, department=department, priority=priority,
                   mailbox=mailbox, secret="s", assignee=assignee, created_at=created,
                   updated_at=created, sla_policy=policy, tags=[], sla_pauses=[],
                   sla_alerted=[])
        self.session.add(t)
        self.session.flush()
        self.event(t, "created", created, via="email")
        self.message(t, created)
        return t

    def event(self, t: Ticket, kind: str, when: datetime, **data: Any) -> None:
        self.session.add(Event(ticket_id=t.id, kind=kind, at=when, data=data))

    def status(self, t: Ticket, when: datetime, old: str, new: str) -> None:
        self.event(t, "status.changed", when, old=old, new=new, reason="test", by=None)

    def message(self, t: Ticket, when: datetime, automatic: str | None = None) -> None:
        self.session.add(Message(ticket_id=t.id, direction="inbound", from_addr=t.requester,
                                 created_at=when, date=when, automatic=automatic))

    def alert(self, t: Ticket, when: datetime, kind: str, target: str) -> None:
        self.session.add(SlaAlert(ticket_id=t.id, key=f"{target}:{kind}", target=target,
                                  kind=kind, policy=t.sla_policy or "", due_at=when,
                                  raised_at=when))


def build_desk(url: str) -> None:
    with db.opened(url) as sessions, sessions() as session:
        d = Desk(session)
        t1 = d.ticket(at(20, 16), department="technical", level=1, assignee="a@x.test",
                      mailbox="support", policy="standard", status="resolved")
        d.event(t1, "reply.sent", at(23, 10))
        d.status(t1, at(23, 12), "open", "resolved")
        t2 = d.ticket(at(24, 8), department="technical", level=2, assignee="b@x.test",
                      mailbox="support", policy="standard", status="resolved")
        d.message(t2, at(24, 9), automatic="auto-submitted")
        d.alert(t2, at(24, 12, 12), "warn", "first_response")
        d.alert(t2, at(24, 13), "breach", "first_response")
        d.event(t2, "escalated", at(24, 15), by="b@x.test", old=1, new=2, reason="")
        d.event(t2, "reply.sent", at(26, 10))
        d.event(t2, "reply.sent", at(26, 15))
        d.alert(t2, at(26, 14), "breach", "resolution")
        d.status(t2, at(26, 16), "open", "resolved")
        t3 = d.ticket(at(28, 10), department="accounting", level=1, assignee=None,
                      mailbox="billing", policy="urgent", status="open", priority="urgent")
        d.event(t3, "answer.sent", at(28, 10, 30))
        d.status(t3, at(28, 11), "new", "resolved")
        d.status(t3, at(29, 9), "resolved", "open")
        t4 = d.ticket(at(25, 9), department="accounting", level=1, assignee="a@x.test",
                      mailbox="support", policy=None, status="new")
        d.message(t4, at(26, 9))
        t5 = d.ticket(at(1, 10), department="technical", level=2, assignee="b@x.test",
                      mailbox="support", policy="standard", status="resolved")
        d.status(t5, at(2, 10), "new", "waiting_customer")
        d.status(t5, at(1, 10, month=12), "waiting_customer", "resolved")
        t6 = d.ticket(at(26, 10), department="technical", level=2, assignee="a@x.test",
                      mailbox="support", policy="standard", status="closed")
        d.status(t6, at(26, 11), "open", "closed")
        rating = {"agent": "a@x.test", "level": 1, "department": "technical"}
        d.event(t1, SURVEY_QUEUED, at(24, 9), to=t1.requester, **rating)
        d.event(t1, RATED, at(25, 9), score=2, comment="slow", **rating)
        d.event(t1, RATED, at(26, 9), score=5, comment="fine after all", **rating)
        rating2 = {"agent": "b@x.test", "level": 2, "department": "technical"}
        d.event(t2, SURVEY_QUEUED, at(27, 9), to=t2.requester, **rating2)
        d.event(t6, SURVEY_QUEUED, at(27, 9), to=t6.requester, **rating2)
        d.event(t2, RATED, at(28, 9), score=3, comment="", **rating2)
        session.commit()


@pytest.fixture
def desk(tmp_path: Path, db_url: str) -> Path:
    (tmp_path / "sla.yaml").write_text(SLA_YAML, encoding="utf-8")
    config = write_config(tmp_path, db_url=db_url, sla="sla.yaml", timezone="Europe/Berlin")
    build_desk(db_url)
    return config


def test_figures_match_the_hand_computed_desk(desk: Path) -> None:
    from maild.settings import load_settings

    report = build(load_settings(desk), Options(), FixedClock(NOW))
    assert report.period.start == at(23, 0) and report.period.end == at(30, 0)
    t = report.totals
    assert (t.tickets_created, t.messages_in, t.replies_out) == (4, 5, 4)
    assert (t.tickets_resolved, t.tickets_closed, t.tickets_reopened) == (4, 1, 1)
    f = t.first_reply  # calendar [0.5, 50, 66]; business [0.5, 2 (weekend), 9 (holiday)]
    assert f.count == 3 and f.business_count == 3
    assert f.mean_h == pytest.approx(116.5 / 3) and f.median_h == pytest.approx(50)
    assert f.p90_h == pytest.approx(62.8)
    assert f.mean_business_h == pytest.approx(11.5 / 3)
    assert f.median_business_h == pytest.approx(2) and f.p90_business_h == pytest.approx(7.6)
    r = t.resolution  # calendar [1, 1, 56, 68]; business [1, 1, 4, 15]
    assert r.count == 4 and r.mean_h == pytest.approx(31.5)
    assert r.median_h == pytest.approx(28.5) and r.p90_h == pytest.approx(64.4)
    assert r.mean_business_h == pytest.approx(5.25)
    assert r.median_business_h == pytest.approx(2.5) and r.p90_business_h == pytest.approx(11.7)
    assert t.sla.first_response_met_rate == pytest.approx(2 / 3)
    assert t.sla.resolution_met_rate == pytest.approx(0.75)
    assert (t.sla.warnings, t.sla.breaches) == (1, 2)
    assert t.escalation_rate == 0.25 and t.one_touch_rate == 0.25
    assert t.reopen_rate == 0.25 and t.canned_only_rate == 0.25
    assert report.escalation_by_level == {"1": pytest.approx(1 / 3), "2": 0.0}
    c = t.csat
    assert (c.surveys_sent, c.responses, c.mean, c.satisfied_rate) == (3, 2, 4.0, 0.5)
    assert c.response_rate == pytest.approx(2 / 3)
    assert report.backlog.open == 3
    assert dict(report.backlog.by_age) == {"<1d": 0, "1-3d": 1, "3-7d": 1, ">7d": 1}
    assert dict(report.backlog.by_status) == {"new": 1, "open": 1, "waiting_customer": 1}

    tech, acc = report.groups["department"]["technical"], report.groups["department"]["accounting"]
    assert (tech.tickets_created, tech.messages_in, tech.replies_out) == (2, 2, 3)
    assert (tech.tickets_resolved, tech.tickets_closed, tech.tickets_reopened) == (3, 1, 0)
    assert tech.first_reply.count == 2 and tech.first_reply.p90_h == pytest.approx(64.4)
    assert (acc.tickets_created, acc.messages_in, acc.replies_out) == (2, 3, 1)
    assert acc.tickets_reopened == 1 and acc.canned_only_rate == 1.0
    assert tech.csat.surveys_sent == 3 and tech.csat.mean == 4.0
    assert acc.csat.surveys_sent == 0 and acc.csat.mean is None and acc.csat.response_rate is None
    by_level = report.groups["level"]
    assert by_level["2"].csat.mean == 3.0 and by_level["1"].csat.mean == 5.0  # at rating time
    assert set(report.groups["agent"]) == {"a@x.test", "b@x.test", "unassigned"}
    assert report.groups["mailbox"]["billing"].first_reply.mean_h == pytest.approx(0.5)

    days = {d.day.isoformat(): d for d in report.days}
    assert len(days) == 7
    assert (days["2026-11-23"].replies_out, days["2026-11-23"].resolved) == (1, 1)
    assert days["2026-11-26"].messages_in == 2 and days["2026-11-26"].closed == 1
    assert days["2026-11-28"].created_by_department == {"accounting": 1}
    assert [w.week for w in report.weeks] == [date(2026, 11, 23)]
    assert report.weeks[0].csat_mean == 4.0
    assert sum(report.first_reply_histogram) == 3


def test_cli_json_has_every_interface_key(desk: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    assert main(["-c", str(desk), "report", "--from", "2026-11-23", "--to", "2026-11-29",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["period"] == {"from": "2026-11-23T00:00:00+01:00",
                             "to": "2026-11-30T00:00:00+01:00", "timezone": "Europe/Berlin"}
    keys = {"tickets_created", "tickets_resolved", "tickets_reopened", "messages_in",
            "replies_out", "first_reply", "resolution", "sla", "escalation_rate",
            "one_touch_rate", "reopen_rate", "csat"}
    times = {"count", "mean_h", "median_h", "p90_h", "mean_business_h", "median_business_h",
             "p90_business_h"}
    groups = [out["totals"], *out["by_department"].values(), *out["by_level"].values(),
              *out["by_agent"].values()]
    for group in groups:
        assert keys <= set(group)
        assert times <= set(group["first_reply"]) and times <= set(group["resolution"])
        assert {"first_response_met_rate", "resolution_met_rate", "warnings",
                "breaches"} <= set(group["sla"])
        assert {"surveys_sent", "responses", "mean", "satisfied_rate"} <= set(group["csat"])
    assert set(out["by_level"]) == {"1", "2", "3", "4"}  # every level, even an idle one
    assert out["by_level"]["4"]["tickets_created"] == 0
    assert out["totals"]["backlog"] == {
        "open": 3, "by_age": {"<1d": 0, "1-3d": 1, "3-7d": 1, ">7d": 1},
        "by_status": {"new": 1, "open": 1, "waiting_customer": 1}}
    assert out["totals"]["first_reply"]["median_business_h"] == 2.0
    assert out["by_department"]["accounting"]["csat"]["mean"] is None


def test_cli_csv_and_text(desk: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", str(desk), "report", "--from", "2026-11-23", "--period", "week",
                 "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    total = rows[0]
    assert (total["dimension"], total["tickets_created"], total["sla_breaches"]) == (
        "total", "4", "2")
    assert total["resolution_median_business_h"] == "2.5000"
    assert {(r["dimension"], r["key"]) for r in rows[1:]} >= {
        ("department", "technical"), ("level", "2"), ("agent", "unassigned"),
        ("mailbox", "billing")}
    assert main(["-c", str(desk), "report", "--from", "2026-11-23", "--to", "2026-11-29",
                 "--by", "level"]) == 0
    text = capsys.readouterr().out
    lines = {line.split()[0]: line.split()[1:] for line in text.splitlines()[2:] if line.strip()}
    assert lines["tickets_created"] == ["4", "2", "2", "0", "0"]  # total, levels 1 to 4
    assert lines["sla_first_response_met_rate"][0] == "67%"
    assert "backlog at the end: 3 open" in text


def test_cli_refuses_bad_dates(desk: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", str(desk), "report", "--from", "23.11.2026"]) == 2
    assert "--from" in capsys.readouterr().err
    assert main(["-c", str(desk), "report", "--from", "2026-11-23", "--to", "2026-11-01"]) == 2
    assert main(["-c", str(desk), "report", "--to", "2026-11-29", "--period", "week"]) == 2


def test_an_empty_desk_gives_zeros_and_nulls(tmp_path: Path, sqlite_url: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, db_url=sqlite_url)
    assert main(["-c", str(config), "report", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["totals"]["tickets_created"] == 0
    assert out["totals"]["first_reply"]["mean_h"] is None
    assert out["totals"]["csat"] == {"surveys_sent": 0, "responses": 0, "response_rate": None,
                                     "mean": None, "satisfied_rate": None}
    assert out["period"]["timezone"] == "UTC" and out["by_agent"] == {}


# -- pure parts ------------------------------------------------------------------------------

@pytest.mark.parametrize(("now", "kw", "start", "end"), [
    (datetime(2026, 12, 2, 12, tzinfo=UTC), {}, date(2026, 11, 23), date(2026, 11, 30)),
    # Monday 00:30 in Berlin is still Sunday in UTC: the week just ended is the last full one
    (datetime(2026, 11, 29, 23, 30, tzinfo=UTC), {}, date(2026, 11, 23), date(2026, 11, 30)),
    (datetime(2026, 12, 2, tzinfo=UTC), {"unit": "month"}, date(2026, 11, 1), date(2026, 12, 1)),
    (datetime(2026, 1, 2, tzinfo=UTC), {"unit": "month"}, date(2025, 12, 1), date(2026, 1, 1)),
    (datetime(2026, 3, 2, tzinfo=UTC), {"unit": "year"}, date(2025, 1, 1), date(2026, 1, 1)),
    (datetime(2026, 3, 2, tzinfo=UTC), {"unit": "day"}, date(2026, 3, 1), date(2026, 3, 2)),
    (datetime(2026, 3, 2, tzinfo=UTC), {"start": date(2026, 2, 1), "unit": "month"},
     date(2026, 2, 1), date(2026, 3, 1)),
    (datetime(2026, 3, 2, tzinfo=UTC), {"start": date(2026, 2, 3), "to": date(2026, 2, 5)},
     date(2026, 2, 3), date(2026, 2, 6)),
    (datetime(2026, 3, 2, tzinfo=UTC), {"to": date(2026, 2, 7)}, date(2026, 2, 1),
     date(2026, 2, 8)),
])
def test_periods(now: datetime, kw: dict[str, Any], start: date, end: date) -> None:
    p = resolve(now, BERLIN, **kw)
    assert p.start == datetime.combine(start, time(0), BERLIN)
    assert p.end == datetime.combine(end, time(0), BERLIN)


def test_offsets_across_a_daylight_saving_change() -> None:
    start, end = datetime(2026, 3, 23, tzinfo=BERLIN), datetime(2026, 4, 6, tzinfo=BERLIN)
    assert offsets(start, end, BERLIN) == [
        (start.astimezone(UTC), 3600), (datetime(2026, 3, 29, 1, tzinfo=UTC), 7200)]
    kolkata = ZoneInfo("Asia/Kolkata")
    assert offsets(start, end, kolkata) == [(start.astimezone(UTC), 19800)]


@pytest.mark.parametrize(("values", "q", "expected"), [
    ([], 0.5, None), ([3.0], 0.9, 3.0), ([1.0, 2.0], 0.5, 1.5),
    ([0.5, 50.0, 66.0], 0.9, 62.8), ([1.0, 1.0, 4.0, 15.0], 0.5, 2.5),
])
def test_quantile(values: list[float], q: float, expected: float | None) -> None:
    result = quantile(values, q)
    assert result == (pytest.approx(expected) if expected is not None else None)


def test_business_clock_agrees_with_the_sla_calendar() -> None:
    cal = BusinessCalendar(name="office", tz=BERLIN,
                           hours={d: ((time(9), time(17)),) for d in range(5)},
                           holidays=frozenset({date(2026, 11, 25)}))
    clock = BusinessClock(cal)
    pairs = [(at(20, 16), at(23, 10)), (at(24, 8), at(26, 10)), (at(26, 10), at(26, 11)),
             (at(1, 0), at(30, 0)), (at(30, 0), at(1, 0)),
             (at(10, 12, month=10), at(5, 13, month=12)), (at(28, 22), at(29, 3))]
    for start, end in pairs:
        expected = max(business_time_between(cal, start, end), timedelta(0))
        got = clock.seconds(start.timestamp(), end.timestamp())
        assert got == expected.total_seconds(), (start, end)
    always = BusinessClock(BusinessCalendar.always_open())
    assert always.seconds(at(1, 0).timestamp(), at(2, 0).timestamp()) == 86400


def test_local_days_across_a_daylight_saving_change(tmp_path: Path, db_url: str) -> None:
    """Days are counted in SQL from epoch seconds and the zone's offsets in the period: around
    midnight on both sides of the change on Sunday 29 March 2026, each ticket lands on its
    local day."""
    from maild.settings import load_settings

    config = write_config(tmp_path, db_url=db_url, timezone="Europe/Berlin")
    local = [datetime(2026, 3, 28, 0, 30, tzinfo=BERLIN), datetime(2026, 3, 28, 23, 30,
             tzinfo=BERLIN), datetime(2026, 3, 29, 0, 30, tzinfo=BERLIN),
             datetime(2026, 3, 29, 23, 30, tzinfo=BERLIN), datetime(2026, 3, 30, 0, 10,
                                                                   tzinfo=BERLIN)]
    with db.opened(db_url) as sessions, sessions() as session:
        d = Desk(session)
        for when in local:
            d.ticket(when, department="technical", level=1, assignee=None, mailbox=None,
                     policy=None, status="new")
        session.commit()
    report = build(load_settings(config), Options(start=date(2026, 3, 23), period="week"),
                   FixedClock(NOW))
    created = {d.day.isoformat(): d.tickets_created for d in report.days}
    assert created == {"2026-03-23": 0, "2026-03-24": 0, "2026-03-25": 0, "2026-03-26": 0,
                       "2026-03-27": 0, "2026-03-28": 2, "2026-03-29": 2}
    assert report.totals.tickets_created == 4 and report.totals.messages_in == 4


def test_a_report_on_sqlite_does_not_wait_for_a_writer(tmp_path: Path, sqlite_url: str) -> None:
    """The daemon may hold SQLite's write lock: the report only reads (WAL), so it runs."""
    import sqlite3

    from maild.settings import load_settings

    config = write_config(tmp_path, db_url=sqlite_url)
    with db.opened(sqlite_url):
        pass
    writer = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None,
                             timeout=0)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT INTO kv (key, value) VALUES ('x', 'y')")
        with pytest.raises(sqlite3.OperationalError, match="locked"):  # the lock is held
            sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), timeout=0,
                            isolation_level=None).execute("BEGIN IMMEDIATE")
        report = build(load_settings(config), Options(start=date(2026, 11, 23), period="week"),
                       FixedClock(NOW))
        assert report.totals.tickets_created == 0
    finally:
        writer.execute("ROLLBACK")
        writer.close()
