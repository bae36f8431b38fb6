"""Recognise delivery reports and read what they report.

A bounce must never open a ticket and never be answered (answering a MAILER-DAEMON is the
classic mail loop); instead the ticket it reports on records the failed recipient and the
reason. `parse_report` turns one inbound message into a `Report`, or None for mail that is not
a machine report.

Only part of real-world bounce mail follows RFC 3464 (multipart/report with a
message/delivery-status part). The rest is free text in a dozen dialects that have not changed
in twenty years: qmail ("Hi. This is the qmail-send program"), Exim ("The following address(es)
failed"), Postfix and sendmail transcripts, Exchange and Office 365 ("did not reach the
following recipient(s)"), Yahoo, GroupWise, Lotus Notes ("was not delivered to:"), IMail,
MDaemon, Amazon SES JSON notifications, and more. So the parser works in layers, from the
most to the least reliable:

1. structured parts: message/delivery-status, message/feedback-report (ARF, RFC 5965),
   message/disposition-notification (MDN, RFC 8098);
2. structured text: the same DSN fields written into a text part, SES JSON;
3. free text, but only for a message whose headers speak for a machine (a daemon sender,
   the null reverse path, X-Failed-Recipients, or a bounce subject that is not a reply or
   forward) and whose body reads like a delivery report. A customer who forwards a bounce,
   or writes about one, is asking for help and gets a ticket. Recipients are read from the
   dialects' fixed layouts, with a cautious generic fallback.

The Message-ID of the message reported on comes from the attached message/rfc822 or
text/rfc822-headers part, or from a "Message-ID:" line in the returned text. It is returned
without angle brackets, the form the pipeline stores.

The parser never raises: header and payload access is wrapped, parts are walked iteratively
with a bound, and texts are cut to a fixed size before any regex sees them.
"""

from __future__ import annotations

import email.errors
import email.header
import email.message
import email.parser
import email.policy
import functools
import html
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from maild.mailsafety.headers import DECODE_ERRORS, MessageReader, to_text

ReportKind = Literal["failure", "delay", "success", "feedback", "mdn"]

_MAX_PARTS: Final = 200
_MAX_TEXT: Final = 200_000  # characters of one part that the text rules look at
_MAX_REASON: Final = 300
_MAX_RECIPIENTS: Final = 100
_MAX_NESTING: Final = 2
_MAX_HEADINGS: Final = 20

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


@dataclass(frozen=True)
class FailedRecipient:
    """One recipient a report speaks about.

    `status` is the RFC 3463 enhanced code ("5.1.1") when the report gives one, `action`
    the RFC 3464 action ("failed", "delayed", "delivered"...), `diagnostic` the remote
    server's words. `permanent` says whether retrying the same address is pointless: true
    for 5.x.x and for failures that give no code, false for 4.x.x and for delays.
    """

    address: str
    status: str | None
    action: str | None
    diagnostic: str | None
    permanent: bool


@dataclass(frozen=True)
class Report:
    """A machine report about a message we sent.

    `failure` and `delay` are bounces (the ticket records the failed recipients); `success`
    (a positive DSN), `feedback` (an ARF abuse or opt-out report) and `mdn` (a read receipt)
    are reports too: never answered, never a new ticket, but nothing failed.
    `original_message_ids` are the Message-IDs (without angle brackets) of the message
    reported on, most reliable first.
    """

    kind: ReportKind
    recipients: tuple[FailedRecipient, ...]
    original_message_ids: tuple[str, ...]
    reason: str


def parse_report(msg: email.message.Message | MessageReader) -> Report | None:
    """The report `msg` is, or None when it is not a machine report; never raises.

    A reader of the message shares what is read with the other detectors.
    """
    reader = msg if isinstance(msg, MessageReader) else MessageReader(msg)
    readable = _without_bom(reader.msg)
    return _parse(reader if readable is reader.msg else MessageReader(readable), depth=0)


def _without_bom(msg: email.message.Message) -> email.message.Message:
    """A message saved by a Windows tool may start with a UTF-8 byte order mark, which hides
    every header in the body; re-read such a message without it."""
    try:
        if msg.keys() or not isinstance(msg.get_payload(), str):
            return msg
        data = msg.get_payload(decode=True)
    except DECODE_ERRORS:
        return msg
    if isinstance(data, bytes) and data.startswith(b"\xef\xbb\xbf"):
        return email.message_from_bytes(data[3:], policy=email.policy.compat32)
    return msg


def _parse(reader: MessageReader, *, depth: int) -> Report | None:
    view = _View(reader, depth=depth)
    return (
        _from_mdn(view)
        or _from_feedback(view)
        or _from_dsn(view)
        or _from_ses_json(view)
        or _from_text(view)
    )


# A read-only view of the message: what the rules look at, each read when first asked for ---


class _View:
    """The parts of a message that matter to the report rules, extracted defensively.

    The headers and the MIME structure are read at once; the rest when a rule first asks
    for it. Most mail is from a person, and for it the rules are settled by the headers and
    the structure alone: its texts are never searched for returned headers and its
    attached messages never parsed as reports (only the first text is decoded, to see
    whether it is JSON).
    """

    def __init__(self, reader: MessageReader, *, depth: int = 0) -> None:
        self.reader = reader
        self.msg = reader.msg
        self._depth = depth
        self.subject = " ".join(reader.first("subject").split())
        self.raw_from = reader.first("from")
        self.report_type = _param(self.msg, "report-type").lower()
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
            if part is not self.msg and _header(part, "message-id"):
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
                    text = _strip_html(text)
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
            inner = _parse(MessageReader(attached), depth=self._depth + 1)
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
    stack: list[email.message.Message] = [reader.msg]
    seen = 0
    while stack and seen < _MAX_PARTS:
        part = stack.pop()
        seen += 1
        ctype = reader.content_type(part) or "text/plain"
        try:
            payload = part.get_payload()
        except DECODE_ERRORS:
            continue
        if ctype.startswith("multipart/") and isinstance(payload, list):
            stack.extend(reversed([p for p in payload if isinstance(p, email.message.Message)]))
        else:
            yield part, ctype


# Layer 1: structured report parts ------------------------------------------------------------


def _from_mdn(view: _View) -> Report | None:
    texts = view.structured.get("mdn")
    if not texts and view.report_type != "disposition-notification":
        return None
    fields = _fields("\n".join(texts or []))
    disposition = _field(fields, "disposition")
    recipient = _address_of(
        _field(fields, "final-recipient") or _field(fields, "original-recipient")
    )
    ids = _ids(_field(fields, "original-message-id"), *_attached_ids(view))
    action = (disposition or "").split(";")[-1].strip().lower()[:60] or None
    recipients = (
        (FailedRecipient(recipient, None, action, None, permanent=False),) if recipient else ()
    )
    reason = f"disposition: {action}" if action else "read receipt"
    return Report("mdn", recipients, ids, reason)


def _from_feedback(view: _View) -> Report | None:
    texts = view.structured.get("arf")
    if not texts and view.report_type != "feedback-report":
        return _from_hotmail_jmrp(view) or _from_unsubscribe(view)
    fields = _fields("\n".join(texts or []))
    feedback_type = (_field(fields, "feedback-type") or "").strip().lower()[:40]
    recipients = tuple(
        FailedRecipient(address, None, feedback_type or None, None, permanent=False)
        for address in _unique(
            _address_of(value) for name, value in fields if name == "original-rcpt-to"
        )
        if address
    )
    reason = f"feedback: {feedback_type}" if feedback_type else "feedback report"
    return Report("feedback", recipients, _ids(*_attached_ids(view)), reason)


def _from_hotmail_jmrp(view: _View) -> Report | None:
    """Outlook.com's junk mail reporting programme: the complained-about message, attached,
    carries the complaining recipient in X-HmXmrOriginalRecipient."""
    recipients = [
        FailedRecipient(address, None, "abuse", None, permanent=False)
        for original in view.attached
        for _display, address in _addresses(MessageReader(original), "x-hmxmroriginalrecipient")
        if "@" in address
    ]
    if not recipients:
        return None
    return Report("feedback", tuple(recipients), _ids(*_attached_ids(view)), "feedback: abuse")


_UNSUBSCRIBE_RE: Final = re.compile(
    r"sent\s+this\s+(?:e-?mail|message)\s+to\s+unsubscribe\s+from", re.IGNORECASE
)


def _from_unsubscribe(view: _View) -> Report | None:
    """A mail client's one-click List-Unsubscribe request (RFC 2369 mailto:), e.g. Apple Mail."""
    if view.subject.strip().lower() != "unsubscribe" or not _UNSUBSCRIBE_RE.search(
        view.notification[:5000]
    ):
        return None
    return Report("feedback", (), _original_ids(view), "feedback: opt-out")


def _from_dsn(view: _View) -> Report | None:
    """RFC 3464, or the same fields written into the text of a bounce."""
    texts = view.structured.get("dsn", [])
    groups = _recipient_groups(_fields("\n".join(texts)))
    # The same fields in the notice count only in a report or in what looks like a bounce;
    # asked in this order, mail from a person never has its text decoded here.
    if not groups and (texts or view.looks_like_bounce) and _RECIPIENT_FIELD_RE.search(
        view.notification
    ):
        groups = _recipient_groups(_fields(view.notification))
    if not groups and not texts:
        return None
    recipients = [r for r in (_dsn_recipient(g) for g in groups) if r is not None]
    kind = _dsn_kind(recipients) or _text_kind(view)
    chosen = list({r.address.lower(): r for r in reversed(_relevant(recipients, kind))}.values())
    chosen.reverse()
    if not chosen and kind in ("failure", "delay"):
        chosen = _text_recipients(view, kind)
    return _report(kind, chosen, _original_ids(view), view)


_RECIPIENT_FIELD_RE: Final = re.compile(
    r"^[ \t]*(?:final|original)-recipient[ \t]*:", re.IGNORECASE | re.MULTILINE
)


def _recipient_groups(fields: Sequence[tuple[str, str]]) -> list[dict[str, str]]:
    """Split DSN fields into per-recipient groups, tolerating missing or extra blank lines.

    A group starts at Original-Recipient or Final-Recipient; a second occurrence, or one
    after the group already has an Action or Status, starts the next.
    """
    groups: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for name, value in fields:
        starts_group = current is None or name in current or "action" in current
        if name in ("final-recipient", "original-recipient") and (
            starts_group or "status" in (current or {})
        ):
            current = {}
            groups.append(current)
        if current is not None:
            current.setdefault(name, value)
    return [g for g in groups if "final-recipient" in g or "original-recipient" in g]


def _dsn_recipient(group: dict[str, str]) -> FailedRecipient | None:
    # The Original-Recipient is the address as we wrote it; the Final-Recipient may be an
    # alias expansion or a forwarding target that no ticket knows.
    candidates = (
        _address_of(group.get(name, ""))
        for name in ("original-recipient", "final-recipient", "x-actual-recipient")
    )
    address = next((a for a in candidates if "@" in a), "") or _address_of(
        group.get("final-recipient", "")
    )
    if not address:
        return None
    action = (group.get("action", "").strip().lower().split() or [""])[0][:20] or None
    diagnostic = _clean_diagnostic(group.get("diagnostic-code", ""))
    status = _status(group.get("status", "")) or _status(diagnostic or "")
    permanent = _permanent(status, action, diagnostic, default=action == "failed")
    return FailedRecipient(address, status, action, diagnostic, permanent)


def _dsn_kind(recipients: Sequence[FailedRecipient]) -> ReportKind | None:
    actions = {r.action for r in recipients}
    if "failed" in actions:
        return "failure"
    if "delayed" in actions:
        return "delay"
    if actions & {"delivered", "relayed", "expanded"}:
        return "success"
    classes = {r.status[0] for r in recipients if r.status}
    if "5" in classes:
        return "failure"
    if "4" in classes:
        return "delay"
    if classes == {"2"}:
        return "success"
    return None


def _relevant(recipients: Sequence[FailedRecipient], kind: ReportKind) -> list[FailedRecipient]:
    """The recipients a report of this kind is about (a mixed DSN lists the others too)."""
    wanted = {"failure": {"failed"}, "delay": {"delayed"}}.get(kind)
    if wanted is None:
        return list(recipients)
    return [r for r in recipients if r.action in wanted or r.action is None] or (
        [r for r in recipients if r.action not in ("delivered", "relayed", "expanded")]
    )


# Layer 2: Amazon SES notifications (JSON in the body) ----------------------------------------

_SES_KINDS: Final[dict[str, ReportKind]] = {
    "Bounce": "failure",
    "Complaint": "feedback",
    "Delivery": "success",
}
_SES_TYPE_RE: Final = re.compile(r'"notificationType"\s*:\s*"(Bounce|Complaint|Delivery)"')
_SES_OBJECT_RE: Final = re.compile(r'\{[^{}]*"emailAddress"\s*:\s*"([^"]{1,300})"[^{}]*\}')
_SES_DELIVERED_RE: Final = re.compile(r'"recipients"\s*:\s*\[([^\]]{0,5000})\]')
_SES_ADDRESS_RE: Final = re.compile(r'"([^"]+@[^"]+)"')
_SES_MSGID_RE: Final = re.compile(
    r'"name"\s*:\s*"Message-ID"\s*,\s*"value"\s*:\s*"([^"]{1,900})"', re.IGNORECASE
)


def _from_ses_json(view: _View) -> Report | None:
    """Amazon SES sends bounce, complaint and delivery events as JSON through SNS e-mail.

    Only a body that *is* JSON counts: a person pasting such an event into a question to
    the help desk writes some words first.
    """
    if not view.first_text.lstrip().startswith("{"):
        return None
    # Through SNS the event is a JSON string inside a JSON envelope: unescape once.
    text = view.all_text[:_MAX_TEXT].replace('\\"', '"')
    match = _SES_TYPE_RE.search(text)
    if match is None:
        return None
    kind = _SES_KINDS[match.group(1)]
    transient = '"bounceType":"Transient"' in text.replace(" ", "")
    recipients: list[FailedRecipient] = []
    for obj in _SES_OBJECT_RE.finditer(text):
        fields = _json_fields(obj.group(0))
        diagnostic = _clean_diagnostic(fields.get("diagnosticCode", ""))
        status = _status(fields.get("status", "")) or _status(diagnostic or "")
        action = fields.get("action") or None
        permanent = kind == "failure" and _permanent(status, action, diagnostic, not transient)
        recipients.append(FailedRecipient(obj.group(1), status, action, diagnostic, permanent))
    if kind == "success" and not recipients:
        delivered = _SES_DELIVERED_RE.search(text)
        for address in _SES_ADDRESS_RE.findall(delivered.group(1) if delivered else ""):
            recipients.append(FailedRecipient(address, "2.0.0", "delivered", None, False))
    ids = _ids(*_SES_MSGID_RE.findall(text), *_attached_ids(view))
    if kind == "failure" and transient and not any(r.permanent for r in recipients):
        kind = "delay" if "expired" not in text.lower() else "failure"
    return _report(kind, recipients, ids, view)


def _json_fields(obj: str) -> dict[str, str]:
    try:
        data = json.loads(obj)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items() if isinstance(v, str | int)}


# Layer 3: free-text bounces ------------------------------------------------------------------

_DAEMON_LOCAL_RE: Final = re.compile(
    r"(?:mailer[-_.]?daemon|mail[-_.]?daemon|mdaemon|mailerdaemon|post[-_.]?master|"
    r"mail[-_.]?delivery[-_.]?(?:sub)?system|mailadmin|mail[-_.]?admin|smtp[-_.]?gateway)",
    re.IGNORECASE,
)
_DAEMON_NAME_RE: Final = re.compile(
    r"mail\s+delivery\s+(?:sub)?system|mail\s+delivery\s+service|mailer[-_ ]daemon|"
    r"mail\s+administrator|system\s+administrator|postmaster|delivery\s+status|"
    r"mail\s+system|automated\s+response|ndr\s+administrator",
    re.IGNORECASE,
)
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
_REPLY_RE: Final = re.compile(
    r"^(?:\[[^\]]{0,80}\]\s*)*(?:re|aw|antw|wg|fw|fwd|tr|sv|vs|odp|rif)\s*:", re.IGNORECASE
)
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
_DELAY_SUBJECT_RE: Final = re.compile(
    r"\bdelay(?:ed)?\b|\bwarning\b|still\s+being\s+retried|not\s+yet\s+delivered|retrying"
    r"|verz(?:ö|oe)gert|vor(?:ü|ue)bergehend",
    re.IGNORECASE,
)
_FAILURE_SUBJECT_RE: Final = re.compile(
    r"fail|undeliver|returned|unknown|not\s+delivered|rejected|invalid|no\s+such|error",
    re.IGNORECASE,
)
# Said only by notices that will retry, and by none that have given up.
_DELAY_BODY_RE: Final = re.compile(
    r"will\s+continue\s+to\s+(?:try|be\s+made|attempt)|delivery\s+attempts\s+will\s+continue"
    r"|attempts\s+will\s+continue|will\s+(?:keep|continue)\s+trying|still\s+(?:being\s+retried"
    r"|trying)|this\s+is\s+a\s+warning\s+message\s+only|(?:do|need)\s+not\s+(?:need\s+to\s+)?"
    r"re-?send|no\s+action\s+is\s+required|only\s+a\s+temporary\s+failure|will\s+be\s+retried"
    r"|will\s+retry|not\s+yet\s+been\s+delivered|has\s+been\s+postponed",
    re.IGNORECASE,
)
# Said only by notices that have given up.
_FINAL_BODY_RE: Final = re.compile(
    r"permanent(?:ly)?\s+(?:error|fatal|failure|failed)|i'?ve\s+given\s+up|giving\s+up\s+on"
    r"|not\s+going\s+to\s+try\s+again|failed\s+permanently|removed\s+from\s+the\s+(?:mail\s+)?queue"
    r"|will\s+not\s+be\s+(?:retried|delivered)|retry\s+time(?:out)?\s+exceeded",
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


def _looks_like_bounce(view: _View) -> bool:
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


def _text_kind(view: _View) -> ReportKind:
    """Delay (the MTA keeps trying) or failure (it gave up), from the subject and the words."""
    text = view.notification[:_MAX_TEXT]
    if _FINAL_BODY_RE.search(text):
        return "failure"
    delay_subject = _DELAY_SUBJECT_RE.search(view.subject) and not _FAILURE_SUBJECT_RE.search(
        view.subject
    )
    if delay_subject or _DELAY_BODY_RE.search(text):
        return "delay"
    return "failure"


def _from_text(view: _View) -> Report | None:
    if not view.looks_like_bounce:
        return None
    kind = _text_kind(view)
    return _report(kind, _text_recipients(view, kind), _original_ids(view), view)


# Recipients in free text -----------------------------------------------------------------------

# Local parts may be UTF-8 (RFC 6531); "=", "/" and quotes are left out on purpose, so that
# "SMTP=user@example.com" and message ids such as "mm/15stxr@host" do not pass for recipients.
_ADDR: Final = (
    r"(?<![^\s<>(\[\"'`:;,=])[^\s<>()\[\]\\,;:@\"'`=/|]{1,64}"
    r"@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{1,24}"
)
_ADDR_RE: Final = re.compile(rf"({_ADDR})(?![\w-])")
_ADDRESS_LINE_RE: Final = re.compile(rf"[\s:.<>'\"]*{_ADDR}[\s:.<>'\"]*")
_EXPANDED_RE: Final = re.compile(rf"\(expanded\s+from:?\s*<?({_ADDR})>?\s*\)", re.IGNORECASE)
# qmail, Postfix (text), Yahoo, Sina and friends: "<user@example.com>: reason".
_ANGLE_COLON_RE: Final = re.compile(
    rf"^[ \t]*<({_ADDR})>([ \t]*\([^)\n]*\))?[ \t]*:[ \t]*(.*)$", re.MULTILINE
)
# Sentences that name the failed address directly.
_SENTENCE_RES: Final = tuple(
    re.compile(p, re.IGNORECASE | re.MULTILINE)
    for p in (
        rf"your\s+message\s+to\s+<?({_ADDR})>?\s+(?:couldn'?t|could\s+not)\s+be\s+delivered",
        rf"your\s+message\s+wasn'?t\s+delivered\s+to\s+<?({_ADDR})",
        rf"delivery\s+(?:failed|to)\s+(?:\d+\s+attempts:\s*)?<?({_ADDR})>?",
        rf"(?:was\s+not|couldn'?t\s+be|could\s+not\s+be|n'a\s+pas\s+pu\s+(?:être|etre)\s+\w+)"
        rf"\s+(?:delivered|delivre|délivré)\s+(?:a|à|to)\s*:?\s*<?({_ADDR})",
        rf"(?:unable\s+to|could\s+not|couldn'?t)\s+deliver\s+(?:your\s+)?(?:message|mail)\s+to"
        rf"\s+<?({_ADDR})",
        rf"error\s+delivering\s+your\s+(?:mail|message)\s+to\s+<?({_ADDR})",
        rf"undeliverable\s+to\s+<?({_ADDR})",
        rf"addressed\s+to\s+<?({_ADDR})>?,?\s+(?:failed|was\s+not|could\s+not|did\s+not)",
        rf"address\s+to\s+which\s+your\s+message\s+was\s+addressed,?\s+<?({_ADDR})",
        rf"(?:intended|failed)\s+recipient\s*:\s*<?({_ADDR})",
        rf"originally\s+addressed\s+to\s+<?({_ADDR})",
        rf"(?:ihre\s+)?nachricht\s+an\s+<?({_ADDR})>?\s+(?:konnte|wurde)\s+nicht",
        rf"you\s+sent\s+(?:mail|a\s+message)\s+to\s+<?({_ADDR})",
        rf"<({_ADDR})>\.\.\.\s+\S",
        rf"(?:address|recipient|user|mailbox)\s+<?({_ADDR})>?\s+(?:does\s+not\s+exist|is\s+"
        rf"(?:unknown|not\s+(?:known|valid|found|available)|invalid|disabled|full|over\s+quota))",
        rf"(?:unknown|invalid|no\s+such)\s+(?:user|recipient|mailbox|address)\s*:?\s*<?({_ADDR})",
        rf"(?:quota\s+violation|mailbox\s+(?:is\s+)?full|over\s+quota)\s+for\s+<?({_ADDR})",
        rf"^\s*({_ADDR})\s+-\s+(?:no\s+such|user\s+unknown|unknown\s+user)",
        rf"\bto\s+<?({_ADDR})>?\s+(?:failed|was\s+(?:not\s+delivered|rejected|refused))",
        rf"^\s*RCPT\s+TO:\s*<?({_ADDR})",
    )
)
# A heading after which the failed addresses are listed one per line.
_HEADING_RE: Final = re.compile(
    r"following\s+address(?:\(es\)|es)?\s+failed|address(?:es)?\s+to\s+which\s+the\s+message\s+has"
    r"\s+not\s+yet\s+been\s+delivered|the\s+following\s+addresses\s+had\s+(?:permanent|transient)"
    r"|did\s+not\s+reach\s+the\s+following\s+recipient|could\s+not\s+be\s+reached|delivery\s+has"
    r"\s+failed\s+to\s+these\s+recipients|was\s+not\s+delivered\s+to\s*:|following\s+recipients?"
    r"\s+(?:did\s+not\s+receive|could\s+not|failed|were\s+not|was\s+not|has\s+been)|following"
    r"\s+address(?:es|\(es\))?\s+(?:did\s+not|could\s+not|was\s+not|were\s+not|had|failed)"
    r"|delivery\s+to\s+the\s+following\s+recipients?|undeliverable\s+(?:recipient|address)"
    r"|message\s+not\s+delivered\s+to\s+the\s+following|could\s+not\s+deliver\s+(?:the\s+)?"
    r"(?:message|mail)\s+to\s+the\s+following|to\s+the\s+following\s+(?:address|recipient)"
    r"|following\s+(?:user|mailbox)(?:s|\(s\))?|unable\s+to\s+deliver\s+message\s+to"
    r"|failed\s+addresses\s+follow|to\s+this\s+address|following\s+list\s+of\s+recipients"
    r"|could\s+not\s+be\s+delivered\s+to\s+the\s+following"
    r"|folgenden?\s+empf(?:ä|ae)nger(?:n|\(n\))?\s+(?:nicht\s+erreicht|konnte|ist\s+fehlgeschlagen)"
    r"|an\s+(?:die\s+)?folgenden?\s+(?:empf(?:ä|ae)nger|adressen?)|folgende\s+adressen?",
    re.IGNORECASE,
)
_BARE_NAME_RE: Final = re.compile(r"^\s*([A-Za-z0-9][\w.+-]{0,63})(?:\s{2,}|\s*$)")
_STATUS_RE: Final = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_SMTP_REPLY_RE: Final = re.compile(r"(?<![\d.])[45]\d\d[ -]\S")
_SMTP_CODE_RE: Final = re.compile(r"(?<![\d.])([245])[0-5]\d(?=[ -]|$)", re.MULTILINE)
_TIMEOUT_RE: Final = re.compile(
    r"retry\s+time(?:out)?\s+(?:not\s+reached|exceeded)|in\s+the\s+queue\s+too\s+long"
    r"|too\s+long\s+in\s+(?:the\s+)?queue|could\s+not\s+be\s+delivered\s+(?:within|for)\s+\d+"
    r"|not\s+delivered\s+within\s+\d+|exceeded\s+maximum\s+delivery\s+attempts",
    re.IGNORECASE,
)
_NOT_RECIPIENT_LOCAL_RE: Final = re.compile(
    r"(?:mailer[-_.]?daemon|postmaster|abuse|hostmaster|webmaster|no[-_.]?reply|mdaemon"
    r"|bounces?(?:[-+].*)?|owner-.*|.*-(?:owner|request|admin|bounces?)(?:[-+].*)?)",
    re.IGNORECASE,
)
_HEADER_LINE_RE: Final = re.compile(
    r"^\s*>?\s*(?:from|to|cc|bcc|sender|reply-to|return-path|received|message-id|references"
    r"|in-reply-to|date|subject|x-[\w-]+|envelope-to|delivered-to|errors-to|mime-version"
    r"|content-[\w-]+)\s*:",
    re.IGNORECASE,
)


def _text_recipients(view: _View, kind: ReportKind) -> list[FailedRecipient]:
    """Failed recipients written in a notice's own words, most specific layout first.

    The fixed layouts name recipients unambiguously and are trusted as they are. The last
    resorts (every address in the notice, or the To of the returned message) leave out our
    own side of the conversation and role addresses such as postmaster.
    """
    text = view.notification[:_MAX_TEXT]
    found: list[tuple[str, str | None]] = [(a, None) for a in view.failed_header]
    if not found:
        found = _angle_colon(text) or _after_heading(text, view) or _sentences(text)
    if not found:
        found = [(a, d) for a, d in _generic(text) if _is_candidate(a, view)]
    if not found:
        found = [(a, None) for a in view.nested_recipients]
    if not found:
        found = [(a, d) for a, d in _sentences(view.all_text[:_MAX_TEXT]) if _is_candidate(a, view)]
    if not found:
        found = [(a, None) for a in _original_recipients(view)]
    return _recipients(found, kind, text)


def _recipients(
    found: Sequence[tuple[str, str | None]], kind: ReportKind, text: str
) -> list[FailedRecipient]:
    default_permanent = kind == "failure" and not _TIMEOUT_RE.search(text)
    fallback = _first_diagnostic(text)
    action = "failed" if kind == "failure" else "delayed"
    recipients: list[FailedRecipient] = []
    seen: set[str] = set()
    for address, diagnostic in found:
        if address.lower() in seen or len(recipients) >= _MAX_RECIPIENTS:
            continue
        seen.add(address.lower())
        diag = _clean_diagnostic(diagnostic or "") or fallback
        status = _status(diag or "", classes="45")
        permanent = _permanent(status, None, diag, default_permanent)
        if kind == "delay":
            permanent = False
        recipients.append(FailedRecipient(address, status, action, diag, permanent))
    return recipients


def _original_recipients(view: _View) -> list[str]:
    """The To/Cc of the returned message: what a notice that names nobody must be about.

    maild writes one customer per message, so a short list here is the failed recipient.
    """
    for original in view.originals:
        addresses = [a for _d, a in _addresses(MessageReader(original), "to", "cc") if "@" in a]
        if 0 < len(addresses) <= 5:
            return addresses
    return []


def _is_candidate(address: str, view: _View) -> bool:
    lowered = address.lower()
    local = lowered.rsplit("@", 1)[0]
    return lowered not in view.own_side and not _NOT_RECIPIENT_LOCAL_RE.fullmatch(local)


def _angle_colon(text: str) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for match in _ANGLE_COLON_RE.finditer(text):
        expanded = _EXPANDED_RE.search(match.group(2) or "")
        following = text[match.end() : match.end() + 600].split("\n\n", 1)[0]
        address = expanded.group(1) if expanded else match.group(1)
        out.append((address, f"{match.group(3)} {following}".strip() or None))
    return out


def _after_heading(text: str, view: _View) -> list[tuple[str, str | None]]:
    """Addresses listed under headings, each list ending at the first blank line after it."""
    out: list[tuple[str, str | None]] = []
    for count, heading in enumerate(_HEADING_RE.finditer(text)):
        if count >= _MAX_HEADINGS:
            break
        lines = text[heading.end() : heading.end() + 3000].split("\n")
        out.extend(_listed(lines, view))
    return out


def _listed(lines: Sequence[str], view: _View) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for index, line in enumerate(lines[:40]):
        if index == 0 and not _ADDRESS_LINE_RE.fullmatch(line):
            continue  # the rest of the heading's own line
        if not line.strip():
            if out:
                break
            continue
        detail = " ".join(lines[index + 1 : index + 4]).strip()
        expanded = _EXPANDED_RE.search(f"{line} {detail}")
        match = expanded or _ADDR_RE.search(line)
        if match and not _HEADER_LINE_RE.match(line):
            out.append((match.group(1), detail or None))
        elif not out and (bare := _BARE_NAME_RE.match(line)):
            resolved = _resolve_bare(bare.group(1), view)
            if resolved:
                out.append((resolved, line.strip() or None))
        elif not out and index > 4:
            break
    return out


def _resolve_bare(name: str, view: _View) -> str | None:
    """A recipient listed without a domain (AOL screen names, Yale directory names).

    The returned message usually names the full address (in its To or a Received "for"
    clause); failing that, the reporting daemon's own domain is the recipient's domain.
    """
    for match in _ADDR_RE.finditer(view.all_text[:_MAX_TEXT]):
        if match.group(1).rsplit("@", 1)[0].lower() == name.lower():
            return match.group(1)
    for _display, address in view.senders:
        if "@" in address and view.daemon_sender:
            domain = address.rsplit("@", 1)[1]
            return f"{name}@{'.'.join(domain.split('.')[-2:])}"
    return None


def _sentences(text: str) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    for pattern in _SENTENCE_RES:
        for match in pattern.finditer(text):
            line_end = text.find("\n", match.end())
            out.append((match.group(1), text[match.start() : line_end if line_end > 0 else None]))
    return out


def _generic(text: str) -> list[tuple[str, str | None]]:
    """Every address in the notice that is not in a header line or a URL: the last resort."""
    out: list[tuple[str, str | None]] = []
    for line in text.split("\n")[:200]:
        if _HEADER_LINE_RE.match(line) or "://" in line or "mailto:" in line.lower():
            continue
        out.extend((m.group(1), None) for m in _ADDR_RE.finditer(line))
    return out


def _first_diagnostic(text: str) -> str | None:
    """The first line that carries an SMTP reply or an enhanced status code."""
    for line in text.split("\n")[:400]:
        if _HEADER_LINE_RE.match(line):
            continue
        if _status(line, classes="45") or _SMTP_REPLY_RE.search(line):
            return _clean_diagnostic(line)
    return None


# Original message ids --------------------------------------------------------------------------

_SPACE_RE: Final = re.compile(r"\s")
_BRACKETED_ID_RE: Final = re.compile(r"<\s*([^<>\s]{1,900})\s*>")
_MSGID_LINE_RE: Final = re.compile(
    r"^[ \t>]*(?:Original-)?Message-I[Dd][ \t]*:[ \t]*(?:\n[ \t]+)?<([^<>\s]{1,900})>",
    re.MULTILINE | re.IGNORECASE,
)


def _original_ids(view: _View) -> tuple[str, ...]:
    """Ids of the reported message: attached parts first, then "Message-ID:" lines."""
    return _ids(
        *_attached_ids(view),
        *_MSGID_LINE_RE.findall(view.all_text[:_MAX_TEXT]),
        *_MSGID_LINE_RE.findall("\n".join(view.structured.get("dsn", []))[:_MAX_TEXT]),
        *view.nested_ids,
    )


def _attached_ids(view: _View) -> list[str]:
    """Message-IDs of the returned messages, in angle brackets even where the original had
    none (some MTAs write bare ids)."""
    out: list[str] = []
    for original in view.attached:
        value = _header(original, "message-id").strip()
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


def _ids(*values: str | None) -> tuple[str, ...]:
    out: list[str] = []
    for value in values:
        if not value:
            continue
        found = _BRACKETED_ID_RE.findall(value)
        if not found and "@" in value:
            found = [value.strip()]
        out.extend(i for i in found if len(i) > 2 and " " not in i)
    return tuple(_unique(out))


# Shared helpers --------------------------------------------------------------------------------


def _report(
    kind: ReportKind,
    recipients: Sequence[FailedRecipient],
    ids: tuple[str, ...],
    view: _View,
) -> Report:
    first = recipients[0] if recipients else None
    if first is not None and (first.status or first.diagnostic):
        reason = " ".join(p for p in (first.status, first.diagnostic) if p)
    else:
        reason = {
            "failure": "delivery failed",
            "delay": "delivery delayed",
            "success": "delivered",
            "feedback": "feedback report",
            "mdn": "read receipt",
        }[kind]
        if view.subject:
            reason = f"{reason}: {view.subject}"
    return Report(kind, tuple(recipients), ids, reason[:_MAX_REASON])


def _permanent(
    status: str | None, action: str | None, diagnostic: str | None, default: bool
) -> bool:
    if status:
        return status.startswith("5")
    if action in ("delayed", "delivered", "relayed", "expanded"):
        return False
    code = _SMTP_CODE_RE.search(diagnostic or "")
    if code:
        return code.group(1) == "5"
    return default


def _status(value: str, classes: str = "245") -> str | None:
    """The first enhanced status code (RFC 3463) in `value` of one of the given classes."""
    for match in _STATUS_RE.finditer(value):
        if match.group(1) in classes:
            return ".".join(match.groups())
    return None


_RULE_RE: Final = re.compile(r"[-=*_#~|]{3,}")
_DIAGNOSTIC_TYPE_RE: Final = re.compile(
    r"^(?:smtp|x-[\w-]+|x-unix|x-postfix)\s*;\s*", re.IGNORECASE
)


def _clean_diagnostic(value: str) -> str | None:
    text = " ".join(_RULE_RE.sub(" ", value).split())
    text = _DIAGNOSTIC_TYPE_RE.sub("", text)
    return text[:_MAX_REASON] or None


def _address_of(value: str | None) -> str:
    """The address of a DSN recipient field ("rfc822; <a@b>"), or "" when there is none."""
    if not value:
        return ""
    text = value.split(";", 1)[1] if ";" in value else value
    if "=?" in text:
        text = _decode_words(text)
    match = _ADDR_RE.search(text)
    if match:
        return match.group(1)
    cleaned = text.strip().strip("<>\"' ")
    return cleaned if cleaned and " " not in cleaned and len(cleaned) < 300 else ""


def _decode_words(text: str) -> str:
    """RFC 2047 encoded words decoded (some MTAs encode a UTF-8 local part that way)."""
    try:
        return "".join(
            part.decode(charset or "ascii", "replace") if isinstance(part, bytes) else part
            for part, charset in email.header.decode_header(text)
        )
    except DECODE_ERRORS:
        return text


_FIELD_RE: Final = re.compile(r"^([A-Za-z][A-Za-z0-9-]{0,60})[ \t]*:[ \t]*(.*)$")
_FIELD_START_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9-]{0,60}:")


def _fields(text: str) -> list[tuple[str, str]]:
    """Header-style fields of a report text, continuation lines unfolded, names lower-cased."""
    out: list[tuple[str, str]] = []
    for line in text[:_MAX_TEXT].split("\n"):
        if line[:1] in (" ", "\t") and out and line.strip():
            name, value = out[-1]
            out[-1] = (name, f"{value} {line.strip()}")
            continue
        match = _FIELD_RE.match(line)
        if match:
            out.append((match.group(1).lower(), match.group(2).strip()))
    return out


def _field(fields: Sequence[tuple[str, str]], name: str) -> str | None:
    return next((value for key, value in fields if key == name), None)


def _unique(values: Iterator[str] | Sequence[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for value in values:
        if value and value.lower() not in seen:
            seen.add(value.lower())
            out.append(value)
    return out


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
    return _parse_headers(rest)


def _cut_original(text: str) -> str:
    """A notice without the copy of the original message that many MTAs append to it."""
    match = _CUT_RE.search(text[:_MAX_TEXT])
    return text[: match.start()] if match and match.start() > 0 else text[:_MAX_TEXT]


def _param(msg: email.message.Message, name: str) -> str:
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


def _header(msg: email.message.Message, name: str) -> str:
    """The first value of a header as text, encoded words decoded; "" on any trouble."""
    try:
        value = msg.get(name)
    except DECODE_ERRORS:
        return ""
    return "" if value is None else to_text(value)


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
        parsed = _parse_headers(_part_text(part, reader))
        return [parsed] if parsed is not None else []
    return []


def _parse_headers(text: str) -> email.message.Message | None:
    try:
        return email.parser.HeaderParser(policy=email.policy.compat32).parsestr(
            text.lstrip()[:_MAX_TEXT]
        )
    except DECODE_ERRORS:
        return None


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
    data = data[: _MAX_TEXT * 2]
    text = None
    for candidate in (charset, "utf-8"):
        try:
            text = data.decode(candidate)
            break
        except DECODE_ERRORS:
            continue
    if text is None:
        text = data.decode("latin-1")
    return text.replace("\r\n", "\n").replace("\r", "\n")[:_MAX_TEXT]


_HTML_BREAK_RE: Final = re.compile(r"(?i)<br\s*/?>|</p>|</div>|</tr>|</li>")
_HTML_TAG_RE: Final = re.compile(r"<[^>]{0,2000}>")


def _strip_html(text: str) -> str:
    text = _HTML_BREAK_RE.sub("\n", text)
    return html.unescape(_HTML_TAG_RE.sub("", text))


