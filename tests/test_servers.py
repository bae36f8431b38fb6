"""The test servers themselves, driven with the real client libraries."""

from __future__ import annotations

import ssl
import time
from email.message import EmailMessage

import aiosmtplib
import pytest
from imapclient import IMAPClient
from imapclient.exceptions import CapabilityError, LoginError
from sqlalchemy import create_engine, text

from tests.servers.dovecot import Dovecot, MailUser, free_port
from tests.servers.postgres import PgDatabase, PostgresUnavailable
from tests.servers.smtp import SmtpServer, send


def raw_message(subject: str, body: str = "Hello.") -> bytes:
    return (
        f"From: Customer <customer@example.test>\r\n"
        f"To: support@example.test\r\n"
        f"Subject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '-')}@example.test>\r\n"
        f"\r\n{body}\r\n"
    ).encode()


def email_message(subject: str, to: str = "customer@example.test") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "support@example.test"
    message["To"] = to
    message["Subject"] = subject
    message.set_content("Your ticket was received.\n")
    return message


# -- Dovecot -------------------------------------------------------------------------------


def test_append_then_fetch_with_imapclient(mail_user: MailUser) -> None:
    raw = raw_message("first")
    uid = mail_user.append(raw)
    with IMAPClient(mail_user.host, mail_user.port, ssl=False, timeout=10) as client:
        client.login(mail_user.username, mail_user.password)
        info = client.select_folder("INBOX")
        assert info[b"EXISTS"] == 1
        data = client.fetch([uid], ["BODY.PEEK[]", "FLAGS"])
    assert data[uid][b"BODY[]"] == raw
    assert mail_user.fetch_all() == [raw]


def test_append_many_count_and_folders(mail_user: MailUser) -> None:
    raws = [raw_message(f"message {i}") for i in range(20)]
    uids = mail_user.append_many(raws, folder="Archive")
    assert uids == sorted(uids) and len(set(uids)) == 20
    assert mail_user.count("Archive") == 20
    assert mail_user.fetch_all("Archive") == raws
    assert mail_user.count() == 0
    assert mail_user.count("Does not exist") == 0
    assert mail_user.fetch_all("Does not exist") == []
    assert sorted(mail_user.folders()) == ["Archive", "INBOX"]


def test_add_user_while_running(dovecot: Dovecot) -> None:
    dovecot.ensure_running()
    dovecot.add_user("late-comer@example.test", "s3cret pass")
    with IMAPClient(dovecot.host, dovecot.port, ssl=False, timeout=10) as client:
        client.login("late-comer@example.test", "s3cret pass")
        assert client.folder_exists("INBOX")


def test_wrong_password_is_refused(mail_user: MailUser) -> None:
    with (
        IMAPClient(mail_user.host, mail_user.port, ssl=False, timeout=10) as client,
        pytest.raises(LoginError),
    ):
        client.login(mail_user.username, "wrong")


def test_idle_wakes_up_on_append_from_another_connection(mail_user: MailUser) -> None:
    with mail_user.connect() as idler:
        idler.select_folder("INBOX")
        idler.idle()
        try:
            mail_user.append(raw_message("wake up"))
            deadline = time.monotonic() + 10
            responses: list[tuple[int, bytes]] = []
            while time.monotonic() < deadline:
                responses += idler.idle_check(timeout=deadline - time.monotonic())
                if (1, b"EXISTS") in responses:
                    break
        finally:
            idler.idle_done()
    assert (1, b"EXISTS") in responses


def test_reset_uidvalidity_keeps_messages(dovecot: Dovecot, mail_user: MailUser) -> None:
    raws = [raw_message(f"keep {i}") for i in range(3)]
    mail_user.append_many(raws)
    mail_user.append(raw_message("other folder"), folder="Done")
    before = mail_user.uidvalidity()
    before_done = mail_user.uidvalidity("Done")

    after = dovecot.reset_uidvalidity(mail_user.username)

    assert after != before
    assert mail_user.uidvalidity() == after
    assert mail_user.fetch_all() == raws
    assert mail_user.uidvalidity("Done") == before_done
    assert dovecot.reset_uidvalidity(mail_user.username, "Done") != before_done
    assert mail_user.fetch_all("Done") == [raw_message("other folder")]


def test_stop_and_start_keep_port_and_mail(dovecot: Dovecot, mail_user: MailUser) -> None:
    mail_user.append(raw_message("survives"))
    port = dovecot.port
    dovecot.stop()
    try:
        assert not dovecot.running
        with pytest.raises(ConnectionRefusedError):
            IMAPClient(dovecot.host, port, ssl=False, timeout=5)
    finally:
        dovecot.start()
    assert dovecot.port == port
    assert mail_user.fetch_all() == [raw_message("survives")]


def test_implicit_tls_with_ca_file(dovecot_tls: Dovecot) -> None:
    user = dovecot_tls.new_user()
    assert dovecot_tls.tls_port is not None and dovecot_tls.ca_file is not None
    context = ssl.create_default_context(cafile=str(dovecot_tls.ca_file))
    with IMAPClient(
        dovecot_tls.host, dovecot_tls.tls_port, ssl=True, ssl_context=context, timeout=10
    ) as client:
        client.login(user.username, user.password)
        assert client.folder_exists("INBOX")


def test_implicit_tls_verifies_the_certificate(dovecot_tls: Dovecot) -> None:
    assert dovecot_tls.tls_port is not None
    with pytest.raises(ssl.SSLCertVerificationError):
        IMAPClient(
            dovecot_tls.host,
            dovecot_tls.tls_port,
            ssl=True,
            ssl_context=ssl.create_default_context(),  # system CAs only
            timeout=10,
        )


def test_starttls_with_ca_file(dovecot_tls: Dovecot) -> None:
    user = dovecot_tls.new_user()
    with IMAPClient(dovecot_tls.host, dovecot_tls.port, ssl=False, timeout=10) as client:
        assert client.has_capability("STARTTLS")
        client.starttls(dovecot_tls.client_context())
        client.login(user.username, user.password)
        assert client.folder_exists("INBOX")


def test_starttls_fails_closed_without_tls(dovecot: Dovecot) -> None:
    dovecot.ensure_running()
    with IMAPClient(dovecot.host, dovecot.port, ssl=False, timeout=10) as client:
        assert not client.has_capability("STARTTLS")
        with pytest.raises(CapabilityError):
            client.starttls(ssl.create_default_context())


def test_server_without_move() -> None:
    with Dovecot(capabilities_remove=["MOVE"]) as server:
        user = server.new_user()
        uid = user.append(raw_message("stays"))
        server.create_folder(user.username, "Done")
        with user.connect() as client:
            assert not client.has_capability("MOVE")
            assert client.has_capability("UIDPLUS") and client.has_capability("IDLE")
            client.select_folder("INBOX")
            with pytest.raises(CapabilityError):
                client.move([uid], "Done")
        server.restart()  # the probed capability list survives a restart
        with user.connect() as client:
            assert not client.has_capability("MOVE")


# -- SMTP ----------------------------------------------------------------------------------


def test_smtp_records_messages(smtp_server: SmtpServer) -> None:
    send(smtp_server, email_message("Ticket #1"), sender="bounce@example.test")
    [received] = smtp_server.wait_for(1, timeout=10)
    assert received.mail_from == "bounce@example.test"
    assert received.rcpt_tos == ["customer@example.test"]
    assert received.message["Subject"] == "Ticket #1"
    assert b"Your ticket was received." in received.data
    assert not received.tls
    assert smtp_server.messages == [received]


def test_smtp_wait_for_is_bounded(smtp_server: SmtpServer) -> None:
    with pytest.raises(TimeoutError):
        smtp_server.wait_for(1, timeout=0.05)


def test_smtp_fail_next_then_success(smtp_server: SmtpServer) -> None:
    smtp_server.fail_next(1, 451)
    with pytest.raises(aiosmtplib.SMTPResponseException) as failed:
        send(smtp_server, email_message("retry me"))
    assert failed.value.code == 451
    assert smtp_server.messages == []
    send(smtp_server, email_message("retry me"))
    assert [m.message["Subject"] for m in smtp_server.wait_for(1)] == ["retry me"]


def test_smtp_fail_next_at_rcpt(smtp_server: SmtpServer) -> None:
    smtp_server.fail_next(2, 452, stage="RCPT")
    for _ in range(2):
        with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
            send(smtp_server, email_message("full"))
        assert [r.code for r in refused.value.recipients] == [452]
    send(smtp_server, email_message("full"))
    assert len(smtp_server.wait_for(1)) == 1


def test_smtp_reject_recipient(smtp_server: SmtpServer) -> None:
    smtp_server.reject_recipient("gone@example.test")
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused) as refused:
        send(smtp_server, email_message("hello", to="Gone@Example.test"))
    assert [r.code for r in refused.value.recipients] == [550]
    # With another, valid recipient the message goes to that one only.
    message = email_message("hello", to="gone@example.test, ok@example.test")
    send(smtp_server, message)
    [received] = smtp_server.wait_for(1)
    assert received.rcpt_tos == ["ok@example.test"]


def test_smtp_stop_and_start_on_same_port(smtp_server: SmtpServer) -> None:
    port = smtp_server.port
    smtp_server.stop()
    with pytest.raises(aiosmtplib.SMTPConnectError):
        send(smtp_server, email_message("nobody listens"))
    smtp_server.start()
    assert smtp_server.port == port
    send(smtp_server, email_message("back again"))
    assert [m.message["Subject"] for m in smtp_server.wait_for(1)] == ["back again"]


def test_smtp_starttls(smtp_server_tls: SmtpServer) -> None:
    context = smtp_server_tls.client_context()
    send(smtp_server_tls, email_message("secret"), start_tls=True, tls_context=context)
    [received] = smtp_server_tls.wait_for(1)
    assert received.tls


def test_smtp_starttls_required(smtp_server_tls: SmtpServer) -> None:
    with pytest.raises(aiosmtplib.SMTPResponseException) as refused:
        send(smtp_server_tls, email_message("plain"), start_tls=False)
    assert refused.value.code == 530
    assert smtp_server_tls.messages == []


def test_smtp_implicit_tls() -> None:
    with SmtpServer(implicit_tls=True) as server:
        send(server, email_message("smtps"), use_tls=True, tls_context=server.client_context())
        [received] = server.wait_for(1)
        assert received.tls


# -- databases -----------------------------------------------------------------------------


def test_pg_url_is_a_fresh_database(pg_url: str) -> None:
    assert pg_url.startswith("postgresql+psycopg://")
    assert "/maild_test_" in pg_url
    engine = create_engine(pg_url)
    try:
        with engine.begin() as conn:
            name = conn.execute(text("select current_database()")).scalar_one()
            tables = conn.execute(
                text("select count(*) from pg_tables where schemaname = 'public'")
            ).scalar_one()
    finally:
        engine.dispose()
    assert pg_url.endswith("/" + name)
    assert tables == 0


def test_pg_database_is_dropped() -> None:
    database = PgDatabase.create()
    database.drop()
    engine = create_engine(database.url.rsplit("/", 1)[0] + "/test")
    try:
        with engine.connect() as conn:
            found = conn.execute(
                text("select count(*) from pg_database where datname = :n"), {"n": database.name}
            ).scalar_one()
    finally:
        engine.dispose()
    assert found == 0


def test_pg_unreachable_is_an_error_not_a_skip() -> None:
    with pytest.raises(PostgresUnavailable, match="PostgreSQL is needed"):
        PgDatabase.create(f"postgresql://postgres@127.0.0.1:{free_port()}/test")


def test_db_url(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(text("create table t (x integer)"))
            conn.execute(text("insert into t values (1)"))
            assert conn.execute(text("select x from t")).scalar_one() == 1
    finally:
        engine.dispose()
