"""The lifecycle (issue 18, items 3-5), end to end against Dovecot and aiosmtpd with the
clock moved: a ticket waiting for the customer is reminded once, then resolved with a
closing mail when nobody answers; a customer's answer cancels both; a resolved ticket is
closed after a week, and a reply after that opens a linked follow-up; nothing happens
twice after a restart or with two daemons on one database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from maild import daemon
from maild.app import App, build
from maild.businesstime.calendar import BusinessCalendar
from maild.clock import FixedClock
from maild.lifecycle.days import after_business_days, weekdays
from maild.store.models import Event, Outbox, Ticket
from tests.kit import customer_mail, settings_for
from tests.servers.dovecot import MailUser
from tests.servers.smtp import ReceivedMessage, SmtpServer
from tests.test_agents import RULES, agent_reply, sent_to

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = BusinessCalendar(
    name="office", tz=BERLIN, hours=dict.fromkeys(range(5), ((time(8), time(17)),)),
    holidays=frozenset({date(2026, 12, 24), date(2026, 12, 25)}))
CUSTOMER = "erika@example.com"


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


@pytest.mark.parametrize(("cal", "start", "days", "expected"), [
    (OFFICE, berlin(2026, 12, 4, 16), 3, berlin(2026, 12, 9, 16)),  # Fri -> Wed
    (OFFICE, berlin(2026, 12, 7, 9), 1, berlin(2026, 12, 8, 9)),  # Mon -> Tue
    (OFFICE, berlin(2026, 12, 5, 12), 1, berlin(2026, 12, 7, 12)),  # Sat -> Mon
    (OFFICE, berlin(2026, 12, 22, 10), 2, berlin(2026, 12, 28, 10)),  # over two holidays
    (OFFICE, berlin(2026, 12, 7, 9), 0, berlin(2026, 12, 7, 9)),
    (OFFICE, berlin(2026, 3, 27, 10), 1, berlin(2026, 3, 30, 10)),  # over the DST change
    (weekdays(ZoneInfo("UTC")), datetime(2026, 12, 24, 23, tzinfo=UTC), 1,
     datetime(2026, 12, 25, 23, tzinfo=UTC)),  # no holidays in the fallback
])
def test_business_days(cal: BusinessCalendar, start: datetime, days: int,
                       expected: datetime) -> None:
    assert after_business_days(cal, start, days) == expected


@pytest.fixture
def desk(tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer,
         db_url: str) -> Iterator[App]:
    app = make_desk(tmp_path, mail_user, smtp_server, db_url, FixedClock(
        datetime(2026, 12, 4, 9, 0, tzinfo=UTC)))  # a Friday, 10:00 in Berlin
    yield app
    app.dispose()


def make_desk(tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, db_url: str,
              clock: FixedClock) -> App:
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    return build(settings_for(
        tmp_path, db_url=db_url, imap=mail_user.imap_config(), rules="rules.yaml",
        timezone="Europe/Berlin", csat={"enabled": False},
        smtp={"host": smtp_server.host, "port": smtp_server.port, "security": "none"}),
        clock=clock)


def pending(app: App, mail_user: MailUser, smtp: SmtpServer, subject: str) -> int:
    """A customer writes; the 1st level asks back and sets the ticket pending."""
    mail_user.append(customer_mail(sender=CUSTOMER, subject=subject))
    daemon.run_once(app)
    [notification] = [m for m in sent_to(smtp, "level1@example.test")
                      if subject in str(m.message["Subject"])]
    mail_user.append(agent_reply(notification, "anna@example.test",
                                 "#pending\nWhich contract number do you mean?"))
    daemon.run_once(app)
    with app.sessions() as s:
        ticket = s.scalar(select(Ticket).where(Ticket.subject == subject))
        assert ticket is not None and ticket.status == "waiting_customer"
        return ticket.id


def mails(smtp: SmtpServer, words: str) -> list[ReceivedMessage]:
    return [m for m in sent_to(smtp, CUSTOMER) if words in str(m.message["Subject"])]


def status_and_events(app: App, ticket_id: int) -> tuple[str, list[str]]:
    with app.sessions() as s:
        kinds = s.scalars(select(Event.kind).where(
            Event.ticket_id == ticket_id, Event.kind.like("lifecycle.%")).order_by(Event.id))
        return s.get_one(Ticket, ticket_id).status, list(kinds)


def test_reminder_then_resolution_then_closing_and_a_follow_up(
    desk: App, mail_user: MailUser, smtp_server: SmtpServer, tmp_path: Path, db_url: str
) -> None:
    clock = desk.clock
    assert isinstance(clock, FixedClock)
    ticket_id = pending(desk, mail_user, smtp_server, "Contract question")
    clock.advance(timedelta(days=4, hours=23))  # Wednesday 09:00: two business days
    daemon.run_once(desk)
    assert mails(smtp_server, "waiting for your answer") == []
    clock.advance(timedelta(hours=1, minutes=1))  # Wednesday 10:01: three
    daemon.run_once(desk)
    daemon.run_once(desk)
    [reminder] = mails(smtp_server, "waiting for your answer")
    assert "Contract question" in str(reminder.message["Subject"])
    assert str(reminder.message["Auto-Submitted"]).startswith("auto-")  # never a loop
    assert status_and_events(desk, ticket_id) == ("waiting_customer", ["lifecycle.reminded"])

    # A restart, four business days after the reminder (Thursday to Tuesday).
    desk.dispose()
    clock.advance(timedelta(days=6))
    app = make_desk(tmp_path, mail_user, smtp_server, db_url, clock)
    try:
        daemon.run_once(app)
        daemon.run_once(app)
        [closing] = mails(smtp_server, "Request closed")
        assert closing.message["In-Reply-To"] is not None  # in the customer's thread
        assert status_and_events(app, ticket_id) == (
            "resolved", ["lifecycle.reminded", "lifecycle.resolved"])
        assert len(mails(smtp_server, "waiting for your answer")) == 1

        clock.advance(timedelta(days=6, hours=23))
        daemon.run_once(app)
        assert status_and_events(app, ticket_id)[0] == "resolved"
        clock.advance(timedelta(hours=1))  # seven days resolved
        daemon.run_once(app)
        assert status_and_events(app, ticket_id) == (
            "closed", ["lifecycle.reminded", "lifecycle.resolved", "lifecycle.closed"])

        # Answering the closing mail after tickets.reopen_days: a linked follow-up.
        clock.advance(timedelta(days=15))
        mail_user.append(customer_mail(sender=CUSTOMER, subject="Re: Contract question",
                                       in_reply_to=str(closing.message["Message-ID"]),
                                       body="It is contract 4711."))
        daemon.run_once(app)
        with app.sessions() as s:
            follow_up = s.scalar(select(Ticket).where(Ticket.linked_ticket_id == ticket_id))
            assert follow_up is not None and follow_up.status == "new"
            assert s.get_one(Ticket, ticket_id).status == "closed"
    finally:
        app.dispose()


def test_an_answer_cancels_and_a_new_pending_starts_afresh(
    desk: App, mail_user: MailUser, smtp_server: SmtpServer
) -> None:
    clock = desk.clock
    assert isinstance(clock, FixedClock)
    ticket_id = pending(desk, mail_user, smtp_server, "Router question")
    clock.advance(timedelta(days=5, hours=1))  # Wednesday 11:00
    daemon.run_once(desk)
    [reminder] = mails(smtp_server, "waiting for your answer")
    mail_user.append(customer_mail(sender=CUSTOMER, subject="Re: Router question",
                                   in_reply_to=str(reminder.message["Message-ID"]),
                                   body="The FritzBox 7590."))
    daemon.run_once(desk)
    assert status_and_events(desk, ticket_id)[0] == "open"
    clock.advance(timedelta(days=14))
    daemon.run_once(desk)
    assert mails(smtp_server, "Request closed") == []
    assert status_and_events(desk, ticket_id) == ("open", ["lifecycle.reminded"])

    # Pending again: a fresh cycle with a reminder of its own.
    [notification] = [m for m in sent_to(smtp_server, "level1@example.test")
                      if "replied" in str(m.message["Subject"])]
    mail_user.append(agent_reply(notification, "anna@example.test",
                                 "#pending\nWhich firmware?"))
    daemon.run_once(desk)
    clock.advance(timedelta(days=5, minutes=1))
    daemon.run_once(desk)
    assert len(mails(smtp_server, "waiting for your answer")) == 2


def test_two_daemons_remind_and_resolve_once(
    tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, pg_url: str
) -> None:
    clock = FixedClock(datetime(2026, 12, 4, 9, 0, tzinfo=UTC))
    first = make_desk(tmp_path, mail_user, smtp_server, pg_url, clock)
    second = make_desk(tmp_path, mail_user, smtp_server, pg_url, clock)
    try:
        pending(first, mail_user, smtp_server, "Invoice question")
        for days in (5, 7):  # the reminder (Wednesday), the resolution (a week later)
            clock.advance(timedelta(days=days, hours=1))
            for _ in range(2):
                first.run_jobs()
                second.run_jobs()
        with first.sessions() as s:
            kinds = dict(s.execute(select(Outbox.kind, func.count()).where(
                Outbox.kind.in_(("reminder", "auto_resolved"))).group_by(Outbox.kind)).all())
        assert kinds == {"reminder": 1, "auto_resolved": 1}
    finally:
        first.dispose()
        second.dispose()


def test_settings_turn_each_step_off(tmp_path: Path, mail_user: MailUser,
                                     smtp_server: SmtpServer, sqlite_url: str) -> None:
    clock = FixedClock(datetime(2026, 12, 4, 9, 0, tzinfo=UTC))
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    app = build(settings_for(
        tmp_path, db_url=sqlite_url, imap=mail_user.imap_config(), rules="rules.yaml",
        tickets={"remind_after": 0, "close_after_days": 0},
        smtp={"host": smtp_server.host, "port": smtp_server.port, "security": "none"}),
        clock=clock)
    try:
        ticket_id = pending(app, mail_user, smtp_server, "Quiet question")
        clock.advance(timedelta(days=60))
        daemon.run_once(app)
        assert status_and_events(app, ticket_id) == ("waiting_customer", [])
    finally:
        app.dispose()
