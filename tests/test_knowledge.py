"""Canned answers by command and solutions that flow back (issue 17, part B), against a real
Dovecot and aiosmtpd."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from maild import daemon
from maild.app import App, build
from maild.clock import FixedClock
from maild.knowledge.catalogue import CannedAnswer
from maild.knowledge.compose import AnswerText, find_answer
from maild.knowledge.suggest import Suggester
from maild.settings import Settings
from maild.store.models import Proposal, Quarantine
from tests.kit import SUPPORT, customer_mail, settings_for
from tests.servers.dovecot import MailUser
from tests.servers.smtp import ReceivedMessage, SmtpServer
from tests.test_agents import agent_reply, header_addresses, sent_to, ticket

RULES = """
levels:
  1: {name: 1st level, team: level1@example.test}
  2: {name: 2nd level, team: level2@example.test}
  3: {name: 3rd level, team: level3@example.test}
agents:
  - {address: anna@example.test, name: Anna Berger, level: 1}
  - {address: tom@example.test, name: Tom Neu, level: 1, trainee: true,
     mentor: anna@example.test}
  - {address: eva@example.test, name: Eva Lindner, level: 3}
  - {address: lead@example.test, name: Lena Lead, level: 2}
"""
CUSTOMER = "erika@example.com"


@pytest.mark.parametrize("text,leading,expected", [
    ("Hi Erika,\n#answer password_reset\nBest, Anna", None,
     AnswerText("password_reset", "Hi Erika,", "Best, Anna")),
    ("Also: see above.", "password_reset", AnswerText("password_reset", "", "Also: see above.")),
    ("No canned answer here.", None, None),
])
def test_find_answer(text: str, leading: str | None, expected: AnswerText | None) -> None:
    assert find_answer(text, leading) == expected


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def desk(tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, db_url: str,
         clock: FixedClock) -> Iterator[App]:
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    settings = settings_for(
        tmp_path, db_url=db_url, imap=mail_user.imap_config(),
        smtp={"host": smtp_server.host, "port": smtp_server.port, "security": "none"},
        rules="rules.yaml")
    app = build(settings, clock=clock)
    yield app
    app.dispose()


def new_ticket(desk: App, mail_user: MailUser, smtp: SmtpServer, body: str,
               language_hint: str = "") -> None:
    mail_user.append(customer_mail(sender=f"Erika Mustermann <{CUSTOMER}>",
                                   subject="Password", body=body + language_hint))
    daemon.run_once(desk)


def test_answer_sends_the_canned_answer_with_the_agents_text(
    desk: App, mail_user: MailUser, smtp_server: SmtpServer
) -> None:
    new_ticket(desk, mail_user, smtp_server, "I forgot my password, what can I do?")
    [notification] = sent_to(smtp_server, "level1@example.test")
    mail_user.append(agent_reply(notification, "Anna Berger <anna@example.test>",
                                 "Hello Erika,\n#answer password_reset\nAnna"))
    daemon.run_once(desk)
    to_customer = sent_to(smtp_server, CUSTOMER)
    assert len(to_customer) == 2
    text = to_customer[-1].message.get_content()
    assert text.index("Hello Erika,") < text.index("Forgot password?") < text.index("Anna")
    assert "#answer" not in text
    assert to_customer[-1].message["From"].addresses[0].addr_spec == SUPPORT
    assert not header_addresses(to_customer[-1]) & {"anna@example.test"}
    t = ticket(desk)
    assert t.first_response_at is not None
    assert [e.data["name"] for e in t.events if e.kind == "answer.used"] == ["password_reset"]


def test_trainees_answer_is_held_and_an_unknown_answer_is_refused(
    desk: App, mail_user: MailUser, smtp_server: SmtpServer
) -> None:
    new_ticket(desk, mail_user, smtp_server, "I forgot my password.")
    [notification] = sent_to(smtp_server, "level1@example.test")
    mail_user.append(agent_reply(notification, "tom@example.test", "#answer pasword_reset"))
    daemon.run_once(desk)
    [told] = sent_to(smtp_server, "tom@example.test")
    assert "NOT applied" in str(told.message["Subject"])
    assert "password_reset" in told.message.get_content()  # the known ones are listed
    mail_user.append(agent_reply(notification, "tom@example.test", "#answer password_reset"))
    daemon.run_once(desk)
    assert len(sent_to(smtp_server, CUSTOMER)) == 1  # held: the acknowledgement only
    [review] = [m for m in sent_to(smtp_server, "anna@example.test")
                if "review" in str(m.message["Subject"])]
    assert "Forgot password?" in review.message.get_content()
    mail_user.append(agent_reply(review, "anna@example.test", "#approve"))
    daemon.run_once(desk)
    sent = sent_to(smtp_server, CUSTOMER)[-1].message.get_content()
    assert "Forgot password?" in sent and "Tom Neu" not in sent  # the answer's own sign-off


def test_answers_returns_the_catalogue_to_the_agent(
    desk: App, mail_user: MailUser, smtp_server: SmtpServer
) -> None:
    new_ticket(desk, mail_user, smtp_server, "I forgot my password.")
    [notification] = sent_to(smtp_server, "level1@example.test")
    mail_user.append(agent_reply(notification, "anna@example.test",
                                 "#answer password_reset"))
    daemon.run_once(desk)
    mail_user.append(agent_reply(notification, "anna@example.test", "#answers password"))
    mail_user.append(agent_reply(notification, "anna@example.test", "#answers invoice"))
    daemon.run_once(desk)
    listed, empty = [m.message.get_content() for m in sent_to(smtp_server,
                                                              "anna@example.test")]
    assert "password_reset  [de, en, fr]  used 1x in 90 days" in listed
    assert not any(line.startswith(("notification ", "review ", "reply ", "acknowledgement "))
                   for line in listed.splitlines())  # maild's own mail is no canned answer
    assert "No canned answer matches 'invoice'" in empty
    assert len(sent_to(smtp_server, CUSTOMER)) == 2  # the catalogue never goes out


# -- solutions that flow back --------------------------------------------------------------

@pytest.fixture
def kdesk(tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, db_url: str
          ) -> Iterator[App]:
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    (tmp_path / "templates").mkdir()
    # Now, not a fixed date: `maild answers list` counts uses of the last 90 days by the
    # system clock.
    app = build(knowledge_settings(tmp_path, mail_user, smtp_server, db_url),
                clock=FixedClock(datetime.now(UTC)))
    yield app
    app.dispose()


def knowledge_settings(tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer,
                       db_url: str) -> Settings:
    return settings_for(
        tmp_path, db_url=db_url, imap=mail_user.imap_config(),
        smtp={"host": smtp_server.host, "port": smtp_server.port, "security": "none"},
        rules="rules.yaml", templates="templates",
        knowledge={"owners": ["lead@example.test"]})


def propose(app: App, mail_user: MailUser, smtp: SmtpServer) -> ReceivedMessage:
    """A ticket escalated to the 3rd level, whose note proposes a solution."""
    mail_user.append(customer_mail(sender=CUSTOMER, subject="VPN drops",
                                   body="My VPN drops every ten minutes."))
    daemon.run_once(app)
    [note1] = sent_to(smtp, "level1@example.test")
    mail_user.append(agent_reply(note1, "anna@example.test", "#escalate 3 VPN"))
    daemon.run_once(app)
    [note3] = sent_to(smtp, "level3@example.test")
    mail_user.append(agent_reply(note3, "eva@example.test",
                                 "#solution vpn_reset\nPlease update the VPN client to 4.2; "
                                 "{{ not template code }} the drops stop then."))
    daemon.run_once(app)
    [proposal] = sent_to(smtp, "lead@example.test")
    return proposal


def test_solution_accepted_is_used_by_a_rule_and_an_agent_after_a_restart(
    kdesk: App, mail_user: MailUser, smtp_server: SmtpServer, tmp_path: Path, db_url: str
) -> None:
    proposal = propose(kdesk, mail_user, smtp_server)
    assert str(proposal.message["Reply-To"]).startswith("support+sol-")
    assert "update the VPN client to 4.2" in proposal.message.get_content()
    mail_user.append(agent_reply(proposal, "Lena Lead <lead@example.test>", "#accept"))
    daemon.run_once(kdesk)
    written = tmp_path / "templates" / "vpn_reset.en.txt"
    assert written.exists()
    [told] = [m for m in sent_to(smtp_server, "eva@example.test")
              if "canned answer" in str(m.message["Subject"])]
    assert "#answer vpn_reset" in told.message.get_content()
    # Usable at once, before any restart.
    [note1] = sent_to(smtp_server, "level1@example.test")[:1]
    mail_user.append(agent_reply(note1, "anna@example.test", "#answer vpn_reset"))
    daemon.run_once(kdesk)
    assert "update the VPN client" in sent_to(smtp_server, CUSTOMER)[-1].message.get_content()
    kdesk.dispose()

    # A restart, with the file lost: the database writes it again; a rule names it.
    written.unlink()
    (tmp_path / "rules.yaml").write_text(RULES + """
rules:
  - name: vpn
    when: {subject: {contains: vpn}}
    then: {answer: vpn_reset}
""", encoding="utf-8")
    app = build(knowledge_settings(tmp_path, mail_user, smtp_server, db_url),
                clock=FixedClock(datetime.now(UTC)))
    try:
        assert written.exists()
        check = subprocess.run([sys.executable, "-m", "maild", "-c",
                                str(tmp_path / "maild.yaml"), "check"],
                               capture_output=True, text=True)
        assert check.returncode == 0, check.stderr
        before = len(sent_to(smtp_server, "new@example.com"))
        mail_user.append(customer_mail(sender="new@example.com", subject="vpn again",
                                       body="Drops."))
        daemon.run_once(app)
        [answer] = sent_to(smtp_server, "new@example.com")[before:]
        text = answer.message.get_content()
        assert "update the VPN client to 4.2; {{ not template code }}" in text
        listed = subprocess.run([sys.executable, "-m", "maild", "-c",
                                 str(tmp_path / "maild.yaml"), "answers", "list", "--json"],
                                capture_output=True, text=True, check=True)
        entry = {a["name"]: a for a in json.loads(listed.stdout)}["vpn_reset"]
        assert entry["languages"] == ["en"] and entry["uses"] == 2
    finally:
        app.dispose()


def test_decline_and_a_non_owner_accept(
    kdesk: App, mail_user: MailUser, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    proposal = propose(kdesk, mail_user, smtp_server)
    mail_user.append(agent_reply(proposal, "anna@example.test", "#accept"))  # no owner
    mail_user.append(agent_reply(proposal, "someone@elsewhere.test", "#accept"))
    daemon.run_once(kdesk)
    assert not (tmp_path / "templates" / "vpn_reset.en.txt").exists()
    # The agent is told why, with what they wrote; the stranger is told nothing.
    [refused] = [m for m in sent_to(smtp_server, "anna@example.test")
                 if "NOT applied" in str(m.message["Subject"])]
    assert "not a knowledge owner" in refused.message.get_content()
    assert "> #accept" in refused.message.get_content()
    assert sent_to(smtp_server, "someone@elsewhere.test") == []
    mail_user.append(agent_reply(proposal, "lead@example.test",
                                 "#decline only for the old client"))
    daemon.run_once(kdesk)
    [told] = [m for m in sent_to(smtp_server, "eva@example.test")
              if "declined" in str(m.message["Subject"])]
    assert "only for the old client" in told.message.get_content()
    with kdesk.sessions() as s:
        row = s.scalars(select(Proposal)).one()
        assert (row.status, row.reason) == ("declined", "only for the old client")
        assert len(s.scalars(select(Quarantine)).all()) == 2
    assert not (tmp_path / "templates" / "vpn_reset.en.txt").exists()


def test_level3_resolver_is_reminded_once_without_a_solution(
    kdesk: App, mail_user: MailUser, smtp_server: SmtpServer
) -> None:
    first = customer_mail(sender=CUSTOMER, subject="VPN drops", body="Drops.")
    mail_user.append(first)
    daemon.run_once(kdesk)
    [note1] = sent_to(smtp_server, "level1@example.test")
    mail_user.append(agent_reply(note1, "anna@example.test", "#escalate 3 VPN"))
    daemon.run_once(kdesk)
    [note3] = sent_to(smtp_server, "level3@example.test")
    mail_user.append(agent_reply(note3, "eva@example.test", "#resolve\nFixed the gateway."))
    daemon.run_once(kdesk)

    def reminders() -> list[ReceivedMessage]:
        return [m for m in sent_to(smtp_server, "eva@example.test")
                if "could reuse" in str(m.message["Subject"])]

    [reminder] = reminders()
    assert "#solution NAME" in reminder.message.get_content()
    # Reopened and resolved again: no second reminder.
    [ack] = sent_to(smtp_server, CUSTOMER)
    mail_user.append(customer_mail(sender=CUSTOMER, subject="Re: VPN drops", body="Again.",
                                   in_reply_to=str(ack.message["Message-ID"])))
    daemon.run_once(kdesk)
    mail_user.append(agent_reply(note3, "eva@example.test", "#resolve"))
    daemon.run_once(kdesk)
    assert len(reminders()) == 1
    assert ticket(kdesk).status == "resolved"
    # The reminder's reply address is the ticket's: #solution answers it.
    mail_user.append(agent_reply(reminder, "eva@example.test",
                                 "#solution gateway_fix\nWe repaired the VPN gateway."))
    daemon.run_once(kdesk)
    assert len(sent_to(smtp_server, "lead@example.test")) == 1


def test_no_reminder_when_a_solution_was_proposed(
    kdesk: App, mail_user: MailUser, smtp_server: SmtpServer
) -> None:
    propose(kdesk, mail_user, smtp_server)
    [note3] = sent_to(smtp_server, "level3@example.test")
    mail_user.append(agent_reply(note3, "eva@example.test", "#resolve"))
    daemon.run_once(kdesk)
    assert ticket(kdesk).status == "resolved"
    assert not [m for m in sent_to(smtp_server, "eva@example.test")
                if "could reuse" in str(m.message["Subject"])]


# -- suggestions ---------------------------------------------------------------------------

def canned(name: str, text: str) -> CannedAnswer:
    return CannedAnswer(name, ("en",), name, text.split("\n")[0], texts={"en": text})


CATALOGUE = [
    canned("password_reset", "Reset your password on the login page ({{ customer.address }})."),
    canned("vpn_update", "Please update the VPN client to 4.2; the drops stop then."),
    canned("invoice_fix", "Your invoice was corrected and a credit note is on its way."),
]


@pytest.mark.parametrize("text,expected", [
    ("I forgot my password and cannot log in", ["password_reset"]),
    ("Ich habe mein Passwort vergessen", ["password_reset"]),  # inflected, translated
    ("The VPN client drops every few minutes", ["vpn_update"]),
    ("Billing question about my invoices", ["invoice_fix"]),
    ("Hello, the weather is nice today", []),
])
def test_suggestions(text: str, expected: list[str]) -> None:
    assert [a.name for a in Suggester().suggest(text, CATALOGUE)] == expected


def test_new_ticket_notification_suggests_canned_answers_never_sends_them(
    desk: App, mail_user: MailUser, smtp_server: SmtpServer
) -> None:
    new_ticket(desk, mail_user, smtp_server, "I forgot my password, please help.")
    [notification] = sent_to(smtp_server, "level1@example.test")
    text = notification.message.get_content()
    assert "Canned answers that may fit" in text and "password_reset:" in text
    [ack] = sent_to(smtp_server, CUSTOMER)
    assert "Forgot password?" not in ack.message.get_content()
