"""SIGKILL the daemon at several points while it ingests a few hundred messages.

After each kill the daemon is started again; at the end every message is in exactly one
ticket, every new ticket has exactly one acknowledgement Message-ID, and nothing is left
unprocessed. The kill points are chosen by progress (rows committed), not by sleeping.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, func, select, text

from maild.store.models import Message, Outbox, Ticket
from tests.kit import customer_mail, message_id_of, write_config
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
