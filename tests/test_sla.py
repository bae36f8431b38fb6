"""SLA policies end to end with a fixed clock, against real Dovecot, aiosmtpd and databases."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import event, func, select

from maild import daemon
from maild.app import App, build
from maild.businesstime.calendar import due_with_pauses
from maild.businesstime.durations import parse_duration
from maild.clock import FixedClock
from maild.errors import ConfigError
from maild.sla.engine import load_sla
from maild.sla.policy import TicketFacts, choose, deadlines
from maild.sla.writes import BatchWrites
from maild.store.models import Event, SlaAlert, Ticket
from tests.kit import add_tickets, customer_mail, settings_for, write_config
from tests.servers.dovecot import MailUser
from tests.servers.smtp import SmtpServer
from tests.test_agents import RULES, agent_reply, sent_to

SLA = """
calendars:
  office:
    timezone: Europe/Berlin
    hours: {mon-fri: ["08:00-18:00"]}
policies:
  - name: urgent
    match: {priority: [urgent, high]}
    calendar: 24x7
    first_response: 1h
    resolution: 8h
  - name: standard
    calendar: office
    first_response: 4h
    next_response: 4h
    resolution: 30h
    warn_at: 75%
    on_breach: {escalate: true, raise_priority: true}
"""
MONDAY_9 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # 09:00 in Berlin


@pytest.mark.parametrize("text,line,needle", [
    ("policies:\n  - name: a\n    first_response: 4 hours\n", 3, "not a duration"),
    ("policies:\n  - name: a\n    calendar: nope\n    first_response: 1h\n", 3,
     "no calendar named 'nope'"),
    ("policies:\n  - {name: a, first_response: 1h}\n  - {name: a, resolution: 1h}\n", 3,
     "duplicate policy name"),
    ("policies:\n  - name: a\n", 2, "at least one of"),
    ("policies:\n  - name: a\n    first_response: 1h\n    warn_at: 180%\n", 2, "warn_at"),
    ("polices: []\n", 1, "unknown key"),
])
def test_invalid_sla_files(tmp_path: Path, text: str, line: int, needle: str) -> None:
    path = tmp_path / "sla.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_sla(path)
    assert err.value.line == line and needle in str(err.value), str(err.value)


def test_durations() -> None:
    assert parse_duration("90m") == timedelta(minutes=90)
    assert parse_duration("1.5h") == timedelta(minutes=90)
    assert parse_duration("2d") == timedelta(days=2)
    assert parse_duration(30) == timedelta(minutes=30)


def facts(**kw: object) -> TicketFacts:
    base: dict[str, object] = dict(
        priority="normal", level=1, department=None, tags=frozenset(), customer={},
        created_at=MONDAY_9, first_response_at=None, awaiting_reply_since=None, done=False,
        pauses=[])
    base.update(kw)
    return TicketFacts(**base)  # type: ignore[arg-type]


def test_policy_choice_and_deadlines(tmp_path: Path) -> None:
    (tmp_path / "sla.yaml").write_text(SLA, encoding="utf-8")
    config = load_sla(tmp_path / "sla.yaml")
    urgent = choose(config.policies, facts(priority="high"))
    standard = choose(config.policies, facts())
    assert urgent is not None and urgent.name == "urgent"
    assert standard is not None and standard.name == "standard"
    by_key = {d.key: d.at for d in deadlines(standard, facts())}
    assert by_key["first_response:warn"] == MONDAY_9 + timedelta(hours=3)
    assert by_key["first_response:breach"] == MONDAY_9 + timedelta(hours=4)
    # 30 business hours from Monday 09:00 with 10-hour days: Wednesday 19:00 is closed,
    # so Thursday 09:00 minus ... exactly Wednesday 18:00 + 1h → Thursday 09:00.
    assert by_key["resolution:breach"] == datetime(2026, 11, 26, 8, 0, tzinfo=UTC)
    paused = facts(pauses=[(MONDAY_9 + timedelta(hours=1), None)])
    assert deadlines(standard, paused) == []  # the clock is stopped
    resumed = facts(pauses=[(MONDAY_9 + timedelta(hours=1), MONDAY_9 + timedelta(hours=3))])
    by_key = {d.key: d.at for d in deadlines(standard, resumed)}
    assert by_key["first_response:breach"] == MONDAY_9 + timedelta(hours=6)


@pytest.fixture
def desk(tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer,
         db_url: str) -> Iterator[tuple[App, FixedClock]]:
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    (tmp_path / "sla.yaml").write_text(SLA, encoding="utf-8")
    clock = FixedClock(MONDAY_9)
    app = build(settings_for(
        tmp_path, db_url=db_url, imap=mail_user.imap_config(), rules="rules.yaml",
        sla="sla.yaml",
        smtp={"host": smtp_server.host, "port": smtp_server.port, "security": "none"}),
        clock=clock)
    yield app, clock
    app.dispose()


def the_ticket(app: App) -> Ticket:
    with app.sessions() as s:
        t = s.scalar(select(Ticket))
        assert t is not None
        return t


def test_breach_escalates_and_notifies_exactly_once(
    desk: tuple[App, FixedClock], mail_user: MailUser, smtp_server: SmtpServer,
    tmp_path: Path, db_url: str,
) -> None:
    app, clock = desk
    mail_user.append(customer_mail(subject="Export fails"))
    daemon.run_once(app)
    t = the_ticket(app)
    assert t.sla_policy == "standard"
    assert t.sla_first_response_due == MONDAY_9 + timedelta(hours=4)

    clock.advance(timedelta(hours=3, minutes=1))  # past 75 %: the warning
    warned = app.sla_pass()
    assert [(r.target, r.kind) for r in warned] == [("first_response", "warn")]
    clock.advance(timedelta(hours=1))  # past the due time: the breach
    summary = daemon.run_once(app)
    assert [(r.target, r.kind) for r in summary.sla] == [("first_response", "breach")]
    t = the_ticket(app)
    assert (t.level, t.priority) == (2, "high")
    [breached] = sent_to(smtp_server, "level2@example.test")
    # Staff read local time of the policy's calendar, with the business time since.
    text = breached.message.get_content()
    assert "was due Mon 23 Nov, 13:00 (1 min of business time ago)" in text
    assert "+00:00" not in text and "+00:00" not in str(breached.message["Subject"])
    assert app.sla_pass() == []  # nothing raised twice

    # A restart: a new process on the same database raises nothing again.
    clock2 = FixedClock(clock.now() + timedelta(minutes=5))
    again = build(app.settings, clock=clock2)
    assert again.sla_pass() == []
    again.dispose()
    with app.sessions() as s:
        kinds = s.scalars(select(Event.kind).where(Event.kind.like("sla.%"))).all()
    assert sorted(kinds) == ["sla.breached", "sla.warned"]
    assert len(sent_to(smtp_server, "level2@example.test")) == 1

    out = subprocess.run([sys.executable, "-m", "maild", "-c", str(app.settings.config_path),
                          "tickets", "show", t.ref, "--json"], capture_output=True, text=True,
                         timeout=60, check=False)
    sla = json.loads(out.stdout)["sla"]
    assert sla["policy"] == "urgent"  # the raised priority moved it to the urgent policy
    assert [b["target"] for b in sla["breaches"]] == ["first_response"]


def test_several_daemons_raise_each_breach_once(
    desk: tuple[App, FixedClock], mail_user: MailUser, smtp_server: SmtpServer,
) -> None:
    app, clock = desk
    mail_user.append_many([customer_mail(subject=f"Request {i}") for i in range(30)])
    daemon.run_once(app)
    clock.advance(timedelta(hours=5))
    others = [build(app.settings, clock=FixedClock(clock.now())) for _ in range(3)]
    results: list[int] = []
    barrier = threading.Barrier(len(others))

    def run(other: App) -> None:
        barrier.wait()
        results.append(len(other.sla_pass()))

    threads = [threading.Thread(target=run, args=(o,)) for o in others]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=120)
    for o in others:
        o.dispose()
    with app.sessions() as s:
        alerts = s.scalar(select(func.count()).select_from(SlaAlert))
        breached = s.scalar(select(func.count()).select_from(Event)
                            .where(Event.kind == "sla.breached"))
    assert sum(results) == alerts == 30  # first-response breaches (warnings were overtaken)
    assert breached == 30


def test_pause_while_waiting_for_the_customer(
    desk: tuple[App, FixedClock], mail_user: MailUser, smtp_server: SmtpServer,
) -> None:
    app, clock = desk
    mail_user.append(customer_mail(sender="erika@example.com", subject="Question"))
    daemon.run_once(app)
    [note] = sent_to(smtp_server, "level1@example.test")
    clock.advance(timedelta(hours=1))
    mail_user.append(agent_reply(note, "anna@example.test", "#pending\nWhich version?"))
    daemon.run_once(app)
    t = the_ticket(app)
    assert t.status == "waiting_customer" and t.sla_resolution_due is None  # paused
    clock.advance(timedelta(days=3))
    assert app.sla_pass() == []  # no breach while paused
    [answer] = [m for m in sent_to(smtp_server, "erika@example.com")
                if "Which version" in m.message.get_content()]
    mail_user.append(customer_mail(sender="erika@example.com", subject="Re: Question",
                                   in_reply_to=str(answer.message["Message-ID"])))
    daemon.run_once(app)
    t = the_ticket(app)
    assert t.status == "open"
    resumed_at = clock.now()
    # The next response is due 4 business hours after the customer's reply.
    assert t.sla_next_response_due is not None and t.sla_next_response_due > resumed_at
    # Resolution: 30 business hours minus the 1 hour used before the pause.
    assert t.sla_resolution_due is not None and t.sla_resolution_due > resumed_at


def test_sla_check_command(tmp_path: Path, sqlite_url: str, smtp_server: SmtpServer) -> None:
    # A 0.3 s target: starting the `sla check` process alone takes longer than that.
    (tmp_path / "sla.yaml").write_text(
        "policies:\n  - {name: fast, first_response: 0.005m}\n", encoding="utf-8")
    config = write_config(tmp_path, db_url=sqlite_url, sla="sla.yaml",
                          smtp={"host": smtp_server.host, "port": smtp_server.port,
                                "security": "none"})

    def maild(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "maild", "-c", str(config), *args],
                              capture_output=True, text=True, timeout=120, check=False)

    opened = maild("tickets", "open", "--customer", "caller@example.org", "--subject", "Hi")
    assert opened.returncode == 0, opened.stderr
    out = maild("sla", "check", "--json")
    assert out.returncode == 0, out.stderr
    raised = json.loads(out.stdout)
    assert [(r["target"], r["kind"], r["policy"]) for r in raised] == [
        ("first_response", "breach", "fast")]
    assert json.loads(maild("sla", "check", "--json").stdout) == []  # once only


# --------------------------------------------------------------------------------------------
# The pass itself, on tickets written straight into the database (no mail servers)
# --------------------------------------------------------------------------------------------


@pytest.fixture
def quiet_desk(tmp_path: Path, db_url: str) -> Iterator[tuple[App, FixedClock]]:
    """The desk's rules and SLA, no mail servers: the pass queues notifications only."""
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    (tmp_path / "sla.yaml").write_text(SLA, encoding="utf-8")
    clock = FixedClock(MONDAY_9)
    app = build(settings_for(tmp_path, db_url=db_url, rules="rules.yaml", sla="sla.yaml"),
                clock=clock)
    yield app, clock
    app.dispose()


def test_pass_in_batches_leaves_tickets_a_breach_moved_to_the_next_pass(
    quiet_desk: tuple[App, FixedClock],
) -> None:
    app, clock = quiet_desk
    # Sunday 23:00 in Berlin: the office clock starts on Monday 08:00, so the first response
    # is due on Monday 12:00; the 24x7 clock of the urgent policy has run since Sunday.
    ids = add_tickets(app, 5, MONDAY_9 - timedelta(hours=10))
    clock.advance(timedelta(hours=3, minutes=1))  # Monday 12:01
    updates: list[str] = []

    def count(*args: object) -> None:  # (conn, cursor, statement, ...)
        if str(args[2]).startswith("UPDATE tickets"):
            updates.append(str(args[2]))

    event.listen(app.engine, "before_cursor_execute", count)
    first = app.sla_pass(batch=2)
    event.remove(app.engine, "before_cursor_execute", count)
    # The breach (its warning overtaken) escalates and raises the priority to high: the
    # urgent policy, whose 8-hour resolution was due at 07:00. That is the next pass's, and
    # no batch of this one looked at a ticket twice.
    assert sorted((r.ticket_id, r.target, r.kind) for r in first) == [
        (i, "first_response", "breach") for i in ids]
    # The new SLA columns: one statement per batch of 2, 2 and 1, not one per ticket.
    assert len([u for u in updates if "sla_next_check_at" in u]) == 3
    second = app.sla_pass()
    assert sorted((r.ticket_id, r.target, r.kind, r.policy) for r in second) == [
        (i, "resolution", "breach", "urgent") for i in ids]
    assert app.sla_pass() == []
    with app.sessions() as s:
        for t in s.scalars(select(Ticket).where(Ticket.id.in_(ids))):
            assert (t.priority, t.level, t.sla_policy) == ("high", 2, "urgent")
            assert t.sla_resolution_due == MONDAY_9 - timedelta(hours=2)
            assert t.sla_next_check_at is None
            assert t.sla_alerted == ["first_response:warn", "first_response:breach",
                                     "resolution:warn", "resolution:breach"]
        kinds = s.scalars(select(Event.kind).where(Event.ticket_id == ids[0])
                          .order_by(Event.id)).all()
    # The actions' events first, then the pass's own, in the order they happened.
    assert kinds == ["priority.changed", "escalated", "notification.queued", "notified",
                     "sla.breached", "notification.queued", "notified", "sla.breached"]


def test_batch_writes(quiet_desk: tuple[App, FixedClock]) -> None:
    app, _ = quiet_desk
    ids = add_tickets(app, 2, MONDAY_9)
    at = MONDAY_9 + timedelta(hours=1, microseconds=7)
    alert = {"target": "first_response", "kind": "breach", "policy": "standard",
             "due_at": at, "raised_at": at}
    with app.sessions() as s, s.begin():
        writes = BatchWrites(app.engine.dialect.name)
        rows = [{"ticket_id": i, "key": "k1", **alert} for i in ids]
        assert writes.claim(s.connection(), rows) == {(i, "k1") for i in ids}
        again = [*rows, {"ticket_id": ids[0], "key": "k2", **alert}]
        assert writes.claim(s.connection(), again) == {(ids[0], "k2")}  # the others exist
        writes.update_tickets(s.connection(), [
            {"ticket_id": ids[0], "priority": "high", "sla_next_check_at": None,
             "sla_alerted": ["k1", "k2"], "sla_resolution_due": at},
            {"ticket_id": ids[1], "priority": "low", "sla_next_check_at": at,
             "sla_alerted": [], "sla_resolution_due": None}])
        writes.insert_events(s.connection(), [
            {"ticket_id": ids[n % 2], "at": at, "kind": f"e{n}",
             "data": {"n": n, "text": 'quotes " and \\ backslashes', "list": [n]}}
            for n in range(5)])
    with app.sessions() as s:
        one, two = (s.get_one(Ticket, i) for i in ids)
        assert (one.priority, one.sla_next_check_at, one.sla_alerted, one.sla_resolution_due
                ) == ("high", None, ["k1", "k2"], at)
        assert (two.priority, two.sla_next_check_at, two.sla_alerted, two.sla_resolution_due
                ) == ("low", at, [], None)
        assert one.subject == "Request 0" and one.level == 1  # columns not given: unchanged
        events = s.scalars(select(Event).where(Event.kind.like("e%")).order_by(Event.id)).all()
        assert [(e.kind, e.ticket_id, e.at, e.data) for e in events] == [
            (f"e{n}", ids[n % 2], at,
             {"n": n, "text": 'quotes " and \\ backslashes', "list": [n]}) for n in range(5)]
        due = s.scalars(select(SlaAlert.due_at).where(SlaAlert.ticket_id == ids[0])).all()
        assert due == [at, at]


@pytest.mark.parametrize("warn_at", [0.75, 0.8, 1.0])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(created=st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 12, 31),
                            timezones=st.just(UTC)),
       answered=st.one_of(st.none(), st.timedeltas(timedelta(0), timedelta(days=9))),
       paused=st.one_of(st.none(), st.timedeltas(timedelta(0), timedelta(days=9))))
def test_deadlines_are_the_business_time_from_each_start(
    tmp_path_factory: pytest.TempPathFactory, warn_at: float, created: datetime,
    answered: timedelta | None, paused: timedelta | None,
) -> None:
    # Each breach the target after its clock's start, each warning its share of it, whether
    # or not `deadlines` walks the calendar once for both.
    path = tmp_path_factory.mktemp("sla") / "sla.yaml"
    path.write_text(SLA.replace("warn_at: 75%", f"warn_at: {warn_at}"), encoding="utf-8")
    [_, standard] = load_sla(path).policies
    first = None if answered is None else created + answered
    pauses = [] if paused is None else [(created + paused, created + 2 * paused)]
    ticket = facts(created_at=created, first_response_at=first, pauses=pauses,
                   awaiting_reply_since=None if first is None else first + timedelta(hours=1))
    starts = {"first_response": created, "next_response": ticket.awaiting_reply_since,
              "resolution": created}
    found = deadlines(standard, ticket)
    assert found
    for d in found:
        target = getattr(standard.spec, d.target)
        assert d.start == starts[d.target]
        since = [(max(a, d.start), b) for a, b in pauses if b is None or b > d.start]
        share = target * warn_at if d.kind == "warn" else target
        assert d.at == due_with_pauses(standard.calendar, d.start, share, since)
