"""Layer 1: the structured parts of a report, and the same fields written into its text.

RFC 3464 delivery status notifications (message/delivery-status), RFC 8098 read receipts
(message/disposition-notification) and RFC 5965 feedback reports (message/feedback-report)
name their recipients and the reported message in fields. A delivery report whose fields
name no recipient falls back to the free-text rules (`freeform`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from maild.mailsafety.bounce.freeform import (
    _from_hotmail_jmrp,
    _from_unsubscribe,
    _text_kind,
    _text_recipients,
)
from maild.mailsafety.bounce.report import (
    FailedRecipient,
    Report,
    ReportKind,
    _address_of,
    _clean_diagnostic,
    _field,
    _fields,
    _ids,
    _permanent,
    _report,
    _status,
    _unique,
)
from maild.mailsafety.bounce.view import View, _attached_ids, _original_ids

# MDN and ARF ------------------------------------------------------------


def _from_mdn(view: View) -> Report | None:
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


def _from_feedback(view: View) -> Report | None:
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



def _from_dsn(view: View) -> Report | None:
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
    return _report(kind, chosen, _original_ids(view), view.subject)


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

