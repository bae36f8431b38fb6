"""Our Message-IDs: signed, in the shape the body marker expects, and in order of time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from maild.outbound.ids import MessageIdFactory
from maild.pipeline.parse import MARKER

AT = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)


def test_ids_verify_and_match_the_body_marker() -> None:
    ids = MessageIdFactory(b"secret", "support.example.com")
    mid = ids.new(AT)
    assert ids.verify(mid)
    assert not MessageIdFactory(b"other", "support.example.com").verify(mid)
    assert not ids.verify(mid.replace("support.example.com", "example.org"))
    local = mid.partition("@")[0]
    assert MARKER.fullmatch(f"[maild:{local.removeprefix('maild.')}]")


def test_ids_sort_by_time_and_differ_within_one_instant() -> None:
    """Later ids sort after earlier ones (the unique indexes grow at their end); ids of the
    same millisecond (a stopped test clock, two daemons) still differ."""
    ids = MessageIdFactory(b"secret", "support.example.com")
    made = [ids.new(AT + timedelta(milliseconds=n)) for n in range(0, 5000, 7)]
    assert made == sorted(made)
    same = {ids.new(AT) for _ in range(2000)}
    assert len(same) == 2000
    assert len({mid.partition(".")[2][11:20] for mid in same}) == 2000  # the random part
