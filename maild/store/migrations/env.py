"""Alembic environment: maild passes its engine in; there is no alembic.ini."""

from __future__ import annotations

import time
from typing import Any

import structlog
from alembic import context
from sqlalchemy import text

from maild.store.models import Base

log = structlog.get_logger("maild.db")
engine = context.config.attributes["engine"]
started = time.monotonic()


def progress(ctx: Any, step: Any, heads: Any, run_args: Any) -> None:
    """Each migration applied is logged: a long upgrade shows where it is."""
    log.info("db.migration_applied", revision=step.up_revision_id,
             elapsed_seconds=round(time.monotonic() - started, 1))


with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=engine.dialect.name == "sqlite",
        on_version_apply=progress,
    )
    with context.begin_transaction():
        if engine.dialect.name == "postgresql":
            # Daemons starting together on one database migrate one after the other (the
            # lock ends with the transaction); the later ones find nothing left to do.
            connection.execute(text("SELECT pg_advisory_xact_lock(7246150)"))
        context.run_migrations()
    connection.commit()
