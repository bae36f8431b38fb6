"""Stage 1: raw bytes → `Inbound`.

The raw bytes are parsed as they are (never decoded with `errors="replace"` first) and kept
byte for byte. Every header access is defensive: real mail has broken encodings, and one
broken header must not cost the whole message.
"""

from __future__ import annotations

import email.message
import email.utils
import hashlib
import logging
import re
from datetime import UTC, datetime
from email.errors import MessageError
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import parsedate_to_datetime

import mailparser

from maild.domain import Address, Attachment, Inbound, SourceRef
from maild.mailsafety.mime import addresses_of, decode_words, html_to_text
from maild.pipeline.language import SHIPPED, detect_language

_MSGID = re.compile(r"<\s*([^<>\s]+?)\s*>")
# The marker maild puts under customer-facing mail (see outbound.queue): the signed part of
# the Message-ID, for clients that drop In-Reply-To and References but quote the text.
MARKER = re.compile(r"\[maild:([0-9a-f]{20}\.[0-9a-f]{16})\]")
_SPACES = re.compile(r"[ \t]+")
MAX_BODY_CHARS = 200_000
MAX_ADDRESS = 320  # RFC 5321: longer is not an address


class ParseError(ValueError):
    """The bytes are not a message maild can work with; the reason goes to quarantine."""


def decode_header_value(value: object) -> str:
    """A header as text: RFC 2047 decoded where possible, raw otherwise, never raising."""
    if value is None:
        return ""
    return " ".join(decode_words(str(value)).replace("\x00", "").split())


def message_ids(value: str | None) -> tuple[str, ...]:
    """All `<id>` tokens of a Message-ID, In-Reply-To or References value, in order."""
    if not value:
        return ()
    value = value.replace("\x00", "")
    found = [m[:900] for m in _MSGID.findall(value)]
    if not found:
        bare = value.strip()
        if bare and " " not in bare and "@" in bare:
            return (bare,)
    return tuple(dict.fromkeys(found))


def _addresses(values: list[str]) -> tuple[Address, ...]:
    """The addresses of one header's decoded values; a header too broken to read counts as
    absent."""
    if not values:
        return ()
    out: list[Address] = []
    try:
        pairs = addresses_of(values[0]) if len(values) == 1 else email.utils.getaddresses(values)
    except (RecursionError, ValueError, IndexError, TypeError):
        return ()  # e.g. a thousand nested groups
    for display, addr in pairs:
        addr = addr.strip().lower()
        if "@" in addr and len(addr) <= MAX_ADDRESS:
            out.append(Address(name=display.strip(), address=addr))
    return tuple(out)


def _date(msg: email.message.Message) -> datetime | None:
    value = msg.get("Date")
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(str(value))
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _body(parsed: mailparser.MailParser) -> str:
    plain = [p for p in parsed.text_plain if isinstance(p, str)]
    text = "\n".join(plain) if plain else html_to_text("\n".join(parsed.text_html))
    if "\t" in text or "  " in text:  # else every run is a single space already
        text = _SPACES.sub(" ", text)  # once, not line by line
    # a CR before a line's LF goes with the white space at its end
    return "\n".join([line.rstrip() for line in text.split("\n")]).strip()[:MAX_BODY_CHARS]


def _attachments(parsed: mailparser.MailParser) -> tuple[Attachment, ...]:
    out = []
    for att in parsed.attachments:
        payload = att.get("payload") or ""
        out.append(Attachment(
            filename=decode_header_value(att.get("filename") or ""),
            content_type=str(att.get("mail_content_type") or "application/octet-stream"),
            size=len(payload) * 3 // 4 if att.get("binary") else len(payload),
        ))
    return tuple(out)


def _headers(msg: email.message.Message) -> tuple[tuple[str, str], ...]:
    out = []
    for key, value in msg.items():
        out.append((str(key), decode_header_value(value)))
    return tuple(out)


def _by_name(headers: tuple[tuple[str, str], ...]) -> dict[str, list[str]]:
    """The decoded values by lower-cased name, in order: what `Message.get_all` finds."""
    out: dict[str, list[str]] = {}
    for key, value in headers:
        out.setdefault(key.lower(), []).append(value)
    return out


def _headers_only(raw: bytes, note: str) -> tuple[email.message.Message, str, list[str]]:
    """Headers only: for a message too large or too broken to parse whole. It still becomes
    a ticket message; the raw bytes are kept."""
    msg = BytesHeaderParser(policy=compat32).parsebytes(raw)
    return msg, f"[{note}; the raw message is kept]", [note]


def parse(raw: bytes, source: SourceRef | None, *, default_language: str = "en",
          languages: tuple[str, ...] = SHIPPED, max_bytes: int | None = None,
          max_attachments: int | None = None) -> Inbound:
    """Parse one message. Raises ParseError only when there is nothing to work with."""
    if not raw.strip():
        raise ParseError("empty message")
    notes: list[str] = []
    attachments: tuple[Attachment, ...] = ()
    defects: tuple[str, ...] = ()
    parsed = None
    if max_bytes is not None and len(raw) > max_bytes:
        msg, body, notes = _headers_only(
            raw, f"message of {len(raw)} bytes is over the limit of {max_bytes}: its body "
            "and attachments were not processed")
    else:
        logger = logging.getLogger("mailparser")
        if logger.level != logging.ERROR:  # setting it clears every logger's cache
            logger.setLevel(logging.ERROR)
        try:
            parsed = mailparser.parse_from_bytes(raw)
        except RecursionError:
            raise ParseError("MIME structure nested too deeply") from None
        except (ValueError, LookupError, UnicodeError, AssertionError, MessageError,
                IndexError, TypeError, AttributeError) as exc:
            msg, body, notes = _headers_only(
                raw, f"the MIME body could not be parsed ({type(exc).__name__}: {exc})"[:500])
    if parsed is not None:
        msg = parsed.message
        body = _body(parsed).replace("\x00", "")
        attachments = _attachments(parsed)
        defects = tuple(sorted(str(d) for d in parsed.defects_categories))
        if max_attachments is not None and len(attachments) > max_attachments:
            notes.append(f"{len(attachments)} attachments, over the limit of "
                         f"{max_attachments}: the rest are only in the raw message")
            attachments = attachments[:max_attachments]
    if not msg.keys():
        raise ParseError("no headers found")
    headers = _headers(msg)
    decoded = _by_name(headers)
    senders = _addresses(decoded.get("from", [])) or _addresses(decoded.get("sender", []))
    subject = decoded.get("subject", [""])[0]
    mids = message_ids(decoded.get("message-id", [""])[0])
    return Inbound(
        source=source,
        raw=raw,
        raw_sha256=hashlib.sha256(raw).hexdigest(),
        message_id=mids[0][:900] if mids else None,
        in_reply_to=message_ids(str(msg.get("In-Reply-To") or "")),
        references=message_ids(str(msg.get("References") or "")),
        sender=senders[0] if senders else None,
        to=_addresses(decoded.get("to", [])),
        cc=_addresses(decoded.get("cc", [])),
        reply_to=_addresses(decoded.get("reply-to", [])),
        subject=subject,
        date=_date(msg),
        body_text=body,
        language=detect_language(
            f"{subject}\n{body}", decoded.get("content-language", [""])[0],
            default=default_language, available=languages,
        ),
        headers=headers,
        attachments=attachments,
        defects=defects,
        mime=msg,
        markers=tuple(dict.fromkeys(MARKER.findall(body))),
        notes=tuple(notes),
    )
