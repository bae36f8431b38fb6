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
from pathlib import Path

import structlog
from pydantic import ValidationError
from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from maild.clock import Clock
from maild.rules.schema import PRIORITIES
from maild.sla.calendar import BusinessCalendar
from maild.sla.policy import Deadline, Policy, SlaFile, TicketFacts, choose, deadlines
from maild.sla.spec import build_calendar
from maild.store.models import Event, SlaAlert, Ticket
from maild.yamlfile import YamlDocument, load_yaml

log = structlog.get_logger("maild.sla")


@dataclass(frozen=True)
class SlaConfig:
    policies: tuple[Policy, ...]
    check_interval: float
    source: str | None = None


def load_sla(path: Path | None) -> SlaConfig:
    """The SLA file, validated; errors name the file, key and line. No file: no SLA."""
    if path is None:
        return SlaConfig(policies=(), check_interval=60.0)
    doc = load_yaml(path)
    return sla_from_document(doc)


def sla_from_document(doc: YamlDocument) -> SlaConfig:
    if not isinstance(doc.data, dict):
        raise doc.error("an SLA file is a mapping (calendars, policies)", ())
    try:
        spec = SlaFile.model_validate(doc.data)
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = {"extra_forbidden": "unknown key", "missing": "required key is missing"}.get(
            err["type"], str(err["msg"]).removeprefix("Value error, "))
        raise doc.error(msg, tuple(err["loc"])) from None
    calendars: dict[str, BusinessCalendar] = {"24x7": BusinessCalendar.always_open()}
    for name, value in spec.calendars.items():
        try:
            calendars[name] = build_calendar(name, value)
        except (ValidationError, ValueError) as exc:
            reason = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            raise doc.error(f"calendar '{name}': {reason}".replace("Value error, ", ""),
                            ("calendars", name)) from None
    policies = []
    seen: set[str] = set()
    for i, p in enumerate(spec.policies):
        if p.name in seen:
            raise doc.error(f"duplicate policy name '{p.name}'", ("policies", i, "name"))
        seen.add(p.name)
        if p.calendar not in calendars:
            raise doc.error(f"policy '{p.name}': no calendar named '{p.calendar}' (known: "
                            f"{', '.join(sorted(calendars))})", ("policies", i, "calendar"))
        policies.append(Policy(p, calendars[p.calendar]))
    return SlaConfig(tuple(policies), spec.check_interval, str(doc.path))


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

    def __init__(self, config: SlaConfig, clock: Clock,
                 customer: Callable[[str], dict[str, str]]) -> None:
        self.config = config
        self._clock = clock
        self._customer = customer

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

    def _deadlines(self, t: Ticket) -> tuple[Policy | None, list[Deadline]]:
        facts = self.facts(t)
        policy = choose(self.config.policies, facts)
        return policy, (deadlines(policy, facts) if policy else [])

    def refresh(self, t: Ticket) -> None:
        """Recompute policy, due times and the next check instant of one ticket."""
        policy, found = self._deadlines(t)
        for column, value in _columns(t, policy, found, list(t.sla_alerted or ())).items():
            setattr(t, column, value)

    def pause(self, t: Ticket, now: datetime) -> None:
        pauses = list(t.sla_pauses or [])
        if not pauses or pauses[-1][1] is not None:
            t.sla_pauses = [*pauses, [now.isoformat(), None]]

    def resume(self, t: Ticket, now: datetime) -> None:
        pauses = [list(p) for p in t.sla_pauses or []]
        if pauses and pauses[-1][1] is None:
            pauses[-1][1] = now.isoformat()
            t.sla_pauses = pauses

    def run_pass(self, sessions: sessionmaker[Session],
                 act: Callable[[Session, Ticket, Policy, Deadline], tuple[str, ...]],
                 batch: int = 500) -> list[Raised]:
        """One SLA pass: every due warning and breach, each acted on exactly once.

        Per batch of due tickets: their deadlines are computed once, the alerts are claimed
        with one INSERT ... ON CONFLICT DO NOTHING RETURNING (the unique key decides who
        acts, across daemons), and only the claimed ones are acted on.
        """
        raised: list[Raised] = []
        now = self._clock.now()
        skip: set[int] = set()
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
                raised.extend(self._batch(session, tickets, now, act, dialect))
                skip.update(t.id for t in tickets)  # one look per ticket and pass
            if len(tickets) < batch:
                return raised

    def _batch(self, session: Session, tickets: list[Ticket], now: datetime,
               act: Callable[[Session, Ticket, Policy, Deadline], tuple[str, ...]],
               dialect: str) -> list[Raised]:
        plans: list[tuple[Ticket, Policy | None, list[Deadline], list[Deadline]]] = []
        rows: list[dict[str, object]] = []
        with session.no_autoflush:
            for t in tickets:
                policy, found = self._deadlines(t)
                due = _due(found, set(t.sla_alerted or ()), now) if policy else []
                plans.append((t, policy, found, due))
                rows += [{"ticket_id": t.id, "key": d.key, "target": d.target,
                          "kind": d.kind, "policy": policy.name, "due_at": d.at,
                          "raised_at": now} for d in due if policy and d.kind != "moot"]
        claimed = _claim(session, rows, dialect)
        out: list[Raised] = []
        bulk: list[dict[str, object]] = []
        events: list[dict[str, object]] = []  # written in one INSERT, like the alerts
        for t, policy, found, due in plans:
            changed = False
            for d in due:
                if policy is None or d.kind == "moot" or (t.id, d.key) not in claimed:
                    continue  # a warning overtaken by its breach, or raised elsewhere
                actions = act(session, t, policy, d)
                changed = changed or bool(actions)
                event = "sla.breached" if d.kind == "breach" else "sla.warned"
                events.append({"ticket_id": t.id, "at": now, "kind": event, "data": {
                    "policy": policy.name, "target": d.target, "due": d.at.isoformat(),
                    "actions": list(actions)}})
                log.info(event, ticket_id=t.id, ref=t.ref, target=d.target,
                         policy=policy.name)
                out.append(Raised(t.id, t.ref, policy.name, d.target, d.kind, d.at,
                                  actions))
            alerted = [*(t.sla_alerted or ()), *(d.key for d in due)]
            if changed:  # priority or level moved: the policy may have changed too
                t.sla_alerted = alerted
                self.refresh(t)
            else:  # most tickets: their new SLA columns go out in one bulk UPDATE
                bulk.append({"id": t.id, **_columns(t, policy, found, alerted)})
        if bulk:
            session.execute(update(Ticket), bulk)
        if events:
            session.execute(insert(Event), events)
        return out


def _columns(t: Ticket, policy: Policy | None, found: list[Deadline],
             alerted: list[str]) -> dict[str, object]:
    """A ticket's SLA columns for its policy and deadlines."""
    breach = {d.target: d.at for d in found if d.kind == "breach"}
    done = set(alerted)
    pending = [d.at for d in found if d.key not in done]
    columns: dict[str, object] = {
        "sla_policy": policy.name if policy else None,
        "sla_next_response_due": breach.get("next_response"),
        "sla_resolution_due": breach.get("resolution") if policy else None,
        "sla_next_check_at": min(pending) if pending else None,
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
            d = Deadline(d.target, "moot", d.at, d.start, key_override=d.key)
        out.append(d)
    return out


def _claim(session: Session, rows: list[dict[str, object]], dialect: str
           ) -> set[tuple[int, str]]:
    """Insert the alerts; return those this call inserted (the others exist already)."""
    if not rows:
        return set()
    insert_ = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = (insert_(SlaAlert).values(rows)
            .on_conflict_do_nothing(index_elements=["ticket_id", "key"])
            .returning(SlaAlert.ticket_id, SlaAlert.key))
    return {(tid, key) for tid, key in session.execute(stmt)}


def raise_priority(priority: str) -> str:
    i = PRIORITIES.index(priority) if priority in PRIORITIES else 1
    return PRIORITIES[min(i + 1, len(PRIORITIES) - 1)]


def breaches(t: Ticket, session: Session) -> Sequence[SlaAlert]:
    return list(session.scalars(select(SlaAlert).where(
        SlaAlert.ticket_id == t.id, SlaAlert.kind == "breach").order_by(SlaAlert.id)))
