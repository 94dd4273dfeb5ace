"""Period buckets: ISO weeks, month/quarter/year ends, DST-correct instants, --date parsing."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta

import pytest

from orion_etl.core.periods import (
    Period,
    bucket_for,
    buckets_between,
    date_key,
    is_complete,
    last_complete_trading_day,
    parse_date,
)
from orion_etl.errors import UsageError

NY = ("America/New_York", "17:00")


@pytest.mark.parametrize(
    ("period", "day", "start", "end"),
    [
        (Period.DAILY, date(2026, 2, 28), date(2026, 2, 28), date(2026, 3, 1)),
        (Period.WEEKLY, date(2026, 3, 1), date(2026, 2, 23), date(2026, 3, 2)),  # Sunday -> prior Monday
        (Period.WEEKLY, date(2026, 3, 2), date(2026, 3, 2), date(2026, 3, 9)),
        (Period.WEEKLY, date(2027, 1, 1), date(2026, 12, 28), date(2027, 1, 4)),  # ISO week over New Year
        (Period.MONTHLY, date(2024, 2, 29), date(2024, 2, 1), date(2024, 3, 1)),  # leap year
        (Period.MONTHLY, date(2026, 12, 31), date(2026, 12, 1), date(2027, 1, 1)),
        (Period.QUARTERLY, date(2026, 3, 31), date(2026, 1, 1), date(2026, 4, 1)),
        (Period.QUARTERLY, date(2026, 11, 15), date(2026, 10, 1), date(2027, 1, 1)),
        (Period.YEARLY, date(2026, 7, 4), date(2026, 1, 1), date(2027, 1, 1)),
    ],
)
def test_bucket_bounds(period: Period, day: date, start: date, end: date) -> None:
    bucket = bucket_for(period, day)
    assert (bucket.start, bucket.end) == (start, end)
    assert bucket.days == (end - start).days >= 1
    assert bucket.start_key == date_key(start)


def test_buckets_between_cover_the_range_without_gaps() -> None:
    weeks = buckets_between(Period.WEEKLY, date(2026, 3, 1), date(2026, 3, 16))
    assert [w.start for w in weeks] == [
        date(2026, 2, 23),
        date(2026, 3, 2),
        date(2026, 3, 9),
        date(2026, 3, 16),
    ]
    assert all(a.end == b.start for a, b in itertools.pairwise(weeks))
    assert len(buckets_between(Period.DAILY, date(2026, 1, 1), date(2026, 12, 31))) == 365
    with pytest.raises(UsageError):
        buckets_between(Period.DAILY, date(2026, 1, 2), date(2026, 1, 1))


def test_instants_are_half_open_and_follow_dst() -> None:
    week = bucket_for(Period.WEEKLY, date(2026, 3, 9))  # week of 9 March 2026, DST began 8 March
    start, end = week.instants(*NY)
    assert start == datetime(2026, 3, 8, 21, 0, tzinfo=UTC)  # Sunday 17:00 EDT
    assert end == datetime(2026, 3, 15, 21, 0, tzinfo=UTC)
    before = bucket_for(Period.WEEKLY, date(2026, 3, 8))  # contains the 23-hour day
    assert before.instants(*NY)[1] == start
    assert before.instants(*NY)[1] - before.instants(*NY)[0] == timedelta(days=7, hours=-1)


def test_last_complete_trading_day_and_completeness() -> None:
    assert last_complete_trading_day(datetime(2026, 3, 4, 0, 30, tzinfo=UTC)) == date(2026, 3, 3)
    # 21:30 UTC on 9 March is 17:30 EDT: trading day 10 March is running, 9 March is complete
    now = datetime(2026, 3, 9, 21, 30, tzinfo=UTC)
    assert last_complete_trading_day(now, *NY) == date(2026, 3, 9)
    assert is_complete(bucket_for(Period.DAILY, date(2026, 3, 9)), now, *NY)
    assert not is_complete(bucket_for(Period.DAILY, date(2026, 3, 10)), now, *NY)


@pytest.mark.parametrize("text", ["2026-02-30", "20260301", "2026-3-1", "", "1 OR 1=1", "2026-01-01'; --"])
def test_bad_dates_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_date(text)
    assert "\n" not in err.value.message


def test_period_parse() -> None:
    assert Period.parse("Weekly") is Period.WEEKLY
    with pytest.raises(UsageError, match="expected one of"):
        Period.parse("hourly")
