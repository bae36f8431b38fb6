"""The feature-request register end to end, against Dovecot and aiosmtpd: customers ask,
agents record with #wish and #no, quality management decides by mail, a rejected wish
asked for often enough is reviewed again, and every customer who asked hears once when it
is done. Then the register's storage on both databases, and the command line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from maild import daemon
from maild.app import App, build
from maild.cli import main
from maild.clock import FixedClock
from maild.store.models import Outbox, Ticket
from maild.wishes.models import Wish, WishMail, WishRequest
from maild.wishes.register import Register, WishCommand
from maild.wishes.store import WishStore
from tests.kit import add_tickets, customer_mail, settings_for
from tests.servers.dovecot import MailUser
from tests.servers.smtp import ReceivedMessage, SmtpServer
from tests.test_agents import RULES, agent_reply, sent_to

QM = "qm@example.test"
ANNA = "Anna Berger <anna@example.test>"
WISHES = {"quality_management": [QM], "rereview_customers": 5}
GERMAN = ("Guten Tag, ich hätte gerne einen dunklen Modus für den Kundenbereich, weil mir "
          "die helle Oberfläche am Abend in den Augen wehtut. Vielen Dank und viele Grüße")


@pytest.fixture(autouse=True)
def _logging_restored() -> Iterator[None]:
    """`main()` runs in this process here: it points structlog and the logging module at
    the standard error pytest captures for that test; later tests must not write there."""
    import logging

    import structlog

    config = structlog.get_config()
    handlers = list(logging.getLogger().handlers)
    yield
    structlog.configure(**config)
    logging.getLogger().handlers[:] = handlers


@pytest.fixture
def desk(tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer,
         db_url: str) -> Iterator[App]:
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    settings = settings_for(
        tmp_path, db_url=db_url, imap=mail_user.imap_config(),
        smtp={"host": smtp_server.host, "port": smtp_server.port, "security": "none"},
        rules="rules.yaml", wishes=WISHES)
    app = build(settings, clock=FixedClock())
    yield app
    app.dispose()


def later(app: App, hours: float = 2) -> None:
    assert isinstance(app.clock, FixedClock)
    app.clock.advance(timedelta(hours=hours))


def notification_for(smtp: SmtpServer, subject: str) -> ReceivedMessage:
    [found] = [m for m in sent_to(smtp, "level1@example.test")
               if subject in str(m.message["Subject"]) and "New ticket" in str(
                   m.message["Subject"])]
    return found


def ask(app: App, mail_user: MailUser, smtp: SmtpServer, customers: list[tuple[str, str]]
        ) -> list[ReceivedMessage]:
    """Customers write (one batch); the notifications agents answer."""
    for address, body in customers:
        mail_user.append(customer_mail(sender=address, subject=f"Wish of {address}",
                                       body=body))
    daemon.run_once(app)
    later(app)
    return [notification_for(smtp, f"Wish of {address}") for address, _ in customers]


def wish(app: App, key: str = "W-1") -> Wish:
    with app.sessions() as s:
        found = WishStore(s).by_key(key)
        assert found is not None
        return found


def last_to(smtp: SmtpServer, address: str) -> ReceivedMessage:
    return sent_to(smtp, address)[-1]


def text_of(message: ReceivedMessage) -> str:
    return str(message.message.get_content())


def test_wishes_by_email(desk: App, mail_user: MailUser, smtp_server: SmtpServer) -> None:
    smtp = smtp_server
    # Two customers ask for the same thing in different words.
    n1, n2 = ask(desk, mail_user, smtp, [
        ("c1@example.com", "Could you add a dark mode to the control panel? Thanks."),
        ("c2@example.com", GERMAN)])
    mail_user.append(agent_reply(n1, ANNA, "#wish Dark mode for the control panel\n"
                                           "Thank you, we have noted your wish."))
    daemon.run_once(desk)
    later(desk)
    relayed = last_to(smtp, "c1@example.com")
    assert "noted your wish" in text_of(relayed) and "#wish" not in text_of(relayed)
    told = last_to(smtp, "anna@example.test")
    assert "New wish W-1 recorded" in str(told.message["Subject"])
    [qm_new] = sent_to(smtp, QM)
    assert "New wish" in str(qm_new.message["Subject"])
    assert "dark mode to the control panel" in text_of(qm_new)  # the evidence
    wish_address = str(qm_new.message["Reply-To"])
    assert wish_address.startswith("support+wish-w-1.")

    mail_user.append(agent_reply(n2, ANNA, "#wish Control panel in darkmode\n"
                                           "Danke, wir haben Ihren Wunsch notiert."))
    daemon.run_once(desk)
    later(desk)
    told = last_to(smtp, "anna@example.test")
    assert "Recorded under wish W-1" in str(told.message["Subject"])
    assert "#wish new TITLE" in text_of(told)
    assert len(sent_to(smtp, QM)) == 1  # joined: no new wish to decide on
    assert "#wish" not in text_of(last_to(smtp, "c2@example.com"))

    # Bad input by mail changes nothing, and each sender is told with their text quoted.
    for sender, body, why in [
        (ANNA, "#wish-status W-1 done", "not a quality-management address"),
        (QM, "#wish-status W-99 planned", "no such wish"),
        (QM, "#wish-status W-1 rejected", "needs a reason"),
    ]:
        mail_user.append(agent_reply(qm_new, sender, body))
        daemon.run_once(desk)
        answer = last_to(smtp, "anna@example.test" if sender == ANNA else QM)
        assert "NOT applied" in str(answer.message["Subject"])
        assert why in text_of(answer) and f"> {body}" in text_of(answer)
        assert wish(desk).status == "new"
    forged = wish_address.replace(wish_address.split(".")[1][:4], "0000")
    mail_user.append(agent_reply(qm_new, QM, "#wish-status W-1 done", to=forged))
    daemon.run_once(desk)
    assert wish(desk).status == "new" and mail_user.count("Quarantine") == 4
    # An agent's #wish with an unknown key: nothing of the mail applied or relayed.
    before = len(sent_to(smtp, "c1@example.com"))
    mail_user.append(agent_reply(n1, ANNA, "#wish W-99\nDear customer, ..."))
    daemon.run_once(desk)
    assert len(sent_to(smtp, "c1@example.com")) == before
    assert "no such wish" in text_of(last_to(smtp, "anna@example.test"))

    # Quality management rejects with a reason, by mail.
    later(desk)
    mail_user.append(agent_reply(qm_new, QM, "#wish-status W-1 rejected Too costly for the "
                                             "shared plans"))
    daemon.run_once(desk)
    later(desk)
    assert (wish(desk).status, wish(desk).reason) == ("rejected", "Too costly for the shared "
                                                                  "plans")
    assert "Applied" in str(last_to(smtp, QM).message["Subject"])

    # A third request (by `#no`): counted, and the agent is told the reason.
    [n3] = ask(desk, mail_user, smtp, [("c3@example.com", "Is there a dark theme?")])
    mail_user.append(agent_reply(n3, ANNA, "#no Darkmode in the control panel\n"
                                           "Sorry, that is not possible."))
    daemon.run_once(desk)
    later(desk)
    reason = text_of(last_to(smtp, "anna@example.test"))
    assert "REJECTED: Too costly for the shared plans" in reason
    assert "not possible" in text_of(last_to(smtp, "c3@example.com"))
    assert wish(desk).status == "rejected"
    with desk.sessions() as s:
        assert s.scalar(select(WishRequest.not_possible).where(
            WishRequest.customer == "c3@example.com")) is True

    # Five more distinct customers, recorded in one batch: the fifth since the rejection
    # sends it back to review, and quality management gets the new requests.
    more = [f"c{i}@example.com" for i in range(4, 9)]
    notes = ask(desk, mail_user, smtp, [(c, "Please add a dark mode.") for c in more])
    qm_before = len(sent_to(smtp, QM))
    for note in notes:
        mail_user.append(agent_reply(note, ANNA, "#wish dark mode, control panel\nNoted."))
    daemon.run_once(desk)
    later(desk)
    assert wish(desk).status == "under_review"
    [review] = sent_to(smtp, QM)[qm_before:]
    assert "Back to review" in str(review.message["Subject"])
    for customer in ["c3@example.com", *more[:4]]:
        assert customer in text_of(review)
    assert "c8@example.com" not in text_of(review)  # recorded after the re-review

    # Quality management sets done; c5 is suppressed (its mail bounced).
    with desk.sessions() as s, s.begin():
        desk.tickets.suppress(desk.direct_store(s), "c5@example.com", "550 no such user")
    mail_user.append(agent_reply(review, QM, "#wish-status W-1 done"))
    daemon.run_once(desk)
    later(desk)
    assert wish(desk).status == "done"
    asking = ["c1@example.com", "c2@example.com", "c3@example.com", *more]
    done_mails = {c: [m for m in sent_to(smtp, c) if "available" in str(m.message["Subject"])
                      or "umgesetzt" in str(m.message["Subject"])] for c in asking}
    assert {c: len(m) for c, m in done_mails.items()} == {
        c: 0 if c == "c5@example.com" else 1 for c in asking}
    assert "Ihr Wunsch ist umgesetzt" in str(done_mails["c2@example.com"][0].message["Subject"])
    assert "now available" in str(done_mails["c1@example.com"][0].message["Subject"])

    # Done again (after a step back): nobody is told twice.
    assert main(["-c", str(desk.settings.config_path), "wishes", "set", "W-1", "--status",
                 "in_progress"]) == 0
    assert main(["-c", str(desk.settings.config_path), "wishes", "set", "W-1", "--status",
                 "done"]) == 0
    daemon.run_once(desk)
    for c in asking:
        assert len([m for m in sent_to(smtp, c) if "available" in str(m.message["Subject"])
                    or "umgesetzt" in str(m.message["Subject"])]) == (c != "c5@example.com")
    with desk.sessions() as s:
        requests = s.scalar(select(func.count()).select_from(WishRequest))
        kept = s.scalar(select(func.count()).select_from(WishMail))
    assert requests == 10 - 2  # c1, c2, c3, c4..c8
    assert kept == 5  # every mail to a wish address with our signature, raw bytes and all


# -- storage, both databases -------------------------------------------------------------------

@pytest.fixture
def register(tmp_path: Path, db_url: str) -> Iterator[tuple[App, Register]]:
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    app = build(settings_for(tmp_path, db_url=db_url, rules="rules.yaml", wishes=WISHES),
                clock=FixedClock())
    yield app, Register(app.tickets)
    app.dispose()


def record(app: App, reg: Register, ticket_id: int, text: str, mode: str = "match") -> str:
    with app.sessions() as s, s.begin():
        store = app.direct_store(s)
        return reg.record(store, store.ticket(ticket_id), by="anna@example.test",
                          command=WishCommand(mode, text)).key


def test_register_counts_merges_and_lists(register: tuple[App, Register],
                                          capsys: pytest.CaptureFixture[str]) -> None:
    app, reg = register
    ids = add_tickets(app, 5)
    with app.sessions() as s, s.begin():  # c0 asks twice, on two tickets
        s.get_one(Ticket, ids[4]).requester = "C0@example.com"
    assert record(app, reg, ids[0], "Export invoices as CSV") == "W-1"
    later(app)
    assert record(app, reg, ids[1], "CSV export of invoices") == "W-1"
    assert record(app, reg, ids[1], "Export invoices as CSV") == "W-1"  # not counted twice
    assert record(app, reg, ids[4], "W-1", mode="key") == "W-1"
    assert record(app, reg, ids[2], "Export invoices as PDF") == "W-2"
    # The agent says it is another wish after all: the request leaves W-1.
    assert record(app, reg, ids[1], "CSV export with semicolons", mode="new") == "W-3"
    assert record(app, reg, ids[3], "Exprot invoices as CVS") == "W-1"
    config = str(app.settings.config_path)

    def cli(*args: str) -> Any:
        capsys.readouterr()
        assert main(["-c", config, "wishes", *args, "--json"]) == 0
        return json.loads(capsys.readouterr().out)

    rows = cli("list", "--sort", "count")
    assert isinstance(rows, list)
    assert [(r["key"], r["requests"], r["customers"]) for r in rows] == [
        ("W-1", 3, 2), ("W-2", 1, 1), ("W-3", 1, 1)]
    assert set(rows[0]) == {"key", "title", "department", "status", "reason", "requests",
                            "customers", "first_requested", "last_requested"}

    with app.sessions() as s, s.begin():
        reg.merge(app.direct_store(s), "W-3", "W-1", by="qm@example.test")
    shown = cli("show", "W-3")  # the merged key leads to the wish it joined
    assert isinstance(shown, dict) and shown["key"] == "W-1"
    # `requests` of `show` is the list of them (INTERFACE.md), not their count.
    assert (len(shown["requests"]), shown["customers"], shown["merged"]) == (4, 3, ["W-3"])
    assert [r["ticket"] for r in shown["requests"]] == ["T-0", "T-4", "T-1", "T-3"]
    assert {k for r in shown["requests"] for k in r} >= {"ticket", "customer", "at"}
    notes = [(h["wish"], h["note"]) for h in shown["history"]]
    assert ("W-3", "created") in notes and ("W-3", "merged into W-1") in notes
    assert ("W-1", "merged W-3 into this (1 requests)") in notes
    assert {k for h in shown["history"] for k in h} >= {"at", "by", "status", "reason"}
    assert [r["key"] for r in cli("list")] == ["W-1", "W-2"]

    # Bad input on the command line: exit 2, a clear message, nothing changed.
    for args, error in [(["set", "W-9", "--status", "planned"], "no wish W-9"),
                        (["set", "W-1", "--status", "rejected"], "needs a reason"),
                        (["merge", "W-1", "W-1"], "same wish")]:
        capsys.readouterr()
        assert main(["-c", config, "wishes", *args]) == 2
        assert error in capsys.readouterr().err
    assert wish(app).status == "new"
    assert main(["-c", config, "wishes", "set", "W-2", "--status", "rejected", "--reason",
                 "Not for now", "--department", "accounting"]) == 0
    assert (wish(app, "W-2").status, wish(app, "W-2").department) == ("rejected",
                                                                      "accounting")
    assert cli("list", "--status", "rejected", "--department", "accounting")[0][
        "reason"] == "Not for now"

    since = app.clock.now().date().isoformat()
    period = cli("list", "--since", since, "--top", "1")
    assert isinstance(period, dict)
    assert [t["key"] for t in period["top"]] == ["W-1"]
    assert [n["key"] for n in period["new"]] == ["W-1", "W-2", "W-3"]
    assert [(c["key"], c["status"]) for c in period["status_changes"]] == [("W-2", "rejected")]
    with app.sessions() as s:  # nothing of that was mail to customers
        assert not s.scalar(select(func.count()).select_from(Outbox).where(
            Outbox.kind == "wish_notice"))


def test_customers_can_be_told_of_a_rejection(tmp_path: Path, db_url: str) -> None:
    """With `notify_customers_on: [done, rejected]`: each customer in their ticket's
    language, with the reason; a suppressed address gets nothing and is not marked told,
    so nobody is told twice and nobody is skipped for good by a bounce."""
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    app = build(settings_for(tmp_path, db_url=db_url, rules="rules.yaml", wishes={
        **WISHES, "notify_customers_on": ["done", "rejected"]}), clock=FixedClock())
    try:
        reg = Register(app.tickets)
        ids = add_tickets(app, 3)
        with app.sessions() as s, s.begin():
            s.get_one(Ticket, ids[1]).language = "de"
            app.tickets.suppress(app.direct_store(s), "c2@example.com", "550 gone")
        for ticket_id in ids:
            record(app, reg, ticket_id, "Weekend hotline")
        with app.sessions() as s, s.begin():
            changed = reg.set_status(app.direct_store(s), "W-1", "rejected",
                                     reason="We cannot staff it", by=QM)
        assert changed.told == 2
        with app.sessions() as s:
            sent = {o.rcpt_to: o.raw.decode() for o in s.scalars(
                select(Outbox).where(Outbox.kind == "wish_notice"))}
        assert set(sent) == {"c0@example.com", "c1@example.com"}
        assert "Zu Ihrem Wunsch" in sent["c1@example.com"]
        assert "We cannot staff it" in sent["c0@example.com"]
        with app.sessions() as s, s.begin():  # the same status again: nobody twice
            assert reg.set_status(app.direct_store(s), "W-1", "rejected",
                                  reason="We cannot staff it", by=QM).changed is False
    finally:
        app.dispose()


def test_a_quality_management_mail_applies_all_or_nothing(
        register: tuple[App, Register]) -> None:
    """Two commands, the second naming no wish: the first is not applied either; the
    sender is told which line was wrong, with their text quoted; the mail is kept."""
    from maild.agents.parse import strip_quoted
    from maild.domain import Stop
    from maild.pipeline.parse import parse
    from maild.wishes.inbox import WishInbox

    app, reg = register
    ids = add_tickets(app, 1)
    record(app, reg, ids[0], "Weekend hotline")
    body = ("#wish-status W-1 planned\n#wish-status W-7 done\n\n"
            "On Mon, 23 Nov 2026 Example Support wrote:\n> old text")
    inbound = parse(customer_mail(sender=QM, subject="Re: [W-1]", body=body), None)
    with app.sessions() as s, s.begin():
        outcome = WishInbox(app.tickets).handle(app.direct_store(s), inbound, "w-1",
                                                strip_quoted(inbound.body_text))
    assert outcome.stop is Stop.HOLD and "W-7: no such wish" in outcome.reason
    assert wish(app).status == "new"
    with app.sessions() as s:
        [answer] = [o.raw.decode() for o in s.scalars(select(Outbox).where(
            Outbox.rcpt_to == QM)) if "NOT applied" in o.raw.decode()]
        [kept] = s.scalars(select(WishMail)).all()
    assert "> #wish-status W-1 planned" in answer and "old text" not in answer
    assert kept.raw == inbound.raw and kept.result.startswith("refused")
    with app.sessions() as s, s.begin():  # the same mail again (a re-fetch): discarded
        again = WishInbox(app.tickets).handle(app.direct_store(s), inbound, "w-1", body)
    assert again.stop is Stop.DISCARD


def test_a_department_reviews_what_is_handed_to_it(tmp_path: Path, db_url: str) -> None:
    """Customer service's quality management hands a wish to a department (under_review):
    that department's quality management is told, with the wish's address to answer to,
    and may decide on its own department's wishes only."""
    from maild.agents.parse import strip_quoted
    from maild.domain import Stop
    from maild.pipeline.parse import parse
    from maild.wishes.inbox import WishInbox

    accounting = "acc-qm@example.test"
    (tmp_path / "rules.yaml").write_text(RULES, encoding="utf-8")
    app = build(settings_for(tmp_path, db_url=db_url, rules="rules.yaml", wishes={
        **WISHES, "departments": {"accounting": [accounting]}}), clock=FixedClock())
    try:
        reg = Register(app.tickets)
        ids = add_tickets(app, 2)
        record(app, reg, ids[0], "Invoices by post")
        record(app, reg, ids[1], "Weekend hotline")
        with app.sessions() as s, s.begin():
            reg.set_status(app.direct_store(s), "W-1", "under_review", reason=None, by=QM,
                           department="accounting")
        with app.sessions() as s:
            [handed] = [o.raw.decode() for o in s.scalars(select(Outbox).where(
                Outbox.rcpt_to == accounting))]
        assert "For review" in handed and "Reply-To: support+wish-w-1." in handed

        def mail(body: str) -> Stop:
            inbound = parse(customer_mail(sender=accounting, subject="Re: [W-1]",
                                          body=body), None)
            with app.sessions() as s, s.begin():
                return WishInbox(app.tickets).handle(app.direct_store(s), inbound, "w-1",
                                                     strip_quoted(inbound.body_text)).stop

        assert mail("#wish-status W-2 planned") is Stop.HOLD  # not their department's
        assert wish(app, "W-2").status == "new"
        assert mail("#wish-status W-1 planned") is Stop.DISCARD  # applied
        assert (wish(app).status, wish(app).department) == ("planned", "accounting")
    finally:
        app.dispose()
