"""Reading a message defensively: the MIME and header helpers that the auto-reply and report
detectors and the parse stage share, so that each is written once.

* header text: `to_text` (encoded words decoded, 8-bit garbage made harmless),
  `decode_words` (the one RFC 2047 decoder), `header_text` and `content_param`;
* addresses: `addresses_of`, the common forms read without the stdlib's slow parser;
* parts: `walk` (the one MIME walker, bounded), `payload_bytes`, `decode_text`;
* `html_to_text`, the one HTML stripper;
* `MessageReader`, which reads each of these once for every detector that asks.

Nothing here raises on hostile input: what cannot be read is "" or None (`DECODE_ERRORS`
lists what the stdlib raises). It imports nothing else of maild: the parse workers import
it, and their start-up stays light.
"""

from __future__ import annotations

import binascii
import contextlib
import email.errors
import email.header
import email.message
import email.parser
import email.policy
import email.utils
import html
import re
from collections.abc import Iterator
from typing import Final

DECODE_ERRORS: Final = (
    LookupError,
    TypeError,
    ValueError,
    AttributeError,
    IndexError,
    AssertionError,  # email.header on some malformed encoded words
    RecursionError,  # email.utils.getaddresses recurses once per nested group
    email.errors.MessageError,
)
MAX_HEADER_CHARS: Final = 4_000  # a header longer than this is cut before any regex sees it

# One address the way nearly every From and To is written: "Name <local@domain>", "<...>" or
# a bare "local@domain", in atoms separated by single spaces (the name) or dots. The
# characters are those that email.utils' parser takes into an atom (no specials, no
# white space, no backslash), so it returns the name and the address unchanged.
_ATOM: Final = r"[^\s()<>@,:;.\"\[\]\\]+"
_NAME_WORD: Final = r"[^\s()<>@,:;\"\[\]\\]+"  # a dot is part of a word in a name
_DOT_ATOM_ADDRESS: Final = rf"{_ATOM}(?:\.{_ATOM})*@{_ATOM}(?:\.{_ATOM})*"
_SIMPLE_ADDRESS_RE: Final = re.compile(
    rf"(?:({_NAME_WORD}(?: {_NAME_WORD})*) ?)?<({_DOT_ATOM_ADDRESS})>|({_DOT_ATOM_ADDRESS})"
)


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
    text = decode_words(text[:limit])
    if text.isascii():  # nothing to make harmless
        return text
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def decode_words(text: str, *, glued: bool = False) -> str:
    """`text` with its RFC 2047 encoded words decoded; as it is where they cannot be.

    Decoded as a header is shown (`email.header.make_header`), which puts a space between
    an encoded word and plain text next to it; `glued` joins them as they stand, for an
    address whose local part alone some MTAs encode ("=?utf-8?B?8J+QiA==?=@example.org").
    """
    if "=?" not in text:  # no encoded words: decoding would return the text as it is
        return text
    with contextlib.suppress(*DECODE_ERRORS):
        chunks = email.header.decode_header(text)
        if glued:
            return "".join(
                chunk.decode(charset or "ascii", "replace") if isinstance(chunk, bytes) else chunk
                for chunk, charset in chunks
            )
        return str(email.header.make_header(chunks))
    return text


def header_text(msg: email.message.Message, name: str) -> str:
    """The first value of a header as text (see `to_text`); "" on any trouble. For a part
    or an attached message, which no `MessageReader` reads."""
    try:
        value = msg.get(name)
    except DECODE_ERRORS:
        return ""
    return "" if value is None else to_text(value)


def content_param(msg: email.message.Message, name: str) -> str:
    """A Content-Type parameter (`name` in lower case), "" when there is none.

    Parameter names are read from the header's text and compared lower-cased, so a name that
    is not in the lower-cased text cannot be there: most mail is answered without parsing it.
    """
    try:
        if name not in str(msg.get("content-type", "")).lower():
            return ""
        value = msg.get_param(name)
    except DECODE_ERRORS:
        return ""
    if isinstance(value, tuple):
        value = value[2]
    return str(value or "")[:200]


def parse_headers(text: str) -> email.message.Message | None:
    """A header block written as text (a returned message's headers), as a message without
    a body; None when it cannot be read."""
    try:
        return email.parser.HeaderParser(policy=email.policy.compat32).parsestr(text)
    except DECODE_ERRORS:
        return None


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


def decode_text(data: bytes, charset: str) -> str:
    """Bytes as text in their declared charset, else UTF-8, else Latin-1 (which reads any)."""
    for candidate in (charset, "utf-8"):
        try:
            return data.decode(candidate)
        except DECODE_ERRORS:
            continue
    return data.decode("latin-1")


def walk(
    reader: MessageReader, limit: int
) -> Iterator[tuple[email.message.Message, str | None]]:
    """The leaf parts of a message and their content types, in document order, at most
    `limit` parts looked at. Only multipart parts are entered: an attached message
    (message/rfc822) is a leaf here. A part whose payload cannot be read is left out; one
    whose type cannot be read comes with None (and is not entered)."""
    stack: list[email.message.Message] = [reader.msg]
    seen = 0
    while stack and seen < limit:
        part = stack.pop()
        seen += 1
        ctype = reader.content_type(part)
        try:
            payload = part.get_payload()
        except DECODE_ERRORS:
            continue
        if ctype is not None and ctype.startswith("multipart/") and isinstance(payload, list):
            stack.extend(reversed([p for p in payload if isinstance(p, email.message.Message)]))
        else:
            yield part, ctype


_SCRIPT_RE: Final = re.compile(r"(?is)<(script|style)\b.*?</\1>")
_LINE_END_RE: Final = re.compile(r"(?i)<br\s*/?>|</p>|</div>|</tr>|</li>")
_TAG_RE: Final = re.compile(r"<[^>]{0,2000}>")


def html_to_text(markup: str) -> str:
    """The text of an HTML part: scripts and styles dropped, the tags that end a line (br,
    p, div, tr, li) a newline, every other tag a space, entities decoded."""
    if "<" in markup:
        markup = _SCRIPT_RE.sub(" ", markup)
        markup = _LINE_END_RE.sub("\n", markup)
        markup = _TAG_RE.sub(" ", markup)
    return html.unescape(markup)


def addresses_of(value: str) -> list[tuple[str, str]]:
    """`email.utils.getaddresses([value])`, the common one-address forms read directly.

    The stdlib parser walks the value one character at a time in Python; for a plain
    "Name <local@domain>" it would return the name and the address exactly as written.
    Raises what the stdlib raises (DECODE_ERRORS).
    """
    match = _SIMPLE_ADDRESS_RE.fullmatch(value)
    if match is None:
        return email.utils.getaddresses([value])
    name, bracketed, bare = match.groups()
    return [(name or "", bracketed or bare)]


class MessageReader:
    """One message as the detectors read it, each piece once: its header fields as text and
    as addresses, and the types and decoded payloads of its parts.

    The report and the auto-reply detector read the same headers (From, Subject...) and
    decode the same first text part; given one reader (pipeline.guard does), they share the
    work. They also ask for dozens of header names, most of them absent, and
    `Message.get_all` would scan every field for each: the names present are known here
    from the start.
    """

    def __init__(self, msg: email.message.Message) -> None:
        self.msg = msg
        self._names = {name.lower() for name in msg}  # the field names, as they are
        self._texts: dict[str, tuple[str, ...]] = {}
        self._addresses: dict[str, list[tuple[str, str]]] = {}
        # by id(part); the part is kept with its result, so that no id is reused meanwhile
        self._types: dict[int, tuple[email.message.Message, str | None]] = {}
        self._payloads: dict[int, tuple[email.message.Message, bytes | None, str]] = {}

    def texts(self, name: str) -> tuple[str, ...]:
        """All values of the header `name` (lower-case) as text (see `to_text`); () when
        there is none or they cannot be read."""
        if name not in self._names:
            return ()
        if name not in self._texts:
            try:
                values = self.msg.get_all(name) or []
            except DECODE_ERRORS:
                values = []
            self._texts[name] = tuple(map(to_text, values))
        return self._texts[name]

    def first(self, name: str) -> str:
        """The first value of the header `name` (lower-case) as text, as `Message.get` finds
        it; "" when there is none or it cannot be read."""
        texts = self.texts(name)
        if texts or name not in self._names:
            return texts[0] if texts else ""
        try:  # the other values could not be read: perhaps the first can
            value = self.msg.get(name)
        except DECODE_ERRORS:
            return ""
        return "" if value is None else to_text(value)

    def addresses(self, name: str) -> list[tuple[str, str]]:
        """The (display name, address) pairs of every value of the header `name`
        (lower-case), as `addresses_of` gives them; a value it cannot read is left out."""
        if name not in self._addresses:
            pairs: list[tuple[str, str]] = []
            for value in self.texts(name):
                try:
                    pairs.extend(addresses_of(value))
                except DECODE_ERRORS:
                    continue
            self._addresses[name] = pairs
        return self._addresses[name]

    def content_type(self, part: email.message.Message) -> str | None:
        """A part's content type (`Message.get_content_type`), None when it cannot be read."""
        if id(part) not in self._types:
            try:
                ctype: str | None = part.get_content_type()
            except DECODE_ERRORS:
                ctype = None
            self._types[id(part)] = (part, ctype)
        return self._types[id(part)][1]

    def payload(self, part: email.message.Message) -> tuple[bytes | None, str]:
        """A leaf part's decoded bytes (`payload_bytes`) and its charset, "utf-8" when it
        declares none or one that cannot be read."""
        if id(part) not in self._payloads:
            try:
                charset = part.get_content_charset() or "utf-8"
            except DECODE_ERRORS:
                charset = "utf-8"
            self._payloads[id(part)] = (part, payload_bytes(part), charset)
        _part, data, charset = self._payloads[id(part)]
        return data, charset
