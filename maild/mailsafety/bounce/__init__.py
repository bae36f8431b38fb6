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

One module a layer: `structured` (1), `freeform` (2 and 3), over `view` (the message as the
rules read it, and whether it speaks for a machine) and `report` (the result, and the field
readers every layer uses). What is not about reports (walking MIME parts, decoding headers
and RFC 2047 words, HTML) is `maild.mailsafety.mime`, shared with the auto-reply detector
and the parse stage; reply prefixes and daemon names are `maild.mailsafety.vocabulary`.
"""

from __future__ import annotations

import email
import email.message
import email.policy

from maild.mailsafety.bounce.freeform import _from_ses_json, _from_text
from maild.mailsafety.bounce.report import FailedRecipient, Report, ReportKind
from maild.mailsafety.bounce.structured import _from_dsn, _from_feedback, _from_mdn
from maild.mailsafety.bounce.view import View
from maild.mailsafety.mime import DECODE_ERRORS, MessageReader

__all__ = ["FailedRecipient", "Report", "ReportKind", "parse_report"]


def parse_report(msg: email.message.Message | MessageReader) -> Report | None:
    """The report `msg` is, or None when it is not a machine report; never raises.

    A reader of the message shares what is read with the other detectors.
    """
    reader = msg if isinstance(msg, MessageReader) else MessageReader(msg)
    readable = _without_bom(reader.msg)
    return _parse(reader if readable is reader.msg else MessageReader(readable), 0)


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


def _parse(reader: MessageReader, depth: int) -> Report | None:
    view = View(reader, depth=depth, reparse=_parse)
    return (
        _from_mdn(view)
        or _from_feedback(view)
        or _from_dsn(view)
        or _from_ses_json(view)
        or _from_text(view)
    )

