"""The agents' day (issue 18, items 1, 2 and 5), end to end against Dovecot and aiosmtpd
with the clock moved: the daily digest's content and order for two agents and a team,
queue commands by mail to an agent's signed queue address, forged and foreign requests
that get nothing, and each digest once per recipient and day across restarts and two
daemons on one PostgreSQL."""

from __future__ import annotations

import email.policy
import email.utils
import re
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, time
from email.message import EmailMessage
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from maild import daemon
from maild.app import App, build
from maild.businesstime.calendar import BusinessCalendar
from maild.clock import FixedClock
from maild.digest.lines import Line, Urgency, line, ordered
from maild.store.models import CommandMail, Outbox, Quarantine, Ticket
from tests.kit import add_tickets, customer_mail, settings_for
from tests.servers.dovecot import MailUser
from tests.servers.smtp import ReceivedMessage, SmtpServer
from tests.test_agents import RULES, agent_reply, sent_to

BERLIN = ZoneInfo("Europe/Berlin")
OFFICE = BusinessCalendar(name="office", tz=BERLIN,
                          hours=dict.fromkeys(range(5), ((time(8), time(18)),)))
SLA = """
calendars:
  office:
    timezone: Europe/Berlin
    hours: {mon-fri: ["08:00-18:00"]}
policies:
  - name: standard
    calendar: office
    first_response: 4h
    next_response: 8h
    resolution: 30h
"""
ANNA, CLARA = "anna@example.test", "clara@example.test"


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 12, day, hour, minute, tzinfo=BERLIN).astimezone(UTC)


def row(ref: str, status: str = "open", first_due: datetime | None = None,
        resolution_due: datetime | None = None, answered: bool = False) -> Ticket:
    return Ticket(ref=ref, subject=ref, requester="c@example.com", requester_name="",
                  status=status, secret="0", created_at=at(3, 9), updated_at=at(3, 9),
                  first_response_at=at(3, 10) if answered else None,
                  awaiting_reply_since=None, sla_first_response_due=first_due,
                  sla_next_response_due=None, sla_resolution_due=resolution_due,
                  sla_pauses=[], sla_alerted=[])


def test_lines_sort_by_urgency() -> None:
    now = at(4, 7, 30)  # Friday 07:30
    made = [
        line(row("LATER", resolution_due=at(8, 12), answered=True), "a", now, OFFICE),
        line(row("TODAY", first_due=at(4, 10)), "a", now, OFFICE),
        line(row("WAIT", status="waiting_customer"), "a", now, OFFICE,
             waiting_since=at(3, 9)),
        line(row("NONE"), "a", now, OFFICE),
        line(row("RAISED", first_due=at(8, 9)), "a", now, OFFICE, breached=True),
        line(row("PAST", first_due=at(3, 13)), "a", now, OFFICE),
        line(row("TODAY2", first_due=at(4, 9)), "a", now, OFFICE),
    ]
    got: list[Line] = ordered(made)
    assert [(x.ref, x.urgency) for x in got] == [
        ("PAST", Urgency.BREACHED), ("RAISED", Urgency.BREACHED), ("TODAY2", Urgency.TODAY),
        ("TODAY", Urgency.TODAY), ("LATER", Urgency.LATER), ("NONE", Urgency.NONE),
        ("WAIT", Urgency.WAITING)]
    notes = {x.ref: x.note for x in got}
    assert notes["TODAY"] == "due today 10:00, 2 h left"  # business hours from 08:00
    assert notes["PAST"] == "SLA breached, was due 2026-12-03 13:00"
    assert notes["WAIT"] == "waiting 22 h 30 min"
    assert notes["LATER"] == "due 2026-12-08 12:00"


def make_desk(tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, db_url: str,
              clock: FixedClock) -> App:
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    (tmp_path / "sla.yaml").write_text(SLA, encoding="utf-8")
    return build(settings_for(
        tmp_path, db_url=db_url, imap=mail_user.imap_config(), rules="rules.yaml",
        sla="sla.yaml", timezone="Europe/Berlin", csat={"enabled": False},
        digest={"at": "07:30"},
        smtp={"host": smtp_server.host, "port": smtp_server.port, "security": "none"}),
        clock=clock)


@pytest.fixture
def desk(tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer,
         db_url: str) -> Iterator[App]:
    app = make_desk(tmp_path, mail_user, smtp_server, db_url, FixedClock(at(3, 9)))
    yield app
    app.dispose()


def write(app: App, mail_user: MailUser, smtp: SmtpServer, subject: str,
          agent_says: str | None) -> str:
    """A customer writes; Anna answers the notification with `agent_says`; the ref."""
    mail_user.append(customer_mail(sender=f"{subject.split()[0].lower()}@example.com",
                                   subject=subject))
    daemon.run_once(app)
    [note] = [m for m in sent_to(smtp, "level1@example.test")
              if subject in str(m.message["Subject"])]
    if agent_says is not None:
        mail_user.append(agent_reply(note, ANNA, agent_says))
        daemon.run_once(app)
    with app.sessions() as s:
        return s.scalars(select(Ticket.ref).where(Ticket.subject == subject)).one()


def digests(smtp: SmtpServer, to: str, day: str = "2026-12-04") -> list[ReceivedMessage]:
    """The digests of `day` (a daemon that starts after the digest's time sends that
    day's at once: Thursday's went out while the tickets were written)."""
    return [m for m in sent_to(smtp, to) if f"queue on {day}" in str(m.message["Subject"])]


def text_of(message: ReceivedMessage) -> str:
    part = message.message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def to_queue(digest: ReceivedMessage, sender: str, body: str, to: str | None = None
             ) -> bytes:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    msg["To"] = to or str(digest.message["Reply-To"])
    msg["Subject"] = "Re: " + str(digest.message["Subject"])
    msg["Message-ID"] = email.utils.make_msgid(domain="example.test")
    msg.set_content(body)
    return msg.as_bytes()


def test_the_digest_and_queue_commands(
    desk: App, mail_user: MailUser, smtp_server: SmtpServer, tmp_path: Path, db_url: str
) -> None:
    clock = desk.clock
    assert isinstance(clock, FixedClock)
    printer = write(desk, mail_user, smtp_server, "Printer broken", "#assign me")
    invoice = write(desk, mail_user, smtp_server, "Invoice wrong",
                    "#assign me\n#pending\nWhich invoice do you mean?")
    contract = write(desk, mail_user, smtp_server, "Contract ends",
                     "#assign me\nWe are looking into it.")
    router = write(desk, mail_user, smtp_server, "Router blinks",
                   f"#assign {CLARA}")
    vpn = write(desk, mail_user, smtp_server, "VPN question", None)  # unassigned
    clock.at = at(3, 16)
    modem = write(desk, mail_user, smtp_server, "Modem slow", "#assign me")

    clock.at = at(4, 7, 29)  # Friday, a minute before the digest
    daemon.run_once(desk)
    assert digests(smtp_server, ANNA) == []
    clock.at = at(4, 7, 30)
    daemon.run_once(desk)
    daemon.run_once(desk)
    [anna] = digests(smtp_server, ANNA)
    text = text_of(anna)
    order = [text.index(ref) for ref in (printer, modem, contract, invoice)]
    assert order == sorted(order), text  # breached, due today, later, waiting
    assert "SLA breached" in text and "due today 10:00, 2 h left" in text
    assert re.search(r"reply to: support\+t-[a-z0-9]+\.[0-9a-f]+@", text)
    assert router not in text and vpn not in text
    assert "#take REF" in text  # the cheat-sheet
    assert str(anna.message["Subject"]) == "Your queue on 2026-12-04: 4 open"
    html = anna.message.get_body(preferencelist=("html",))
    assert html is not None and 'href="mailto:support+' in str(html.get_content())
    assert str(anna.message["Reply-To"]).startswith("support+q-")
    [clara] = digests(smtp_server, CLARA)
    assert router in text_of(clara) and printer not in text_of(clara)
    [team] = digests(smtp_server, "level1@example.test")
    assert vpn in text_of(team) and printer not in text_of(team)
    assert digests(smtp_server, "eva@example.test") == []  # nothing open: nothing sent
    assert digests(smtp_server, "level2@example.test") == []

    # A restart the same day sends nothing again; Saturday has no digest.
    desk.dispose()
    app = make_desk(tmp_path, mail_user, smtp_server, db_url, clock)
    try:
        daemon.run_once(app)
        clock.at = at(5, 7, 31)
        daemon.run_once(app)
        assert len(digests(smtp_server, ANNA)) == 1

        # Queue commands by replying to the digest.
        mail_user.append(to_queue(anna, ANNA, f"#take {vpn}\n#find printer"))
        daemon.run_once(app)
        [answer] = [m for m in sent_to(smtp_server, ANNA)
                    if "Your queue:" in str(m.message["Subject"])]
        body = text_of(answer)
        assert f"#take {vpn}: assigned to you" in body and printer in body
        assert str(answer.message["Reply-To"]) == str(anna.message["Reply-To"])
        with app.sessions() as s:
            assert s.scalars(select(Ticket.assignee).where(Ticket.ref == vpn)).one() == ANNA
            kept = s.scalars(select(CommandMail)).one()
            assert kept.raw and kept.result.startswith("answered")
        mail_user.append(to_queue(anna, ANNA, "#mine"))
        daemon.run_once(app)
        mine = [m for m in sent_to(smtp_server, ANNA)
                if "Your queue:" in str(m.message["Subject"])][-1]
        assert all(ref in text_of(mine) for ref in (printer, invoice, vpn, modem))

        # A mistyped command: told, with what was written; nothing changes.
        mail_user.append(to_queue(anna, ANNA, f"#tkae {printer}"))
        # Forged and foreign requests: nothing back, nothing changed.
        forged = re.sub(r"\.[0-9a-f]{20}@", ".0123456789abcdef0123@",
                        str(anna.message["Reply-To"]))
        mail_user.append(to_queue(anna, ANNA, f"#take {router}", to=forged))
        mail_user.append(to_queue(anna, CLARA, f"#take {printer}"))  # Anna's address
        mail_user.append(to_queue(anna, "mallory@example.com", "#mine"))
        before = {a: len(sent_to(smtp_server, a)) for a in (CLARA, "mallory@example.com")}
        daemon.run_once(app)
        [refused] = [m for m in sent_to(smtp_server, ANNA)
                     if "Not applied" in str(m.message["Subject"])]
        assert "unknown command" in text_of(refused) and f"> #tkae {printer}" in text_of(
            refused)
        assert {a: len(sent_to(smtp_server, a)) for a in before} == before
        with app.sessions() as s:
            assignees = {ref: who for ref, who in s.execute(select(Ticket.ref, Ticket.assignee))}
            held = [q.reason for q in s.scalars(select(Quarantine))]
        assert (assignees[router], assignees[printer]) == (CLARA, ANNA)
        assert len(held) == 3 and any("wrong signature" in r for r in held)

        # Monday: a new digest, with the ticket taken on Saturday.
        clock.at = at(7, 7, 30)
        daemon.run_once(app)
        [monday] = digests(smtp_server, ANNA, "2026-12-07")
        assert vpn in text_of(monday)
        assert digests(smtp_server, ANNA, "2026-12-05") == []
    finally:
        app.dispose()


def test_two_daemons_send_one_digest_each(
    tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, pg_url: str
) -> None:
    clock = FixedClock(at(3, 9))
    first = make_desk(tmp_path, mail_user, smtp_server, pg_url, clock)
    second = make_desk(tmp_path, mail_user, smtp_server, pg_url, clock)
    try:
        ids = add_tickets(first, 3)
        with first.sessions() as s, s.begin():
            for ticket_id, who in zip(ids, (ANNA, CLARA, None), strict=True):
                s.get_one(Ticket, ticket_id).assignee = who
        clock.at = at(4, 7, 30)
        for _ in range(2):
            first.run_jobs()
            second.run_jobs()
        with first.sessions() as s:
            rows = s.execute(select(Outbox.rcpt_to, Outbox.raw)).all()
        sent = Counter(to for to, raw in rows if b"queue on 2026-12-04" in raw)
        assert sent == {ANNA: 1, CLARA: 1, "level1@example.test": 1}
    finally:
        first.dispose()
        second.dispose()
