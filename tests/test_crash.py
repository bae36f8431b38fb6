"""SIGKILL the daemon at several points while it ingests a few hundred messages, and while
it delivers a batch of mail.

After each kill the daemon is started again; at the end every message is in exactly one
ticket, every new ticket has exactly one acknowledgement Message-ID, and nothing is left
unprocessed; of a batch being delivered, at most one mail per SMTP connection a kill is
delivered twice. The kill points are chosen by progress (rows committed, mails at the
sink), not by sleeping.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.pool import NullPool

from maild.app import build
from maild.store.models import Message, Outbox, Ticket
from tests.kit import SUPPORT, customer_mail, message_id_of, settings_for, write_config
from tests.servers.dovecot import MailUser
from tests.servers.smtp import SmtpServer

pytestmark = pytest.mark.slow


def build_mailbox(count: int, rng: random.Random) -> tuple[list[bytes], int]:
    """`count` messages: new requests, replies to earlier ones, duplicates."""
    out: list[bytes] = []
    roots: list[tuple[str, bytes]] = []
    while len(out) < count:
        roll = rng.random()
        if roots and roll < 0.25:
            sender, parent = rng.choice(roots)  # a customer answers in their own ticket
            out.append(customer_mail(sender=sender, subject="Re: follow-up",
                                     in_reply_to=message_id_of(parent),
                                     references=[message_id_of(parent)]))
        elif out and roll < 0.32:
            out.append(rng.choice(out))  # a duplicate delivery
        else:
            sender = f"customer{len(roots)}@example.com"
            raw = customer_mail(sender=sender, subject=f"Request number {len(roots)}")
            roots.append((sender, raw))
            out.append(raw)
    return out, len(roots)


def inbound_count(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT count(*) FROM messages WHERE direction = "
                                         "'inbound'")).scalar() or 0)
    except Exception:  # the schema may not exist yet
        return 0
    finally:
        engine.dispose()


def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "maild", "-c", str(config), "run"],
            stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
        )


def test_sigkill_at_several_points_loses_and_duplicates_nothing(
    tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, db_url: str
) -> None:
    rng = random.Random(20261122)
    messages, roots = build_mailbox(300, rng)
    mail_user.append_many(messages)
    config = write_config(
        tmp_path, db_url=db_url, imap=mail_user.imap_config(),
        smtp={"host": smtp_server.host, "port": smtp_server.port, "security": "none"},
        mailbox={"batch_size": 7},
    )
    log = tmp_path / "daemon.log"
    killed_at: list[int] = []
    for threshold in (1, 40, 90, 150, 220):
        proc = start(config, log)
        deadline = time.monotonic() + 60
        while inbound_count(db_url) < threshold and time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"daemon exited early: {log.read_text()[-2000:]}")
            time.sleep(0.01)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        killed_at.append(inbound_count(db_url))
    # Each kill interrupted real work: messages were committed, and more were still to come.
    assert killed_at == sorted(killed_at) and killed_at[0] >= 1
    assert killed_at[-1] < len({message_id_of(m) for m in messages})

    final = subprocess.run(
        [sys.executable, "-m", "maild", "-c", str(config), "run", "--once"],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert final.returncode == 0, final.stderr[-3000:]

    unique_ids = {message_id_of(m) for m in messages}
    engine = create_engine(db_url)
    try:
        ack_ids = check_database(engine, unique_ids, roots)
    finally:
        engine.dispose()
    assert mail_user.count("INBOX") == 0
    assert mail_user.count("Processed") == len(messages)
    received = Counter(str(m.message["Message-ID"]).strip("<>") for m in smtp_server.messages)
    assert set(received) == ack_ids  # every acknowledgement arrived; a resend keeps its id


def check_database(engine: Engine, unique_ids: set[str], roots: int) -> set[str]:
    """Every message in exactly one ticket; one acknowledgement per ticket; nothing left."""
    with engine.connect() as conn:
        stored = Counter(conn.execute(
            select(Message.message_id).where(Message.direction == "inbound")).scalars())
        assert set(stored) == {m.strip("<>") for m in unique_ids}
        assert max(stored.values()) == 1
        assert conn.execute(select(func.count()).select_from(Ticket)).scalar() == roots
        acks = Counter(conn.execute(
            select(Outbox.ticket_id).where(Outbox.kind == "acknowledgement")).scalars())
        assert len(acks) == roots and set(acks.values()) == {1}
        pending = conn.execute(select(func.count()).select_from(Outbox)
                               .where(Outbox.status != "sent")).scalar()
        assert pending == 0
        return set(conn.execute(select(Outbox.message_id)).scalars())


# -- SIGKILL while a batch is being delivered ---------------------------------------------------

BATCH_MAILS = 60
CONNECTIONS = 4  # outbox.connections, maild's default


def fill_outbox(folder: Path, db_url: str, count: int) -> list[str]:
    """`count` composed mails due now, each to a recipient of its own (so they spread over
    the connections); their Message-IDs. Written by maild's own schema, through a built app
    (migrations applied), as the pipeline leaves them."""
    app = build(settings_for(folder, db_url=db_url))
    ids = [f"crash-{i}.{uuid.uuid4().hex}@example.test" for i in range(count)]
    now = datetime.now(UTC)
    try:
        with app.sessions() as session, session.begin():
            for i, mid in enumerate(ids):
                raw = (f"From: {SUPPORT}\r\nTo: c{i}@example.com\r\nMessage-ID: <{mid}>\r\n"
                       f"Subject: mail {i}\r\n\r\nMail number {i}.\r\n").encode()
                session.add(Outbox(
                    ticket_id=None, message_row_id=None, message_id=mid, kind="notification",
                    mail_from=SUPPORT, rcpt_to=f"c{i}@example.com", raw=raw, status="pending",
                    attempts=0, next_attempt_at=now, last_error=None, created_at=now,
                    sent_at=None))
    finally:
        app.dispose()
    return ids


def pending(url: str) -> int:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(Outbox)
                                   .where(Outbox.status == "pending")) or 0)
    finally:
        engine.dispose()


def delivered(smtp: SmtpServer) -> Counter[str]:
    return Counter(str(m.message["Message-ID"]).strip("<> ") for m in smtp.messages)


def test_sigkill_while_a_batch_is_delivered_resends_at_most_one_mail_per_connection(
    tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, db_url: str
) -> None:
    """A batch of 60 mails (one claim: outbox.batch_size is 100) goes out over four
    connections; the daemon's process group is killed when the sink has taken 1, 15, 30
    and 45 mails. A mail the server took and maild had not yet recorded goes out again
    after the restart: at most one per connection a kill, and none a third time."""
    ids = fill_outbox(tmp_path, db_url, BATCH_MAILS)
    config = write_config(tmp_path, db_url=db_url, imap=mail_user.imap_config(),
                          smtp={"host": smtp_server.host, "port": smtp_server.port,
                                "security": "none"})
    log = tmp_path / "daemon.log"
    kills = 0
    for threshold in (1, 15, 30, 45):
        proc = start(config, log)
        try:
            smtp_server.wait_for(threshold, timeout=60)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        kills += 1
        # The kill came in the middle of the batch: mail was still waiting to be sent.
        assert len(delivered(smtp_server)) < BATCH_MAILS
        assert pending(db_url) > 0
    proc = start(config, log)
    try:
        deadline = time.monotonic() + 60
        while (pending(db_url) or len(delivered(smtp_server)) < BATCH_MAILS) \
                and time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.fail(f"daemon exited early: {log.read_text()[-2000:]}")
            time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    received = delivered(smtp_server)
    assert set(received) == set(ids) and pending(db_url) == 0
    twice = {mid: n for mid, n in received.items() if n > 1}
    assert set(twice.values()) <= {2}, f"a mail delivered more than twice: {twice}"
    assert len(twice) <= kills * CONNECTIONS, f"{len(twice)} mails sent twice: {twice}"
