"""Helpers for tests: build customer mail and maild settings pointing at test servers."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from maild.settings import Settings, load_settings
from maild.store.models import Ticket

if TYPE_CHECKING:
    from maild.app import App

SUPPORT = "support@example.test"


def customer_mail(
    *,
    sender: str = "Erika Mustermann <erika@example.com>",
    subject: str = "Login does not work",
    body: str = "Hello, I cannot log in to my account since this morning. Please help.",
    message_id: str | None = "auto",
    in_reply_to: str | None = None,
    references: list[str] | None = None,
    to: str = SUPPORT,
    headers: dict[str, str] | None = None,
) -> bytes:
    msg = EmailMessage(policy=email.policy.SMTP)
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime(2026, 11, 20, 10, 0, tzinfo=UTC))
    if message_id == "auto":
        msg["Message-ID"] = make_msgid(domain="example.com")
    elif message_id is not None:
        msg["Message-ID"] = message_id
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    if references:
        msg["References"] = " ".join(references)
    for key, value in (headers or {}).items():
        msg[key] = value
    msg.set_content(body)
    return msg.as_bytes()


def dsn(original_id: str, recipient: str) -> bytes:
    """An RFC 3464 delivery status notification, as Postfix writes them."""
    return f"""From: MAILER-DAEMON@mx.example.org (Mail Delivery System)
To: support@example.test
Subject: Undelivered Mail Returned to Sender
Message-ID: <{make_msgid(domain="mx.example.org").strip("<>")}>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="BOUNDARY"

--BOUNDARY
Content-Type: text/plain

This is the mail system. Your message could not be delivered.

--BOUNDARY
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org

Final-Recipient: rfc822; {recipient}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: Recipient address rejected

--BOUNDARY
Content-Type: text/rfc822-headers

Message-ID: <{original_id}>
From: support@example.test
To: {recipient}
Subject: x

--BOUNDARY--
""".replace("\n", "\r\n").encode()


def message_id_of(raw: bytes) -> str:
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    return str(msg["Message-ID"]).strip()


def write_config(
    folder: Path, *, db_url: str, imap: dict[str, Any] | None = None,
    smtp: dict[str, Any] | None = None, mailbox: dict[str, Any] | None = None, **extra: Any,
) -> Path:
    """A maild.yaml in `folder`; unreachable ports unless test servers are given."""
    config: dict[str, Any] = {
        "database": {"url": db_url},
        "support": {"address": SUPPORT, "name": "Example Support"},
        "mailboxes": [{
            "name": "support",
            "imap": imap or {"host": "127.0.0.1", "port": 9, "security": "none",
                             "username": SUPPORT, "password": "x"},
            "folder": "INBOX",
            **(mailbox or {}),
        }],
        "smtp": smtp or {"host": "127.0.0.1", "port": 9, "security": "none"},
        "outbox": {"backoff_initial": 1, "backoff_max": 4},
        **extra,
    }
    path = folder / "maild.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def settings_for(folder: Path, **kwargs: Any) -> Settings:
    return load_settings(write_config(folder, **kwargs))


def add_tickets(app: App, count: int, created: datetime | None = None) -> list[int]:
    """Open tickets as the pipeline leaves them (SLA columns computed by `refresh`), created
    at `created` (the app's clock by default); their ids."""
    at = created or app.clock.now()
    with app.sessions() as s, s.begin():
        tickets = [Ticket(ref=f"T-{i}", subject=f"Request {i}", requester=f"c{i}@example.com",
                          secret=f"{i:032x}", status="new", created_at=at, updated_at=at,
                          tags=[], sla_pauses=[], sla_alerted=[])
                   for i in range(count)]
        for t in tickets:
            app.sla.refresh(t)
        s.add_all(tickets)
        s.flush()
        return [t.id for t in tickets]
