"""Turn a rendered template into the exact bytes to send.

Every header value is cleaned of CR and LF before it is set, so nothing a customer wrote in a
subject or a name can inject a header. Automatic mail carries the RFC 3834 headers.
"""

from __future__ import annotations

import base64
import email
import email.message
import email.policy
import functools
import quopri
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime, formataddr

from maild.domain import Address
from maild.outbound.render import Rendered

_NOT_FTEXT = re.compile(r"[^!-9;-~]")  # what may not be in a header name (RFC 5322 2.2)
_QUOTED_LOCAL_PART = re.compile(r'^"(?:[^"\\]|\\.)*"')
_NOT_IN_PATH = re.compile(r'[\s<>"]')


def clean(value: str, limit: int = 900) -> str:
    """A header-safe single line."""
    return " ".join(value.replace("\r", " ").replace("\n", " ").split())[:limit]


def _header(value: str) -> str:
    """RFC 2047-encode a cleaned value when it is not ASCII: base64 encoded words of at most
    68 characters (42 bytes of UTF-8, never split inside a character), one a line."""
    if value.isascii():
        return value
    data = value.encode("utf-8")
    words = []
    start = 0
    while start < len(data):
        end = min(start + 42, len(data))
        while end < len(data) and data[end] & 0xC0 == 0x80:  # a continuation byte
            end -= 1
        words.append(f"=?utf-8?b?{base64.b64encode(data[start:end]).decode('ascii')}?=")
        start = end
    return "\r\n ".join(words)


def _fold(name: str, value: str) -> str:
    """`Name: value`, folded at spaces into lines of at most 78 characters where the words
    allow (RFC 5322 2.2.3); a value that is folded already (encoded words) is left alone."""
    line = f"{name}: {value}"
    if len(line) <= 78 or "\r\n" in value:
        return line
    lines = [f"{name}:"]
    for word in value.split(" "):
        holds_word = len(lines) > 1 or len(lines[0]) > len(name) + 1
        if holds_word and len(lines[-1]) + 1 + len(word) > 78:
            lines.append(" " + word)
        else:
            lines[-1] += " " + word
    return "\r\n".join(lines)


@functools.lru_cache(maxsize=4096)  # pure: each message asks for the same few addresses again
def ascii_address(address: str) -> str | None:
    """The address as plain SMTP can carry it (an IDNA domain), or None when it cannot go
    between the brackets of MAIL FROM or RCPT TO: a local part that is not ASCII (that
    would need SMTPUTF8, which maild does not speak), or a space, bracket, quote or control
    character outside a quoted local part (mail headers let such "addresses" through; on
    the SMTP line they would add parameters or commands)."""
    local, _, domain = address.partition("@")
    if not local.isascii():
        return None
    try:
        plain = f"{local}@{domain.encode('idna').decode('ascii')}" if not domain.isascii() \
            else address
    except UnicodeError:
        return None
    if not plain.isprintable() or _NOT_IN_PATH.search(_QUOTED_LOCAL_PART.sub("", plain, 1)):
        return None
    return plain


def smtp_problem(address: str) -> str | None:
    """Why maild cannot send mail to `address`, said for an event or a log line; None when
    it can."""
    if ascii_address(address) is not None:
        return None
    if not address.partition("@")[0].isascii():
        return "needs SMTPUTF8, which maild does not send"
    return "is not an address SMTP can carry"


class UndeliverableAddress(ValueError):
    """An address maild cannot send to (see ascii_address)."""


@functools.lru_cache(maxsize=1024)  # pure: the sender is the same on every message
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
    cc: tuple[Address, ...] = (),
) -> Envelope:
    """The message, with CRLF line ends.

    Written out directly rather than through `email.generator`: the message is always one
    text/plain part whose every header value is cleaned here, so the generality of the email
    package buys nothing, and it cost a third of a millisecond a message (maild composes
    several messages for every one it receives).
    """
    fields = [
        ("From", _address(sender.name, sender.address)),
        ("To", _address(to.name, to.address)),
        *((("Cc", ", ".join(_address(c.name, c.address) for c in cc)),) if cc else ()),
        ("Subject", _header(clean(rendered.subject))),
        ("Date", format_datetime(date)),
        ("Message-ID", f"<{clean(message_id)}>"),
    ]
    # A Message-ID that is not ASCII (broken mail decodes to U+FFFD) cannot be named in a
    # header of mail sent without SMTPUTF8: it is left out, the subject's reference threads.
    if in_reply_to and in_reply_to.isascii():
        fields.append(("In-Reply-To", f"<{clean(in_reply_to)}>"))
    refs = [clean(r) for r in references if r and r.isascii()][-20:]
    if refs:
        fields.append(("References", " ".join(f"<{r}>" for r in refs)))
    if automatic:
        fields += [("Auto-Submitted", "auto-replied"), ("X-Auto-Response-Suppress", "All"),
                   ("Precedence", "bulk")]
    for key, value in (extra_headers or {}).items():
        name = _NOT_FTEXT.sub("", clean(key, 76))
        if name:
            fields.append((name, _header(clean(value))))
    fields += [("MIME-Version", "1.0"), ("Content-Type", 'text/plain; charset="utf-8"')]
    body = rendered.body.replace("\r\n", "\n").replace("\r", "\n")
    if body.isascii():
        fields.append(("Content-Transfer-Encoding", "7bit"))
    else:
        fields.append(("Content-Transfer-Encoding", "quoted-printable"))
        body = quopri.encodestring(body.encode("utf-8")).decode("ascii")
    head = "".join(_fold(name, value) + "\r\n" for name, value in fields)
    raw = (head + "\r\n" + body.replace("\n", "\r\n")).encode("ascii")
    copies = tuple(a for a in (ascii_address(c.address) for c in cc) if a)
    return Envelope(mail_from=sender.address,
                    rcpt_to=(ascii_address(to.address) or "", *copies), raw=raw)


def with_html(raw: bytes, html: str, images: Mapping[str, bytes] | None = None) -> bytes:
    """A composed message made multipart/alternative: its text and `html` beside it, the
    HTML with `images` (Content-ID -> PNG) inline as multipart/related, referenced as
    `cid:` (mail clients show PNG, not SVG). For the few staff mails that carry lists
    worth clicking or charts (a digest, a report); the email package's generality is
    affordable there."""
    message = email.message_from_bytes(raw, policy=email.policy.SMTP)
    assert isinstance(message, email.message.EmailMessage)
    message.add_alternative(html, subtype="html")
    if images:
        part = next(p for p in message.iter_parts() if p.get_content_type() == "text/html")
        assert isinstance(part, email.message.EmailMessage)
        for cid, data in images.items():
            part.add_related(data, maintype="image", subtype="png", cid=f"<{cid}>",
                             disposition="inline", filename=f"{cid.partition('@')[0]}.png")
    return message.as_bytes()
