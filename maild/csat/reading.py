"""What a customer's answer to a survey says: a rating with a comment, or "no more
surveys". Pure, table-tested (tests/test_csat.py)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from maild.agents.parse import strip_quoted

_OPT_OUT = re.compile(
    r"^\s*(stop|unsubscribe|abbestellen|abmelden|keine umfragen( mehr)?|no more surveys|"
    r"désabonner|se désabonner|désinscrire|plus de sondages)\b", re.IGNORECASE)
_LEADING_SCORE = re.compile(r"^\s*([1-5])(?!\d|[.,]\d)\s*(?:/\s*5\b)?\s*[-\u2013\u2014:.,)]?\s*")


@dataclass(frozen=True)
class Rating:
    score: int
    comment: str


@dataclass(frozen=True)
class OptOut:
    pass


def read_answer(text: str, score: int | None) -> Rating | OptOut | None:
    """`score` is the one in the rating address the mail went to (a `mailto:` link), or
    None for a plain reply, whose first line must then start with a digit from 1 to 5."""
    body = strip_quoted(text)
    lines = [line for line in body.splitlines() if line.strip()]
    first = lines[0] if lines else ""
    if _OPT_OUT.match(first) and score is None:
        return OptOut()
    if score is None:
        found = _LEADING_SCORE.match(first)
        if found is None:
            return None
        score = int(found.group(1))
        lines[0] = first[found.end():]
    comment = "\n".join(line.rstrip() for line in lines).strip()
    return Rating(score, comment[:4000])


def needs_management(rating: Rating, threshold: int, words: list[str]) -> bool:
    """The satisfaction guarantee: a low score, or a comment that says it."""
    lowered = rating.comment.lower()
    return rating.score <= threshold or any(w.lower() in lowered for w in words if w)
