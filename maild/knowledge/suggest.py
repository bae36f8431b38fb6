"""Suggest, don't guess: the canned answers whose text is most like a customer's message,
listed in the new ticket's notification to the 1st and 2nd level (never sent by
themselves).

Similarity: the customer's content words that match a word of the answer (its name, subject
and text, every language), each worth more the fewer answers share it (a word all answers
use tells nothing). Words match by rapidfuzz's normalised edit distance, so typos and
inflections ("passwords", "Passwort") still count.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from rapidfuzz import fuzz, process

from maild.knowledge.catalogue import CannedAnswer, answers
from maild.outbound.render import Templates

SUGGESTED = 3
MEMO = 50_000  # words whose matches are kept
READ_CHARS = 1000  # of the customer's text: what a question says is said at its start
MATCH = 85.0  # rapidfuzz ratio (0-100) at which two words count as the same
MIN_SCORE = 1.0  # one word no other answer has, or two words shared by two answers each
_TEMPLATE_CODE = re.compile(r"\{[{%#].*?[}%#]\}", re.DOTALL)
_WORD = re.compile(r"[^\W\d_]{3,}")
_STOP = frozenset("""
the and for you your yours are was were this that with have has had from will what when
where there their about please hello thank thanks message ticket email mail kind regards
could would should simply into they them been also dear can not but our out all any just
der die das und ist sie ihr ihre ihnen wir uns mit von für auf den dem des ein eine einen
nicht noch auch bitte danke vielen gruß grüße freundlichen hallo sehr wie was wenn dass
""".split())


def content_words(text: str) -> frozenset[str]:
    text = _TEMPLATE_CODE.sub(" ", text)
    return frozenset(w for w in _WORD.findall(text.lower()) if w not in _STOP)


@dataclass
class Suggester:
    """Keeps the answers' words for the catalogue it was last given (the catalogue changes
    only on reload or an accepted solution)."""

    _templates: Templates | None = None
    _answers: list[CannedAnswer] = field(default_factory=list)
    _key: tuple[tuple[str, str], ...] = ()
    _words: dict[str, frozenset[str]] = field(default_factory=dict)
    _vocabulary: list[str] = field(default_factory=list)  # every answer's words, once
    _shared: Counter[str] = field(default_factory=Counter)
    # word -> the vocabulary words it matches, best first: customers use the same words
    # again and again, so most lookups are one dict hit (cleared with the catalogue)
    _matches: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _prepared: list[CannedAnswer] | None = None

    def answers_of(self, templates: Templates) -> list[CannedAnswer]:
        """The catalogue of these templates, read once (not from the files every ticket)."""
        if templates is not self._templates:
            self._templates, self._answers = templates, answers(templates)
        return self._answers

    def suggest(self, text: str, answers: list[CannedAnswer],
                limit: int = SUGGESTED) -> list[CannedAnswer]:
        self._prepare(answers)
        query = content_words(text[:READ_CHARS])
        scores: dict[str, float] = {}
        for word in query:
            matched = self._matched(word)
            if not matched:
                continue
            for name, words in self._words.items():
                best = next((m for m in matched if m in words), None)
                if best is not None:
                    scores[name] = scores.get(name, 0.0) + 1.0 / self._shared[best]
        scores = {n: s for n, s in scores.items() if s >= MIN_SCORE}
        ranked = sorted(scores, key=lambda n: (-scores[n], n))[:limit]
        by_name = {a.name: a for a in answers}
        return [by_name[n] for n in ranked]

    def _matched(self, word: str) -> tuple[str, ...]:
        """The vocabulary's words like `word`, best first (one scan in C, then kept); each
        answer counts its own best-matching word."""
        found = self._matches.get(word)
        if found is None:
            if len(self._matches) >= MEMO:
                self._matches.clear()
            found = self._matches[word] = tuple(m[0] for m in process.extract(
                word, self._vocabulary, scorer=fuzz.ratio, score_cutoff=MATCH, limit=None))
        return found

    def _prepare(self, answers: list[CannedAnswer]) -> None:
        if answers is self._prepared:
            return  # the same catalogue as for the last ticket (answers_of keeps it)
        self._prepared = answers
        key = tuple((a.name, "\n".join(sorted(a.texts.values()))) for a in answers)
        if key == self._key:
            return
        self._key = key
        self._words = {}
        for a in answers:
            words = content_words(" ".join((a.name.replace("_", " "), a.subject,
                                            *a.texts.values())))
            self._words[a.name] = words
        self._shared = Counter(w for words in self._words.values() for w in words)
        self._vocabulary = sorted(self._shared)
        self._matches = {}


def suggestion_text(found: list[CannedAnswer]) -> str:
    if not found:
        return ""
    lines = ["Canned answers that may fit (reply with #answer NAME; nothing was sent):"]
    lines += [f"  {a.name}: {a.first_line or a.subject}" for a in found]
    return "\n".join(lines)
