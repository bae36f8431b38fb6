"""The report as JSON (INTERFACE.md "report --json"), a readable text table, and CSV."""

from __future__ import annotations

import csv
import dataclasses
import io
from typing import Any

from maild.reports.figures import Kpis, Report, Times

ROUND = 4


def _num(value: float | None) -> float | None:
    return None if value is None else round(value, ROUND)


def _times(t: Times) -> dict[str, Any]:
    return {k: (_num(v) if isinstance(v, float) else v)
            for k, v in dataclasses.asdict(t).items()}


def kpis_json(k: Kpis) -> dict[str, Any]:
    return {
        "tickets_created": k.tickets_created,
        "tickets_resolved": k.tickets_resolved,
        "tickets_closed": k.tickets_closed,
        "tickets_reopened": k.tickets_reopened,
        "messages_in": k.messages_in,
        "replies_out": k.replies_out,
        "first_reply": _times(k.first_reply),
        "resolution": _times(k.resolution),
        "sla": {"first_response_met_rate": _num(k.sla.first_response_met_rate),
                "resolution_met_rate": _num(k.sla.resolution_met_rate),
                "warnings": k.sla.warnings, "breaches": k.sla.breaches},
        "escalation_rate": _num(k.escalation_rate),
        "one_touch_rate": _num(k.one_touch_rate),
        "reopen_rate": _num(k.reopen_rate),
        "canned_only_rate": _num(k.canned_only_rate),
        "csat": {"surveys_sent": k.csat.surveys_sent, "responses": k.csat.responses,
                 "response_rate": _num(k.csat.response_rate), "mean": _num(k.csat.mean),
                 "satisfied_rate": _num(k.csat.satisfied_rate)},
    }


def to_json(report: Report) -> dict[str, Any]:
    totals = kpis_json(report.totals)
    totals["backlog"] = {"open": report.backlog.open, "by_age": dict(report.backlog.by_age),
                         "by_status": dict(report.backlog.by_status)}
    totals["escalation_by_level"] = {k: _num(v) for k, v in report.escalation_by_level.items()}
    out: dict[str, Any] = {
        "period": {"from": report.period.start.isoformat(),
                   "to": report.period.end.isoformat(), "timezone": report.period.timezone},
        "totals": totals,
    }
    for dimension, groups in report.groups.items():
        out[f"by_{dimension}"] = {key: kpis_json(k) for key, k in groups.items()}
    out["days"] = [{"date": d.day.isoformat(), "tickets_created": d.tickets_created,
                    "messages_in": d.messages_in, "replies_out": d.replies_out,
                    "resolved": d.resolved, "closed": d.closed, "reopened": d.reopened,
                    "created_by_department": dict(d.created_by_department)}
                   for d in report.days]
    out["weeks"] = [{"week": w.week.isoformat(),
                     "first_response_met_rate": _num(w.first_response_met_rate),
                     "resolution_met_rate": _num(w.resolution_met_rate),
                     "csat_responses": w.csat_responses, "csat_mean": _num(w.csat_mean)}
                    for w in report.weeks]
    return out


def rows_of(k: Kpis) -> list[tuple[str, Any]]:
    """One KPI a line: the order of the text table and the columns of the CSV."""
    f, r, s, c = k.first_reply, k.resolution, k.sla, k.csat
    return [
        ("tickets_created", k.tickets_created), ("messages_in", k.messages_in),
        ("replies_out", k.replies_out), ("tickets_resolved", k.tickets_resolved),
        ("tickets_closed", k.tickets_closed), ("tickets_reopened", k.tickets_reopened),
        ("first_reply_count", f.count), ("first_reply_mean_h", f.mean_h),
        ("first_reply_median_h", f.median_h), ("first_reply_p90_h", f.p90_h),
        ("first_reply_mean_business_h", f.mean_business_h),
        ("first_reply_median_business_h", f.median_business_h),
        ("first_reply_p90_business_h", f.p90_business_h),
        ("resolution_count", r.count), ("resolution_mean_h", r.mean_h),
        ("resolution_median_h", r.median_h), ("resolution_p90_h", r.p90_h),
        ("resolution_mean_business_h", r.mean_business_h),
        ("resolution_median_business_h", r.median_business_h),
        ("resolution_p90_business_h", r.p90_business_h),
        ("sla_first_response_met_rate", s.first_response_met_rate),
        ("sla_resolution_met_rate", s.resolution_met_rate),
        ("sla_warnings", s.warnings), ("sla_breaches", s.breaches),
        ("escalation_rate", k.escalation_rate), ("one_touch_rate", k.one_touch_rate),
        ("reopen_rate", k.reopen_rate), ("canned_only_rate", k.canned_only_rate),
        ("csat_surveys_sent", c.surveys_sent), ("csat_responses", c.responses),
        ("csat_response_rate", c.response_rate), ("csat_mean", c.mean),
        ("csat_satisfied_rate", c.satisfied_rate),
    ]


def cell(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.0%}" if name.endswith("_rate") else f"{value:.1f}"
    return str(value)


def to_text(report: Report, by: str) -> str:
    """KPIs as lines, the total and each group of `by` as columns."""
    groups = report.groups[by]
    headers = ["", "total", *groups]
    table = [headers]
    for i, (name, value) in enumerate(rows_of(report.totals)):
        table.append([name, cell(name, value),
                      *(cell(name, rows_of(k)[i][1]) for k in groups.values())])
    widths = [max(len(row[c]) for row in table) for c in range(len(headers))]
    p = report.period
    lines = [f"maild report {p.start.isoformat()} .. {p.end.isoformat()} ({p.timezone}), "
             f"by {by}", ""]
    for row in table:
        lines.append("  ".join(cell.ljust(widths[0]) if c == 0 else cell.rjust(widths[c])
                               for c, cell in enumerate(row)).rstrip())
    b = report.backlog
    lines += ["", f"backlog at the end: {b.open} open; by age: "
              + ", ".join(f"{k} {v}" for k, v in b.by_age.items()) + "; by status: "
              + ", ".join(f"{k} {v}" for k, v in b.by_status.items())]
    return "\n".join(lines) + "\n"


def to_csv(report: Report) -> str:
    """One row for the totals and one for each group of every dimension."""
    buffer = io.StringIO()
    names = [name for name, _ in rows_of(report.totals)]
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["from", "to", "dimension", "key", *names])
    span = [report.period.start.isoformat(), report.period.end.isoformat()]
    writer.writerow([*span, "total", "", *(_csv(v) for _, v in rows_of(report.totals))])
    for dimension, groups in report.groups.items():
        for key, k in groups.items():
            writer.writerow([*span, dimension, key, *(_csv(v) for _, v in rows_of(k))])
    return buffer.getvalue()


def _csv(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.{ROUND}f}"
    return str(value)
