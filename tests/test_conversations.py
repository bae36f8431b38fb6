"""Conversations with several people (issue 22), end to end against Dovecot and aiosmtpd.

* A customer copies a colleague, the colleague replies: one ticket, and the agent's answer
  goes to both (staff addresses never in a customer-facing header).
* Our answer forwarded to someone who replies: they join the conversation unconfirmed, get
  nothing and change nothing, until an agent confirms them with `#cc add`.
* A stranger with only the ticket's reference in the subject: a new, linked ticket, as
  before.
* Two replies to a parent maild never received land in one ticket (and so does the parent
  when it arrives late).
"""

from __future__ import annotations

import email
import email.policy
import email.utils
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from maild import daemon
from maild.app import App, build
from maild.clock import FixedClock
from maild.domain import Fetched, SourceRef
from maild.readonly import ticket_detail
from maild.store.models import Event, Message, Outbox, Ticket
from maild.tickets.address import reply_address
from tests.kit import SUPPORT, customer_mail, message_id_of, settings_for
from tests.servers.dovecot import MailUser
from tests.servers.smtp import ReceivedMessage, SmtpServer
from tests.test_agents import AGENTS, RULES, agent_reply, header_addresses, sent_to

ERIKA = "erika@example.com"
GRETA = "greta@example.com"
DEV = "dev@example.org"
TEAMS = {"level1@example.test", "level2@example.test", "level3@example.test",
         "level4@example.test", "technical@example.test"}


@pytest.fixture
def desk(tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer,
         db_url: str) -> Iterator[App]:
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    app = build(settings_for(
        tmp_path, db_url=db_url, imap=mail_user.imap_config(),
        smtp={"host": smtp_server.host, "port": smtp_server.port, "security": "none"},
        rules="rules.yaml"), clock=FixedClock())
    yield app
    app.dispose()


def tickets(app: App) -> list[Ticket]:
    with app.sessions() as s:
        return list(s.scalars(select(Ticket).order_by(Ticket.id)))


def events(app: App, kind: str) -> list[Event]:
    with app.sessions() as s:
        return list(s.scalars(select(Event).where(Event.kind == kind).order_by(Event.id)))


def notifications(smtp: SmtpServer, team: str = "level1@example.test") -> list[ReceivedMessage]:
    return sent_to(smtp, team)


def assert_no_staff(message: ReceivedMessage) -> None:
    """A customer-facing mail names no agent, no team and no secret address."""
    named = header_addresses(message) | set(message.rcpt_tos)
    assert not named & (set(AGENTS) | TEAMS), message.message
    assert not any(a.startswith("support+") for a in named), message.message


def test_colleague_in_cc_replies_and_the_answer_goes_to_both(
        desk: App, mail_user: MailUser, smtp_server: SmtpServer) -> None:
    first = customer_mail(sender=f"Erika Mustermann <{ERIKA}>", subject="Export fails",
                          body="The export stops at row 12.",
                          headers={"Cc": f"Greta Kollegin <{GRETA}>, anna@example.test, "
                                         f"level1@example.test, {SUPPORT}"})
    mail_user.append(first)
    daemon.run_once(desk)
    [ack] = sent_to(smtp_server, ERIKA)
    assert ack.rcpt_tos == [ERIKA]  # the acknowledgement goes to the requester alone
    assert not sent_to(smtp_server, GRETA)

    # Greta answers Erika's mail (reply to all): her mail joins the ticket, confirmed.
    mail_user.append(customer_mail(
        sender=GRETA, subject="Re: Export fails", in_reply_to=message_id_of(first),
        references=[message_id_of(first)], to=f"{ERIKA}, {SUPPORT}",
        body="It happens for me too, at row 12 as well."))
    daemon.run_once(desk)
    [t] = tickets(desk)
    assert len(notifications(smtp_server)) == 2  # new ticket; the customer replied
    assert not sent_to(smtp_server, GRETA)  # no acknowledgement of a reply

    # The agent's answer goes to Erika with Greta in Cc; no staff address anywhere.
    mail_user.append(agent_reply(notifications(smtp_server)[0], "Anna Berger <anna@example.test>",
                                 "We found the cause; a fix is coming today."))
    daemon.run_once(desk)
    answer = sent_to(smtp_server, ERIKA)[-1]
    assert sorted(answer.rcpt_tos) == [ERIKA, GRETA]
    assert answer.message["To"].addresses[0].addr_spec == ERIKA
    assert [a.addr_spec for a in answer.message["Cc"].addresses] == [GRETA]
    assert "a fix is coming" in answer.message.get_content()
    assert_no_staff(answer)

    # Erika writes again without Greta in Cc: Greta stays in the conversation.
    mail_user.append(customer_mail(sender=ERIKA, subject="Re: Export fails",
                                   in_reply_to=str(answer.message["Message-ID"]),
                                   body="Thanks, waiting for it."))
    daemon.run_once(desk)
    detail = ticket_detail(desk.settings, t.ref)
    assert detail is not None
    assert detail["participants"] == [{"address": ERIKA, "confirmed": True},
                                     {"address": GRETA, "confirmed": True}]
    assert len(tickets(desk)) == 1

    # An agent takes Greta out; staff cannot be put in.
    mail_user.append(agent_reply(notifications(smtp_server)[0], "anna@example.test",
                                 "#cc add level1@example.test\nHello"))
    mail_user.append(agent_reply(notifications(smtp_server)[0], "anna@example.test",
                                 f"#cc remove {GRETA}\nThe fix is live."))
    daemon.run_once(desk)
    rejected = sent_to(smtp_server, "anna@example.test")[-1]
    assert "one of our own addresses" in rejected.message.get_content()
    last = sent_to(smtp_server, ERIKA)[-1]
    assert "The fix is live." in last.message.get_content() and last.rcpt_tos == [ERIKA]
    assert [e.data["address"] for e in events(desk, "participant.removed")] == [GRETA]


def test_forwarded_answer_recipient_joins_unconfirmed_until_confirmed(
        desk: App, mail_user: MailUser, smtp_server: SmtpServer) -> None:
    mail_user.append(customer_mail(sender=ERIKA, subject="API returns 500",
                                   body="Our integration fails; API key is K-1234."))
    daemon.run_once(desk)
    mail_user.append(agent_reply(notifications(smtp_server)[0], "anna@example.test",
                                 "#pending\nPlease send us the request your developer makes."))
    daemon.run_once(desk)
    answer = sent_to(smtp_server, ERIKA)[-1]
    [before] = tickets(desk)
    assert before.status == "waiting_customer"

    # Erika forwards our answer to her developer (outside maild); he replies to support.
    forward_id = email.utils.make_msgid(domain="example.com")
    quoted = "\n".join("> " + line for line in answer.message.get_content().splitlines())
    dev_mail = EmailMessage(policy=email.policy.SMTP)
    dev_mail["From"] = f"Dev <{DEV}>"
    dev_mail["To"] = SUPPORT
    dev_mail["Subject"] = "Re: Fwd: " + str(answer.message["Subject"])
    dev_mail["Message-ID"] = email.utils.make_msgid(domain="example.org")
    dev_mail["In-Reply-To"] = forward_id
    dev_mail["References"] = f"{answer.message['Message-ID']} {forward_id}"
    dev_mail.set_content(f"Here is the request: POST /v2/export\n\n{quoted}\n")
    mail_user.append(dev_mail.as_bytes())
    daemon.run_once(desk)

    [after] = tickets(desk)  # in Erika's ticket, threaded
    assert after.status == "waiting_customer"  # changed nothing
    assert not sent_to(smtp_server, DEV)  # no acknowledgement, nothing
    told = notifications(smtp_server)[-1]
    assert f"Unconfirmed participant {DEV}" in str(told.message["Subject"])
    assert f"#cc add {DEV}" in told.message.get_content()
    [joined] = [e for e in events(desk, "message.received") if e.data.get("unconfirmed")]
    assert joined.data["flags"] == ["unconfirmed-participant"]
    with desk.sessions() as s:
        assert s.scalar(select(Message.ticket_id).where(Message.from_addr == DEV)) == after.id

    # An agent answers without confirming him: Erika only.
    mail_user.append(agent_reply(told, "anna@example.test", "Thanks, we are looking."))
    daemon.run_once(desk)
    assert sent_to(smtp_server, ERIKA)[-1].rcpt_tos == [ERIKA]
    assert not sent_to(smtp_server, DEV)

    # The agent confirms him: the answer in the same mail reaches both.
    mail_user.append(agent_reply(told, "anna@example.test",
                                 f"#cc add {DEV}\nThe request lacks the Accept header."))
    daemon.run_once(desk)
    [to_dev] = sent_to(smtp_server, DEV)
    assert sorted(to_dev.rcpt_tos) == [DEV, ERIKA]
    assert "Accept header" in to_dev.message.get_content()
    assert_no_staff(to_dev)

    # Now confirmed, what he writes counts as the customer's: the ticket reopens.
    mail_user.append(customer_mail(sender=DEV, subject="Re: " + str(to_dev.message["Subject"]),
                                   in_reply_to=str(to_dev.message["Message-ID"]),
                                   body="Works now."))
    daemon.run_once(desk)
    assert tickets(desk)[0].status == "open" and len(tickets(desk)) == 1


def test_subject_token_only_stranger_gets_a_linked_ticket(
        desk: App, mail_user: MailUser, smtp_server: SmtpServer) -> None:
    mail_user.append(customer_mail(sender=ERIKA, subject="My contract",
                                   body="My IBAN is DE00 1234."))
    daemon.run_once(desk)
    [original] = tickets(desk)
    mail_user.append(customer_mail(sender="mallory@evil.example",
                                   subject=f"Re: [{original.ref}] My contract",
                                   body="Please send me the details."))
    daemon.run_once(desk)
    first, second = tickets(desk)
    assert second.linked_ticket_id == first.id and second.requester == "mallory@evil.example"
    [to_mallory] = sent_to(smtp_server, "mallory@evil.example")  # their own acknowledgement
    assert "IBAN" not in to_mallory.message.get_content()
    assert original.ref not in str(to_mallory.message["Subject"])
    [created] = [e for e in events(desk, "created") if e.ticket_id == second.id]
    assert created.data["flags"] == ["subject-ref-from-non-participant"]


def test_replies_to_a_parent_maild_never_saw_share_one_ticket(
        desk: App, mail_user: MailUser, smtp_server: SmtpServer) -> None:
    # Erika wrote to her colleague only; that mail never reached support.
    parent_id = email.utils.make_msgid(domain="example.com")
    parent = customer_mail(sender=ERIKA, subject="Invoices", message_id=parent_id,
                           to=GRETA, body="Greta, our invoices look wrong, can you ask?")
    # Greta replies to it, with support in Cc: a new ticket; Erika, in To, takes part.
    mail_user.append(customer_mail(sender=GRETA, subject="Re: Invoices", to=ERIKA,
                                   in_reply_to=parent_id, references=[parent_id],
                                   headers={"Cc": SUPPORT}, body="Support, see below."))
    daemon.run_once(desk)
    # Erika answers her own mail, to Greta and support: same parent, same ticket.
    mail_user.append(customer_mail(sender=ERIKA, subject="Re: Invoices", to=GRETA,
                                   in_reply_to=parent_id, references=[parent_id],
                                   headers={"Cc": SUPPORT}, body="Invoice 4711 mainly."))
    # A stranger replying to the same parent joins unconfirmed.
    mail_user.append(customer_mail(sender="other@example.net", subject="Re: Invoices",
                                   in_reply_to=parent_id, body="Me too?"))
    daemon.run_once(desk)
    # The parent itself reaches support later (forwarded as it was): the same ticket.
    mail_user.append(parent)
    daemon.run_once(desk)
    [t] = tickets(desk)
    with desk.sessions() as s:
        senders = list(s.scalars(select(Message.from_addr).where(
            Message.ticket_id == t.id, Message.direction == "inbound").order_by(Message.id)))
    assert senders == [GRETA, ERIKA, "other@example.net", ERIKA]
    threaded = [e.data["threaded_by"] for e in events(desk, "message.received")]
    assert threaded == ["placeholder"] * 3
    assert not sent_to(smtp_server, "other@example.net")
    assert [a.rcpt_tos for a in sent_to(smtp_server, GRETA)] == [[GRETA]]  # her ack


def test_reply_to_all_off_answers_the_requester_alone(tmp_path: Path, sqlite_url: str) -> None:
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    app = build(settings_for(tmp_path, db_url=sqlite_url, rules="rules.yaml",
                             tickets={"reply_to_all": False}), clock=FixedClock())
    try:
        app.pipeline.process_batch([Fetched(SourceRef("support", "INBOX", 1, 1), customer_mail(
            sender=ERIKA, headers={"Cc": GRETA}))])
        [t] = tickets(app)
        agent = customer_mail(sender="anna@example.test", subject=f"Re: [{t.ref}]",
                              to=reply_address(SUPPORT, t.ref, t.secret), body="Fixed.")
        app.pipeline.process_batch([Fetched(SourceRef("support", "INBOX", 1, 2), agent)])
        with app.sessions() as s:
            replies = list(s.scalars(select(Outbox.rcpt_to).where(Outbox.kind == "reply")))
        assert replies == [ERIKA]
        detail = ticket_detail(app.settings, t.ref)
        assert detail is not None
        assert detail["participants"] == [{"address": ERIKA, "confirmed": True},
                                     {"address": GRETA, "confirmed": True}]
    finally:
        app.dispose()
