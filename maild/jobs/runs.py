"""The `job_runs` table: who ran which job for which due time."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from maild.store.models import JobRun


@dataclass(frozen=True)
class Runner:
    """This daemon, as it signs its runs."""

    host: str
    pid: int

    @classmethod
    def this_process(cls) -> Runner:
        return cls(socket.gethostname(), os.getpid())


def claim(session: Session, job: str, key: str, at: datetime, runner: Runner) -> bool:
    """Claim `job` for `key` in the session's transaction; False when it was claimed before
    (by this daemon or another: the unique key decides). The claim stands or falls with the
    transaction, so a run that fails is tried again."""
    row = {"job": job, "key": key[:200], "run_at": at, "host": runner.host[:255],
           "pid": runner.pid}
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(JobRun).values(row).on_conflict_do_nothing(
        index_elements=["job", "key"]).returning(JobRun.id)
    return session.execute(stmt).first() is not None


@dataclass(frozen=True)
class LastRun:
    job: str
    key: str
    run_at: datetime
    host: str
    pid: int


def last_runs(session: Session) -> list[LastRun]:
    """Each job's latest run (for `maild status`)."""
    latest = (select(JobRun.job, func.max(JobRun.run_at).label("at"))
              .group_by(JobRun.job).subquery())
    rows = session.execute(
        select(JobRun.job, JobRun.key, JobRun.run_at, JobRun.host, JobRun.pid)
        .join(latest, (latest.c.job == JobRun.job) & (latest.c.at == JobRun.run_at))
        .order_by(JobRun.job, JobRun.id.desc()))
    seen: dict[str, LastRun] = {}
    for job, key, at, host, pid in rows:
        seen.setdefault(job, LastRun(job, key, at, host, pid))
    return list(seen.values())
