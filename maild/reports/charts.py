"""The report's charts, drawn by matplotlib's object API (no pyplot, no GUI, no global
figure state): SVG for the HTML page. Text is drawn as paths, so a page needs no font."""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable
from datetime import date

from matplotlib import rc_context
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter, date2num
from matplotlib.figure import Figure

from maild.reports.figures import FIRST_REPLY_BINS, Report

SIZE = (7.5, 3.2)
Chart = tuple[str, str, Callable[[Axes, Report], None]]


def _empty(ax: Axes, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#555")


def _dates(ax: Axes, days: list[date]) -> list[float]:
    """Days as matplotlib's date numbers, and an axis that labels them as dates."""
    locator = AutoDateLocator()  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]
    numbers = [float(date2num(d)) for d in days]  # type: ignore[no-untyped-call]
    if len(numbers) == 1:  # one week: a week either side, not matplotlib's years
        ax.set_xlim(numbers[0] - 7, numbers[0] + 7)
    return numbers


def _volume(ax: Axes, report: Report) -> None:
    days = _dates(ax, [d.day for d in report.days])
    departments = sorted({k for d in report.days for k in d.created_by_department})
    bottom = [0] * len(days)
    for department in departments:
        counts = [d.created_by_department.get(department, 0) for d in report.days]
        ax.bar(days, counts, bottom=bottom, label=department, width=0.8)
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    if departments:
        ax.legend(fontsize=7, loc="upper left")
    else:
        _empty(ax, "no tickets created")
    ax.set_ylabel("tickets created")
    ax.tick_params(axis="x", labelsize=7)


def _first_reply(ax: Axes, report: Report) -> None:
    labels = [f"{a:g}-{b:g}h" for a, b in itertools.pairwise(FIRST_REPLY_BINS)]
    labels.append(f">{FIRST_REPLY_BINS[-1]:g}h")
    ax.bar(labels, report.first_reply_histogram, color="#4477aa")
    if not any(report.first_reply_histogram):
        _empty(ax, "no first replies")
    ax.set_ylabel("tickets")
    ax.tick_params(axis="x", labelsize=7)


def _sla(ax: Axes, report: Report) -> None:
    weeks = _dates(ax, [w.week for w in report.weeks])
    for name, values in (("first response", [w.first_response_met_rate for w in report.weeks]),
                         ("resolution", [w.resolution_met_rate for w in report.weeks])):
        ax.plot(weeks, [v * 100 if v is not None else float("nan") for v in values],
                marker="o", label=name)
    ax.set_ylim(0, 105)
    ax.set_ylabel("% met")
    ax.legend(fontsize=7, loc="lower left")
    if all(w.first_response_met_rate is None and w.resolution_met_rate is None
           for w in report.weeks):
        _empty(ax, "no SLA targets measured")
    ax.tick_params(axis="x", labelsize=7)


def _csat(ax: Axes, report: Report) -> None:
    weeks = _dates(ax, [w.week for w in report.weeks])
    ax.plot(weeks, [w.csat_mean if w.csat_mean is not None else float("nan")
                    for w in report.weeks], marker="o", color="#228833")
    ax.set_ylim(0.5, 5.5)
    ax.set_ylabel("mean rating (1-5)")
    if not any(w.csat_responses for w in report.weeks):
        _empty(ax, "no ratings yet")
    ax.tick_params(axis="x", labelsize=7)


def _backlog(ax: Axes, report: Report) -> None:
    ages = list(report.backlog.by_age)
    ax.bar(ages, [report.backlog.by_age[a] for a in ages], color="#cc6677")
    if not report.backlog.open:
        _empty(ax, "no open tickets")
    ax.set_ylabel("open tickets")


CHARTS: tuple[Chart, ...] = (
    ("volume", "Tickets created per day, by department", _volume),
    ("first-reply", "First reply time distribution", _first_reply),
    ("sla", "SLA targets met per week", _sla),
    ("csat", "Satisfaction trend (weekly mean)", _csat),
    ("backlog", "Backlog at the end of the period, by age", _backlog),
)


def draw(report: Report, fmt: str = "svg") -> dict[str, bytes]:
    """Each chart, by its id, as SVG (or PNG for mail clients, which do not show SVG)."""
    out: dict[str, bytes] = {}
    with rc_context({"svg.fonttype": "path", "font.size": 8}):
        for name, title, paint in CHARTS:
            figure = Figure(figsize=SIZE, layout="constrained")
            ax = figure.add_subplot()
            ax.set_title(title, fontsize=9)
            paint(ax, report)
            buffer = io.BytesIO()
            figure.savefig(buffer, format=fmt, dpi=100)
            out[name] = buffer.getvalue()
    return out
