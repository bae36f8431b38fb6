"""Per trainee: drafts approved as they were, approved with edits, rejected, waiting, and
the time they waited for review (decided ones until their decision, waiting ones until
now). For `maild training`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.store.models import Draft


@dataclass
class TraineeCounts:
    trainee: str
    name: str
    approved: int = 0
    edited: int = 0
    rejected: int = 0
    waiting: int = 0
    waited_seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def trainee_counts(session: Session, now: datetime) -> list[TraineeCounts]:
    out: dict[str, TraineeCounts] = {}
    for d in session.scalars(select(Draft).order_by(Draft.id)):
        row = out.setdefault(d.author, TraineeCounts(d.author, d.author_name))
        if d.status == "waiting":
            row.waiting += 1
        else:
            setattr(row, d.status, getattr(row, d.status) + 1)
        row.waited_seconds += ((d.decided_at or now) - d.created_at).total_seconds()
    return sorted(out.values(), key=lambda r: r.trainee)
