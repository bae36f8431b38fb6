"""The rules file, as pydantic models: the organisation and the ordered routing rules.

```yaml
levels:            # 1-4; levels 3 and 4 never write to customers unless told otherwise
  1: {name: 1st level, team: level1@example.test}
departments:       # customer_service, technical, accounting, contracts out of the box
  accounting: {name: Accounting, team: accounting@example.test}
management: {address: management@example.test, team: board@example.test}
agents:
  - {address: anna@example.test, name: Anna Berger, level: 1, departments: [customer_service]}
customers:
  - {domain: bigcorp.example, attributes: {plan: premium}}
rules:
  - name: invoices
    when: {any: [{subject: {regex: "rechnung|invoice"}}, {attachment_type: application/pdf}]}
    then: {department: accounting}
default: {level: 1, priority: normal}
```

In a matcher a bare string means `equals` and a list means `any_of`; every comparison is
case-insensitive unless `case_sensitive: true`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from maild.domain import PRIORITIES as PRIORITIES  # read here by the rules' own users
from maild.domain import Priority

LevelNo = Annotated[int, Field(ge=1, le=4)]
Email = Annotated[str, Field(pattern=r"^[^@\s<>]+@[^@\s<>]+$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Matcher(_Model):
    equals: str | None = None
    contains: str | None = None
    any_of: list[str] | None = None
    regex: str | None = None
    case_sensitive: bool = False

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, str | int | float | bool):
            return {"equals": str(value)}
        if isinstance(value, list):
            return {"any_of": [str(v) for v in value]}
        return value

    @model_validator(mode="after")
    def _one(self) -> Self:
        given = [k for k in ("equals", "contains", "any_of", "regex") if getattr(self, k)
                 is not None]
        if len(given) != 1:
            raise ValueError("a matcher takes exactly one of equals, contains, any_of, regex")
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return self


class HeaderMatcher(Matcher):
    name: Annotated[str, Field(pattern=r"^[!-9;-~]+$")]  # a header field name

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return value


class AttributeMatcher(Matcher):
    attribute: str

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        return value


CONDITION_KEYS = (
    "all", "any", "not", "from", "from_domain", "to", "subject", "body", "header",
    "attachment_name", "attachment_type", "language", "customer", "business_hours",
    "verified_sender", "automatic",
)


class Condition(_Model):
    """Exactly one test, or a combinator of tests."""

    all_: list[Condition] | None = Field(default=None, alias="all")
    any_: list[Condition] | None = Field(default=None, alias="any")
    not_: Condition | None = Field(default=None, alias="not")
    from_: Matcher | None = Field(default=None, alias="from")
    from_domain: Matcher | None = None
    to: Matcher | None = None  # any recipient in To or Cc
    subject: Matcher | None = None
    body: Matcher | None = None
    header: HeaderMatcher | None = None
    attachment_name: Matcher | None = None
    attachment_type: Matcher | None = None
    language: Matcher | None = None
    customer: AttributeMatcher | None = None
    business_hours: bool | None = None
    verified_sender: bool | None = None
    automatic: bool | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [k for k, v in self.__dict__.items() if v is not None]
        if len(given) != 1:
            raise ValueError(
                "a condition has exactly one of: " + ", ".join(CONDITION_KEYS)
                + (f" (got {', '.join(given)})" if given else ""))
        return self


class Actions(_Model):
    level: LevelNo | None = None
    department: str | None = None
    priority: Priority | None = None
    tags: list[str] = []
    template: str | None = None  # the acknowledgement template
    answer: str | None = None  # a canned answer sent instead of the acknowledgement
    notify: list[str] = []  # team names (level1 … level4, a department) or addresses
    acknowledge: bool | None = None
    csat: bool | None = None  # false: no satisfaction survey for these tickets


class Rule(_Model):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    description: str = ""
    when: Condition | None = None  # no condition: always matches
    then: Actions = Actions()
    continue_: bool = Field(default=False, alias="continue")


class Level(_Model):
    name: str
    team: Email | None = None
    writes_to_customers: bool | None = None


class Department(_Model):
    name: str
    team: Email | None = None


class Management(_Model):
    address: Email
    team: Email | None = None
    level: LevelNo = 2
    priority: Priority = "high"


class Agent(_Model):
    address: Email
    name: str
    level: LevelNo
    departments: list[str] = []
    # A trainee's replies to customers are held for their mentor (maild/training/): an
    # agent's address, or a team (level1…level4, a department).
    trainee: bool = False
    mentor: str | None = None

    @model_validator(mode="after")
    def _mentor(self) -> Self:
        if self.trainee and not self.mentor:
            raise ValueError("a trainee needs a mentor (an agent's address or a team)")
        return self


class Customer(_Model):
    address: Email | None = None
    domain: str | None = None
    attributes: dict[str, str]

    @model_validator(mode="after")
    def _one(self) -> Self:
        if (self.address is None) == (self.domain is None):
            raise ValueError("a customer entry has either address or domain")
        return self


DEFAULT_LEVELS = {
    1: Level(name="1st level"), 2: Level(name="2nd level"),
    3: Level(name="3rd level"), 4: Level(name="4th level"),
}
DEFAULT_DEPARTMENTS = {
    "customer_service": Department(name="Customer service"),
    "technical": Department(name="Technical"),
    "accounting": Department(name="Accounting"),
    "contracts": Department(name="Contracts"),
}


class RulesFile(_Model):
    levels: dict[LevelNo, Level] = DEFAULT_LEVELS
    departments: dict[Annotated[str, Field(pattern=r"^[a-z0-9_]+$")], Department] = (
        DEFAULT_DEPARTMENTS)
    management: Management | None = None
    intake: list[Email] = []  # secretariat addresses that open tickets on callers' behalf
    agents: list[Agent] = []
    customers: list[Customer] = []
    calendars: dict[str, Any] = {}
    business_hours: str | None = None  # the calendar behind `business_hours:` conditions
    rules: list[Rule] = []
    default: Actions = Actions()

    @field_validator("levels", mode="before")
    @classmethod
    def _merge_levels(cls, v: Any) -> Any:
        if isinstance(v, dict):
            return {**{k: m.model_dump() for k, m in DEFAULT_LEVELS.items()},
                    **{int(k) if str(k).isdigit() else k: x for k, x in v.items()}}
        return v
