"""Data-quality rules: one definition, two execution modes.

A `Rule` describes a check on one warehouse table. Row-level rules (`ROW_LEVEL_KINDS`) compile
to a polars expression that is true on violating rows; the streaming loader evaluates them
vectorized on every micro-batch (`evaluate_rows`). Audits run every rule, including the
table-level kinds (unique, relationships, freshness, custom SQL), as set-based SQL against the
warehouse (see `orion_etl.jobs.audit`).

The story's trade and order rules ship as `DEFAULT_RULES`, with its names and messages, so
`[tenant_required] tenant_id is required` reads the same in the DLQ, in
`etl_data_quality_issues` and in alerts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

import polars as pl

from orion_etl.core.fact_model import FACT_MODELS


class Severity(StrEnum):
    """ERROR rejects a row (DLQ when streaming); WARNING records it and lets the row load."""

    ERROR = "ERROR"
    WARNING = "WARNING"


class RuleKind(StrEnum):
    """What a rule checks."""

    NOT_NULL = "not_null"  # null or empty string fails
    POSITIVE = "positive"  # > 0; null fails
    NON_NEGATIVE = "non_negative"  # >= 0; null passes (treated as 0, like the story's `fees || 0`)
    ACCEPTED_VALUES = "accepted_values"  # in `values`; null fails
    RANGE = "range"  # min <= x < max (bounds optional, `inclusive_max` to include max); null passes
    LESS_OR_EQUAL = "less_or_equal"  # column <= other_column; null fails
    UNIQUE = "unique"  # no duplicate values of `columns` (table-level)
    RELATIONSHIPS = "relationships"  # column references to_table.to_column (table-level)
    FRESHNESS = "freshness"  # newest `column` younger than `max_age_s` (table-level)
    CUSTOM_SQL = "custom_sql"  # rows matching the SQL predicate `sql` violate (table-level)


ROW_LEVEL_KINDS = frozenset(
    {
        RuleKind.NOT_NULL,
        RuleKind.POSITIVE,
        RuleKind.NON_NEGATIVE,
        RuleKind.ACCEPTED_VALUES,
        RuleKind.RANGE,
        RuleKind.LESS_OR_EQUAL,
    }
)


@dataclass(frozen=True)
class Rule:
    """One data-quality rule on one table."""

    name: str
    table: str
    kind: RuleKind
    message: str
    severity: Severity = Severity.ERROR
    column: str | None = None
    columns: tuple[str, ...] = ()
    values: tuple[str, ...] = ()
    min: Decimal | None = None
    max: Decimal | None = None
    inclusive_max: bool = False
    other_column: str | None = None
    to_table: str | None = None
    to_column: str | None = None
    max_age_s: int | None = None
    sql: str | None = None
    enabled: bool = True
    tags: tuple[str, ...] = field(default=())

    @property
    def key(self) -> str:
        """Unique identity of the rule: `<table>.<name>` (names repeat across tables)."""
        return f"{self.table}.{self.name}"

    @property
    def row_level(self) -> bool:
        return self.kind in ROW_LEVEL_KINDS

    @property
    def label(self) -> str:
        """The story's message format: `[name] message`."""
        return f"[{self.name}] {self.message}"

    def violation(self) -> pl.Expr:
        """Polars expression, true on rows that violate this (row-level) rule."""
        if not self.row_level:
            raise ValueError(f"rule {self.key} ({self.kind}) is not row-level")
        assert self.column is not None, f"rule {self.key} needs a column"
        col = pl.col(self.column)
        match self.kind:
            case RuleKind.NOT_NULL:
                as_text = col.cast(pl.String, strict=False)
                return col.is_null() | (as_text.str.strip_chars() == "").fill_null(False)
            case RuleKind.POSITIVE:
                return (col > 0).fill_null(False).not_()
            case RuleKind.NON_NEGATIVE:
                return (col < 0).fill_null(False)
            case RuleKind.ACCEPTED_VALUES:
                return col.cast(pl.String, strict=False).is_in(list(self.values)).fill_null(False).not_()
            case RuleKind.RANGE:
                bad = pl.lit(False)
                if self.min is not None:
                    bad = bad | (col < self.min).fill_null(False)
                if self.max is not None:
                    over = (col > self.max) if self.inclusive_max else (col >= self.max)
                    bad = bad | over.fill_null(False)
                return bad
            case RuleKind.LESS_OR_EQUAL:
                assert self.other_column is not None
                return (col <= pl.col(self.other_column)).fill_null(False).not_()
        raise AssertionError(self.kind)  # pragma: no cover


ERRORS_COLUMN = "_dq_errors"
WARNINGS_COLUMN = "_dq_warnings"
FAILED_RULES_COLUMN = "_dq_failed_rules"


def applicable(rules: list[Rule], table: str, columns: list[str]) -> list[Rule]:
    """Enabled row-level rules of `table` whose columns are present in a frame."""
    out = []
    for rule in rules:
        if not (rule.enabled and rule.row_level and rule.table == table):
            continue
        needed = [c for c in (rule.column, rule.other_column) if c]
        if all(c in columns for c in needed):
            out.append(rule)
    return out


def evaluate_rows(frame: pl.DataFrame, rules: list[Rule], table: str) -> pl.DataFrame:
    """Add `_dq_errors`, `_dq_warnings` (lists of `[name] message`) and `_dq_failed_rules`.

    Vectorized: one expression per rule over the whole batch. A row is valid when `_dq_errors`
    is empty; warnings never reject a row.
    """
    active = applicable(rules, table, frame.columns)
    if active and not frame.is_empty():
        # The usual batch violates no rule: then every row's lists are empty, without building them.
        violations = [r.violation().fill_null(False) for r in active]
        if not frame.select(pl.any_horizontal(violations).any()).item():
            none = pl.lit([], dtype=pl.List(pl.String))
            return frame.with_columns(
                none.alias(ERRORS_COLUMN), none.alias(WARNINGS_COLUMN), none.alias(FAILED_RULES_COLUMN)
            )

    def collect(severity: Severity) -> pl.Expr:
        parts = [
            pl.when(r.violation()).then(pl.lit(r.label)).otherwise(pl.lit(None, dtype=pl.String))
            for r in active
            if r.severity is severity
        ]
        if not parts:
            return pl.lit([], dtype=pl.List(pl.String))
        return pl.concat_list(parts).list.drop_nulls()

    names = [
        pl.when(r.violation()).then(pl.lit(r.name)).otherwise(pl.lit(None, dtype=pl.String)) for r in active
    ]
    failed = pl.concat_list(names).list.drop_nulls() if names else pl.lit([], dtype=pl.List(pl.String))
    return frame.with_columns(
        collect(Severity.ERROR).alias(ERRORS_COLUMN),
        collect(Severity.WARNING).alias(WARNINGS_COLUMN),
        failed.alias(FAILED_RULES_COLUMN),
    )


def split_valid(evaluated: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows without errors, rows with at least one error-severity violation)."""
    has_error = pl.col(ERRORS_COLUMN).list.len() > 0
    if not evaluated.select(has_error.any()).item():  # the usual batch: no copy of its rows
        return evaluated, evaluated.clear()
    return evaluated.filter(~has_error), evaluated.filter(has_error)


def _trade_and_order_rules() -> list[Rule]:
    t, o = "fact_trades", "fact_orders"
    e, w = Severity.ERROR, Severity.WARNING
    return [
        Rule("tenant_required", t, RuleKind.NOT_NULL, "tenant_id is required", e, column="tenant_id"),
        Rule("client_required", t, RuleKind.NOT_NULL, "client_id is required", e, column="client_id"),
        Rule(
            "instrument_required", t, RuleKind.NOT_NULL, "instrument_id is required", e,
            column="instrument_id",
        ),
        Rule("positive_quantity", t, RuleKind.POSITIVE, "quantity must be positive", e, column="quantity"),
        Rule("positive_price", t, RuleKind.POSITIVE, "price must be positive", e, column="price"),
        Rule(
            "valid_side", t, RuleKind.ACCEPTED_VALUES, "side must be BUY or SELL", e,
            column="side", values=("BUY", "SELL"),
        ),
        Rule(
            "reasonable_price", t, RuleKind.RANGE, "price seems unreasonably high", w,
            column="price", max=Decimal(1_000_000_000),
        ),
        Rule("fees_non_negative", t, RuleKind.NON_NEGATIVE, "fees should be non-negative", w, column="fees"),
        Rule("tenant_required", o, RuleKind.NOT_NULL, "tenant_id is required", e, column="tenant_id"),
        Rule("client_required", o, RuleKind.NOT_NULL, "client_id is required", e, column="client_id"),
        Rule(
            "positive_requested_quantity", o, RuleKind.POSITIVE, "requested_quantity must be positive", e,
            column="requested_quantity",
        ),
        Rule(
            "valid_status", o, RuleKind.ACCEPTED_VALUES, "invalid order status", e,
            column="final_status", values=("PENDING", "PARTIAL", "FILLED", "CANCELLED", "REJECTED"),
        ),
        Rule(
            "filled_not_exceed_requested", o, RuleKind.LESS_OR_EQUAL, "filled quantity exceeds requested", w,
            column="filled_quantity", other_column="requested_quantity",
        ),
    ]  # fmt: skip


def _position_and_risk_rules() -> list[Rule]:
    """Row-level rules of the position history and the risk snapshots (issue 17), story style.

    They check changes that create or update a position (a delete keeps whatever its before
    image had). "Finite" P&L: the decoder already rejects NaN / Infinity and values beyond
    NUMERIC(28,10) (INVALID_VALUE); the range rule bounds what remains to amounts the warehouse
    sums without overflow.
    """
    p, r = "fact_positions", "fact_risk_snapshots"
    e, w = Severity.ERROR, Severity.WARNING
    bound = Decimal(10) ** 17
    return [
        Rule("tenant_required", p, RuleKind.NOT_NULL, "tenant_id is required", e, column="tenant_id"),
        Rule("client_required", p, RuleKind.NOT_NULL, "client_id is required", e, column="client_id"),
        Rule(
            "instrument_required", p, RuleKind.NOT_NULL, "instrument_id is required", e,
            column="instrument_id",
        ),
        Rule("quantity_required", p, RuleKind.NOT_NULL, "quantity is required", e, column="quantity"),
        Rule(
            "reasonable_quantity", p, RuleKind.RANGE, "quantity seems unreasonably large", w,
            column="quantity", min=-Decimal(10) ** 15, max=Decimal(10) ** 15, inclusive_max=True,
        ),
        Rule(
            "avg_price_non_negative", p, RuleKind.NON_NEGATIVE, "avg_price must not be negative", e,
            column="avg_price",
        ),
        Rule(
            "reasonable_avg_price", p, RuleKind.RANGE, "avg_price seems unreasonably high", w,
            column="avg_price", max=Decimal(1_000_000_000),
        ),
        Rule(
            "realized_pnl_required", p, RuleKind.NOT_NULL, "realized_pnl is required", e,
            column="realized_pnl",
        ),
        Rule(
            "realized_pnl_finite", p, RuleKind.RANGE, "realized_pnl must be a finite amount below 1e17", e,
            column="realized_pnl", min=-bound, max=bound, inclusive_max=True,
        ),
        Rule("tenant_required", r, RuleKind.NOT_NULL, "tenant_id is required", e, column="tenant_id"),
        Rule("client_required", r, RuleKind.NOT_NULL, "client_id is required", e, column="client_id"),
        Rule(
            "utilization_range", r, RuleKind.RANGE, "utilization_pct must be between 0 and 1000", e,
            column="utilization_pct", min=Decimal(0), max=Decimal(1000), inclusive_max=True,
        ),
        Rule(
            "soft_breaches_non_negative", r, RuleKind.NON_NEGATIVE, "soft_breach_count must not be negative",
            e, column="soft_breach_count",
        ),
        Rule(
            "hard_breaches_non_negative", r, RuleKind.NON_NEGATIVE, "hard_breach_count must not be negative",
            e, column="hard_breach_count",
        ),
        Rule(
            "margin_non_negative", r, RuleKind.NON_NEGATIVE, "margin_used should be non-negative", w,
            column="margin_used",
        ),
        Rule(
            "risk_score_range", r, RuleKind.RANGE, "risk_score must be between 0 and 100", w,
            column="risk_score", min=Decimal(0), max=Decimal(100), inclusive_max=True,
        ),
    ]  # fmt: skip


def _quote_rules() -> list[Rule]:
    """The quote checks of the stream (`core.facts.transform_quotes` applies the ERROR ones).

    Their names and messages are the labels the loader always wrote to the DLQ and the issue rows;
    as catalogue rules `dq rules` lists them and `enabled = false` switches one off.
    """
    q, e = "fact_quotes", Severity.ERROR
    return [
        Rule("positive_bid", q, RuleKind.POSITIVE, "bid must be positive", e, column="bid_price"),
        Rule("positive_ask", q, RuleKind.POSITIVE, "ask must be positive", e, column="ask_price"),
        Rule(
            "crossed_quote", q, RuleKind.LESS_OR_EQUAL, "ask must not be below bid", e,
            column="bid_price", other_column="ask_price",
        ),
    ]  # fmt: skip


DEFAULT_RULES: list[Rule] = [*_trade_and_order_rules(), *_position_and_risk_rules(), *_quote_rules()]


@dataclass(frozen=True)
class TableSpec:
    """How audits treat one table: its time column (for --from/--to) and its row identifier."""

    name: str
    time_column: str | None = None
    key_column: str | None = None


# (from the fact model: each fact table's event time and natural key)
DEFAULT_TABLES: dict[str, TableSpec] = {
    m.table: TableSpec(m.table, m.time_column, m.key or None)
    for m in (FACT_MODELS[t] for t in ("fact_trades", "fact_orders", "fact_quotes", "fact_risk_snapshots",
                                       "fact_positions"))
}  # fmt: skip


def _audit_rules() -> list[Rule]:
    """Set-based rules that only audits run: integrity of facts against dimensions, freshness, keys."""
    t, o = "fact_trades", "fact_orders"
    p, r = "fact_positions", "fact_risk_snapshots"
    e, w = Severity.ERROR, Severity.WARNING
    rel = RuleKind.RELATIONSHIPS
    return [
        Rule("client_exists", t, rel, "client_id has no dim_clients member", e,
             column="client_id", to_table="dim_clients", to_column="client_id"),
        Rule("instrument_exists", t, rel, "instrument_id has no dim_instruments member", e,
             column="instrument_id", to_table="dim_instruments", to_column="instrument_id"),
        Rule("lp_exists", t, rel, "lp_id has no dim_liquidity_providers member", w,
             column="lp_id", to_table="dim_liquidity_providers", to_column="lp_id"),
        Rule("trade_date_key_exists", t, rel, "trade_date_key is not in dim_date", e,
             column="trade_date_key", to_table="dim_date", to_column="date_key"),
        Rule("unique_trade_reference", t, RuleKind.UNIQUE, "trade_reference is not unique per tenant", w,
             columns=("tenant_id", "trade_reference")),
        Rule("trades_fresh", t, RuleKind.FRESHNESS, "no trade executed in the last 24 hours", w,
             column="trade_date", max_age_s=86_400),
        Rule("client_exists", o, rel, "client_id has no dim_clients member", e,
             column="client_id", to_table="dim_clients", to_column="client_id"),
        Rule("instrument_exists", o, rel, "instrument_id has no dim_instruments member", w,
             column="instrument_id", to_table="dim_instruments", to_column="instrument_id"),
        Rule("client_exists", p, rel, "client_id has no dim_clients member", e,
             column="client_id", to_table="dim_clients", to_column="client_id"),
        Rule("instrument_exists", p, rel, "instrument_id has no dim_instruments member", e,
             column="instrument_id", to_table="dim_instruments", to_column="instrument_id"),
        Rule("change_date_key_exists", p, rel, "change_date_key is not in dim_date", e,
             column="change_date_key", to_table="dim_date", to_column="date_key"),
        Rule("positions_fresh", p, RuleKind.FRESHNESS, "no position changed in the last 24 hours", w,
             column="changed_at", max_age_s=86_400),
        Rule("client_exists", r, rel, "client_id has no dim_clients member", e,
             column="client_id", to_table="dim_clients", to_column="client_id"),
        Rule("snapshot_date_key_exists", r, rel, "snapshot_date_key is not in dim_date", e,
             column="snapshot_date_key", to_table="dim_date", to_column="date_key"),
        Rule("risk_snapshots_fresh", r, RuleKind.FRESHNESS, "no risk snapshot in the last 24 hours", w,
             column="snapshot_time", max_age_s=86_400),
    ]  # fmt: skip


DEFAULT_AUDIT_RULES: list[Rule] = _audit_rules()


def fact_key_rules() -> list[Rule]:
    """One audit rule per registered dimension key column of a fact (`core.fact_keys`): facts
    whose key is not the dimension version valid at their event time (`<key>_point_in_time`)."""
    from orion_etl.core.fact_keys import mismatch_predicate, registered  # fact_keys imports config

    return [
        Rule(
            f"{ref.key_column}_point_in_time",
            ref.fact_table,
            RuleKind.CUSTOM_SQL,
            f"{ref.key_column} is not the {ref.dimension_table} version valid at {ref.time_column}",
            Severity.ERROR,
            sql=mismatch_predicate(ref, "t"),
        )
        for ref in registered()
    ]


def default_rules() -> list[Rule]:
    """Every shipped rule: the story's row-level rules, the audit-only rules, the fact-key rules."""
    return [*DEFAULT_RULES, *DEFAULT_AUDIT_RULES, *fact_key_rules()]
