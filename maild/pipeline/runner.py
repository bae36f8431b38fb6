"""The runner: fetched bytes through every stage, one database transaction per batch.

Each message runs inside a savepoint. A stage that stops a message returns an `Outcome`; an
unexpected exception rolls back that message's savepoint and quarantines it with its raw
bytes and the reason, and the batch goes on. Database errors are different: they abort the
whole batch so nothing is acknowledged on IMAP, and the caller retries later.

Only after the batch commits does the caller touch IMAP (DESIGN.md: acknowledge after commit).
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field

import structlog
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from maild.clock import Clock
from maild.domain import (
    Classification,
    Fetched,
    Inbound,
    Outcome,
    SourceRef,
    Stop,
    ThreadDecision,
)
from maild.mailsafety.bounce import Report
from maild.outbound.queue import Outgoing, enqueue
from maild.pipeline import respond
from maild.pipeline.classify import Classifier
from maild.pipeline.guard import Guard
from maild.pipeline.parse import ParseError, parse
from maild.pipeline.thread import (
    candidate_ids,
    decide_thread,
    normalise_subject,
    strip_ref,
    subject_ref,
)
from maild.store import repo
from maild.store.models import Message, Quarantine, Ticket

log = structlog.get_logger("maild.pipeline")


@dataclass
class BatchResult:
    """What happened to each fetched message; the caller acts on IMAP accordingly."""

    done: list[SourceRef] = field(default_factory=list)
    held: list[tuple[SourceRef, str]] = field(default_factory=list)
    discarded: int = 0  # among `done`: duplicates and the like, stored nowhere
    tickets_created: int = 0
    queued: int = 0


@dataclass(frozen=True)
class Processed:
    ticket_id: int
    created: bool
    queued: int


class Pipeline:
    """Parse → guard → thread → classify → persist → respond, for batches of messages."""

    def __init__(
        self, *, session_factory: sessionmaker[Session], classifier: Classifier, guard: Guard,
        outgoing: Outgoing, clock: Clock, ref_prefix: str, default_language: str,
    ) -> None:
        self._sessions = session_factory
        self._classifier = classifier
        self._guard = guard
        self._out = outgoing
        self._clock = clock
        self._ref_prefix = ref_prefix
        self._ref_re = re.compile(
            r"\[\s*(" + re.escape(ref_prefix) + r"-[A-Z0-9]{4,12})\s*\]", re.IGNORECASE
        )
        self._default_language = default_language

    def process_batch(self, items: Sequence[Fetched]) -> BatchResult:
        """Process `items` in one transaction. Raises only when the commit is impossible."""
        result = BatchResult()
        with self._sessions() as session, session.begin():
            for item in items:
                self._process_item(session, item, result)
        return result

    def _process_item(self, session: Session, item: Fetched, result: BatchResult) -> None:
        bound = log.bind(mailbox=item.source.mailbox, uid=item.source.uid)
        try:
            with session.begin_nested():
                outcome = self.process(session, item.raw, item.source)
        except SQLAlchemyError:
            raise  # the database is the problem, not the message: retry the batch later
        except Exception as exc:  # noqa: BLE001 - the runner is the one place that may
            reason = f"{type(exc).__name__}: {exc}"[:2000]
            bound.warning("message.quarantined", reason=reason,
                          trace=traceback.format_exc(limit=5))
            self._quarantine(session, item, reason)
            result.held.append((item.source, reason))
            return
        if isinstance(outcome, Outcome):
            if outcome.stop is Stop.HOLD:
                self._quarantine(session, item, outcome.reason)
                result.held.append((item.source, outcome.reason))
                bound.info("message.held", reason=outcome.reason)
            else:
                result.done.append(item.source)
                result.discarded += 1
                bound.info("message.discarded", reason=outcome.reason)
            return
        result.done.append(item.source)
        result.queued += outcome.queued
        result.tickets_created += int(outcome.created)

    def _quarantine(self, session: Session, item: Fetched, reason: str) -> None:
        session.add(Quarantine(
            source_key=item.source.key, message_id=None, reason=reason, raw=item.raw,
            created_at=self._clock.now(),
        ))

    def process(
        self, session: Session, raw: bytes, source: SourceRef | None
    ) -> Processed | Outcome:
        """One message through every stage, inside the caller's transaction."""
        try:
            inbound = parse(raw, source, default_language=self._default_language)
        except ParseError as exc:
            return Outcome(Stop.HOLD, f"unparseable: {exc}")
        duplicate = self._guard.duplicate(session, inbound)
        if duplicate:
            return duplicate
        inbound, report = self._guard.inspect(inbound)
        if inbound.sender is None:
            return Outcome(Stop.HOLD, "no sender address (From) in the message")
        ids = candidate_ids(inbound)
        if report is not None:
            ids = (*report.original_message_ids, *ids)
        ref = subject_ref(inbound.subject, self._ref_re)
        decision = decide_thread(
            inbound,
            repo.tickets_for_message_ids(session, ids),
            ref,
            repo.ref_ticket(session, ref) if ref else None,
        )
        if report is not None:
            return self._report(session, inbound, report, decision)
        if decision.ticket_id is not None:
            return self._reply(session, inbound, decision)
        return self._new_ticket(session, inbound, decision)

    def _store_message(self, session: Session, ticket: Ticket, inbound: Inbound) -> Message:
        sender = inbound.sender
        assert sender is not None
        row = Message(
            ticket=ticket, direction="inbound", message_id=inbound.message_id,
            source_key=inbound.source.key if inbound.source else None,
            raw_sha256=inbound.raw_sha256,
            in_reply_to=" ".join(inbound.in_reply_to) or None,
            references=" ".join(inbound.references) or None,
            from_addr=sender.address, from_name=sender.name[:200],
            to_addrs=repo.addresses(a.address for a in (*inbound.to, *inbound.cc)),
            subject=inbound.subject, date=inbound.date, body_text=inbound.body_text,
            automatic=",".join(inbound.automatic)[:200] or None, raw=inbound.raw,
            created_at=self._clock.now(),
        )
        session.add(row)
        return row

    def _new_ticket(
        self, session: Session, inbound: Inbound, decision: ThreadDecision
    ) -> Processed:
        now = self._clock.now()
        sender = inbound.sender
        assert sender is not None
        classification: Classification = self._classifier.classify(inbound)
        subject = normalise_subject(strip_ref(inbound.subject, self._ref_re)) or "(no subject)"
        ticket = Ticket(
            ref=repo.new_ref(self._ref_prefix), subject=subject[:500],
            requester=sender.address, requester_name=sender.name[:200], status="new",
            level=classification.level, department=classification.department,
            priority=classification.priority, language=inbound.language,
            mailbox=inbound.source.mailbox if inbound.source else None,
            secret=repo.new_secret(), created_at=now, updated_at=now,
            linked_ticket_id=decision.linked_ticket_id,
        )
        session.add(ticket)
        self._store_message(session, ticket, inbound)
        session.flush()
        repo.add_event(session, ticket, "created", now, message_id=inbound.message_id,
                       threaded_by=decision.by.value, flags=list(decision.flags),
                       linked_ticket=decision.linked_ticket_id,
                       automatic=list(inbound.automatic))
        repo.add_event(session, ticket, "classified", now, level=classification.level,
                       department=classification.department,
                       priority=classification.priority, tags=list(classification.tags),
                       rules=[{"rule": h.name, "matched": h.matched}
                              for h in classification.hits])
        queued = 0
        draft = respond.acknowledgement(inbound, classification, new_ticket=True)
        if draft is not None:
            kind = "answer" if classification.answer else "acknowledgement"
            enqueue(session, ticket, draft, self._out, at=now, body=inbound.body_text,
                    kind=kind)
            queued += 1
        log.info("ticket.created", ticket_id=ticket.id, ref=ticket.ref,
                 message_id=inbound.message_id, level=ticket.level, acknowledged=bool(queued))
        return Processed(ticket_id=ticket.id, created=True, queued=queued)

    def _reply(self, session: Session, inbound: Inbound, decision: ThreadDecision) -> Processed:
        now = self._clock.now()
        assert decision.ticket_id is not None
        ticket = session.get_one(Ticket, decision.ticket_id)
        self._store_message(session, ticket, inbound)
        ticket.updated_at = now
        repo.add_event(session, ticket, "message.received", now,
                       message_id=inbound.message_id, threaded_by=decision.by.value,
                       matched=decision.matched, automatic=list(inbound.automatic))
        if not inbound.automatic and ticket.status in ("waiting_customer", "resolved"):
            repo.add_event(session, ticket, "status.changed", now, old=ticket.status,
                           new="open", reason="customer replied")
            ticket.status = "open"
        log.info("ticket.updated", ticket_id=ticket.id, ref=ticket.ref,
                 message_id=inbound.message_id, threaded_by=decision.by.value)
        return Processed(ticket_id=ticket.id, created=False, queued=0)

    def _report(
        self, session: Session, inbound: Inbound, report: Report, decision: ThreadDecision
    ) -> Processed | Outcome:
        """A delivery report is recorded on the ticket it reports on, or held."""
        if decision.ticket_id is None:
            return Outcome(Stop.HOLD, f"{report.kind} report for no message maild sent")
        now = self._clock.now()
        ticket = session.get_one(Ticket, decision.ticket_id)
        self._store_message(session, ticket, inbound)
        repo.add_event(session, ticket, f"report.{report.kind}", now,
                       message_id=inbound.message_id, reason=report.reason,
                       recipients=[{"address": r.address, "status": r.status,
                                    "permanent": r.permanent} for r in report.recipients])
        log.info("report.recorded", ticket_id=ticket.id, kind=report.kind)
        return Processed(ticket_id=ticket.id, created=False, queued=0)
