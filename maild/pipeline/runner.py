"""The runner: fetched bytes through every stage, one database transaction per batch.

Parsing and inspection come prepared (pipeline/prepare.py, in worker processes for a
backlog); the runner takes each message's result in order and does the rest. A batch first
runs without savepoints, keeping notes of what it adds so its lookups need no flush and its
rows are written together at the end (store/pending.py). A stage that stops a message
returns an `Outcome`. Should a message fail unexpectedly, the batch is run again with a
savepoint per message: the failing one's savepoint is rolled back, it is quarantined with
its raw bytes and the reason, and the batch goes on. Database errors are different: they
abort the whole batch so nothing is acknowledged on IMAP, and the caller retries later.

Only after the batch commits does the caller touch IMAP (DESIGN.md: acknowledge after commit).
"""

from __future__ import annotations

import dataclasses
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta

import structlog
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from maild.agents.address import address_pattern, find_ticket_address, secret_matches
from maild.agents.handle import AgentDesk, intake_classification
from maild.agents.parse import INTAKE_COMMANDS, parse_agent_text
from maild.clock import Clock
from maild.domain import (
    Address,
    Classification,
    Fetched,
    Inbound,
    Outcome,
    SourceRef,
    Stop,
    ThreadDecision,
    ThreadedBy,
)
from maild.mailsafety.bounce import Report
from maild.mailsafety.limits import AutoLimiter
from maild.outbound.queue import Outgoing
from maild.pipeline.classify import Classifier
from maild.pipeline.guard import Guard
from maild.pipeline.persist import TicketWriter
from maild.pipeline.prepare import (
    Prepared,
    PreparedBatch,
    PrepareOptions,
    Preparer,
    Result,
    Unparseable,
)
from maild.pipeline.thread import (
    candidate_ids,
    decide_thread,
    ref_pattern,
    strip_ref,
    subject_ref,
)
from maild.rules.engine import RuleEngine, RuleSet
from maild.rules.schema import Actions
from maild.settings import SafetySettings
from maild.sla.engine import SlaEngine
from maild.store import pending, repo
from maild.store.models import Quarantine

log = structlog.get_logger("maild.pipeline")


class _RetryWithSavepoints(Exception):
    """A message failed in a batch run without savepoints: run it again with them."""


@dataclass
class BatchResult:
    """What happened to each fetched message; the caller acts on IMAP accordingly."""

    done: list[SourceRef] = field(default_factory=list)
    held: list[tuple[SourceRef, str]] = field(default_factory=list)
    discarded: int = 0  # among `done`: duplicates and the like, stored nowhere
    created: list[tuple[int, str | None]] = field(default_factory=list)  # (level, department)
    queued: int = 0

    @property
    def tickets_created(self) -> int:
        return len(self.created)


@dataclass(frozen=True)
class Processed:
    ticket_id: int
    created: bool
    queued: int
    routed: tuple[int, str | None] = (1, None)  # level and department, for the metrics


class Pipeline:
    """Parse → guard → thread → classify → persist → respond, for batches of messages."""

    def __init__(
        self, *, session_factory: sessionmaker[Session], rules: RuleSet, guard: Guard,
        outgoing: Outgoing, clock: Clock, ref_prefix: str, default_language: str,
        sla: SlaEngine, safety: SafetySettings, classifier: Classifier | None = None,
        reopen_window: timedelta = timedelta(days=14),
        mailbox_defaults: Mapping[str, Actions] | None = None, parse_workers: int = 0,
    ) -> None:
        self._mailbox_defaults = mailbox_defaults or {}
        self._limiter = AutoLimiter(safety)
        self._reopen_window = reopen_window
        self._sessions = session_factory
        self._preparer = Preparer(PrepareOptions(
            guard=guard, default_language=default_language,
            max_bytes=safety.max_message_bytes, max_attachments=safety.max_attachments,
        ), workers=parse_workers)
        self._clock = clock
        self._ref_re = ref_pattern(ref_prefix)
        self._agent_re = address_pattern(outgoing.support.address)
        self._fixed_classifier = classifier
        self._rules = rules
        self._classifier: Classifier = classifier or RuleEngine(rules, clock,
                                                                self._mailbox_defaults)
        self.writer = TicketWriter(outgoing=outgoing, clock=clock, ref_prefix=ref_prefix,
                                   organisation=lambda: self._rules.organisation, sla=sla,
                                   limiter=self._limiter)
        self.desk = AgentDesk(self.writer)

    @property
    def outgoing(self) -> Outgoing:
        return self.writer.outgoing

    def reload(self, rules: RuleSet, outgoing: Outgoing) -> None:
        """Swap in new rules and templates; a batch in progress finishes with the old."""
        self._rules = rules
        self._classifier = self._fixed_classifier or RuleEngine(rules, self._clock,
                                                                self._mailbox_defaults)
        self.writer.outgoing = outgoing

    def classify(self, inbound: Inbound) -> Classification:
        return self._classifier.classify(inbound)

    def start(self, *, wait: bool = False) -> None:
        """Start the parse workers before the first backlog (in the background unless
        `wait`)."""
        self._preparer.start(wait=wait)

    def prepare(self, items: Sequence[Fetched]) -> PreparedBatch:
        """Start parsing `items` ahead of `process_batch` (in the parse workers)."""
        return self._preparer.submit(items)

    def process_batch(self, items: Sequence[Fetched],
                      prepared: PreparedBatch | None = None) -> BatchResult:
        """Process `items` in one transaction. Raises only when the commit is impossible.

        The batch first runs without savepoints (they cost a round trip each). Should a
        message fail unexpectedly, that attempt is rolled back whole and the batch is run
        again with a savepoint per message, so only the failing one is quarantined.
        """
        prepared = prepared or self.prepare(items)
        try:
            return self._run_batch(items, prepared, savepoints=False)
        except (_RetryWithSavepoints, DataError):
            return self._run_batch(items, prepared, savepoints=True)

    def _run_batch(self, items: Sequence[Fetched], prepared: PreparedBatch, *,
                   savepoints: bool) -> BatchResult:
        result = BatchResult()
        with self._sessions() as session, session.begin():
            noted = None if savepoints else pending.start(session)
            if noted is not None:
                noted.quarantined = repo.quarantined_among(session,
                                                           [i.source.key for i in items])
            done = 0
            for group in prepared.groups():
                if noted is not None:
                    self._read_ahead(session, group)
                for item, ready in zip(items[done:done + len(group)], group, strict=True):
                    self._process_item(session, item, ready, result, savepoints)
                done += len(group)
            if noted is not None:
                try:
                    noted.write(session)
                except (IntegrityError, DataError) as exc:
                    # A row the notes did not foresee (they check what the lookups
                    # check): message by message, with savepoints, the culprit is found.
                    raise _RetryWithSavepoints from exc
        return result

    def _read_ahead(self, session: Session, results: Sequence[Result]) -> None:
        """What the lookups of these messages will ask the database, read in a few queries
        (the batch's notes keep it): threading, participants, limits on automatic mail."""
        ids: list[str] = []
        refs: list[str] = []
        recipients: list[str] = []
        for ready in results:
            if not isinstance(ready, Prepared):
                continue
            inbound = ready.inbound
            ids.extend(self._lookup_ids(inbound, ready.report)[0])
            ref = subject_ref(inbound.subject, self._ref_re)
            if ref:
                refs.append(ref)
            if inbound.sender is not None and not inbound.automatic:
                recipients.append(inbound.sender.address)
        repo.read_ahead(session, message_ids=ids, refs=refs)
        self._limiter.read_ahead(session, recipients, self._clock.now())

    def _lookup_ids(self, inbound: Inbound, report: Report | None
                    ) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
        """The Message-IDs to look up for `inbound` (its own first, then those it refers
        to), the verified ids of its body markers, and the verified ids a report names."""
        verify = self.outgoing.ids.verify
        domain = self.outgoing.support.address.rpartition("@")[2]
        markers = tuple(m for m in (f"maild.{t}@{domain}" for t in inbound.markers)
                        if verify(m))
        # A delivery report counts only for mail maild really sent: a signed Message-ID.
        reported = tuple(m for m in report.original_message_ids if verify(m)) if report else ()
        own = (inbound.message_id,) if inbound.message_id else ()
        return (*own, *reported, *candidate_ids(inbound), *markers), markers, reported

    def _process_item(self, session: Session, item: Fetched, prepared: Result,
                      result: BatchResult, savepoints: bool) -> None:
        try:
            if savepoints:
                with session.begin_nested():
                    outcome = self.process(session, item, prepared)
            else:
                outcome = self.process(session, item, prepared)
        except DataError as exc:
            # The message carried something the database refuses (a value it cannot
            # store): quarantine it, or the mailbox would be stuck behind it for ever.
            if not savepoints:
                raise
            self._hold_after_error(session, item, result, exc)
            return
        except SQLAlchemyError:
            raise  # the database is the problem, not the message: retry the batch later
        except Exception as exc:
            if not savepoints:
                raise _RetryWithSavepoints from exc
            self._hold_after_error(session, item, result, exc)
            return
        if isinstance(outcome, Outcome):
            if outcome.stop is Stop.HOLD:
                self._quarantine(session, item, outcome.reason)
                result.held.append((item.source, outcome.reason))
            else:
                result.done.append(item.source)
                result.discarded += 1
            event = "message.held" if outcome.stop is Stop.HOLD else "message.discarded"
            log.info(event, mailbox=item.source.mailbox, uid=item.source.uid,
                     reason=outcome.reason)
            return
        result.done.append(item.source)
        result.queued += outcome.queued
        if outcome.created:
            result.created.append(outcome.routed)

    def _hold_after_error(self, session: Session, item: Fetched, result: BatchResult,
                          exc: Exception) -> None:
        reason = f"{type(exc).__name__}: {exc}"[:2000]
        log.warning("message.quarantined", mailbox=item.source.mailbox, uid=item.source.uid,
                    reason=reason, trace=traceback.format_exc(limit=5))
        self._quarantine(session, item, reason)
        result.held.append((item.source, reason))

    def _quarantine(self, session: Session, item: Fetched, reason: str) -> None:
        if repo.quarantined_before(session, item.source.key) is not None:
            return  # fetched again after a crash before the IMAP move: recorded already
        session.add(Quarantine(
            source_key=item.source.key, message_id=None, reason=reason, raw=item.raw,
            created_at=self._clock.now(),
        ))

    def close(self) -> None:
        self._preparer.close()

    def parse_worker_pids(self) -> list[int]:
        return self._preparer.worker_pids()

    def process(self, session: Session, item: Fetched, prepared: Result) -> Processed | Outcome:
        """One message through every stage, inside the caller's transaction."""
        result = self._process(session, item.source, prepared)
        if isinstance(result, Processed):
            # Whatever changed (a new ticket, a reply, a command): deadlines follow.
            ticket = repo.ticket(session, result.ticket_id)
            self.writer.sla.refresh(ticket)
            return dataclasses.replace(result, routed=(ticket.level, ticket.department))
        return result

    def _process(self, session: Session, source: SourceRef, prepared: Result
                 ) -> Processed | Outcome:
        earlier = repo.quarantined_before(session, source.key)
        if earlier is not None:
            return Outcome(Stop.HOLD, earlier)  # back to the quarantine folder
        if isinstance(prepared, Exception):
            raise prepared  # raised while parsing: handled as if raised here
        if isinstance(prepared, Unparseable):
            return Outcome(Stop.HOLD, prepared.reason)
        inbound, report = prepared.inbound, prepared.report
        # One lookup answers both: is this message known (a re-fetch after a crash, a
        # second delivery), and which tickets do the messages it refers to belong to?
        ids, markers, reported = self._lookup_ids(inbound, report)
        known = repo.tickets_for_message_ids(session, ids)
        if inbound.message_id in known:
            return Outcome(Stop.DISCARD, "duplicate Message-ID")
        if not inbound.message_id and repo.delivered_before(session, inbound):
            return Outcome(Stop.DISCARD, "duplicate delivery (no Message-ID)")
        if inbound.sender is None:
            return Outcome(Stop.HOLD, "no sender address (From) in the message")
        org = self._rules.organisation
        ref = subject_ref(inbound.subject, self._ref_re)
        if report is not None:
            return self._report(session, inbound, report, reported, known)
        decision = decide_thread(
            inbound, known, ref, repo.ref_ticket(session, ref) if ref else None,
            markers=markers)
        decision = self._lifecycle(session, decision)
        staff = self._staff_mail(session, inbound, decision)
        if staff is not None:
            return staff
        decision = self._participants_only(session, inbound, decision)
        if inbound.sender.address in org.intake and not inbound.automatic:
            return self._intake(session, inbound)
        if decision.ticket_id is not None:
            return self._reply(session, inbound, decision)
        return self._new_ticket(session, inbound, decision)

    def _lifecycle(self, session: Session, decision: ThreadDecision) -> ThreadDecision:
        """A ticket closed longer ago than the reopen window is not continued: a new one
        links to it."""
        if decision.ticket_id is None:
            return decision
        ticket = repo.ticket(session, decision.ticket_id)
        if ticket.status != "closed" or ticket.closed_at is None:
            return decision
        if self._clock.now() - ticket.closed_at <= self._reopen_window:
            return decision
        return ThreadDecision(ticket_id=None, by=ThreadedBy.NEW, matched=decision.matched,
                              linked_ticket_id=ticket.id, flags=("follow-up-of-closed",))

    def _participants_only(self, session: Session, inbound: Inbound,
                           decision: ThreadDecision) -> ThreadDecision:
        """Only a participant, or someone holding one of our signed Message-IDs, may write
        into a ticket. A stranger who quotes a customer's Message-ID gets a linked ticket."""
        if decision.ticket_id is None or decision.by is ThreadedBy.SUBJECT:
            return decision  # the subject path checks participants itself
        if decision.matched and self.outgoing.ids.verify(decision.matched):
            return decision
        participants = repo.participants(session, decision.ticket_id)
        sender = inbound.sender.address if inbound.sender else ""
        if sender in participants:
            return decision
        return ThreadDecision(ticket_id=None, by=ThreadedBy.NEW, matched=decision.matched,
                              linked_ticket_id=decision.ticket_id,
                              flags=("header-ref-from-non-participant",))

    def _staff_mail(self, session: Session, inbound: Inbound,
                    decision: ThreadDecision) -> Processed | Outcome | None:
        """Mail to a ticket's secret address, or from an agent: the agents' path.

        Both the sender in the directory and the ticket's secret are needed. A forged reply
        (right From, no or wrong secret) to an existing ticket changes nothing: it is held
        for a person to look at.
        """
        assert inbound.sender is not None
        org = self._rules.organisation
        sender = inbound.sender.address
        recipients = [a.address for a in (*inbound.to, *inbound.cc)]
        for name in ("Delivered-To", "X-Original-To"):
            value = inbound.header(name)
            if value:
                recipients.append(value.strip("<> "))
        target = find_ticket_address(self._agent_re, recipients)
        agent = org.agents.get(sender)
        if target is None and agent is None:
            return None
        if inbound.automatic:
            return Outcome(Stop.DISCARD, "automatic mail on the agents' path (" +
                           ", ".join(inbound.automatic) + ")")
        if target is None:
            if decision.ticket_id is not None:
                return Outcome(Stop.HOLD, f"mail from agent {sender} refers to a ticket but "
                               "not through its reply address: not applied")
            return None  # an agent writing to support like anyone else: a new ticket
        ticket = repo.ticket_by_ref(session, target.ref)
        if ticket is None or not secret_matches(target.secret, ticket.secret):
            return Outcome(Stop.HOLD, f"reply address for {target.ref} with a wrong secret "
                           f"from {sender}: not applied")
        if agent is None:
            return Outcome(Stop.HOLD, f"{sender} used the reply address of {ticket.ref} but "
                           "is not in the agents directory: not applied")
        applied = self.desk.handle_reply(session, ticket, agent, inbound)
        return Processed(ticket_id=ticket.id, created=False, queued=int(applied.relayed))

    def _intake(self, session: Session, inbound: Inbound) -> Processed | Outcome:
        """The secretariat logs a call: `#customer ADDRESS`, optionally #level N,
        #department D and #priority P on the first lines, then the call notes."""
        assert inbound.sender is not None
        parsed = parse_agent_text(inbound.body_text, INTAKE_COMMANDS)
        fields = {c.name: c.argument.strip() for c in parsed.commands}
        customer = fields.get("customer", "").strip("<> ").lower()
        if "@" not in customer or parsed.unknown:
            return Outcome(Stop.HOLD, "intake mail needs '#customer ADDRESS' on its first "
                           "lines (and knows only #customer #level #department #priority)")
        try:
            classification = intake_classification(
                self._classifier.classify(inbound), fields, self._rules.organisation)
        except ValueError as exc:
            return Outcome(Stop.HOLD, f"intake mail: {exc}")
        ticket = self.desk.open_on_behalf(
            session, customer=Address("", customer),
            subject=strip_ref(inbound.subject, self._ref_re), text=parsed.text,
            classification=classification, language=inbound.language,
            opened_by=inbound.sender.address, inbound=inbound)
        return Processed(ticket_id=ticket.id, created=True, queued=1)

    def _new_ticket(
        self, session: Session, inbound: Inbound, decision: ThreadDecision
    ) -> Processed:
        sender = inbound.sender
        assert sender is not None
        classification = self._classifier.classify(inbound)
        subject = strip_ref(inbound.subject, self._ref_re)
        w = self.writer
        ticket = w.open_ticket(session, requester=sender, subject=subject,
                               classification=classification, language=inbound.language,
                               mailbox=inbound.source.mailbox if inbound.source else None,
                               decision=decision)
        w.store_message(session, ticket, inbound)
        if inbound.notes:
            repo.add_event(session, ticket, "limits.applied", self._clock.now(),
                           notes=list(inbound.notes))
        queued = w.acknowledge(session, ticket, inbound, classification, sender,
                               inbound.body_text)
        if not inbound.automatic:
            w.notify(session, ticket, w.default_team(ticket), headline="New ticket",
                     text=inbound.body_text, author=sender.formatted())
            for team in classification.notify:
                w.notify(session, ticket, team, headline="New ticket (rule)",
                         text=inbound.body_text, author=sender.formatted())
        log.info("ticket.created", ticket_id=ticket.id, ref=ticket.ref,
                 message_id=inbound.message_id, level=ticket.level, acknowledged=bool(queued))
        return Processed(ticket_id=ticket.id, created=True, queued=queued)

    def _reply(self, session: Session, inbound: Inbound, decision: ThreadDecision) -> Processed:
        now = self._clock.now()
        assert decision.ticket_id is not None
        ticket = repo.ticket(session, decision.ticket_id)
        self.writer.store_message(session, ticket, inbound)
        ticket.updated_at = now
        repo.add_event(session, ticket, "message.received", now,
                       message_id=inbound.message_id, threaded_by=decision.by.value,
                       matched=decision.matched, automatic=list(inbound.automatic))
        if not inbound.automatic:
            if ticket.status in ("waiting_customer", "resolved", "closed"):
                self.writer.set_status(session, ticket, "open", "customer replied")
            if ticket.first_response_at is not None and ticket.awaiting_reply_since is None:
                ticket.awaiting_reply_since = now  # the next-response clock starts
            team = ticket.assignee or self.writer.default_team(ticket)
            self.writer.notify(session, ticket, team, headline="The customer replied",
                               text=inbound.body_text, author=inbound.sender.formatted()
                               if inbound.sender else "")
        log.info("ticket.updated", ticket_id=ticket.id, ref=ticket.ref,
                 message_id=inbound.message_id, threaded_by=decision.by.value)
        return Processed(ticket_id=ticket.id, created=False, queued=0)

    def _report(
        self, session: Session, inbound: Inbound, report: Report, reported: tuple[str, ...],
        known: dict[str, int],
    ) -> Processed | Outcome:
        """A delivery report is recorded on the ticket of the message it reports on (a
        message maild sent, by its signed Message-ID), or held. Never answered."""
        ticket_id = next((known[m] for m in reported if m in known), None)
        if ticket_id is None:
            return Outcome(Stop.HOLD, f"{report.kind} report for no message maild sent")
        now = self._clock.now()
        ticket = repo.ticket(session, ticket_id)
        for failed in report.recipients:
            if report.kind == "failure" and failed.permanent:
                self._limiter.suppress(session, failed.address,
                                       f"permanent failure: {failed.status or ''} "
                                       f"{failed.diagnostic or report.reason}".strip(), now)
        self.writer.store_message(session, ticket, inbound)
        repo.add_event(session, ticket, f"report.{report.kind}", now,
                       message_id=inbound.message_id, reason=report.reason,
                       recipients=[{"address": r.address, "status": r.status,
                                    "permanent": r.permanent} for r in report.recipients])
        log.info("report.recorded", ticket_id=ticket.id, kind=report.kind)
        return Processed(ticket_id=ticket.id, created=False, queued=0)
