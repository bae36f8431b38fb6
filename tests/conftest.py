"""Shared fixtures: real Dovecot, aiosmtpd and PostgreSQL (see tests/servers/)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers.dovecot import Dovecot, MailUser
from tests.servers.postgres import PgDatabase, PostgresUnavailable
from tests.servers.smtp import SmtpServer


@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    """One plain (no TLS, no STARTTLS) Dovecot for the whole session."""
    with Dovecot() as server:
        yield server


@pytest.fixture(scope="session")
def dovecot_tls() -> Iterator[Dovecot]:
    """A Dovecot with implicit TLS on ``tls_port`` and STARTTLS on ``port`` (``ca_file``)."""
    with Dovecot(tls=True) as server:
        yield server


@pytest.fixture
def mail_user(dovecot: Dovecot) -> MailUser:
    """A fresh user with an empty mailbox on the session Dovecot."""
    dovecot.ensure_running()  # a previous test may have stopped it
    return dovecot.new_user()


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """A plain aiosmtpd that records what it accepts."""
    with SmtpServer() as server:
        yield server


@pytest.fixture
def smtp_server_tls() -> Iterator[SmtpServer]:
    """An aiosmtpd that requires STARTTLS (``ca_file``)."""
    with SmtpServer(tls=True) as server:
        yield server


@pytest.fixture
def pg_url() -> Iterator[str]:
    """SQLAlchemy URL of a fresh PostgreSQL database, dropped after the test.

    Fails (never skips) when PostgreSQL cannot be reached.
    """
    database: PgDatabase | str
    try:
        database = PgDatabase.create()
    except PostgresUnavailable as exc:
        database = str(exc)
    if isinstance(database, str):
        pytest.fail(database, pytrace=False)
    try:
        yield database.url
    finally:
        database.drop()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """SQLAlchemy URL of an SQLite file in the test's temporary directory."""
    return f"sqlite:///{tmp_path / 'maild.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Runs the test once on SQLite and once on PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "pg_url"
    url: str = request.getfixturevalue(name)
    return url
