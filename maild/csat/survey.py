"""The survey job: a resolved ticket's customer is asked once, `csat.delay` after the
resolution, at most once per `csat.per_customer_days` (the job's every run picks up what
has come due; each ticket is claimed once, across daemons)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from maild.csat.desk import Satisfaction
from maild.jobs import schedule
from maild.jobs.runs import Runner, claim
from maild.store.models import Outbox, Ticket
from maild.store.ticketstore import TicketStore

EVERY = 60.0  # seconds: how late after its due time a survey may go
LOOKBACK = timedelta(days=7)  # resolutions older than the delay by more are not surveyed


@dataclass
class SurveyJob:
    satisfaction: Satisfaction
    runner: Runner
    name: str = "csat.surveys"

    def due(self, now: datetime) -> str | None:
        return schedule.every(now, EVERY) if self.satisfaction.settings.enabled else None

    def run(self, store: TicketStore, key: str, now: datetime) -> int:
        settings = self.satisfaction.settings
        until = now - settings.delay
        session = store.session
        tickets = list(session.scalars(
            select(Ticket).where(Ticket.status.in_(("resolved", "closed")),
                                 Ticket.resolved_at <= until,
                                 Ticket.resolved_at > until - LOOKBACK)
            .order_by(Ticket.resolved_at)))
        sent = 0
        for ticket in tickets:
            if not claim(session, "csat.survey", str(ticket.id), now, self.runner):
                continue  # asked (or decided against) before
            reason = self.satisfaction.why_not(store, ticket) or self._throttled(
                store, ticket, now)
            if reason:
                self.satisfaction.tickets.record(store, ticket, "csat.survey_skipped",
                                                 reason=reason)
                continue
            sent += self.satisfaction.survey(store, ticket)
        return sent

    def _throttled(self, store: TicketStore, ticket: Ticket, now: datetime) -> str | None:
        days = self.satisfaction.settings.per_customer_days
        store.write()  # surveys queued earlier in this run count
        recent = store.session.scalar(select(Outbox.id).where(
            Outbox.rcpt_to == ticket.requester, Outbox.kind == "survey",
            Outbox.created_at > now - timedelta(days=days)).limit(1))
        return f"surveyed within {days:g} days" if recent is not None else None
