"""Trainees and mentors (issue 17, part A) against a real Dovecot and aiosmtpd: a
trainee's reply is held, the mentor decides by mail, the customer gets exactly one reply
from the support address; forged or foreign decisions change nothing; waiting drafts
remind the mentor and then the team, once each; #ask lands on the ticket as a note."""

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
from maild.rules.engine import Organisation, TeamInfo
from maild.rules.schema import Agent
from maild.store.models import Draft, Quarantine
from maild.training.mentor import may_decide, reminders
from tests.kit import SUPPORT, customer_mail, settings_for
from tests.servers.dovecot import MailUser
from tests.servers.smtp import SmtpServer
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
  - {address: clara@example.test, name: Clara Wolf, level: 2}
"""
CUSTOMER = "erika@example.com"
TRAINEE, MENTOR = "tom@example.test", "anna@example.test"
STAFF = {TRAINEE, MENTOR, "clara@example.test"}


# -- pure parts ----------------------------------------------------------------------------

ANNA = Agent(address=MENTOR, name="Anna", level=1)
TOM = Agent(address=TRAINEE, name="Tom", level=1, trainee=True, mentor=MENTOR)
CLARA = Agent(address="clara@example.test", name="Clara", level=2, departments=["technical"])
ORG = Organisation(levels={1: TeamInfo("1st", "level1@example.test"),
                           2: TeamInfo("2nd", "level2@example.test")},
                   departments={"technical": TeamInfo("Tech", "tech@example.test")},
                   agents={a.address: a for a in (ANNA, TOM, CLARA)})


@pytest.mark.parametrize("mentor,agent,allowed", [
    (MENTOR, ANNA, True), (MENTOR, CLARA, False), (MENTOR, TOM, False), (MENTOR, None, False),
    ("level2", CLARA, True), ("level2", ANNA, False), ("technical", CLARA, True),
    ("technical", ANNA, False), ("level1", TOM, False),  # a trainee never decides
])
def test_who_may_decide(mentor: str, agent: Agent | None, allowed: bool) -> None:
    assert may_decide(mentor, TRAINEE, agent, ORG) is allowed


def test_reminders_go_to_the_mentor_then_the_mentors_level() -> None:
    assert (reminders(MENTOR, ORG).first, reminders(MENTOR, ORG).then) == (MENTOR, "level1")
    assert (reminders("technical", ORG).first, reminders("technical", ORG).then) == (
        "technical", "technical")


# -- end to end ----------------------------------------------------------------------------

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
        rules="rules.yaml", training={"remind_after": "2h", "team_after": "4h"})
    app = build(settings, clock=clock)
    yield app
    app.dispose()


def held_draft(desk: App, mail_user: MailUser, smtp: SmtpServer, text: str) -> None:
    """A customer writes, the trainee answers through the notification: held."""
    mail_user.append(customer_mail(sender=f"Erika Mustermann <{CUSTOMER}>",
                                   subject="Cancel my contract",
                                   body="How do I cancel my contract?"))
    daemon.run_once(desk)
    [notification] = sent_to(smtp, "level1@example.test")
    mail_user.append(agent_reply(notification, "Tom Neu <tom@example.test>", text))
    daemon.run_once(desk)


def review_mail(smtp: SmtpServer) -> tuple[str, str]:
    [review] = [m for m in sent_to(smtp, MENTOR) if "to review" in str(m.message["Subject"])]
    return str(review.message["Reply-To"]), review.message.get_content()


def test_approve_sends_exactly_one_reply_counted_as_first_response(
    desk: App, mail_user: MailUser, smtp_server: SmtpServer, clock: FixedClock
) -> None:
    held_draft(desk, mail_user, smtp_server, "Just reply CANCEL and you are out.")
    assert len(sent_to(smtp_server, CUSTOMER)) == 1  # the acknowledgement only
    reply_to, text = review_mail(smtp_server)
    assert reply_to.startswith("support+review-") and reply_to.endswith("@example.test")
    assert "How do I cancel my contract?" in text and "Just reply CANCEL" in text
    assert "#approve" in text
    assert ticket(desk).first_response_at is None  # the SLA clock runs on

    clock.advance(timedelta(minutes=30))
    approved_at = clock.now()
    [review] = [m for m in sent_to(smtp_server, MENTOR) if "review" in str(m.message["Subject"])]
    mail_user.append(agent_reply(review, "Anna Berger <anna@example.test>", "#approve"))
    daemon.run_once(desk)
    to_customer = sent_to(smtp_server, CUSTOMER)
    assert len(to_customer) == 2
    reply = to_customer[-1]
    assert "Just reply CANCEL" in reply.message.get_content()
    assert reply.message["From"].addresses[0].addr_spec == SUPPORT
    assert "Tom Neu" in str(reply.message["From"])
    for message in to_customer:
        assert not header_addresses(message) & STAFF
        assert not any(a.startswith("support+") for a in header_addresses(message))
    t = ticket(desk)
    assert t.first_response_at == approved_at
    kinds = [e.kind for e in t.events]
    assert kinds.count("draft.held") == 1 and kinds.count("draft.approved") == 1
    [told] = sent_to(smtp_server, TRAINEE)
    assert "approved" in str(told.message["Subject"])
    # A second #approve of the same draft sends nothing more.
    mail_user.append(agent_reply(review, MENTOR, "#approve"))
    daemon.run_once(desk)
    assert len(sent_to(smtp_server, CUSTOMER)) == 2
    assert "NOT applied" in str(sent_to(smtp_server, MENTOR)[-1].message["Subject"])


def test_approve_with_edits_sends_the_edit_and_tells_the_trainee_the_difference(
    desk: App, mail_user: MailUser, smtp_server: SmtpServer
) -> None:
    held_draft(desk, mail_user, smtp_server, "Reply CANCEL.\nBye")
    [review] = [m for m in sent_to(smtp_server, MENTOR) if "review" in str(m.message["Subject"])]
    mail_user.append(agent_reply(review, MENTOR, "#approve\nPlease send us the cancellation "
                                 "in writing; the notice period is three months.\nBye"))
    daemon.run_once(desk)
    reply = sent_to(smtp_server, CUSTOMER)[-1]
    assert "notice period is three months" in reply.message.get_content()
    assert "Reply CANCEL" not in reply.message.get_content()
    [told] = sent_to(smtp_server, TRAINEE)
    diff = told.message.get_content()
    assert "-Reply CANCEL." in diff and "+Please send us the cancellation" in diff
    with desk.sessions() as s:
        draft = s.scalars(select(Draft)).one()
        assert draft.status == "edited" and draft.decided_by == MENTOR


def test_reject_sends_nothing_and_returns_the_advice(
    desk: App, mail_user: MailUser, smtp_server: SmtpServer
) -> None:
    held_draft(desk, mail_user, smtp_server, "Reply CANCEL.")
    [review] = [m for m in sent_to(smtp_server, MENTOR) if "review" in str(m.message["Subject"])]
    mail_user.append(agent_reply(review, MENTOR, "#reject check the contract's notice period"))
    daemon.run_once(desk)
    assert len(sent_to(smtp_server, CUSTOMER)) == 1
    [told] = sent_to(smtp_server, TRAINEE)
    assert "NOT sent" in str(told.message["Subject"])
    assert "check the contract's notice period" in told.message.get_content()
    assert ticket(desk).first_response_at is None
    assert "draft.rejected" in [e.kind for e in ticket(desk).events]


def test_forged_review_address_or_a_non_mentor_change_nothing(
    desk: App, mail_user: MailUser, smtp_server: SmtpServer
) -> None:
    held_draft(desk, mail_user, smtp_server, "Reply CANCEL.")
    [review] = [m for m in sent_to(smtp_server, MENTOR) if "review" in str(m.message["Subject"])]
    good = str(review.message["Reply-To"])
    local, _, domain = good.partition("@")
    forged = local[:-4] + ("0000" if not local.endswith("0000") else "1111") + "@" + domain
    before = (len(ticket(desk).events), len(smtp_server.messages))
    mail_user.append(agent_reply(review, MENTOR, "#approve", to=forged))
    mail_user.append(agent_reply(review, "clara@example.test", "#approve"))
    mail_user.append(agent_reply(review, TRAINEE, "#approve"))  # approving oneself
    mail_user.append(agent_reply(review, "someone@elsewhere.test", "#approve"))
    daemon.run_once(desk)
    assert len(sent_to(smtp_server, CUSTOMER)) == 1
    # The two colleagues are told why, with what they wrote; the forger and the stranger
    # are told nothing.
    for colleague in ("clara@example.test", TRAINEE):
        [refused] = [m for m in sent_to(smtp_server, colleague)
                     if "NOT applied" in str(m.message["Subject"])]
        assert "is not the mentor" in refused.message.get_content()
        assert "> #approve" in refused.message.get_content()
    assert len(smtp_server.messages) == before[1] + 2
    assert sent_to(smtp_server, "someone@elsewhere.test") == []
    assert [e.kind for e in ticket(desk).events[before[0]:]
            if not e.kind.startswith("notif")] == ["review.rejected"] * 2
    with desk.sessions() as s:
        assert s.scalars(select(Draft)).one().status == "waiting"
        reasons = [q.reason for q in s.scalars(select(Quarantine))]
    assert len(reasons) == 4 and all("not applied" in r for r in reasons)


def test_waiting_draft_reminds_the_mentor_then_the_team_once_each(
    desk: App, mail_user: MailUser, smtp_server: SmtpServer, clock: FixedClock
) -> None:
    held_draft(desk, mail_user, smtp_server, "Reply CANCEL.")

    def reminded(address: str) -> int:
        return len([m for m in sent_to(smtp_server, address)
                    if "Reminder" in str(m.message["Subject"])])

    clock.advance(timedelta(hours=1))
    daemon.run_once(desk)
    assert reminded(MENTOR) == 0
    clock.advance(timedelta(hours=1, minutes=1))
    daemon.run_once(desk)
    clock.advance(timedelta(minutes=5))
    daemon.run_once(desk)
    assert (reminded(MENTOR), reminded("level1@example.test")) == (1, 0)
    clock.advance(timedelta(hours=2))
    daemon.run_once(desk)
    clock.advance(timedelta(hours=2))
    daemon.run_once(desk)
    assert (reminded(MENTOR), reminded("level1@example.test")) == (1, 1)
    # The reminder's Reply-To decides the draft like the review mail's.
    [reminder] = [m for m in sent_to(smtp_server, "level1@example.test")
                  if "Reminder" in str(m.message["Subject"])]
    assert str(reminder.message["Reply-To"]).startswith("support+review-")
    assert [e.data["step"] for e in ticket(desk).events if e.kind == "draft.reminded"] == [
        "mentor", "team"]


def test_trainee_commands_apply_at_once_and_ask_lands_as_a_note(
    desk: App, mail_user: MailUser, smtp_server: SmtpServer
) -> None:
    mail_user.append(customer_mail(sender=CUSTOMER, subject="Export", body="Row 12 fails."))
    daemon.run_once(desk)
    [notification] = sent_to(smtp_server, "level1@example.test")
    mail_user.append(agent_reply(notification, TRAINEE,
                                 "#priority high\n#ask Is row 12 the known export bug?"))
    daemon.run_once(desk)
    assert ticket(desk).priority == "high"
    [question] = [m for m in sent_to(smtp_server, MENTOR) if "Question" in
                  str(m.message["Subject"])]
    assert "row 12 the known export bug" in question.message.get_content()
    mail_user.append(agent_reply(question, MENTOR, "Yes: ticket T-1 has the workaround."))
    daemon.run_once(desk)
    assert len(sent_to(smtp_server, CUSTOMER)) == 1  # the acknowledgement only
    t = ticket(desk)
    assert any(m.direction == "note" and "has the workaround" in m.body_text
               for m in t.messages)
    assert "question.answered" in [e.kind for e in t.events]


def test_promoted_trainee_writes_directly_and_held_drafts_stay_held(
    desk: App, mail_user: MailUser, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    held_draft(desk, mail_user, smtp_server, "Reply CANCEL.")
    (tmp_path / "rules.yaml").write_text(RULES.replace(
        "trainee: true,\n     mentor: anna@example.test", "trainee: false"), encoding="utf-8")
    desk.reload()
    [notification] = sent_to(smtp_server, "level1@example.test")
    mail_user.append(agent_reply(notification, TRAINEE, "You can cancel by letter."))
    daemon.run_once(desk)
    assert len(sent_to(smtp_server, CUSTOMER)) == 2  # sent directly now
    with desk.sessions() as s:
        assert s.scalars(select(Draft)).one().status == "waiting"
    [review] = [m for m in sent_to(smtp_server, MENTOR) if "review" in str(m.message["Subject"])]
    mail_user.append(agent_reply(review, MENTOR, "#reject superseded"))
    daemon.run_once(desk)
    with desk.sessions() as s:
        assert s.scalars(select(Draft)).one().status == "rejected"

    out = subprocess.run(
        [sys.executable, "-m", "maild", "-c", str(tmp_path / "maild.yaml"), "training",
         "--json"], capture_output=True, text=True, check=True)
    [row] = json.loads(out.stdout)
    assert (row["trainee"], row["approved"], row["edited"], row["rejected"],
            row["waiting"]) == (TRAINEE, 0, 0, 1, 0)
