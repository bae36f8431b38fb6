"""Runs the due scheduled jobs, each due time once (`runs.claim`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from maild.jobs.runs import Runner, claim
from maild.store.ticketstore import TicketStore

log = structlog.get_logger("maild.jobs")


class Job(Protocol):
    """A scheduled job: what is due when, and what to do."""

    @property
    def name(self) -> str: ...

    def due(self, now: datetime) -> str | None:
        """The key of the latest due time at or before `now`, or None (schedule.py)."""

    def run(self, store: TicketStore, key: str, now: datetime) -> int:
        """Do the job for `key` in the store's transaction; how many things it did."""


@dataclass(frozen=True)
class Ran:
    job: str
    key: str
    done: int


def run_due(sessions: sessionmaker[Session], jobs: Sequence[Job], now: datetime,
            store_for: Callable[[Session], TicketStore], runner: Runner) -> list[Ran]:
    """Every job that is due and not yet run for its due time: claimed and run in one
    transaction each. A job that fails is logged and tried again at the next call (its
    claim was rolled back with it); the others go on."""
    ran: list[Ran] = []
    for job in jobs:
        key = job.due(now)
        if key is None:
            continue
        try:
            with sessions() as session, session.begin():
                if not claim(session, job.name, key, now, runner):
                    continue
                store = store_for(session)
                done = job.run(store, key, now)
                store.write()
        except SQLAlchemyError:
            raise  # the database is away: the caller reports it and tries later
        except Exception:
            log.exception("job.failed", job=job.name, key=key)
            continue
        log.info("job.ran", job=job.name, key=key, done=done)
        ran.append(Ran(job.name, key, done))
    return ran
