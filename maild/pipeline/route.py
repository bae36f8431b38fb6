"""Routing: where a parsed message goes, decided from the message and what the database
knew about the keys it carries. A pure function, table-tested (tests/test_route.py), in
the spirit of Mailman's chains: each step may decide, in a fixed order.

1. A Message-ID seen before, or the same bytes without one: discard (a re-fetch).
2. No sender: hold.
3. A delivery report: recorded on the ticket of the mail of ours it reports on, or held.
3b. Mail to a review address (`support+review-<id>.<signature>@`, a trainee's draft or an
   internal question, maild/training/): with a valid signature, to the mentor's desk
   (which checks the sender); a wrong signature is held. The same for a proposed canned
   answer's address (`support+sol-<id>...`, maild/knowledge/) and its knowledge owners.
4. Threading (pipeline/thread.py), then the lifecycle: a ticket closed longer ago than the
   reopen window is not continued; a new ticket links to it.
5. Staff mail (to a ticket's secret address, or from the agents directory): applied only
   with both the directory and the right secret; otherwise held (and an agent who wrote
   about a ticket told why). An agent writing to support about no ticket opens one of
   their own, never acknowledged as a customer's.
6. Only a participant, or someone holding one of our signed Message-IDs, writes into a
   ticket by its headers: a stranger gets a new, linked, flagged ticket.
7. The intake's mail opens a ticket on a caller's behalf.
8. A reply to its ticket, or a new ticket.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from maild.domain import Inbound, ThreadDecision, ThreadedBy
from maild.mailsafety.bounce import Report
from maild.pipeline.thread import RefTicket, candidate_ids, decide_thread, subject_ref
from maild.rules.engine import Organisation
from maild.rules.schema import Agent
from maild.tickets.address import (
    TicketAddress,
    find_signed_address,
    find_ticket_address,
    secret_matches,
)

MAX_IDS = 200  # Message-IDs looked up for one message


@dataclass(frozen=True)
class Keys:
    """What a message is looked up by, worked out once a message."""

    ids: tuple[str, ...]  # its own Message-ID first, then those it refers to
    markers: tuple[str, ...]  # verified Message-IDs behind our body markers in its text
    reported: tuple[str, ...]  # verified Message-IDs a delivery report names
    ref: str | None  # the ticket reference in its subject
    target: TicketAddress | None  # a ticket's secret reply address among its recipients
    review: SignedKey | None = None  # a review address among its recipients
    sol: SignedKey | None = None  # a proposed canned answer's address


@dataclass(frozen=True)
class SignedKey:
    ident: str  # lower case
    valid: bool  # its signature is ours


@dataclass(frozen=True)
class KeyRules:
    """How keys are read: our signed Message-IDs, the reference and reply-address forms."""

    verify: Callable[[str], bool]  # is this one of our signed Message-IDs
    domain: str  # of the support address (body markers)
    ref_re: re.Pattern[str]
    agent_re: re.Pattern[str]
    review_re: re.Pattern[str] | None = None  # review addresses (tickets/address.py)
    sol_re: re.Pattern[str] | None = None  # proposed canned answers' addresses
    sign: Callable[[str], str] | None = None  # the signature of a signed address's text


def keys_of(inbound: Inbound, report: Report | None, rules: KeyRules) -> Keys:
    markers = tuple(m for m in (f"maild.{t}@{rules.domain}" for t in inbound.markers)
                    if rules.verify(m))
    # A delivery report counts only for mail maild really sent: a signed Message-ID.
    reported = (tuple(m for m in report.original_message_ids if rules.verify(m))
                if report else ())
    own = (inbound.message_id,) if inbound.message_id else ()
    recipients = [a.address for a in (*inbound.to, *inbound.cc)]
    for name in ("Delivered-To", "X-Original-To"):
        value = inbound.header(name)
        if value:
            recipients.append(value.strip("<> "))
    return Keys(ids=(*own, *reported, *candidate_ids(inbound), *markers)[:MAX_IDS],
                markers=markers, reported=reported, ref=subject_ref(inbound.subject,
                                                                    rules.ref_re),
                target=find_ticket_address(rules.agent_re, recipients),
                review=_signed_key(rules, rules.review_re, "review", recipients),
                sol=_signed_key(rules, rules.sol_re, "sol", recipients))


def _signed_key(rules: KeyRules, pattern: re.Pattern[str] | None, tag: str,
                recipients: list[str]) -> SignedKey | None:
    if pattern is None or rules.sign is None:
        return None
    found = find_signed_address(pattern, tag, recipients)
    if found is None:
        return None
    return SignedKey(found.ident, secret_matches(found.signature,
                                                 rules.sign(f"{tag}-{found.ident}")))


@dataclass(frozen=True)
class TicketFacts:
    """What routing needs to know of a ticket the message may belong to."""

    status: str
    closed_at: datetime | None
    participants: frozenset[str]
    secret: str


@dataclass(frozen=True)
class Facts:
    """What the database knew about a message's keys."""

    known: Mapping[str, int]  # Message-ID -> ticket, of `Keys.ids`
    delivered_before: bool  # without a Message-ID: the same position or bytes are stored
    ref_ticket: int | None  # the ticket of `Keys.ref`
    target_ticket: int | None  # the ticket of `Keys.target`'s reference
    tickets: Mapping[int, TicketFacts]  # every ticket named above


@dataclass(frozen=True)
class Discard:
    reason: str


@dataclass(frozen=True)
class Hold:
    reason: str


@dataclass(frozen=True)
class RecordReport:
    ticket_id: int


@dataclass(frozen=True)
class AgentMail:
    ticket_id: int
    agent: Agent


@dataclass(frozen=True)
class RefuseStaff:
    """Staff mail about a ticket without its valid secret: held, and the agent told why."""

    ticket_id: int
    agent: Agent
    reason: str


@dataclass(frozen=True)
class ReviewMail:
    """To a review address: a mentor's decision on a draft, or an answer to a question
    (maild/agents/review.py checks who sent it)."""

    ident: str


@dataclass(frozen=True)
class SolutionMail:
    """To a proposed canned answer's address: a knowledge owner's #accept or #decline
    (maild/agents/knowledge.py checks the owner)."""

    ident: str


@dataclass(frozen=True)
class Intake:
    pass


@dataclass(frozen=True)
class Reply:
    decision: ThreadDecision  # with its ticket


@dataclass(frozen=True)
class Open:
    decision: ThreadDecision  # why new, and what it links to


Route = (Discard | Hold | RecordReport | ReviewMail | SolutionMail | AgentMail | RefuseStaff
         | Intake | Reply | Open)


@dataclass(frozen=True)
class Policy:
    """What routing is told beyond the message and the facts."""

    organisation: Organisation
    verify: Callable[[str], bool]  # is this one of our signed Message-IDs
    reopen_window: timedelta
    now: datetime


def route(inbound: Inbound, report: Report | None, keys: Keys, facts: Facts,
          policy: Policy) -> Route:
    if inbound.message_id in facts.known:
        return Discard("duplicate Message-ID")
    if not inbound.message_id and facts.delivered_before:
        return Discard("duplicate delivery (no Message-ID)")
    if inbound.sender is None:
        return Hold("no sender address (From) in the message")
    if report is not None:
        ticket_id = next((facts.known[m] for m in keys.reported if m in facts.known), None)
        if ticket_id is None:
            return Hold(f"{report.kind} report for no message maild sent")
        return RecordReport(ticket_id)
    if keys.review is not None:
        return _signed_mail(inbound, keys.review, "review", ReviewMail)
    if keys.sol is not None:
        return _signed_mail(inbound, keys.sol, "solution", SolutionMail)
    ref_ticket = None
    if keys.ref is not None and facts.ref_ticket is not None:
        ref_ticket = RefTicket(facts.ref_ticket,
                               facts.tickets[facts.ref_ticket].participants)
    decision = decide_thread(inbound, facts.known, keys.ref, ref_ticket, markers=keys.markers)
    decision = _lifecycle(decision, facts, policy)
    staff = _staff_mail(inbound, keys, facts, decision, policy.organisation)
    if staff is not None:
        return staff
    decision = _participants_only(inbound, decision, facts, policy)
    if inbound.sender.address in policy.organisation.intake and not inbound.automatic:
        return Intake()
    if decision.ticket_id is not None:
        return Reply(decision)
    return Open(decision)


def _signed_mail(inbound: Inbound, key: SignedKey, kind: str,
                 make: Callable[[str], Route]) -> Route:
    """A reply to a review mail, a question or a proposal: only with our signature."""
    if inbound.automatic:
        return Discard(f"automatic mail to a {kind} address ("
                       + ", ".join(inbound.automatic) + ")")
    if not key.valid:
        sender = inbound.sender.address if inbound.sender else ""
        return Hold(f"{kind} address {key.ident} with a wrong signature from {sender}: "
                    "not applied")
    return make(key.ident)


def _lifecycle(decision: ThreadDecision, facts: Facts, policy: Policy) -> ThreadDecision:
    """A ticket closed longer ago than the reopen window is not continued: a new one links
    to it."""
    if decision.ticket_id is None:
        return decision
    ticket = facts.tickets[decision.ticket_id]
    if ticket.status != "closed" or ticket.closed_at is None:
        return decision
    if policy.now - ticket.closed_at <= policy.reopen_window:
        return decision
    return ThreadDecision(ticket_id=None, by=ThreadedBy.NEW, matched=decision.matched,
                          linked_ticket_id=decision.ticket_id, flags=("follow-up-of-closed",))


def _staff_mail(inbound: Inbound, keys: Keys, facts: Facts, decision: ThreadDecision,
                org: Organisation) -> Route | None:
    """Mail to a ticket's secret address, or from an agent: the agents' path.

    Both the sender in the directory and the ticket's secret are needed. A forged reply
    (right From, no or wrong secret) to an existing ticket changes nothing: it is held
    for a person to look at.
    """
    assert inbound.sender is not None
    sender = inbound.sender.address
    target, agent = keys.target, org.agents.get(sender)
    if target is None and agent is None:
        return None
    if inbound.automatic:
        return Discard("automatic mail on the agents' path (" +
                       ", ".join(inbound.automatic) + ")")
    if target is None:
        about = decision.ticket_id or decision.linked_ticket_id
        if about is not None and agent is not None:
            # Staff mail, never a customer's: by its headers or only by the reference in
            # its subject, it is about a ticket, but it lacks the ticket's secret.
            return RefuseStaff(about, agent, f"mail from agent {sender} refers to a ticket "
                               "but was not sent to its reply address: not applied")
        return None  # an agent writing to support about nothing: a ticket of their own
    ticket = facts.tickets.get(facts.target_ticket) if facts.target_ticket else None
    if ticket is None or not secret_matches(target.secret, ticket.secret):
        reason = (f"reply address for {target.ref} with a wrong secret from {sender}: "
                  "not applied")
        if ticket is not None and agent is not None:
            assert facts.target_ticket is not None
            return RefuseStaff(facts.target_ticket, agent, reason)
        return Hold(reason)
    if agent is None:
        return Hold(f"{sender} used the reply address of {target.ref} but is not in the "
                    "agents directory: not applied")
    assert facts.target_ticket is not None
    return AgentMail(facts.target_ticket, agent)


def _participants_only(inbound: Inbound, decision: ThreadDecision, facts: Facts,
                       policy: Policy) -> ThreadDecision:
    """Only a participant, or someone holding one of our signed Message-IDs, may write
    into a ticket. A stranger who quotes a customer's Message-ID gets a linked ticket."""
    if decision.ticket_id is None or decision.by is ThreadedBy.SUBJECT:
        return decision  # the subject path checks participants itself
    if decision.matched and policy.verify(decision.matched):
        return decision
    sender = inbound.sender.address if inbound.sender else ""
    if sender in facts.tickets[decision.ticket_id].participants:
        return decision
    return ThreadDecision(ticket_id=None, by=ThreadedBy.NEW, matched=decision.matched,
                          linked_ticket_id=decision.ticket_id,
                          flags=("header-ref-from-non-participant",))
