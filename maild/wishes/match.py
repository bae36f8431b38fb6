"""Is this wish one we have? Pure: titles in, the best match out.

Agents name the same wish in different words, in English or German, with typos: "Dark
mode for the control panel", "Control panel in dark mode", "Darkmode im Kundenbereich".
A title is normalised (case, umlauts, punctuation, filler words of both languages), then
compared word by word: a word matches a word of the other title when their edit distance
(rapidfuzz's optimal string alignment: a swapped pair of letters is one typo) is within
what a typo explains for its length, or one is the other's stem ("export",
"exportieren"). The score is the share of the words of both titles that found a partner,
so "Export invoices as CSV" and "Export invoices as PDF" (a different wish) stay apart
while a reordered or misspelt title joins. A compound written apart ("dark mode",
"darkmode") is one word's partner.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from itertools import pairwise

from rapidfuzz import fuzz, process
from rapidfuzz.distance import OSA

_FILLER = frozenset("""
a an the for of to in on at with and or please option feature ability able be can could
would like we i my our as by from into new more better
der die das den dem des ein eine einen einem einer fuer fuers im in mit und oder zu zum zur
von vom bitte moeglichkeit als auf bei am ans beim ueber neue neuer neues mehr bessere
""".split())
_UMLAUTS = (("ä", "ae"), ("ö", "oe"), ("ü", "ue"), ("ß", "ss"))
_KEY = re.compile(r"^[A-Za-z]-\d{1,9}$")
COMPOUND_SCORE = 95.0  # the titles without spaces: only a near-identical spelling
# The word-by-word score runs in Python; rapidfuzz's token set ratio (in C) first keeps the
# titles worth it: every pair the tables in tests/test_wishes_rules.py join scores 85 or
# more on it, unrelated titles far less.
PREFILTER_SCORE = 70.0
PREFILTER_LIMIT = 50


@lru_cache(maxsize=65536)  # a daemon compares each new title with the same wishes
def normalise(title: str) -> str:
    """Lower case, umlauts spelt out, accents and punctuation dropped, filler words of
    English and German removed: 'Dark-Mode für den Kundenbereich!' -> 'dark mode
    kundenbereich'."""
    text = title.casefold()
    for umlaut, spelt in _UMLAUTS:
        text = text.replace(umlaut, spelt)
    text = "".join(c for c in unicodedata.normalize("NFKD", text)
                   if not unicodedata.combining(c))
    words = re.sub(r"[^a-z0-9]+", " ", text).split()
    kept = [w for w in words if w not in _FILLER]
    return " ".join(kept or words)


def looks_like_key(text: str) -> bool:
    return bool(_KEY.match(text.strip()))


def _typos_allowed(word: str) -> int:
    return 0 if len(word) <= 2 else 1 if len(word) <= 5 else 2


def _words_match(a: str, b: str, *, stems: bool = True) -> bool:
    if a == b:
        return True
    shorter = a if len(a) <= len(b) else b
    if stems and len(shorter) >= 5 and (a.startswith(b) or b.startswith(a)):
        return True  # a stem: export / exportieren, rechnung / rechnungen
    return OSA.distance(a, b, score_cutoff=_typos_allowed(shorter)) <= _typos_allowed(shorter)


def _covered(wa: list[str], wb: list[str]) -> int:
    """How many words of `wa` find a partner in `wb`: a word, or two adjacent words written
    as one ("dark mode" / "darkmode"), on either side."""
    pairs_b = [x + y for x, y in pairwise(wb)]
    # A compound is the same word, or a typo of it, never a stem ("invoices csv" is not
    # "invoices").
    found = {i for i, word in enumerate(wa)
             if any(_words_match(word, other) for other in wb)
             or any(_words_match(word, pair, stems=False) for pair in pairs_b)}
    for i in range(len(wa) - 1):
        if any(_words_match(wa[i] + wa[i + 1], other, stems=False) for other in wb):
            found.update((i, i + 1))
    return len(found)


def similarity(a: str, b: str) -> float:
    """0-100: how alike two normalised titles are."""
    wa, wb = a.split(), b.split()
    if not wa or not wb:
        return 0.0
    words = 100.0 * (_covered(wa, wb) + _covered(wb, wa)) / (len(wa) + len(wb))
    joined = fuzz.ratio(a.replace(" ", ""), b.replace(" ", ""))
    return max(words, joined if joined >= COMPOUND_SCORE else 0.0)


@dataclass(frozen=True)
class Candidate:
    key: str
    title: str
    customers: int = 0  # a tie goes to the wish more customers asked for


@dataclass(frozen=True)
class Match:
    key: str
    score: float


def best_match(title: str, candidates: Iterable[Candidate], threshold: float
               ) -> Match | None:
    """The most similar wish at or above `threshold`, or None."""
    wanted = normalise(title)
    pool = list(candidates)
    near = process.extract(wanted, [normalise(c.title) for c in pool],
                           scorer=fuzz.token_set_ratio, score_cutoff=PREFILTER_SCORE,
                           limit=PREFILTER_LIMIT)
    best: tuple[float, int, str] | None = None
    for normalised, _, index in near:
        c = pool[index]
        score = similarity(wanted, normalised)
        if score >= threshold and (best is None or (score, c.customers) > best[:2]):
            best = (score, c.customers, c.key)
    return Match(best[2], round(best[0], 1)) if best else None
