"""Routing: where a parsed message goes, decided from the message and what the database
knew about the keys it carries. A pure function, table-tested (tests/test_route.py), in
the spirit of Mailman's chains: each step may decide, in a fixed order.

1. A Message-ID seen before, or the same bytes without one: discard (a re-fetch).
2. No sender: hold.
3. A delivery report: recorded on the ticket of the mail of ours it reports on, or held.
   An answer to a satisfaction survey (to a ticket's signed rating address): recorded, if
   genuine and from a participant; never a ticket of its own, never acknowledged.
3a. Mail to a wish's signed address (quality management's `#wish-status`, maild/wishes/):
   with a valid signature, to the register (which checks the sender); else held.
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
6. Only a participant (the requester, or someone confirmed) writes into a ticket as a
   customer. Anyone else whose headers point at a message of the ticket (the customer's,
   ours, or one the customers' mail referred to) joins its conversation unconfirmed: the
   message is kept there, and nothing of the ticket reaches them or changes for them. A
   stranger with only the ticket's reference in the subject gets a new, linked, flagged
   ticket (pipeline/thread.py).
7. The intake's mail opens a ticket on a caller's behalf.
8. A reply to its ticket (or a join, from someone unconfirmed), or a new ticket.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from maild.domain import Inbound, ThreadDecision, ThreadedBy
from maild.mailsafety.bounce import Report
from maild.pipeline.thread import RefTicket, candidate_ids, decide_thread, subject_ref
from maild.rules.engine import Organisation
from maild.rules.schema import Agent
from maild.tickets.address import (
    SignedAddress,
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
    rating: SignedAddress | None = None  # a ticket's rating address among its recipients
    wish: SignedAddress | None = None  # a wish's signed address among its recipients
    review: SignedKey | None = None  # a review address among its recipients
    sol: SignedKey | None = None  # a proposed canned answer's address
    queue: SignedKey | None = None  # an agent's queue address (maild/digest/)


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
    rate_re: re.Pattern[str] | None = None
    wish_re: re.Pattern[str] | None = None  # signed wish addresses (tickets/address.py)
    review_re: re.Pattern[str] | None = None  # review addresses (tickets/address.py)
    sol_re: re.Pattern[str] | None = None  # proposed canned answers' addresses
    queue_re: re.Pattern[str] | None = None  # agents' queue addresses
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
                rating=find_signed_address(rules.rate_re, "rate", recipients)
                if rules.rate_re else None,
                wish=find_signed_address(rules.wish_re, "wish", recipients)
                if rules.wish_re else None,
                review=_signed_key(rules, rules.review_re, "review", recipients),
                sol=_signed_key(rules, rules.sol_re, "sol", recipients),
                queue=_signed_key(rules, rules.queue_re, "q", recipients))


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
    rating_ticket: int | None = None  # the ticket of `Keys.rating`'s reference
    # Message-ID -> ticket, of `Keys.ids` that customers' mail referred to (placeholders)
    referenced: Mapping[str, int] = field(default_factory=dict)


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
class Rate:
    """An answer to a satisfaction survey, from a participant, to a genuine rating address."""

    ticket_id: int
    score: int | None  # from a `mailto:` link's address; None: read from the text


@dataclass(frozen=True)
class WishCommandMail:
    """To a wish's signed address: quality management's commands (maild/wishes/inbox.py)."""

    ident: str


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
class QueueMail:
    """To an agent's queue address: their queue commands (maild/digest/queue.py checks
    that the sender is that agent)."""

    ident: str


@dataclass(frozen=True)
class Intake:
    pass


@dataclass(frozen=True)
class Reply:
    decision: ThreadDecision  # with its ticket


@dataclass(frozen=True)
class Join:
    """Someone not (yet) confirmed wrote into a ticket's conversation by its headers."""

    decision: ThreadDecision  # with its ticket


@dataclass(frozen=True)
class Open:
    decision: ThreadDecision  # why new, and what it links to


Route = (Discard | Hold | RecordReport | Rate | WishCommandMail | ReviewMail | SolutionMail
         | QueueMail | AgentMail | RefuseStaff | Intake | Reply | Join | Open)


@dataclass(frozen=True)
class Policy:
    """What routing is told beyond the message and the facts."""

    organisation: Organisation
    verify: Callable[[str], bool]  # is this one of our signed Message-IDs
    reopen_window: timedelta
    now: datetime
    signed: Callable[[str, str], bool] = lambda _text, _signature: False  # signed addresses


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
    signed = _signed_address(inbound, keys, facts, policy)
    if signed is not None:
        return signed
    ref_ticket = None
    if keys.ref is not None and facts.ref_ticket is not None:
        ref_ticket = RefTicket(facts.ref_ticket,
                               facts.tickets[facts.ref_ticket].participants)
    decision = decide_thread(inbound, facts.known, keys.ref, ref_ticket, markers=keys.markers,
                             referenced=facts.referenced, ours=policy.verify)
    decision = _lifecycle(decision, facts, policy)
    staff = _staff_mail(inbound, keys, facts, decision, policy.organisation)
    if staff is not None:
        return staff
    if inbound.sender.address in policy.organisation.intake and not inbound.automatic:
        return Intake()
    if decision.ticket_id is None:
        return Open(decision)
    if _participant(inbound, decision, facts):
        return Reply(decision)
    return Join(dataclasses.replace(decision, flags=(*decision.flags,
                                                     "unconfirmed-participant")))


def _rating(inbound: Inbound, rating: SignedAddress, facts: Facts, policy: Policy) -> Route:
    """A mail to a rating address counts only with a genuine signature, from a participant
    of the ticket, from a person; otherwise it changes nothing."""
    assert inbound.sender is not None
    ref, score = parse_rating_ident(rating.ident) or ("", None)
    if inbound.automatic:
        return Discard("automatic mail to a rating address (" +
                       ", ".join(inbound.automatic) + ")")
    ticket = facts.tickets.get(facts.rating_ticket) if facts.rating_ticket else None
    if not ref or ticket is None or not policy.signed(f"rate-{ref}", rating.signature):
        return Hold(f"rating address with a wrong signature from {inbound.sender.address}: "
                    "not recorded")
    if inbound.sender.address not in ticket.participants:
        return Hold(f"rating for {ref} from {inbound.sender.address}, who is not a "
                    "participant: not recorded")
    assert facts.rating_ticket is not None
    return Rate(facts.rating_ticket, score)


def parse_rating_ident(ident: str) -> tuple[str, int | None] | None:
    """The ticket reference and the score (if any) of a rating address's id
    (`t-k7qf2x` or `t-k7qf2x-4`)."""
    prefix, _, rest = ident.partition("-")
    code, _, score = rest.partition("-")
    if not prefix or not code or (score and not (score.isdigit() and 1 <= int(score) <= 5)):
        return None
    return f"{prefix}-{code}".upper(), int(score) if score else None


def _wish_mail(inbound: Inbound, wish: SignedAddress, policy: Policy) -> Route:
    """Quality management's answer to a wish's notification: only with our signature."""
    if inbound.automatic:
        return Discard("automatic mail to a wish address (" + ", ".join(inbound.automatic)
                       + ")")
    if not policy.signed(f"wish-{wish.ident}", wish.signature):
        sender = inbound.sender.address if inbound.sender else ""
        return Hold(f"wish address for {wish.ident.upper()} with a wrong signature from "
                    f"{sender}: not applied")
    return WishCommandMail(wish.ident)


def _signed_address(inbound: Inbound, keys: Keys, facts: Facts, policy: Policy
                    ) -> Route | None:
    """Mail to one of our signed addresses other than a ticket's: a survey's rating
    address, a wish's, a review's or a proposed answer's."""
    if keys.rating is not None:
        return _rating(inbound, keys.rating, facts, policy)
    if keys.wish is not None:
        return _wish_mail(inbound, keys.wish, policy)
    if keys.review is not None:
        return _signed_mail(inbound, keys.review, "review", ReviewMail)
    if keys.sol is not None:
        return _signed_mail(inbound, keys.sol, "solution", SolutionMail)
    if keys.queue is not None:
        return _signed_mail(inbound, keys.queue, "queue", QueueMail)
    return None


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


def _participant(inbound: Inbound, decision: ThreadDecision, facts: Facts) -> bool:
    """Whether the sender may write into the ticket as its customer: the requester or a
    confirmed participant. The subject path checked that already. Holding one of our
    Message-IDs is not enough: a customer may have forwarded our answer to anyone."""
    assert decision.ticket_id is not None
    if decision.by is ThreadedBy.SUBJECT:
        return True
    sender = inbound.sender.address if inbound.sender else ""
    return sender in facts.tickets[decision.ticket_id].participants
