"""The pipeline: parse → guard → thread → classify → persist → respond, for batches.

* parse and guard: prepared ahead, in worker processes for a backlog (pipeline/prepare.py);
* the batch: one transaction, retry with savepoints, quarantine (pipeline/batch.py);
* per message: its keys are worked out once (`route.keys_of`), read ahead for its group,
  looked up in the ticket store (`_facts`), routed by a pure function (pipeline/route.py)
  and handled (pipeline/handlers.py: thread into a ticket, open one, apply an agent's
  mail, record a report), which classifies, persists and queues the response through the
  ticket service (maild/tickets/).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from maild.agents.handle import AgentDesk
from maild.clock import Clock
from maild.csat.desk import Satisfaction
from maild.digest.queue import Queues
from maild.domain import Classification, Fetched, Inbound, Outcome, Stop
from maild.mailsafety.bounce import Report
from maild.pipeline.batch import BatchResult, BatchRunner, Fence, Processed
from maild.pipeline.classify import Classifier
from maild.pipeline.guard import Guard
from maild.pipeline.handlers import Handlers
from maild.pipeline.language import SHIPPED
from maild.pipeline.prepare import (
    Prepared,
    PreparedBatch,
    PrepareOptions,
    Preparer,
    Result,
    Unparseable,
)
from maild.pipeline.route import (
    Facts,
    KeyRules,
    Keys,
    Policy,
    TicketFacts,
    keys_of,
    parse_rating_ident,
    route,
)
from maild.pipeline.thread import ref_pattern
from maild.rules.engine import RuleEngine, RuleSet
from maild.rules.schema import Actions
from maild.settings import SafetySettings
from maild.store.automail import AutomailCounter
from maild.store.ticketstore import TicketStore
from maild.tickets.address import address_pattern, secret_matches, signed_pattern
from maild.tickets.service import TicketService

__all__ = ["BatchResult", "Pipeline", "Processed"]


@dataclass(frozen=True)
class Work:
    """A prepared message and its keys (None when it could not be prepared)."""

    ready: Result
    keys: Keys | None


class Pipeline:
    """The stages for batches of messages (`batch.Stages`)."""

    def __init__(
        self, *, session_factory: sessionmaker[Session], rules: RuleSet, guard: Guard,
        tickets: TicketService, clock: Clock, default_language: str,
        satisfaction: Satisfaction | None = None,
        safety: SafetySettings, classifier: Classifier | None = None,
        reopen_window: timedelta = timedelta(days=14),
        mailbox_defaults: Mapping[str, Actions] | None = None, parse_workers: int = 0,
        languages: tuple[str, ...] = SHIPPED,
        knowledge_owners: Sequence[str] = (),
        queues: Queues | None = None,
    ) -> None:
        self._mailbox_defaults = mailbox_defaults or {}
        self._reopen_window = reopen_window
        self._preparer = Preparer(PrepareOptions(
            guard=guard, default_language=default_language,
            max_bytes=safety.max_message_bytes, max_attachments=safety.max_attachments,
            languages=languages,
        ), workers=parse_workers)
        self._batches = BatchRunner(session_factory, clock, AutomailCounter(safety))
        self._clock = clock
        self._fixed_classifier = classifier
        self.rules = rules
        self._classifier: Classifier = classifier or RuleEngine(rules, clock,
                                                                self._mailbox_defaults)
        self.tickets = tickets
        support = tickets.outgoing.support.address
        ref_re = ref_pattern(tickets.ref_prefix)
        self._key_rules = KeyRules(verify=tickets.outgoing.ids.verify,
                                   domain=support.rpartition("@")[2], ref_re=ref_re,
                                   agent_re=address_pattern(support, tickets.ref_prefix),
                                   rate_re=signed_pattern(support, "rate"),
                                   wish_re=signed_pattern(support, "wish"),
                                   review_re=signed_pattern(support, "review"),
                                   sol_re=signed_pattern(support, "sol"),
                                   queue_re=signed_pattern(support, "q"),
                                   sign=tickets.outgoing.ids.sign)
        owners = tuple(a.lower() for a in knowledge_owners)
        self._handlers = Handlers(tickets=tickets, desk=AgentDesk(tickets, owners),
                                  knowledge_owners=owners,
                                  classify=self.classify,
                                  organisation=lambda: self.rules.organisation, ref_re=ref_re,
                                  satisfaction=satisfaction, queues=queues)

    def _signed(self, text: str, signature: str) -> bool:
        return secret_matches(signature, self.tickets.outgoing.ids.sign(text))

    def reload(self, rules: RuleSet) -> None:
        """Swap in new rules; a batch in progress finishes with the old."""
        self.rules = rules
        self._classifier = self._fixed_classifier or RuleEngine(rules, self._clock,
                                                                self._mailbox_defaults)

    def classify(self, inbound: Inbound) -> Classification:
        return self._classifier.classify(inbound)

    def start(self, *, wait: bool = False) -> None:
        """Start the parse workers before the first backlog (in the background unless
        `wait`)."""
        self._preparer.start(wait=wait)

    def prepare(self, items: Sequence[Fetched]) -> PreparedBatch:
        """Start parsing `items` ahead of `process_batch` (in the parse workers)."""
        return self._preparer.submit(items)

    def process_batch(self, items: Sequence[Fetched], prepared: PreparedBatch | None = None,
                      fence: Fence | None = None) -> BatchResult:
        """Process `items` in one transaction. Raises only when the commit is impossible."""
        return self._batches.run(items, prepared or self.prepare(items), self, fence)

    def close(self) -> None:
        self._preparer.close()

    def parse_worker_pids(self) -> list[int]:
        return self._preparer.worker_pids()

    # -- batch.Stages ----------------------------------------------------------------
    def look(self, ready: Result) -> Work:
        if not isinstance(ready, Prepared):
            return Work(ready, None)
        return Work(ready, keys_of(ready.inbound, ready.report, self._key_rules))

    def read_ahead(self, store: TicketStore, group: Sequence[Work]) -> None:
        ids: list[str] = []
        refs: list[str] = []
        recipients: list[str] = []
        for work in group:
            if work.keys is None:
                continue
            assert isinstance(work.ready, Prepared)
            inbound = work.ready.inbound
            ids.extend(work.keys.ids)
            refs.extend(r for r in (work.keys.ref, work.keys.target and work.keys.target.ref)
                        if r)
            if inbound.sender is not None and not inbound.automatic:
                recipients.append(inbound.sender.address)
        store.read_ahead(message_ids=ids, refs=refs, recipients=recipients,
                         now=self._clock.now())

    def process(self, store: TicketStore, item: Fetched, work: Work) -> Processed | Outcome:
        """One message through every stage, inside the caller's transaction."""
        earlier = store.quarantined_before(item.source.key)
        if earlier is not None:
            return Outcome(Stop.HOLD, earlier)  # back to the quarantine folder
        ready = work.ready
        if isinstance(ready, Exception):
            raise ready  # raised while parsing: handled as if raised here
        if isinstance(ready, Unparseable):
            return Outcome(Stop.HOLD, ready.reason)
        assert isinstance(ready, Prepared) and work.keys is not None
        inbound, report = ready.inbound, ready.report
        facts = self._facts(store, inbound, report, work.keys)
        decided = route(inbound, report, work.keys, facts, Policy(
            organisation=self.rules.organisation, verify=self._key_rules.verify,
            reopen_window=self._reopen_window, now=self._clock.now(), signed=self._signed))
        result = self._handlers.handle(store, inbound, report, decided)
        if isinstance(result, Processed):
            # Whatever changed (a new ticket, a reply, a command): deadlines follow.
            ticket = store.ticket(result.ticket_id)
            self.tickets.sla.refresh(ticket)
            return dataclasses.replace(result, routed=(ticket.level, ticket.department))
        return result

    @staticmethod
    def _facts(store: TicketStore, inbound: Inbound, report: Report | None,
               keys: Keys) -> Facts:
        """What the database knows about the message's keys: one lookup tells whether it
        is known (a re-fetch, a second delivery) and which tickets the messages it refers
        to belong to."""
        known = store.tickets_for_message_ids(keys.ids)
        if inbound.message_id in known:  # a duplicate: nothing else matters
            return Facts(known, False, None, None, {})
        delivered = not inbound.message_id and store.delivered_before(inbound)
        ref_ticket = store.ticket_id_by_ref(keys.ref) if keys.ref and not report else None
        target = (store.ticket_id_by_ref(keys.target.ref)
                  if keys.target and not report else None)
        rated = parse_rating_ident(keys.rating.ident) if keys.rating and not report else None
        rating = store.ticket_id_by_ref(rated[0]) if rated else None
        referenced = store.tickets_for_references(keys.ids) if not report else {}
        tickets: dict[int, TicketFacts] = {}
        if not report:
            for ticket_id in {*known.values(), *referenced.values(), ref_ticket, target,
                              rating} - {None}:
                assert ticket_id is not None
                ticket = store.ticket(ticket_id)
                tickets[ticket_id] = TicketFacts(
                    status=ticket.status, closed_at=ticket.closed_at, secret=ticket.secret,
                    participants=store.participants(ticket_id))
        return Facts(known, delivered, ref_ticket, target, tickets,
                     rating_ticket=rating, referenced=referenced)
