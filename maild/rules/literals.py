"""A literal pre-filter for rule regexes: skip the search when the text cannot match.

Python's `re` has no fast path for a pattern that starts with an alternation, and IGNORECASE
makes it slower still: a rule regex over a long body costs about a millisecond, while
`"password" in text.lower()` costs a few microseconds. So from the parsed pattern we derive
literals of which every match must contain one, test for them first, and search only when one
is there. The answer is always exactly `pattern.search(text) is not None`.

Case-insensitive patterns compare against `text.lower()`, which is not what `re` does: `re`
equates two characters when their simple lowercase is equal or they are one of its extra case
pairs (`re._casefix`: s and long s U+017F, i and dotless i U+0131, micro sign and mu ...),
whereas `str.lower()` uses the full case mapping (U+0130, capital I with dot, becomes two
characters; capital sigma depends on the next letter). A literal stores each character as the
key of its `re` equivalence class, and the few characters whose `str.lower()` is not their key
(U+017F, U+0131 and U+0130 for the ASCII letters) are "troublesome": when the text holds one
that is equivalent to a literal's character, the filter stands aside and the regex decides.

Pattern trees are read with CPython 3.11's own parser and case tables (`re._parser`,
`_sre.unicode_tolower`, `re._casefix`): they are untyped internals, but reading the pattern
exactly as `re` reads it is what makes the filter exact.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from importlib import import_module
from typing import Any, Protocol

MIN_LENGTH = 3  # a shorter literal is in almost every body: not worth testing for
_PARSER = import_module("re._parser")
_OPS = import_module("re._constants")
_SRE = import_module("_sre")
_EXTRA_CASES: Mapping[int, tuple[int, ...]] = import_module("re._casefix")._EXTRA_CASES
_REPEATS = (_OPS.MAX_REPEAT, _OPS.MIN_REPEAT, _OPS.POSSESSIVE_REPEAT)


class Texts(Protocol):
    """A message's texts as the pre-filter reads them: `lower` is `str.lower` and
    `troubled` is `has_troublesome`, each worked out once per text and message when many
    rules ask (rules.engine.Facts)."""

    def lower(self, text: str) -> str: ...

    def troubled(self, text: str) -> bool: ...


Search = Callable[[str, Texts], bool]


def fold_key(code: int) -> str:
    """The character standing for `code`'s IGNORECASE class in `re` (Unicode mode).

    `re` matches a text character t to a pattern character c when their simple lowercase is
    equal, or when that lowercase is among the extra pairs of `re._casefix` (whose groups are
    closed): the smallest member of that group names the class. In ASCII mode `re` equates
    fewer characters, so the same keys still hold.
    """
    lower: int = _SRE.unicode_tolower(code)
    return chr(min((lower, *_EXTRA_CASES.get(lower, ()))))


@cache
def _troublesome_by_key() -> Mapping[str, str]:
    """For each class key, the characters of that class whose `str.lower()` is not the key.

    Only cased characters and `re`'s extra case pairs can differ from their key, so the scan
    skips the rest of Unicode at C speed (tests check the whole range, and that capital sigma,
    which lowers to one of two sigmas depending on what follows it, is among them).
    """
    table: dict[str, str] = {}
    for code in {*filter(_SRE.unicode_iscased, range(sys.maxunicode + 1)), *_EXTRA_CASES}:
        char, key = chr(code), fold_key(code)
        if char.lower() != key:
            table[key] = table.get(key, "") + char
    return table


@cache
def _all_troublesome() -> str:
    return "".join(sorted(set("".join(_troublesome_by_key().values()))))


def has_troublesome(text: str) -> bool:
    """Whether `text` holds any troublesome character at all. None of them is ASCII, and
    none is Latin-1 either, so for most mail each test below costs nothing: a str knows
    its widest character, and looking for a wider one is answered without reading."""
    return not text.isascii() and any(char in text for char in _all_troublesome())


def troublesome(literals: Iterable[str]) -> str:
    """The text characters that `re` may match to a literal's character but that
    `str.lower()` does not turn into it."""
    table = _troublesome_by_key()
    return "".join(sorted({t for key in set("".join(literals)) for t in table.get(key, "")}))


def necessary_literals(pattern: re.Pattern[str]) -> frozenset[str] | None:
    """Literals of which every match of `pattern` contains one, or None when there are none
    worth testing for (each at least MIN_LENGTH long).

    For a case-insensitive pattern, each character is its `fold_key`.
    """
    fold = fold_key if pattern.flags & re.IGNORECASE else chr
    return _sequence(_PARSER.parse(pattern.pattern, pattern.flags), fold)


def _sequence(items: Iterable[tuple[Any, Any]], fold: Callable[[int], str]
              ) -> frozenset[str] | None:
    """The most selective factor of a concatenation: a run of literal characters, or a node.

    Every match of the concatenation contains a match of each factor, so the literals of any
    one factor are necessary; the best factor is the one whose shortest literal is longest.
    """
    factors: list[frozenset[str]] = []
    run = ""
    for op, av in items:
        if op is _OPS.LITERAL:
            run += fold(av)
            continue
        factors.append(frozenset({run}))
        run = ""
        node = _node(op, av, fold)
        if node is not None:
            factors.append(node)
    factors.append(frozenset({run}))
    usable = [f for f in factors if min(map(len, f)) >= MIN_LENGTH]
    return max(usable, key=lambda f: min(map(len, f)), default=None)


def _node(op: Any, av: Any, fold: Callable[[int], str]) -> frozenset[str] | None:
    """Necessary literals of one node that is not a literal character."""
    if op is _OPS.SUBPATTERN:
        _group, add_flags, del_flags, inner = av
        # (?i:...) and (?-i:...) would need the other comparison: no literal from inside.
        return None if (add_flags | del_flags) & re.IGNORECASE else _sequence(inner, fold)
    if op is _OPS.ATOMIC_GROUP:
        return _sequence(av, fold)
    if op in _REPEATS:
        least, _most, inner = av
        return _sequence(inner, fold) if least >= 1 else None
    if op is _OPS.BRANCH:
        branches = [_sequence(b, fold) for b in av[1]]
        found = [b for b in branches if b is not None]
        if len(found) < len(branches):
            return None
        union = frozenset[str]().union(*found)
        # A literal that contains another one adds nothing.
        return frozenset(a for a in union if not any(b != a and b in a for b in union))
    return None  # any character, classes, anchors, lookarounds, backreferences, conditionals


def prefiltered_search(pattern: re.Pattern[str]) -> Search:
    """`pattern.search(value) is not None`, but the search runs only when `value` holds a
    necessary literal. `texts` lowers a text and looks for troublesome characters once per
    message, however many rules ask.
    """
    literals = necessary_literals(pattern)
    if literals is None:
        return lambda value, texts: pattern.search(value) is not None
    if not pattern.flags & re.IGNORECASE:
        return lambda value, texts: (any(lit in value for lit in literals)
                                     and pattern.search(value) is not None)
    trouble = troublesome(literals)

    def search(value: str, texts: Texts) -> bool:
        if not (trouble and texts.troubled(value) and any(t in value for t in trouble)):
            folded = texts.lower(value)
            if not any(lit in folded for lit in literals):
                return False
        return pattern.search(value) is not None

    return search
