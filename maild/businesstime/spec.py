"""Calendars and durations as admins write them in YAML: calendars become
`BusinessCalendar` objects, durations (`90m`, `4h`, `2d`) `timedelta`s.

```yaml
calendars:
  office:
    timezone: Europe/Berlin
    hours:
      mon-fri: ["08:00-12:00", "13:00-17:00"]
      sat: ["09:00-12:00"]
    holidays: [2026-12-24, 2026-12-31]
    yearly: ["01-01", "05-01", "12-25", "12-26"]
  always: 24x7
```
"""

from __future__ import annotations

import re
from datetime import date, time
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from maild.businesstime.calendar import BusinessCalendar

_DAYS = {"mon": 0, "tue": 1, "wed": 2, "thu": 3, "fri": 4, "sat": 5, "sun": 6}
_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_YEARLY = re.compile(r"^(\d{2})-(\d{2})$")


def _days(key: str) -> list[int]:
    """`mon`, `mon-fri`, `sat,sun` → weekday numbers."""
    out: list[int] = []
    for part in key.lower().replace(" ", "").split(","):
        first, _, last = part.partition("-")
        if first not in _DAYS or (last and last not in _DAYS):
            raise ValueError(f"'{key}' is not a day or range of days (mon … sun)")
        a, b = _DAYS[first], _DAYS[last or first]
        if b < a:
            raise ValueError(f"day range '{part}' runs backwards")
        out.extend(range(a, b + 1))
    return out


def _range(text: str) -> tuple[time, time]:
    found = _RANGE.match(text)
    if not found:
        raise ValueError(f"'{text}' is not a range like 08:00-17:00")
    h1, m1, h2, m2 = (int(g) for g in found.groups())
    if h2 == 24 and m2 == 0:
        h2 = 0  # 24:00: until midnight
    if not (0 <= h1 < 24 and 0 <= h2 < 24 and m1 < 60 and m2 < 60):
        raise ValueError(f"'{text}' has an impossible time")
    return time(h1, m1), time(h2, m2)


class CalendarSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    timezone: str = "UTC"
    hours: dict[str, list[str]]
    holidays: list[date] = []
    yearly: list[Annotated[str, Field(pattern=r"^\d{2}-\d{2}$")]] = []

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{v}'") from None
        return v

    @model_validator(mode="after")
    def _buildable(self) -> CalendarSpec:
        self.build("calendar")  # day names, ranges, overlaps: a ValueError names the problem
        return self

    def build(self, name: str) -> BusinessCalendar:
        hours: dict[int, list[tuple[time, time]]] = {}
        for key, ranges in self.hours.items():
            for day in _days(key):
                hours.setdefault(day, []).extend(_range(r) for r in ranges)
        recurring = set()
        for item in self.yearly:
            month, day = (int(x) for x in item.split("-"))
            recurring.add((month, day))
        return BusinessCalendar(
            name=name, tz=ZoneInfo(self.timezone),
            hours={d: tuple(sorted(r)) for d, r in hours.items()},
            holidays=frozenset(self.holidays), recurring_holidays=frozenset(recurring),
        )


def build_calendar(name: str, spec: Any) -> BusinessCalendar:
    """A calendar from its YAML value: `24x7` or a mapping (validated by CalendarSpec)."""
    if spec == "24x7":
        return BusinessCalendar.always_open(name)
    return CalendarSpec.model_validate(spec).build(name)
