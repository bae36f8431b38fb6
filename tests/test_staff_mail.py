"""What staff get by mail must be right (issue 20, items 4, 5 and 11), end to end against
Dovecot and aiosmtpd: an agent's mail that only quotes a ticket's reference is staff mail,
one event sends one mail per address whatever reasons led there, and intake from the
command line reads plainly."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from maild import daemon
from maild.app import App, build
from maild.clock import FixedClock
from maild.store.models import Event, Quarantine, Ticket
from tests.kit import customer_mail, settings_for, write_config
from tests.servers.dovecot import MailUser
from tests.servers.smtp import SmtpServer
from tests.test_agents import AGENTS, CUSTOMER, RULES, sent_to

RULES_WITH_NOTIFY = RULES + """
management: {address: management@example.test, team: board@example.test, level: 2,
             priority: high}
rules:
  - name: server trouble
    when: {subject: {contains: server}}
    then: {department: technical, notify: [technical, level2]}
"""
SLA = """
policies:
  - name: fast
    calendar: 24x7
    first_response: 1h
    resolution: 8h
    warn_at: 50%
    on_breach: {escalate: true, notify: [level2, technical]}
"""


@pytest.fixture
def desk(tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer,
         db_url: str) -> Iterator[App]:
    (tmp_path / "rules.yaml").write_text(RULES_WITH_NOTIFY, encoding="utf-8")
    (tmp_path / "sla.yaml").write_text(SLA, encoding="utf-8")
    app = build(settings_for(
        tmp_path, db_url=db_url, imap=mail_user.imap_config(), rules="rules.yaml",
        sla="sla.yaml",
        smtp={"host": smtp_server.host, "port": smtp_server.port, "security": "none"}),
        clock=FixedClock())
    yield app
    app.dispose()


def tickets(app: App) -> list[Ticket]:
    with app.sessions() as s:
        return list(s.scalars(select(Ticket).order_by(Ticket.id)))


def test_an_agents_mail_quoting_only_a_reference_is_staff_mail(
    desk: App, mail_user: MailUser, smtp_server: SmtpServer
) -> None:
    mail_user.append(customer_mail(sender=CUSTOMER, subject="Invoice twice"))
    daemon.run_once(desk)
    [ticket] = tickets(desk)
    before = len(smtp_server.messages)
    # Anna writes a new mail (no In-Reply-To, not to the reply address) quoting the ref.
    mail_user.append(customer_mail(sender="anna@example.test",
                                   subject=f"Re: [{ticket.ref}] Invoice twice",
                                   body="#resolve\nRefunded the second invoice."))
    daemon.run_once(desk)
    assert [t.id for t in tickets(desk)] == [ticket.id]  # no new, linked ticket
    assert tickets(desk)[0].status == "new"  # nothing applied
    new = smtp_server.messages[before:]
    assert [m.rcpt_tos for m in new] == [["anna@example.test"]]  # no acknowledgement,
    text = new[0].message.get_content()                        # no "New ticket" to a team
    assert "NOT applied" in str(new[0].message["Subject"])
    assert "> #resolve" in text and "> Refunded the second invoice." in text
    with desk.sessions() as s:
        [reason] = s.scalars(select(Quarantine.reason)).all()
    assert "not sent to its reply address" in reason
    assert mail_user.count("Quarantine") == 1


def test_an_agent_writing_to_support_about_nothing_is_not_acknowledged(
    desk: App, mail_user: MailUser, smtp_server: SmtpServer
) -> None:
    mail_user.append(customer_mail(sender="clara@example.test", subject="Our VPN is down"))
    daemon.run_once(desk)
    [ticket] = tickets(desk)
    assert not sent_to(smtp_server, "clara@example.test")
    with desk.sessions() as s:
        kinds = s.scalars(select(Event.kind).where(Event.ticket_id == ticket.id)).all()
    assert "acknowledgement.skipped" in kinds and "acknowledgement.queued" not in kinds


def test_one_mail_per_address_whatever_the_reasons(
    desk: App, mail_user: MailUser, smtp_server: SmtpServer
) -> None:
    clock = desk.clock
    assert isinstance(clock, FixedClock)
    # The department's team is technical, and the rule notifies technical (and level 2).
    mail_user.append(customer_mail(sender=CUSTOMER, subject="server down"))
    # Mail to the management address: its team is the board, which the channel notifies.
    mail_user.append(customer_mail(sender="c2@example.com", subject="Complaint",
                                   to="management@example.test"))
    daemon.run_once(desk)
    technical = sent_to(smtp_server, "technical@example.test")
    assert len(technical) == 1
    assert "New ticket (rule)" in str(technical[0].message["Subject"])  # reasons listed
    assert len(sent_to(smtp_server, "level2@example.test")) == 1
    assert len(sent_to(smtp_server, "board@example.test")) == 1
    # The breach escalates to level 2 and notifies level 2 and technical: one mail each.
    before = len(smtp_server.messages)
    clock.advance(timedelta(hours=1, minutes=1))
    daemon.run_once(desk)
    server_ticket = next(t for t in tickets(desk) if t.subject == "server down")
    about = [m for m in smtp_server.messages[before:] if server_ticket.ref in
             str(m.message["Subject"])]
    recipients = sorted(r for m in about for r in m.rcpt_tos)
    assert recipients == ["level2@example.test", "technical@example.test"]
    [to_level2] = [m for m in about if "level2@example.test" in m.rcpt_tos]
    subject = str(to_level2.message["Subject"])
    assert "Escalated to level 2" in subject and "SLA breached" in subject


def test_intake_from_the_command_line_reads_plainly(
    tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, sqlite_url: str
) -> None:
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    config = write_config(
        tmp_path, db_url=sqlite_url, imap=mail_user.imap_config(), rules="rules.yaml",
        smtp={"host": smtp_server.host, "port": smtp_server.port, "security": "none"})
    run = subprocess.run(
        [sys.executable, "-m", "maild", "-c", str(config), "tickets", "open", "--customer",
         "Erika Mustermann <Erika@Example.org>", "--subject", "Printer", "--json"],
        capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["acknowledgement_sent"] is True
    [ack] = sent_to(smtp_server, "erika@example.org")
    assert "Erika Mustermann" in str(ack.message["To"])
    [note] = sent_to(smtp_server, "level1@example.test")
    subject, text = str(note.message["Subject"]), note.message.get_content()
    assert "intake (intake" not in subject and "secretariat" in subject
    assert "Customer:   Erika Mustermann <erika@example.org>" in text
    assert AGENTS  # the directory is the shared one of tests/test_agents.py
