"""The message as the report rules read it: `View`, each piece extracted defensively and
when first asked for, and what can be said of it before any layer runs (whether the sender
is a machine, whether it reads like a bounce, the returned message and its ids).
"""

from __future__ import annotations

import email.message
import functools
import re
from collections.abc import Callable, Iterator
from typing import Final

from maild.mailsafety.bounce.report import _FIELD_START_RE, _MAX_TEXT, Report, _ids
from maild.mailsafety.mime import (
    DECODE_ERRORS,
    MessageReader,
    content_param,
    decode_text,
    header_text,
    html_to_text,
    parse_headers,
    walk,
)
from maild.mailsafety.vocabulary import (
    DAEMON_LOCAL_WORDS,
    DAEMON_NAME_WORDS,
    DELIVERY_LOCAL_WORDS,
    DELIVERY_NAME_WORDS,
    POSTMASTER_LOCAL_WORDS,
    REPLY_PREFIX,
)

Reparse = Callable[[MessageReader, int], Report | None]
"""The parser itself, for a report wrapped in another (nested `depth` deep)."""

_MAX_PARTS: Final = 200
_MAX_NESTING: Final = 2

_REPORT_PARTS: Final = {
    "message/delivery-status": "dsn",
    "message/global-delivery-status": "dsn",
    "message/feedback-report": "arf",
    "message/disposition-notification": "mdn",
    "message/global-disposition-notification": "mdn",
}
_ATTACHED_HEADER_TYPES: Final = frozenset(
    {"text/rfc822-headers", "message/rfc822-headers", "text/rfc822-header"}
)
_ATTACHED_MESSAGE_TYPES: Final = frozenset({"message/rfc822", "message/global", "message/partial"})


# A read-only view of the message: what the rules look at, each read when first asked for ---


class View:
    """The parts of a message that matter to the report rules, extracted defensively.

    The headers and the MIME structure are read at once; the rest when a rule first asks
    for it. Most mail is from a person, and for it the rules are settled by the headers and
    the structure alone: its texts are never searched for returned headers and its
    attached messages never parsed as reports (only the first text is decoded, to see
    whether it is JSON).
    """

    def __init__(self, reader: MessageReader, *, depth: int, reparse: Reparse) -> None:
        self.reader = reader
        self.msg = reader.msg
        self._depth = depth
        self._reparse = reparse
        self.subject = " ".join(reader.first("subject").split())
        self.raw_from = reader.first("from")
        self.report_type = content_param(self.msg, "report-type").lower()
        self.senders = _addresses(reader, "from", "sender", keep_empty=True)  # (display, address)
        self.null_sender = reader.first("return-path").replace(" ", "") == "<>"
        self.failed_header = [  # X-Failed-Recipients
            a for _d, a in _addresses(reader, "x-failed-recipients") if "@" in a
        ]
        self._leaves = list(_walk(reader))

    @functools.cached_property
    def structured(self) -> dict[str, list[str]]:
        """The texts of the report parts, by kind (dsn, arf, mdn)."""
        out: dict[str, list[str]] = {}
        for part, ctype in self._leaves:
            if ctype in _REPORT_PARTS:
                out.setdefault(_REPORT_PARTS[ctype], []).append(_structured_text(part, self.reader))
        return out

    @functools.cached_property
    def attached(self) -> list[email.message.Message]:
        """The returned messages (or their headers), in order."""
        out: list[email.message.Message] = []
        for part, ctype in self._leaves:
            if part is not self.msg and header_text(part, "message-id"):
                # A returned message pasted into a part without a blank line first: its
                # headers became the part's headers.
                out.append(part)
            if ctype in _ATTACHED_MESSAGE_TYPES or ctype in _ATTACHED_HEADER_TYPES:
                out.extend(_attached_messages(part, self.reader))
        return out

    def _texts(self) -> Iterator[str]:
        """The notification texts, in order, decoded one by one."""
        for part, ctype in self._leaves:
            if _is_text(ctype):
                text = _part_text(part, self.reader)
                if ctype == "text/html":
                    text = html_to_text(text)
                if text.strip():
                    yield text

    @functools.cached_property
    def texts(self) -> list[str]:
        return list(self._texts())

    @functools.cached_property
    def first_text(self) -> str:
        """texts[0], or "" when there is none; the others stay undecoded."""
        return next(self._texts(), "")

    @functools.cached_property
    def embedded(self) -> list[email.message.Message]:
        """Header blocks of returned messages quoted in the text."""
        return [h for h in (_embedded_headers(t) for t in self.texts[:3]) if h]

    @functools.cached_property
    def _nested(self) -> tuple[list[str], list[str]]:
        """A relay that wraps a bounce in its own bounce: the inner one names the recipient.
        The recipients and ids of the inner reports."""
        recipients: list[str] = []
        ids: list[str] = []
        if self._depth >= _MAX_NESTING:
            return recipients, ids
        for attached in self.attached[:2]:
            try:
                payload = attached.get_payload()
            except DECODE_ERRORS:
                continue
            if not payload:
                continue  # headers only
            inner = self._reparse(MessageReader(attached), self._depth + 1)
            if inner is not None and inner.kind in ("failure", "delay"):
                recipients.extend(r.address for r in inner.recipients)
                ids.extend(inner.original_message_ids)
        return recipients, ids

    @property
    def nested_recipients(self) -> list[str]:
        return self._nested[0]

    @property
    def nested_ids(self) -> list[str]:
        return self._nested[1]

    @property
    def daemon_sender(self) -> bool:
        return any(
            _DAEMON_LOCAL_RE.search(address.rsplit("@", 1)[0]) or _DAEMON_NAME_RE.search(display)
            for display, address in self.senders
        ) or bool(_DAEMON_LOCAL_RE.search(self.raw_from))

    @property
    def noreply_sender(self) -> bool:
        return any(_NOREPLY_LOCAL_RE.search(a.rsplit("@", 1)[0]) for _d, a in self.senders)

    @functools.cached_property
    def looks_like_bounce(self) -> bool:
        return _looks_like_bounce(self)

    @functools.cached_property
    def own_side(self) -> frozenset[str]:
        """Addresses that cannot be the failed recipient: the notice's own sender and
        recipients (that is us), and the senders of the returned message (us again)."""
        mine = _addresses(self.reader, "from", "to", "cc", "sender", "return-path")
        theirs = [
            pair
            for original in self.originals
            for pair in _addresses(MessageReader(original), "from", "sender", "return-path")
        ]
        return frozenset(address for _display, address in (*mine, *theirs))

    @property
    def originals(self) -> list[email.message.Message]:
        return [*self.attached, *self.embedded]

    @functools.cached_property
    def notification(self) -> str:
        """The human-readable notice, cut before the returned copy of the message."""
        return "\n".join(_cut_original(t) for t in self.texts[:3])

    @functools.cached_property
    def all_text(self) -> str:
        return "\n".join(self.texts)


def _is_text(ctype: str) -> bool:
    """Whether a leaf of this type is notification text (not a report part or a returned
    message, some of which are text/ types too)."""
    return (
        ctype.startswith(("text/", "multipart/"))
        and ctype not in _REPORT_PARTS
        and ctype not in _ATTACHED_MESSAGE_TYPES
        and ctype not in _ATTACHED_HEADER_TYPES
    )


def _walk(reader: MessageReader) -> Iterator[tuple[email.message.Message, str]]:
    """Leaf parts and their types in document order; attached messages and report parts
    are leaves here. A type that cannot be read is text/plain."""
    for part, ctype in walk(reader, _MAX_PARTS):
        yield part, ctype or "text/plain"


# Whether the sender is a machine, and whether a message without a report part is a bounce --

_DAEMON_LOCAL_RE: Final = re.compile(
    f"(?:{DAEMON_LOCAL_WORDS}|{POSTMASTER_LOCAL_WORDS}|{DELIVERY_LOCAL_WORDS})", re.IGNORECASE
)
_DAEMON_NAME_RE: Final = re.compile(f"{DAEMON_NAME_WORDS}|{DELIVERY_NAME_WORDS}", re.IGNORECASE)
_NOREPLY_LOCAL_RE: Final = re.compile(r"no[-_.]?reply|do[-_.]?not[-_.]?reply", re.IGNORECASE)
_BOUNCE_SUBJECT_RE: Final = re.compile(
    r"undeliver(?:able|ed)|non[- ]?deliver|nondeliverable|returned\s+(?:mail|to\s+sender)"
    r"|returning\s+(?:message\s+)?to\s+sender|delivery\s+(?:status\s+notification|failure|failed"
    r"|has\s+failed|problem|notification|report|delayed|error|warning)|mail\s+(?:delivery\s+|system"
    r"\s+)?(?:failed|failure|error|problem)|failure\s+(?:notice|delivery)|failed\s+(?:mail|delivery)"
    r"|could\s+not\s+(?:be\s+)?(?:delivered|sent|send)|not\s+(?:be\s+)?delivered"
    r"|message\s+(?:delayed|not\s+delivered|delivery\s+fail)|mail\s+delayed|delayed\s+mail"
    r"|warning:\s+could\s+not\s+send|permanent\s+(?:delivery\s+)?(?:failure|error)"
    r"|unzustellbar|nicht\s+zustellbar|zustellung\s+fehlgeschlagen|(?:ü|ue)bermittlungsstatus"
    r"|non\s+remis|non\s+distribuable|no\s+entregado|mail\s+could\s+not|delivery\s+fail"
    r"|unable\s+to\s+deliver|rejected|failed\s+to\s+deliver|bounced?\s+mail|user\s+unknown",
    re.IGNORECASE,
)
_REPLY_RE: Final = re.compile(rf"^(?:\[[^\]]{{0,80}}\]\s*)*{REPLY_PREFIX}", re.IGNORECASE)
# Phrases that bounce dialects use; a person may use them too, so they only count together
# with a machine-looking header (see _looks_like_bounce).
_BOUNCE_BODY_RE: Final = re.compile(
    r"could\s+not\s+be\s+delivered|couldn'?t\s+be\s+delivered|(?:was|were)\s+not\s+delivered"
    r"|wasn'?t\s+delivered|undeliver(?:able|ed)|delivery\s+(?:to\s+the\s+following|has\s+failed"
    r"|failed|of\s+(?:your\s+message|e-?mail)|status\s+notification|problem)|failed\s+to\s+deliver"
    r"|unable\s+to\s+deliver|cannot\s+be\s+delivered|could\s+not\s+deliver|permanent\s+"
    r"(?:error|fatal)|qmail-send|mail\s+delivery\s+software|this\s+is\s+the\s+mail\s+system"
    r"|did\s+not\s+reach\s+the\s+following|not\s+yet\s+been\s+delivered|has\s+not\s+been"
    r"\s+delivered|delivery\s+(?:is\s+|has\s+been\s+)?delayed|returned\s+mail|message\s+"
    r"(?:was\s+)?(?:rejected|bounced|refused)|following\s+(?:address|recipient)|user\s+unknown"
    r"|unknown\s+user|no\s+such\s+(?:user|mailbox|address)|mailbox\s+(?:unavailable|full|is\s+"
    r"full|not\s+found)|does\s+not\s+exist|over\s+quota|quota\s+exceeded|remote\s+host\s+said"
    r"|smtp\s+error|delivery\s+attempts|error\s+(?:occurred|report)|could\s+not\s+be\s+sent"
    r"|not\s+a\s+valid\s+(?:user|recipient|address|mailbox)|invalid\s+(?:user|recipient|mailbox)"
    r"|malformed\s+(?:recipient\s+)?address|failed\s+addresses|no\s+valid\s+recipients"
    r"|error\s+delivering|will\s+continue\s+to\s+try|has\s+been\s+postponed"
    r"|(?:mail|message)\s+has\s+been\s+returned|returned\s+because"
    r"|nicht\s+zugestellt|konnte\s+nicht\s+zugestellt|unzustellbar|zustellung|nicht\s+erreicht"
    r"|n'a\s+pas\s+pu\s+(?:être|etre)\s+(?:remis|distribu|d[ée]livr)|no\s+se\s+pudo\s+entregar"
    r"|\b[45]\.\d{1,3}\.\d{1,3}\b|\b5[0-5]\d[ -]",
    re.IGNORECASE,
)
# The fixed furniture of MTA notices: session transcripts, status codes, section banners.
# Needed, besides a bounce subject, when the sender does not look like a daemon.
_STRONG_BODY_RE: Final = re.compile(
    r"^[ \t]*<[^<>\s]+@[^<>\s]+>[ \t]*:|^[ \t]*<<<[ \t]*[45]\d\d[ -]\S"
    r"|(?<![\d.])[45][0-5]\d[ -]#?[45]\.\d{1,3}\.\d{1,3}(?![\d.])|[(#]#?[45]\.\d{1,3}\.\d{1,3}\)?"
    r"|transcript\s+of\s+session|rcpt\s+to\s*:"
    r"|remote\s+host\s+said|smtp\s+error|qmail-send|mail\s+delivery\s+software"
    r"|this\s+is\s+the\s+mail\s+system|did\s+not\s+reach\s+the\s+following"
    r"|following\s+addresses\s+had|failed\s+recipients?|non-delivery\s+report"
    r"|message\s+from\s+interscan|could\s+not\s+be\s+delivered\s+to\s*:"
    r"|could\s+not\s+be\s+delivered\s+to\s+the\s+following|delivery\s+to\s+the\s+following"
    r"\s+recipients?\s+failed|(?:original|returned)\s+(?:message|mail)\s+follows"
    r"|folgenden?\s+empf(?:ä|ae)nger(?:n|\(n\))?\s+nicht\s+erreicht",
    re.IGNORECASE | re.MULTILINE,
)


def _looks_like_bounce(view: View) -> bool:
    """Whether a message without a structured report part is a bounce.

    A person can write bounce-like words ("my mail was undeliverable"), and a customer who
    forwards a bounce to the help desk wants an answer, so text alone is never enough: the
    headers must speak for a machine too (a daemon sender, the null reverse path,
    X-Failed-Recipients, or a bounce subject that is not a reply or forward), and the body
    must read like a delivery report.
    """
    if view.failed_header:
        return True
    daemon = view.null_sender or view.daemon_sender
    subject = bool(_BOUNCE_SUBJECT_RE.search(view.subject)) and not _REPLY_RE.match(view.subject)
    if not (daemon or subject or view.noreply_sender):
        return False
    text = view.notification[:_MAX_TEXT]
    if _STRONG_BODY_RE.search(text):
        return True
    return daemon and (subject or bool(_BOUNCE_BODY_RE.search(text)))



# The message reported on, and its ids -----------------------------------------------------

_SPACE_RE: Final = re.compile(r"\s")
_MSGID_LINE_RE: Final = re.compile(
    r"^[ \t>]*(?:Original-)?Message-I[Dd][ \t]*:[ \t]*(?:\n[ \t]+)?<([^<>\s]{1,900})>",
    re.MULTILINE | re.IGNORECASE,
)


def _original_ids(view: View) -> tuple[str, ...]:
    """Ids of the reported message: attached parts first, then "Message-ID:" lines."""
    return _ids(
        *_attached_ids(view),
        *_MSGID_LINE_RE.findall(view.all_text[:_MAX_TEXT]),
        *_MSGID_LINE_RE.findall("\n".join(view.structured.get("dsn", []))[:_MAX_TEXT]),
        *view.nested_ids,
    )


def _attached_ids(view: View) -> list[str]:
    """Message-IDs of the returned messages, in angle brackets even where the original had
    none (some MTAs write bare ids)."""
    out: list[str] = []
    for original in view.attached:
        value = header_text(original, "message-id").strip()
        bare = value.strip("<> \t")
        if bare and not _SPACE_RE.search(bare):
            out.append(f"<{bare}>")
        elif value:
            out.append(value)
        else:  # headers swallowed into the body by a broken first line
            out.extend(f"<{i}>" for i in _MSGID_LINE_RE.findall(_body_text(original)[:50_000]))
    return out


def _body_text(part: email.message.Message) -> str:
    try:
        payload = part.get_payload()
    except DECODE_ERRORS:
        return ""
    return payload.replace("\r\n", "\n") if isinstance(payload, str) else ""



_CUT_RE: Final = re.compile(
    r"^[^A-Za-z0-9\n]{0,40}(?:(?:a|the)\s+)?(?:below\s+this\s+line\s+is\s+a\s+copy|a\s+copy\s+of\s+the\s+original"
    r"\s+message\s+below|enclosed\s+are\s+the\s+original\s+headers|this\s+is\s+a\s+copy\s+of"
    r"|here\s+is\s+a\s+copy\s+of\s+the|the\s+body\s+of\s+the\s+message|original\s+message"
    r"\s+(?:follows|header|headers|as\s+received)|unsent\s+message\s+(?:follows|below)"
    r"|message\s+headers?\s+follows?|returned\s+(?:mail|message)\s+follows"
    r"|start\s+of\s+returned\s+message|undelivered\s+message\s+(?:follows|headers)"
    r"|summary\s+of\s+the\s+undelivered\s+message|the\s+first\s+\d+\s+lines\s+of\s+your"
    r"\s+original\s+message|forwarded\s+message|original\s+message\s*[-=*:]*\s*$|ursprüngliche\s+nachricht"
    r"|header\s+of\s+(?:the\s+)?original\s+message|message\s+(?:headers|text)\s+follows?"
    r"|copy\s+of\s+the\s+(?:original\s+)?message\s+(?:follows|below)|your\s+message\s+reads)",
    re.IGNORECASE | re.MULTILINE,
)


_QUOTE_MARK_RE: Final = re.compile(r"(?m)^> ?")


def _embedded_headers(text: str) -> email.message.Message | None:
    """The header block of a message returned inline after a cut line, if there is one."""
    match = _CUT_RE.search(text[:_MAX_TEXT])
    if match is None:
        return None
    rest = text[match.end() :].split("\n", 1)[-1].lstrip("\n=-* \t")
    rest = _QUOTE_MARK_RE.sub("", rest[:20_000])
    if not _FIELD_START_RE.match(rest):
        return None
    return parse_headers(rest.lstrip()[:_MAX_TEXT])


def _cut_original(text: str) -> str:
    """A notice without the copy of the original message that many MTAs append to it."""
    match = _CUT_RE.search(text[:_MAX_TEXT])
    return text[: match.start()] if match and match.start() > 0 else text[:_MAX_TEXT]



def _addresses(
    reader: MessageReader, *names: str, keep_empty: bool = False
) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for name in names:
        out.extend(
            (d, a.strip().strip("<>").lower())
            for d, a in reader.addresses(name)
            if keep_empty or a.strip()
        )
    return out


def _attached_messages(
    part: email.message.Message, reader: MessageReader
) -> list[email.message.Message]:
    try:
        payload = part.get_payload()
    except DECODE_ERRORS:
        return []
    if isinstance(payload, list):
        return [p for p in payload[:1] if isinstance(p, email.message.Message)]
    if isinstance(payload, str):
        parsed = parse_headers(_part_text(part, reader).lstrip()[:_MAX_TEXT])
        return [parsed] if parsed is not None else []
    return []




def _structured_text(part: email.message.Message, reader: MessageReader) -> str:
    """A report part's text; compat32 parses delivery-status blocks as header-only messages."""
    try:
        payload = part.get_payload()
    except DECODE_ERRORS:
        return ""
    if not isinstance(payload, list):
        return _part_text(part, reader)
    blocks: list[str] = []
    for block in payload:
        if not isinstance(block, email.message.Message):
            continue
        try:
            lines = [f"{k}: {_unfold(str(v))}" for k, v in block.items()]
            body = block.get_payload()
        except DECODE_ERRORS:
            continue
        if isinstance(body, str) and body.strip():
            lines.append(body)
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _unfold(value: str) -> str:
    return " ".join(value.split())


def _part_text(part: email.message.Message, reader: MessageReader) -> str:
    """A leaf part's decoded text with newlines normalised; "" when it has none."""
    data, charset = reader.payload(part)
    if data is None:
        return ""
    text = decode_text(data[: _MAX_TEXT * 2], charset)
    return text.replace("\r\n", "\n").replace("\r", "\n")[:_MAX_TEXT]
