"""Load a rules file into a RuleSet, or fail with the file, rule, key and line.

Beyond the schema it checks what only the whole file can tell: unique rule names,
departments and teams that exist, calendars that parse, and (given the templates) that every
template a rule names is there.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from pydantic import ValidationError

from maild.businesstime.calendar import BusinessCalendar
from maild.businesstime.spec import build_calendar
from maild.errors import ConfigError
from maild.rules.engine import (
    CompiledRule,
    Organisation,
    RuleSet,
    TeamInfo,
    compile_condition,
)
from maild.rules.schema import CONDITION_KEYS, Actions, Agent, RulesFile
from maild.yamlfile import YamlDocument, load_yaml

_MESSAGES = {"extra_forbidden": "unknown key", "missing": "required key is missing"}


def _validate(doc: YamlDocument) -> RulesFile:
    if not isinstance(doc.data, dict):
        raise doc.error("a rules file is a mapping (levels, departments, rules, ...)", ())
    try:
        return RulesFile.model_validate(doc.data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith(
            ("function-", "Condition", "Matcher"))))
        message = _MESSAGES.get(err["type"], str(err["msg"]).removeprefix("Value error, "))
        if err["type"] == "extra_forbidden" and "when" in loc:
            message += " (a condition is one of: " + ", ".join(CONDITION_KEYS) + ")"
        raise _with_rule(doc, doc.error(message, loc), loc) from None


def _with_rule(doc: YamlDocument, error: ConfigError, loc: tuple[object, ...]) -> ConfigError:
    """Name the rule in the message when the error is inside one."""
    if len(loc) >= 2 and loc[0] == "rules" and isinstance(loc[1], int):
        rules = doc.data.get("rules") if isinstance(doc.data, dict) else None
        if isinstance(rules, list) and loc[1] < len(rules) and isinstance(rules[loc[1]], dict):
            name = rules[loc[1]].get("name")
            if name:
                return ConfigError(f"rule '{name}': {error.reason}", file=error.file,
                                   key=error.key, line=error.line)
    return error


def _check_targets(doc: YamlDocument, spec: RulesFile, actions: Actions,
                   loc: tuple[str | int, ...]) -> None:
    if actions.department and actions.department not in spec.departments and (
            actions.department != "management"):
        raise _with_rule(doc, doc.error(
            f"unknown department '{actions.department}' (known: "
            f"{', '.join(sorted(spec.departments))})", (*loc, "department")), loc)
    for i, target in enumerate(actions.notify):
        known = ("@" in target or target in spec.departments or target == "management"
                 or (target.startswith("level") and target[5:].isdigit()
                     and int(target[5:]) in spec.levels))
        if not known:
            raise _with_rule(doc, doc.error(
                f"unknown team '{target}': use level1..level4, a department, management or "
                "an address", (*loc, "notify", i)), loc)


def _calendars(doc: YamlDocument, spec: RulesFile) -> dict[str, BusinessCalendar]:
    out = {}
    for name, value in spec.calendars.items():
        try:
            out[name] = build_calendar(name, value)
        except (ValidationError, ValueError) as exc:
            reason = (exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc))
            raise doc.error(f"calendar '{name}': {reason}".replace("Value error, ", ""),
                            ("calendars", name)) from None
    if spec.business_hours and spec.business_hours not in out:
        raise doc.error(f"no calendar named '{spec.business_hours}'", ("business_hours",))
    return out


def ruleset_from_document(doc: YamlDocument) -> RuleSet:
    spec = _validate(doc)
    calendars = _calendars(doc, spec)
    seen: dict[str, int] = {}
    compiled = []
    business = calendars.get(spec.business_hours) if spec.business_hours else None
    for i, rule in enumerate(spec.rules):
        if rule.name in seen:
            raise doc.error(f"duplicate rule name '{rule.name}' (first at rule {seen[rule.name]})",
                            ("rules", i, "name"))
        seen[rule.name] = i
        _check_targets(doc, spec, rule.then, ("rules", i, "then"))
        try:
            predicate = (compile_condition(rule.when, business) if rule.when
                         else (lambda f: True))
        except ValueError as exc:
            raise _with_rule(doc, doc.error(str(exc), ("rules", i, "when")),
                             ("rules", i)) from None
        compiled.append(CompiledRule(rule.name, predicate, rule.then, rule.continue_))
    _check_targets(doc, spec, spec.default, ("default",))
    for i, agent in enumerate(spec.agents):
        for dept in agent.departments:
            if dept not in spec.departments:
                raise doc.error(f"unknown department '{dept}'", ("agents", i, "departments"))
        if agent.mentor is not None:
            problem = _mentor_problem(spec, agent)
            if problem:
                raise doc.error(problem, ("agents", i, "mentor"))
    org = Organisation(
        levels={n: TeamInfo(lv.name, lv.team, lv.writes_to_customers
                            if lv.writes_to_customers is not None else n <= 2)
                for n, lv in spec.levels.items()},
        departments={k: TeamInfo(d.name, d.team) for k, d in spec.departments.items()},
        management=spec.management,
        intake=frozenset(a.lower() for a in spec.intake),
        agents={a.address.lower(): a for a in spec.agents},
        customers_by_address={c.address.lower(): c.attributes for c in spec.customers
                              if c.address},
        customers_by_domain={c.domain.lower(): c.attributes for c in spec.customers
                             if c.domain},
    )
    return RuleSet(organisation=org, rules=tuple(compiled), default=spec.default,
                   calendars=calendars, source=str(doc.path))


def _mentor_problem(spec: RulesFile, agent: Agent) -> str | None:
    """A mentor is an agent of the directory who is no trainee, or a team with an address."""
    mentor = (agent.mentor or "").lower()
    if "@" in mentor:
        found = next((a for a in spec.agents if a.address.lower() == mentor), None)
        if found is None:
            return f"mentor {agent.mentor} is not in the agents directory"
        if found.trainee or mentor == agent.address.lower():
            return f"mentor {agent.mentor} is a trainee (a mentor must be a full agent)"
        return None
    if mentor.startswith("level") and mentor[5:].isdigit():
        team = spec.levels.get(int(mentor[5:]))
        return None if team is not None and team.team else (
            f"mentor team {agent.mentor} has no team address")
    dept = spec.departments.get(mentor)
    if dept is None or not dept.team:
        return (f"mentor {agent.mentor} is neither an agent's address nor a team with an "
                "address (level1…level4, a department)")
    return None


def default_ruleset() -> RuleSet:
    """No rules file: the default organisation, no rules."""
    return ruleset_from_document(YamlDocument(Path("(defaults)"), {}, {}))


def load_rules(path: Path | None) -> RuleSet:
    return default_ruleset() if path is None else ruleset_from_document(load_yaml(path))


def check_templates(ruleset: RuleSet, available: Iterable[str]) -> None:
    """Every template a rule names must exist (as <name>.en.txt at least)."""
    names = {f.rsplit(".", 2)[0] for f in available}
    for rule in (*ruleset.rules, None):
        actions = rule.actions if rule else ruleset.default
        for template in (actions.template, actions.answer):
            if template and template not in names:
                where = f"rule '{rule.name}'" if rule else "default"
                raise ConfigError(f"{where}: template '{template}' does not exist "
                                  f"(known: {', '.join(sorted(names))})",
                                  file=ruleset.source)
