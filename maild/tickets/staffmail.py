"""Staff mail about something that is not one ticket (a wish of the feature-request
register): rendered with the templates, composed, and kept as an outbox row alone.

A ticket's mail also gets a message row (the conversation, and the Message-ID replies
thread by); mail like this belongs to no conversation: replies to it come back through the
signed address in its Reply-To (tickets/address.py), not by threading.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from maild.domain import Address
from maild.outbound.compose import compose, with_html
from maild.outbound.queue import Outgoing
from maild.outbound.render import MailContext, PersonView, TicketView


@dataclass(frozen=True)
class StaffMail:
    """One mail to a member of staff: the template renders `about` in place of a ticket."""

    to: str
    template: str
    about: TicketView
    headline: str
    text: str
    reply_to: str | None = None
    author: str = ""
    in_reply_to: str | None = None  # the mail this answers (a command), if any
    html: str | None = None  # an HTML alternative of the rendered text (a digest)
    images: tuple[tuple[str, bytes], ...] = ()  # Content-ID, PNG: inline in the HTML


def outbox_row(mail: StaffMail, out: Outgoing, *, at: datetime, kind: str,
               language: str = "en") -> dict[str, Any]:
    """`language`: the organisation's (settings.staff_language), as for all staff mail."""
    context = MailContext(
        ticket=mail.about, customer=PersonView(name="", address=""),
        support=PersonView(name=out.support.name, address=out.support.address),
        message_excerpt="", headline=mail.headline, text=mail.text, author=mail.author)
    rendered = out.templates.render(mail.template, language, context)
    message_id = out.ids.new(at)
    envelope = compose(
        rendered, sender=out.support, to=Address("", mail.to), message_id=message_id,
        in_reply_to=mail.in_reply_to,
        references=(mail.in_reply_to,) if mail.in_reply_to else (), date=at,
        automatic=True, extra_headers={"Reply-To": mail.reply_to} if mail.reply_to else {})
    raw = (with_html(envelope.raw, mail.html, dict(mail.images)) if mail.html
           else envelope.raw)
    return dict(
        ticket_id=None, message_row_id=None, message_id=message_id, kind=kind,
        mail_from=envelope.mail_from, rcpt_to=",".join(envelope.rcpt_to), raw=raw,
        status="pending", attempts=0, next_attempt_at=at, last_error=None, created_at=at,
        sent_at=None)
