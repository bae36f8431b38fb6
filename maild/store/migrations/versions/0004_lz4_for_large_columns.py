"""PostgreSQL: compress the large columns (raw messages, texts) with lz4

A message's raw bytes, its text and every composed outbound message are kept, and
PostgreSQL compresses values over about 2 KB before it stores them. Its default, pglz, cost
the server more time than maild spent writing the rows: with lz4 (PostgreSQL 14 and newer,
where the server was built with it, as Debian's is) a backlog is ingested about a tenth
faster, for nearly the same space. Values already stored keep their compression; where lz4
is missing nothing changes. SQLite compresses nothing: nothing to do there.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

COLUMNS = (("messages", "raw"), ("messages", "body_text"), ("outbox", "raw"),
           ("quarantine", "raw"))


def _set(method: str) -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    lz4 = bind.execute(sa.text(
        "SELECT 'lz4' = ANY(enumvals) FROM pg_settings "
        "WHERE name = 'default_toast_compression'")).scalar()
    if not lz4:
        return
    for table, column in COLUMNS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET COMPRESSION {method}")


def upgrade() -> None:
    _set("lz4")


def downgrade() -> None:
    _set("default")
