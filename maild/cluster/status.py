"""`maild status`: which daemon holds which mailbox, their heartbeats, and each scheduled
job's last run (INTERFACE.md's shape). Read-only."""

from __future__ import annotations

import fcntl
import os
import socket
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.jobs.runs import last_runs
from maild.store.models import DaemonRow, MailboxLease


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def status(session: Session, mailboxes: list[str], sqlite_file: Path | None) -> dict[str, Any]:
    if sqlite_file is not None:
        pid = _sqlite_daemon(sqlite_file)
        holder = {"host": socket.gethostname(), "pid": pid} if pid else None
        daemons = [{**holder, "started_at": None, "last_heartbeat": None}] if holder else []
        boxes = [{"name": m, "holder": holder, "since": None, "last_heartbeat": None}
                 for m in mailboxes]
    else:
        rows = {d.id: d for d in session.scalars(select(DaemonRow).order_by(DaemonRow.started_at))}
        daemons = [{"host": d.host, "pid": d.pid, "started_at": _iso(d.started_at),
                    "last_heartbeat": _iso(d.heartbeat_at)} for d in rows.values()]
        leases = {lease.mailbox: lease for lease in session.scalars(select(MailboxLease))}
        boxes = []
        for m in mailboxes:
            lease = leases.get(m)
            daemon = rows.get(lease.daemon_id) if lease else None
            boxes.append({
                "name": m,
                "holder": {"host": daemon.host, "pid": daemon.pid} if daemon else None,
                "since": _iso(lease.since) if lease else None,
                "last_heartbeat": _iso(lease.heartbeat_at) if lease else None,
                "expires_at": _iso(lease.expires_at) if lease else None})
    jobs = [{"name": r.job, "last_run_at": _iso(r.run_at), "last_run_by":
             {"host": r.host, "pid": r.pid}, "key": r.key} for r in last_runs(session)]
    return {"daemons": daemons, "mailboxes": boxes, "jobs": jobs}


def _sqlite_daemon(database: Path) -> int | None:
    """The pid of the daemon holding the SQLite database's lock (cluster/single.py)."""
    lock = database.with_name(database.name + ".daemon-lock")
    if not lock.exists():
        return None
    fd = os.open(lock, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else -1
        return None  # nobody holds it: no daemon runs
    finally:
        os.close(fd)


def format_status(s: dict[str, Any]) -> str:
    lines = ["daemons:"]
    lines += [f"  {d['host']} pid {d['pid']}  started {d['started_at'] or '-'}  "
              f"heartbeat {d['last_heartbeat'] or '-'}" for d in s["daemons"]] or ["  none"]
    lines.append("mailboxes:")
    for m in s["mailboxes"]:
        holder = m["holder"]
        who = f"{holder['host']} pid {holder['pid']}" if holder else "nobody"
        lines.append(f"  {m['name']:<20} {who}  since {m['since'] or '-'}")
    lines.append("jobs:")
    lines += [f"  {j['name']:<20} last run {j['last_run_at']} by {j['last_run_by']['host']} "
              f"pid {j['last_run_by']['pid']}" for j in s["jobs"]] or ["  none run yet"]
    return "\n".join(lines)
