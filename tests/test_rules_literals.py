"""The literal pre-filter of rule regexes: which literals, and that answers never change.

The pre-filter may only ever skip a search that would have failed. The tables pin down what is
derived; the case tables and the whole-Unicode checks prove the case folding; hypothesis and
the shared corpus check that the answers are exactly those of the plain regex.
"""

# ruff: noqa: RUF001 - confusable characters are what this file is about

from __future__ import annotations

import _sre
import re
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from bench.mailmix import build_mix
from maild.clock import FixedClock
from maild.domain import Inbound
from maild.pipeline.parse import ParseError, parse
from maild.rules import engine
from maild.rules.engine import RuleEngine, facts_for
from maild.rules.literals import (
    Search,
    fold_key,
    has_troublesome,
    necessary_literals,
    prefiltered_search,
    troublesome,
)
from maild.rules.loader import load_rules
from tests.kit import customer_mail

ROOT = Path(__file__).resolve().parents[1]


class Plain:
    """`literals.Texts` without memory: each search works its texts out itself."""

    @staticmethod
    def lower(text: str) -> str:
        return text.lower()

    @staticmethod
    def troubled(text: str) -> bool:
        return has_troublesome(text)

CORPUS = ROOT.parent / "shared" / "corpus"
RULES = ROOT / "config" / "rules.yaml"
MONDAY_10 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
SIGMA = "\N{GREEK CAPITAL LETTER SIGMA}"


def plain_search(pattern: re.Pattern[str]) -> Search:
    """What the engine did before: the regex alone."""
    return lambda value, texts: pattern.search(value) is not None


def literals(pattern: str, flags: int = re.I) -> set[str] | None:
    found = necessary_literals(re.compile(pattern, flags))
    return None if found is None else set(found)


# -- which literals --------------------------------------------------------------------------

LITERAL_CASES: list[tuple[str, int, set[str] | None]] = [
    # the shipped rules
    (r"(forgot|reset) (my )?password|passwort vergessen", re.I, {"password", "passwort vergessen"}),
    (r"\b(rechnung|invoice|zahlung|payment|mahnung)\b", re.I,
     {"rechnung", "invoice", "zahlung", "payment", "mahnung"}),
    (r"passwor(d|t).*(reset|vergessen|zurücksetzen)|forgot.*password", re.I, {"passwor"}),
    (r"kündigung|kuendigung|cancel(lation)?|vertrag|contract", re.I,
     {"kündigung", "kuendigung", "cancel", "vertrag", "contract"}),
    (r"\b(down|outage|ausfall|störung|nicht erreichbar|not reachable)\b", re.I,
     {"down", "outage", "ausfall", "störung", "nicht erreichbar", "not reachable"}),
    (r"(rechnung|invoice).*\.pdf$", re.I, {"rechnung", "invoice"}),
    # case: folded when ignoring it, as written otherwise
    ("Invoice", re.I, {"invoice"}),
    ("Invoice", 0, {"Invoice"}),
    ("(?i)Invoice", 0, {"invoice"}),
    ("STRASSE|Straße", re.I, {"trasse", "traße"}),  # re factors out the common "S"
    ("ſtraſſe", re.I, {"strasse"}),  # long s folds to its class key, s
    ("İnvoice", re.I, {"invoice"}),
    ("ΣΟΦΟΣ", re.I, {"ςοφος"}),  # the sigma class is keyed by final sigma
    ("μmol", re.I, {"µmol"}),  # Greek mu and the micro sign are one class, keyed by the latter
    # the best factor of a sequence, and parts that every match contains
    (r"a.*bcd.*efgh", re.I, {"efgh"}),
    (r"pass\bword", re.I, {"pass"}),
    (r"\bpassword\b", re.I, {"password"}),
    (r"(?x) pass word  # a comment", re.I, {"password"}),
    (r"(abc)+", re.I, {"abc"}),
    (r"(?:abc){2,}", re.I, {"abc"}),
    (r"(?:abcd)+?x", re.I, {"abcd"}),
    (r"(?:abc)++", re.I, {"abc"}),
    (r"(?>abc)", re.I, {"abc"}),
    (r"x[ab]cdef", re.I, {"cdef"}),
    (r"(a)\1bcd", re.I, {"bcd"}),
    (r"(?<=abc)def", re.I, {"def"}),
    (r"my password|password", re.I, {"password"}),  # a literal containing another adds nothing
    # nothing every match must contain, or nothing long enough: the plain regex
    ("", re.I, None),
    ("ab", re.I, None),
    ("abc|de", re.I, None),
    (r"abc|.*", re.I, None),
    (r"(abc)?", re.I, None),
    (r"(abc)*", re.I, None),
    (r"(?:abc){0,3}", re.I, None),
    (r"[ab]cd", re.I, None),
    (r"\w+@\w+", re.I, None),
    (r"(?=abc)", re.I, None),
    (r"(?!abc)x", re.I, None),
    (r"(x)?(?(1)abc|def)", re.I, None),
    ("(?i:abc)", 0, None),  # scoped flags would need the other comparison
    ("(?-i:abc)", re.I, None),
]


@pytest.mark.parametrize("pattern,flags,expected", LITERAL_CASES,
                         ids=[f"{p!r}/{f}" for p, f, _ in LITERAL_CASES])
def test_necessary_literals(pattern: str, flags: int, expected: set[str] | None) -> None:
    assert literals(pattern, flags) == expected


# -- case folding, proved over the whole of Unicode -------------------------------------------

def all_characters() -> Iterator[str]:
    return map(chr, range(sys.maxunicode + 1))


def test_casefix_groups_are_closed() -> None:
    """`fold_key` takes the smallest of a group: every member must name the same group."""
    extra = re._casefix._EXTRA_CASES  # type: ignore[attr-defined]
    for key, others in extra.items():
        group = {key, *others}
        assert all({o, *extra[o]} == group for o in others)


def test_every_character_lowers_to_its_key_or_is_troublesome() -> None:
    """The claim the filter rests on: outside the troublesome characters, `str.lower()` of a
    character is its class key (so of a text, the keys of its characters, in order)."""
    expected: dict[str, str] = {}
    for char in all_characters():
        key = fold_key(ord(char))
        if char.lower() != key or char == SIGMA:  # capital sigma lowers by what follows it
            expected[key] = expected.get(key, "") + char
    assert {key: troublesome([key]) for key in expected} == expected
    assert len(troublesome(all_characters())) == sum(map(len, expected.values()))
    assert not any(char.isascii() for char in troublesome(all_characters()))


def test_characters_re_equates_share_a_key() -> None:
    """`re` (IGNORECASE, Unicode or ASCII) never equates characters of different keys.

    Only cased characters and `re`'s extra pairs compile to anything but an exact comparison,
    and they match a character only when its simple lowercase is theirs or one of their extra
    pairs: these candidates hold every pair `re` can equate.
    """
    extra = re._casefix._EXTRA_CASES  # type: ignore[attr-defined]
    cased = [c for c in range(sys.maxunicode + 1) if _sre.unicode_iscased(c)]
    candidates = "".join(sorted({chr(c) for c in (*cased, *extra)}
                                | {chr(_sre.unicode_tolower(c)) for c in cased}))
    for char in candidates:
        for flags in (re.I, re.I | re.ASCII):
            for other in re.findall(re.escape(char), candidates, flags):
                assert fold_key(ord(other)) == fold_key(ord(char)), (char, other)


@pytest.mark.parametrize("literal,expected", [
    ("password", "ſ"),
    ("invoice", "İı"),
    ("zahlung", ""),
    ("störung", "ſ"),
])
def test_troublesome_characters(literal: str, expected: str) -> None:
    assert troublesome([literal]) == expected


# Text that `re` matches to the pattern only through a character `str.lower()` folds elsewhere.
CASE_TRAPS = [
    ("password", "PAſſWORD"),
    ("passwort vergessen", "Paßwort? Nein: PASSWORT VERGEſſEN"),
    ("invoice", "İNVOİCE"),
    ("invoice", "ınvoıce"),
    ("ΣΟΦΟΣ", "σοφοσ"),
    ("σοφος", "ΣΟΦΟΣ ΚΑΙ"),
    ("µmol", "5 μmol"),
    ("ﬅop", "ﬆop"),
    ("kelvin", "KELVIN"),
    ("straße", "STRAẞE"),
]


@pytest.mark.parametrize("pattern,text", CASE_TRAPS)
def test_case_traps_are_not_filtered_out(pattern: str, text: str) -> None:
    compiled = re.compile(pattern, re.I)
    assert compiled.search(text)
    assert prefiltered_search(compiled)(text, Plain)


def test_without_literal_the_search_is_skipped() -> None:
    calls: list[str] = []

    class Counting(Plain):
        @staticmethod
        def lower(text: str) -> str:
            calls.append(text)
            return text.lower()

    search = prefiltered_search(re.compile(r"\b(rechnung|invoice)\b", re.I))
    assert not search("Guten Tag, eine Frage zum Vertrag.", Counting)
    assert search("Ihre RECHNUNG", Counting)
    assert not search("RECHNUNGEN", Counting)  # the literal is there, the regex decides
    assert len(calls) == 3
    sensitive = prefiltered_search(re.compile("Rechnung"))
    assert not sensitive("rechnung", Counting) and sensitive("Rechnung", Counting)
    assert len(calls) == 3  # case-sensitive: compared as written, never lowered


def test_a_troublesome_character_anywhere_is_found_in_one_pass() -> None:
    from maild.rules.literals import _troublesome_by_key

    every = set("".join(_troublesome_by_key().values()))
    assert every and all(not c.isascii() for c in every)
    for char in every:
        assert has_troublesome("Grüße – ein Text " + char + " mit Ende")
    assert not has_troublesome("Grüße – ein ganz normaler Text „mit“ Zeichen €")
    assert not has_troublesome("plain ASCII text")


def test_facts_lower_each_text_once_per_message() -> None:
    ruleset = load_rules(RULES)
    mail = parse(customer_mail(subject="Hallo", body="Ein langer Text " * 500), None)
    facts = facts_for(mail, ruleset.organisation, MONDAY_10)
    assert facts.lower(facts.body) is facts.lower(facts.body)
    assert facts.lower(facts.body) == facts.body.lower()
    assert facts.troubled(facts.body) is False and facts._troubled == {facts.body: False}


# -- the same answers as the regex, for drawn patterns and texts ------------------------------

WORDS = ["password", "Passwort", "vergessen", "Straße", "STRASSE", "Kündigung", "invoice",
         "İstanbul", "ısı", "ſtraſſe", "ΣΟΦΟΣ", "σοφός", "ﬅep", "µmol", "μικρό", "Kelvin",
         "ǅemal", "café", "cafe\u0301", "ab", "x"]
TROUBLE = ("ſ", "K", "İ", "ı", "ẞ", "ß", "Σ", "σ", "ς", "ﬅ", "ﬆ", "µ", "μ", "Μ", "ϐ", "ͅ",
           "ι", "ι", "ᲀ", "ǅ", "ǆ", "Ǆ", "\u0301", "\u0307", "i\u0307", " ")
ATOMS = ["[a-z]", "[sſ]", ".", r"\w", r"\d", r"\s", "^", "$", r"\b", r"\B"]
WRAPS = ["({})", "(?:{})", "(?:{})?", "(?:{})*", "(?:{})+", "(?:{}){{2}}", "(?:{}){{0,2}}",
         "(?:{}){{1,3}}", "(?:{})+?", "(?:{})*+", "(?>{})", "(?={})", "(?!{})", "(?<=ab){}",
         "(?i:{})", "(?-i:{})", r"({})\1"]


def _wrap(parts: tuple[str, str]) -> str:
    return parts[0].format(parts[1])


def patterns() -> st.SearchStrategy[str]:
    atom = st.one_of(st.sampled_from(WORDS).map(re.escape), st.sampled_from(ATOMS))
    return st.recursive(atom, lambda inner: st.one_of(
        st.lists(inner, min_size=2, max_size=4).map("".join),
        st.lists(inner, min_size=2, max_size=3).map("|".join),
        st.tuples(st.sampled_from(WRAPS), inner).map(_wrap),
    ), max_leaves=8)


def recased(word: str) -> st.SearchStrategy[str]:
    """The word as written, in other cases, and with characters `re` folds to its letters."""
    upper = word.upper()
    variants = [word, word.lower(), upper, word.title(), word.swapcase(),
                word.replace("s", "ſ"), word.replace("i", "ı"), upper.replace("I", "İ"),
                upper.replace("K", "\u212a"), word.replace("ss", "ß"), upper.replace("SS", "ẞ")]
    mixed = st.lists(st.booleans(), min_size=len(word), max_size=len(word)).map(
        lambda flips: "".join(c.swapcase() if f else c for c, f in zip(word, flips, strict=True)))
    return st.one_of(st.sampled_from(variants), mixed)


def texts(words: list[str]) -> st.SearchStrategy[str]:
    piece = st.one_of(st.sampled_from(words).flatmap(recased), st.sampled_from(TROUBLE),
                      st.text(max_size=3))
    return st.lists(piece, max_size=8).map("".join)


# Characters `re` equates ignoring case, though `str.lower()` may not.
SWAPS = {"s": "Sſ", "S": "sſ", "i": "Iıİ", "I": "iıİ", "k": "KK", "K": "kK", "σ": "Σς",
         "ς": "Σσ", "Σ": "σς", "µ": "μΜ", "μ": "µΜ", "ß": "ẞ", "ẞ": "ß", "ﬅ": "ﬆ", "ﬆ": "ﬅ"}


def swapped(text: str) -> st.SearchStrategy[str]:
    """The text with some characters in another case or swapped for one `re` equates."""
    return st.tuples(*(st.sampled_from([c, c.swapcase(), *SWAPS.get(c, "")]) for c in text)
                     ).map("".join)


def compiles(pattern: str, flags: int) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern, flags)
    except re.error:
        return None  # a lookbehind of varying width, a reference to an open group ...


@settings(max_examples=600, deadline=None, database=None,
          suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(pattern=patterns(), prefix=st.sampled_from(["", "(?i)"]),
       flags=st.sampled_from([0, re.I, re.I | re.ASCII]), data=st.data())
def test_prefilter_answers_exactly_as_the_regex(
    pattern: str, prefix: str, flags: int, data: st.DataObject
) -> None:
    compiled = compiles(prefix + pattern, flags)
    assume(compiled is not None)
    assert compiled is not None
    # Texts that match, with characters recased or swapped, and texts made of the pattern's
    # own words, recased, among troublesome characters.
    text = data.draw(st.one_of(
        st.from_regex(compiled).flatmap(swapped),
        texts([w for w in WORDS if re.escape(w) in pattern] or WORDS)))
    expected = compiled.search(text) is not None
    event("literals" if necessary_literals(compiled) else "no literals")
    event(f"match: {expected}")
    assert prefiltered_search(compiled)(text, Plain) == expected


# Fixed cases for the corners drawn patterns rarely reach.
EXACT_CASES = [
    ("(?i:password)", 0, "PASSWORD"),
    ("x(?i:password)", 0, "xPaſſword"),
    ("(?-i:Password)", re.I, "Password"),
    ("(?i)password", 0, "PAſſWORD"),
    ("(?a)password", re.I, "PASSWORD"),
    ("(?a)password", re.I, "PAſſWORD"),
    (r"(pass)\1word", re.I, "PASSpassWORD"),
    (r"(?<=pass)word", re.I, "PASSWORD"),
    ("(?:Rechnung)+", 0, "RechnungRechnung"),
    ("(?:Rechnung)+", 0, "rechnung"),
    ("ΣΟΦΟΣ ΚΑΙ", re.I, "σοφοσ και"),
    ("σοφος", re.I, "ΣΟΦΟΣ"),
]


@pytest.mark.parametrize("pattern,flags,text", EXACT_CASES)
def test_prefilter_answers_exactly_as_the_regex_in_corners(
    pattern: str, flags: int, text: str
) -> None:
    compiled = re.compile(pattern, flags)
    assert prefiltered_search(compiled)(text, Plain) == (compiled.search(text) is not None)


# -- the shipped rules over real and synthetic mail -------------------------------------------

def shipped_regexes() -> list[str]:
    found: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            found.extend([node["regex"]] if "regex" in node else [])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(yaml.safe_load(RULES.read_text(encoding="utf-8")))
    return found


def mails() -> list[Inbound]:
    """Every mail of the threads and i18n corpora, and a synthetic mix."""
    out = []
    for folder in ("threads", "i18n"):
        for path in sorted((CORPUS / folder).rglob("*")):
            if path.is_file() and path.suffix != ".csv":
                try:
                    out.append(parse(path.read_bytes(), None))
                except ParseError:
                    continue  # nothing to classify (a headerless fragment)
    return out + [parse(raw, None) for raw in build_mix(500, seed=1).messages]


@pytest.mark.slow
def test_shipped_rules_hit_the_same_over_the_corpus(monkeypatch: pytest.MonkeyPatch) -> None:
    inbound = mails()
    assert len(inbound) > 4000
    filtered = RuleEngine(load_rules(RULES), FixedClock(MONDAY_10))
    with monkeypatch.context() as patch:
        patch.setattr(engine, "prefiltered_search", plain_search)
        plain = RuleEngine(load_rules(RULES), FixedClock(MONDAY_10))
    for mail in inbound:
        assert filtered.classify(mail).hits == plain.classify(mail).hits, mail.message_id
    # Every shipped regex in both case modes over every subject and body, not only the rules
    # that first-match-wins got to.
    searches: list[tuple[Callable[[str], object], Search]] = [
        (compiled.search, prefiltered_search(compiled))
        for regex in shipped_regexes() for compiled in (re.compile(regex, re.I), re.compile(regex))]
    assert searches
    for mail in inbound:
        for text in (mail.subject, mail.body_text):
            for search, prefiltered in searches:
                assert prefiltered(text, Plain) == (search(text) is not None)
