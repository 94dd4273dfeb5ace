"""Aggregation periods over trading days: ISO weeks, months, quarters, years (pure, no I/O).

A period bucket is a half-open range of trading days [start, end). Its instants are the half-open
UTC range [start of trading day `start`, start of trading day `end`), so a bucket never overlaps
its neighbour and DST days (23 or 25 hours) are counted once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum

from orion_etl.core.tradingday import trading_date, trading_day_bounds
from orion_etl.errors import UsageError

_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")


class Period(StrEnum):
    """Aggregation period types (values as stored in `period_type` columns)."""

    DAILY = "DAILY"
    WEEKLY = "WEEKLY"
    MONTHLY = "MONTHLY"
    QUARTERLY = "QUARTERLY"
    YEARLY = "YEARLY"

    @classmethod
    def parse(cls, text: str) -> Period:
        """`daily`/`DAILY` -> Period.DAILY; anything else is a UsageError."""
        try:
            return cls(text.strip().upper())
        except ValueError:
            choices = ", ".join(p.value.lower() for p in cls)
            raise UsageError(f"unknown period {text!r}; expected one of: {choices}") from None


@dataclass(frozen=True)
class Bucket:
    """One period bucket: trading days [start, end)."""

    period: Period
    start: date
    end: date

    @property
    def start_key(self) -> int:
        return date_key(self.start)

    @property
    def end_key(self) -> int:
        return date_key(self.end)

    @property
    def days(self) -> int:
        """Calendar days in the bucket (1 for daily, 28-31 for months); never 0."""
        return (self.end - self.start).days

    def instants(
        self, timezone: str = "UTC", cutoff: str = "00:00", *, weekend_roll: bool = False
    ) -> tuple[datetime, datetime]:
        """Half-open UTC bounds of the bucket under the trading-day convention."""
        return (
            trading_day_bounds(self.start, timezone, cutoff, weekend_roll=weekend_roll)[0],
            trading_day_bounds(self.end, timezone, cutoff, weekend_roll=weekend_roll)[0],
        )

    def __str__(self) -> str:
        return f"{self.period.value.lower()} {self.start.isoformat()}"


def date_key(day: date) -> int:
    """YYYYMMDD integer key (`dim_date.date_key`, `fact_*.*_date_key`)."""
    return day.year * 10_000 + day.month * 100 + day.day


def parse_date(text: str, option: str = "--date") -> date:
    """Strict YYYY-MM-DD; anything else (including SQL-looking text) is a one-line UsageError."""
    value = text.strip()
    if not _DATE_RE.fullmatch(value):
        raise UsageError(f"{option}: expected a date as YYYY-MM-DD, got {text[:40]!r}")
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise UsageError(f"{option}: {value} is not a valid date ({exc})") from None


def period_start(period: Period, day: date) -> date:
    """First day of the bucket containing `day` (ISO week: Monday)."""
    if period is Period.DAILY:
        return day
    if period is Period.WEEKLY:
        return day - timedelta(days=day.weekday())
    if period is Period.MONTHLY:
        return day.replace(day=1)
    if period is Period.QUARTERLY:
        return date(day.year, 3 * ((day.month - 1) // 3) + 1, 1)
    return date(day.year, 1, 1)


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def period_end(period: Period, start: date) -> date:
    """Exclusive end of the bucket starting at `start`."""
    if period is Period.DAILY:
        return start + timedelta(days=1)
    if period is Period.WEEKLY:
        return start + timedelta(days=7)
    if period is Period.MONTHLY:
        return _add_months(start, 1)
    if period is Period.QUARTERLY:
        return _add_months(start, 3)
    return date(start.year + 1, 1, 1)


def bucket_for(period: Period, day: date) -> Bucket:
    """The bucket of `period` that contains trading day `day`."""
    start = period_start(period, day)
    return Bucket(period, start, period_end(period, start))


def buckets_between(period: Period, first: date, last: date) -> list[Bucket]:
    """Every bucket overlapping trading days first..last (inclusive), in order."""
    if last < first:
        raise UsageError(f"--from {first.isoformat()} is after --to {last.isoformat()}")
    out: list[Bucket] = []
    bucket = bucket_for(period, first)
    while bucket.start <= last:
        out.append(bucket)
        bucket = Bucket(period, bucket.end, period_end(period, bucket.end))
    return out


def last_complete_trading_day(
    now: datetime, timezone: str = "UTC", cutoff: str = "00:00", *, weekend_roll: bool = False
) -> date:
    """The trading day before the one `now` falls in (the default for `--date`); with the FX
    week, the Friday before a Monday."""
    day = trading_date(now, timezone, cutoff, weekend_roll=weekend_roll) - timedelta(days=1)
    while weekend_roll and day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


def is_complete(
    bucket: Bucket, now: datetime, timezone: str = "UTC", cutoff: str = "00:00", *, weekend_roll: bool = False
) -> bool:
    """True once the last instant of the bucket is in the past (rows become `is_final`)."""
    return bucket.instants(timezone, cutoff, weekend_roll=weekend_roll)[1] <= now
