"""`maild report`: settings in, the report out. Imports only the store, the SLA policies and
the report's own modules (not the daemon's graph); matplotlib only for --html."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from maild.clock import Clock, SystemClock
from maild.reports import figures, reader
from maild.reports.period import Period, resolve
from maild.settings import Settings
from maild.sla.engine import load_sla
from maild.store import db

if TYPE_CHECKING:
    from sqlalchemy import Engine


@dataclass(frozen=True)
class Options:
    start: date | None = None
    to: date | None = None
    period: str | None = None
    by: str = "department"


def policies(settings: Settings) -> figures.Policies:
    return figures.Policies.of(load_sla(settings.sla))


def period_of(settings: Settings, options: Options, clock: Clock) -> Period:
    return resolve(clock.now(), ZoneInfo(settings.timezone), start=options.start,
                   to=options.to, unit=options.period)


def build(settings: Settings, options: Options, clock: Clock | None = None) -> figures.Report:
    period = period_of(settings, options, clock or SystemClock())
    known = policies(settings)
    engine = db.make_engine(settings.database.url, reader=True)
    try:
        if not _at_head(engine):
            with db.opened(settings.database.url):
                pass  # migrated, as every command finds it
        with db.make_session_factory(engine)() as session:
            rows = reader.read(session, period)
    finally:
        engine.dispose()
    return figures.compute(rows, known)


def _at_head(engine: Engine) -> bool:
    """Whether the schema is current, asked without a write transaction (a migration check
    through Alembic's upgrade takes SQLite's write lock even when there is nothing to do)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    heads = set(ScriptDirectory(str(db.MIGRATIONS)).get_heads())
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
        conn.rollback()
    return current == heads


def write_html(report: figures.Report, by: str, path: Path) -> None:
    from maild.reports.html import page

    path.write_text(page(report, by), encoding="utf-8")
