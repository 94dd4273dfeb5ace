"""The trading day: which calendar date an instant belongs to.

Configured by a time zone and a cutoff (default UTC midnight; FX convention 17:00
America/New_York, where a trade at 17:30 New York time belongs to the next day). Fact date keys
and aggregates both use these functions, so they always agree.

The FX week (`weekend_roll`): a trading day that would fall on a Saturday or Sunday rolls forward
to Monday. Under the FX convention a trade at Friday 17:30 New York belongs to Monday, and so does
anything over the weekend: Monday's trading day runs from Friday 17:00 to Monday 17:00 New York,
Saturday and Sunday are empty. Freshness checks do not count the closed weekend
(`closed_weekend_seconds`: Friday cutoff to Sunday cutoff) as age.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import polars as pl


def _cutoff_offset(cutoff: str) -> timedelta:
    hours, minutes = (int(p) for p in cutoff.split(":"))
    return timedelta(hours=hours, minutes=minutes)


def trading_date_expr(
    column: str | pl.Expr, timezone: str = "UTC", cutoff: str = "00:00", *, weekend_roll: bool = False
) -> pl.Expr:
    """Polars expression: the trading date of a UTC/tz-aware Datetime column.

    Local wall time in `timezone`, shifted back by `cutoff` and then forward one day when the
    cutoff is after noon (a 17:00 roll means 17:00 starts the *next* day), truncated to a date;
    with `weekend_roll`, Saturday and Sunday move forward to Monday.
    """
    day = _calendar_date_expr(column, timezone, cutoff)
    if not weekend_roll:
        return day
    weekday = day.dt.weekday()  # 1 = Monday .. 7 = Sunday
    return day + pl.duration(days=pl.when(weekday == 6).then(2).when(weekday == 7).then(1).otherwise(0))


def _calendar_date_expr(column: str | pl.Expr, timezone: str, cutoff: str) -> pl.Expr:
    col = pl.col(column) if isinstance(column, str) else column
    local = col.dt.convert_time_zone(timezone)
    offset = _cutoff_offset(cutoff)
    if offset == timedelta(0):
        return local.dt.date()
    shifted = local.dt.replace_time_zone(None) - pl.duration(
        hours=offset.seconds // 3600, minutes=(offset.seconds % 3600) // 60
    )
    next_day = offset >= timedelta(hours=12)
    day = shifted.dt.date()
    return (day + pl.duration(days=1)) if next_day else day


def date_key_expr(date_expr: pl.Expr) -> pl.Expr:
    """YYYYMMDD integer key of a Date expression (the `dim_date.date_key`)."""
    return (
        date_expr.dt.year().cast(pl.Int32) * 10_000
        + date_expr.dt.month().cast(pl.Int32) * 100
        + date_expr.dt.day().cast(pl.Int32)
    )


def roll_weekend(day: date) -> date:
    """Saturday and Sunday -> the following Monday; other days unchanged."""
    return day + timedelta(days=7 - day.weekday()) if day.weekday() >= 5 else day


def trading_date(
    instant: datetime, timezone: str = "UTC", cutoff: str = "00:00", *, weekend_roll: bool = False
) -> date:
    """Scalar twin of `trading_date_expr` for one tz-aware instant."""
    if instant.tzinfo is None:
        raise ValueError("trading_date needs a timezone-aware datetime")
    local = instant.astimezone(ZoneInfo(timezone)).replace(tzinfo=None)
    offset = _cutoff_offset(cutoff)
    day = (local - offset).date()
    day = day + timedelta(days=1) if offset >= timedelta(hours=12) else day
    return roll_weekend(day) if weekend_roll else day


def trading_day_bounds(
    day: date, timezone: str = "UTC", cutoff: str = "00:00", *, weekend_roll: bool = False
) -> tuple[datetime, datetime]:
    """Half-open UTC interval [start, end) of trading day `day` (handles DST: days may be 23/25 h).

    With `weekend_roll`, Monday starts where Saturday would (it takes the weekend), and Saturday
    and Sunday are empty intervals at that instant, so consecutive days still tile time.
    """
    if not weekend_roll or day.weekday() in (1, 2, 3, 4):
        return _calendar_bounds(day, timezone, cutoff)
    saturday = day - timedelta(days=(day.weekday() - 5) % 7)
    start = _calendar_bounds(saturday, timezone, cutoff)[0]
    if day.weekday() == 0:
        return start, _calendar_bounds(day, timezone, cutoff)[1]
    return start, start


def closed_weekend_seconds(
    start: datetime, end: datetime, timezone: str = "UTC", cutoff: str = "00:00"
) -> float:
    """Seconds of [start, end) inside a weekend closure (the calendar Saturday and Sunday trading
    days, i.e. Friday cutoff to Sunday cutoff): time an FX-week freshness check does not count."""
    if end <= start:
        return 0.0
    first = trading_date(start, timezone, cutoff)
    saturday = first - timedelta(days=(first.weekday() - 5) % 7)  # the Saturday on or before
    total = 0.0
    while True:
        closed_from = _calendar_bounds(saturday, timezone, cutoff)[0]
        closed_to = _calendar_bounds(saturday + timedelta(days=1), timezone, cutoff)[1]
        if closed_from >= end:
            return total
        total += max(0.0, (min(end, closed_to) - max(start, closed_from)).total_seconds())
        saturday += timedelta(days=7)


def _calendar_bounds(day: date, timezone: str, cutoff: str) -> tuple[datetime, datetime]:
    zone = ZoneInfo(timezone)
    offset = _cutoff_offset(cutoff)
    start_calendar = day - timedelta(days=1) if offset >= timedelta(hours=12) else day
    cut = time(offset.seconds // 3600, (offset.seconds % 3600) // 60)
    start = datetime.combine(start_calendar, cut, tzinfo=zone)
    end = datetime.combine(start_calendar + timedelta(days=1), cut, tzinfo=zone)
    return start.astimezone(ZoneInfo("UTC")), end.astimezone(ZoneInfo("UTC"))
