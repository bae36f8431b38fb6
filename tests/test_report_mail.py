"""The KPI report by mail (issue 15, "Scheduled report by mail"): due once per period in
the organisation's time zone (table-tested across DST and month ends), mailed through the
outbox as multipart/alternative with the charts inline as PNG (`cid:`), with the figures of
`maild report` for the same period, once across restarts and two daemons on PostgreSQL."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from maild import daemon
from maild.app import App, build
from maild.clock import FixedClock
from maild.reports.command import Options
from maild.reports.command import build as build_report
from maild.reports.job import due, period_for
from maild.reports.render import to_text
from maild.settings import ReportSchedule
from maild.store.models import Outbox
from tests.kit import customer_mail, settings_for
from tests.servers.dovecot import MailUser
from tests.servers.smtp import SmtpServer
from tests.test_agents import RULES, agent_reply, sent_to

BERLIN = ZoneInfo("Europe/Berlin")
LEAD = "lead@example.test"
WEEKLY = {"name": "weekly", "to": [LEAD], "every": "week", "on": "monday", "at": "07:00"}


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


@pytest.mark.parametrize(("plan", "now", "key"), [
    (WEEKLY, berlin(2026, 12, 7, 6, 59), "2026-11-30"),
    (WEEKLY, berlin(2026, 12, 7, 7, 0), "2026-12-07"),
    (WEEKLY, berlin(2026, 3, 30, 7, 0), "2026-03-30"),  # the Monday after the DST change
    ({**WEEKLY, "every": "day", "on": None}, berlin(2026, 12, 7, 6, 0), "2026-12-06"),
    ({**WEEKLY, "every": "month", "on": None}, berlin(2026, 12, 1, 7, 0), "2026-12-01"),
    ({**WEEKLY, "every": "month", "on": None}, berlin(2026, 12, 31, 23, 0), "2026-12-01"),
    ({**WEEKLY, "every": "month", "on": 28}, berlin(2027, 3, 1, 8, 0), "2027-02-28"),
])
def test_when_a_report_is_due(plan: dict[str, object], now: datetime, key: str) -> None:
    assert due(ReportSchedule.model_validate(plan), now, BERLIN) == key


@pytest.mark.parametrize(("plan", "key", "first", "end"), [
    (WEEKLY, "2026-12-07", berlin(2026, 11, 30), berlin(2026, 12, 7)),
    ({**WEEKLY, "every": "day", "on": None}, "2026-03-30", berlin(2026, 3, 29),
     berlin(2026, 3, 30)),  # a 23-hour day
    ({**WEEKLY, "every": "month", "on": None}, "2027-03-01", berlin(2027, 2, 1),
     berlin(2027, 3, 1)),
])
def test_the_period_reported(plan: dict[str, object], key: str, first: datetime,
                             end: datetime) -> None:
    period = period_for(ReportSchedule.model_validate(plan), key, BERLIN)
    assert (period.start, period.end) == (first, end)


def test_a_report_schedule_is_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="weekday"):
        ReportSchedule.model_validate({**WEEKLY, "on": 3})
    with pytest.raises(ValueError, match="to"):
        ReportSchedule.model_validate({"every": "week"})


def make_desk(tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, db_url: str,
              clock: FixedClock) -> App:
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    return build(settings_for(
        tmp_path, db_url=db_url, imap=mail_user.imap_config(), rules="rules.yaml",
        timezone="Europe/Berlin", csat={"enabled": False}, reports=[WEEKLY],
        smtp={"host": smtp_server.host, "port": smtp_server.port, "security": "none"}),
        clock=clock)


@pytest.fixture
def desk(tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer,
         db_url: str) -> Iterator[App]:
    app = make_desk(tmp_path, mail_user, smtp_server, db_url,
                    FixedClock(datetime(2026, 12, 1, 9, 0, tzinfo=UTC)))
    yield app
    app.dispose()


def reports(smtp: SmtpServer, week: str = "2026-11-30") -> list[EmailMessage]:
    """The reports of the week beginning `week` (a daemon that starts after a report's
    time sends the latest one due at once: the desk started on a Tuesday)."""
    return [m.message for m in sent_to(smtp, LEAD)
            if f"Support report {week}" in str(m.message["Subject"])]


def test_the_weekly_report_by_mail(
    desk: App, mail_user: MailUser, smtp_server: SmtpServer, tmp_path: Path, db_url: str
) -> None:
    clock = desk.clock
    assert isinstance(clock, FixedClock)
    for subject in ("Printer broken", "Invoice wrong"):
        mail_user.append(customer_mail(sender="erika@example.com", subject=subject))
        daemon.run_once(desk)
        [note] = [m for m in sent_to(smtp_server, "level1@example.test")
                  if subject in str(m.message["Subject"])]
        mail_user.append(agent_reply(note, "anna@example.test", "#resolve\nDone."))
        clock.at = clock.at.replace(hour=clock.at.hour + 1)
        daemon.run_once(desk)

    clock.at = berlin(2026, 12, 7, 6, 59).astimezone(UTC)
    daemon.run_once(desk)
    assert reports(smtp_server) == []
    clock.at = berlin(2026, 12, 7, 7, 0).astimezone(UTC)
    daemon.run_once(desk)
    daemon.run_once(desk)
    [mail] = reports(smtp_server)
    assert str(mail["Subject"]) == "Support report 2026-11-30 to 2026-12-06"
    assert mail.get_content_type() == "multipart/alternative"
    plain, related = list(mail.iter_parts())
    assert plain.get_content_type() == "text/plain"
    assert related.get_content_type() == "multipart/related"
    html_part, *images = list(related.iter_parts())
    assert html_part.get_content_type() == "text/html" and len(images) == 5
    page = str(html_part.get_content())
    for image in images:
        assert image.get_content_type() == "image/png"
        cid = str(image["Content-ID"]).strip("<>")
        assert f'src="cid:{cid}"' in page  # every image is shown, every cid resolves
        assert image.get_content().startswith(b"\x89PNG\r\n\x1a\n")
    assert page.count('src="cid:') == len(images)
    assert len(mail.as_bytes()) < 1_000_000

    # The text is `maild report`'s for the same week, figures and all.
    figures = build_report(desk.settings, Options(period="week"), clock)
    expected = to_text(figures, "department")
    assert expected in str(plain.get_content()).replace("\r\n", "\n")
    assert "tickets_created" in expected and figures.totals.tickets_created == 2

    # A restart sends nothing again; the next Monday, the next week.
    desk.dispose()
    app = make_desk(tmp_path, mail_user, smtp_server, db_url, clock)
    try:
        daemon.run_once(app)
        assert len(reports(smtp_server)) == 1
        clock.at = berlin(2026, 12, 14, 7, 0).astimezone(UTC)
        daemon.run_once(app)
        [next_week] = reports(smtp_server, "2026-12-07")
        assert str(next_week["Subject"]) == "Support report 2026-12-07 to 2026-12-13"
    finally:
        app.dispose()


def test_two_daemons_send_one_report(
    tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, pg_url: str
) -> None:
    clock = FixedClock(berlin(2026, 12, 7, 7, 5).astimezone(UTC))
    first = make_desk(tmp_path, mail_user, smtp_server, pg_url, clock)
    second = make_desk(tmp_path, mail_user, smtp_server, pg_url, clock)
    try:
        for _ in range(2):
            first.run_jobs()
            second.run_jobs()
        with first.sessions() as s:
            rows = s.scalars(select(Outbox.raw).where(Outbox.rcpt_to == LEAD)).all()
        assert len(rows) == 1
        parsed = email.message_from_bytes(rows[0], policy=email.policy.SMTP)
        assert "Support report 2026-11-30" in str(parsed["Subject"])
    finally:
        first.dispose()
        second.dispose()
