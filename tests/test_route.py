"""Routing as a table (pipeline/route.py): where a message goes, from the message, its keys
and what the database knew. No database here: the facts are given."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest

from maild.domain import Address, Inbound, ThreadDecision, ThreadedBy
from maild.mailsafety.bounce import Report
from maild.pipeline.route import (
    AgentMail,
    Discard,
    Facts,
    Hold,
    Intake,
    Join,
    KeyRules,
    Keys,
    Open,
    Policy,
    RecordReport,
    RefuseStaff,
    Reply,
    ReviewMail,
    Route,
    SignedKey,
    TicketFacts,
    WishCommandMail,
    keys_of,
    route,
)
from maild.pipeline.thread import ref_pattern
from maild.rules.engine import Organisation
from maild.rules.schema import Agent
from maild.tickets.address import SignedAddress, TicketAddress

NOW = datetime(2026, 12, 4, 12, tzinfo=UTC)
ANNA = Agent(address="anna@example.test", name="Anna", level=2)
ORG = Organisation(levels={}, departments={}, intake=frozenset({"desk@example.test"}),
                   agents={ANNA.address: ANNA})
SECRET = "a" * 20
OURS = "maild.signed@support.test"  # one of our signed Message-IDs


def message(sender: str | None = "c@x", *, message_id: str | None = "new@x",
            in_reply_to: tuple[str, ...] = (), automatic: tuple[str, ...] = ()) -> Inbound:
    return Inbound(source=None, raw=b"", raw_sha256="0", message_id=message_id,
                   in_reply_to=in_reply_to, references=(),
                   sender=Address("", sender) if sender else None, to=(), cc=(), reply_to=(),
                   subject="s", date=None, body_text="", language="en", headers=(),
                   automatic=automatic)


def ticket(status: str = "open", closed_days_ago: float | None = None,
           participants: frozenset[str] = frozenset({"c@x"})) -> TicketFacts:
    closed = NOW - timedelta(days=closed_days_ago) if closed_days_ago is not None else None
    return TicketFacts(status=status, closed_at=closed, participants=participants,
                       secret=SECRET)


NO_KEYS = Keys(ids=(), markers=(), reported=(), ref=None, target=None)


@dataclass(frozen=True)
class Case:
    name: str
    inbound: Inbound
    expected: Route
    known: dict[str, int] | None = None
    tickets: dict[int, TicketFacts] | None = None
    keys: Keys = NO_KEYS
    delivered_before: bool = False
    ref_ticket: int | None = None
    target_ticket: int | None = None
    report: Report | None = None
    referenced: dict[str, int] | None = None


REPORT = Report(kind="failure", reason="550", recipients=(), original_message_ids=(OURS,))
TO_SECRET = Keys(ids=(), markers=(), reported=(), ref=None,
                 target=TicketAddress(ref="T-AAAAAA", secret=SECRET))
WISH_ADDRESS = SignedAddress("wish", "w-1", "b" * 20)  # signed: see `signed` below
CASES = [
    Case("duplicate Message-ID", message(), Discard("duplicate Message-ID"),
         known={"new@x": 1}),
    Case("same bytes without an id", message(message_id=None),
         Discard("duplicate delivery (no Message-ID)"), delivered_before=True),
    Case("no sender", message(None), Hold("no sender address (From) in the message")),
    Case("report on our mail", message(), RecordReport(4), known={OURS: 4}, report=REPORT,
         keys=replace(TO_SECRET, target=None, reported=(OURS,))),
    Case("report on nothing of ours", message(), Hold("failure report for no message "
                                                      "maild sent"), report=REPORT),
    Case("new ticket", message(), Open(ThreadDecision(None, ThreadedBy.NEW))),
    Case("reply by a participant", message(in_reply_to=("p@x",)),
         Reply(ThreadDecision(1, ThreadedBy.IN_REPLY_TO, "p@x")), known={"p@x": 1},
         tickets={1: ticket()}),
    # Someone not confirmed whose headers point into a ticket joins its conversation
    # unconfirmed (issue 22): kept in the ticket, given and allowed nothing.
    Case("stranger quoting a customer's id", message("s@x", in_reply_to=("p@x",)),
         Join(ThreadDecision(1, ThreadedBy.IN_REPLY_TO, "p@x",
                             flags=("unconfirmed-participant",))),
         known={"p@x": 1}, tickets={1: ticket()}),
    Case("stranger answering our signed mail (forwarded to them)",
         message("s@x", in_reply_to=(OURS,)),
         Join(ThreadDecision(1, ThreadedBy.IN_REPLY_TO, OURS,
                             flags=("unconfirmed-participant",))),
         known={OURS: 1}, tickets={1: ticket()}),
    Case("confirmed participant (in Cc) by headers", message("s@x", in_reply_to=("p@x",)),
         Reply(ThreadDecision(1, ThreadedBy.IN_REPLY_TO, "p@x")), known={"p@x": 1},
         tickets={1: ticket(participants=frozenset({"c@x", "s@x"}))}),
    Case("participant replying to a parent maild never held",
         message(in_reply_to=("ghost@x",)),
         Reply(ThreadDecision(1, ThreadedBy.PLACEHOLDER, "ghost@x")),
         referenced={"ghost@x": 1}, tickets={1: ticket()}),
    Case("stranger replying to a parent maild never held",
         message("s@x", in_reply_to=("ghost@x",)),
         Join(ThreadDecision(1, ThreadedBy.PLACEHOLDER, "ghost@x",
                             flags=("unconfirmed-participant",))),
         referenced={"ghost@x": 1}, tickets={1: ticket()}),
    Case("stranger with only the subject reference", message("s@x"),
         Open(ThreadDecision(None, ThreadedBy.NEW, "T-AAAAAA", 7,
                             ("subject-ref-from-non-participant",))),
         keys=replace(NO_KEYS, ref="T-AAAAAA"), ref_ticket=7, tickets={7: ticket()}),
    Case("reply to a ticket closed recently", message(in_reply_to=("p@x",)),
         Reply(ThreadDecision(1, ThreadedBy.IN_REPLY_TO, "p@x")), known={"p@x": 1},
         tickets={1: ticket("closed", closed_days_ago=3)}),
    Case("reply to a ticket closed long ago", message(in_reply_to=("p@x",)),
         Open(ThreadDecision(None, ThreadedBy.NEW, "p@x", 1, ("follow-up-of-closed",))),
         known={"p@x": 1}, tickets={1: ticket("closed", closed_days_ago=30)}),
    Case("agent through the secret address", message(ANNA.address), AgentMail(1, ANNA),
         keys=TO_SECRET, target_ticket=1, tickets={1: ticket()}),
    Case("agent with a wrong secret", message(ANNA.address),
         RefuseStaff(1, ANNA, "reply address for T-AAAAAA with a wrong secret from "
                     "anna@example.test: not applied"),
         keys=replace(TO_SECRET, target=TicketAddress("T-AAAAAA", "b" * 20)),
         target_ticket=1, tickets={1: ticket()}),
    Case("secret address of no ticket", message(ANNA.address),
         Hold("reply address for T-AAAAAA with a wrong secret from anna@example.test: not "
              "applied"), keys=TO_SECRET),
    Case("stranger through the secret address", message("s@x"),
         Hold("s@x used the reply address of T-AAAAAA but is not in the agents directory: "
              "not applied"), keys=TO_SECRET, target_ticket=1, tickets={1: ticket()}),
    Case("automatic mail to the secret address", message("s@x", automatic=("auto-submitted",)),
         Discard("automatic mail on the agents' path (auto-submitted)"), keys=TO_SECRET,
         target_ticket=1, tickets={1: ticket()}),
    Case("agent answering a ticket without the secret", message(ANNA.address,
                                                                in_reply_to=("p@x",)),
         RefuseStaff(1, ANNA, "mail from agent anna@example.test refers to a ticket but "
                     "was not sent to its reply address: not applied"),
         known={"p@x": 1}, tickets={1: ticket()}),
    Case("agent quoting only a ticket's reference", message(ANNA.address),
         RefuseStaff(7, ANNA, "mail from agent anna@example.test refers to a ticket but "
                     "was not sent to its reply address: not applied"),
         keys=replace(NO_KEYS, ref="T-AAAAAA"), ref_ticket=7, tickets={7: ticket()}),
    Case("agent writing to support about nothing", message(ANNA.address),
         Open(ThreadDecision(None, ThreadedBy.NEW))),
    Case("quality management to a wish's address", message("qm@x", in_reply_to=("p@x",)),
         WishCommandMail("w-1"), keys=replace(NO_KEYS, wish=WISH_ADDRESS),
         known={"p@x": 1}, tickets={1: ticket()}),
    Case("an agent to a wish's address", message(ANNA.address),
         WishCommandMail("w-1"), keys=replace(TO_SECRET, wish=WISH_ADDRESS),
         target_ticket=1, tickets={1: ticket()}),
    Case("a wish's address with a wrong signature", message("qm@x"),
         Hold("wish address for W-1 with a wrong signature from qm@x: not applied"),
         keys=replace(NO_KEYS, wish=SignedAddress("wish", "w-1", "c" * 20))),
    Case("automatic mail to a wish's address", message("qm@x", automatic=("x",)),
         Discard("automatic mail to a wish address (x)"),
         keys=replace(NO_KEYS, wish=WISH_ADDRESS)),
    Case("mentor to a review address", message(ANNA.address), ReviewMail("12"),
         keys=replace(NO_KEYS, review=SignedKey("12", valid=True))),
    Case("review address before the ticket address", message(ANNA.address),
         ReviewMail("12"), keys=replace(TO_SECRET, review=SignedKey("12", valid=True)),
         tickets={1: ticket()}, target_ticket=1),
    Case("review address with a wrong signature", message(ANNA.address),
         Hold("review address 12 with a wrong signature from anna@example.test: not applied"),
         keys=replace(NO_KEYS, review=SignedKey("12", valid=False))),
    Case("automatic mail to a review address", message("s@x", automatic=("x",)),
         Discard("automatic mail to a review address (x)"),
         keys=replace(NO_KEYS, review=SignedKey("12", valid=True))),
    Case("intake", message("desk@example.test"), Intake()),
    Case("automatic mail from intake", message("desk@example.test", automatic=("x",)),
         Open(ThreadDecision(None, ThreadedBy.NEW))),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_route(case: Case) -> None:
    facts = Facts(known=case.known or {}, delivered_before=case.delivered_before,
                  ref_ticket=case.ref_ticket, target_ticket=case.target_ticket,
                  tickets=case.tickets or {}, referenced=case.referenced or {})
    policy = Policy(organisation=ORG, verify=lambda mid: mid == OURS,
                    reopen_window=timedelta(days=14), now=NOW,
                    signed=lambda text, signature: (text, signature) == ("wish-w-1", "b" * 20))
    assert route(case.inbound, case.report, case.keys, facts, policy) == case.expected


def test_keys_are_read_once_from_the_message() -> None:
    rules = KeyRules(verify=lambda mid: mid.startswith("maild.good"), domain="support.test",
                     ref_re=ref_pattern("T"),
                     agent_re=re.compile(r"^support\+(t-[a-z0-9]{6})\.([0-9a-f]{20})@"
                                         r"support\.test$"))
    inbound = replace(message(in_reply_to=("p@x",)), subject="Re: [T-K7QF2X] x",
                      markers=("good1", "bad2"),
                      headers=(("Delivered-To", f"<support+t-k7qf2x.{SECRET}@support.test>"),))
    report = Report(kind="failure", reason="", recipients=(),
                    original_message_ids=("maild.good3@support.test", "forged@x"))
    keys = keys_of(inbound, report, rules)
    assert keys.ids == ("new@x", "maild.good3@support.test", "p@x",
                        "maild.good1@support.test")
    assert keys.markers == ("maild.good1@support.test",)
    assert keys.reported == ("maild.good3@support.test",)
    assert keys.ref == "T-K7QF2X"
    assert keys.target == TicketAddress("T-K7QF2X", SECRET)
    assert keys.wish is None


def test_a_wish_address_is_read_from_the_recipients() -> None:
    from maild.tickets.address import signed_pattern

    rules = KeyRules(verify=lambda mid: False, domain="support.test", ref_re=ref_pattern("T"),
                     agent_re=re.compile("^$"), wish_re=signed_pattern("support@support.test",
                                                                       "wish"))
    to = replace(message(), cc=(Address("", f"support+wish-w-42.{'b' * 20}@support.test"),))
    assert keys_of(to, None, rules).wish == SignedAddress("wish", "w-42", "b" * 20)


def test_signed_addresses_round_trip_and_do_not_pass_for_tickets() -> None:
    from maild.outbound.ids import MessageIdFactory
    from maild.tickets.address import (
        address_pattern,
        find_signed_address,
        find_ticket_address,
        secret_matches,
        signed_address,
        signed_pattern,
    )

    ids = MessageIdFactory(b"k" * 32, "support.test")
    support = "help@support.test"
    address = signed_address(support, "wish", "4242", ids.sign("wish-4242"))
    found = find_signed_address(signed_pattern(support, "wish"), "wish", [address])
    assert found is not None and found.ident == "4242"
    assert secret_matches(found.signature, ids.sign("wish-4242"))
    assert not secret_matches(found.signature, ids.sign("wish-4243"))
    assert find_signed_address(signed_pattern(support, "rate"), "rate", [address]) is None
    assert find_ticket_address(address_pattern(support), [address]) is None


def test_review_address_is_read_with_its_signature() -> None:
    from maild.tickets.address import signed_address, signed_pattern

    def sign(text: str) -> str:
        return "f" * 20 if text == "review-12" else "0" * 20

    rules = KeyRules(verify=lambda mid: False, domain="support.test", ref_re=ref_pattern("T"),
                     agent_re=re.compile(r"^$"),
                     review_re=signed_pattern("support@support.test", "review"), sign=sign)
    good = signed_address("support@support.test", "review", "12", "f" * 20)
    forged = signed_address("support@support.test", "review", "13", "f" * 20)
    keys = keys_of(replace(message(), to=(Address("", good),)), None, rules)
    assert keys.review == SignedKey("12", valid=True)
    keys = keys_of(replace(message(), to=(Address("", forged),)), None, rules)
    assert keys.review == SignedKey("13", valid=False)
    assert keys_of(message(), None, rules).review is None
