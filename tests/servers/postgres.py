"""Fresh PostgreSQL databases for tests, created and dropped around each test."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy.engine import URL, make_url

ADMIN_DSN_ENV = "MAILD_TEST_PG_DSN"
DEFAULT_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL could not be reached or refused to create a database."""


class PgDatabase:
    """A new, empty database created through the admin DSN (``$MAILD_TEST_PG_DSN``,
    default ``postgresql://postgres@127.0.0.1:5432/test``); ``drop()`` removes it."""

    def __init__(self, name: str, admin_dsn: str) -> None:
        self.name = name
        self.admin_dsn = admin_dsn
        params = conninfo_to_dict(admin_dsn)
        port = params.get("port")
        self.url = URL.create(
            "postgresql+psycopg",
            username=_str_or_none(params.get("user")),
            password=_str_or_none(params.get("password")),
            host=_str_or_none(params.get("host")),
            port=int(port) if port else None,
            database=name,
        ).render_as_string(hide_password=False)
        """SQLAlchemy URL, e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/maild_test_...``"""

    @classmethod
    def create(cls, admin_dsn: str | None = None) -> PgDatabase:
        dsn = admin_dsn or os.environ.get(ADMIN_DSN_ENV) or DEFAULT_ADMIN_DSN
        name = f"maild_test_{secrets.token_hex(6)}"
        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.Error as exc:
            raise PostgresUnavailable(
                f"PostgreSQL is needed for this test but {dsn!r} failed: {exc}".strip()
                + f"\n(start PostgreSQL on 127.0.0.1:5432 with a database 'test' that user"
                f" 'postgres' can reach, or set ${ADMIN_DSN_ENV})"
            ) from exc
        return cls(name, dsn)

    def drop(self) -> None:
        """Drop the database, ending any connection a test left open."""
        with psycopg.connect(self.admin_dsn, autocommit=True, connect_timeout=10) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(self.name))
            )


def _str_or_none(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


@contextlib.contextmanager
def outage(url: str, admin_dsn: str | None = None) -> Iterator[int]:
    """The database at SQLAlchemy `url` cut off while inside: every live connection to it
    is terminated (`pg_terminate_backend`) and new ones are refused (`ALLOW_CONNECTIONS
    false`) until the block ends. Yields how many connections were terminated."""
    dsn = admin_dsn or os.environ.get(ADMIN_DSN_ENV) or DEFAULT_ADMIN_DSN
    name = make_url(url).database
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        database = sql.Identifier(name or "")
        conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(database))
        try:
            row = conn.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = %s AND pid <> pg_backend_pid()", [name]).fetchone()
            yield int(row[0]) if row else 0
        finally:
            conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true")
                         .format(database))
