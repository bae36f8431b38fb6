"""The pipeline on a real database (SQLite and PostgreSQL), fed raw bytes directly.

IMAP and SMTP are exercised end to end in test_e2e_core.py; here every threading and
deduplication rule is pinned down without servers in between.
"""

from __future__ import annotations

import email
import email.policy
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from maild.app import App, build
from maild.clock import FixedClock
from maild.domain import Classification, Fetched, Inbound, SourceRef
from maild.store.models import Event, Message, Outbox, Quarantine, Ticket
from tests.kit import SUPPORT, customer_mail, message_id_of, settings_for


class Uids:
    """Hands out UIDs like one IMAP folder would."""

    def __init__(self, uidvalidity: int = 1) -> None:
        self.uidvalidity = uidvalidity
        self.next = 1

    def wrap(self, raw: bytes) -> Fetched:
        uid, self.next = self.next, self.next + 1
        return Fetched(SourceRef("support", "INBOX", self.uidvalidity, uid), raw)


@pytest.fixture
def app(tmp_path: Path, db_url: str) -> Iterator[App]:
    application = build(settings_for(tmp_path, db_url=db_url), clock=FixedClock())
    yield application
    application.dispose()


@pytest.fixture
def sqlite_app(tmp_path: Path, sqlite_url: str) -> Iterator[App]:
    application = build(settings_for(tmp_path, db_url=sqlite_url), clock=FixedClock())
    yield application
    application.dispose()


def feed(app: App, uids: Uids, *raws: bytes) -> None:
    app.pipeline.process_batch([uids.wrap(r) for r in raws])


def count(app: App, model: type, *where: object) -> int:
    with app.sessions() as s:
        return int(s.scalar(select(func.count()).select_from(model).where(*where)) or 0)


def outbox(app: App) -> list[email.message.EmailMessage]:
    with app.sessions() as s:
        rows = s.scalars(select(Outbox).order_by(Outbox.id)).all()
        return [email.message_from_bytes(r.raw, policy=email.policy.default)  # type: ignore[misc]
                for r in rows]


def tickets(app: App) -> list[Ticket]:
    with app.sessions() as s:
        return list(s.scalars(select(Ticket).order_by(Ticket.id)))


def test_new_message_opens_ticket_and_queues_one_acknowledgement(app: App) -> None:
    raw = customer_mail()
    feed(app, Uids(), raw)
    [ticket] = tickets(app)
    assert ticket.requester == "erika@example.com"
    assert ticket.status == "new" and ticket.level == 1
    [ack] = outbox(app)
    assert ack["From"].addresses[0].addr_spec == SUPPORT
    assert ack["To"].addresses[0].addr_spec == "erika@example.com"
    assert f"[{ticket.ref}]" in ack["Subject"]
    assert ack["In-Reply-To"] == message_id_of(raw)
    assert message_id_of(raw) in ack["References"]
    assert ack["Auto-Submitted"] == "auto-replied"
    mid = ack["Message-ID"].strip("<>")
    assert mid.endswith("@example.test")
    assert app.tickets.outgoing.ids.verify(mid)
    with app.sessions() as s:
        stored = s.scalar(select(Message).where(Message.direction == "inbound"))
        assert stored is not None and stored.raw == raw  # byte for byte
        kinds = [e.kind for e in s.scalars(select(Event).order_by(Event.id))]
    assert kinds == ["created", "classified", "acknowledgement.queued"]


def _ack_id(app: App) -> str:
    return str(outbox(app)[0]["Message-ID"])


def test_reply_by_in_reply_to_threads_without_second_ack(app: App) -> None:
    uids = Uids()
    first = customer_mail()
    feed(app, uids, first)
    reply = customer_mail(subject="Re: whatever", in_reply_to=_ack_id(app))
    feed(app, uids, reply)
    assert len(tickets(app)) == 1
    assert count(app, Message, Message.direction == "inbound") == 2
    assert len(outbox(app)) == 1


def test_reply_by_references_alone(app: App) -> None:
    uids = Uids()
    first = customer_mail()
    feed(app, uids, first)
    reply = customer_mail(subject="more info", references=["<unknown@x.example>",
                                                            message_id_of(first)])
    feed(app, uids, reply)
    assert len(tickets(app)) == 1
    assert count(app, Message, Message.direction == "inbound") == 2


def test_reply_with_only_the_subject_reference(app: App) -> None:
    uids = Uids()
    feed(app, uids, customer_mail())
    [ticket] = tickets(app)
    reply = customer_mail(subject=f"AW: WG: [{ticket.ref}] Login does not work",
                          body="Sent from my phone")
    feed(app, uids, reply)
    assert len(tickets(app)) == 1
    assert len(outbox(app)) == 1
    lowercase = customer_mail(subject=f"re: [{ticket.ref.lower()}]")
    feed(app, uids, lowercase)
    assert len(tickets(app)) == 1


def test_subject_reference_from_a_stranger_opens_a_linked_ticket(app: App) -> None:
    uids = Uids()
    feed(app, uids, customer_mail())
    [original] = tickets(app)
    feed(app, uids, customer_mail(sender="mallory@evil.example",
                                  subject=f"Re: [{original.ref}] give me the data"))
    _, second = tickets(app)
    assert second.linked_ticket_id == original.id
    acks = outbox(app)
    assert len(acks) == 2
    assert original.ref not in str(acks[1]["Subject"])  # nothing of the original leaks


def test_duplicate_delivery_is_discarded(app: App) -> None:
    uids = Uids()
    raw = customer_mail()
    feed(app, uids, raw)
    feed(app, uids, raw)  # the same message again, new UID
    feed(app, uids, raw, raw)  # twice within one batch
    assert len(tickets(app)) == 1
    assert count(app, Message, Message.direction == "inbound") == 1
    assert len(outbox(app)) == 1


def test_message_without_message_id(app: App) -> None:
    uids = Uids()
    raw = customer_mail(message_id=None)
    item = uids.wrap(raw)
    app.pipeline.process_batch([item])
    app.pipeline.process_batch([item])  # re-fetched after a crash: same UID
    moved = Uids(uidvalidity=99)  # UIDVALIDITY changed: new UID, same bytes
    feed(app, moved, raw)
    assert len(tickets(app)) == 1
    assert len(outbox(app)) == 1
    ack = outbox(app)[0]
    assert ack["In-Reply-To"] is None


def test_no_sender_is_quarantined_with_raw_bytes(app: App) -> None:
    raw = b"Subject: hello\r\nMessage-ID: <x1@example.com>\r\n\r\nno from header\r\n"
    result = app.pipeline.process_batch([Uids().wrap(raw)])
    assert result.done == [] and len(result.held) == 1
    with app.sessions() as s:
        q = s.scalar(select(Quarantine))
        assert q is not None and q.raw == raw and "no sender" in q.reason
    assert tickets(app) == []


def test_german_mail_gets_german_acknowledgement(app: App) -> None:
    raw = customer_mail(
        subject="Frage zu meiner Rechnung",
        body="Sehr geehrte Damen und Herren,\n\nich habe eine Frage zu meiner Rechnung "
             "vom 3. November. Der Betrag ist höher als vereinbart.\n\nMit freundlichen Grüßen",
    )
    feed(app, Uids(), raw)
    [ack] = outbox(app)
    assert "vielen Dank" in ack.get_content()
    assert tickets(app)[0].language == "de"


def test_auto_reply_gets_no_acknowledgement(app: App) -> None:
    raw = customer_mail(subject="Out of office", headers={"Auto-Submitted": "auto-replied"})
    feed(app, Uids(), raw)
    assert len(tickets(app)) == 1
    assert outbox(app) == []


class Exploding:
    def classify(self, inbound: Inbound) -> Classification:
        if "explode" in inbound.subject:
            raise RuntimeError("classifier bug")
        return Classification()


def test_unexpected_failure_quarantines_one_message_and_the_batch_goes_on(
    tmp_path: Path, sqlite_url: str
) -> None:
    app = build(settings_for(tmp_path, db_url=sqlite_url), clock=FixedClock(),
                classifier=Exploding())
    uids = Uids()
    good1, bad, good2 = (customer_mail(subject=s) for s in ("one", "explode", "two"))
    result = app.pipeline.process_batch([uids.wrap(good1), uids.wrap(bad), uids.wrap(good2)])
    assert [s.uid for s in result.done] == [1, 3]
    assert [s.uid for s, _ in result.held] == [2]
    assert "classifier bug" in result.held[0][1]
    assert len(tickets(app)) == 2
    assert len(outbox(app)) == 2  # the failed message's savepoint left nothing behind
    app.dispose()


CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"


def _corpus_files(folder: str, step: int) -> list[Path]:
    files = sorted(p for p in (CORPUS / folder).rglob("*") if p.is_file()
                   and p.suffix not in (".csv", ".md"))
    return files[::step]


@pytest.mark.parametrize("folder,step", [("threads", 7), ("malformed", 1), ("i18n", 3)])
def test_corpus_messages_end_in_a_ticket_or_in_quarantine(
    sqlite_app: App, folder: str, step: int
) -> None:
    files = _corpus_files(folder, step)
    uids = Uids()
    items = [uids.wrap(p.read_bytes()) for p in files]
    done = held = discarded = 0
    for i in range(0, len(items), 100):
        result = sqlite_app.pipeline.process_batch(items[i:i + 100])
        assert len(result.done) + len(result.held) == len(items[i:i + 100])
        done += len(result.done)
        held += len(result.held)
        discarded += result.discarded
    assert done + held == len(files)
    # Everything processed is a stored message or a duplicate of one; everything held is
    # in quarantine with its raw bytes.
    assert count(sqlite_app, Quarantine) == held
    assert count(sqlite_app, Message, Message.direction == "inbound") == done - discarded


def test_ticket_references_draw_evenly_from_an_alphabet_without_look_alikes() -> None:
    from collections import Counter

    from maild.store.ids import _REF_ALPHABET, new_ref

    assert len(_REF_ALPHABET) == 32 and not set("01IO") & set(_REF_ALPHABET)
    refs = [new_ref("T") for _ in range(3000)]
    assert all(len(r) == 8 and r.startswith("T-") for r in refs)
    seen = Counter("".join(r[2:] for r in refs))
    assert set(seen) == set(_REF_ALPHABET)  # 18,000 draws: every character comes up
    assert max(seen.values()) < 2 * min(seen.values())  # ~562 each; a bias would show


def test_an_address_smtp_cannot_carry_gets_a_ticket_but_no_acknowledgement(app: App) -> None:
    """A From that headers let through but that cannot go into RCPT TO: the mail is not
    lost, and nothing is queued that would fail (or stop) the sender."""
    feed(app, Uids(), customer_mail(sender="foo bar@example.com"))
    [ticket] = tickets(app)
    assert ticket.requester == "foo bar@example.com"
    assert outbox(app) == []
    with app.sessions() as s:
        [event] = s.scalars(select(Event).where(Event.kind == "autoreply.suppressed"))
    assert event.data["reason"] == "foo bar@example.com is not an address SMTP can carry"
