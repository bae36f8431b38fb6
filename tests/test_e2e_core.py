"""End to end against a real Dovecot and a real aiosmtpd: mailbox in, acknowledgements out."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from imapclient.exceptions import IMAPClientError
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from maild import daemon
from maild.app import App, build
from maild.clock import FixedClock
from maild.errors import TransportError
from maild.fetch.imap import ImapSource
from maild.store.models import Event, Quarantine, Ticket
from tests.kit import customer_mail, message_id_of, settings_for, write_config
from tests.servers.dovecot import Dovecot, MailUser
from tests.servers.smtp import SmtpServer

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def smtp_config(smtp: SmtpServer) -> dict[str, Any]:
    return {"host": smtp.host, "port": smtp.port, "security": "none"}


@pytest.fixture
def app(tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer,
        db_url: str) -> Iterator[App]:
    settings = settings_for(tmp_path, db_url=db_url, imap=mail_user.imap_config(),
                            smtp=smtp_config(smtp_server))
    application = build(settings, clock=FixedClock())
    yield application
    application.dispose()


def all_tickets(app: App) -> list[Ticket]:
    with app.sessions() as s:
        return list(s.scalars(select(Ticket).options(selectinload(Ticket.messages))
                              .order_by(Ticket.id)))


def test_threading_dedup_and_acknowledgements(
    app: App, mail_user: MailUser, smtp_server: SmtpServer
) -> None:
    first = customer_mail(subject="Login does not work")
    mail_user.append(first)
    mail_user.append(first)  # delivered twice
    no_id = customer_mail(sender="bob@example.org", subject="Printer", message_id=None)
    mail_user.append(no_id)
    daemon.run_once(app)

    assert len(all_tickets(app)) == 2
    acks = smtp_server.wait_for(2)
    by_to = {a.rcpt_tos[0]: a.message for a in acks}
    ack = by_to["erika@example.com"]
    assert ack["In-Reply-To"] == message_id_of(first)
    assert mail_user.count("INBOX") == 0
    assert mail_user.count("Processed") == 3

    ref = all_tickets(app)[0].ref
    mail_user.append(customer_mail(subject="Re: " + str(ack["Subject"]),
                                   in_reply_to=str(ack["Message-ID"])))
    mail_user.append(customer_mail(subject=f"AW: [{ref}] Login", body="from my phone"))
    mail_user.append(customer_mail(subject="one more thing",
                                   references=[message_id_of(first)]))
    daemon.run_once(app)

    tickets = all_tickets(app)
    assert len(tickets) == 2
    assert len(tickets[0].messages) == 5  # 4 inbound + 1 acknowledgement
    assert len(smtp_server.messages) == 2  # no second acknowledgement
    assert mail_user.count("INBOX") == 0
    with app.sessions() as s:
        kinds = [e.kind for e in s.scalars(select(Event).where(Event.ticket_id == tickets[0].id))]
    assert kinds.count("message.received") == 3
    assert "acknowledgement.sent" in kinds


def test_corpus_into_dovecot_every_message_in_a_ticket_or_quarantine(
    tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, sqlite_url: str
) -> None:
    files = sorted(p for p in (CORPUS / "malformed").rglob("*")
                   if p.is_file() and p.suffix != ".csv")
    files += sorted((CORPUS / "threads" / "notmuch-threading").iterdir())
    raws = [p.read_bytes() for p in files]
    appended = [r for r in raws if r.strip()]  # IMAP cannot APPEND an empty message
    mail_user.append_many(appended)
    settings = settings_for(tmp_path, db_url=sqlite_url, imap=mail_user.imap_config(),
                            smtp={"host": "127.0.0.1", "port": 9, "security": "none"})
    app = build(settings, clock=FixedClock())
    summary = daemon.run_once(app)
    counters = summary.mailboxes["support"]
    assert counters.fetched == len(appended)
    assert mail_user.count("INBOX") == 0
    assert mail_user.count("Processed") + mail_user.count("Quarantine") == len(appended)
    with app.sessions() as s:
        held = s.scalars(select(Quarantine)).all()
        assert len(held) == mail_user.count("Quarantine") == counters.held
        assert all(q.raw and q.reason for q in held)
    assert summary.outbox.unreachable  # nothing went anywhere: port 9 is closed
    app.dispose()


def test_smtp_4xx_is_retried_and_5xx_marks_failed(
    tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, sqlite_url: str
) -> None:
    clock = FixedClock()
    settings = settings_for(tmp_path, db_url=sqlite_url, imap=mail_user.imap_config(),
                            smtp=smtp_config(smtp_server))
    app = build(settings, clock=clock)
    smtp_server.fail_next(1, code=451)
    smtp_server.reject_recipient("gone@example.org", code=550)
    mail_user.append(customer_mail())
    mail_user.append(customer_mail(sender="gone@example.org"))
    summary = daemon.run_once(app)
    assert summary.outbox.retried == 1 and summary.outbox.failed == 1
    assert smtp_server.messages == []
    again = asyncio.run(app.sender.drain_once())
    assert again.sent == 0  # not due yet: backoff
    clock.advance(timedelta(seconds=5))
    again = asyncio.run(app.sender.drain_once())
    assert again.sent == 1
    assert smtp_server.messages[0].rcpt_tos == ["erika@example.com"]
    with app.sessions() as s:
        failed = s.scalars(select(Event).where(Event.kind == "acknowledgement.failed")).all()
        assert len(failed) == 1 and failed[0].data["code"] == 550
    app.dispose()


def test_uidvalidity_change_loses_and_duplicates_nothing(
    tmp_path: Path, dovecot: Dovecot, mail_user: MailUser, smtp_server: SmtpServer,
    sqlite_url: str,
) -> None:
    settings = settings_for(tmp_path, db_url=sqlite_url, imap=mail_user.imap_config(),
                            smtp=smtp_config(smtp_server))
    app = build(settings, clock=FixedClock())
    crashed = customer_mail(subject="committed, never moved")
    mail_user.append(crashed)
    # Commit without the IMAP move, as if the daemon died between the two.
    source = ImapSource(settings.mailboxes[0])
    source.open()
    app.pipeline.process_batch(source.fetch(source.unacknowledged()))
    source.close()
    mail_user.append(customer_mail(subject="new after the change", message_id=None))
    before = mail_user.uidvalidity()
    dovecot.reset_uidvalidity(mail_user.username)
    assert mail_user.uidvalidity() != before
    daemon.run_once(app)
    subjects = sorted(t.subject for t in all_tickets(app))
    assert subjects == ["committed, never moved", "new after the change"]
    assert mail_user.count("INBOX") == 0
    assert len(smtp_server.messages) == 2
    app.dispose()


def test_a_move_sent_without_waiting_is_answered_before_the_next_command(
    tmp_path: Path, mail_user: MailUser, sqlite_url: str
) -> None:
    """The server moves while the daemon works; the next command reads the answer first,
    and a move the server refused raises there, leaving the messages where they were."""
    mail_user.append_many([customer_mail(subject=f"M{i}") for i in range(3)])
    settings = settings_for(tmp_path, db_url=sqlite_url, imap=mail_user.imap_config())
    source = ImapSource(settings.mailboxes[0])
    source.open()
    first, second, third = source.unacknowledged()
    source.acknowledge([first, second], "Processed", wait=False)
    [fetched] = source.fetch([third])  # answered the move first, then fetched
    assert b"Subject: M2" in fetched.raw
    assert (mail_user.count("Processed"), mail_user.count("INBOX")) == (2, 1)
    source.acknowledge([third], "No such folder", wait=False)
    with pytest.raises(IMAPClientError, match="TRYCREATE"):
        source.unacknowledged()
    assert source.unacknowledged() == [third]  # the connection goes on; nothing was lost
    source.acknowledge([third], "No such folder", wait=False)
    source.close()  # a refused move in flight does not stop the logout
    assert (mail_user.count("Processed"), mail_user.count("INBOX")) == (2, 1)


def test_stopped_during_a_backlog_the_batches_written_are_moved(
    tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, sqlite_url: str
) -> None:
    """SIGTERM between batches: the batch written last is moved before the worker returns
    (its move is otherwise sent only with the next batch); the rest stays in the inbox."""
    mail_user.append_many([customer_mail(subject=f"Backlog {i}") for i in range(9)])
    settings = settings_for(tmp_path, db_url=sqlite_url, imap=mail_user.imap_config(),
                            smtp=smtp_config(smtp_server), mailbox={"batch_size": 3})
    app = build(settings, clock=FixedClock())
    [worker] = daemon.workers_for(app)
    process_batch = app.pipeline.process_batch
    batches = 0

    def then_stop(*args: Any, **kwargs: Any) -> Any:
        nonlocal batches
        result = process_batch(*args, **kwargs)
        batches += 1
        if batches == 2:
            worker.stop.set()
        return result

    app.pipeline.process_batch = then_stop  # type: ignore[method-assign]
    worker.run_once()
    assert len(all_tickets(app)) == 6
    assert (mail_user.count("Processed"), mail_user.count("INBOX")) == (6, 3)
    app.dispose()


def test_without_move_messages_are_copied_and_flagged(
    tmp_path: Path, smtp_server: SmtpServer, sqlite_url: str
) -> None:
    with Dovecot(capabilities_remove=["MOVE"]) as server:
        user = server.new_user()
        user.append(customer_mail())
        settings = settings_for(tmp_path, db_url=sqlite_url, imap=user.imap_config(),
                                smtp=smtp_config(smtp_server))
        app = build(settings, clock=FixedClock())
        daemon.run_once(app)
        daemon.run_once(app)  # nothing is processed twice
        assert len(all_tickets(app)) == 1
        assert user.count("Processed") == 1
        assert user.count("INBOX") == 0  # expunged with UID EXPUNGE (UIDPLUS)
        app.dispose()


def test_starttls_demanded_but_not_offered_fails_closed(
    tmp_path: Path, mail_user: MailUser, sqlite_url: str
) -> None:
    imap = {**mail_user.imap_config(), "security": "starttls"}
    settings = settings_for(tmp_path, db_url=sqlite_url, imap=imap)
    with pytest.raises(TransportError, match="STARTTLS"):
        ImapSource(settings.mailboxes[0]).open()


@pytest.mark.parametrize("mode", ["tls", "starttls"])
def test_tls_modes_against_dovecot(
    tmp_path: Path, dovecot_tls: Dovecot, sqlite_url: str, mode: str
) -> None:
    user = dovecot_tls.new_user()
    user.append(customer_mail())
    port = dovecot_tls.tls_port if mode == "tls" else dovecot_tls.port
    imap = {**user.imap_config(), "security": mode, "port": port,
            "ca_file": str(dovecot_tls.ca_file)}
    settings = settings_for(tmp_path, db_url=sqlite_url, imap=imap)
    source = ImapSource(settings.mailboxes[0])
    source.open()
    assert len(source.unacknowledged()) == 1
    source.close()
    untrusted = settings_for(tmp_path, db_url=sqlite_url, imap={**imap, "ca_file": None})
    with pytest.raises(TransportError):  # a certificate we do not trust: no login
        ImapSource(untrusted.mailboxes[0]).open()


def test_daemon_with_idle_acknowledges_new_mail(
    app: App, mail_user: MailUser, smtp_server: SmtpServer
) -> None:
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete,
                              args=(daemon.run_forever(app, stop),))
    thread.start()
    try:
        mail_user.append(customer_mail(subject="first"))
        smtp_server.wait_for(1, timeout=20)
        mail_user.append(customer_mail(subject="second while idle"))
        acks = smtp_server.wait_for(2, timeout=20)
        assert {str(a.message["Subject"]).split("] ", 1)[1] for a in acks} == {
            "first", "second while idle"}
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=30)
        if not thread.is_alive():
            loop.close()
    assert not thread.is_alive()


def maild(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "maild", "-c", str(config), *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_command_line(
    tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, sqlite_url: str
) -> None:
    config = write_config(tmp_path, db_url=sqlite_url, imap=mail_user.imap_config(),
                          smtp=smtp_config(smtp_server))
    assert maild("check", config=config).returncode == 0
    assert maild("db", "upgrade", config=config).returncode == 0
    mail_user.append(customer_mail())
    run = maild("run", "--once", config=config)
    assert run.returncode == 0, run.stderr
    listed = json.loads(maild("tickets", "list", "--json", config=config).stdout)
    [ticket] = listed
    assert set(ticket) >= {"id", "ref", "subject", "requester", "status", "level",
                           "department", "priority", "created_at", "message_count"}
    assert ticket["message_count"] == 2 and ticket["created_at"].endswith("+00:00")
    shown = json.loads(maild("tickets", "show", ticket["ref"], "--json", config=config).stdout)
    assert [m["direction"] for m in shown["messages"]] == ["inbound", "outbound"]
    assert set(shown["messages"][0]) >= {"direction", "message_id", "from", "to", "subject",
                                         "date"}
    assert shown["events"][0]["kind"] == "created"
    assert set(shown["sla"]) >= {"policy", "first_response_due", "first_response_at",
                                 "resolution_due", "resolved_at", "breaches"}
    by_number = json.loads(maild("tickets", "show", str(ticket["id"]), "--json",
                                 config=config).stdout)
    assert by_number["ref"] == ticket["ref"]
    missing = maild("tickets", "show", "T-NOPE99", config=config)
    assert missing.returncode == 1 and "no ticket" in missing.stderr


def test_unreachable_imap_is_exit_1_with_one_line(tmp_path: Path, sqlite_url: str) -> None:
    config = write_config(tmp_path, db_url=sqlite_url)  # port 9: nothing listens
    run = maild("run", "--once", config=config)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].startswith("maild: IMAP")


def test_bad_configuration_is_exit_2_with_file_key_and_line(tmp_path: Path) -> None:
    config = tmp_path / "maild.yaml"
    config.write_text(
        "support:\n  address: support@example.test\nmailboxes:\n  - name: a\n"
        "    imap: {host: h, username: u, pasword: x}\nsmtp: {host: h}\n", encoding="utf-8")
    result = maild("check", config=config)
    assert result.returncode == 2
    assert f"{config}:5" in result.stderr and "mailboxes.0.imap.pasword" in result.stderr
    assert "unknown key" in result.stderr
    missing = maild("check", config=tmp_path / "nope.yaml")
    assert missing.returncode == 2 and "nope.yaml" in missing.stderr
    config.write_text("support: [unclosed\n", encoding="utf-8")
    broken = maild("check", config=config)
    assert broken.returncode == 2 and f"{config}:" in broken.stderr


def test_mail_arriving_just_before_idle_wakes_it(
    tmp_path: Path, mail_user: MailUser, sqlite_url: str
) -> None:
    """A message appended after our last SEARCH is announced together with `+ idling`."""
    import time

    settings = settings_for(tmp_path, db_url=sqlite_url, imap=mail_user.imap_config(),
                            mailbox={"idle_renew": 60})
    source = ImapSource(settings.mailboxes[0])
    source.open()
    try:
        assert source.unacknowledged() == []
        mail_user.append(customer_mail())  # the server tells us only once we IDLE
        started = time.monotonic()
        source.wait(lambda: False)
        assert time.monotonic() - started < 10  # not the 60 s renewal
        assert len(source.unacknowledged()) == 1
    finally:
        source.close()
