"""The outbound composer writes messages by hand (not through email.generator): every
message it writes must read back, through the standard library's parser, as what was meant."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from maild.domain import Address
from maild.outbound.compose import clean, compose
from maild.outbound.render import Rendered

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=300)


def _compose(subject: str, name: str, body: str, refs: tuple[str, ...] = ()) -> bytes:
    return compose(Rendered(subject, body), sender=Address("Support", "support@example.test"),
                   to=Address(name, "c@example.com"), message_id="maild.x@example.test",
                   in_reply_to="a@b.example", references=refs,
                   date=datetime(2026, 11, 22, tzinfo=UTC), automatic=True,
                   extra_headers={"Reply-To": "support+T-A.1@example.test"}).raw


@settings(max_examples=300, deadline=None)
@given(subject=TEXT, name=TEXT, body=TEXT)
def test_any_text_reads_back(subject: str, name: str, body: str) -> None:
    raw = _compose(subject, name, body)
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert all(len(line) <= 998 for line in head.split(b"\r\n"))
    assert b"\n" not in head.replace(b"\r\n", b"")  # only CRLF line ends
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert not msg.defects
    assert str(msg["Subject"]) == clean(subject)
    assert msg["To"].addresses[0].addr_spec == "c@example.com"
    expected = body.replace("\r\n", "\n").replace("\r", "\n")
    assert msg.get_content().replace("\r\n", "\n") == expected  # type: ignore[attr-defined]
    assert msg["Auto-Submitted"] == "auto-replied"
    assert [k for k, _ in msg.items()].count("Subject") == 1


def test_long_headers_are_folded_between_words() -> None:
    refs = tuple(f"id{i}.{'x' * 30}@mail.example" for i in range(8))
    raw = _compose("word " * 40, "", "body\n", refs)
    head = raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert max(len(line) for line in head) <= 78
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(msg["Subject"]) == clean("word " * 40)
    assert str(msg["References"]).split() == [f"<{r}>" for r in refs]


def test_non_ascii_words_are_short_and_whole() -> None:
    subject = "Rechnung über 300 € " * 5 + "日本語のテキスト"
    raw = _compose(subject, "Jürgen Müller", "Grüße\n")
    head = raw.split(b"\r\n\r\n", 1)[0]
    assert head.isascii()
    assert all(len(w) <= 75 for w in head.split() if w.startswith(b"=?"))
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert str(msg["Subject"]) == subject.strip() and msg["To"].addresses[0].display_name \
        == "Jürgen Müller"
    assert msg.get_content().replace("\r\n", "\n") == "Grüße\n"  # type: ignore[attr-defined]


def test_message_ids_that_are_not_ascii_are_left_out() -> None:
    """Found by test_hostile: a customer's Message-ID decoded to `i\ufffd@` made the
    acknowledgement impossible to compose (and the message was quarantined)."""
    raw = compose(Rendered("Re: x", "body\n"), sender=Address("S", "support@example.test"),
                  to=Address("", "c@example.com"), message_id="maild.x@example.test",
                  in_reply_to="i\ufffd@", references=("ok@example.com", "\u00fc@example.com"),
                  date=datetime(2026, 11, 22, tzinfo=UTC), automatic=True).raw
    assert raw.isascii()
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["In-Reply-To"] is None
    assert str(msg["References"]) == "<ok@example.com>"
