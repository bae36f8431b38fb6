"""The ticket store's contract: the batched store answers and writes what the direct one
does.

Within a batch, maild reads ahead what its lookups will ask (threading, placeholders,
participants, suppressions, counts of automatic mail) and keeps notes of what it has added
instead of flushing (maild/store/batchstore.py). Both are shortcuts over the direct store
(maild/store/ticketstore.py). Here every operation of the `TicketStore` protocol is run
against both, and one sequence of mail is fed to two fresh databases, once one message at a
time on the direct store and once in large batches on the batched store: everything maild
wrote must come out the same. The sequence exercises every lookup the
shortcuts answer, including within one batch: a duplicate and a reply of a message in the
same batch, replies by In-Reply-To, by References and by the subject reference, a stranger
quoting a reference, a colleague put in Cc who then replies (confirmed), someone nobody put in
Cc who replies twice into a conversation (unconfirmed), replies to a parent maild never held
(placeholders), a message without Message-ID delivered twice, a delivery report that
suppresses an address before that customer writes again, and the per-recipient limit on
acknowledgements reached partly by earlier batches and partly by this one.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from maild.app import App, build
from maild.clock import FixedClock
from maild.domain import Fetched, SourceRef
from maild.pipeline import batch as batch_module
from maild.pipeline.parse import parse
from maild.settings import SafetySettings, WindowLimit
from maild.store import db
from maild.store.automail import AutomailCounter
from maild.store.batchstore import BatchStore
from maild.store.models import Event, Message, Outbox, Suppression, Ticket
from maild.store.ticketstore import DirectStore, TicketStore
from tests.kit import customer_mail, dsn, message_id_of, settings_for
from tests.servers.postgres import PgDatabase


@pytest.fixture(params=["sqlite", "postgresql"])
def two_apps(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[App, App]]:
    """Two maild instances on two fresh databases of the same kind."""
    urls: list[str] = []
    databases: list[PgDatabase] = []
    for name in ("single", "batched"):
        folder = tmp_path / name
        folder.mkdir()
        if request.param == "sqlite":
            urls.append(f"sqlite:///{folder / 'maild.db'}")
        else:
            databases.append(PgDatabase.create())
            urls.append(databases[-1].url)
    apps = [build(settings_for(tmp_path / name, db_url=url), clock=FixedClock())
            for name, url in zip(("single", "batched"), urls, strict=True)]
    try:
        yield apps[0], apps[1]
    finally:
        for app in apps:
            app.dispose()
        for database in databases:
            database.drop()


class Mailbox:
    """Feeds an app like one IMAP folder: UIDs in order, batches as given."""

    def __init__(self, app: App, *, one_at_a_time: bool) -> None:
        self.app = app
        self.one_at_a_time = one_at_a_time
        self.uid = 0

    def deliver(self, raws: list[bytes]) -> None:
        items = []
        for raw in raws:
            self.uid += 1
            items.append(Fetched(SourceRef("support", "INBOX", 1, self.uid), raw))
        batches = [[i] for i in items] if self.one_at_a_time else [items]
        for batch in batches:
            self.app.pipeline.process_batch(batch)

    def tickets(self) -> list[Ticket]:
        with self.app.sessions() as s:
            return list(s.scalars(select(Ticket).order_by(Ticket.id)))

    def ack_id(self, ticket: Ticket) -> str:
        with self.app.sessions() as s:
            mid = s.scalar(select(Outbox.message_id).where(
                Outbox.ticket_id == ticket.id, Outbox.kind == "acknowledgement"))
        assert mid is not None
        return f"<{mid}>"


FIRST = [
    customer_mail(sender="Erika <erika@example.com>", subject="Login does not work"),
    customer_mail(sender="bob@example.org", subject="Invoice 4711 is wrong"),
    customer_mail(sender="carol@example.net", subject="Server down since 9:00"),
    customer_mail(sender="Erika <erika@example.com>", subject="Second question"),
    customer_mail(sender="frank@example.org", subject="Where is my order?"),
    customer_mail(sender="dan@example.com", subject="No id", message_id=None),
]


GHOST = "<ghost-parent@example.com>"  # a parent maild never receives


def first_batch() -> list[bytes]:
    """New tickets, then a duplicate and a reply of a message in the same batch."""
    login = FIRST[0]
    return [*FIRST, login,
            customer_mail(sender="erika@example.com", subject="more on this",
                          references=[message_id_of(login)])]


def second_batch(box: Mailbox) -> list[bytes]:
    """Mail that refers to what the first batch created (its references and the
    Message-IDs of its acknowledgements are the app's own)."""
    login, invoice, server, _second, order, _no_id = box.tickets()
    return [
        # Erika copies her colleague Greta: from now on, Greta takes part in the ticket.
        customer_mail(sender="erika@example.com", subject="Re: login",
                      in_reply_to=box.ack_id(login), headers={"Cc": "greta@example.com"}),
        customer_mail(sender="bob@example.org", subject=f"AW: [{invoice.ref}] Invoice",
                      body="Sent from my phone"),
        customer_mail(sender="eve@example.com", subject=f"Re: [{server.ref}] hello"),
        dsn(box.ack_id(order).strip("<>"), "frank@example.org"),
        customer_mail(sender="frank@example.org", subject="Hello? Anybody there?"),
        customer_mail(sender="Erika <erika@example.com>", subject="Third question"),
        customer_mail(sender="Erika <erika@example.com>", subject="Fourth question"),
        FIRST[2],  # delivered again
        FIRST[5],  # the same bytes without a Message-ID again
        customer_mail(sender="carol@example.net", subject="still down",
                      in_reply_to=message_id_of(FIRST[2])),
        customer_mail(sender="dave@example.com", subject="Brand new",
                      in_reply_to=GHOST),
        customer_mail(sender="dave@example.com", subject="Re: Brand new",
                      references=[GHOST]),
        # Greta, in Cc, answers our acknowledgement: a confirmed participant's reply.
        customer_mail(sender="greta@example.com", subject="Re: login",
                      in_reply_to=box.ack_id(login)),
        # Hank, whom nobody put in Cc, replies to Carol's mail: he joins her ticket's
        # conversation unconfirmed (no acknowledgement, no change to the ticket).
        customer_mail(sender="hank@example.com", subject="Re: Server down",
                      in_reply_to=message_id_of(FIRST[2])),
    ]


def third_batch(box: Mailbox) -> list[bytes]:
    """Who wrote into a ticket in an earlier batch takes part in it (read ahead)."""
    login = box.tickets()[0]
    return [customer_mail(sender="greta@example.com", subject=f"[{login.ref}] and another"),
            customer_mail(sender="hank@example.com", subject="Re: Server down again",
                          in_reply_to=message_id_of(FIRST[2])),
            customer_mail(sender="dave@example.com", subject="Re: again", in_reply_to=GHOST)]


def snapshot(app: App) -> dict[str, Any]:
    """What maild decided, without what differs by chance (ids, references, secrets)."""
    with app.sessions() as s:
        tickets = list(s.scalars(select(Ticket).order_by(Ticket.id)))
        index = {t.id: i for i, t in enumerate(tickets)}
        return {
            "tickets": [(t.requester, t.subject, t.status, t.level, t.priority,
                         index.get(t.linked_ticket_id or 0), t.sla_first_response_due)
                        for t in tickets],
            "messages": [(index[m.ticket_id], m.direction, m.from_addr, m.to_addrs)
                         for m in s.scalars(select(Message).order_by(Message.id))],
            "outbox": [(index[o.ticket_id or 0], o.kind, o.rcpt_to, o.status)
                       for o in s.scalars(select(Outbox).order_by(Outbox.id))],
            "events": sorted((index[e.ticket_id], e.kind, _stable(e.data))
                             for e in s.scalars(select(Event).order_by(Event.id))),
            "suppressed": sorted(s.scalars(select(Suppression.address))),
        }


def _stable(data: dict[str, Any]) -> str:
    """An event's data without the values that are random by design."""
    return repr(sorted((k, v) for k, v in data.items()
                       if k not in ("message_id", "matched", "linked_ticket")))


def test_a_batch_decides_what_single_messages_decide(
    two_apps: tuple[App, App], monkeypatch: pytest.MonkeyPatch
) -> None:
    single = Mailbox(two_apps[0], one_at_a_time=True)
    batched = Mailbox(two_apps[1], one_at_a_time=False)
    for box in (batched, single):
        box.deliver(first_batch())
        box.deliver(second_batch(box))
        box.deliver(third_batch(box))
        # The single messages go through the direct store.
        monkeypatch.setattr(batch_module, "BatchStore", lambda session, counter, **_: DirectStore(
            session, counter))
    expected = snapshot(single.app)
    assert snapshot(batched.app) == expected
    # And what the sequence was built to show did happen:
    tickets = expected["tickets"]
    assert [t[0] for t in tickets] == [
        "erika@example.com", "bob@example.org", "carol@example.net", "erika@example.com",
        "frank@example.org", "dan@example.com", "eve@example.com", "frank@example.org",
        "erika@example.com", "erika@example.com", "dave@example.com"]
    assert tickets[6][5] == 2  # the stranger's ticket links to carol's
    acks = [(t, to) for t, kind, to, _ in expected["outbox"] if kind == "acknowledgement"]
    assert acks == [(0, "erika@example.com"), (1, "bob@example.org"),
                    (2, "carol@example.net"), (3, "erika@example.com"),
                    (4, "frank@example.org"), (5, "dan@example.com"),
                    (6, "eve@example.com"), (8, "erika@example.com"),
                    (10, "dave@example.com")]
    suppressed = [(t, kind) for t, kind, _ in expected["events"]
                  if kind == "autoreply.suppressed"]
    assert suppressed == [(7, "autoreply.suppressed"), (9, "autoreply.suppressed")]
    assert expected["suppressed"] == ["frank@example.org"]
    inbound = [(t, who) for t, direction, who, _ in expected["messages"]
               if direction == "inbound"]
    assert inbound.count((0, "erika@example.com")) == 3  # the first, by References, by ack
    assert inbound.count((0, "greta@example.com")) == 2  # by ack, then by subject reference
    assert inbound.count((10, "dave@example.com")) == 3  # two by the placeholder
    assert inbound.count((2, "hank@example.com")) == 2  # joined carol's ticket, unconfirmed
    joined = [(t, kind) for t, kind, _ in expected["events"]
              if kind in ("participant.added", "participant.joined")]
    assert joined == [(0, "participant.added"), (2, "participant.joined")]
    assert (1, "bob@example.org") in inbound and (2, "carol@example.net") in inbound


def test_a_ticket_reference_drawn_twice_costs_a_retry_not_the_batch(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """References are random: with enough tickets one is drawn again (six characters of 32:
    among 50,000 tickets, more likely than not). The batch's bulk insert (PostgreSQL: COPY)
    then hits the unique key; the batch is run again, drawing anew, and every message gets
    its ticket."""
    from maild.tickets import service

    app = build(settings_for(tmp_path, db_url=db_url), clock=FixedClock())
    try:
        draws = iter(["T-AAAAAA", "T-AAAAAA"])
        real = service.new_ref
        monkeypatch.setattr(service, "new_ref",
                            lambda prefix: next(draws, None) or real(prefix))
        items = [Fetched(SourceRef("support", "INBOX", 1, uid),
                         customer_mail(subject=f"Question {uid}",
                                       sender=f"c{uid}@example.com"))
                 for uid in range(1, 41)]
        result = app.pipeline.process_batch(items)
        assert len(result.done) == 40 and result.tickets_created == 40 and not result.held
        with app.sessions() as session:
            refs = session.scalars(select(Ticket.ref)).all()
        assert len(refs) == len(set(refs)) == 40
        assert next(draws, None) is None  # both drawn: the first run of the batch collided
    finally:
        app.dispose()


def test_a_message_another_mailbox_committed_meanwhile_costs_a_rerun_of_the_batch(
    pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A customer writes to two of the desk's addresses: two mailbox threads (or daemons)
    hold the same message in batches running at once. The one that commits second finds the
    Message-ID taken when it writes; it runs once more as a batch, whose read-ahead now sees
    the other's row (a duplicate), not message by message with a savepoint each."""
    settings = settings_for(tmp_path, db_url=pg_url)
    app, other = build(settings, clock=FixedClock()), build(settings, clock=FixedClock())
    try:
        both = customer_mail(sender="erika@example.com", subject="Sent to sales and support")
        items = [Fetched(SourceRef("support", "INBOX", 1, 1), both)]
        items += [Fetched(SourceRef("support", "INBOX", 1, uid),
                          customer_mail(subject=f"Question {uid}", sender=f"c{uid}@example.com"))
                  for uid in range(2, 31)]
        real_read_ahead = app.pipeline.read_ahead
        meanwhile: list[batch_module.BatchResult] = []

        def read_ahead(store: TicketStore, group: Any) -> None:
            real_read_ahead(store, group)
            if not meanwhile:  # the sales mailbox commits its copy meanwhile
                meanwhile.append(other.pipeline.process_batch(
                    [Fetched(SourceRef("sales", "INBOX", 1, 1), both)]))

        monkeypatch.setattr(app.pipeline, "read_ahead", read_ahead)
        runs: list[str] = []

        def batched(*args: Any, **kwargs: Any) -> BatchStore:
            runs.append("batch")
            return BatchStore(*args, **kwargs)

        def direct(*args: Any, **kwargs: Any) -> DirectStore:
            runs.append("direct")
            return DirectStore(*args, **kwargs)

        monkeypatch.setattr(batch_module, "BatchStore", batched)
        monkeypatch.setattr(batch_module, "DirectStore", direct)
        result = app.pipeline.process_batch(items)
        assert meanwhile[0].tickets_created == 1
        # The first run, the sales mailbox's batch, the rerun: never message by message.
        assert runs == ["batch", "batch", "batch"]
        assert len(result.done) == 30 and result.tickets_created == 29 and not result.held
        with app.sessions() as session:
            copies = session.scalars(select(Message.ticket_id).where(
                Message.message_id == message_id_of(both).strip("<>"))).all()
        assert len(copies) == 1
    finally:
        app.dispose()
        other.dispose()


@pytest.fixture(params=["direct", "batched"])
def store(request: pytest.FixtureRequest, db_url: str) -> Iterator[TicketStore]:
    """A ticket store of each kind on a fresh database, in an open transaction."""
    engine = db.make_engine(db_url)
    db.upgrade(engine)
    counter = AutomailCounter(SafetySettings(per_recipient=[WindowLimit(window=3600, max=3)],
                                             per_ticket=[WindowLimit(window=3600, max=5)],
                                             total=[WindowLimit(window=3600, max=100)]))
    try:
        with db.make_session_factory(engine)() as session, session.begin():
            yield (DirectStore(session, counter) if request.param == "direct"
                   else BatchStore(session, counter, quarantined=["support/INBOX/1/9"]))
    finally:
        engine.dispose()


def test_every_store_operation_answers_alike(store: TicketStore) -> None:
    """What one store answers, the other does: before and after writing, for what was
    in the database before and for what was added in the same transaction."""
    now = FixedClock().now()
    store.read_ahead(message_ids=["a@x"], refs=["T-AAAAAA"], recipients=["c@x"], now=now)
    ticket = store.insert_ticket(dict(
        ref="T-AAAAAA", subject="s", requester="c@x", requester_name="C", status="new",
        level=1, department=None, priority="normal", language="en", mailbox=None,
        secret="0" * 20, created_at=now, updated_at=now, linked_ticket_id=None, tags=[],
        sla_pauses=[], sla_alerted=[]))
    assert store.ticket(ticket.id) is ticket
    assert store.ticket_id_by_ref("T-AAAAAA") == ticket.id
    assert store.ticket_id_by_ref("T-BBBBBB") is None
    inbound = parse(b"From: C <c@x>\r\nMessage-ID: <a@x>\r\nSubject: s\r\n\r\nfirst\r\n",
                    SourceRef("support", "INBOX", 1, 1))
    no_id = parse(b"From: d@x\r\nSubject: s\r\n\r\nno id\r\n",
                  SourceRef("support", "INBOX", 1, 2))
    for message, sender in ((inbound, "c@x"), (no_id, "d@x")):
        store.add_message(dict(
            ticket_id=ticket.id, direction="inbound", message_id=message.message_id,
            source_key=message.source.key if message.source else None,
            raw_sha256=message.raw_sha256, in_reply_to=None, references=None,
            from_addr=sender, from_name="", to_addrs="", subject="s", date=now,
            body_text=message.body_text, automatic=None, raw=message.raw, created_at=now))
    # Participants: confirmed, unconfirmed, confirmed later, removed; never downgraded.
    assert store.add_participant(ticket.id, "d@x", confirmed=True, by="c@x", at=now)
    assert not store.add_participant(ticket.id, "d@x", confirmed=False, by="d@x", at=now)
    assert store.add_participant(ticket.id, "e@x", confirmed=False, by="e@x", at=now)
    assert store.add_participant(ticket.id, "f@x", confirmed=False, by="f@x", at=now)
    assert store.add_participant(ticket.id, "f@x", confirmed=True, by="anna@x", at=now)
    assert store.add_participant(ticket.id, "g@x", confirmed=True, by="c@x", at=now)
    assert store.remove_participant(ticket.id, "g@x")
    assert not store.remove_participant(ticket.id, "g@x")
    # References: only ids not known yet, as a message or as a reference.
    store.add_references(ticket.id, ["a@x", "ghost@x", "ghost@x"])
    store.add_references(ticket.id, ["ghost@x", "ghost2@x"])
    out = {"ticket_id": ticket.id, "message_row_id": None, "message_id": "ack@x",
           "kind": "acknowledgement", "mail_from": "s@x", "rcpt_to": "c@x", "raw": b"x",
           "status": "pending", "attempts": 0, "next_attempt_at": now, "last_error": None,
           "created_at": now, "sent_at": None}
    message = {"ticket_id": ticket.id, "direction": "outbound", "message_id": "ack@x",
               "source_key": None, "raw_sha256": None, "in_reply_to": "a@x",
               "references": "a@x", "from_addr": "s@x", "from_name": "S", "to_addrs": "c@x",
               "subject": "s", "date": now, "body_text": "ack", "automatic": None,
               "raw": None, "created_at": now}
    before = store.automatic_sent("c@x", ticket.id, now)
    store.add_outgoing(message, out, automatic=True)
    store.add_event(ticket.id, "created", now, {"via": "email"})
    store.suppress("bounced@x", now + timedelta(days=7), "550 no such user", now)
    for written in (False, True):
        assert store.tickets_for_message_ids(["a@x", "ack@x", "zz@x"]) == {
            "a@x": ticket.id, "ack@x": ticket.id}
        assert store.delivered_before(no_id)
        assert not store.delivered_before(parse(b"From: e@x\r\n\r\nother\r\n", None))
        assert store.participants(ticket.id) == {"c@x", "d@x", "f@x"}
        assert store.participant_list(ticket.id) == {"d@x": True, "e@x": False, "f@x": True}
        assert store.tickets_for_references(["ghost@x", "a@x", "zz@x", "ghost2@x"]) == {
            "ghost@x": ticket.id, "ghost2@x": ticket.id}
        assert store.first_customer_text(ticket.id) == "first"
        assert store.quarantined_before("support/INBOX/1/9") is None
        sent = store.automatic_sent("c@x", ticket.id, now)
        assert sent.per_recipient == tuple(c + 1 for c in before.per_recipient) == (1,)
        assert sent.per_ticket == (1,) and sent.total == (1,)
        assert store.automatic_sent("c@x", None, now).per_ticket is None
        assert store.suppression("bounced@x") == (now + timedelta(days=7), "550 no such user")
        assert store.suppression("c@x") is None
        if not written:
            store.write()
            store.read_ahead(message_ids=["ghost@x", "a@x"], refs=[], recipients=[], now=now)
    assert store.customer_thread(ticket.id) == ("a@x", ("a@x", "ack@x"))
    session = store.session
    assert session.scalar(select(Outbox.message_row_id)) is not None
    assert [e.kind for e in session.scalars(select(Event))] == ["created"]
