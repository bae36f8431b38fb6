"""The SLA file: calendars and policies, validated (errors name the file, key and line).

Apart from the engine, so that what only reads the file (`maild check`, `tickets list --sla`)
does not import the SLA pass and what it writes with.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import ValidationError

from maild.businesstime.calendar import BusinessCalendar
from maild.businesstime.spec import build_calendar
from maild.sla.policy import Policy, SlaFile
from maild.yamlfile import YamlDocument, load_yaml

_TIMING = {"first_response", "next_response", "resolution", "warn_at", "calendar"}


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class SlaConfig:
    policies: tuple[Policy, ...]
    check_interval: float
    source: str | None = None
    calendars: tuple[BusinessCalendar, ...] = ()  # the file's own, in its order
    choice: str = _digest([])
    """Fingerprint of what decides which policy a ticket gets: the policies' names and
    matches, in order."""
    timing: Mapping[str, str] = field(default_factory=dict)
    """Per policy, the fingerprint of what decides its due times: targets, `warn_at` and
    its calendar (as validated: comments and layout do not count; who is notified does
    not count either). Tickets are re-timed when these change (maild/sla/retime.py)."""

    @property
    def fingerprint(self) -> str:
        return _digest([self.choice, sorted(self.timing.items())])

    @property
    def timezone(self) -> ZoneInfo:
        """The desk's own time zone: its first calendar's (UTC without one). "Today" for
        `tickets list --sla due-today`."""
        return self.calendars[0].tz if self.calendars else ZoneInfo("UTC")


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
    choice = _digest([[p.name, p.match.model_dump(mode="json")] for p in spec.policies])
    timing = {p.name: _digest([p.model_dump(mode="json", include=_TIMING),
                               spec.calendars.get(p.calendar, p.calendar)])
              for p in spec.policies}
    return SlaConfig(tuple(policies), spec.check_interval, str(doc.path),
                     tuple(c for name, c in calendars.items() if name != "24x7"), choice,
                     timing)

