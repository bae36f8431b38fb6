"""The shortcuts that keep parsing and inspecting cheap give what the long way gives.

Each shortcut in the parse workers (pipeline.parse, pipeline.language, mailsafety) skips or
replaces work only where the result cannot differ. These tests hold each one against the
long way it replaced, on generated input made of the characters that could tell them apart.
"""

from __future__ import annotations

import base64
import email
import email.message
import email.policy
import email.utils
import re
import sys

import mailparser
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from maild.mailsafety.autoreply import _CHALLENGE_WORDS, _CHALLENGES, classify_automatic
from maild.mailsafety.mime import (
    DECODE_ERRORS,
    MessageReader,
    addresses_of,
    content_param,
    to_text,
)
from maild.pipeline import language
from maild.pipeline.language import detect_language
from maild.pipeline.parse import parse
from tests.test_hostile import hostile_message

SETTINGS = settings(max_examples=400, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def raw_msg(raw: bytes) -> email.message.Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


# Addresses ----------------------------------------------------------------------------------

TRICKY = [*"aZ9ü.@<>,;:\"()[]\\ \t\r\n\xa0\u2028-_=", "ab", "x.y", "@ex.org", "<a@b.c>"]
address_text = st.lists(st.sampled_from(TRICKY), max_size=14).map("".join)
word = st.text(st.sampled_from(list("aBü9.-_\xa0\\\"()")), min_size=1, max_size=6)
address_like = st.builds(
    lambda name, sep, local, domain, close: f"{name}{sep}<{local}@{domain}{close}",
    st.lists(word, max_size=3).map(" ".join), st.sampled_from(["", " ", "  ", "\t"]),
    word, st.lists(word, min_size=1, max_size=3).map(".".join), st.sampled_from([">", "> ", ""]),
)


@pytest.mark.parametrize("value", [
    "Frank Jones <frank.jones.46@example.org>", "<a@b.example>", "a.b@c.example",
    "Dr. Who <who@tardis.example>", "Jürgen Müller <j@x.example>", '"Jones, F" <f@x.example>',
    "a (comment) <x@y.example>", "a  b <x@y.example>", "a\xa0b <x@y.example>", "x@y, z@w",
    ".a@b.example", "a.@b.example", "a..b@c.example", "a@b@c.example", "<a@[10.0.0.1]>",
    "a <b@c.example> d", "Name<a@b.example>", "a\\b <c@d.example>", "", " ", "<>",
])
def test_addresses_of_known_forms(value: str) -> None:
    assert addresses_of(value) == email.utils.getaddresses([value])


@SETTINGS
@given(value=st.one_of(address_text, address_like))
def test_addresses_of_is_the_stdlib_parser(value: str) -> None:
    assert addresses_of(value) == email.utils.getaddresses([value])


# Header reading -----------------------------------------------------------------------------

NAMES = ["from", "subject", "to", "sender", "return-path", "x-failed-recipients", "list-id",
         "content-type", "message-id", "auto-submitted", "x-missing"]


@SETTINGS
@given(raw=hostile_message)
def test_message_reader_reads_what_get_all_and_get_read(raw: bytes) -> None:
    msg = raw_msg(raw)
    reader = MessageReader(msg)
    for name in NAMES:
        try:
            values = msg.get_all(name) or []
        except DECODE_ERRORS:
            values = []
        assert reader.texts(name) == tuple(to_text(v) for v in values)
        first = msg.get(name)
        assert reader.first(name) == ("" if first is None else to_text(first))
        pairs = [p for v in reader.texts(name) for p in email.utils.getaddresses([v])]
        assert reader.addresses(name) == pairs


content_type = st.lists(st.sampled_from([
    "multipart/report", "text/plain", ";", " ", "=", '"', "report-type", "Report-Type",
    "REPORT-TYPE*", "*0", "*1*", "disposition-notification", "delivery-status", "utf-8''x",
    "boundary=x", "\\", "report", "-type",
]), max_size=10).map("".join)


@SETTINGS
@given(value=content_type)
def test_a_parameter_is_looked_for_only_where_it_can_be(value: str) -> None:
    msg = raw_msg(f"Content-Type: {value}\r\n\r\nx".encode())
    expected = msg.get_param("report-type")
    if isinstance(expected, tuple):
        expected = expected[2]
    assert content_param(msg, "report-type") == str(expected or "")[:200]


# Challenge-response notices -----------------------------------------------------------------

WHOLE = re.compile("|".join(p.pattern for _, p in _CHALLENGES), re.IGNORECASE | re.DOTALL)


def challenge_the_long_way(text: str) -> bool:
    """The check before the phrases: the lower-cased text has one of the words, and the
    pattern of every alternative at once matches."""
    text = " ".join(text.split())
    lowered = text.lower()
    return any(w.decode() in lowered for w in _CHALLENGE_WORDS) and bool(WHOLE.search(text))


def mail_with_body(text: str) -> email.message.Message:
    body = base64.encodebytes(text.encode("utf-8", "surrogatepass"))
    return raw_msg(b"From: a@b.example\r\nSubject: hi\r\nContent-Type: text/plain; "
                   b"charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + body)


# dotless i, dotted capital I, long s, Kelvin sign, capital sharp s, and spaces of all kinds
ODD = ["\u0131", "\u0130", "\u017f", "\u212a", "\u1e9e", "\xa0", "\u2028", "\t", "\n", "  ",
       "LIST", "List", "list", "VERIFY", "protected", "Zugestellt", "added  to",
       "been\nwaitlisted", "l\u0131st", "ver\u0131fy"]
matching = st.one_of(*(st.from_regex(pattern) for _, pattern in _CHALLENGES))
challenge_text = st.lists(st.one_of(matching, st.sampled_from(ODD), st.text(max_size=8)),
                          max_size=6).map(" ".join)


@SETTINGS
@given(text=challenge_text)
def test_the_phrases_skip_no_challenge_notice(text: str) -> None:
    """What the cheap checks in front of the patterns let through is what the whole pattern
    behind the old word check found: they never skip a challenge-response notice."""
    reasons = classify_automatic(mail_with_body(text)).reasons
    assert ("challenge-response" in reasons) == challenge_the_long_way(text)


@SETTINGS
@given(data=st.data())
def test_every_text_a_pattern_matches_has_its_phrase(data: st.DataObject) -> None:
    phrase, pattern = data.draw(st.sampled_from(_CHALLENGES))
    text = " ".join(data.draw(st.from_regex(pattern)).split())
    if pattern.search(text):
        assert phrase in text.lower()


def test_lower_casing_the_ascii_letters_finds_the_words() -> None:
    """Why the words are looked for in ASCII-folded UTF-8: no other character lower-cases
    to one of their letters, except the dotted capital I (to "i" and a combining dot, so
    never to an "i" that a letter follows) and the Kelvin sign ("k", in no word)."""
    letters = set(b"".join(_CHALLENGE_WORDS).decode())
    others = {chr(cp): chr(cp).lower() for cp in range(0x80, sys.maxunicode + 1)
              if letters & set(chr(cp).lower())}
    assert others == {"\u0130": "i\u0307"}
    assert all(not w.endswith(b"i") for w in _CHALLENGE_WORDS)


# Language -----------------------------------------------------------------------------------

def language_the_long_way(text: str) -> str:
    """What `language.sample` hands the model, the plain way: every run of white space as
    one space, the first SAMPLE_CHARS characters."""
    return " ".join(re.split(r"\s+", text))[:language.SAMPLE_CHARS]


VOCABULARY = ["und", "der", "für", "grüße", "Grüße", "FÜR", "the", "and", "you", "thanks",
              "hi", "doesn't", "\u0130ch", "\u017fie", "\u212aind", "\u1e9e", "ä", "Ä", "€", "é",
              "x", "\ud800"]
prose = st.lists(st.tuples(st.sampled_from(VOCABULARY),
                           st.sampled_from([" ", ",", ".", "-", "'", "\n", "\xa0", "1", "_"])),
                 max_size=40).map(lambda pairs: "".join(w + s for w, s in pairs))


@SETTINGS
@given(text=prose, declared=st.sampled_from(["", "de", "EN", "fr", "tr"]))
def test_language_sample_and_answer(text: str, declared: str) -> None:
    """The sample reads only a prefix of the text, yet equals the plain way's; any text,
    surrogates included, gets a language with templates or the default."""
    for long_text in (text * 200, "\n" * 5000 + text * 50, text + " " * 3000 + text * 50):
        assert language.sample(long_text) == language_the_long_way(long_text)
    assert detect_language(text, declared, default="de") in ("de", "en", "fr")


# Body -----------------------------------------------------------------------------------------

SPACES_RE = re.compile(r"[ \t]+")
body_text = st.lists(st.sampled_from(["a", "b c", " ", "  ", "\t", "\r", "\n", "\r\n", "\x0b",
                                      "\xa0", "\u2028"]), max_size=30).map("".join)


@SETTINGS
@given(text=body_text)
def test_the_body_keeps_its_lines_as_before(text: str) -> None:
    raw = (b"From: a@b.example\r\nSubject: x\r\nContent-Type: text/plain; charset=utf-8\r\n"
           b"Content-Transfer-Encoding: base64\r\n\r\n" + base64.encodebytes(text.encode()))
    plain = mailparser.parse_from_bytes(raw).text_plain
    normalised = SPACES_RE.sub(" ", "\n".join(plain).replace("\r\n", "\n"))
    expected = "\n".join(line.rstrip() for line in normalised.split("\n")).strip()
    assert parse(raw, None).body_text == expected.replace("\x00", "")
