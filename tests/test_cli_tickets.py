"""`tickets list` and `tickets show` (issue 20, items 9 and 10): the conversation, filters and
SLA fields, no secret reply address in what they print, and no daemon imported to print it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from maild import daemon
from maild.app import App, build
from maild.clock import FixedClock
from maild.readonly import TicketFilter, ticket_list
from maild.store.models import Message, SlaAlert, Ticket
from tests.kit import customer_mail, settings_for
from tests.servers.dovecot import MailUser
from tests.servers.smtp import SmtpServer
from tests.test_agents import RULES, agent_reply, sent_to
from tests.test_sla import MONDAY_9, SLA

CUSTOMER = "erika@example.com"


def maild(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "maild", "-c", str(config), *args],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def desk(tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer,
         db_url: str) -> Iterator[App]:
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    app = build(settings_for(
        tmp_path, db_url=db_url, imap=mail_user.imap_config(), rules="rules.yaml",
        smtp={"host": smtp_server.host, "port": smtp_server.port, "security": "none"}))
    yield app
    app.dispose()


def test_show_prints_the_conversation_without_secret_addresses(
    desk: App, mail_user: MailUser, smtp_server: SmtpServer,
) -> None:
    mail_user.append(customer_mail(sender=f"Erika Mustermann <{CUSTOMER}>",
                                   subject="Export fails", body="The export stops at row 12."))
    daemon.run_once(desk)
    [note1] = sent_to(smtp_server, "level1@example.test")
    mail_user.append(agent_reply(note1, "anna@example.test",
                                 "#note\nChecked the logs: row 12 has a bad date."))
    daemon.run_once(desk)
    mail_user.append(agent_reply(note1, "anna@example.test", "#escalate 3 database issue"))
    daemon.run_once(desk)
    [note3] = sent_to(smtp_server, "level3@example.test")
    finding = "Index on exports.row_id is corrupt; rebuild it."
    mail_user.append(agent_reply(note3, "eva@example.test", finding))
    daemon.run_once(desk)
    mail_user.append(agent_reply(note1, "anna@example.test", "We repaired the export."))
    daemon.run_once(desk)
    with desk.sessions() as s:
        t = s.query(Ticket).one()
        ref, secret = t.ref, t.secret
    config = desk.settings.config_path

    shown = maild(config, "tickets", "show", ref, "--json")
    assert shown.returncode == 0, shown.stderr
    assert secret not in shown.stdout  # nowhere: not in `to`, not in texts, not in events
    detail = json.loads(shown.stdout)
    texts = {m["direction"]: [] for m in detail["messages"]}
    for m in detail["messages"]:
        texts[m["direction"]].append(m["text"])
    assert texts["inbound"] == ["The export stops at row 12."]
    assert "Checked the logs: row 12 has a bad date." in texts["note"]
    assert finding in texts["note"]  # the 3rd level's note: its text is here, not only in mail
    assert any("We repaired the export." in text for text in texts["outbound"])
    notes = [m for m in detail["messages"] if m["direction"] == "note"]
    assert notes and all(m["to"] == f"staff of {ref}" for m in notes), notes
    assert detail["participants"] == [{"address": CUSTOMER, "confirmed": True}]
    assert detail["rating"] is None

    plain = maild(config, "tickets", "show", ref)
    assert plain.returncode == 0, plain.stderr
    assert secret not in plain.stdout
    for text in ("The export stops at row 12.", finding, "We repaired the export."):
        assert text in plain.stdout
    assert plain.stdout.index("row 12.") < plain.stdout.index(finding)  # oldest first


# -- tickets list: filters and SLA fields, on tickets written straight into the database -----

@pytest.fixture
def quiet(tmp_path: Path, db_url: str) -> Iterator[tuple[App, FixedClock]]:
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    (tmp_path / "sla.yaml").write_text(SLA, encoding="utf-8")
    clock = FixedClock(MONDAY_9)
    app = build(settings_for(tmp_path, db_url=db_url, rules="rules.yaml", sla="sla.yaml"),
                clock=clock)
    yield app, clock
    app.dispose()


def add(app: App, ref: str, created: datetime, **values: Any) -> int:
    with app.sessions() as s, s.begin():
        t = Ticket(ref=ref, subject=f"About {ref}", requester=f"{ref.lower()}@example.com",
                   secret="0" * 20, status="open", level=1, priority="normal",
                   created_at=created, updated_at=created, tags=[], sla_pauses=[],
                   sla_alerted=[])
        for key, value in values.items():
            setattr(t, key, value)
        app.sla.refresh(t)
        s.add(t)
        s.flush()
        return t.id


def refs(rows: list[dict[str, Any]]) -> list[str]:
    return sorted(r["ref"] for r in rows)


def test_list_filters_and_sla_fields(quiet: tuple[App, FixedClock]) -> None:
    app, _ = quiet
    monday = MONDAY_9  # 09:00 in Berlin; standard: first response in 4 office hours
    add(app, "T-A", monday)  # first response due Monday 13:00 Berlin
    add(app, "T-B", monday - timedelta(days=3), level=2, department="technical",
        assignee="clara@example.test")  # Friday: first response was due Friday
    add(app, "T-C", monday, priority="urgent")  # urgent: 24x7, due at 10:00 Berlin
    late = add(app, "T-D", monday - timedelta(days=7), status="resolved",
               resolved_at=monday - timedelta(days=6))
    d_id = add(app, "T-E", monday + timedelta(hours=9))  # Monday 18:00: due Tuesday 12:00
    with app.sessions() as s, s.begin():
        s.add(Message(ticket_id=d_id, direction="inbound", from_addr="colleague@example.org",
                      to_addrs="support@example.test", subject="me too", created_at=monday))
        s.add(SlaAlert(ticket_id=late, key="resolution:breach", target="resolution",
                       kind="breach", policy="standard", due_at=monday - timedelta(days=6),
                       raised_at=monday - timedelta(days=6)))
    settings = app.settings
    now = monday + timedelta(minutes=30)

    def listed(**f: Any) -> list[str]:
        return refs(ticket_list(settings, TicketFilter(**f), now=now))

    assert listed() == ["T-A", "T-B", "T-C", "T-D", "T-E"]
    assert listed(level=2) == ["T-B"]
    assert listed(department="technical") == ["T-B"]
    assert listed(assignee="Clara@Example.test") == ["T-B"]
    assert listed(priority="urgent") == ["T-C"]
    assert listed(customer="colleague@example.org") == ["T-E"]  # wrote in as a customer
    assert listed(customer="t-a@example.com") == ["T-A"]  # the requester
    assert listed(status="resolved") == ["T-D"]
    assert listed(sla="breached") == ["T-B", "T-D"]  # T-B overdue, T-D's breach raised
    assert listed(sla="due-today") == ["T-A", "T-C"]  # in Berlin; T-E is due tomorrow
    assert listed(sla="due-today", priority="urgent") == ["T-C"]

    [a] = [r for r in ticket_list(settings, now=now) if r["ref"] == "T-A"]
    assert a["first_response_due"] == (monday + timedelta(hours=4)).isoformat()
    assert a["resolution_due"] == datetime(2026, 11, 26, 8, 0, tzinfo=UTC).isoformat()
    assert a["sla_breached"] is False

    out = maild(settings.config_path, "tickets", "list", "--json", "--level", "2",
                "--department", "technical", "--assignee", "clara@example.test",
                "--priority", "normal", "--customer", "t-b@example.com", "--sla", "breached")
    assert out.returncode == 0, out.stderr
    [b] = json.loads(out.stdout)
    assert (b["ref"], b["sla_breached"]) == ("T-B", True)
    assert set(b) >= {"first_response_due", "resolution_due", "sla_breached", "message_count"}
    plain = maild(settings.config_path, "tickets", "list", "--level", "2")
    assert plain.returncode == 0, plain.stderr
    [line] = plain.stdout.splitlines()  # (today every test ticket is long overdue)
    assert "T-B" in line and "SLA!" in line


def test_read_only_commands_do_not_import_the_daemon(quiet: tuple[App, FixedClock]) -> None:
    """A person waits for these: they import neither the daemon nor SQLAlchemy's ORM
    (they read the tables through Core; bench.cli has the cost of each)."""
    app, _ = quiet
    add(app, "T-A", MONDAY_9)
    config = str(app.settings.config_path)
    probe = (
        "import sys, contextlib, io\n"
        "from maild.cli import main\n"
        "for argv in (['tickets', 'list', '--sla', 'due-today'], ['tickets', 'show', 'T-A'],"
        " ['check']):\n"
        "    with contextlib.redirect_stdout(io.StringIO()):\n"
        f"        assert main(['-c', {config!r}, *argv]) == 0, argv\n"
        "daemon = {'maild.app', 'maild.pipeline.runner', 'maild.outbound.sender',\n"
        "          'maild.sla.engine', 'alembic', 'sqlalchemy.orm', 'maild.store.models'}\n"
        "print(sorted(daemon & set(sys.modules)))\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_a_read_only_command_on_a_new_database_migrates_it_first(tmp_path: Path,
                                                                  db_url: str) -> None:
    """The read-only commands read without migrating; on a database without maild's tables
    the read fails, the database is migrated as every command migrates it, and the answer
    comes from the migrated database."""
    from sqlalchemy import create_engine, inspect

    settings = settings_for(tmp_path, db_url=db_url)

    def has_tickets() -> bool:
        engine = create_engine(db_url)
        try:
            return inspect(engine).has_table("tickets")
        finally:
            engine.dispose()

    assert not has_tickets()
    listed = maild(settings.config_path, "tickets", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
    assert has_tickets()
    assert listed.stderr == ""  # the migrations' log lines go nowhere a script reads
    shown = maild(settings.config_path, "tickets", "show", "T-NONE")
    assert shown.returncode == 1
    assert "no ticket T-NONE" in shown.stderr
