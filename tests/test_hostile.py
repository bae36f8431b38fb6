"""Hostile messages through the pipeline: nothing escapes the runner, nothing is lost.

The issue: "Messages with broken MIME, wrong or missing charsets, RFC 2047 garbage, no From,
no Date, no Message-ID, huge headers, deep nesting, or TNEF attachments are processed or
quarantined with the reason; none stops the daemon."

Hypothesis builds raw messages as bytes (header names and values with CR, LF, NUL and 8-bit
bytes, overlong lines, RFC 2047 garbage and unknown charsets, missing or duplicated From, Date
and Message-ID, broken multipart boundaries, wrong Content-Transfer-Encoding, TNEF parts,
random binary bodies, nesting 50-500 levels deep, 100 KB headers) and feeds them in batches,
each with one well-formed message among them, through `Pipeline.process_batch`:

* `process_batch` never raises;
* every message is either done or held, exactly once;
* a held message has a quarantine row with its raw bytes and a non-empty reason, and nothing
  else of it was written;
* a done message is stored byte for byte, or it is one of the batch's recorded discards;
* the well-formed message always becomes a ticket: a hostile neighbour costs it nothing.

The same property is checked on PostgreSQL, which refuses what SQLite stores (NUL in text,
over-long VARCHAR values). The real pathological files of the shared corpus go through the same
checks, one by one, with their processing time on record (pytest --durations shows it per
file). Tables pin down the stricter promise of the parse stage: a message whose only defect is
one broken header, or an unusual but usable sender, becomes a ticket, not a quarantine entry.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from maild import daemon
from maild.app import App, build
from maild.clock import FixedClock
from maild.domain import Fetched, SourceRef
from maild.pipeline.runner import BatchResult
from maild.store.models import Message, Quarantine, Ticket
from tests.kit import customer_mail, settings_for
from tests.servers.dovecot import MailUser

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "malformed"
SLOW_FILE_SECONDS = 20.0  # a guard against a hang, not a benchmark: typical files take < 1 s

HOSTILE = settings(
    deadline=None,
    database=None,  # no .hypothesis/ files left behind; failures print their reproducer
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large, HealthCheck.large_base_example],
)


# -- feeding the pipeline and checking what became of each message ----------------------------


@dataclass
class Feeder:
    """One database for a whole test function: every message gets a UID of its own."""

    app: App
    uids: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def __repr__(self) -> str:  # hypothesis prints the fixture with a failing example
        return f"Feeder({self.app.settings.database.url})"

    def wrap(self, raw: bytes) -> Fetched:
        return Fetched(SourceRef("support", "INBOX", 7, next(self.uids)), raw)

    def control(self) -> bytes:
        """A well-formed request with a Message-ID and a sender used nowhere else."""
        n = next(self.uids)
        return customer_mail(sender=f"control{n}@example.com", subject=f"control {n}",
                             message_id=f"<control.{n}@example.com>")

    def feed(self, raws: list[bytes]) -> BatchResult:
        batch = [self.wrap(r) for r in raws]
        result = self.app.pipeline.process_batch(batch)  # must not raise
        check_outcome(self.app, batch, result)
        return result


def check_outcome(app: App, batch: list[Fetched], result: BatchResult) -> None:
    raw_of = {f.source.key: f.raw for f in batch}
    done = [s.key for s in result.done]
    held = [s.key for s, _ in result.held]
    assert len(done) + len(held) == len(batch)
    assert sorted(done + held) == sorted(raw_of), "each message done or held, exactly once"
    with app.sessions() as s:
        for source, reason in result.held:
            rows = s.scalars(select(Quarantine).where(Quarantine.source_key == source.key)).all()
            assert len(rows) == 1, f"held without a quarantine row: {reason}"
            assert rows[0].raw == raw_of[source.key]
            assert reason.strip() and rows[0].reason.strip()
            assert s.scalar(select(Message.id).where(Message.source_key == source.key)) is None
        stored = 0
        for source in result.done:
            row = s.scalar(select(Message).where(Message.source_key == source.key))
            if row is not None:
                assert row.raw == raw_of[source.key], "stored, but not byte for byte"
                stored += 1
            else:
                assert s.scalar(select(Quarantine.id).where(
                    Quarantine.source_key == source.key)) is None
        assert stored + result.discarded == len(result.done), (
            "a done message that is neither stored nor a recorded discard")


def assert_control_ticket(app: App, control: bytes) -> None:
    with app.sessions() as s:
        row = s.scalar(select(Message).where(Message.raw == control))
        assert row is not None, "the well-formed message did not become a ticket"
        assert s.get(Ticket, row.ticket_id) is not None


@pytest.fixture
def feeder(tmp_path: Path) -> Iterator[Feeder]:
    app = build(settings_for(tmp_path, db_url=f"sqlite:///{tmp_path / 'hostile.db'}"),
                clock=FixedClock())
    yield Feeder(app)
    app.dispose()


# -- strategies: hostile pieces of a message, as bytes -----------------------------------------

RFC2047_GARBAGE = [
    b"=?utf-8?B?!!!?=", b"=?x-unknown?Q?a?=", b"=?utf-8?Q?=ZZ=?=", b"=??B??=",
    b"=?utf-8?X?abc?=", b"=?iso-2022-jp?B?GyRCJCIbKEI?=", b"=?utf-16?B?2D3eAA==?=",
    b"=?utf-8?B?\xff\xfe?=", b"=?us-ascii*en?Q?hello?=", b"=?utf-8?b?w6k=?==?utf-8?b?",
    b"=?=?=?=", b"=?utf-7?B?K0FHRS0=?=", b"=?big5?Q?=A4=A4=A4?=", b"=?unknown-8bit?Q?=E9t=E9?=",
    b"=?ISO-8859-1?Q?caf=E9?= =?x-bogus?B?Y2Fm?=", b"=?utf-8?B?" + b"QUFB" * 3000 + b"?=",
    b"=?gb2312?B?" + base64.b64encode(b"\xff\xff\xfe") + b"?=", b"=?utf-8?q?a_b?=\r\n =?",
    b"=?utf-8?B?" + base64.b64encode(b"\x00\r\nBcc: x@example.com") + b"?=",
]
HEADER_NAMES = [
    b"From", b"To", b"Cc", b"Subject", b"Date", b"Message-ID", b"In-Reply-To", b"References",
    b"Content-Type", b"Content-Transfer-Encoding", b"MIME-Version", b"Auto-Submitted",
    b"Return-Path", b"Sender", b"Reply-To", b"Content-Disposition", b"Precedence",
    b"Delivered-To", b"X-Original-To", b"List-Id", b"Content-Language", b"X-Autoreply",
    b"Received", b"X-Mailer", b"From ", b" Subject", b"Subject\x00", b"X-\xff\xfe",
]
ADDRESSES = [
    b"alice@example.com", b"Alice <alice@example.com>", b"<>", b"@", b"a@", b"@b",
    b'"quo\\"ted" <q@example.com>', b"undisclosed-recipients:;", b"group: a@b.c, d@e.f;",
    b"=?utf-8?B?w6k=?= <e@example.com>", b"a@b@c", b"(comment) a@example.com (more)",
    b"<<<a@example.com>>>", b"a@[127.0.0.1]", b"\xc3\xa9@\xc3\xa9.example",
    "Ärger <ärger@bücher.example>".encode(), b"a@example.com, b@example.com, c@",
    b"=?utf-8?B?YUBleGFtcGxlLmNvbQ==?=", b"MAILER-DAEMON@example.com", b"support@example.test",
    b"alice@example.com\x00bob@example.com", b"\"\" <>", b"g:" * 40,
]
DATES = [
    b"Fri, 20 Nov 2026 10:00:00 +0000", b"yesterday", b"", b"Fri, 31 Dec 9999 23:59:59 +2359",
    b"Mon, 32 Foo 2026 25:61:61 +9999", b"0", b"Tue, 1 Jan 1970 00:00:00 -0000",
    b"\xff\xfe\x00", b"Fri, 20 Nov 2026 10:00:00 GMT+25", b"1 Jan 70 0:0",
]
CHARSETS = [b"x-unknown", b"utf-16", b"utf-7", b"", b"utf-8\x00", b"\xff", b"us-ascii",
            b"iso-8859-1", b"utf-32", b"cp1252", b"unicode-1-1-utf-7", b"gb18030", b"\"",
            b"utf-8; charset=latin1", b"x-user-defined"]
ENCODINGS = [b"base64", b"quoted-printable", b"x-uuencode", b"7bit", b"8bit", b"binary",
             b"bogus", b"base64 base64", b"", b"\xff", b"uuencode", b"BASE64"]
SEPARATORS = [b"\r\n", b"\n", b"\r", b"\r\r\n"]

controls = st.sampled_from([b"\r", b"\n", b"\x00", b"\r\n", b"\n\t", b"\x7f", b"\x1b[2J",
                            b"a\r\nInjected: yes", b"\xc3", b"\xed\xa0\x80"])
header_value = st.one_of(
    st.binary(max_size=120),
    st.text(max_size=60).map(lambda t: t.encode("utf-8")),
    st.text(st.characters(max_codepoint=0xFF), max_size=60).map(lambda t: t.encode("latin-1")),
    st.sampled_from(RFC2047_GARBAGE),
    st.lists(st.sampled_from(RFC2047_GARBAGE) | st.binary(max_size=8) | controls,
             min_size=1, max_size=8).map(b" ".join),
    st.integers(998, 20_000).map(lambda n: b"x" * n),  # an overlong line
    controls,
)
header_name = st.one_of(st.sampled_from(HEADER_NAMES), st.binary(min_size=1, max_size=24))
address = st.one_of(
    st.sampled_from(ADDRESSES),
    st.tuples(st.binary(min_size=1, max_size=24), st.binary(min_size=1, max_size=24))
    .map(lambda t: t[0] + b"@" + t[1]),
    st.integers(64, 300).map(lambda n: b"a" * n + b"@example.com"),
    header_value,
)
message_id = st.one_of(
    st.none(), st.just(b"<same@example.com>"), st.sampled_from([b"<>", b"<", b"no-brackets",
                                                               b"<a@b> <c@d>", b"<\xff@\xfe>"]),
    st.integers(0, 50).map(lambda n: b"<hostile.%d@example.com>" % n),  # repeats: duplicates
    st.integers(900, 5000).map(lambda n: b"<" + b"m" * n + b"@example.com>"),
    header_value,
)


@st.composite
def headers(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    """The top-level headers, From/Date/Message-ID each missing, present or repeated."""
    out: list[tuple[bytes, bytes]] = []
    for name, values in ((b"From", address), (b"Date", st.sampled_from(DATES) | header_value),
                         (b"Message-ID", message_id)):
        for value in draw(st.lists(values, max_size=2)):
            if value is not None:
                out.append((name, value))
    out.append((b"Subject", draw(header_value)))
    out += draw(st.lists(st.tuples(header_name, header_value), max_size=6))
    return draw(st.permutations(out))


def part(ctype: bytes, body: bytes, *extra: bytes, sep: bytes = b"\r\n") -> bytes:
    head = [b"Content-Type: " + ctype, *extra]
    return sep.join(head) + sep + sep + body


def tnef_part(payload: bytes) -> bytes:
    return part(b'application/ms-tnef; name="winmail.dat"',
                base64.encodebytes(b"\x78\x9f\x3e\x22" + payload),
                b'Content-Disposition: attachment; filename="winmail.dat"',
                b"Content-Transfer-Encoding: base64")


@st.composite
def multipart(draw: st.DrawFn) -> bytes:
    """multipart/* with broken, missing, empty or repeated boundaries, or a sound one."""
    boundary = draw(st.sampled_from([b"b1", b"", b"\xff\x00", b"a" * 200, b"--", b'"', b"b 1"]))
    declared = draw(st.sampled_from([b"; boundary=" + boundary, b'; boundary="' + boundary + b'"',
                                     b"", b"; boundary=other", b"; boundary*0=b; boundary*1=1"]))
    subtype = draw(st.sampled_from([b"mixed", b"alternative", b"related", b"report",
                                    b"signed", b"digest", b"\xff"]))
    bodies = draw(st.lists(st.one_of(
        st.binary(max_size=200).map(lambda b: part(b"text/plain", b)),
        st.tuples(st.sampled_from(CHARSETS), st.binary(max_size=200)).map(
            lambda t: part(b"text/plain; charset=" + t[0], t[1])),
        st.binary(max_size=200).map(lambda b: part(b"text/html", b"<html><b>" + b)),
        st.binary(max_size=300).map(tnef_part),
        st.binary(max_size=200),
    ), max_size=4))
    closing = draw(st.sampled_from([b"--" + boundary + b"--", b"", b"--" + boundary,
                                    b"--" + boundary + b"-- trailing"]))
    body = b"".join(b"--" + boundary + b"\r\n" + b + b"\r\n" for b in bodies) + closing
    return part(b"multipart/" + subtype + declared, draw(st.binary(max_size=40)) + body,
                b"MIME-Version: 1.0")


content = st.one_of(
    st.binary(max_size=2000).map(lambda b: b"\r\n" + b),  # no content headers, any body
    st.tuples(st.sampled_from(CHARSETS), st.binary(max_size=500)).map(
        lambda t: part(b"text/plain; charset=" + t[0], t[1])),
    st.tuples(st.sampled_from(ENCODINGS), st.binary(max_size=500)).map(
        lambda t: part(b"text/plain", t[1], b"Content-Transfer-Encoding: " + t[0])),
    st.binary(max_size=500).map(lambda b: part(b"text/html; charset=utf-8",
                                               b"<html><script>" + b + b"<p>unclosed")),
    st.binary(max_size=500).map(lambda b: part(b"multipart/mixed; boundary=t",
                                               b"--t\r\n" + tnef_part(b) + b"\r\n--t--")),
    st.binary(max_size=300).map(lambda b: part(b"message/rfc822", b)),
    st.binary(max_size=300).map(lambda b: part(b"\xff/\x00; charset*=''%ff%fe", b)),
    multipart(),
)


SENDERS = [
    b"erika@example.com", b"Erika Mustermann <erika@example.com>",
    b"=?utf-8?Q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.de>", b"=?x-unknown?Q?a?= <u@x.example>",
    b'"M\xfcller, J\xfcrgen" <mueller@example.de>', "Ärger <ärger@bücher.example>".encode(),
    b"<bare@example.org>", b"=?utf-8?B?!!!?= <garbage-name@example.org>",
    b"MAILER-DAEMON@example.com", b"noreply@example.com",
]


@st.composite
def wild_message(draw: st.DrawFn) -> bytes:
    """Anything goes: headers in any order, any separators, maybe no header block at all."""
    sep = draw(st.sampled_from(SEPARATORS))
    lines = [name + draw(st.sampled_from([b": ", b":", b" : ", b"\t:"])) + value
             for name, value in draw(headers())]
    body: bytes = draw(content)
    if draw(st.booleans()):
        body = body.replace(b"\r\n", sep)
    raw = sep.join(lines) + sep + body
    if draw(st.integers(0, 9)) == 0:  # now and then: no blank line, or no headers at all
        raw = draw(st.sampled_from([raw.replace(sep + sep, sep), body, b" " + raw]))
    return bytes(raw)


@st.composite
def plausible_message(draw: st.DrawFn) -> bytes:
    """A usable From first, then hostile headers and hostile content: the path to a ticket."""
    sep = draw(st.sampled_from([b"\r\n", b"\r\n", b"\n"]))
    lines = [b"From: " + draw(st.sampled_from(SENDERS))]
    for name, value in draw(headers()):
        if name != b"From" or draw(st.booleans()):  # now and then a second, hostile From
            lines.append(name + b": " + value)
    lines += [name + b": " + value for name, value in
              draw(st.lists(st.tuples(st.sampled_from(HEADER_NAMES[1:]), header_value),
                            max_size=4))]
    body: bytes = draw(content)
    return sep.join(lines) + sep + body


hostile_message = st.one_of(plausible_message(), plausible_message(), wild_message())


# -- property-based tests ----------------------------------------------------------------------


@settings(HOSTILE, max_examples=250)
@given(batch=st.lists(hostile_message, min_size=1, max_size=4), data=st.data())
def test_hostile_batches_end_in_a_ticket_or_in_quarantine(
    feeder: Feeder, batch: list[bytes], data: st.DataObject,
) -> None:
    control = feeder.control()
    position = data.draw(st.integers(0, len(batch)), label="control at")
    if data.draw(st.booleans(), label="a second delivery"):
        batch.append(batch[0])
    result = feeder.feed([*batch[:position], control, *batch[position:]])
    assert_control_ticket(feeder.app, control)
    for _, reason in result.held:
        event(f"held: {reason.split(':')[0][:50]}")
    event(f"tickets besides the control: {min(result.tickets_created - 1, 3)}")


UNEXPECTED = re.compile(r"^[A-Za-z_.]*(Error|Exception|Warning)\b")


@settings(HOSTILE, max_examples=150)
@given(raw=plausible_message())
def test_usable_sender_is_never_quarantined_by_an_unexpected_exception(
    feeder: Feeder, raw: bytes,
) -> None:
    """The runner's catch-all is a safety net: an exception that reaches it is a bug in a stage.
    A message whose first header is a usable From may be held for a reason a stage gives
    (a delivery report for nothing maild sent, say), never for an exception."""
    result = feeder.feed([raw])
    unexpected = [reason for _, reason in result.held if UNEXPECTED.match(reason)]
    assert unexpected == []


@pytest.fixture
def pg_feeder(tmp_path: Path, pg_url: str) -> Iterator[Feeder]:
    app = build(settings_for(tmp_path, db_url=pg_url), clock=FixedClock())
    yield Feeder(app)
    app.dispose()


@settings(HOSTILE, max_examples=100)
@given(batch=st.lists(hostile_message, min_size=1, max_size=4))
def test_hostile_batches_on_postgresql(pg_feeder: Feeder, batch: list[bytes]) -> None:
    """PostgreSQL refuses what SQLite stores (NUL in text, over-long VARCHAR values): the
    same property must hold there."""
    control = pg_feeder.control()
    pg_feeder.feed([*batch, control])
    assert_control_ticket(pg_feeder.app, control)


def nested_multipart(depth: int, leaf: bytes) -> bytes:
    body, ctype = leaf, b"text/plain"
    for level in range(depth):
        boundary = b"n%d" % level
        body = (b"--" + boundary + b"\r\nContent-Type: " + ctype + b"\r\n\r\n" + body
                + b"\r\n--" + boundary + b"--\r\n")
        ctype = b"multipart/mixed; boundary=" + boundary
    return b"Content-Type: " + ctype + b"\r\n\r\n" + body


def nested_rfc822(depth: int, leaf: bytes) -> bytes:
    body = b"Subject: innermost\r\n\r\n" + leaf
    for level in range(depth):
        body = (b"From: level%d@example.com\r\nContent-Type: message/rfc822\r\n\r\n" % level
                + body)
    return b"Content-Type: message/rfc822\r\n\r\n" + body


def nested_alternating(depth: int, leaf: bytes) -> bytes:
    body = b"Subject: innermost\r\n\r\n" + leaf
    for level in range(depth):
        if level % 2:
            body = b"Content-Type: message/rfc822\r\n\r\n" + body
        else:
            boundary = b"alt%d" % level
            body = (b"Content-Type: multipart/mixed; boundary=" + boundary + b"\r\n\r\n--"
                    + boundary + b"\r\n" + body + b"\r\n--" + boundary + b"--\r\n")
    return body


@settings(HOSTILE, max_examples=20)
@given(depth=st.integers(50, 500), shape=st.sampled_from([nested_multipart, nested_rfc822,
                                                          nested_alternating]),
       leaf=st.binary(max_size=100), with_from=st.booleans())
def test_deeply_nested_messages(
    feeder: Feeder, depth: int, shape: Callable[[int, bytes], bytes], leaf: bytes,
    with_from: bool,
) -> None:
    head = b"From: nested@example.com\r\n" if with_from else b""
    raw = head + b"Subject: nested %d\r\nMIME-Version: 1.0\r\n" % depth + shape(depth, leaf)
    control = feeder.control()
    feeder.feed([raw, control])
    assert_control_ticket(feeder.app, control)


def huge(kind: str, size: int) -> bytes:
    if kind == "one line":
        return b"X-Huge: " + b"a" * size + b"\r\n"
    if kind == "folded":
        return b"X-Huge: " + b"word \r\n ".join([b"x" * 70] * (size // 76)) + b"\r\n"
    if kind == "many headers":
        return b"X-Many: value\r\n" * (size // 15)
    if kind == "long To":
        return b"To: " + b", ".join([b"someone@example.com"] * (size // 21)) + b"\r\n"
    if kind == "long Subject":
        return b"Subject: " + b"=?utf-8?B?w6k=?= " * (size // 17) + b"\r\n"
    return b"References: " + b" ".join(b"<r%d@x.example>" % i for i in range(size // 16)) + b"\r\n"


@settings(HOSTILE, max_examples=12)
@given(kind=st.sampled_from(["one line", "folded", "many headers", "long To", "long Subject",
                             "long References"]),
       size=st.integers(100_000, 200_000), with_from=st.booleans())
def test_huge_headers(feeder: Feeder, kind: str, size: int, with_from: bool) -> None:
    head = b"From: huge@example.com\r\n" if with_from else b""
    raw = head + huge(kind, size) + b"Message-ID: <huge.%d@example.com>\r\n\r\nbody\r\n" % size
    control = feeder.control()
    feeder.feed([raw, control])
    assert_control_ticket(feeder.app, control)


# -- the real pathological files of the corpus -------------------------------------------------


def pathological_files() -> list[Path]:
    named = [
        "flanker/enclosed-endless.eml", "flanker/torture.eml", "flanker/long-header.eml",
        "nodemailer-mailparser/outofmemory.eml", "nodemailer-mailparser/htmllargecallstack.eml",
        "mimekit/stack-overflow.eml", "kmime/headers-with-nullbytes.mbox",
        "sisimai-mbox/size-0.mbox",
    ]
    files = [CORPUS / n for n in named]
    files += sorted(CORPUS.glob("kmime/clusterfuzz-*"))
    files += sorted(CORPUS.glob("sisimai-line-endings/mac/*"))
    files += sorted(CORPUS.glob("tnef/*"))
    return files


@pytest.fixture(scope="module")
def corpus_feeder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Feeder]:
    folder = tmp_path_factory.mktemp("corpus")
    app = build(settings_for(folder, db_url=f"sqlite:///{folder / 'corpus.db'}"),
                clock=FixedClock())
    yield Feeder(app)
    app.dispose()


@pytest.mark.parametrize("path", pathological_files(),
                         ids=lambda p: str(p.relative_to(CORPUS)))
def test_pathological_corpus_file(corpus_feeder: Feeder, path: Path) -> None:
    raw = path.read_bytes()
    control = corpus_feeder.control()
    started = time.perf_counter()
    result = corpus_feeder.feed([raw, control])
    elapsed = time.perf_counter() - started
    assert_control_ticket(corpus_feeder.app, control)
    assert elapsed < SLOW_FILE_SECONDS, f"{path.name} took {elapsed:.1f}s"
    if not raw.strip():
        assert [reason for _, reason in result.held] == ["unparseable: empty message"]


def test_pathological_corpus_is_complete() -> None:
    files = pathological_files()
    assert all(p.is_file() for p in files)
    assert len([p for p in files if "clusterfuzz" in p.name]) == 4
    assert len([p for p in files if "/mac/" in str(p)]) >= 20


# -- one broken header must not cost the whole message ------------------------------------------


def broken(header: bytes) -> bytes:
    subject = b"" if header.startswith(b"Subject:") else b"Subject: help\r\n"
    message_id = b"Message-ID: <broken.%s@example.com>\r\n" % hashlib.sha256(
        header).hexdigest().encode()
    return (b"From: Erika <erika@example.com>\r\n" + header + b"\r\n" + subject + message_id
            + b"\r\nPlease help. Gr\xfc\xdfe\r\n")  # 8-bit: the charset matters


ONE_BROKEN_HEADER = [
    pytest.param(b"Date: yesterday", id="date-words"),
    pytest.param(b"Date: Mon, 32 Foo 2026 25:61:61 +9999", id="date-out-of-range-fields"),
    pytest.param(b"Date: Fri, 31 Dec 9999 23:59:59 -2359", id="date-past-9999-in-utc"),
    pytest.param(b"Date: Fri, 31 Dec 99999999999 23:59:59 +0000", id="date-huge-year"),
    pytest.param(b"Message-ID: =?utf-8?B?!!!?=", id="message-id-rfc2047-garbage"),
    pytest.param(b"To: =?x-unknown?Q?a?= <a@example.test>", id="to-unknown-charset"),
    pytest.param(b"To: " + b"g:" * 1500, id="to-nested-groups"),
    pytest.param(b"Cc: " + b"g:" * 1500, id="cc-nested-groups"),
    pytest.param(b"Return-Path: " + b"g:" * 1500, id="return-path-nested-groups"),
    pytest.param(b"Subject: =?utf-8?B?QUJDR?=", id="subject-base64-of-bad-length"),
    pytest.param(b"Subject: =?big5?Q?=A4=A4=A4?=", id="subject-truncated-big5"),
    pytest.param(b"Subject: =?x-unknown?Q?a?= =?utf-8?B?!!!?=", id="subject-unknown-charset"),
    pytest.param(b"Content-Type: text/plain; charset=x-unknown", id="unknown-charset"),
    pytest.param(b"Content-Type: text/plain; charset=\"utf-8\x00\"", id="charset-with-nul"),
    pytest.param(b"Content-Transfer-Encoding: base64", id="body-not-base64"),
    pytest.param(b"Content-Type: multipart/mixed", id="multipart-without-boundary"),
    pytest.param(b"Content-Language: " + b"x" * 100_000, id="huge-content-language"),
    pytest.param(b"Auto-Submitted: \xff\xfe", id="auto-submitted-8bit"),
    pytest.param(b"X-Null: a\x00b", id="nul-in-a-header"),
]


@pytest.mark.parametrize("header", ONE_BROKEN_HEADER)
def test_one_broken_header_does_not_cost_the_message(feeder: Feeder, header: bytes) -> None:
    raw = broken(header)
    result = feeder.feed([raw])
    assert result.held == [], "quarantined although From, Subject and body are fine"
    assert result.tickets_created == 1


UNUSUAL_SENDERS = [
    pytest.param("Ärger <ärger@bücher.example>".encode(), id="eai-name-local-and-domain"),
    pytest.param("jürgen@example.de".encode(), id="eai-local-part"),
    pytest.param("a@bücher.example".encode(), id="eai-domain"),
    pytest.param(b"j\xfcrgen@example.de", id="latin1-byte-in-local-part"),
    pytest.param(b"=?utf-8?Q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.de>", id="rfc2047-name"),
    pytest.param(b'"M\xfcller, J\xfcrgen" <mueller@example.de>', id="8bit-quoted-name"),
    pytest.param(b"=?x-unknown?Q?a?= <u@x.example>", id="unknown-charset-name"),
    pytest.param(b"<bare@example.org>", id="angle-brackets-only"),
    pytest.param(b"(comment) a@example.com (more)", id="comments"),
]


@pytest.mark.parametrize("sender", UNUSUAL_SENDERS)
def test_unusual_but_usable_senders_get_a_ticket(feeder: Feeder, sender: bytes) -> None:
    """Whatever the acknowledgement can or cannot carry, the customer's message is a ticket."""
    raw = (b"From: " + sender + b"\r\nSubject: help\r\nMessage-ID: <sender.%s@example.com>"
           b"\r\n\r\nPlease help.\r\n" % hashlib.sha256(sender).hexdigest().encode())
    result = feeder.feed([raw])
    assert result.held == []
    assert result.tickets_created == 1


# -- PostgreSQL: values SQLite stores without complaint -----------------------------------------

PG_HOSTILE = {
    "from-address-over-320": b"From: " + b"a" * 400 + b"@example.com\r\nSubject: hi\r\n"
                             b"Message-ID: <pg1@example.com>\r\n\r\nbody\r\n",
    "nul-in-subject": b"From: pg2@example.com\r\nSubject: hi\x00there\r\n"
                      b"Message-ID: <pg2@example.com>\r\n\r\nbody\r\n",
    "nul-in-body": b"From: pg3@example.com\r\nSubject: hi\r\nMessage-ID: <pg3@example.com>"
                   b"\r\n\r\nbo\x00dy\r\n",
    "nul-in-display-name": b"From: A\x00B <pg4@example.com>\r\nSubject: hi\r\n"
                           b"Message-ID: <pg4@example.com>\r\n\r\nbody\r\n",
    "nul-in-message-id": b"From: pg5@example.com\r\nSubject: hi\r\n"
                         b"Message-ID: <pg\x005@example.com>\r\n\r\nbody\r\n",
    "display-name-over-200": b"From: " + b"N" * 300 + b" <pg6@example.com>\r\nSubject: hi\r\n"
                             b"Message-ID: <pg6@example.com>\r\n\r\nbody\r\n",
    "message-id-of-4-byte-characters": b"From: pg7@example.com\r\nSubject: hi\r\n"
                                       b"Message-ID: <" + "".join(
                                           chr(random.Random(7).randrange(0x20000, 0x2A6DF))
                                           for _ in range(1000)).encode()
                                       + b"@example.com>\r\n\r\nbody\r\n",
}


@pytest.mark.parametrize("case", sorted(PG_HOSTILE))
def test_hostile_values_on_both_databases(tmp_path: Path, db_url: str, case: str) -> None:
    """Values SQLite stores without complaint but PostgreSQL refuses (NUL in text, a value
    longer than its VARCHAR): one such message must not abort the batch around it."""
    app = build(settings_for(tmp_path, db_url=db_url), clock=FixedClock())
    try:
        feeder = Feeder(app)
        before, after = feeder.control(), feeder.control()
        feeder.feed([before, PG_HOSTILE[case], after])
        assert_control_ticket(app, before)
        assert_control_ticket(app, after)
    finally:
        app.dispose()


@pytest.mark.parametrize("db_backend", ["sqlite", "postgresql"])
def test_one_hostile_message_does_not_block_the_mailbox(
    tmp_path: Path, mail_user: MailUser, db_backend: str, request: pytest.FixtureRequest,
) -> None:
    """Through IMAP: a message whose From address is longer than the column that holds it,
    between two ordinary ones. Every message must leave the INBOX."""
    db_url: str = request.getfixturevalue("pg_url" if db_backend == "postgresql"
                                          else "sqlite_url")
    mail_user.append_many([customer_mail(sender="first@example.com"),
                           PG_HOSTILE["from-address-over-320"],
                           customer_mail(sender="second@example.com")])
    app = build(settings_for(tmp_path, db_url=db_url, imap=mail_user.imap_config()),
                clock=FixedClock())
    try:
        summary = daemon.run_once(app)
    finally:
        app.dispose()
    assert summary.mailboxes["support"].fetched == 3
    assert mail_user.count("INBOX") == 0
    assert mail_user.count("Processed") + mail_user.count("Quarantine") == 3
