"""The register's rules, pure and table-tested: what the counts are, when a rejected wish
is reviewed again, which status changes are allowed, and what quality management wrote.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from maild.wishes.models import STATUSES


@dataclass(frozen=True)
class Asked:
    """One request as the rules see it."""

    customer: str
    at: datetime
    ticket: str = ""


@dataclass(frozen=True)
class Counts:
    requests: int
    customers: int  # distinct: a customer asking twice counts once
    first: datetime | None
    last: datetime | None


def counts(asked: Sequence[Asked]) -> Counts:
    """Every request counts; a customer once among the customers, whatever the case of
    their address."""
    times = [a.at for a in asked]
    return Counts(requests=len(asked), customers=len({a.customer.lower() for a in asked}),
                  first=min(times) if times else None, last=max(times) if times else None)


def since(asked: Sequence[Asked], at: datetime) -> list[Asked]:
    return [a for a in asked if a.at > at]


def rereview_due(status: str, rejected_at: datetime | None, asked: Sequence[Asked],
                 threshold: int) -> list[Asked] | None:
    """The requests since the rejection when they come from `threshold` distinct
    customers or more (the wish goes back to under_review), else None. A customer who
    had asked before the rejection and asks again counts: they asked again."""
    if status != "rejected" or rejected_at is None:
        return None
    newer = since(asked, rejected_at)
    return newer if counts(newer).customers >= threshold else None


@dataclass(frozen=True)
class Recorded:
    """What recording a request did, for the agent's mail."""

    key: str
    title: str
    status: str  # after this request
    reason: str | None  # of the rejection the agent must explain
    how: str  # key | title | new
    score: float | None
    again: bool  # this ticket was behind the wish already: not counted twice
    rereview: bool  # this request sent a rejected wish back to under_review
    counts: Counts


class StatusError(ValueError):
    """A status change that is not allowed; nothing is changed."""


def check_change(status: str, reason: str | None) -> str | None:
    """The status change's reason as stored (None for none), or StatusError."""
    if status not in STATUSES:
        raise StatusError(f"unknown status '{status}' (one of {', '.join(STATUSES)})")
    reason = (reason or "").strip() or None
    if status == "rejected" and reason is None:
        raise StatusError("a rejection needs a reason (it is what the next customer who "
                          "asks is told)")
    return reason


@dataclass(frozen=True)
class StatusCommand:
    key: str
    status: str
    reason: str | None


_STATUS_LINE = re.compile(r"^\s*#wish-status\b\s*(.*?)\s*$", re.IGNORECASE)


def parse_status_commands(body: str) -> list[StatusCommand]:
    """`#wish-status W-42 rejected Too costly for the shared plans` on the first lines
    (blank lines before them skipped); StatusError names the first line that is wrong.
    """
    found: list[StatusCommand] = []
    for line in body.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            if found:
                break
            continue
        matched = _STATUS_LINE.match(line)
        if matched is None:
            if line.lstrip().startswith("#"):
                raise StatusError(f"unknown command {line.strip()!r}; known: #wish-status "
                                  "KEY STATUS [REASON]")
            break
        parts = matched.group(1).split(None, 2)
        if len(parts) < 2:
            raise StatusError(f"{line.strip()!r}: write #wish-status KEY STATUS [REASON]")
        key, status = parts[0].upper(), parts[1].lower()
        found.append(StatusCommand(key, status, check_change(
            status, parts[2] if len(parts) > 2 else None)))
    if not found:
        raise StatusError("no command found: write #wish-status KEY STATUS [REASON] on the "
                          "first line")
    return found
