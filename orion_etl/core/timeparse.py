"""One parser for the time options of every command (`--since`, `--until`, `--from`, `--to`)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from orion_etl.errors import UsageError

_DURATION = re.compile(r"(\d+)\s*([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_time(text: str, option: str, now: datetime | None = None) -> datetime:
    """ISO 8601 (naive = UTC) or a duration ago (`30m`, `2h`, `7d`) -> aware datetime."""
    value = text.strip()
    if m := _DURATION.fullmatch(value):
        try:
            return (now or datetime.now(UTC)) - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
        except (OverflowError, ValueError):  # beyond year 1 (timedelta or datetime range)
            raise UsageError(
                f"{option}: {text!r} reaches back before year 1; use a shorter duration"
            ) from None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{option}: expected an ISO 8601 time (2024-03-15T14:30:00Z) or a duration like 30m, 2h, 7d; "
            f"got {text!r}"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_optional_time(text: str | None, option: str) -> datetime | None:
    """`parse_time` for an option that may be absent."""
    return None if text is None else parse_time(text, option)
