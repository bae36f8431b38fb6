"""Layers 2 and 3: reports in forms no standard describes.

Amazon SES's JSON events, Outlook.com's junk-mail reports and one-click unsubscribe
requests are read from their fixed shapes. The rest is free text in a dozen MTA dialects
(qmail, Exim, Postfix and sendmail transcripts, Exchange, Yahoo, GroupWise, Lotus
Notes...): read only for a message that `View.looks_like_bounce`, its kind (delay or
failure) from its words, its recipients from the dialects' fixed layouts, then from
cautious fallbacks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Final

from maild.mailsafety.bounce.report import (
    _ADDR,
    _ADDR_RE,
    _MAX_RECIPIENTS,
    _MAX_TEXT,
    FailedRecipient,
    Report,
    ReportKind,
    _clean_diagnostic,
    _ids,
    _permanent,
    _report,
    _status,
)
from maild.mailsafety.bounce.view import View, _addresses, _attached_ids, _original_ids
from maild.mailsafety.mime import MessageReader
from maild.mailsafety.vocabulary import DAEMON_LOCAL_WORDS, POSTMASTER_LOCAL_WORDS

_MAX_HEADINGS: Final = 20


def _from_hotmail_jmrp(view: View) -> Report | None:
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


def _from_unsubscribe(view: View) -> Report | None:
    """A mail client's one-click List-Unsubscribe request (RFC 2369 mailto:), e.g. Apple Mail."""
    if view.subject.strip().lower() != "unsubscribe" or not _UNSUBSCRIBE_RE.search(
        view.notification[:5000]
    ):
        return None
    return Report("feedback", (), _original_ids(view), "feedback: opt-out")



# Amazon SES notifications (JSON in the body) ----------------------------------------

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


def _from_ses_json(view: View) -> Report | None:
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
    return _report(kind, recipients, ids, view.subject)


def _json_fields(obj: str) -> dict[str, str]:
    try:
        data = json.loads(obj)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items() if isinstance(v, str | int)}



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


def _text_kind(view: View) -> ReportKind:
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


def _from_text(view: View) -> Report | None:
    if not view.looks_like_bounce:
        return None
    kind = _text_kind(view)
    return _report(kind, _text_recipients(view, kind), _original_ids(view), view.subject)


# Recipients in free text -----------------------------------------------------------------------

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
_SMTP_REPLY_RE: Final = re.compile(r"(?<![\d.])[45]\d\d[ -]\S")
_TIMEOUT_RE: Final = re.compile(
    r"retry\s+time(?:out)?\s+(?:not\s+reached|exceeded)|in\s+the\s+queue\s+too\s+long"
    r"|too\s+long\s+in\s+(?:the\s+)?queue|could\s+not\s+be\s+delivered\s+(?:within|for)\s+\d+"
    r"|not\s+delivered\s+within\s+\d+|exceeded\s+maximum\s+delivery\s+attempts",
    re.IGNORECASE,
)
# Role addresses: never the customer a bounce is about.
_NOT_RECIPIENT_LOCAL_RE: Final = re.compile(
    rf"(?:{DAEMON_LOCAL_WORDS}|{POSTMASTER_LOCAL_WORDS}|abuse|hostmaster|webmaster|no[-_.]?reply"
    r"|bounces?(?:[-+].*)?|owner-.*|.*-(?:owner|request|admin|bounces?)(?:[-+].*)?)",
    re.IGNORECASE,
)
_HEADER_LINE_RE: Final = re.compile(
    r"^\s*>?\s*(?:from|to|cc|bcc|sender|reply-to|return-path|received|message-id|references"
    r"|in-reply-to|date|subject|x-[\w-]+|envelope-to|delivered-to|errors-to|mime-version"
    r"|content-[\w-]+)\s*:",
    re.IGNORECASE,
)



def _text_recipients(view: View, kind: ReportKind) -> list[FailedRecipient]:
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


def _original_recipients(view: View) -> list[str]:
    """The To/Cc of the returned message: what a notice that names nobody must be about.

    maild writes one customer per message, so a short list here is the failed recipient.
    """
    for original in view.originals:
        addresses = [a for _d, a in _addresses(MessageReader(original), "to", "cc") if "@" in a]
        if 0 < len(addresses) <= 5:
            return addresses
    return []


def _is_candidate(address: str, view: View) -> bool:
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


def _after_heading(text: str, view: View) -> list[tuple[str, str | None]]:
    """Addresses listed under headings, each list ending at the first blank line after it."""
    out: list[tuple[str, str | None]] = []
    for count, heading in enumerate(_HEADING_RE.finditer(text)):
        if count >= _MAX_HEADINGS:
            break
        lines = text[heading.end() : heading.end() + 3000].split("\n")
        out.extend(_listed(lines, view))
    return out


def _listed(lines: Sequence[str], view: View) -> list[tuple[str, str | None]]:
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


def _resolve_bare(name: str, view: View) -> str | None:
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

