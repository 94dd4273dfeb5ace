"""The FX week: trading days on Saturday/Sunday roll forward to Monday (issue 15)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl
import pytest
from hypothesis import given
from hypothesis import strategies as st

from orion_etl.config.models import TradingDaySettings
from orion_etl.core.periods import Period, bucket_for, is_complete, last_complete_trading_day
from orion_etl.core.tradingday import (
    closed_weekend_seconds,
    trading_date,
    trading_date_expr,
    trading_day_bounds,
)

NY = ZoneInfo("America/New_York")
FX = ("America/New_York", "17:00")
CONVENTIONS = [FX, ("UTC", "00:00"), ("Europe/London", "06:00"), ("Asia/Tokyo", "17:00")]


def ny(*args: int) -> datetime:
    return datetime(*args, tzinfo=NY)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("instant", "expected"),
    [
        (ny(2026, 3, 6, 16, 59), date(2026, 3, 6)),  # Friday before the cutoff: Friday
        (ny(2026, 3, 6, 17, 30), date(2026, 3, 9)),  # Friday after the cutoff: Monday, not Saturday
        (ny(2026, 3, 7, 12, 0), date(2026, 3, 9)),  # Saturday
        (ny(2026, 3, 8, 18, 0), date(2026, 3, 9)),  # Sunday evening (the FX week opens): Monday
        (ny(2026, 3, 9, 16, 59), date(2026, 3, 9)),
        (ny(2026, 3, 9, 17, 0), date(2026, 3, 10)),
    ],
)
def test_fx_week_rolls_the_weekend_to_monday(instant: datetime, expected: date) -> None:
    assert trading_date(instant, *FX, weekend_roll=True) == expected
    frame = pl.DataFrame({"ts": [instant.astimezone(UTC)]}, schema={"ts": pl.Datetime("us", "UTC")})
    assert frame.select(trading_date_expr("ts", *FX, weekend_roll=True))["ts"][0] == expected


instants = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2030, 12, 31)).map(
    lambda d: d.replace(tzinfo=UTC)
)


@given(instants, st.sampled_from(CONVENTIONS))
def test_rolled_days_are_weekdays_and_their_bounds_contain_the_instant(
    instant: datetime, convention: tuple[str, str]
) -> None:
    day = trading_date(instant, *convention, weekend_roll=True)
    assert day.weekday() < 5
    start, end = trading_day_bounds(day, *convention, weekend_roll=True)
    assert start <= instant < end
    plain = trading_date(instant, *convention)
    assert day == plain or (plain.weekday() >= 5 and day - plain <= timedelta(days=2))
    frame = pl.DataFrame({"ts": [instant]}, schema={"ts": pl.Datetime("us", "UTC")})
    assert frame.select(trading_date_expr("ts", *convention, weekend_roll=True))["ts"][0] == day


@given(st.dates(min_value=date(2024, 1, 1), max_value=date(2030, 12, 31)), st.sampled_from(CONVENTIONS))
def test_rolled_days_tile_time(day: date, convention: tuple[str, str]) -> None:
    """Consecutive trading days meet (weekend days are empty), so buckets never overlap or gap."""
    _, end = trading_day_bounds(day, *convention, weekend_roll=True)
    start_next, _ = trading_day_bounds(day + timedelta(days=1), *convention, weekend_roll=True)
    assert end == start_next
    start, end = trading_day_bounds(day, *convention, weekend_roll=True)
    assert (start == end) == (day.weekday() >= 5)


def test_buckets_completion_and_last_complete_day_follow_the_fx_week() -> None:
    monday = bucket_for(Period.DAILY, date(2026, 3, 9))
    start, end = monday.instants(*FX, weekend_roll=True)
    assert (start, end) == (ny(2026, 3, 6, 17, 0), ny(2026, 3, 9, 17, 0))
    friday = bucket_for(Period.DAILY, date(2026, 3, 6))
    assert is_complete(friday, ny(2026, 3, 7, 10, 0), *FX, weekend_roll=True)
    assert last_complete_trading_day(ny(2026, 3, 9, 10, 0), *FX, weekend_roll=True) == date(2026, 3, 6)
    assert last_complete_trading_day(ny(2026, 3, 7, 10, 0), *FX, weekend_roll=True) == date(2026, 3, 6)
    assert last_complete_trading_day(ny(2026, 3, 10, 10, 0), *FX, weekend_roll=True) == date(2026, 3, 9)
    week = bucket_for(Period.WEEKLY, date(2026, 3, 11))
    assert week.instants(*FX, weekend_roll=True) == (ny(2026, 3, 6, 17, 0), ny(2026, 3, 13, 17, 0))


def test_freshness_does_not_count_the_closed_weekend() -> None:
    # last trade Friday 16:00, checked Monday 09:00 New York: 65 h, of which 48 h closed
    closed = closed_weekend_seconds(ny(2026, 2, 27, 16, 0), ny(2026, 3, 2, 9, 0), *FX)
    assert closed == 48 * 3600
    assert closed_weekend_seconds(ny(2026, 3, 3, 9, 0), ny(2026, 3, 5, 9, 0), *FX) == 0
    # two weekends; the DST change (8 March 2026) makes that weekend 47 h long
    two = closed_weekend_seconds(ny(2026, 2, 26, 12, 0), ny(2026, 3, 10, 12, 0), *FX)
    assert two == (48 + 47) * 3600


def test_setting_is_on_by_default_for_the_fx_convention_only() -> None:
    assert TradingDaySettings(timezone="America/New_York", cutoff="17:00").weekend_roll is True
    assert TradingDaySettings().weekend_roll is False
    assert (
        TradingDaySettings(timezone="America/New_York", cutoff="17:00", fx_week=False).weekend_roll is False
    )
    assert TradingDaySettings(fx_week=True).weekend_roll is True
