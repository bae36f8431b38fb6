"""Engines, sessions and migrations.

SQLite is the embedded default: WAL, a busy timeout, and `BEGIN IMMEDIATE` so that two
processes never deadlock upgrading a read lock. PostgreSQL is the scale-out path.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_SYNCHRONOUS = "FULL"


def make_engine(url: str, *, reader: bool = False, **kwargs: Any) -> Engine:
    """An engine for `url`, with the SQLite settings maild relies on.

    `reader`: its transactions only read (the report), so on SQLite they begin deferred and
    never take the write lock: in WAL mode a reader does not stand in the daemon's way.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # Let SQLAlchemy, not pysqlite, issue BEGIN: savepoints then work.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # FULL: the WAL is synced to disk at every commit. With NORMAL a commit could be
            # undone by a power cut or a kernel crash, and nearly every commit of maild is
            # followed by an act outside the database that cannot be taken back: the IMAP
            # move of a committed batch (its messages would be in Processed and in no
            # ticket) and the next SMTP message after an outbox row is marked sent (it
            # would be sent again). One sync a commit; README "Storage" has the cost.
            cur.execute(f"PRAGMA synchronous={SQLITE_SYNCHRONOUS}")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            # The WAL is copied back into the database when it reaches this many pages (40
            # MB; SQLite's default is 1,000): a page that a backlog's batches change again
            # and again (indexes) is copied back once, not once every few batches.
            cur.execute("PRAGMA wal_autocheckpoint=10000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN" if reader else "BEGIN IMMEDIATE")

        return engine
    engine = create_engine(url, pool_pre_ping=True, **kwargs)

    @event.listens_for(engine.pool, "invalidate")
    def _on_lost(_conn: Any, _record: Any, exc: BaseException | None) -> None:
        # A connection the server ended (a restart, pg_terminate_backend, the network):
        # the pool opens a new one; operators see that it happened. (Imported here: the
        # read-only commands open engines too, and structlog costs them 0.1 s to import.)
        import structlog

        structlog.get_logger("maild.db").warning(
            "db.connection_lost", error=str(exc).splitlines()[0] if exc else None)

    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    # Imported here: the read-only commands read through Core (maild/readonly.py).
    from sqlalchemy.orm import sessionmaker

    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine) -> Config:
    # Imported here: the read-only commands open a database without migrating it, and
    # alembic's import alone costs them a sixth of their time.
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Apply every pending migration (idempotent)."""
    from alembic import command

    command.upgrade(alembic_config(engine), "head")


def migrate(url: str) -> None:
    """Bring the database at `url` up to date (`maild db upgrade`; a read-only command that
    found it older than this maild)."""
    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()


@contextmanager
def opened(url: str) -> Iterator[sessionmaker[Session]]:
    """A migrated database for one command: sessions while inside, the engine disposed after."""
    engine = make_engine(url)
    try:
        upgrade(engine)
        yield make_session_factory(engine)
    finally:
        engine.dispose()


def db_error(exc: SQLAlchemyError) -> str:
    """The driver's own message (SQLAlchemy's wrapper adds hints and SQL around it)."""
    cause = getattr(exc, "orig", None) or exc
    return (str(cause).strip().splitlines() or [type(cause).__name__])[0]
