"""The shared words (maild/mailsafety/vocabulary.py) as each of their users applies them."""

from __future__ import annotations

import email
import email.message
import email.policy

import pytest

from maild.mailsafety.autoreply import classify_automatic
from maild.mailsafety.bounce import parse_report
from maild.mailsafety.mime import decode_words, html_to_text
from maild.mailsafety.vocabulary import normalise_subject


@pytest.mark.parametrize(("subject", "expected"), [
    ("Re: Rechnung", "Rechnung"),
    ("AW: WG: Rechnung", "Rechnung"),
    ("Antw: [EXT] Re: Rechnung", "Rechnung"),
    ("Re[2]: Re^3: RE(4): Rechnung", "Rechnung"),
    ("SV: VS: Odp: RIF: R: I: Rechnung", "Rechnung"),
    ("Doorst: YNT: ENC: RES: RV: TR: Fwd: FW: Rechnung", "Rechnung"),
    ("  re :  Rechnung  ", "Rechnung"),
    ("[External] Rechnung", "Rechnung"),
    ("Regarding: Rechnung", "Regarding: Rechnung"),  # not a prefix: the word goes on
    ("Ref: Rechnung", "Ref: Rechnung"),
    ("Rechnung Re: Mahnung", "Rechnung Re: Mahnung"),  # only in front
    ("Re:", ""),
])
def test_normalise_subject(subject: str, expected: str) -> None:
    assert normalise_subject(subject) == expected


def message(text: str) -> email.message.Message:
    return email.message_from_string(text, policy=email.policy.compat32)


BOUNCE_BODY = "<customer@example.com>: host mx.example.com said: 550 5.1.1 user unknown\n"


@pytest.mark.parametrize(("subject", "is_report"), [
    ("Undelivered Mail Returned to Sender", True),
    ("[list] Undelivered Mail Returned to Sender", True),
    ("Re: Undelivered Mail Returned to Sender", False),  # a person asking about a bounce
    ("AW: Undelivered Mail Returned to Sender", False),
    ("Re[2]: Undelivered Mail Returned to Sender", False),
    ("[list] Fwd: Undelivered Mail Returned to Sender", False),
])
def test_a_reply_about_a_bounce_is_not_a_bounce(subject: str, is_report: bool) -> None:
    # From a person, so only the subject can speak for a machine.
    msg = message(f"From: Kim <kim@example.org>\nSubject: {subject}\n\n{BOUNCE_BODY}")
    assert (parse_report(msg) is not None) is is_report


@pytest.mark.parametrize(("sender", "reason"), [
    ("MAILER-DAEMON@example.org", "sender:mailer-daemon"),
    ("Mail Delivery System <mailer_daemon@example.org>", "sender:mailer-daemon"),
    ("Mail Delivery Subsystem <x@example.org>", "sender:mailer-daemon"),
    ("postmaster@example.org", "sender:postmaster"),
    ("post_master@example.org", "sender:postmaster"),
    # Likely daemon names: enough for a bounce together with its words, not on their own.
    ("System Administrator <admin@example.org>", None),
    ("mailadmin@example.org", None),
])
def test_daemon_senders(sender: str, reason: str | None) -> None:
    verdict = classify_automatic(message(f"From: {sender}\nSubject: Hello\n\nHi\n"))
    assert verdict.reasons == ((reason,) if reason else ())


def test_decode_words_shown_or_glued() -> None:
    encoded = "=?utf-8?B?8J+QiA==?=@example.org"
    assert decode_words(encoded) == "\N{CAT} @example.org"
    assert decode_words(encoded, glued=True) == "\N{CAT}@example.org"
    assert decode_words("=?x-unknown?q?abc?= plain") == "=?x-unknown?q?abc?= plain"
    assert decode_words("no words") == "no words"


def test_html_to_text() -> None:
    markup = (
        "<style>p {color: red}</style><p>Hello&nbsp;<b>Kim</b></p><ul><li>one</li>"
        "<li>two</li></ul>line<br/>break<script>alert(1)</script>"
    )
    assert html_to_text(markup).split("\n") == [
        "  Hello\xa0 Kim ", "  one", " two", " line", "break ",  # no style, no script
    ]
