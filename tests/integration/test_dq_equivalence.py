"""One definition, two execution modes: polars and SQL find the same failing rows."""

from __future__ import annotations

from decimal import Decimal

import polars as pl
import psycopg
import pytest
from psycopg import sql

from orion_etl.adapters import dq_sql
from orion_etl.adapters.dq_sql import Target, Window
from orion_etl.core.quality import DEFAULT_RULES, ROW_LEVEL_KINDS, Rule, RuleKind, Severity

pytestmark = pytest.mark.integration

D = Decimal
FRAME = pl.DataFrame(
    {
        "id": list(range(9)),
        "s": ["BUY", "", "  ", None, "HOLD", "SELL", "buy", " BUY", "\t"],
        "n": [D(1), D(0), D(-1), None, D(10) ** 9, D("0.0000000001"), D(5), D(10), D(-3)],
        "a": [D(1), D(2), None, D(3), D(5), D(0), D(7), D(1), None],
        "b": [D(1), D(1), D(1), None, D(6), D(-1), D(7), None, None],
    },
    schema_overrides={"n": pl.Decimal(28, 10), "a": pl.Decimal(28, 10), "b": pl.Decimal(28, 10)},
)


def r(name: str, kind: RuleKind, **kw: object) -> Rule:
    return Rule(name, "eq", kind, "m", Severity.ERROR, **kw)  # type: ignore[arg-type]


RULES = [
    r("s_required", RuleKind.NOT_NULL, column="s"),
    r("n_required", RuleKind.NOT_NULL, column="n"),
    r("n_positive", RuleKind.POSITIVE, column="n"),
    r("n_non_negative", RuleKind.NON_NEGATIVE, column="n"),
    r("s_side", RuleKind.ACCEPTED_VALUES, column="s", values=("BUY", "SELL")),
    r("n_range", RuleKind.RANGE, column="n", min=D(0), max=D(10) ** 9),
    r("n_range_incl", RuleKind.RANGE, column="n", min=D(1), max=D(5), inclusive_max=True),
    r("n_below", RuleKind.RANGE, column="n", max=D(5)),
    r("a_le_b", RuleKind.LESS_OR_EQUAL, column="a", other_column="b"),
]


def test_every_row_level_kind_is_covered() -> None:
    assert {rule.kind for rule in RULES} == ROW_LEVEL_KINDS
    assert {rule.kind for rule in DEFAULT_RULES} <= ROW_LEVEL_KINDS


@pytest.fixture
def temp_table(warehouse: psycopg.Connection) -> Target:
    warehouse.execute(
        "CREATE TEMP TABLE eq (id int PRIMARY KEY, s text, "
        "n numeric(28, 10), a numeric(28, 10), b numeric(28, 10))"
    )
    with warehouse.cursor().copy("COPY eq (id, s, n, a, b) FROM STDIN") as copy:
        for row in FRAME.iter_rows():
            copy.write_row(row)
    return Target(
        "pg_temp", "eq", {"id": "integer", "s": "text", "n": "numeric", "a": "numeric", "b": "numeric"}
    )


@pytest.mark.parametrize("rule", RULES, ids=lambda rule: rule.name)
def test_polars_and_sql_fail_the_same_rows(
    warehouse: psycopg.Connection, temp_table: Target, rule: Rule
) -> None:
    in_polars = FRAME.filter(rule.violation())["id"].to_list()
    predicate, params = dq_sql.violation(rule, temp_table)
    query = sql.SQL("SELECT t.id FROM pg_temp.eq AS t WHERE {} ORDER BY t.id").format(predicate)
    in_sql = [row[0] for row in warehouse.execute(query, params).fetchall()]
    assert in_sql == in_polars
    assert in_polars, "each rule fails at least one row of the frame"


def test_one_scan_counts_match_polars(warehouse: psycopg.Connection, temp_table: Target) -> None:
    q = dq_sql.scan_query(temp_table, RULES, Window())
    checked, *counts = warehouse.execute(q.text, q.params).fetchone()  # type: ignore[misc]
    assert checked == FRAME.height
    assert counts == [FRAME.filter(rule.violation()).height for rule in RULES]
