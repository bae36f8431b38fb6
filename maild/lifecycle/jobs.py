"""The lifecycle job (every minute): reminders to customers who owe an answer, resolution
when none comes, and closing of tickets resolved long enough.

Each action is claimed per ticket and cycle (`runs.claim`): the key holds the instant the
ticket entered its state, so a ticket set to pending again later gets a fresh reminder,
and nothing happens twice across restarts and daemons. A customer's reply reopens the
ticket (TicketService.customer_wrote), which takes it out of this job's sight: that is the
cancellation. An automatic reply (an out-of-office) reopens nothing, so it cancels nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from maild.businesstime.calendar import BusinessCalendar
from maild.jobs import schedule
from maild.jobs.runs import Runner, claim
from maild.lifecycle.days import after_business_days
from maild.settings import TicketSettings
from maild.store.models import JobRun, Ticket
from maild.store.ticketstore import TicketStore
from maild.tickets.service import TicketService

EVERY = 60.0  # seconds: how late after its due time an action may come
REMIND, RESOLVE, CLOSE = "lifecycle.remind", "lifecycle.resolve", "lifecycle.close"


def waiting_since(ticket: Ticket) -> datetime:
    """When the ticket began to wait for the customer: the start of its running SLA pause
    (set with the status), else its last change."""
    pauses = ticket.sla_pauses or []
    if pauses and pauses[-1][1] is None and pauses[-1][0]:
        return datetime.fromisoformat(pauses[-1][0])
    return ticket.updated_at


@dataclass
class LifecycleJob:
    tickets: TicketService
    settings: TicketSettings
    calendar: Callable[[], BusinessCalendar]  # the organisation's (the SLA file's first)
    runner: Runner
    name: str = "lifecycle"

    def due(self, now: datetime) -> str | None:
        s = self.settings
        active = s.remind_after or s.close_after_days
        return schedule.every(now, EVERY) if active else None

    def run(self, store: TicketStore, key: str, now: datetime) -> int:
        done = 0
        if self.settings.remind_after:
            done += self._waiting(store, now)
        if self.settings.close_after_days:
            done += self._close(store, now)
        return done

    def _waiting(self, store: TicketStore, now: datetime) -> int:
        session, cal, done = store.session, self.calendar(), 0
        waiting = session.scalars(select(Ticket).where(Ticket.status == "waiting_customer")
                                  .order_by(Ticket.id)).all()
        for ticket in waiting:
            since = waiting_since(ticket)
            cycle = f"{ticket.id}@{since.isoformat()}"
            if now >= after_business_days(cal, since, self.settings.remind_after) and claim(
                    session, REMIND, cycle, now, self.runner):
                done += self._remind(store, ticket, since)
                continue  # the resolution is counted from the reminder
            if not self.settings.resolve_after:
                continue
            reminded = session.scalar(select(JobRun.run_at).where(
                JobRun.job == REMIND, JobRun.key == cycle))
            if reminded is None or now < after_business_days(
                    cal, reminded, self.settings.resolve_after):
                continue
            if claim(session, RESOLVE, cycle, now, self.runner):
                done += self._resolve(store, ticket, since)
        return done

    def _remind(self, store: TicketStore, ticket: Ticket, since: datetime) -> int:
        blocked = self.tickets.inform_customer(
            store, ticket, template="reminder", headline="", text="", kind="reminder")
        self.tickets.record(store, ticket, "lifecycle.reminded", waiting_since=since.isoformat(),
                            sent=blocked is None, **({"reason": blocked} if blocked else {}))
        return 1

    def _resolve(self, store: TicketStore, ticket: Ticket, since: datetime) -> int:
        blocked = self.tickets.inform_customer(
            store, ticket, template="auto_resolved", headline="", text="",
            kind="auto_resolved")
        self.tickets.set_status(store, ticket, "resolved", "no answer from the customer",
                                by="maild")
        self.tickets.record(store, ticket, "lifecycle.resolved", waiting_since=since.isoformat(),
                            sent=blocked is None, **({"reason": blocked} if blocked else {}))
        return 1

    def _close(self, store: TicketStore, now: datetime) -> int:
        session, done = store.session, 0
        until = now - timedelta(days=self.settings.close_after_days)
        resolved = session.scalars(select(Ticket).where(
            Ticket.status == "resolved", Ticket.resolved_at <= until)
            .order_by(Ticket.resolved_at)).all()
        for ticket in resolved:
            assert ticket.resolved_at is not None
            if not claim(session, CLOSE, f"{ticket.id}@{ticket.resolved_at.isoformat()}",
                         now, self.runner):
                continue
            self.tickets.set_status(
                store, ticket, "closed",
                f"resolved for {self.settings.close_after_days:g} days", by="maild")
            self.tickets.record(store, ticket, "lifecycle.closed")
            done += 1
        return done
