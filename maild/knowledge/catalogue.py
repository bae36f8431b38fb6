"""The catalogue of canned answers: every template that is not one of maild's own mails,
with its languages, first lines and how often it was used in the last 90 days (a rule's
answer queued, or an agent's #answer)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from maild.outbound.render import Templates
from maild.store.models import Event

# maild's own mail (acknowledgements, staff mail, the frame of a reply), never offered as a
# canned answer: every template but these is one.
SYSTEM_TEMPLATES = frozenset({"acknowledgement", "notification", "reply", "review", "canned",
                              "proposal", "survey", "guarantee", "wish_done", "wish_rejected",
                              "wish_notification", "refused", "reminder", "auto_resolved",
                              "digest", "queue", "report"})
USES_WINDOW = timedelta(days=90)


@dataclass(frozen=True)
class CannedAnswer:
    name: str
    languages: tuple[str, ...]
    subject: str
    first_line: str
    uses: int = 0
    texts: dict[str, str] = field(default_factory=dict, compare=False)  # language -> file


def answers(templates: Templates) -> list[CannedAnswer]:
    by_name: dict[str, dict[str, str]] = {}
    for file in templates.names():
        stem = file.removesuffix(".txt")
        name, _, lang = stem.rpartition(".")
        if not name or name in SYSTEM_TEMPLATES:
            continue
        by_name.setdefault(name, {})[lang] = templates.source(file) or ""
    out = []
    for name, texts in sorted(by_name.items()):
        text = texts.get("en") or next(iter(texts.values()))
        head, _, body = text.partition("\n\n")
        first = next((line.strip() for line in body.splitlines() if line.strip()), "")
        out.append(CannedAnswer(name, tuple(sorted(texts)), head.partition(":")[2].strip(),
                                first, texts=texts))
    return out


def uses(session: Session, now: datetime) -> Counter[str]:
    """Canned answers sent since 90 days: by rule (`answer.queued`) or by #answer."""
    counted: Counter[str] = Counter()
    rows = session.execute(select(Event.kind, Event.data).where(
        Event.kind.in_(("answer.queued", "answer.used")), Event.at >= now - USES_WINDOW))
    for kind, data in rows:
        name = data.get("template") if kind == "answer.queued" else data.get("name")
        if name:
            counted[str(name)] += 1
    return counted


def catalogue(templates: Templates, session: Session, now: datetime,
              word: str = "") -> list[CannedAnswer]:
    """The canned answers (matching `word` in their name, subject or text, when given),
    with their uses."""
    counted = uses(session, now)
    word = word.strip().lower()
    return [CannedAnswer(a.name, a.languages, a.subject, a.first_line, counted[a.name], a.texts)
            for a in answers(templates)
            if not word or word in a.name.lower() or any(word in t.lower()
                                                         for t in a.texts.values())]


def catalogue_text(entries: list[CannedAnswer], word: str = "") -> str:
    if not entries:
        return f"No canned answer matches '{word}'." if word else "No canned answers yet."
    lines = [f"{len(entries)} canned answer(s){f' matching {word!r}' if word else ''}; "
             "answer a ticket with one by writing #answer NAME on the first line of your "
             "reply.", ""]
    for a in entries:
        lines.append(f"{a.name}  [{', '.join(a.languages)}]  used {a.uses}x in 90 days")
        lines.append(f"    {a.subject}")
        if a.first_line:
            lines.append(f"    {a.first_line}")
    return "\n".join(lines)
