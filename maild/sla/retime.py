"""Open tickets re-timed when the SLA policies change.

A ticket's due times are computed when it changes (`SlaEngine.refresh`) and kept on it, so
an edited policy (a shorter target, another calendar) would otherwise reach a ticket only when
something next happens to it, and a breach would be raised late.

The key-value table keeps the fingerprints of the configuration the open tickets are timed
for (`SlaConfig.choice` and `.timing`). Before an SLA pass (at start, and after a reload), if
the configuration's differ:

* the choice of policy changed (a policy added, removed, reordered or matching otherwise):
  every open ticket is re-timed;
* only targets or calendars changed: the open tickets of those policies are.

Re-timing reads the tickets in batches by id (the columns that decide the deadlines only, as
rows, made into detached Ticket objects without the ORM's loading), computes their SLA columns
with the engine's own code, and writes the tickets whose columns changed with one UPDATE per
batch (`BatchWrites`, as the SLA pass), each batch its own transaction. The new fingerprints
are stored after the last batch: a re-time cut short is done again at the next pass. A
warning or breach already raised is not raised again under the new times (`sla_alerted` is
kept); one the new times make due is raised by the pass that follows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from maild.sla.engine import SlaEngine
from maild.sla.writes import BatchWrites
from maild.store.models import KeyValue, Ticket

log = structlog.get_logger("maild.sla")
KEY = "sla.timed_for"
OPEN = ("new", "open", "waiting_customer")
SLA_COLUMNS = ("sla_policy", "sla_first_response_due", "sla_next_response_due",
               "sla_resolution_due", "sla_next_check_at")
READ = (Ticket.id, Ticket.priority, Ticket.level, Ticket.department, Ticket.tags,
         Ticket.requester, Ticket.status, Ticket.created_at, Ticket.first_response_at,
         Ticket.awaiting_reply_since, Ticket.sla_pauses, Ticket.sla_alerted,
         *(getattr(Ticket, c) for c in SLA_COLUMNS))


@dataclass(frozen=True)
class Retimed:
    policies: tuple[str, ...] | None  # None: every open ticket
    checked: int
    changed: int
    seconds: float


def stored(session: Session) -> dict[str, Any] | None:
    row = session.get(KeyValue, KEY)
    if row is None:
        return None
    try:
        value = json.loads(row.value)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def to_retime(old: dict[str, Any] | None, choice: str,
              timing: dict[str, str]) -> tuple[str, ...] | None:
    """The policies whose open tickets need new times; None: every open ticket."""
    if old is None or old.get("choice") != choice or not isinstance(old.get("timing"), dict):
        return None
    return tuple(sorted(name for name, digest in timing.items()
                        if old["timing"].get(name) != digest))


def same_timing(old: dict[str, Any] | None, timing: dict[str, str]) -> frozenset[str]:
    """The policies timed as before: a ticket that keeps one of them keeps its times."""
    before = old.get("timing") if old is not None else None
    if not isinstance(before, dict):
        return frozenset()
    return frozenset(name for name, digest in timing.items() if before.get(name) == digest)


def retime_if_changed(sla: SlaEngine, sessions: sessionmaker[Session],
                      batch: int = 5000) -> Retimed | None:
    """Re-time the open tickets whose policy or its timing changed since they were timed;
    None when nothing changed (then, until the configuration changes, without a query)."""
    config = sla.config
    if sla.retimed_for == config.fingerprint:
        return None
    timing = dict(config.timing)
    with sessions() as session:
        old = stored(session)
    policies = to_retime(old, config.choice, timing)
    result = None
    if policies is None or policies:
        result = retime(sla, sessions, policies, batch, same_timing(old, timing))
        log.info("sla.retimed", policies=list(policies) if policies is not None else "all",
                 checked=result.checked, changed=result.changed,
                 seconds=round(result.seconds, 3))
    with sessions() as session, session.begin():
        session.merge(KeyValue(key=KEY, value=json.dumps(
            {"choice": config.choice, "timing": timing}, sort_keys=True)))
    sla.retimed_for = config.fingerprint
    return result


def retime(sla: SlaEngine, sessions: sessionmaker[Session],
           policies: Collection[str] | None, batch: int = 5000,
           unchanged: Collection[str] = ()) -> Retimed:
    """New SLA columns for the open tickets (of `policies`; None: all), in batches.

    A ticket that keeps its policy, when that policy is one of `unchanged` (timed as before),
    keeps its columns: only the choice of its policy is computed, not its deadlines."""
    t0 = time.perf_counter()
    checked = changed = 0
    last = 0
    new_instance = Ticket.__mapper__.class_manager.new_instance
    while True:
        with sessions() as session, session.begin():
            query = (select(*READ).where(Ticket.id > last, Ticket.status.in_(OPEN))
                     .order_by(Ticket.id).limit(batch))
            if policies is not None:
                query = query.where(Ticket.sla_policy.in_(policies))
            conn = session.connection()
            if conn.dialect.name == "postgresql":
                # A ticket another transaction is changing waits for this batch, or this batch
                # for it: its columns end up computed from its latest state (on SQLite, BEGIN
                # IMMEDIATE serialises the writers).
                query = query.with_for_update()
            rows = conn.execute(query).mappings().all()
            updates = []
            for row in rows:
                # A detached Ticket holding the row, made as the ORM makes loaded objects:
                # the engine's code reads it like any ticket, at a fraction of the ORM's cost.
                ticket: Ticket = new_instance()
                ticket.__dict__.update(row)
                if row["sla_policy"] in unchanged and sla.policy_for(ticket) == row["sla_policy"]:
                    continue
                columns = sla.columns(ticket)
                new = {c: columns.get(c, row[c]) for c in SLA_COLUMNS}
                if any(new[c] != row[c] for c in SLA_COLUMNS):
                    updates.append({"ticket_id": row["id"], **new})
            BatchWrites(conn.dialect.name).update_tickets(conn, updates)
        checked += len(rows)
        changed += len(updates)
        if len(rows) < batch:
            return Retimed(tuple(policies) if policies is not None else None, checked,
                           changed, time.perf_counter() - t0)
        last = rows[-1]["id"]
