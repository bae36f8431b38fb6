"""Agents work by email: notifications, relayed replies, notes, commands, intake.

The end-to-end flow runs against a real Dovecot and aiosmtpd: customer → 1st level
notification → agent reply relayed → customer reply threads → escalation to the 3rd level →
its note reaches the 2nd level team and not the customer → the 2nd level answers.
"""

from __future__ import annotations

import email
import email.policy
import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from maild import daemon
from maild.agents.parse import Command, parse_agent_text, strip_quoted
from maild.app import App, build
from maild.clock import FixedClock
from maild.store.models import Event, Message, Outbox, Quarantine, Ticket
from maild.tickets.address import address_pattern, find_ticket_address, reply_address
from tests.kit import SUPPORT, customer_mail, message_id_of, settings_for, write_config
from tests.servers.dovecot import MailUser
from tests.servers.smtp import ReceivedMessage, SmtpServer

RULES = """
levels:
  1: {name: 1st level, team: level1@example.test}
  2: {name: 2nd level, team: level2@example.test}
  3: {name: 3rd level, team: level3@example.test}
  4: {name: 4th level, team: level4@example.test}
departments:
  customer_service: {name: Customer service}
  technical: {name: Technical, team: technical@example.test}
  accounting: {name: Accounting}
  contracts: {name: Contracts}
intake: [secretariat@example.test]
agents:
  - {address: anna@example.test, name: Anna Berger, level: 1, departments: [customer_service]}
  - {address: clara@example.test, name: Clara Wolf, level: 2, departments: [technical]}
  - {address: eva@example.test, name: Eva Lindner, level: 3, departments: [technical]}
"""
AGENTS = ("anna@example.test", "clara@example.test", "eva@example.test")
CUSTOMER = "erika@example.com"


# -- pure parts ----------------------------------------------------------------------------

@pytest.mark.parametrize("body,commands,text", [
    ("Thanks, fixed.\n\nOn Mon, 2 Nov 2026 Erika wrote:\n> broken", [], "Thanks, fixed."),
    ("#escalate 3 needs the DB team\n#priority high\nLooked at it.",
     [Command("escalate", "3 needs the DB team"), Command("priority", "high")],
     "Looked at it."),
    ("\n#note\nInternal only.\n-- \nAnna", [Command("note", "")], "Internal only."),
    ("Erledigt.\n\nAm 02.11.2026 um 10:00 schrieb Erika Muster <e@example.com>:\n> kaputt",
     [], "Erledigt."),
    ("Done.\n\n-----Ursprüngliche Nachricht-----\nVon: Support\nGesendet: Montag", [],
     "Done."),
    ("Done.\n________________________________\nFrom: Support <s@example.test>", [], "Done."),
    ("#resolve", [Command("resolve", "")], ""),
])
def test_agent_text(body: str, commands: list[Command], text: str) -> None:
    parsed = parse_agent_text(body)
    assert list(parsed.commands) == commands
    assert parsed.text == text
    assert parsed.unknown == ()


def test_unknown_command_is_reported() -> None:
    assert parse_agent_text("#escalte 2\nhello").unknown == ("#escalte 2",)


def test_strip_quoted_keeps_a_plain_text() -> None:
    assert strip_quoted("line one\nline two") == "line one\nline two"


def test_reply_address_round_trip() -> None:
    address = reply_address(SUPPORT, "T-K7QF2X", "0123456789abcdef0123")
    assert address == "support+t-k7qf2x.0123456789abcdef0123@example.test"
    found = find_ticket_address(address_pattern(SUPPORT), ["x@y.z", address.upper()])
    assert found is not None and found.ref == "T-K7QF2X"
    assert find_ticket_address(address_pattern(SUPPORT), ["support@example.test"]) is None
    assert find_ticket_address(address_pattern(SUPPORT),
                               ["support+t-k7qf2x.0123@example.test"]) is None


# -- end to end ----------------------------------------------------------------------------

@pytest.fixture
def desk(tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer,
         db_url: str) -> Iterator[App]:
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    settings = settings_for(
        tmp_path, db_url=db_url, imap=mail_user.imap_config(),
        smtp={"host": smtp_server.host, "port": smtp_server.port, "security": "none"},
        rules="rules.yaml")
    app = build(settings, clock=FixedClock())
    yield app
    app.dispose()


def sent_to(smtp: SmtpServer, address: str) -> list[ReceivedMessage]:
    return [m for m in smtp.messages if address in m.rcpt_tos]


def agent_reply(notification: ReceivedMessage, agent: str, body: str,
                to: str | None = None) -> bytes:
    """What an agent's mail client sends when replying to a notification."""
    original = notification.message
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = agent
    msg["To"] = to or str(original["Reply-To"])
    msg["Subject"] = "Re: " + str(original["Subject"])
    msg["Message-ID"] = email.utils.make_msgid(domain="example.test")
    msg["In-Reply-To"] = str(original["Message-ID"])
    quoted = "\n".join("> " + line for line in original.get_content().splitlines())
    msg.set_content(f"{body}\n\nOn Mon, 23 Nov 2026 Example Support wrote:\n{quoted}\n")
    return msg.as_bytes()


def ticket(app: App) -> Ticket:
    with app.sessions() as s:
        found = s.scalar(select(Ticket).options(selectinload(Ticket.messages),
                                                selectinload(Ticket.events)))
        assert found is not None
        return found


def header_addresses(message: ReceivedMessage) -> set[str]:
    values = [str(v) for _, v in message.message.items()]
    return {addr.lower() for _, addr in getaddresses(values) if "@" in addr}


def test_tiered_support_by_email(desk: App, mail_user: MailUser,
                                 smtp_server: SmtpServer) -> None:
    mail_user.append(customer_mail(sender=f"Erika Mustermann <{CUSTOMER}>",
                                   subject="Export fails", body="The export stops at row 12."))
    daemon.run_once(desk)
    assert len(sent_to(smtp_server, CUSTOMER)) == 1  # the acknowledgement
    [note1] = sent_to(smtp_server, "level1@example.test")
    assert "The export stops at row 12." in note1.message.get_content()

    # 1st level answers the customer through the notification's reply address.
    mail_user.append(agent_reply(note1, "Anna Berger <anna@example.test>",
                                 "Hello, please try again with the new version."))
    daemon.run_once(desk)
    relayed = sent_to(smtp_server, CUSTOMER)[-1]
    assert "please try again" in relayed.message.get_content()
    assert relayed.message["From"].addresses[0].addr_spec == SUPPORT
    assert "Anna Berger" in str(relayed.message["From"])
    assert relayed.message["Auto-Submitted"] is None  # a person wrote this

    # The customer answers the relayed mail: it threads, the team hears of it.
    mail_user.append(customer_mail(sender=CUSTOMER, subject="Re: " + str(
        relayed.message["Subject"]), in_reply_to=str(relayed.message["Message-ID"]),
        body="Still broken with the new version."))
    daemon.run_once(desk)
    assert len(sent_to(smtp_server, "level1@example.test")) == 2

    # 1st level escalates to the 3rd level with a reason.
    mail_user.append(agent_reply(note1, "anna@example.test", "#escalate 3 database issue"))
    daemon.run_once(desk)
    [note3] = sent_to(smtp_server, "level3@example.test")
    assert "database issue" in str(note3.message["Subject"])

    # The 3rd level answers: an internal note to the 2nd level, never to the customer.
    secret_finding = "Index on exports.row_id is corrupt; rebuild it."
    mail_user.append(agent_reply(note3, "eva@example.test", secret_finding))
    daemon.run_once(desk)
    [note2] = sent_to(smtp_server, "level2@example.test")
    assert secret_finding in note2.message.get_content()

    # The 2nd level answers the customer and waits for them.
    mail_user.append(agent_reply(note2, "clara@example.test",
                                 "#pending\nWe repaired your data; please check the export."))
    daemon.run_once(desk)

    to_customer = sent_to(smtp_server, CUSTOMER)
    assert len(to_customer) == 3  # acknowledgement, Anna's answer, Clara's answer
    assert "repaired your data" in to_customer[-1].message.get_content()
    for message in to_customer:
        assert secret_finding not in message.message.get_content()
        assert not header_addresses(message) & set(AGENTS), message.message
        assert not any(a.startswith("support+") for a in header_addresses(message))
    t = ticket(desk)
    assert t.level == 3 and t.status == "waiting_customer"
    assert t.first_response_at is not None
    kinds = [e.kind for e in t.events]
    for kind in ("created", "notified", "reply.sent", "escalated", "note.added",
                 "status.changed"):
        assert kind in kinds
    assert [m.direction for m in t.messages].count("note") == 4  # every agent mail kept


def test_agent_reply_in_one_batch_with_the_customers_follow_up(
    desk: App, mail_user: MailUser, smtp_server: SmtpServer
) -> None:
    """A batch writes its messages at its end; the relay must still see the customer's
    follow-up of the same batch, and answer it (In-Reply-To, References)."""
    first = customer_mail(sender=CUSTOMER, subject="Export fails", body="Row 12 fails.")
    mail_user.append(first)
    daemon.run_once(desk)
    [note1] = sent_to(smtp_server, "level1@example.test")
    follow_up = customer_mail(sender=CUSTOMER, subject="Re: Export fails",
                              in_reply_to=message_id_of(first), body="And row 13.")
    mail_user.append(follow_up)
    mail_user.append(agent_reply(note1, "Anna Berger <anna@example.test>", "Try again."))
    daemon.run_once(desk)  # both in one batch, the follow-up first
    relayed = sent_to(smtp_server, CUSTOMER)[-1]
    assert "Try again." in relayed.message.get_content()
    assert str(relayed.message["In-Reply-To"]) == message_id_of(follow_up)
    assert message_id_of(follow_up) in str(relayed.message["References"])
    t = ticket(desk)
    assert [m.direction for m in t.messages if m.direction != "notification"] == \
        ["inbound", "outbound", "inbound", "note", "outbound"]


def test_a_notification_is_stored_once_in_its_outbox_row(
    desk: App, mail_user: MailUser, smtp_server: SmtpServer
) -> None:
    """Staff notifications are not part of the conversation: their message row keeps the
    Message-ID (replies thread by it), their text is kept once, in the exact bytes of the
    outbox row. The acknowledgement, which is, keeps its text on the message too."""
    mail_user.append(customer_mail(sender=CUSTOMER, subject="Invoice", body="Twice billed."))
    daemon.run_once(desk)
    [sent] = sent_to(smtp_server, "level1@example.test")
    with desk.sessions() as session:
        rows = {m.direction: m for m in session.scalars(select(Message))}
        outbox = {o.kind: o for o in session.scalars(select(Outbox))}
    notification = rows["notification"]
    assert notification.body_text == ""
    assert f"<{notification.message_id}>" == str(sent.message["Message-ID"])
    assert outbox["notification"].raw == sent.data
    assert "Twice billed." in sent.message.get_content()
    assert "Twice billed." in rows["outbound"].body_text  # the acknowledgement


def test_forged_agent_replies_change_nothing_and_leak_nothing(
    desk: App, mail_user: MailUser, smtp_server: SmtpServer
) -> None:
    mail_user.append(customer_mail(sender=CUSTOMER, subject="Invoice"))
    daemon.run_once(desk)
    [notification] = sent_to(smtp_server, "level1@example.test")
    before = (len(ticket(desk).messages), len(ticket(desk).events), len(smtp_server.messages))
    good = str(notification.message["Reply-To"])
    wrong_secret = good.replace(good.split(".")[1][:4], "0000")
    forgeries = [
        agent_reply(notification, "anna@example.test", "#close\nforged", to=SUPPORT),
        agent_reply(notification, "anna@example.test", "#close\nforged", to=wrong_secret),
        agent_reply(notification, "mallory@evil.example", "#close\nforged"),
    ]
    for raw in forgeries:
        mail_user.append(raw)
    daemon.run_once(desk)
    after = ticket(desk)
    # The agent whose address the first two carry is told why (her text quoted back, to
    # send again the right way); the ticket changes in nothing but the record of that.
    told = sent_to(smtp_server, "anna@example.test")
    assert len(told) == 2 and len(smtp_server.messages) == before[2] + 2
    for mail in told:
        text = mail.message.get_content()
        assert "NOT applied" in str(mail.message["Subject"]) and "> forged" in text
    assert not sent_to(smtp_server, "mallory@evil.example")
    assert {m.direction for m in after.messages[before[0]:]} == {"notification"}
    assert {e.kind for e in after.events[before[1]:]} == {
        "notification.queued", "notified", "notification.sent"}
    assert after.status == "new"
    with desk.sessions() as s:
        reasons = [q.reason for q in s.scalars(select(Quarantine))]
    assert len(reasons) == 3 and all("not applied" in r for r in reasons)
    assert mail_user.count("Quarantine") == 3


def test_bad_command_is_rejected_and_nothing_is_sent(
    desk: App, mail_user: MailUser, smtp_server: SmtpServer
) -> None:
    mail_user.append(customer_mail(sender=CUSTOMER))
    daemon.run_once(desk)
    [notification] = sent_to(smtp_server, "level1@example.test")
    mail_user.append(agent_reply(notification, "anna@example.test",
                                 "#escalte 2\nDear customer, ..."))
    daemon.run_once(desk)
    assert len(sent_to(smtp_server, CUSTOMER)) == 1  # only the acknowledgement
    [told] = sent_to(smtp_server, "anna@example.test")
    assert "NOT applied" in str(told.message["Subject"])
    assert "escalte" in told.message.get_content()


def test_lifecycle_reopen_and_follow_up(tmp_path: Path, mail_user: MailUser,
                                        smtp_server: SmtpServer, sqlite_url: str) -> None:
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    clock = FixedClock()
    app = build(settings_for(
        tmp_path, db_url=sqlite_url, imap=mail_user.imap_config(), rules="rules.yaml",
        smtp={"host": smtp_server.host, "port": smtp_server.port, "security": "none"}),
        clock=clock)
    mail_user.append(customer_mail(sender=CUSTOMER, subject="Question"))
    daemon.run_once(app)
    [notification] = sent_to(smtp_server, "level1@example.test")
    [ack] = sent_to(smtp_server, CUSTOMER)
    mail_user.append(agent_reply(notification, "anna@example.test", "#resolve\nAnswered."))
    daemon.run_once(app)
    assert ticket(app).status == "resolved"
    mail_user.append(customer_mail(sender=CUSTOMER, in_reply_to=str(ack.message["Message-ID"]),
                                   subject="Re: Question", body="One more thing"))
    daemon.run_once(app)
    assert ticket(app).status == "open"  # reopened
    mail_user.append(agent_reply(notification, "anna@example.test", "#close"))
    daemon.run_once(app)
    clock.advance(timedelta(days=15))
    mail_user.append(customer_mail(sender=CUSTOMER, in_reply_to=str(ack.message["Message-ID"]),
                                   subject="Re: Question", body="Months later"))
    daemon.run_once(app)
    with app.sessions() as s:
        tickets = s.scalars(select(Ticket).order_by(Ticket.id)).all()
        assert len(tickets) == 2
        assert tickets[0].status == "closed" and tickets[1].linked_ticket_id == tickets[0].id
    app.dispose()


def test_intake_by_mail_and_by_command(tmp_path: Path, mail_user: MailUser,
                                       smtp_server: SmtpServer, sqlite_url: str) -> None:
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    config = write_config(
        tmp_path, db_url=sqlite_url, imap=mail_user.imap_config(), rules="rules.yaml",
        smtp={"host": smtp_server.host, "port": smtp_server.port, "security": "none"})
    notes = tmp_path / "call.txt"
    notes.write_text("Caller cannot print invoices since Monday.", encoding="utf-8")
    run = subprocess.run(
        [sys.executable, "-m", "maild", "-c", str(config), "tickets", "open", "--customer",
         "caller@example.org", "--subject", "Printing invoices", "--level", "2",
         "--department", "technical", "--body-file", str(notes), "--json"],
        capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    opened = json.loads(run.stdout)
    assert opened["acknowledgement_sent"] is True
    [ack] = sent_to(smtp_server, "caller@example.org")
    assert opened["ref"] in str(ack.message["Subject"])
    assert sent_to(smtp_server, "technical@example.test")  # the department's team

    # The secretariat logs a second call by mail.
    mail_user.append(customer_mail(sender="secretariat@example.test", subject="Callback wanted",
                                   body="#customer other@example.org\n#level 2\n"
                                        "Please call back about the contract."))
    # The caller answers the acknowledgement by email: it threads into the ticket.
    mail_user.append(customer_mail(sender="caller@example.org", subject="Re: x",
                                   in_reply_to=str(ack.message["Message-ID"])))
    settings_app = build(settings_for(tmp_path, db_url=sqlite_url,
                                      imap=mail_user.imap_config(), rules="rules.yaml",
                                      smtp={"host": smtp_server.host, "port": smtp_server.port,
                                            "security": "none"}), clock=FixedClock())
    daemon.run_once(settings_app)
    with settings_app.sessions() as s:
        tickets = s.scalars(select(Ticket).options(selectinload(Ticket.messages))
                            .order_by(Ticket.id)).all()
        assert [(t.requester, t.level) for t in tickets] == [
            ("caller@example.org", 2), ("other@example.org", 2)]
        assert [m.direction for m in tickets[0].messages if m.direction != "notification"] == [
            "note", "outbound", "inbound"]
        events = s.scalars(select(Event.kind).where(Event.ticket_id == tickets[1].id)).all()
        assert "intake" in events
    assert sent_to(smtp_server, "other@example.org")  # acknowledged by email
    settings_app.dispose()


def test_a_wrong_intake_mail_is_refused_to_the_secretariat_quoting_it(
        tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, sqlite_url: str) -> None:
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    app = build(settings_for(tmp_path, db_url=sqlite_url, imap=mail_user.imap_config(),
                             rules="rules.yaml", staff_language="de",
                             smtp={"host": smtp_server.host, "port": smtp_server.port,
                                   "security": "none"}), clock=FixedClock())
    mail_user.append(customer_mail(sender="secretariat@example.test", subject="Callback wanted",
                                   body="#level 2\nPlease call back about the contract."))
    daemon.run_once(app)
    [refused] = sent_to(smtp_server, "secretariat@example.test")
    # Staff mail in the organisation's language, with what they wrote, and nothing opened.
    assert str(refused.message["Subject"]) == "Nicht ausgeführt: Callback wanted"
    body = refused.message.get_content()
    assert "#customer ADDRESS" in body and "> #level 2" in body
    with app.sessions() as s:
        assert s.scalars(select(Ticket)).all() == []
        [held] = s.scalars(select(Quarantine)).all()
        assert "intake mail" in held.reason and held.raw
    app.dispose()
