"""Customer satisfaction by email (issue 15, sections 2 and 3), end to end against Dovecot
and aiosmtpd: the survey after resolution, ratings by reply and by `mailto:` link, forged
and foreign ratings, opt-out, throttling, a bouncing address, and the satisfaction
guarantee that hands an unhappy customer to management."""

from __future__ import annotations

import email.policy
import email.utils
import re
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from maild import daemon
from maild.app import App, build
from maild.clock import FixedClock
from maild.csat.reading import OptOut, Rating, needs_management, read_answer
from maild.store.models import CsatOptOut, Event, Quarantine, Suppression, Ticket
from tests.kit import SUPPORT, customer_mail, settings_for
from tests.servers.dovecot import MailUser
from tests.servers.smtp import ReceivedMessage, SmtpServer
from tests.test_agents import RULES, agent_reply, sent_to

RULES_WITH_BOARD = RULES + """
management: {address: management@example.test, team: board@example.test, level: 2,
             priority: high}
"""


@pytest.mark.parametrize(("text", "score", "expected"), [
    ("2 - took far too long", None, Rating(2, "took far too long")),
    ("5", None, Rating(5, "")),
    ("4/5: quick and friendly\nthanks!", None, Rating(4, "quick and friendly\nthanks!")),
    ("  3. ok\n\nOn Mon, 1 Dec 2026 Support wrote:\n> How did we do?", None, Rating(3, "ok")),
    ("", 5, Rating(5, "")),
    ("great service", 4, Rating(4, "great service")),
    ("stop", None, OptOut()),
    ("Abbestellen bitte", None, OptOut()),
    ("10 out of 10", None, None),  # not a score from 1 to 5
    ("2.5", None, None),
    ("thanks a lot", None, None),
])
def test_reading_an_answer(text: str, score: int | None,
                           expected: Rating | OptOut | None) -> None:
    assert read_answer(text, score) == expected


@pytest.mark.parametrize(("rating", "expected"), [
    (Rating(2, ""), True), (Rating(3, ""), False),
    (Rating(5, "but this is a complaint"), True), (Rating(4, "BESCHWERDE"), True),
])
def test_the_guarantee_threshold(rating: Rating, expected: bool) -> None:
    assert needs_management(rating, 2, ["complaint", "beschwerde"]) is expected


@pytest.fixture
def desk(tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer,
         db_url: str) -> Iterator[App]:
    (tmp_path / "rules.yaml").write_text(RULES_WITH_BOARD, encoding="utf-8")
    app = build(settings_for(
        tmp_path, db_url=db_url, imap=mail_user.imap_config(), rules="rules.yaml",
        smtp={"host": smtp_server.host, "port": smtp_server.port, "security": "none"}),
        clock=FixedClock())
    yield app
    app.dispose()


def resolve(app: App, mail_user: MailUser, smtp: SmtpServer, customer: str,
            subject: str) -> Ticket:
    """A customer writes, the 1st level answers and resolves."""
    mail_user.append(customer_mail(sender=customer, subject=subject))
    daemon.run_once(app)
    [notification] = [m for m in sent_to(smtp, "level1@example.test")
                      if subject in str(m.message["Subject"])]
    mail_user.append(agent_reply(notification, "anna@example.test", "#resolve\nDone."))
    daemon.run_once(app)
    with app.sessions() as s:
        ticket = s.scalar(select(Ticket).where(Ticket.subject == subject))
    assert ticket is not None and ticket.status == "resolved"
    return ticket


def surveys(smtp: SmtpServer, customer: str) -> list[ReceivedMessage]:
    return [m for m in sent_to(smtp, customer) if "How did we do" in str(m.message["Subject"])]


def answer(survey: ReceivedMessage, sender: str, body: str, to: str | None = None) -> bytes:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    msg["To"] = to or str(survey.message["Reply-To"])
    msg["Subject"] = "Re: " + str(survey.message["Subject"])
    msg["Message-ID"] = email.utils.make_msgid(domain="example.com")
    msg["In-Reply-To"] = str(survey.message["Message-ID"])
    msg.set_content(body)
    return msg.as_bytes()


def events(app: App, ticket: Ticket, kind: str) -> list[dict[str, object]]:
    with app.sessions() as s:
        return [e.data for e in s.scalars(select(Event).where(
            Event.ticket_id == ticket.id, Event.kind == kind).order_by(Event.id))]


def test_survey_rating_and_the_guarantee(
    desk: App, mail_user: MailUser, smtp_server: SmtpServer
) -> None:
    clock = desk.clock
    assert isinstance(clock, FixedClock)
    customer = "erika@example.com"
    ticket = resolve(desk, mail_user, smtp_server, customer, "Server slow")
    clock.advance(timedelta(hours=23))
    daemon.run_once(desk)
    assert surveys(smtp_server, customer) == []  # the delay is 24 hours
    clock.advance(timedelta(hours=1, minutes=1))
    daemon.run_once(desk)
    daemon.run_once(desk)  # a second run asks nobody again
    [survey] = surveys(smtp_server, customer)
    text = survey.message.get_content()
    links = re.findall(r"mailto:(support\+rate-[^?\s]+)", text)
    assert len(links) == 5 and all(ticket.ref.lower() in link for link in links)
    assert str(survey.message["Reply-To"]).startswith("support+rate-")
    before = len(smtp_server.messages)

    mail_user.append(answer(survey, customer, "2 - took far too long"))
    daemon.run_once(desk)
    [rated] = events(desk, ticket, "csat.rated")
    assert (rated["score"], rated["comment"], rated["level"]) == (2, "took far too long", 1)
    with desk.sessions() as s:
        case = s.scalar(select(Ticket).where(Ticket.linked_ticket_id == ticket.id))
        status = s.get_one(Ticket, ticket.id).status
    assert case is not None and case.department == "management"
    assert status == "resolved"  # a rating reopens nothing
    new = smtp_server.messages[before:]
    assert sorted(r for m in new for r in m.rcpt_tos) == ["board@example.test", customer]
    [board] = sent_to(smtp_server, "board@example.test")
    board_text = board.message.get_content()
    assert "Rating: 2 of 5" in board_text and "took far too long" in board_text
    assert "Done." in board_text  # the whole history: the agent's answer
    [told] = [m for m in new if customer in m.rcpt_tos]
    assert case.ref in str(told.message["Subject"])
    assert "management" in told.message.get_content().lower()


def test_mailto_rating_forged_and_foreign_ratings(
    desk: App, mail_user: MailUser, smtp_server: SmtpServer
) -> None:
    clock = desk.clock
    assert isinstance(clock, FixedClock)
    ticket = resolve(desk, mail_user, smtp_server, "bob@example.org", "Invoice")
    clock.advance(timedelta(hours=25))
    daemon.run_once(desk)
    [survey] = surveys(smtp_server, "bob@example.org")
    five = re.search(r"mailto:(support\+rate-[^?\s]+-5\.[0-9a-f]+@example\.test)",
                     survey.message.get_content())
    assert five is not None
    before = len(smtp_server.messages)
    forged = five.group(1).replace(five.group(1).split(".")[1][:6], "000000")
    mail_user.append(answer(survey, "bob@example.org", "", to=forged))
    mail_user.append(answer(survey, "mallory@evil.example", "1 terrible", to=five.group(1)))
    mail_user.append(answer(survey, "bob@example.org", "", to=five.group(1)))
    daemon.run_once(desk)
    assert [e["score"] for e in events(desk, ticket, "csat.rated")] == [5]
    assert len(smtp_server.messages) == before  # no acknowledgement, nothing to anyone
    with desk.sessions() as s:
        reasons = sorted(s.scalars(select(Quarantine.reason)))
        assert s.scalar(select(Ticket).where(Ticket.linked_ticket_id == ticket.id)) is None
    assert len(reasons) == 2
    assert "not a participant" in reasons[0] or "not a participant" in reasons[1]
    assert any("wrong signature" in r for r in reasons)


def test_opt_out_throttling_and_a_bouncing_address(
    desk: App, mail_user: MailUser, smtp_server: SmtpServer
) -> None:
    clock = desk.clock
    assert isinstance(clock, FixedClock)
    first = resolve(desk, mail_user, smtp_server, "carol@example.net", "First question")
    clock.advance(timedelta(hours=25))
    daemon.run_once(desk)
    [survey] = surveys(smtp_server, "carol@example.net")
    # A second ticket resolved within the throttling period gets no survey.
    second = resolve(desk, mail_user, smtp_server, "carol@example.net", "Second question")
    clock.advance(timedelta(hours=25))
    daemon.run_once(desk)
    assert len(surveys(smtp_server, "carol@example.net")) == 1
    assert events(desk, second, "csat.survey_skipped")[0]["reason"] == \
        "surveyed within 30 days"
    # She opts out: honoured for every later survey, even after the throttling period.
    mail_user.append(answer(survey, "carol@example.net", "stop"))
    daemon.run_once(desk)
    with desk.sessions() as s:
        assert s.get(CsatOptOut, "carol@example.net") is not None
    clock.advance(timedelta(days=40))
    third = resolve(desk, mail_user, smtp_server, "carol@example.net", "Third question")
    clock.advance(timedelta(hours=25))
    daemon.run_once(desk)
    assert len(surveys(smtp_server, "carol@example.net")) == 1
    assert "opted out" in str(events(desk, third, "csat.survey_skipped")[0]["reason"])
    assert first.id != third.id
    # An address that bounced permanently gets no survey.
    bounced = resolve(desk, mail_user, smtp_server, "dan@example.com", "Bounced")
    with desk.sessions() as s, s.begin():
        s.add(Suppression(address="dan@example.com", until=clock.now() + timedelta(days=30),
                          reason="550 no such user", created_at=clock.now()))
    clock.advance(timedelta(hours=25))
    daemon.run_once(desk)
    assert surveys(smtp_server, "dan@example.com") == []
    assert events(desk, bounced, "autoreply.suppressed")
    assert SUPPORT
