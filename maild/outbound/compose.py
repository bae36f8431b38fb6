"""Turn a rendered template into the exact bytes to send.

Every header value is cleaned of CR and LF before it is set, so nothing a customer wrote in a
subject or a name can inject a header. Automatic mail carries the RFC 3834 headers.
"""

from __future__ import annotations

import quopri
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.message import Message
from email.policy import compat32
from email.utils import format_datetime, formataddr

from maild.domain import Address
from maild.outbound.render import Rendered

_CRLF = compat32.clone(linesep="\r\n")


def clean(value: str, limit: int = 900) -> str:
    """A header-safe single line."""
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())[:limit]


def _header(value: str) -> str:
    """RFC 2047-encode a cleaned value when it is not ASCII."""
    return value if value.isascii() else Header(value, "utf-8").encode()


def ascii_address(address: str) -> str | None:
    """The address as plain SMTP can carry it (an IDNA domain), or None when its local part
    is not ASCII (that would need SMTPUTF8, which maild does not speak)."""
    local, _, domain = address.partition("@")
    if not local.isascii():
        return None
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}" if not domain.isascii() \
            else address
    except UnicodeError:
        return None


class UndeliverableAddress(ValueError):
    """An address maild cannot send to (see ascii_address)."""


def _address(name: str, address: str) -> str:
    plain = ascii_address(address)
    if plain is None:
        raise UndeliverableAddress(f"{address} needs SMTPUTF8")
    return formataddr((clean(name, 200), plain), charset="utf-8")


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
    """The message, with CRLF line ends. The compat32 classes are used directly: they are
    four times faster than EmailMessage, and every value is cleaned before it is set."""
    msg = Message()
    msg["From"] = _address(sender.name, sender.address)
    msg["To"] = _address(to.name, to.address)
    msg["Subject"] = _header(clean(rendered.subject))
    msg["Date"] = format_datetime(date)
    msg["Message-ID"] = f"<{clean(message_id)}>"
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
        msg[clean(key, 76).replace(":", "")] = _header(clean(value))
    msg["MIME-Version"] = "1.0"
    msg["Content-Type"] = 'text/plain; charset="utf-8"'
    body = rendered.body.replace("\r\n", "\n")
    if body.isascii():
        msg["Content-Transfer-Encoding"] = "7bit"
        msg.set_payload(body)
    else:
        msg["Content-Transfer-Encoding"] = "quoted-printable"
        msg.set_payload(quopri.encodestring(body.encode("utf-8")).decode("ascii"))
    raw = msg.as_bytes(policy=_CRLF)
    return Envelope(mail_from=sender.address, rcpt_to=(ascii_address(to.address) or "",),
                    raw=raw)
