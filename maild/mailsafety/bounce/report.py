"""What a report says, and the small readers that every layer of the report parser uses.

`Report` and `FailedRecipient` are the result; the helpers read RFC 3464 style fields
("Status: 5.1.1", "Final-Recipient: rfc822; <a@b>"), enhanced status codes, SMTP replies and
Message-IDs wherever a layer finds them, and make the `Report` with its reason.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from maild.mailsafety.mime import decode_words

ReportKind = Literal["failure", "delay", "success", "feedback", "mdn"]

_MAX_TEXT: Final = 200_000  # characters of one part that the text rules look at
_MAX_REASON: Final = 300
_MAX_RECIPIENTS: Final = 100


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



# Local parts may be UTF-8 (RFC 6531); "=", "/" and quotes are left out on purpose, so that
# "SMTP=user@example.com" and message ids such as "mm/15stxr@host" do not pass for recipients.
_ADDR: Final = (
    r"(?<![^\s<>(\[\"'`:;,=])[^\s<>()\[\]\\,;:@\"'`=/|]{1,64}"
    r"@(?:[^\W_](?:[\w-]{0,61}[^\W_])?\.)+[^\W\d_]{1,24}"
)
_ADDR_RE: Final = re.compile(rf"({_ADDR})(?![\w-])")
_STATUS_RE: Final = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_SMTP_CODE_RE: Final = re.compile(r"(?<![\d.])([245])[0-5]\d(?=[ -]|$)", re.MULTILINE)
_BRACKETED_ID_RE: Final = re.compile(r"<\s*([^<>\s]{1,900})\s*>")


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



def _report(
    kind: ReportKind,
    recipients: Sequence[FailedRecipient],
    ids: tuple[str, ...],
    subject: str,
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
        if subject:
            reason = f"{reason}: {subject}"
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
    text = decode_words(text, glued=True)
    match = _ADDR_RE.search(text)
    if match:
        return match.group(1)
    cleaned = text.strip().strip("<>\"' ")
    return cleaned if cleaned and " " not in cleaned and len(cleaned) < 300 else ""


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
