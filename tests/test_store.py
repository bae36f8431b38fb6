"""The storage layer's own conversions, held to what SQLAlchemy would do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import DateTime, Engine
from sqlalchemy.dialects import postgresql, sqlite

from maild.store.tables import UtcDateTime

ZONES = st.builds(lambda minutes: timezone(timedelta(minutes=minutes)),
                  st.integers(min_value=-23 * 60, max_value=23 * 60))


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                    timezones=st.just(UTC) | ZONES))
def test_sqlite_text_of_a_datetime_is_sqlalchemys(value: datetime) -> None:
    """UtcDateTime writes SQLite's text in one step: the same text SQLAlchemy's DateTime
    writes for the value in UTC, so old rows and new compare as they should."""
    dialect = sqlite.dialect()
    ours = UtcDateTime().dialect_impl(dialect).bind_processor(dialect)
    theirs = DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert ours is not None and theirs is not None
    text = ours(value)
    assert text == theirs(value.astimezone(UTC).replace(tzinfo=None))
    result = UtcDateTime().dialect_impl(dialect).result_processor(dialect, None)
    assert result is not None and result(text) == value


def test_naive_datetimes_and_none() -> None:
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        process = UtcDateTime().dialect_impl(dialect).bind_processor(dialect)
        assert process is not None and process(None) is None
        with pytest.raises(ValueError, match="naive datetime"):
            process(datetime(2026, 1, 1))


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_batch_inserts_store_what_sqlalchemy_stores(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A batch's rows go in through store/bulk.py (SQLite: the driver's own executemany;
    PostgreSQL: COPY, or one JSON document when a column default is to be filled in):
    every value must be stored exactly as SQLAlchemy's own executemany stores it, bytes,
    datetimes, JSON, defaults and None included."""
    from sqlalchemy import insert, text

    from maild.store import db
    from maild.store.bulk import insert_rows
    from maild.store.models import Event, Message, Outbox, Ticket

    at = datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC)
    ticket = {"id": 1, "ref": "T-AAAAAA", "subject": "s", "requester": "a@example.com",
              "requester_name": "", "status": "new", "level": 1, "department": None,
              "priority": "normal", "language": "de", "mailbox": "support", "secret": "x",
              "assignee": None, "created_at": at, "updated_at": at,
              "first_response_at": None, "resolved_at": None, "closed_at": None,
              "tags": ["ä", "b"], "awaiting_reply_since": None, "sla_policy": "standard",
              "sla_first_response_due": at, "sla_next_response_due": None,
              "sla_resolution_due": at, "sla_next_check_at": at,
              "sla_pauses": [["2026-12-01T10:00:00+00:00", None]], "sla_alerted": [],
              "linked_ticket_id": None}
    message = {"id": 7, "ticket_id": 1, "direction": "inbound", "message_id": "m@x",
               "source_key": None, "raw_sha256": "ab", "in_reply_to": None,
               "references": "r1 r2", "from_addr": "a@example.com", "from_name": "Jörg",
               "to_addrs": "s@example.test", "subject": "Grüße", "date": None,
               "body_text": "Text „mit“ Zeichen\nund \\x Backslash", "automatic": None,
               "raw": b"\x00\xff raw \\x bytes", "created_at": at}
    outbox = {"ticket_id": 1, "message_row_id": 7, "message_id": "o@x", "kind": "notice",
              "mail_from": "s@example.test", "rcpt_to": "a@example.com", "raw": b"raw",
              "status": "pending", "attempts": 0, "next_attempt_at": at, "last_error": None,
              "created_at": at, "sent_at": None}
    event = {"ticket_id": 1, "kind": "created", "at": at,
             "data": {"via": "email", "flags": ["ä", 1, None], "nested": {"x": 1.5}}}
    dumps = []
    for name, ours in (("sqlalchemy", False), ("bulk", True)):
        url = f"sqlite:///{tmp_path / name}.db" if kind == "sqlite" \
            else request.getfixturevalue("pg_url") if ours else _second_pg(request)
        engine = db.make_engine(url)
        db.upgrade(engine)
        with engine.begin() as conn:
            defaulted = {k: v for k, v in event.items() if k != "data"}
            for model, row in ((Ticket, ticket), (Message, message), (Outbox, outbox),
                               (Event, event), (Event, defaulted)):
                if ours:
                    insert_rows(conn, model, [dict(row)])
                else:
                    conn.execute(insert(model), [dict(row)])
        with engine.connect() as conn:
            dumps.append([[tuple(bytes(v) if isinstance(v, memoryview) else v for v in r)
                           for r in conn.execute(text(f"SELECT * FROM {t} ORDER BY id"))]
                          for t in ("tickets", "messages", "outbox", "events")])
        engine.dispose()
    assert dumps[0] == dumps[1]
    assert all(dumps[0])


def _second_pg(request: pytest.FixtureRequest) -> str:
    """Another fresh PostgreSQL database for the same test (dropped after it)."""
    from tests.servers.postgres import PgDatabase

    database = PgDatabase.create()
    request.addfinalizer(database.drop)
    return database.url


def _engine_at(url: str, revision: str) -> Engine:
    """An engine on `url` whose schema is migrated up to `revision` only."""
    from alembic import command

    from maild.store import db

    engine = db.make_engine(url)
    try:
        command.upgrade(db.alembic_config(engine), revision)
    except BaseException:
        engine.dispose()
        raise
    return engine


def test_migration_0002_keeps_the_outbox_and_covers_the_recipient_count(db_url: str) -> None:
    """An outbox written under 0001 keeps its rows; afterwards the per-recipient index
    holds the kind too."""
    from sqlalchemy import inspect, text

    from maild.store import db

    engine = _engine_at(db_url, "0001")
    try:
        at = "2026-12-01 10:00:00"
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO outbox (message_id, kind, mail_from, rcpt_to, raw, status, "
                "attempts, next_attempt_at, created_at) VALUES ('m@x', 'acknowledgement', "
                f"'s@x', 'a@x', :raw, 'pending', 0, '{at}', '{at}')"), {"raw": b"raw"})
        db.upgrade(engine)
        indexes = {i["name"]: i["column_names"] for i in inspect(engine).get_indexes("outbox")}
        assert indexes["ix_outbox_rcpt"] == ["rcpt_to", "created_at", "kind"]
        with engine.connect() as conn:
            assert conn.execute(text("SELECT message_id FROM outbox")).scalars().all() == ["m@x"]
    finally:
        engine.dispose()


def test_migration_0003_indexes_only_the_hashes_of_messages_without_an_id(
    db_url: str,
) -> None:
    """Messages written under 0002 stay; the hash index then holds only the messages
    without a Message-ID, and a message without one is still recognised by its bytes."""
    from sqlalchemy import text

    from maild.domain import Inbound, SourceRef
    from maild.pipeline.parse import parse
    from maild.settings import SafetySettings
    from maild.store import db
    from maild.store.automail import AutomailCounter
    from maild.store.db import make_session_factory
    from maild.store.ticketstore import DirectStore

    def without_id(n: int) -> Inbound:
        raw = f"From: a@x\r\nSubject: s{n}\r\n\r\nno Message-ID\r\n".encode()
        return parse(raw, SourceRef("support", "INBOX", 1, n))

    again, other = without_id(1), without_id(2)
    engine = _engine_at(db_url, "0002")
    try:
        at = "2026-12-01 10:00:00"
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO tickets (ref, subject, requester, requester_name, status, level, "
                "priority, language, secret, created_at, updated_at, tags, sla_pauses, "
                f"sla_alerted) VALUES ('T-1', 's', 'a@x', '', 'new', 1, 'normal', 'en', 's', "
                f"'{at}', '{at}', '[]', '[]', '[]')"))
            for mid, sha in (("m@x", other.raw_sha256), (None, again.raw_sha256)):
                conn.execute(text(
                    "INSERT INTO messages (ticket_id, direction, message_id, raw_sha256, "
                    "from_addr, from_name, to_addrs, subject, body_text, created_at) VALUES "
                    "(1, 'inbound', :mid, :sha, 'a@x', '', '', 's', '', :at)"),
                    {"mid": mid, "sha": sha, "at": at})
        db.upgrade(engine)
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                definition = conn.execute(text(
                    "SELECT sql FROM sqlite_master WHERE name = 'ix_messages_raw_sha256'"
                )).scalar_one()
            else:
                definition = conn.execute(text(
                    "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_messages_raw_sha256'"
                )).scalar_one()
            assert "message_id IS NULL" in definition
            assert conn.execute(text("SELECT count(*) FROM messages")).scalar_one() == 2
        with make_session_factory(engine)() as session:
            store = DirectStore(session, AutomailCounter(SafetySettings()))
            assert store.delivered_before(again)
            assert not store.delivered_before(other)  # its twin has a Message-ID
    finally:
        engine.dispose()


def test_postgresql_compresses_the_large_columns_with_lz4(pg_url: str) -> None:
    """Raw messages and texts go in with lz4 (far cheaper for the server than pglz);
    the bytes come back as they went in."""
    from sqlalchemy import text

    from maild.store import db

    engine = db.make_engine(pg_url)
    try:
        db.upgrade(engine)
        raw = b"Subject: compressible\r\n\r\n" + b"Guten Tag, die Rechnung ist doppelt.\r\n" * 400
        at = "2026-12-01 10:00:00+00"
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO quarantine (source_key, reason, raw, created_at) "
                "VALUES ('support/INBOX/1/1', 'test', :raw, :at)"), {"raw": raw, "at": at})
        with engine.connect() as conn:
            stored, method = conn.execute(text(
                "SELECT raw, pg_column_compression(raw) FROM quarantine")).one()
            declared = conn.execute(text(
                "SELECT attrelid::regclass::text, attname, attcompression FROM pg_attribute "
                "WHERE attname IN ('raw', 'body_text') AND attrelid IN "
                "('messages'::regclass, 'outbox'::regclass, 'quarantine'::regclass)"
            )).all()
        assert bytes(stored) == raw
        assert method == "lz4"
        assert sorted(declared) == [("messages", "body_text", "l"), ("messages", "raw", "l"),
                                    ("outbox", "raw", "l"), ("quarantine", "raw", "l")]
    finally:
        engine.dispose()


def test_migration_0013_keeps_who_wrote_into_a_ticket_as_a_participant(db_url: str) -> None:
    """Under 0012 whoever wrote into a ticket took part in it: after 0013 they are its
    confirmed participants (the requester is not listed: the ticket names them)."""
    from sqlalchemy import text

    from maild.store import db

    engine = _engine_at(db_url, "0012")
    try:
        at = "2026-12-01 10:00:00"
        with engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO tickets (id, ref, subject, requester, requester_name, status, "
                "level, priority, language, secret, created_at, updated_at, tags, sla_pauses, "
                f"sla_alerted) VALUES (1, 'T-AAAAAA', 's', 'c@x', '', 'open', 1, 'normal', "
                f"'en', 'x', '{at}', '{at}', '[]', '[]', '[]')"))
            for n, (direction, sender) in enumerate([("inbound", "c@x"), ("inbound", "g@x"),
                                                     ("inbound", "g@x"),
                                                     ("outbound", "support@x")]):
                conn.execute(text(
                    "INSERT INTO messages (ticket_id, direction, message_id, from_addr, "
                    "from_name, to_addrs, subject, body_text, created_at) VALUES (1, "
                    f":direction, :mid, :sender, '', '', 's', '', '{at}')"),
                    {"direction": direction, "mid": f"m{n}@x", "sender": sender})
        db.upgrade(engine)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT ticket_id, address, confirmed, added_by "
                                     "FROM participants")).all()
        assert [(t, a, bool(c), b) for t, a, c, b in rows] == [(1, "g@x", True, "migration")]
    finally:
        engine.dispose()


def test_the_tables_are_what_the_migrations_make(db_url: str) -> None:
    """Nothing creates tables from maild/store/tables.py (or the wishes' models): the
    migrations make the schema. Every column, type, NULL-ness, key and index declared must
    be what a migrated database has, or a query built from the declarations (the read-only
    commands', the batch store's) would disagree with the database."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    import maild.wishes.models  # noqa: F401  (its tables join the metadata)
    from maild.store import db, tables

    engine = db.make_engine(db_url)
    try:
        db.upgrade(engine)
        with engine.connect() as conn:
            differences = compare_metadata(MigrationContext.configure(conn), tables.metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_the_mapped_classes_type_every_column_as_the_table_declares_it() -> None:
    """The ORM classes (maild/store/models.py) are mapped onto the tables of
    maild/store/tables.py and annotate each column for the type checker: an annotation that
    says a column is never NULL when the table allows it (or the other way) would mislead
    mypy, so each column must be annotated, with `| None` exactly where it is nullable."""
    import types
    import typing

    from maild.store import models

    for mapper in models.Base.registry.mappers:
        cls, table = mapper.class_, mapper.local_table
        if cls.__module__ != models.__name__:
            continue  # the wishes declare their columns with their annotations
        hints = typing.get_type_hints(cls)
        for column in table.columns:
            assert column.key in hints, f"{cls.__name__}.{column.key} is not annotated"
            [inner] = typing.get_args(hints[column.key])
            optional = isinstance(inner, types.UnionType) and type(None) in inner.__args__
            assert optional == column.nullable, f"{cls.__name__}.{column.key}"
