"""The report by mail (`reports:` in the configuration): each schedule a scheduled job
that mails the past full day, week or month to its recipients, once per period across
restarts and daemons (the job's due key, claimed in `job_runs`).

The mail is multipart/alternative: the text table of `maild report`, and an HTML part
with the same table and the charts as inline PNG images (`cid:`): mail clients do not
show SVG. matplotlib is imported only when a report is drawn, not by the daemon at start.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from maild.jobs import schedule
from maild.outbound.render import TicketView
from maild.reports import figures, reader
from maild.reports.period import Period, local_day, resolve
from maild.reports.render import to_text
from maild.settings import ReportSchedule
from maild.sla.config import SlaConfig
from maild.store.ticketstore import TicketStore
from maild.tickets.service import TicketService
from maild.tickets.staffmail import StaffMail

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")


def due(plan: ReportSchedule, now: datetime, tz: ZoneInfo) -> str | None:
    """The day (ISO) of the latest sending at or before `now`."""
    if plan.every == "day":
        return schedule.daily(now, plan.at, tz)
    if plan.every == "week":
        return schedule.weekly(now, WEEKDAYS.index(str(plan.on or "monday")), plan.at, tz)
    return schedule.monthly(now, int(plan.on or 1), plan.at, tz)


def period_for(plan: ReportSchedule, key: str, tz: ZoneInfo) -> Period:
    """The last full day, week or month before the sending day."""
    sent = datetime.combine(date.fromisoformat(key), plan.at, tzinfo=tz)
    return resolve(sent, tz, unit=plan.every)


def mail_html(title: str, text: str, charts: dict[str, str]) -> str:
    """The table as text (it is one), each chart an inline image by its Content-ID."""
    images = "".join(
        f'<p><img src="cid:{cid}" alt="{html.escape(alt)}" width="640"></p>'
        for cid, alt in charts.items())
    return (f"<!DOCTYPE html><html><body><h2>{html.escape(title)}</h2>"
            f'<pre style="font-size: 12px">{html.escape(text)}</pre>{images}</body></html>')


@dataclass
class ReportJob:
    tickets: TicketService
    plan: ReportSchedule
    timezone: ZoneInfo
    sla: Callable[[], SlaConfig]  # the SLA policies now (a reload swaps them)

    @property
    def name(self) -> str:
        return f"report.{self.plan.name}"

    def due(self, now: datetime) -> str | None:
        return due(self.plan, now, self.timezone)

    def run(self, store: TicketStore, key: str, now: datetime) -> int:
        from maild.reports.charts import CHARTS, draw

        period = period_for(self.plan, key, self.timezone)
        report = figures.compute(reader.read(store.session, period),
                                 figures.Policies.of(self.sla()))
        text = to_text(report, self.plan.by)
        first, last = local_day(period.start, period.tz), figures.last_day(period)
        span = first.isoformat() + ("" if last == first else f" to {last.isoformat()}")
        domain = self.tickets.outgoing.support.address.rpartition("@")[2]
        pngs = draw(report, "png")
        cids = {name: f"{name}.{key}@{domain}" for name in pngs}
        titles = {name: title for name, title, _paint in CHARTS}
        page = mail_html(f"Support report {span}", text,
                         {cids[n]: titles[n] for n in pngs})
        for to in self.plan.to:
            self.tickets.mail_staff(store, StaffMail(
                to=to, template="report", headline=span, text=text,
                about=TicketView(ref="", subject=self.plan.name, level=0, department=None,
                                 priority="-", status="-"),
                author="maild", html=page,
                images=tuple((cids[n], data) for n, data in pngs.items())))
        return len(self.plan.to)
