"""The daily digest: at `digest.at` on the organisation's business days, each agent gets
their queue and each team its unassigned tickets, in one mail each, claimed per recipient
and day (`runs.claim`): once across restarts and daemons."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from sqlalchemy import select

from maild.digest.lines import listing
from maild.digest.queue import Queues, as_html
from maild.jobs import schedule
from maild.jobs.runs import Runner, claim
from maild.lifecycle.days import is_business_day
from maild.outbound.render import TicketView
from maild.settings import DigestSettings
from maild.store.models import Draft, Event, Ticket
from maild.store.ticketstore import TicketStore
from maild.tickets.staffmail import StaffMail
from maild.training.drafts import Drafts

AGENT, TEAM = "digest.agent", "digest.team"


@dataclass
class DigestJob:
    queues: Queues
    settings: DigestSettings
    runner: Runner
    name: str = "digest"

    def due(self, now: datetime) -> str | None:
        if self.settings.at is None:
            return None
        cal = self.queues.calendar()
        return schedule.daily(now, self.settings.at, cal.tz,
                              lambda day: is_business_day(cal, day))

    def run(self, store: TicketStore, key: str, now: datetime) -> int:
        day = date.fromisoformat(key)
        since = self._previous(day)
        org, done = self.queues.tickets.organisation(), 0
        for agent in sorted(org.agents.values(), key=lambda a: a.address):
            if claim(store.session, AGENT, f"{key}:{agent.address}", now, self.runner):
                done += self._agent(store, agent.address, day, since, now)
        if self.settings.teams:
            names = [*(f"level{n}" for n, info in sorted(org.levels.items()) if info.team),
                     *(name for name, info in sorted(org.departments.items()) if info.team)]
            for name in names:
                if claim(store.session, TEAM, f"{key}:{name}", now, self.runner):
                    done += self._team(store, name, day, now)
        return done

    def _previous(self, day: date) -> datetime:
        """When the previous digest was due: what was reopened since then is news."""
        cal = self.queues.calendar()
        assert self.settings.at is not None  # due() said so
        before = day - timedelta(days=1)
        for _ in range(schedule.LOOKBACK_DAYS):
            if is_business_day(cal, before):
                break
            before -= timedelta(days=1)
        return datetime.combine(before, self.settings.at, tzinfo=cal.tz)

    def _agent(self, store: TicketStore, address: str, day: date, since: datetime,
               now: datetime) -> int:
        q = self.queues
        mine = q.mine(store, address)
        drafts = list(store.session.scalars(select(Draft).where(
            Draft.status == "waiting", Draft.mentor == address).order_by(Draft.created_at)))
        if not (mine or drafts or self.settings.empty):
            return 0
        language = q.tickets.staff_language
        extra = {"drafts": [self._draft(store, d, now) for d in drafts],
                 "reopened": self._reopened(store, mine, since)}
        text = listing(q.lines(store, mine, now), language, extra)
        self._send(store, address, day, len(mine), text, q.queue_address(address))
        return 1

    def _team(self, store: TicketStore, name: str, day: date, now: datetime) -> int:
        q = self.queues
        address = q.tickets.organisation().team_address(name)
        waiting = q.unassigned(store, [name])
        if address is None or not (waiting or self.settings.empty):
            return 0
        text = listing(q.lines(store, waiting, now), q.tickets.staff_language)
        self._send(store, address, day, len(waiting), text, None)
        return 1

    def _draft(self, store: TicketStore, draft: Draft, now: datetime) -> str:
        ticket = store.ticket(draft.ticket_id)
        waited = int((now - draft.created_at).total_seconds() // 3600)
        review = Drafts(self.queues.tickets).review_address(str(draft.id))
        return (f"{ticket.ref}  {ticket.subject}  ({draft.author_name}, {waited} h)\n"
                f"      #approve / #reject: {review}")

    @staticmethod
    def _reopened(store: TicketStore, tickets: list[Ticket], since: datetime) -> list[str]:
        ids = {t.id: t for t in tickets}
        if not ids:
            return []
        found = store.session.scalars(select(Event).where(
            Event.ticket_id.in_(ids), Event.kind == "status.changed", Event.at >= since)
            .order_by(Event.id))
        again = {e.ticket_id for e in found
                 if e.data.get("old") in ("resolved", "closed") and e.data.get("new") == "open"}
        return [f"{ids[i].ref}  {ids[i].subject}" for i in sorted(again)]

    def _send(self, store: TicketStore, to: str, day: date, count: int, text: str,
              reply_to: str | None) -> None:
        self.queues.tickets.mail_staff(store, StaffMail(
            to=to, template="digest", headline=day.isoformat(), text=text,
            about=TicketView(ref="", subject=str(count), level=0, department=None,
                             priority="-", status="-"),
            reply_to=reply_to, author="maild", html=as_html(text)))
