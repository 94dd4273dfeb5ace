"""Rules compile to parameterized SQL: checked as strings, like soda-core's adapter tests."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from orion_etl.adapters import dq_sql
from orion_etl.adapters.dq_sql import Target, Window
from orion_etl.core.quality import Rule, RuleKind, Severity

T = Target("public", "fact_trades", {"tenant_id": "uuid", "side": "character varying"}, "trade_date")


def rule(kind: RuleKind, **kw: object) -> Rule:
    return Rule("r", "fact_trades", kind, "m", Severity.ERROR, **kw)  # type: ignore[arg-type]


def pred(r: Rule) -> tuple[str, list]:
    text, params = dq_sql.violation(r, T)
    return text.as_string(None), params


def test_row_level_predicates_mirror_polars_null_handling() -> None:
    assert pred(rule(RuleKind.NOT_NULL, column="tenant_id")) == ('"t"."tenant_id" IS NULL', [])
    assert pred(rule(RuleKind.NOT_NULL, column="side")) == (
        '("t"."side" IS NULL OR btrim("t"."side"::text, %s) = \'\')',
        [" \t\r\n"],
    )
    assert pred(rule(RuleKind.POSITIVE, column="quantity")) == ('("t"."quantity" > 0) IS NOT TRUE', [])
    assert pred(rule(RuleKind.NON_NEGATIVE, column="fees")) == ('("t"."fees" < 0) IS TRUE', [])
    assert pred(rule(RuleKind.ACCEPTED_VALUES, column="side", values=("BUY", "SELL"))) == (
        '("t"."side"::text = ANY(%s::text[])) IS NOT TRUE',
        [["BUY", "SELL"]],
    )
    assert pred(rule(RuleKind.RANGE, column="price", min=Decimal(0), max=Decimal(10))) == (
        '("t"."price" < %s OR "t"."price" >= %s) IS TRUE',
        [Decimal(0), Decimal(10)],
    )
    assert pred(rule(RuleKind.RANGE, column="price", max=Decimal(10), inclusive_max=True)) == (
        '("t"."price" > %s) IS TRUE',
        [Decimal(10)],
    )
    assert pred(rule(RuleKind.LESS_OR_EQUAL, column="a", other_column="b")) == (
        '("t"."a" <= "t"."b") IS NOT TRUE',
        [],
    )


def test_custom_sql_is_wrapped_and_percent_escaped() -> None:
    r = rule(RuleKind.CUSTOM_SQL, sql="t.currency LIKE 'X%'")
    assert pred(r) == ("(t.currency LIKE 'X%%')", [])
    q = dq_sql.sample_query(T, r, Window(), 3)
    assert q.render() == (
        'SELECT to_jsonb(t) FROM "public"."fact_trades" AS t '
        "WHERE TRUE AND (t.currency LIKE 'X%%') LIMIT %s"
    )
    assert q.params == [3]


def test_identifiers_are_quoted() -> None:
    r = rule(RuleKind.NOT_NULL, column='we"ird')
    assert pred(r)[0].startswith('("t"."we""ird" IS NULL')


def test_one_scan_with_filter_clauses_and_relationship_joins() -> None:
    rules = [
        rule(RuleKind.POSITIVE, column="quantity"),
        rule(RuleKind.RELATIONSHIPS, column="client_id", to_table="dim_clients", to_column="client_id"),
        rule(RuleKind.ACCEPTED_VALUES, column="side", values=("BUY",)),
    ]
    start, end = datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC)
    q = dq_sql.scan_query(T, rules, Window(start, end))
    assert q.render() == (
        'SELECT count(*) AS checked, count(*) FILTER (WHERE ("t"."quantity" > 0) IS NOT TRUE) AS "f0", '
        'count(*) FILTER (WHERE ("t"."client_id" IS NOT NULL AND "r1".k IS NULL)) AS "f1", '
        'count(*) FILTER (WHERE ("t"."side"::text = ANY(%s::text[])) IS NOT TRUE) AS "f2" '
        'FROM "public"."fact_trades" AS t '
        'LEFT JOIN (SELECT DISTINCT p."client_id" AS k FROM "public"."dim_clients" AS p) AS "r1" '
        'ON "r1".k = "t"."client_id" '
        'WHERE "t"."trade_date" >= %s AND "t"."trade_date" < %s'
    )
    assert q.params == [["BUY"], start, end]


def test_relationship_samples_use_an_anti_join() -> None:
    r = rule(RuleKind.RELATIONSHIPS, column="client_id", to_table="dim_clients", to_column="client_id")
    q = dq_sql.sample_query(T, r, Window(end=datetime(2025, 1, 1, tzinfo=UTC)), 5)
    assert q.render() == (
        'SELECT to_jsonb(t) FROM "public"."fact_trades" AS t WHERE "t"."trade_date" < %s AND '
        '"t"."client_id" IS NOT NULL AND NOT EXISTS (SELECT 1 FROM "public"."dim_clients" AS p '
        'WHERE p."client_id" = "t"."client_id") LIMIT %s'
    )
    assert q.params[-1] == 5


def test_unique_and_freshness() -> None:
    u = dq_sql.unique_query(T, rule(RuleKind.UNIQUE, columns=("tenant_id", "trade_reference")), Window(), 0)
    assert u.render() == (
        "SELECT sum(d.n) OVER () AS dup_rows, count(*) OVER () AS dup_keys, to_jsonb(d) AS sample "
        'FROM (SELECT "t"."tenant_id", "t"."trade_reference", count(*) AS n FROM "public"."fact_trades" AS t '
        'WHERE TRUE AND "t"."tenant_id" IS NOT NULL AND "t"."trade_reference" IS NOT NULL '
        'GROUP BY "t"."tenant_id", "t"."trade_reference" HAVING count(*) > 1) AS d ORDER BY d.n DESC LIMIT %s'
    )
    assert u.params == [1]  # totals come back even when no samples are wanted
    f = dq_sql.freshness_query(T, rule(RuleKind.FRESHNESS, column="trade_date", max_age_s=60))
    assert f.render() == (
        'SELECT max("t"."trade_date") AS newest, EXTRACT(EPOCH FROM (now() - max("t"."trade_date")))::float8 '
        'AS age_s FROM "public"."fact_trades" AS t'
    )


def test_window_needs_a_time_column() -> None:
    no_time = Target("public", "dim_clients")
    text, params = dq_sql.window_filter(no_time, Window(datetime(2025, 1, 1, tzinfo=UTC)))
    assert (text.as_string(None), params) == ("TRUE", [])
