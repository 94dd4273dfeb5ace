"""Fact transforms: decoded trade/order/quote rows -> fact rows with computed fields (pure polars).

* Trades (CDC `trades` rows and `trade.executed` events mapped to the same column names):
  notional = quantity x price and net_amount = notional + fees (BUY) / notional - fees (SELL), in
  exact Decimal(38,10) arithmetic. polars rounds a product to the column scale (10 places) half to
  even; inputs have at most 10 places, so only products with more than 10 significant decimals
  are rounded, and always the same way.
* Orders: every status is loaded (an accumulating snapshot: the row follows the order through
  its life and ends in its terminal state), so `was_rejected` / `was_cancelled` are meaningful;
  fill_rate = filled / requested, 0 when requested is 0.
* Quotes (`quote.received`): mid = (bid + ask) / 2, spread = ask - bid,
  spread_bps = spread / bid x 10000 (NULL when bid <= 0, which a quote check rejects anyway).

Date keys use the configured trading day (`orion_etl.core.tradingday`), never local time. The
story's rules run vectorized through `orion_etl.core.quality.evaluate_rows`.
"""

from __future__ import annotations

from decimal import Decimal

import polars as pl

from orion_etl.core.fact_model import (  # noqa: F401 - the source columns, re-exported
    FACT_MODELS,
    ORDER_COLUMNS,
    ORDER_REQUIRED,
    POSITION_ROW_COLUMNS,
    POSITION_ROW_REQUIRED,
    QUOTE_COLUMNS,
    QUOTE_EVENT_RENAME,
    QUOTE_REQUIRED,
    RISK_COLUMNS,
    RISK_EVENT_RENAME,
    RISK_REQUIRED,
    TRADE_COLUMNS,
    TRADE_EVENT_RENAME,
    TRADE_REQUIRED,
)
from orion_etl.core.pgtext import refused_in
from orion_etl.core.quality import DEFAULT_RULES, Rule, Severity, applicable, evaluate_rows, split_valid
from orion_etl.core.tradingday import date_key_expr, trading_date_expr

DEC = pl.Decimal(38, 10)

# NUMERIC(9,4) columns of fact_risk_snapshots: larger values are dead-lettered, not a failed COPY.
RISK_PCT_LIMIT = Decimal(100_000)

# Text columns and their warehouse widths (the fact model's `text_limits`, sql/warehouse/V003): a
# longer value, or a NUL character (PostgreSQL text cannot hold one), marks the row invalid (dead
# letter) instead of failing the whole batch in COPY and stopping the loader on a poison record.
TEXT_LIMITS: dict[str, dict[str, int]] = {
    m.table: m.text_limits for m in FACT_MODELS.values() if m.text_limits
}


def text_errors(table: str) -> list[pl.Expr]:
    """`_error` candidates for text that the warehouse columns of `table` cannot store."""
    out: list[pl.Expr] = []
    for column, width in TEXT_LIMITS[table].items():
        text = pl.col(column)
        too_long = pl.lit(f"{column}: longer than {width} characters")
        out.append(pl.when(text.str.len_chars() > width).then(too_long))
        out.append(pl.when(refused_in(column)).then(pl.lit(f"{column}: contains NUL")))
    return out


def positions(origin: str) -> list[pl.Expr]:
    """Source position columns of rows decoded from CDC (`cdc`) or domain events (`event`)."""
    event_ts = (
        pl.col("_event_ts")
        if origin == "event"
        else pl.from_epoch(pl.col("_ts_ms"), time_unit="ms").dt.replace_time_zone("UTC")
    )
    return [
        pl.lit(origin).alias("src_origin"),
        pl.col("_commit_lsn").alias("src_commit_lsn"),
        pl.col("_lsn").alias("src_lsn"),
        (pl.col("_event_version") if origin == "event" else pl.lit(None, pl.Int64)).alias(
            "src_event_version"
        ),
        event_ts.cast(pl.Datetime("us", "UTC")).alias("src_event_ts"),
    ]


def _date_key(column: str, timezone: str, cutoff: str, weekend_roll: bool) -> pl.Expr:
    return date_key_expr(trading_date_expr(column, timezone, cutoff, weekend_roll=weekend_roll))


def transform_trades(
    frame: pl.DataFrame,
    origin: str,
    timezone: str = "UTC",
    cutoff: str = "00:00",
    *,
    weekend_roll: bool = False,
) -> pl.DataFrame:
    """Decoded trade rows -> fact_trades columns (+ metadata columns kept)."""
    qty, price = pl.col("quantity").cast(DEC), pl.col("price").cast(DEC)
    fees = pl.col("fees").cast(DEC).fill_null(Decimal(0))
    # polars raises on a Decimal overflow for the whole frame: rows whose product cannot fit
    # NUMERIC(38,10) are found with a float *estimate* (never stored) and dead-lettered.
    unsafe = ((qty.cast(pl.Float64) * price.cast(pl.Float64)).abs() >= 1e27).fill_null(False)
    notional = pl.when(unsafe).then(Decimal(0)).otherwise(qty) * price
    return frame.with_columns(
        pl.coalesce(
            pl.col("_error"),
            pl.when(unsafe).then(pl.lit("notional_value: quantity x price out of range")),
            *text_errors("fact_trades"),
        ).alias("_error"),
        pl.col("id").alias("trade_id"),
        _date_key("trade_date", timezone, cutoff, weekend_roll).alias("trade_date_key"),
        notional.alias("notional_value"),
        fees.cast(pl.Decimal(28, 10)).alias("fees"),
        pl.when(pl.col("side") == "SELL")
        .then(notional - fees)
        .otherwise(notional + fees)
        .alias("net_amount"),
        pl.col("fill_latency_ms").fill_null(0),
        pl.col("fill_count").fill_null(1),
        pl.col("is_partial_fill").fill_null(False),
        *positions(origin),
    )


def transform_orders(
    frame: pl.DataFrame,
    origin: str,
    timezone: str = "UTC",
    cutoff: str = "00:00",
    *,
    weekend_roll: bool = False,
) -> pl.DataFrame:
    """Decoded order rows -> fact_orders columns."""
    requested = pl.col("requested_quantity").cast(DEC)
    filled = pl.col("filled_quantity").cast(DEC).fill_null(Decimal(0))
    ratio_ok = ((filled.cast(pl.Float64) / requested.cast(pl.Float64)) < 9999).fill_null(True)
    rate = pl.when((requested > 0) & ratio_ok).then(filled / requested).otherwise(Decimal(0))
    return frame.with_columns(
        pl.coalesce(
            pl.col("_error"),
            pl.when(~ratio_ok & (requested > 0)).then(pl.lit("fill_rate: filled / requested out of range")),
            *text_errors("fact_orders"),
        ).alias("_error"),
        pl.col("id").alias("order_id"),
        pl.col("created_at").alias("order_date"),
        _date_key("created_at", timezone, cutoff, weekend_roll).alias("order_date_key"),
        pl.col("status").alias("final_status"),
        filled.cast(pl.Decimal(28, 10)).alias("filled_quantity"),
        rate.round(8).cast(pl.Decimal(12, 8), strict=False).alias("fill_rate"),
        (pl.col("status") == "REJECTED").fill_null(False).alias("was_rejected"),
        (pl.col("status") == "CANCELLED").fill_null(False).alias("was_cancelled"),
        pl.col("fill_count").fill_null(0),
        pl.col("total_latency_ms").fill_null(0),
        pl.col("routing_latency_ms").fill_null(0),
        *positions(origin),
    )


def transform_quotes(
    frame: pl.DataFrame,
    timezone: str = "UTC",
    cutoff: str = "00:00",
    *,
    weekend_roll: bool = False,
    rules: list[Rule] | None = None,
) -> pl.DataFrame:
    """Decoded quote events -> fact_quotes columns; `_error` set on quotes that make no sense.

    "Make no sense" is the rule catalogue's ERROR rules of `fact_quotes` (`positive_bid`,
    `positive_ask`, `crossed_quote` by default; `rules`, default `DEFAULT_RULES`): the first one a
    quote violates is its `_error` (`[name] message`), after any decoding error.
    """
    bid, ask = pl.col("bid_price").cast(DEC), pl.col("ask_price").cast(DEC)
    spread = ask - bid
    day = trading_date_expr("quote_timestamp", timezone, cutoff, weekend_roll=weekend_roll)
    out = frame.with_columns(
        day.alias("quote_date"),
        date_key_expr(day).alias("quote_date_key"),
        ((bid + ask) / 2).cast(pl.Decimal(28, 10)).alias("mid_price"),
        spread.cast(pl.Decimal(28, 10)).alias("spread"),
        pl.when(bid > 0)
        .then((spread * 10_000 / bid).round(6))
        .otherwise(None)
        .cast(pl.Decimal(18, 6), strict=False)
        .alias("spread_bps"),
        pl.col("is_stale").fill_null(False),
        pl.col("latency_ms").fill_null(0),
    )
    active = applicable(DEFAULT_RULES if rules is None else rules, "fact_quotes", out.columns)
    checks = [pl.when(r.violation()).then(pl.lit(r.label)) for r in active if r.severity is Severity.ERROR]
    if not checks:
        return out
    return out.with_columns(pl.coalesce(pl.col("_error"), *checks).alias("_error"))


def transform_positions(
    frame: pl.DataFrame, timezone: str = "UTC", cutoff: str = "00:00", *, weekend_roll: bool = False
) -> pl.DataFrame:
    """Decoded `positions` changes (creates, updates, reads and deletes) -> fact_positions rows.

    The change time is the source row's `updated_at` (the business time the source stamped), a
    delete's is its commit time (the before image carries the last update's time). Source
    positions without a sequence get -1 (they are part of the primary key).
    """
    commit_ts = pl.from_epoch(pl.col("_ts_ms"), time_unit="ms").dt.replace_time_zone("UTC")
    is_delete = pl.col("_op") == "d"
    changed = (
        pl.when(is_delete)
        .then(pl.coalesce(commit_ts, pl.col("updated_at")))
        .otherwise(pl.coalesce(pl.col("updated_at"), commit_ts))
        .cast(pl.Datetime("us", "UTC"))
    )
    return frame.with_columns(
        pl.col("id").alias("position_id"),
        changed.alias("changed_at"),
        is_delete.alias("is_deleted"),
        pl.col("_op").alias("src_op"),
        *positions("cdc"),
    ).with_columns(
        pl.when(pl.col("changed_at").is_null())
        .then(pl.lit("changed_at: neither updated_at nor a source time"))
        .otherwise(pl.col("_error"))
        .alias("_error"),
        _date_key("changed_at", timezone, cutoff, weekend_roll).alias("change_date_key"),
        pl.col("src_commit_lsn").fill_null(-1),
        pl.col("src_lsn").fill_null(-1),
    )


def transform_risk(
    frame: pl.DataFrame, timezone: str = "UTC", cutoff: str = "00:00", *, weekend_roll: bool = False
) -> pl.DataFrame:
    """Decoded `risk.snapshot` events -> fact_risk_snapshots rows (+ `_risk_key` for dedup)."""
    day = trading_date_expr("snapshot_time", timezone, cutoff, weekend_roll=weekend_roll)
    pct_columns = ("utilization_pct", "risk_score")
    too_big = [
        pl.when(pl.col(c).cast(pl.Float64).abs() >= float(RISK_PCT_LIMIT)).then(
            pl.lit(f"{c}: out of range (NUMERIC(9,4))")
        )
        for c in pct_columns
    ]
    return frame.with_columns(
        pl.coalesce(pl.col("_error"), *too_big).alias("_error"),
        day.alias("snapshot_date"),
        date_key_expr(day).alias("snapshot_date_key"),
        pl.col("soft_breach_count").fill_null(0),
        pl.col("hard_breach_count").fill_null(0),
        *positions("event"),
        pl.concat_str(
            pl.col("client_id").cast(pl.String),
            pl.col("snapshot_time").dt.epoch("us").cast(pl.String),
            separator="@",
        ).alias("_risk_key"),
    )


def check(
    frame: pl.DataFrame, table: str, rules: list[Rule] | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Evaluate the story's rules on a transformed frame: (valid rows, rows failing an ERROR rule)."""
    evaluated = evaluate_rows(frame, DEFAULT_RULES if rules is None else rules, table)
    return split_valid(evaluated)


def position_order() -> list[pl.Expr]:
    """A change's source position, most significant first: origin rank (CDC above events), commit
    LSN, LSN, event version, event time, then the Kafka offset as the final tie-breaker."""
    return [
        (pl.col("src_origin") == "cdc").cast(pl.Int8),
        pl.col("src_commit_lsn").fill_null(-1),
        pl.col("src_lsn").fill_null(-1),
        pl.col("src_event_version").fill_null(-1),
        pl.col("src_event_ts").dt.epoch("us").fill_null(-(2**62)),
        pl.col("_offset"),
    ]


def latest_per_key(frame: pl.DataFrame, key: str) -> tuple[pl.DataFrame, int]:
    """Keep the newest change of every key in a batch; returns (rows, number superseded).

    Newest = greatest source position (origin rank, commit LSN, LSN, event version, event time),
    the same order the SQL guard uses, with Kafka offset as the final tie-breaker.
    """
    if frame.is_empty():
        return frame, 0
    order = position_order()
    # The usual batch: distinct keys, already in strictly increasing position (a null part
    # counts as not increasing). The sort and the dedup below would then give the frame itself.
    increasing = order[-1].shift(1) < order[-1]
    for part in reversed(order[:-1]):
        increasing = (part.shift(1) < part) | ((part.shift(1) == part) & increasing)
    in_order, distinct = frame.select(
        increasing.slice(1).fill_null(False).all(), pl.col(key).n_unique() == pl.len()
    ).row(0)
    if in_order and distinct:
        return frame.rechunk(), 0  # (one chunk per column, as the sort gives)
    ranked = frame.with_columns(pl.struct(order).alias("_pos_sort"))
    latest = ranked.sort("_pos_sort").unique(subset=[key], keep="last", maintain_order=True).drop("_pos_sort")
    return latest, frame.height - latest.height
