"""What `maild wishes list/show` print: JSON-ready dicts in the shapes of INTERFACE.md,
and the text made from the same dicts, so `--json` and the text cannot drift apart.
Also the period view (`--top`, `--since`): the wishes most customers asked for in a
period, the wishes new in it, and its status changes.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from maild.wishes.rules import Asked, counts
from maild.wishes.store import Row, WishStore

SORTS = ("count", "recent")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def summary(row: Row) -> dict[str, Any]:
    w = row.wish
    return {"key": w.key, "title": w.title, "department": w.department, "status": w.status,
            "reason": w.reason, "requests": row.requests, "customers": row.customers,
            "first_requested": _iso(row.first), "last_requested": _iso(row.last)}


def wish_list(ws: WishStore, *, status: str | None = None, department: str | None = None,
              sort: str | None = None) -> list[dict[str, Any]]:
    """Oldest first; `count`: most distinct customers first; `recent`: last asked first."""
    rows = ws.rows(status=status, department=department)
    if sort == "count":
        rows.sort(key=lambda r: (-r.customers, -r.requests, r.wish.number))
    elif sort == "recent":
        rows.sort(key=lambda r: (r.last is None, -(r.last.timestamp() if r.last else 0),
                                 r.wish.number))
    return [summary(r) for r in rows]


def wish_detail(ws: WishStore, key: str) -> dict[str, Any] | None:
    wish = ws.by_key(key)
    if wish is None:
        return None
    [row] = ws.rows(only=wish.id)
    ids = ws.merged_ids(wish)
    keys = ws.keys(ids)
    out = summary(row)
    out["description"] = wish.description
    out["merged"] = sorted((keys[i].key for i in ids if i != wish.id),
                           key=lambda k: int(k.split("-")[1]))
    out["requests"] = [{"ticket": r.ticket_ref, "customer": r.customer, "at": _iso(r.at),
                        "by": r.by, "title": r.title, "not_possible": r.not_possible}
                       for r in ws.requests(wish)]
    out["history"] = [{"at": _iso(h.at), "by": h.by, "status": h.status, "reason": h.reason,
                       "note": h.note, "wish": keys[h.wish_id].key}
                      for h in ws.history(ids)]
    return out


def period(ws: WishStore, start: datetime, end: datetime, top: int) -> dict[str, Any]:
    """[start, end): the `top` wishes by distinct customers asking in the period, the
    wishes created in it, and every status change in it."""
    asked: dict[int, list[Asked]] = defaultdict(list)
    for r in ws.requests_between(start, end):
        asked[r.wish_id].append(Asked(r.customer, r.at, r.ticket_ref))
    changes = ws.changes_between(start, end)
    wishes = ws.keys(list({*asked, *(h.wish_id for h in changes)}))
    ranked = sorted(asked, key=lambda i: (-counts(asked[i]).customers,
                                          -counts(asked[i]).requests, wishes[i].number))
    return {
        "period": {"from": start.isoformat(), "to": end.isoformat()},
        "top": [{"key": wishes[i].key, "title": wishes[i].title,
                 "status": wishes[i].status, "customers": counts(asked[i]).customers,
                 "requests": counts(asked[i]).requests} for i in ranked[:top]],
        "new": [{"key": wishes[h.wish_id].key, "title": wishes[h.wish_id].title,
                 "at": _iso(h.at), "by": h.by} for h in changes if h.note == "created"],
        "status_changes": [{"key": wishes[h.wish_id].key, "at": _iso(h.at), "by": h.by,
                            "status": h.status, "reason": h.reason}
                           for h in changes if h.note is None or h.note.startswith("re-")],
    }


# -- text -------------------------------------------------------------------------------------
def format_list(rows: Sequence[dict[str, Any]]) -> str:
    lines = [f"{'KEY':<8} {'STATUS':<13} {'CUST':>4} {'REQ':>4}  {'LAST':<10}  "
             f"{'DEPARTMENT':<12} TITLE"]
    for r in rows:
        last = (r["last_requested"] or "-")[:10]
        lines.append(f"{r['key']:<8} {r['status']:<13} {r['customers']:>4} {r['requests']:>4}"
                     f"  {last:<10}  {(r['department'] or '-'):<12} {r['title']}"
                     + (f"  [{r['reason']}]" if r["reason"] else ""))
    return "\n".join(lines)


def format_detail(d: dict[str, Any]) -> str:
    lines = [f"{d['key']}  {d['title']}", f"status:      {d['status']}"
             + (f" ({d['reason']})" if d["reason"] else ""),
             f"department:  {d['department'] or '-'}",
             f"requests:    {d['requests']} from {d['customers']} customers "
             f"({(d['first_requested'] or '-')[:10]} .. {(d['last_requested'] or '-')[:10]})"]
    if d["merged"]:
        lines.append(f"merged here: {', '.join(d['merged'])}")
    if d["description"]:
        lines += ["", d["description"]]
    lines += ["", "requests:"] + [
        f"  {r['at'][:16]}  {r['ticket']:<12} {r['customer']:<32} by {r['by']}"
        + ("  (not possible)" if r["not_possible"] else "") for r in d["requests"]]
    lines += ["", "history:"] + [
        f"  {h['at'][:16]}  {h['wish']:<6} {h['status']:<13} {h['by']}"
        + (f"  {h['reason']}" if h["reason"] else "") + (f"  [{h['note']}]" if h["note"] else "")
        for h in d["history"]]
    return "\n".join(lines)


def format_period(p: dict[str, Any]) -> str:
    lines = [f"wishes from {p['period']['from'][:10]} to {p['period']['to'][:10]}", "",
             "top wishes by distinct customers:"]
    lines += [f"  {t['key']:<8} {t['customers']:>4} customers {t['requests']:>4} requests  "
              f"{t['status']:<13} {t['title']}" for t in p["top"]] or ["  (none)"]
    lines += ["", "new wishes:"]
    lines += [f"  {n['key']:<8} {n['at'][:10]}  {n['title']}" for n in p["new"]] or ["  (none)"]
    lines += ["", "status changes:"]
    lines += [f"  {c['at'][:16]}  {c['key']:<8} {c['status']:<13} {c['by']}"
              + (f"  {c['reason']}" if c["reason"] else "")
              for c in p["status_changes"]] or ["  (none)"]
    return "\n".join(lines)
