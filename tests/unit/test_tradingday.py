"""Trading-day assignment: UTC midnight default, FX 17:00 New York roll, DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from orion_etl.core.tradingday import date_key_expr, trading_date, trading_date_expr, trading_day_bounds

NY = ("America/New_York", "17:00")


@pytest.mark.parametrize(
    ("instant", "zone", "expected"),
    [
        (datetime(2026, 3, 2, 23, 59, tzinfo=UTC), ("UTC", "00:00"), date(2026, 3, 2)),
        (datetime(2026, 3, 3, 0, 0, tzinfo=UTC), ("UTC", "00:00"), date(2026, 3, 3)),
        # 16:59 New York (EST, UTC-5) on Mon 2 March is still Monday's trading day
        (datetime(2026, 3, 2, 21, 59, tzinfo=UTC), NY, date(2026, 3, 2)),
        # 17:00 New York rolls to Tuesday
        (datetime(2026, 3, 2, 22, 0, tzinfo=UTC), NY, date(2026, 3, 3)),
        # after the DST change (EDT, UTC-4), 17:00 New York is 21:00 UTC
        (datetime(2026, 3, 9, 20, 59, tzinfo=UTC), NY, date(2026, 3, 9)),
        (datetime(2026, 3, 9, 21, 0, tzinfo=UTC), NY, date(2026, 3, 10)),
        (datetime(2026, 3, 3, 5, 59, tzinfo=UTC), ("UTC", "06:00"), date(2026, 3, 2)),
    ],
)
def test_scalar_and_vectorized_agree(instant: datetime, zone: tuple[str, str], expected: date) -> None:
    assert trading_date(instant, *zone) == expected
    frame = pl.DataFrame({"ts": [instant]}, schema={"ts": pl.Datetime("us", "UTC")})
    out = frame.select(
        trading_date_expr("ts", *zone).alias("d"), date_key_expr(trading_date_expr("ts", *zone)).alias("k")
    )
    assert out["d"][0] == expected
    assert out["k"][0] == expected.year * 10000 + expected.month * 100 + expected.day


def test_bounds_are_half_open_and_follow_dst() -> None:
    start, end = trading_day_bounds(date(2026, 3, 9), *NY)  # DST started Sunday 8 March
    assert start == datetime(2026, 3, 8, 21, 0, tzinfo=UTC)
    assert end == datetime(2026, 3, 9, 21, 0, tzinfo=UTC)
    start, end = trading_day_bounds(date(2026, 3, 8), *NY)  # a 23-hour trading day
    assert end - start == timedelta(hours=23)
    assert trading_day_bounds(date(2026, 1, 1)) == (
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 2, tzinfo=UTC),
    )
