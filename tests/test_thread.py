"""Threading as a table: which ticket a message belongs to, from its keys and what the
database knew (pipeline/thread.py), and subject normalisation."""

from __future__ import annotations

import pytest

from maild.domain import Address, Inbound, ThreadDecision, ThreadedBy
from maild.mailsafety.vocabulary import normalise_subject
from maild.pipeline.thread import (
    RefTicket,
    candidate_ids,
    decide_thread,
    ref_pattern,
    strip_ref,
    subject_ref,
)


def inbound(*, sender: str = "c@x", message_id: str | None = "new@x",
            in_reply_to: tuple[str, ...] = (), references: tuple[str, ...] = (),
            subject: str = "s") -> Inbound:
    return Inbound(source=None, raw=b"", raw_sha256="0", message_id=message_id,
                   in_reply_to=in_reply_to, references=references,
                   sender=Address("", sender), to=(), cc=(), reply_to=(), subject=subject,
                   date=None, body_text="", language="en", headers=())


@pytest.mark.parametrize(("subject", "expected"), [
    ("Re: hello", "hello"),
    ("AW: WG: Rechnung", "Rechnung"),
    ("Fwd: FW: re: RE: x", "x"),
    ("Re[2]: x", "x"),
    ("Re^3: x", "x"),
    ("Antw: [EXT] Re: Vertrag", "Vertrag"),
    ("SV: VS: TR: RIF: R: I: x", "x"),
    ("[extern] AW: x", "x"),
    ("Reply needed", "Reply needed"),  # a word that starts like a prefix stays
    ("Re:", ""),
    ("  Re :  spaced ", "spaced"),
    ("Answer: 42", "Answer: 42"),
])
def test_normalise_subject(subject: str, expected: str) -> None:
    assert normalise_subject(subject) == expected


@pytest.mark.parametrize(("subject", "ref", "stripped"), [
    ("Re: [T-K7QF2X] Login", "T-K7QF2X", "Re: Login"),
    ("[ t-k7qf2x ] lower case", "T-K7QF2X", "lower case"),
    ("[X-K7QF2X] other prefix", None, "[X-K7QF2X] other prefix"),
    ("T-K7QF2X without brackets", None, "T-K7QF2X without brackets"),
])
def test_subject_reference(subject: str, ref: str | None, stripped: str) -> None:
    pattern = ref_pattern("T")
    assert subject_ref(subject, pattern) == ref
    assert strip_ref(subject, pattern) == stripped


def test_candidate_ids_are_in_reply_to_then_references_newest_first_without_own() -> None:
    message = inbound(message_id="me@x", in_reply_to=("p@x",),
                      references=("a@x", "b@x", "p@x", "me@x"))
    assert candidate_ids(message) == ("p@x", "b@x", "a@x")


PARTICIPANT = RefTicket(ticket_id=7, participants=frozenset({"c@x"}))
T = ThreadedBy
CASES = [
    # (message, known Message-IDs, subject ref, ref ticket, markers, expected decision)
    ("in-reply-to", inbound(in_reply_to=("p@x",)), {"p@x": 1}, None, None, (),
     ThreadDecision(1, T.IN_REPLY_TO, "p@x")),
    ("second in-reply-to counts as references", inbound(in_reply_to=("u@x", "p@x")),
     {"p@x": 1}, None, None, (), ThreadDecision(1, T.REFERENCES, "p@x")),
    ("in-reply-to before references", inbound(in_reply_to=("p@x",), references=("q@x",)),
     {"p@x": 1, "q@x": 2}, None, None, (), ThreadDecision(1, T.IN_REPLY_TO, "p@x")),
    ("newest reference first", inbound(references=("old@x", "new1@x")),
     {"old@x": 1, "new1@x": 2}, None, None, (), ThreadDecision(2, T.REFERENCES, "new1@x")),
    ("own id is not a reference", inbound(message_id="p@x", in_reply_to=("p@x",)),
     {"p@x": 1}, None, None, (), ThreadDecision(None, T.NEW)),
    ("marker when headers are gone", inbound(), {"maild.abc@s": 3}, None, None,
     ("maild.abc@s",), ThreadDecision(3, T.MARKER, "maild.abc@s")),
    ("headers before marker", inbound(in_reply_to=("p@x",)), {"p@x": 1, "maild.abc@s": 3},
     None, None, ("maild.abc@s",), ThreadDecision(1, T.IN_REPLY_TO, "p@x")),
    ("subject ref from a participant", inbound(), {}, "T-AAAAAA", PARTICIPANT, (),
     ThreadDecision(7, T.SUBJECT, "T-AAAAAA")),
    ("subject ref from a stranger", inbound(sender="s@x"), {}, "T-AAAAAA", PARTICIPANT, (),
     ThreadDecision(None, T.NEW, "T-AAAAAA", linked_ticket_id=7,
                    flags=("subject-ref-from-non-participant",))),
    ("subject ref to no ticket", inbound(), {}, "T-AAAAAA", None, (),
     ThreadDecision(None, T.NEW)),
    ("headers before subject", inbound(in_reply_to=("p@x",)), {"p@x": 1}, "T-AAAAAA",
     PARTICIPANT, (), ThreadDecision(1, T.IN_REPLY_TO, "p@x")),
    ("nothing known", inbound(in_reply_to=("p@x",)), {}, None, None, (),
     ThreadDecision(None, T.NEW)),
]


@pytest.mark.parametrize(("message", "known", "ref", "ref_ticket", "markers", "expected"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_decide_thread(message: Inbound, known: dict[str, int], ref: str | None,
                       ref_ticket: RefTicket | None, markers: tuple[str, ...],
                       expected: ThreadDecision) -> None:
    assert decide_thread(message, known, ref, ref_ticket, markers=markers) == expected


def test_our_signed_ids_decide_before_a_customers() -> None:
    message = inbound(in_reply_to=("p@x",), references=("maild.ours@s",))
    decided = decide_thread(message, {"p@x": 1, "maild.ours@s": 2}, None, None,
                            ours=lambda mid: mid.startswith("maild."))
    assert decided == ThreadDecision(2, T.REFERENCES, "maild.ours@s")


PLACEHOLDERS = [
    # (message, known, referenced, expected)
    ("reply to a parent never held", inbound(in_reply_to=("ghost@x",)), {}, {"ghost@x": 4},
     ThreadDecision(4, T.PLACEHOLDER, "ghost@x")),
    ("a held message before a placeholder",
     inbound(in_reply_to=("ghost@x",), references=("p@x", "ghost@x")), {"p@x": 1},
     {"ghost@x": 4}, ThreadDecision(1, T.REFERENCES, "p@x")),
    ("the missing parent arrives late", inbound(message_id="ghost@x"), {}, {"ghost@x": 4},
     ThreadDecision(4, T.PLACEHOLDER, "ghost@x")),
    ("placeholder before the subject", inbound(references=("ghost@x",)), {}, {"ghost@x": 4},
     ThreadDecision(4, T.PLACEHOLDER, "ghost@x")),
]


@pytest.mark.parametrize(("message", "known", "referenced", "expected"),
                         [c[1:] for c in PLACEHOLDERS], ids=[c[0] for c in PLACEHOLDERS])
def test_placeholders(message: Inbound, known: dict[str, int], referenced: dict[str, int],
                      expected: ThreadDecision) -> None:
    assert decide_thread(message, known, "T-AAAAAA", PARTICIPANT,
                         referenced=referenced) == expected
