"""The trading day: which calendar date an instant belongs to.

Configured by a time zone and a cutoff (default UTC midnight; FX convention 17:00
America/New_York, where a trade at 17:30 New York time belongs to the next day). Fact date keys
and aggregates both use these functions, so they always agree.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import polars as pl


def _cutoff_offset(cutoff: str) -> timedelta:
    hours, minutes = (int(p) for p in cutoff.split(":"))
    return timedelta(hours=hours, minutes=minutes)


def trading_date_expr(column: str | pl.Expr, timezone: str = "UTC", cutoff: str = "00:00") -> pl.Expr:
    """Polars expression: the trading date of a UTC/tz-aware Datetime column.

    Local wall time in `timezone`, shifted back by `cutoff` and then forward one day when the
    cutoff is after noon (a 17:00 roll means 17:00 starts the *next* day), truncated to a date.
    """
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


def trading_date(instant: datetime, timezone: str = "UTC", cutoff: str = "00:00") -> date:
    """Scalar twin of `trading_date_expr` for one tz-aware instant."""
    if instant.tzinfo is None:
        raise ValueError("trading_date needs a timezone-aware datetime")
    local = instant.astimezone(ZoneInfo(timezone)).replace(tzinfo=None)
    offset = _cutoff_offset(cutoff)
    day = (local - offset).date()
    return day + timedelta(days=1) if offset >= timedelta(hours=12) else day


def trading_day_bounds(day: date, timezone: str = "UTC", cutoff: str = "00:00") -> tuple[datetime, datetime]:
    """Half-open UTC interval [start, end) of trading day `day` (handles DST: days may be 23/25 h)."""
    zone = ZoneInfo(timezone)
    offset = _cutoff_offset(cutoff)
    start_calendar = day - timedelta(days=1) if offset >= timedelta(hours=12) else day
    cut = time(offset.seconds // 3600, (offset.seconds % 3600) // 60)
    start = datetime.combine(start_calendar, cut, tzinfo=zone)
    end = datetime.combine(start_calendar + timedelta(days=1), cut, tzinfo=zone)
    return start.astimezone(ZoneInfo("UTC")), end.astimezone(ZoneInfo("UTC"))
