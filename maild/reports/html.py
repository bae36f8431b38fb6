"""The report as one self-contained HTML page: styles inline, charts as inline SVG, nothing
fetched from anywhere (no script, font, image or style sheet by URL)."""

from __future__ import annotations

import re
from html import escape

from maild.reports.charts import CHARTS, draw
from maild.reports.figures import Report
from maild.reports.render import cell, rows_of

STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; font-size: 13px; }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
td:first-child, th:first-child { text-align: left; }
figure { margin: 1.5em 0; }
figure svg { width: 750px; height: 320px; display: block; }
"""


_ID = re.compile(r'(id="|href="#|url\(#)([^")]+)')


def _svg(data: bytes, name: str) -> str:
    """The chart's <svg> element alone (no XML prolog or DOCTYPE inline), its ids made its
    own: every chart defines the same glyphs under the same ids, and one page holds five."""
    text = data.decode("utf-8")
    return _ID.sub(lambda m: f"{m.group(1)}{name}-{m.group(2)}", text[text.index("<svg"):])


def page(report: Report, by: str) -> str:
    p = report.period
    groups = report.groups[by]
    head = "".join(f"<th>{escape(h)}</th>" for h in ["", "total", *groups])
    body = []
    for i, (name, value) in enumerate(rows_of(report.totals)):
        cells = [cell(name, value), *(cell(name, rows_of(k)[i][1]) for k in groups.values())]
        body.append(f"<tr><td>{escape(name)}</td>"
                    + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    svgs = draw(report, "svg")
    figures = "".join(
        f'<figure id="chart-{name}" aria-label="{escape(title)}">'
        f"{_svg(svgs[name], name)}</figure>" for name, title, _ in CHARTS)
    b = report.backlog
    title = f"maild report {p.start.date().isoformat()} to {p.end.isoformat()}"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>Support desk report</h1><p>{escape(p.start.isoformat())} to "
        f"{escape(p.end.isoformat())} ({escape(p.timezone)}), by {escape(by)}</p>"
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
        f"<p>Backlog at the end: {b.open} open</p>{figures}</body></html>\n"
    )
