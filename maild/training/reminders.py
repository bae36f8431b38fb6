"""A draft waiting too long reminds the mentor, later the mentor's team: a scheduled job
(maild/jobs/) that claims each reminder of each draft once (`runs.claim`), so restarts
and several daemons never send one twice."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from maild.jobs import schedule
from maild.jobs.runner import Job
from maild.jobs.runs import Runner, claim
from maild.settings import TrainingSettings
from maild.store.models import Draft
from maild.store.ticketstore import TicketStore
from maild.tickets.service import TicketService
from maild.tickets.times import duration
from maild.training.drafts import Drafts, quoted
from maild.training.mentor import reminders

CHECK_EVERY = 60.0  # seconds between looks for drafts waiting too long


@dataclass
class DraftReminders:
    drafts: Drafts
    settings: TrainingSettings
    runner: Runner
    name: str = "training.remind"

    def due(self, now: datetime) -> str | None:
        return schedule.every(now, CHECK_EVERY)

    def run(self, store: TicketStore, key: str, now: datetime) -> int:
        first = now - timedelta(seconds=self.settings.remind_after)
        then = now - timedelta(seconds=self.settings.team_after)
        session = store.session
        waiting = session.scalars(select(Draft).where(
            Draft.status == "waiting", Draft.created_at <= first).order_by(Draft.id)).all()
        done = 0
        service = self.drafts.tickets
        org = service.organisation()
        for draft in waiting:
            whom = reminders(draft.mentor, org)
            steps = [("mentor", whom.first)]
            if draft.created_at <= then:
                steps.append(("team", whom.then))
            for step, team in steps:
                if not claim(session, self.name, f"{step}-{draft.id}", now, self.runner):
                    continue
                ticket = store.ticket(draft.ticket_id)
                since = duration(now - draft.created_at)
                service.notify(
                    store, ticket, team, template="review",
                    headline=f"Reminder: draft by {draft.author_name} has waited "
                             f"{since} for review",
                    text=f"{draft.author_name}'s draft (not sent; the customer is waiting):"
                         f"\n{quoted(draft.text)}",
                    author=f"{draft.author_name} <{draft.author}>",
                    reply_to=self.drafts.review_address(str(draft.id)))
                service.event(store, ticket, "draft.reminded", draft=draft.id, step=step,
                              to=team)
                done += 1
        return done


def training_jobs(tickets: TicketService, settings: TrainingSettings) -> list[Job]:
    """The training's scheduled jobs, for `App.jobs`."""
    return [DraftReminders(Drafts(tickets), settings, Runner.this_process())]
