"""Threading measured on real mail: the list threads of the shared corpus through maild's
real pipeline, tickets scored against the ground truth.

    .venv/bin/python -m bench.threads                    # every set, figures per set
    .venv/bin/python -m bench.threads --corpus ../shared/corpus --batch 50

Each set (the German `AW:`/`WG:` threads of `i18n/linux-can` and `i18n/open-iscsi`, the
notmuch test corpora and the `linux-hams` archive sample of `threads/`) goes to a fresh
maild on SQLite, in the order the messages were written (their Date), `--batch` at a time
through `Pipeline.process_batch`. Each message is made to look as it would reaching a
support desk from a list of outsiders: the list's headers are removed, To is the support
address, Cc is dropped, so no sender ever named another and nobody is a confirmed
participant of anyone's ticket but their own. Threading then rests on the headers alone:
In-Reply-To and References against the messages maild holds and the ids earlier mail
referred to (placeholders for parents that are not in the set).

Scores are pairwise over the set's files: two files in one ground-truth thread
(`threads-groundtruth.csv`: the connected components of Message-ID, In-Reply-To and
References) should share a ticket, two files of different threads should not. Precision:
of the pairs maild put together, how many belong together; recall: of the pairs that
belong together, how many maild put together. A file maild held back (no ticket) counts
as a ticket of its own.

maild sends nothing here: no SMTP server is configured (port 9 of the loopback, never
contacted: the outbox is never drained); the acknowledgements stay rows in the outbox.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

from sqlalchemy import select

from maild import logs
from maild.app import build
from maild.clock import FixedClock
from maild.domain import Fetched, SourceRef
from maild.settings import load_settings
from maild.store.models import Event, Message
from tests.kit import SUPPORT, write_config

SETS = {  # set name -> folder of the corpus holding it and its ground truth
    "linux-can": "i18n",
    "open-iscsi": "i18n",
    "notmuch-default": "threads",
    "notmuch-threading": "threads",
    "notmuch-lkml": "threads",
    "linux-hams": "threads",
}
# Headers a mailing list adds or that name the list (RFC 2369, RFC 2919, and the usual
# extras): removed, with To and Cc, so the message reads as if sent to support alone.
_DROPPED = re.compile(
    rb"^(list-[a-z-]+|mailing-list|precedence|x-mailing-list|x-loop|sender|delivered-to|"
    rb"x-original-to|return-path|to|cc|x-beenthere|x-mailman-version|errors-to):",
    re.IGNORECASE)


def find_corpus(start: Path) -> Path | None:
    """`shared/corpus` beside the repository or beside a folder above it (a worktree)."""
    for folder in (start, *start.parents):
        candidate = folder / "shared" / "corpus"
        if candidate.is_dir():
            return candidate
    return None


def as_support_mail(raw: bytes) -> bytes:
    """The message with the list's headers, To and Cc removed and To: the support
    address; the body and every other header byte for byte."""
    head, sep, body = raw.partition(b"\n\n")
    if not sep:
        head, sep, body = raw.partition(b"\r\n\r\n")
    crlf = b"\r\n" if head.endswith(b"\r") or b"\r\n" in head[:2000] else b"\n"
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    kept: list[bytes] = []
    skipping = False
    for line in lines:
        if line[:1] in (b" ", b"\t") and kept is not None:
            if not skipping:
                kept.append(line)
            continue
        skipping = bool(_DROPPED.match(line))
        if not skipping:
            kept.append(line)
    kept.append(b"To: " + SUPPORT.encode())
    return crlf.join(kept) + crlf + crlf + body.replace(b"\r\n", b"\n").replace(b"\n", crlf)


@dataclass(frozen=True)
class Row:
    file: str
    thread: str
    date: datetime | None


@dataclass(frozen=True)
class Score:
    name: str
    files: int
    threads: int
    tickets: int
    held: int
    joined: int  # messages kept in a ticket from an unconfirmed participant
    placeholders: int  # messages threaded by an id no message of the set had
    precision: float
    recall: float

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0

    def line(self) -> str:
        return (f"{self.name:<18} files {self.files:>4}  threads {self.threads:>4}  "
                f"tickets {self.tickets:>4}  held {self.held:>2}  unconfirmed "
                f"{self.joined:>3}  by placeholder {self.placeholders:>3}  precision "
                f"{self.precision:.4f}  recall {self.recall:.4f}  F1 {self.f1:.4f}")


def _date(value: str) -> datetime | None:
    try:
        found = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def ground_truth(corpus: Path, name: str) -> list[Row]:
    folder = corpus / SETS[name]
    with (folder / "threads-groundtruth.csv").open(encoding="utf-8", newline="") as f:
        return [Row(r["file"], r["thread_id"], _date(r["date"]))
                for r in csv.DictReader(f) if r["set"] == name]


def _pairs(sizes: Counter[str] | Counter[tuple[str, str]]) -> int:
    return sum(n * (n - 1) // 2 for n in sizes.values())


def pairwise(truth: dict[str, str], found: dict[str, str]) -> tuple[float, float]:
    """Pairwise precision and recall of `found` (file -> ticket) against `truth`."""
    together = _pairs(Counter((truth[f], found[f]) for f in truth))
    by_ticket = _pairs(Counter(found[f] for f in truth))
    by_thread = _pairs(Counter(truth.values()))
    return (together / by_ticket if by_ticket else 1.0,
            together / by_thread if by_thread else 1.0)


def measure(corpus: Path, name: str, *, batch: int = 50) -> Score:
    """One set through a fresh maild; its score."""
    rows = sorted(ground_truth(corpus, name),
                  key=lambda r: (r.date or datetime.min.replace(tzinfo=UTC), r.file))
    folder = corpus / SETS[name]
    with tempfile.TemporaryDirectory(prefix="maild-threads-") as tmp:
        settings = load_settings(write_config(Path(tmp), db_url=f"sqlite:///{tmp}/maild.db"))
        app = build(settings, clock=FixedClock())
        try:
            items = [Fetched(SourceRef("support", "INBOX", 1, uid),
                             as_support_mail((folder / row.file).read_bytes()))
                     for uid, row in enumerate(rows, start=1)]
            for start in range(0, len(items), batch):
                app.pipeline.process_batch(items[start:start + batch])
            with app.sessions() as s:
                stored = dict(s.execute(select(Message.source_key, Message.ticket_id).where(
                    Message.direction == "inbound")).all())
                by_id = dict(s.execute(select(Message.message_id, Message.ticket_id).where(
                    Message.direction == "inbound")).all())
                received = [e.data for e in s.scalars(select(Event).where(
                    Event.kind == "message.received"))]
        finally:
            app.dispose()
    found: dict[str, str] = {}
    held = 0
    for item, row in zip(items, rows, strict=True):
        ticket = stored.get(item.source.key)
        if ticket is None:  # a second copy of a Message-ID: where the first one went
            ticket = by_id.get(_message_id(item.raw) or "")
        if ticket is None:
            held += 1
            found[row.file] = f"held:{row.file}"
        else:
            found[row.file] = str(ticket)
    truth = {r.file: r.thread for r in rows}
    precision, recall = pairwise(truth, found)
    return Score(name, len(rows), len(set(truth.values())), len(set(found.values())), held,
                 sum(1 for d in received if d.get("unconfirmed")),
                 sum(1 for d in received if d.get("threaded_by") == "placeholder"),
                 precision, recall)


def _message_id(raw: bytes) -> str | None:
    found = re.search(rb"^message-id:\s*<([^>\r\n]+)>", raw, re.IGNORECASE | re.MULTILINE)
    return found.group(1).decode("utf-8", "replace") if found else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=None)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument("sets", nargs="*", default=list(SETS))
    args = parser.parse_args(argv)
    corpus = args.corpus or find_corpus(Path(__file__).resolve().parent)
    if corpus is None:
        print("no shared/corpus found; give --corpus", file=sys.stderr)
        return 2
    logs.configure("warning")
    for name in args.sets:
        print(measure(corpus, name, batch=args.batch).line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
