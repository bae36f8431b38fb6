"""A loop with an autoresponder: whatever it sends, maild's output stays bounded.

The responder answers every mail maild sends to its address, delivering its answer into
maild's real Dovecot mailbox; maild runs pass after pass. Three kinds of responder: a polite
one (RFC 3834 headers), one that threads but sends no headers, and the worst: no headers, a
new subject every time, no In-Reply-To.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

import pytest
from sqlalchemy import select

from maild import daemon
from maild.app import build
from maild.clock import FixedClock
from maild.store.models import Event
from tests.kit import customer_mail, settings_for
from tests.servers.dovecot import MailUser
from tests.servers.smtp import ReceivedMessage, SmtpServer

RESPONDER = "robot@example.org"


def answer(to: ReceivedMessage, kind: str, n: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = RESPONDER
    msg["To"] = "support@example.test"
    msg["Message-ID"] = make_msgid(domain="example.org")
    if kind == "polite":
        msg["Subject"] = "Auto: " + str(to.message["Subject"])
        msg["Auto-Submitted"] = "auto-replied"
        msg["In-Reply-To"] = str(to.message["Message-ID"])
    elif kind == "threading":
        msg["Subject"] = "Re: " + str(to.message["Subject"])
        msg["In-Reply-To"] = str(to.message["Message-ID"])
    else:  # rude: nothing that links it to anything
        msg["Subject"] = f"Your request number {n} was received"
    msg.set_content("Thank you for your message. This is an automatic answer.")
    return msg.as_bytes()


@pytest.mark.parametrize("kind,bound", [("polite", 1), ("threading", 1), ("rude", 3)])
def test_autoresponder_loop_is_bounded(
    tmp_path: Path, mail_user: MailUser, smtp_server: SmtpServer, sqlite_url: str,
    kind: str, bound: int,
) -> None:
    app = build(settings_for(
        tmp_path, db_url=sqlite_url, imap=mail_user.imap_config(),
        smtp={"host": smtp_server.host, "port": smtp_server.port, "security": "none"}),
        clock=FixedClock())
    mail_user.append(customer_mail(sender=RESPONDER, subject="Order status?"))
    answered = 0
    for _ in range(12):  # far more rounds than a loop needs to show itself
        daemon.run_once(app)
        to_robot = [m for m in smtp_server.messages if RESPONDER in m.rcpt_tos]
        for message in to_robot[answered:]:
            mail_user.append(answer(message, kind, answered))
            answered += 1
    to_robot = [m for m in smtp_server.messages if RESPONDER in m.rcpt_tos]
    assert len(to_robot) == bound
    for message in to_robot:  # our own automatic mail says so (RFC 3834)
        assert message.message["Auto-Submitted"] == "auto-replied"
        assert message.message["X-Auto-Response-Suppress"] == "All"
        assert message.message["Precedence"] == "bulk"
    if kind == "rude":
        with app.sessions() as s:
            limited = s.scalars(select(Event).where(Event.kind == "autoreply.suppressed"))
            assert "per recipient" in next(iter(limited)).data["reason"]
    app.dispose()
