"""The storage layer's own conversions, held to what SQLAlchemy would do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import DateTime
from sqlalchemy.dialects import postgresql, sqlite

from maild.store.models import UtcDateTime

ZONES = st.builds(lambda minutes: timezone(timedelta(minutes=minutes)),
                  st.integers(min_value=-23 * 60, max_value=23 * 60))


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                    timezones=st.just(UTC) | ZONES))
def test_sqlite_text_of_a_datetime_is_sqlalchemys(value: datetime) -> None:
    """UtcDateTime writes SQLite's text in one step: the same text SQLAlchemy's DateTime
    writes for the value in UTC, so old rows and new compare as they should."""
    dialect = sqlite.dialect()
    ours = UtcDateTime().dialect_impl(dialect).bind_processor(dialect)
    theirs = DateTime().dialect_impl(dialect).bind_processor(dialect)
    assert ours is not None and theirs is not None
    text = ours(value)
    assert text == theirs(value.astimezone(UTC).replace(tzinfo=None))
    result = UtcDateTime().dialect_impl(dialect).result_processor(dialect, None)
    assert result is not None and result(text) == value


def test_naive_datetimes_and_none() -> None:
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        process = UtcDateTime().dialect_impl(dialect).bind_processor(dialect)
        assert process is not None and process(None) is None
        with pytest.raises(ValueError, match="naive datetime"):
            process(datetime(2026, 1, 1))
