"""Hijacking, header injection and template injection: attacks on a helpdesk, one by one."""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from maild.app import App, build
from maild.clock import FixedClock
from maild.domain import Address, Fetched, SourceRef
from maild.mailsafety.authres import sender_verified
from maild.outbound.compose import compose
from maild.outbound.render import Rendered
from maild.store.models import Event, Outbox, Quarantine, Suppression, Ticket
from tests.kit import customer_mail, dsn, message_id_of, settings_for


class Feed:
    def __init__(self, app: App) -> None:
        self.app = app
        self.uid = 0

    def __call__(self, *raws: bytes) -> None:
        items = []
        for raw in raws:
            self.uid += 1
            items.append(Fetched(SourceRef("support", "INBOX", 1, self.uid), raw))
        self.app.pipeline.process_batch(items)

    def outbox(self) -> list[email.message.EmailMessage]:
        with self.app.sessions() as s:
            return [email.message_from_bytes(r.raw, policy=email.policy.default)  # type: ignore[misc]
                    for r in s.scalars(select(Outbox).order_by(Outbox.id))]

    def tickets(self) -> list[Ticket]:
        with self.app.sessions() as s:
            return list(s.scalars(select(Ticket).order_by(Ticket.id)))


@pytest.fixture
def feed(tmp_path: Path, sqlite_url: str) -> Iterator[Feed]:
    app = build(settings_for(tmp_path, db_url=sqlite_url,
                             safety={"trusted_authserv_ids": ["mx.example.test"]}),
                clock=FixedClock())
    yield Feed(app)
    app.dispose()


# -- hijacking -----------------------------------------------------------------------------

def test_subject_reference_alone_does_not_let_a_stranger_in(feed: Feed) -> None:
    feed(customer_mail(subject="My contract", body="My IBAN is DE00 1234."))
    [original] = feed.tickets()
    feed(customer_mail(sender="mallory@evil.example", subject=f"Re: [{original.ref}]",
                       body="Please send me the details."))
    first, second = feed.tickets()
    assert second.linked_ticket_id == first.id and second.requester == "mallory@evil.example"
    to_mallory = [m for m in feed.outbox() if "mallory" in str(m["To"])]
    assert len(to_mallory) == 1
    text = to_mallory[0].get_content()
    assert "IBAN" not in text and "My contract" not in str(to_mallory[0]["Subject"])
    with feed.app.sessions() as s:
        created = s.scalars(select(Event).where(Event.ticket_id == second.id,
                                                Event.kind == "created")).one()
    assert created.data["flags"] == ["subject-ref-from-non-participant"]


def test_a_customer_message_id_does_not_let_a_stranger_in(feed: Feed) -> None:
    """Guessing a customer's Message-ID puts the stranger's mail in the conversation
    (unconfirmed, the team told), but they learn nothing and change nothing."""
    first = customer_mail(subject="Account", body="secret details")
    feed(first)
    [before] = feed.tickets()
    feed(customer_mail(sender="mallory@evil.example", subject="Re: Account",
                       in_reply_to=message_id_of(first), body="#close\nSend me the details"))
    [after] = feed.tickets()
    assert (after.status, after.updated_at, after.awaiting_reply_since) == (
        before.status, before.updated_at, before.awaiting_reply_since)
    assert not [m for m in feed.outbox() if "mallory" in str(m["To"]) + str(m["Cc"])]
    with feed.app.sessions() as s:
        received = s.scalars(select(Event).where(Event.kind == "message.received")).one()
        assert received.data["flags"] == ["unconfirmed-participant"]
    assert len(feed.outbox()) == 1  # the customer's acknowledgement, nothing more


def test_our_signed_message_id_and_body_marker_thread(feed: Feed) -> None:
    feed(customer_mail(subject="Printer"))
    [ack] = feed.outbox()
    body = ack.get_content()
    assert "[maild:" in body
    # A web client that drops In-Reply-To/References and the subject, but quotes our text:
    quoted = "Still broken.\n\n> " + "\n> ".join(body.splitlines())
    feed(customer_mail(subject="printer again", body=quoted))
    assert len(feed.tickets()) == 1
    # A forged marker (bad signature) does nothing.
    forged = body.replace("[maild:", "[maild:0").replace("]", "", 1)
    feed(customer_mail(sender="other@example.org", subject="x", body=forged))
    assert len(feed.tickets()) == 2


def test_reply_to_is_not_identity(feed: Feed) -> None:
    feed(customer_mail(sender="erika@example.com",
                       headers={"Reply-To": "attacker@evil.example"}))
    [ack] = feed.outbox()
    assert ack["To"].addresses[0].addr_spec == "erika@example.com"
    assert [t.requester for t in feed.tickets()] == ["erika@example.com"]


# -- bounces: only for what we really sent ------------------------------------------------

def test_bounce_matches_only_our_signed_message_ids(feed: Feed) -> None:
    customer = customer_mail(sender="gone@example.org")
    feed(customer)
    [ack] = feed.outbox()
    ack_id = str(ack["Message-ID"]).strip("<>")
    feed(dsn(message_id_of(customer).strip("<>"), "gone@example.org"))  # not ours: held
    feed(dsn(ack_id, "gone@example.org"))  # ours: recorded on the ticket
    assert len(feed.tickets()) == 1
    with feed.app.sessions() as s:
        reports = s.scalars(select(Event).where(Event.kind == "report.failure")).all()
        assert len(reports) == 1
        assert reports[0].data["recipients"][0]["address"] == "gone@example.org"
        held = s.scalars(select(Quarantine)).all()
        assert len(held) == 1 and "no message maild sent" in held[0].reason
        suppressed = s.get(Suppression, "gone@example.org")
        assert suppressed is not None
    # The address failed permanently: no automatic mail to it for a while.
    feed(customer_mail(sender="gone@example.org", subject="new question"))
    assert len(feed.outbox()) == 1
    with feed.app.sessions() as s:
        assert s.scalars(select(Event).where(Event.kind == "autoreply.suppressed")).all()


# -- header and template injection ----------------------------------------------------------

def test_header_injection_through_subject_and_name(feed: Feed) -> None:
    evil_subject = "=?utf-8?q?hello=0D=0ABcc:_victim@example.org?="
    raw = customer_mail(sender='"Eve=0D=0AX-Evil: 1" <eve@example.com>',
                        subject="placeholder").replace(b"Subject: placeholder",
                                                       b"Subject: " + evil_subject.encode())
    feed(raw)
    [ack] = feed.outbox()
    assert ack["Bcc"] is None and ack["X-Evil"] is None
    assert len(ack.get_all("Subject") or []) == 1
    with feed.app.sessions() as s:
        out = s.scalars(select(Outbox)).one()
    head = out.raw.split(b"\r\n\r\n", 1)[0]
    assert b"\nBcc:" not in head and b"\nX-Evil" not in head
    assert out.rcpt_to == "eve@example.com"


def test_compose_cleans_line_breaks_everywhere() -> None:
    env = compose(Rendered("a\r\nBcc: x@y.z", "body"),
                  sender=Address("Sup\nport", "support@example.test"),
                  to=Address("Cu\r\nstomer", "c@example.com"), message_id="m@example.test",
                  in_reply_to="x\r\nBcc: y@z", references=("a\nb",),
                  date=FixedClock().now(), automatic=True)
    lines = env.raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    names = [line.split(b":", 1)[0] for line in lines if not line.startswith((b" ", b"\t"))]
    assert b"Bcc" not in names and names.count(b"Subject") == 1


@pytest.mark.parametrize("payload", [
    "{{ 7*7 }}", "{% for x in range(3) %}loop{% endfor %}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}", "{{ support.__init__.__globals__ }}",
])
def test_customer_text_is_never_template_code(feed: Feed, payload: str) -> None:
    feed(customer_mail(subject=f"Hi {payload}", body=f"Body {payload}"))
    [ack] = feed.outbox()
    assert payload in ack.get_content()  # verbatim, not evaluated
    # The subject after the ticket reference (a random reference may hold "49" itself).
    subject = str(ack["Subject"]).split("] ", 1)[1]
    assert "49" not in subject and "looploop" not in ack.get_content()


def test_templates_are_sandboxed(tmp_path: Path, sqlite_url: str) -> None:
    from jinja2.exceptions import SecurityError

    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "acknowledgement.en.txt").write_text(
        "Subject: x\n\n{{ ticket.__class__.__init__.__globals__ }}\n", encoding="utf-8")
    app = build(settings_for(tmp_path, db_url=sqlite_url, templates="templates"),
                clock=FixedClock())
    result = app.pipeline.process_batch(
        [Fetched(SourceRef("support", "INBOX", 1, 1), customer_mail())])
    assert (result.held and "SecurityError" in result.held[0][1]) or "unsafe" in \
        result.held[0][1]
    assert SecurityError is not None
    app.dispose()


# -- sender verification --------------------------------------------------------------------

@pytest.mark.parametrize("header,verified", [
    ("mx.example.test; dmarc=pass header.from=example.com", True),
    ("mx.example.test; dkim=pass header.d=example.com; spf=fail", True),
    ("mx.example.test; spf=pass smtp.mailfrom=bounces.example.com", True),
    ("mx.example.test; dkim=pass header.d=other.example", False),
    ("mx.example.test; dkim=fail header.d=example.com", False),
    ("evil.example; dmarc=pass header.from=example.com", False),  # not a trusted server
    ("", False),
])
def test_authentication_results(header: str, verified: bool) -> None:
    assert sender_verified([header], "erika@example.com", ["mx.example.test"]) is verified


def test_unverified_sender_is_asked_to_write_from_the_registered_address(feed: Feed) -> None:
    feed(customer_mail(headers={"Authentication-Results":
                                "mx.example.test; dmarc=fail header.from=example.com"}))
    feed(customer_mail(sender="ok@example.com", headers={
        "Authentication-Results": "mx.example.test; dmarc=pass header.from=example.com"}))
    unverified, verified = feed.outbox()
    assert "could not verify" in unverified.get_content()
    assert "could not verify" not in verified.get_content()
