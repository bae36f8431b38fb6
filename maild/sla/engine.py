"""SLA in the database: per-ticket deadlines kept current, and the scheduled pass.

`refresh` recomputes a ticket's policy, due times and `sla_next_check_at` whenever the
ticket changes (priority, level, status, a reply...). The pass reads only tickets whose
`sla_next_check_at` has come (an index range scan, however many tickets are open), raises
each warning and breach exactly once (a row in `sla_alerts` under a unique key, inserted in
the same transaction as the action), acts, and refreshes the ticket.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value
from structlog.typing import FilteringBoundLogger

from maild.clock import Clock
from maild.domain import PRIORITIES
from maild.sla.config import SlaConfig, load_sla, sla_from_document
from maild.sla.policy import Deadline, Policy, TicketFacts, choose, deadlines
from maild.sla.writes import BatchWrites
from maild.store.models import SlaAlert, Ticket
from maild.store.ticketstore import TicketStore

log = structlog.get_logger("maild.sla")
__all__ = ["Raised", "SlaConfig", "SlaEngine", "breaches", "load_sla", "raise_priority",
           "sla_from_document"]


# What a warning or breach does to its ticket (the ticket service's `sla_act`): the
# actions taken, as "notified:TEAM", "priority:P", "escalated:N".
Act = Callable[[TicketStore, Ticket, Policy, Deadline], tuple[str, ...]]


@dataclass(frozen=True)
class Raised:
    ticket_id: int
    ref: str
    policy: str
    target: str
    kind: str
    due_at: datetime
    actions: tuple[str, ...]


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class SlaEngine:
    """Keeps tickets' SLA state current and runs the checks.

    `customer` gives a requester's attributes (from the rules file); `notify`, `escalate`
    are the ticket writer's actions, so SLA actions go through the outbox like all mail.
    """

    ACTED: ClassVar[tuple[str, ...]] = ("priority", "level")
    """Ticket columns a breach's actions change (raise_priority, escalate). The pass writes
    them in its own UPDATE with the SLA columns, so the ORM does not send one UPDATE per
    ticket (each with its own set of changed columns, so never batched)."""

    def __init__(self, config: SlaConfig, clock: Clock,
                 customer: Callable[[str], dict[str, str]]) -> None:
        self.config = config
        self._clock = clock
        self._customer = customer
        self.retimed_for: str | None = None
        """The SLA configuration's fingerprint that open tickets are known to be timed for
        (maild/sla/retime.py): while it is the config's, no check is needed."""

    def facts(self, t: Ticket) -> TicketFacts:
        pauses = [(p0, _dt(p1)) for p0, p1 in
                  ((_dt(a), b) for a, b in (t.sla_pauses or [])) if p0 is not None]
        return TicketFacts(
            priority=t.priority, level=t.level, department=t.department,
            tags=frozenset(t.tags or ()), customer=self._customer(t.requester),
            created_at=t.created_at, first_response_at=t.first_response_at,
            awaiting_reply_since=t.awaiting_reply_since,
            done=t.status in ("resolved", "closed"), pauses=pauses,
        )

    def policy_for(self, t: Ticket) -> str | None:
        """The name of the policy the ticket gets now."""
        policy = choose(self.config.policies, self.facts(t))
        return policy.name if policy else None

    def _deadlines(self, t: Ticket) -> tuple[Policy | None, list[Deadline]]:
        facts = self.facts(t)
        policy = choose(self.config.policies, facts)
        return policy, (deadlines(policy, facts) if policy else [])

    def refresh(self, t: Ticket) -> None:
        """Recompute policy, due times and the next check instant of one ticket."""
        for column, value in self.columns(t).items():
            setattr(t, column, value)

    def columns(self, t: Ticket) -> dict[str, object]:
        """The ticket's SLA columns as the current policies make them (`sla_alerted` as is;
        `sla_first_response_due` only while the first response is owed)."""
        policy, found = self._deadlines(t)
        return _columns(t, policy, found, list(t.sla_alerted or ()))

    STOPPED: ClassVar[tuple[str, ...]] = ("waiting_customer", "resolved", "closed")
    """Statuses in which the SLA clock stands still: the ticket waits for the customer, or
    nobody owes anything. A reopened ticket's targets count only the time it was open."""

    def status_changed(self, t: Ticket, status: str, now: datetime) -> None:
        """Stop or restart the ticket's clock for a change of status (before it is set)."""
        if status in self.STOPPED:
            self.pause(t, now)
        elif t.status in self.STOPPED:
            # A ticket resolved before its pause was recorded: the pause is its time resolved.
            self.resume(t, now, since=t.resolved_at or t.closed_at)

    def pause(self, t: Ticket, now: datetime) -> None:
        pauses = list(t.sla_pauses or [])
        if not pauses or pauses[-1][1] is not None:
            t.sla_pauses = [*pauses, [now.isoformat(), None]]

    def resume(self, t: Ticket, now: datetime, since: datetime | None = None) -> None:
        """End the running pause; without one, record `since`..`now` as a pause."""
        pauses = [list(p) for p in t.sla_pauses or []]
        if pauses and pauses[-1][1] is None:
            pauses[-1][1] = now.isoformat()
            t.sla_pauses = pauses
        elif since is not None and since < now:
            t.sla_pauses = [*pauses, [since.isoformat(), now.isoformat()]]

    def run_pass(self, sessions: sessionmaker[Session], act: Act,
                 store_for: Callable[[Session], TicketStore],
                 batch: int = 500) -> list[Raised]:
        """One SLA pass: every due warning and breach, each acted on exactly once.

        Per batch of due tickets: their deadlines are computed once, the alerts are claimed
        with one INSERT ... ON CONFLICT DO NOTHING RETURNING (the unique key decides who
        acts, across daemons), and only the claimed ones are acted on.

        A ticket the pass has looked at leaves the due range with its new
        `sla_next_check_at`, unless a breach moved it to a policy whose deadlines are already
        past: only those are excluded from later batches (one look per ticket and pass; the
        next pass raises them), so the exclusion list stays as short as they are few.
        """
        raised: list[Raised] = []
        now = self._clock.now()
        skip: set[int] = set()
        logger = log.bind()  # once: the module's logger is a proxy that binds at every call
        while True:
            with sessions() as session, session.begin():
                query = (select(Ticket).where(Ticket.sla_next_check_at <= now)
                         .order_by(Ticket.sla_next_check_at).limit(batch))
                if skip:
                    query = query.where(Ticket.id.not_in(skip))
                dialect = session.get_bind().dialect.name
                if dialect == "postgresql":
                    query = query.with_for_update(skip_locked=True)
                tickets = list(session.scalars(query))
                found, still_due = self._batch(store_for(session), tickets, now, act,
                                               dialect, logger)
                raised.extend(found)
                skip.update(still_due)
            if len(tickets) < batch:
                return raised

    def _batch(self, store: TicketStore, tickets: list[Ticket], now: datetime, act: Act,
               dialect: str, logger: FilteringBoundLogger) -> tuple[list[Raised], list[int]]:
        """Claim, act on and rewrite one batch; the raised alerts, and the tickets still due.

        The pass's own writes are one statement each per batch (`BatchWrites`): the claim,
        the tickets' new columns, the events. The actions' rows (their notifications'
        messages and outbox rows, their events) wait in the batch's store
        (`maild.store.batchstore`, as in ingestion) and are written with one INSERT a
        table, not flushed object by object. A ticket's deadlines are computed once, and again after
        its actions only if they changed what decides them (a breach that raises the priority
        may move it to another policy).
        """
        session = store.session
        with session.no_autoflush:
            plans = [self._plan(t, now) for t in tickets]
        writes = BatchWrites(dialect)
        claimed = writes.claim(session.connection(), [c for p in plans for c in p.claims(now)])
        out: list[Raised] = []
        rows: list[dict[str, object]] = []
        events: list[dict[str, object]] = []
        still_due: list[int] = []
        for plan in plans:
            changed = self._act(store, plan, claimed, act, now, logger, out, events)
            row = self._row(plan, changed)
            rows.append(row)
            next_check = row["sla_next_check_at"]
            if isinstance(next_check, datetime) and next_check <= now:
                still_due.append(plan.ticket.id)
        store.write()  # what the actions added (their events first, as they happened)
        session.flush()  # and anything they added to the session themselves
        writes.update_tickets(session.connection(), rows)
        writes.insert_events(session.connection(), events)
        return out, still_due

    def _plan(self, t: Ticket, now: datetime) -> _Plan:
        """What is due on the ticket, and what that was computed from."""
        facts = self.facts(t)
        policy = choose(self.config.policies, facts)
        found = deadlines(policy, facts) if policy else []
        alerted = list(t.sla_alerted or ())
        due = _due(found, set(alerted), now) if policy else []
        return _Plan(t, facts, policy, found, alerted, due,
                     {c: getattr(t, c) for c in self.ACTED})

    @staticmethod
    def _act(store: TicketStore, plan: _Plan, claimed: set[tuple[int, str]],
             act: Act,
             now: datetime, logger: FilteringBoundLogger, out: list[Raised],
             events: list[dict[str, object]]) -> bool:
        """Act on the ticket's claimed alerts (into `out`, their events into `events`);
        whether any action was taken."""
        t, policy = plan.ticket, plan.policy
        changed = False
        for d in plan.due:
            if policy is None or d.kind == "moot" or (t.id, d.key) not in claimed:
                continue  # a warning overtaken by its breach, or raised elsewhere
            actions = act(store, t, policy, d)
            changed = changed or bool(actions)
            event = "sla.breached" if d.kind == "breach" else "sla.warned"
            events.append({"ticket_id": t.id, "at": now, "kind": event, "data": {
                "policy": policy.name, "target": d.target, "due": d.due.isoformat(),
                "actions": list(actions)}})
            logger.info(event, ticket_id=t.id, ref=t.ref, target=d.target,
                        policy=policy.name)
            out.append(Raised(t.id, t.ref, policy.name, d.target, d.kind, d.due, actions))
        return changed

    def _row(self, plan: _Plan, changed: bool) -> dict[str, object]:
        """The ticket's row for the batch's UPDATE: its SLA columns after the actions, and
        the ACTED columns, which the ORM then no longer counts as changed."""
        t, policy, found = plan.ticket, plan.policy, plan.found
        if changed:  # priority or level moved: the policy may have changed too
            facts = self.facts(t)
            if facts != plan.facts:
                policy = choose(self.config.policies, facts)
                if policy is not plan.policy or facts.clocks() != plan.facts.clocks():
                    found = deadlines(policy, facts) if policy else []
        row = _columns(t, policy, found, [*plan.alerted, *(d.key for d in plan.due)])
        row.setdefault("sla_first_response_due", t.sla_first_response_due)  # kept as it was
        row["ticket_id"] = t.id
        for column, loaded in plan.acted.items():
            row[column] = value = getattr(t, column)
            if value != loaded:
                set_committed_value(t, column, value)
        return row


@dataclass(slots=True)
class _Plan:
    """A due ticket in a batch: what its deadlines were computed from, and what is due."""

    ticket: Ticket
    facts: TicketFacts
    policy: Policy | None
    found: list[Deadline]
    alerted: list[str]
    due: list[Deadline]
    acted: dict[str, object]  # SlaEngine.ACTED columns as loaded

    def claims(self, now: datetime) -> list[dict[str, object]]:
        """Its `sla_alerts` rows: every due alert but the moot warnings."""
        if self.policy is None:
            return []
        return [{"ticket_id": self.ticket.id, "key": d.key, "target": d.target,
                 "kind": d.kind, "policy": self.policy.name, "due_at": d.due,
                 "raised_at": now} for d in self.due if d.kind != "moot"]


def _columns(t: Ticket, policy: Policy | None, found: list[Deadline],
             alerted: list[str]) -> dict[str, object]:
    """A ticket's SLA columns for its policy and deadlines."""
    breach = {d.target: d.at for d in found if d.kind == "breach"}
    done = set(alerted)
    to_come = [d.at for d in found if d.key not in done]
    columns: dict[str, object] = {
        "sla_policy": policy.name if policy else None,
        "sla_next_response_due": breach.get("next_response"),
        "sla_resolution_due": breach.get("resolution") if policy else None,
        "sla_next_check_at": min(to_come) if to_come else None,
        "sla_alerted": alerted,
    }
    if t.first_response_at is None or policy is None:
        columns["sla_first_response_due"] = breach.get("first_response")
    return columns


def _due(found: list[Deadline], alerted: set[str], now: datetime) -> list[Deadline]:
    """Deadlines that came due and were not alerted; a warning whose breach has come too is
    marked "moot": recorded as handled, never sent."""
    breached = {d.target for d in found if d.kind == "breach" and d.at <= now}
    out = []
    for d in sorted(found, key=lambda d: d.at):
        if d.at > now or d.key in alerted:
            continue
        if d.kind == "warn" and d.target in breached:
            d = Deadline(d.target, "moot", d.at, d.start, key_override=d.key, due_at=d.due_at)
        out.append(d)
    return out


def raise_priority(priority: str) -> str:
    i = PRIORITIES.index(priority) if priority in PRIORITIES else 1
    return PRIORITIES[min(i + 1, len(PRIORITIES) - 1)]


def breaches(t: Ticket, session: Session) -> Sequence[SlaAlert]:
    return list(session.scalars(select(SlaAlert).where(
        SlaAlert.ticket_id == t.id, SlaAlert.kind == "breach").order_by(SlaAlert.id)))
