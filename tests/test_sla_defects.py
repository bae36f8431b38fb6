"""SLA defects of issue 20: the due time a warning names, and a reopened ticket's clock.

Against real Dovecot, aiosmtpd and both databases.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from maild import daemon
from maild.app import App, build
from maild.clock import FixedClock
from maild.sla.engine import load_sla
from maild.sla.policy import choose, deadlines
from maild.sla.retime import retime_if_changed
from maild.store.models import Event, SlaAlert, Ticket
from tests.kit import add_tickets, customer_mail
from tests.servers.dovecot import MailUser
from tests.servers.smtp import SmtpServer
from tests.test_agents import agent_reply, sent_to
from tests.test_sla import MONDAY_9, SLA, desk, facts, quiet_desk, the_ticket

__all__ = ["desk", "quiet_desk"]  # the fixtures, shared with tests/test_sla.py


def test_a_warning_carries_its_target_s_due_time(tmp_path: Path) -> None:
    (tmp_path / "sla.yaml").write_text(SLA, encoding="utf-8")
    standard = choose(load_sla(tmp_path / "sla.yaml").policies, facts())
    assert standard is not None
    by_key = {d.key: d for d in deadlines(standard, facts())}
    warn, breach = by_key["first_response:warn"], by_key["first_response:breach"]
    assert warn.at == MONDAY_9 + timedelta(hours=3)  # when to warn
    assert warn.due == breach.due == breach.at == MONDAY_9 + timedelta(hours=4)


def test_warning_mail_event_and_alert_name_the_due_time(
    desk: tuple[App, FixedClock], mail_user: MailUser, smtp_server: SmtpServer,
) -> None:
    app, clock = desk
    mail_user.append(customer_mail(subject="Export fails"))
    daemon.run_once(app)
    due = MONDAY_9 + timedelta(hours=4)
    clock.advance(timedelta(hours=3, minutes=1))  # past 75 % of the 4-hour target
    [warned] = app.sla_pass()
    assert (warned.kind, warned.due_at) == ("warn", due)  # `sla check --json` prints this
    daemon.run_once(app)  # sends the warning
    [mail] = [m for m in sent_to(smtp_server, "level1@example.test")
              if "SLA warning" in str(m.message["Subject"])]
    # 12:00 UTC is 13:00 in Berlin, the calendar's zone (staff read local time, item 2).
    stamp = "due Mon 23 Nov, 13:00"
    assert stamp in str(mail.message["Subject"]) and stamp in mail.message.get_content()
    with app.sessions() as s:
        [data] = s.scalars(select(Event.data).where(Event.kind == "sla.warned")).all()
        [alert] = s.scalars(select(SlaAlert)).all()
    assert data["due"] == due.isoformat()
    assert alert.due_at == due


def test_time_resolved_does_not_count_toward_resolution(
    desk: tuple[App, FixedClock], mail_user: MailUser, smtp_server: SmtpServer,
) -> None:
    app, clock = desk
    mail_user.append(customer_mail(sender="erika@example.com", subject="Question"))
    daemon.run_once(app)
    [note] = sent_to(smtp_server, "level1@example.test")
    clock.advance(timedelta(hours=1))  # Monday 10:00: one business hour used
    mail_user.append(agent_reply(note, "anna@example.test", "#resolve\nUse the new link."))
    daemon.run_once(app)
    assert the_ticket(app).status == "resolved"
    clock.advance(timedelta(days=3))  # Thursday 10:00: 30 business hours later
    [answer] = [m for m in sent_to(smtp_server, "erika@example.com")
                if "new link" in m.message.get_content()]
    mail_user.append(customer_mail(sender="erika@example.com", subject="Re: Question",
                                   body="It still does not work.",
                                   in_reply_to=str(answer.message["Message-ID"])))
    daemon.run_once(app)
    t = the_ticket(app)
    assert t.status == "open"
    assert app.sla_pass() == []  # no breach at once
    # 29 business hours left from Thursday 10:00 (Berlin, 10-hour days): Tuesday 09:00.
    assert t.sla_resolution_due == clock.now() + timedelta(days=5, hours=-1)
    with app.sessions() as s:
        assert s.scalars(select(Event).where(Event.kind == "sla.breached")).all() == []


def test_an_edited_policy_re_times_open_tickets(
    quiet_desk: tuple[App, FixedClock], tmp_path: Path,
) -> None:
    app, clock = quiet_desk
    *standard, urgent_id = add_tickets(app, 4, MONDAY_9)  # first response due 13:00 Berlin
    with app.sessions() as s, s.begin():
        urgent = s.get_one(Ticket, urgent_id)
        urgent.priority = "urgent"
        app.sla.refresh(urgent)
        done = s.get_one(Ticket, standard[2])
        done.status = "resolved"
        app.sla.refresh(done)
    assert app.sla_pass() == []  # 09:00: nothing due; the timing is recorded
    assert retime_if_changed(app.sla, app.sessions) is None  # unchanged: nothing to do
    clock.advance(timedelta(hours=2, minutes=30))  # 11:30 in Berlin
    assert [r.ticket_id for r in app.sla_pass()] == [urgent_id]  # its 1-hour target

    # The standard first response drops from 4 h to 2 h: due at 11:00, so breached now.
    (tmp_path / "sla.yaml").write_text(SLA.replace(
        "    first_response: 4h\n", "    first_response: 2h\n"), encoding="utf-8")
    app.reload()
    raised = app.sla_pass()
    assert sorted((r.ticket_id, r.target, r.kind) for r in raised) == [
        (i, "first_response", "breach") for i in standard[:2]]
    with app.sessions() as s:
        [event] = s.scalars(select(Event).where(Event.kind == "sla.breached")
                            .where(Event.ticket_id == standard[0])).all()
        assert event.data["due"] == (MONDAY_9 + timedelta(hours=2)).isoformat()
        resolved = s.get_one(Ticket, standard[2])
        assert resolved.sla_alerted == [] and resolved.sla_next_check_at is None  # left alone

    # A restart on the same database, with the file edited again (only the urgent
    # resolution target): the new process re-times the urgent tickets alone (the breaches
    # raised the standard ones' priority to high, which is urgent's).
    edited = SLA.replace("    first_response: 4h\n", "    first_response: 2h\n").replace(
        "resolution: 8h", "resolution: 6h")
    (tmp_path / "sla.yaml").write_text(edited, encoding="utf-8")
    again = build(app.settings, clock=FixedClock(clock.now()))
    try:
        done_now = retime_if_changed(again.sla, again.sessions)
        assert done_now is not None
        assert (done_now.policies, done_now.checked, done_now.changed) == (("urgent",), 3, 3)
        with again.sessions() as s:
            for ticket_id in (*standard[:2], urgent_id):
                t = s.get_one(Ticket, ticket_id)
                assert (t.sla_policy, t.sla_resolution_due) == (
                    "urgent", MONDAY_9 + timedelta(hours=6))
        with again.sessions() as s, s.begin():
            tagged = s.get_one(Ticket, urgent_id)
            tagged.tags = ["vip"]
            again.sla.refresh(tagged)  # no policy matches the tag yet
        # Another policy first: which policy a ticket gets may change, so all are re-timed;
        # those that keep a policy timed as before keep their columns.
        (tmp_path / "sla.yaml").write_text(edited.replace(
            "policies:\n", "policies:\n  - {name: vip, match: {tag: [vip]}, "
            "first_response: 10m}\n"), encoding="utf-8")
        again.reload()
        everything = retime_if_changed(again.sla, again.sessions)
        assert everything is not None and everything.policies is None
        assert (everything.checked, everything.changed) == (3, 1)  # the open ones
        with again.sessions() as s:
            t = s.get_one(Ticket, urgent_id)
            assert (t.sla_policy, t.sla_resolution_due) == ("vip", None)
    finally:
        again.dispose()
