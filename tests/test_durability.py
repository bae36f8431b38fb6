"""A commit followed by an act outside the database is durable before the act.

The IMAP move of a committed batch cannot be taken back: should a power cut undo the commit
after the move, the batch's messages would sit in Processed and in no ticket. So the
connection that commits a batch must sync it to disk on commit: on SQLite
`synchronous=FULL` (2), on PostgreSQL `synchronous_commit=on`. The test reads the setting
on the connection itself, at the moment of each commit, and orders the commits against the
moves maild makes (`ImapSource.acknowledge`, observed, not replaced).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from maild import daemon
from maild.app import build
from maild.clock import FixedClock
from maild.fetch.imap import ImapSource
from tests.kit import customer_mail, settings_for
from tests.servers.dovecot import MailUser


def durability_of(dbapi_conn: Any, dialect: str) -> str:
    """The setting in effect on this DB-API connection (read on it, without events)."""
    cursor = dbapi_conn.cursor()
    try:
        if dialect == "sqlite":
            cursor.execute("PRAGMA synchronous")
        else:
            cursor.execute("SHOW synchronous_commit")
        return str(cursor.fetchone()[0])
    finally:
        cursor.close()


def test_the_commit_before_an_imap_move_is_synced_to_disk(
    tmp_path: Path, mail_user: MailUser, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(tmp_path, db_url=db_url, imap=mail_user.imap_config(),
                            mailbox={"batch_size": 5})
    app = build(settings, clock=FixedClock())
    dialect = app.engine.dialect.name
    timeline: list[tuple[str, str]] = []

    @event.listens_for(app.engine, "commit")
    def _on_commit(conn: Any) -> None:
        timeline.append(("commit", durability_of(conn.connection.dbapi_connection, dialect)))

    acknowledge = ImapSource.acknowledge

    def observed(self: ImapSource, uids: Sequence[int], folder: str, *,
                 wait: bool = True) -> None:
        if uids:
            timeline.append(("move", folder))
        acknowledge(self, uids, folder, wait=wait)

    monkeypatch.setattr(ImapSource, "acknowledge", observed)
    try:
        mail_user.append_many([customer_mail(sender=f"c{i}@example.com", subject=f"r {i}")
                               for i in range(12)])
        daemon.run_once(app)
    finally:
        app.dispose()
    assert mail_user.count("INBOX") == 0 and mail_user.count("Processed") == 12
    moves = [i for i, (kind, _) in enumerate(timeline) if kind == "move"]
    assert len(moves) == 3  # three batches of at most five, each moved after its commit
    durable = "2" if dialect == "sqlite" else "on"
    for index in moves:
        commits = [value for kind, value in timeline[:index] if kind == "commit"]
        assert commits, "a move before any commit"
        assert commits[-1] == durable, timeline
    assert {value for kind, value in timeline if kind == "commit"} == {durable}
