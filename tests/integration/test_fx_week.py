"""The FX week on the real warehouse: the loader keys Friday-after-cutoff and weekend trades to
Monday; aggregates, `validate` and `dq` freshness agree with it (issue 15)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import psycopg
import pytest

from orion_etl.adapters.alerts import notifier_from_settings
from orion_etl.config.dq import build_catalog
from orion_etl.config.models import DqSettings, OrionSettings, TradingDaySettings
from orion_etl.core.dq_results import Outcome
from orion_etl.core.periods import Period, bucket_for
from orion_etl.jobs.aggregate import run_intraday, run_periods, run_validate
from orion_etl.jobs.audit import run_audit
from tests.integration.rekey_support import DirectLoader

pytestmark = pytest.mark.integration

NY = ZoneInfo("America/New_York")
FRIDAY, MONDAY = date(2026, 3, 6), date(2026, 3, 9)


def fx(settings: OrionSettings, **trading_day: object) -> OrionSettings:
    td = TradingDaySettings(timezone="America/New_York", cutoff="17:00", **trading_day)  # type: ignore[arg-type]
    return settings.model_copy(update={"trading_day": td})


@pytest.fixture
def clean(warehouse: psycopg.Connection) -> psycopg.Connection:
    warehouse.execute(
        "TRUNCATE etl_consumer_offsets, etl_fact_tombstones, agg_dirty_buckets, agg_intraday_state"
    )
    return warehouse


def test_weekend_trades_belong_to_monday_and_aggregates_validate(
    stack_settings: OrionSettings, clean: psycopg.Connection
) -> None:
    settings = fx(stack_settings)
    assert settings.trading_day.weekend_roll  # on by default for the FX convention
    client = uuid.uuid4()
    times = [
        datetime(2026, 3, 6, 16, 0, tzinfo=NY),  # Friday before the cutoff
        datetime(2026, 3, 6, 17, 30, tzinfo=NY),  # Friday after the cutoff: Monday
        datetime(2026, 3, 7, 12, 0, tzinfo=NY),  # Saturday: Monday
        datetime(2026, 3, 8, 18, 0, tzinfo=NY),  # Sunday evening: Monday
        datetime(2026, 3, 9, 10, 0, tzinfo=NY),  # Monday
    ]
    loader = DirectLoader(settings)
    try:
        loader.load([(client, t) for t in times])
    finally:
        loader.close()
    keys = dict(clean.execute("SELECT trade_date_key, count(*) FROM fact_trades GROUP BY 1").fetchall())
    assert keys == {20260306: 1, 20260309: 4}

    report = run_periods(settings, [bucket_for(Period.DAILY, d) for d in (FRIDAY, MONDAY)])
    assert report.issues == []
    assert run_periods(settings, [bucket_for(Period.WEEKLY, MONDAY)]).issues == []
    for period, day in ((Period.DAILY, MONDAY), (Period.DAILY, FRIDAY), (Period.WEEKLY, MONDAY)):
        assert run_validate(settings, bucket_for(period, day)).issues == []
    summary = dict(
        clean.execute(
            "SELECT trade_date, trade_count FROM agg_daily_trade_summary "
            "WHERE period_type = 'DAILY' AND aggregation_level = 'TENANT'"
        ).fetchall()
    )
    assert summary == {FRIDAY: 1, MONDAY: 4}  # no Saturday bucket
    intraday = run_intraday(settings)
    assert intraday.issues == [] and not any("2026-03-07" in b or "2026-03-08" in b for b in intraday.buckets)

    # without the FX week the same trades were keyed to Saturday: validate says so
    plain = fx(stack_settings, fx_week=False)
    saturday = run_validate(plain, bucket_for(Period.DAILY, MONDAY))
    assert saturday.issues, "validate must notice keys that disagree with the configured trading day"


def test_freshness_does_not_count_the_closed_weekend(
    stack_settings: OrionSettings, clean: psycopg.Connection
) -> None:
    """A trade 7 days old: 5 trading days and one closed weekend (47-49 h). A 122 h freshness
    limit holds under the FX week and fails without it."""
    loader = DirectLoader(stack_settings)
    try:
        loader.load([(uuid.uuid4(), datetime.now(UTC) - timedelta(days=7))])
    finally:
        loader.close()
    dq = DqSettings(
        include_defaults=False,
        rules=[{"table": "fact_trades", "name": "trades_fresh", "kind": "freshness", "column": "trade_date",
                "max_age_s": 122 * 3600, "message": "no trade executed in the last 5 trading days"}],
    )  # fmt: skip

    def fresh(settings: OrionSettings) -> Outcome:
        settings = settings.model_copy(update={"dq": dq})
        notifier = notifier_from_settings(dq.alerts, source=settings.warehouse.describe())
        try:
            report = run_audit(settings, build_catalog(dq), notifier=notifier, tables=["fact_trades"])
        finally:
            notifier.close()
        (result,) = report.results
        return result.outcome

    assert fresh(fx(stack_settings)) is Outcome.PASS
    assert fresh(fx(stack_settings, fx_week=False)) is Outcome.FAIL
