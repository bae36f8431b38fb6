"""Turn a rendered template into the exact bytes to send.

Every header value is cleaned of CR and LF before it is set, so nothing a customer wrote in a
subject or a name can inject a header. Automatic mail carries the RFC 3834 headers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from maild.domain import Address
from maild.outbound.render import Rendered


def clean(value: str, limit: int = 900) -> str:
    """A header-safe single line."""
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())[:limit]


def _address(name: str, address: str) -> HeaderAddress:
    local, _, domain = address.partition("@")
    return HeaderAddress(display_name=clean(name, 200), username=local, domain=domain)


@dataclass(frozen=True)
class Envelope:
    mail_from: str
    rcpt_to: tuple[str, ...]
    raw: bytes


def compose(
    rendered: Rendered,
    *,
    sender: Address,
    to: Address,
    message_id: str,
    in_reply_to: str | None,
    references: tuple[str, ...],
    date: datetime,
    automatic: bool,
    extra_headers: dict[str, str] | None = None,
) -> Envelope:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = _address(sender.name, sender.address)
    msg["To"] = _address(to.name, to.address)
    msg["Subject"] = clean(rendered.subject)
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = f"<{message_id}>"
    if in_reply_to:
        msg["In-Reply-To"] = f"<{clean(in_reply_to)}>"
    refs = [clean(r) for r in references if r][-20:]
    if refs:
        msg["References"] = " ".join(f"<{r}>" for r in refs)
    if automatic:
        msg["Auto-Submitted"] = "auto-replied"
        msg["X-Auto-Response-Suppress"] = "All"
        msg["Precedence"] = "bulk"
    for key, value in (extra_headers or {}).items():
        msg[clean(key, 76)] = clean(value)
    msg.set_content(rendered.body)
    return Envelope(mail_from=sender.address, rcpt_to=(to.address,), raw=msg.as_bytes())
