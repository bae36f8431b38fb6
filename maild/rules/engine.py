"""The rule engine: ordered rules, first match wins unless a rule says `continue`.

Rules are compiled once into predicates over `Facts`, the few things a rule can look at,
extracted from a message once. Every rule evaluated is recorded as a hit or a miss, so a
ticket can always explain its routing (`maild route` shows the same).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from maild.businesstime.calendar import BusinessCalendar, is_open
from maild.clock import Clock
from maild.domain import Classification, Inbound, RuleHit
from maild.rules.literals import Texts, has_troublesome, prefiltered_search
from maild.rules.schema import Actions, Agent, Condition, Management, Matcher

Test = Callable[[str, Texts], bool]  # a value and the message's `Facts`


@dataclass(frozen=True)
class Facts:
    """What rules can see of a message."""

    sender: str
    sender_domain: str
    recipients: tuple[str, ...]
    subject: str
    body: str
    headers: Mapping[str, tuple[str, ...]]
    attachment_names: tuple[str, ...]
    attachment_types: tuple[str, ...]
    language: str
    customer: Mapping[str, str]
    at: datetime
    verified_sender: bool
    automatic: bool
    _lowered: dict[str, str] = field(default_factory=dict, init=False, repr=False,
                                     compare=False)
    _troubled: dict[str, bool] = field(default_factory=dict, init=False, repr=False,
                                       compare=False)

    def lower(self, text: str) -> str:
        """`text.lower()`, computed once per message: every regex rule over the body that
        pre-filters on literals needs it."""
        lowered = self._lowered.get(text)
        if lowered is None:
            lowered = self._lowered[text] = text.lower()
        return lowered

    def troubled(self, text: str) -> bool:
        """`rules.literals.has_troublesome(text)`, once per message."""
        troubled = self._troubled.get(text)
        if troubled is None:
            troubled = self._troubled[text] = has_troublesome(text)
        return troubled


Predicate = Callable[[Facts], bool]


def compile_matcher(m: Matcher) -> Test:
    """One string test; regexes are compiled once, case-insensitive unless asked, and
    searched only when the value holds one of their necessary literals."""
    fold: Callable[[str], str] = (lambda s: s) if m.case_sensitive else str.casefold
    if m.regex is not None:
        return prefiltered_search(re.compile(m.regex, 0 if m.case_sensitive else re.IGNORECASE))
    if m.equals is not None:
        want = fold(m.equals)
        return lambda v, _texts: fold(v) == want
    if m.contains is not None:
        part = fold(m.contains)
        return lambda v, _texts: part in fold(v)
    choices = frozenset(fold(x) for x in m.any_of or ())
    return lambda v, _texts: fold(v) in choices


def _any(values: Callable[[Facts], tuple[str, ...]], test: Test) -> Predicate:
    return lambda f: any(test(v, f) for v in values(f))


def _one(value: Callable[[Facts], str], test: Test) -> Predicate:
    return lambda f: test(value(f), f)


def _special(c: Condition, calendar: BusinessCalendar | None) -> Predicate | None:
    """Tests that are not a matcher over one message field."""
    if c.header is not None:
        name, test = c.header.name.lower(), compile_matcher(c.header)
        return lambda f: any(test(v, f) for v in f.headers.get(name, ()))
    if c.customer is not None:
        attr, test = c.customer.attribute, compile_matcher(c.customer)
        return lambda f: attr in f.customer and test(f.customer[attr], f)
    if c.business_hours is not None:
        want, cal = c.business_hours, calendar
        if cal is None:
            raise ValueError("business_hours needs a calendar (rules file: business_hours)")
        return lambda f: is_open(cal, f.at) == want
    if c.verified_sender is not None:
        verified = c.verified_sender
        return lambda f: f.verified_sender == verified
    if c.automatic is not None:
        automatic = c.automatic
        return lambda f: f.automatic == automatic
    return None


def compile_condition(c: Condition, calendar: BusinessCalendar | None) -> Predicate:
    """A predicate for one condition tree (validated by the schema: exactly one key)."""
    if c.all_ is not None:
        parts = [compile_condition(x, calendar) for x in c.all_]
        return lambda f: all(p(f) for p in parts)
    if c.any_ is not None:
        alts = [compile_condition(x, calendar) for x in c.any_]
        return lambda f: any(p(f) for p in alts)
    if c.not_ is not None:
        inner = compile_condition(c.not_, calendar)
        return lambda f: not inner(f)
    special = _special(c, calendar)
    if special is not None:
        return special
    simple: dict[str, tuple[Matcher | None, Callable[[Facts], object], bool]] = {
        "from": (c.from_, lambda f: f.sender, False),
        "from_domain": (c.from_domain, lambda f: f.sender_domain, False),
        "to": (c.to, lambda f: f.recipients, True),
        "subject": (c.subject, lambda f: f.subject, False),
        "body": (c.body, lambda f: f.body, False),
        "attachment_name": (c.attachment_name, lambda f: f.attachment_names, True),
        "attachment_type": (c.attachment_type, lambda f: f.attachment_types, True),
        "language": (c.language, lambda f: f.language, False),
    }
    for matcher, getter, many in simple.values():
        if matcher is not None:
            test = compile_matcher(matcher)
            if many:
                return _any(getter, test)  # type: ignore[arg-type]
            return _one(getter, test)  # type: ignore[arg-type]
    raise ValueError("empty condition")  # the schema prevents this


@dataclass(frozen=True)
class CompiledRule:
    name: str
    predicate: Predicate
    actions: Actions
    continue_: bool


@dataclass(frozen=True)
class TeamInfo:
    name: str
    team: str | None
    writes_to_customers: bool = True


@dataclass(frozen=True)
class Organisation:
    """Levels, departments, the management channel, intake addresses, agents, customers."""

    levels: Mapping[int, TeamInfo]
    departments: Mapping[str, TeamInfo]
    management: Management | None = None
    intake: frozenset[str] = frozenset()
    agents: Mapping[str, Agent] = field(default_factory=dict)
    customers_by_address: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    customers_by_domain: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def customer(self, address: str) -> Mapping[str, str]:
        domain = address.rpartition("@")[2]
        return {**self.customers_by_domain.get(domain, {}),
                **self.customers_by_address.get(address, {})}

    def team_address(self, name: str) -> str | None:
        """`level1`…`level4`, `management`, a department name, or an address."""
        if "@" in name:
            return name
        if name.startswith("level") and name[5:].isdigit():
            info = self.levels.get(int(name[5:]))
            return info.team if info else None
        if name == "management":
            return self.management.team if self.management else None
        dept = self.departments.get(name)
        return dept.team if dept else None


@dataclass(frozen=True)
class RuleSet:
    organisation: Organisation
    rules: tuple[CompiledRule, ...]
    default: Actions
    calendars: Mapping[str, BusinessCalendar]
    source: str | None = None


def facts_for(inbound: Inbound, org: Organisation, at: datetime) -> Facts:
    sender = inbound.sender.address if inbound.sender else ""
    headers: dict[str, list[str]] = {}
    for key, value in inbound.headers:
        headers.setdefault(key.lower(), []).append(value)
    return Facts(
        sender=sender,
        sender_domain=sender.rpartition("@")[2],
        recipients=tuple(a.address for a in (*inbound.to, *inbound.cc)),
        subject=inbound.subject,
        body=inbound.body_text,
        headers={k: tuple(v) for k, v in headers.items()},
        attachment_names=tuple(a.filename for a in inbound.attachments),
        attachment_types=tuple(a.content_type for a in inbound.attachments),
        language=inbound.language,
        customer=org.customer(sender),
        at=at,
        verified_sender=inbound.verified_sender,
        automatic=bool(inbound.automatic),
    )


@dataclass
class _State:
    """The decision as rules build it up; `continue` rules add to it."""

    level: int = 1
    department: str | None = None
    priority: str = "normal"
    template: str = "acknowledgement"
    answer: str | None = None
    acknowledge: bool = True
    tags: list[str] = field(default_factory=list)
    notify: list[str] = field(default_factory=list)

    def apply(self, actions: Actions) -> None:
        self.level = actions.level or self.level
        self.department = actions.department or self.department
        self.priority = actions.priority or self.priority
        self.template = actions.template or self.template
        self.answer = actions.answer or self.answer
        if actions.acknowledge is not None:
            self.acknowledge = actions.acknowledge
        tags = [*actions.tags, *(["no-csat"] if actions.csat is False else [])]
        self.tags += [t for t in tags if t not in self.tags]
        self.notify += [n for n in actions.notify if n not in self.notify]


class RuleEngine:
    """The `Classifier` of the pipeline, driven by a RuleSet."""

    def __init__(self, ruleset: RuleSet, clock: Clock,
                 mailbox_defaults: Mapping[str, Actions] | None = None) -> None:
        self.ruleset = ruleset
        self._clock = clock
        self._mailbox_defaults = mailbox_defaults or {}

    def classify(self, inbound: Inbound) -> Classification:
        org = self.ruleset.organisation
        facts = facts_for(inbound, org, self._clock.now())
        mgmt = org.management
        if mgmt is not None and mgmt.address.lower() in facts.recipients:
            # The management channel bypasses the normal queue and its rules.
            return Classification(
                level=mgmt.level, department="management", priority=mgmt.priority,
                hits=(RuleHit("management channel", True),), notify=("management",),
            )
        state = _State()
        state.apply(self.ruleset.default)
        if inbound.source is not None and inbound.source.mailbox in self._mailbox_defaults:
            state.apply(self._mailbox_defaults[inbound.source.mailbox])
        hits: list[RuleHit] = []
        for rule in self.ruleset.rules:
            matched = rule.predicate(facts)
            hits.append(RuleHit(rule.name, matched))
            if matched:
                state.apply(rule.actions)
                if not rule.continue_:
                    break
        return Classification(
            level=state.level, department=state.department, priority=state.priority,
            template=state.template, tags=tuple(state.tags), hits=tuple(hits),
            acknowledge=state.acknowledge, answer=state.answer, notify=tuple(state.notify),
        )
