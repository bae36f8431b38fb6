"""Header and payload reading shared by the auto-reply and report detectors: never raises."""

from __future__ import annotations

import binascii
import contextlib
import email.errors
import email.header
import email.message
from typing import Final

DECODE_ERRORS: Final = (
    LookupError,
    TypeError,
    ValueError,
    AttributeError,
    IndexError,
    RecursionError,  # email.utils.getaddresses recurses once per nested group
    email.errors.MessageError,
)
MAX_HEADER_CHARS: Final = 4_000  # a header longer than this is cut before any regex sees it


def to_text(value: object, limit: int = MAX_HEADER_CHARS) -> str:
    """Header value as str: encoded words decoded, 8-bit garbage made harmless.

    compat32 wraps raw 8-bit header bytes (RFC 6532 UTF-8, or legacy Latin-1) in a Header
    with the "unknown-8bit" charset; those bytes are read as UTF-8, else as Windows-1252.
    """
    if isinstance(value, email.header.Header):
        try:
            text = "".join(_chunk_text(d, c) for d, c in email.header.decode_header(value))
        except DECODE_ERRORS:
            text = ""
    else:
        try:
            text = str(value)
        except DECODE_ERRORS:
            return ""
    text = text[:limit]
    if "=?" in text:
        with contextlib.suppress(*DECODE_ERRORS):
            text = str(email.header.make_header(email.header.decode_header(text)))
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _chunk_text(data: bytes | str, charset: str | None) -> str:
    if isinstance(data, str):
        return data
    declared = charset if charset and charset != "unknown-8bit" else "utf-8"
    for candidate in (declared, "utf-8", "cp1252"):
        try:
            return data.decode(candidate)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("latin-1")


def payload_bytes(part: email.message.Message) -> bytes | None:
    """A leaf part's decoded bytes. Quoted-printable with CR-only newlines (old Mac mail) is
    decoded after normalising them: the stdlib decoder does not know "=" + CR as a soft break
    and silently drops the rest of the line."""
    try:
        cte = str(part.get("content-transfer-encoding", "")).strip().lower()
        raw = part.get_payload()
        if cte == "quoted-printable" and isinstance(raw, str) and "\r" in raw:
            text = raw.replace("\r\n", "\n").replace("\r", "\n")
            return binascii.a2b_qp(text.encode("utf-8", "replace"))
        data = part.get_payload(decode=True)
    except (*DECODE_ERRORS, binascii.Error):
        return None
    return data if isinstance(data, bytes) else None
