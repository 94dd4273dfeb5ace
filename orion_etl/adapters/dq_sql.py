"""Compile data-quality rules to set-based PostgreSQL queries.

Identifiers are quoted with `psycopg.sql.Identifier`; values (accepted values, bounds, limits,
window bounds) travel as query parameters. The audited table is always aliased `t`.

Per table, every rule that is a per-row predicate (the row-level kinds, `relationships` and
`custom_sql`) is counted in ONE scan with ``count(*) FILTER (WHERE <violation>)``; relationships
join a de-duplicated projection of the referenced table, so the scan stays a hash join. Sample
rows are then fetched only for failing rules (``... WHERE <violation> LIMIT n``). `unique` and
`freshness` have a query each.

`custom_sql` predicates are trusted configuration, inserted verbatim as
``(<predicate>)``: the predicate is TRUE on FAILING rows (a NULL result passes). Audits run in
read-only transactions, so a predicate cannot change data.

The violation predicates mirror `Rule.violation()` (polars) exactly, including NULL handling:
``x IS NOT TRUE`` is polars' ``x.fill_null(False).not_()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg import sql

from orion_etl.core.quality import ROW_LEVEL_KINDS, Rule, RuleKind

TEXT_TYPES = frozenset({"text", "character varying", "character", "name", "citext"})
ALIAS = sql.Identifier("t")


@dataclass(frozen=True)
class Query:
    """A composed statement and its positional parameters, in order."""

    text: sql.SQL | sql.Composed
    params: list[Any] = field(default_factory=list)

    def render(self) -> str:
        """The statement text without a connection (for tests and --debug logs)."""
        return self.text.as_string(None)


@dataclass(frozen=True)
class Window:
    """Half-open time window [start, end) on a table's time column; either bound optional."""

    start: datetime | None = None
    end: datetime | None = None

    @property
    def empty(self) -> bool:
        return self.start is None and self.end is None


@dataclass(frozen=True)
class Target:
    """Where a table lives and what we know about its columns (name -> data_type)."""

    schema: str
    table: str
    column_types: dict[str, str] = field(default_factory=dict)
    time_column: str | None = None

    def ref(self, table: str | None = None) -> sql.Composed:
        return sql.SQL("{}.{}").format(sql.Identifier(self.schema), sql.Identifier(table or self.table))


def col(name: str) -> sql.Composed:
    """`t.<name>`."""
    return sql.SQL("{}.{}").format(ALIAS, sql.Identifier(name))


def row_predicate_rule(rule: Rule) -> bool:
    """Rules that are a predicate over one row (possibly joined): countable in the shared scan."""
    return rule.kind in ROW_LEVEL_KINDS or rule.kind in (RuleKind.RELATIONSHIPS, RuleKind.CUSTOM_SQL)


def _ref_alias(index: int) -> sql.Identifier:
    return sql.Identifier(f"r{index}")


def violation(rule: Rule, target: Target, ref_index: int = 0) -> tuple[sql.Composable, list[Any]]:
    """SQL predicate TRUE on rows that violate `rule` (relationships use the join alias `r<i>`)."""
    c = col(rule.column) if rule.column else None
    match rule.kind:
        case RuleKind.NOT_NULL:
            assert c is not None and rule.column is not None
            # Empty/blank strings fail like NULL; non-text columns cannot hold them.
            if target.column_types.get(rule.column, "text") in TEXT_TYPES:
                return sql.SQL("({c} IS NULL OR btrim({c}::text, %s) = '')").format(c=c), [" \t\r\n"]
            return sql.SQL("{} IS NULL").format(c), []
        case RuleKind.POSITIVE:
            return sql.SQL("({} > 0) IS NOT TRUE").format(c), []
        case RuleKind.NON_NEGATIVE:
            return sql.SQL("({} < 0) IS TRUE").format(c), []
        case RuleKind.ACCEPTED_VALUES:
            return sql.SQL("({}::text = ANY(%s::text[])) IS NOT TRUE").format(c), [list(rule.values)]
        case RuleKind.RANGE:
            parts: list[sql.Composable] = []
            params: list[Any] = []
            if rule.min is not None:
                parts.append(sql.SQL("{} < %s").format(c))
                params.append(rule.min)
            if rule.max is not None:
                op = ">" if rule.inclusive_max else ">="
                parts.append(sql.SQL("{} " + op + " %s").format(c))
                params.append(rule.max)
            return sql.SQL("({}) IS TRUE").format(sql.SQL(" OR ").join(parts)), params
        case RuleKind.LESS_OR_EQUAL:
            assert rule.other_column is not None
            return sql.SQL("({} <= {}) IS NOT TRUE").format(c, col(rule.other_column)), []
        case RuleKind.RELATIONSHIPS:
            return sql.SQL("({} IS NOT NULL AND {}.k IS NULL)").format(c, _ref_alias(ref_index)), []
        case RuleKind.CUSTOM_SQL:
            assert rule.sql is not None
            # trusted config (see module doc); % doubled: the statement carries parameters
            return sql.SQL("(") + sql.SQL(rule.sql.replace("%", "%%")) + sql.SQL(")"), []
    raise ValueError(f"rule {rule.key} ({rule.kind}) is not a row predicate")


def _join(rule: Rule, target: Target, ref_index: int) -> sql.Composable:
    """LEFT JOIN of the distinct referenced values of a relationships rule."""
    assert rule.to_table and rule.to_column and rule.column
    alias = _ref_alias(ref_index)
    return sql.SQL(
        " LEFT JOIN (SELECT DISTINCT p.{to_col} AS k FROM {ref} AS p) AS {alias} ON {alias}.k = {c}"
    ).format(
        to_col=sql.Identifier(rule.to_column),
        ref=target.ref(rule.to_table),
        alias=alias,
        c=col(rule.column),
    )


def window_filter(target: Target, window: Window) -> tuple[sql.Composable, list[Any]]:
    """`WHERE` condition of the time window (TRUE when there is none or no time column)."""
    if window.empty or not target.time_column:
        return sql.SQL("TRUE"), []
    parts: list[sql.Composable] = []
    params: list[Any] = []
    if window.start is not None:
        parts.append(sql.SQL("{} >= %s").format(col(target.time_column)))
        params.append(window.start)
    if window.end is not None:
        parts.append(sql.SQL("{} < %s").format(col(target.time_column)))
        params.append(window.end)
    return sql.SQL(" AND ").join(parts), params


def scan_query(target: Target, rules: list[Rule], window: Window) -> Query:
    """One scan: `checked` (rows in scope) then one failing count per rule, in `rules` order."""
    selects: list[sql.Composable] = [sql.SQL("count(*) AS checked")]
    joins: list[sql.Composable] = []
    select_params: list[Any] = []
    for i, rule in enumerate(rules):
        pred, params = violation(rule, target, i)
        selects.append(sql.SQL("count(*) FILTER (WHERE {}) AS {}").format(pred, sql.Identifier(f"f{i}")))
        select_params += params
        if rule.kind is RuleKind.RELATIONSHIPS:
            joins.append(_join(rule, target, i))
    where, where_params = window_filter(target, window)
    text = sql.SQL("SELECT {selects} FROM {table} AS t{joins} WHERE {where}").format(
        selects=sql.SQL(", ").join(selects),
        table=target.ref(),
        joins=sql.Composed(joins),
        where=where,
    )
    return Query(text, select_params + where_params)


def sample_query(target: Target, rule: Rule, window: Window, limit: int) -> Query:
    """Up to `limit` violating rows of a row-predicate rule, as JSON objects."""
    where, where_params = window_filter(target, window)
    if rule.kind is RuleKind.RELATIONSHIPS:
        assert rule.to_table and rule.to_column and rule.column
        pred: sql.Composable = sql.SQL(
            "{c} IS NOT NULL AND NOT EXISTS (SELECT 1 FROM {ref} AS p WHERE p.{to_col} = {c})"
        ).format(c=col(rule.column), ref=target.ref(rule.to_table), to_col=sql.Identifier(rule.to_column))
        params: list[Any] = []
    else:
        pred, params = violation(rule, target)
    text = sql.SQL("SELECT to_jsonb(t) FROM {table} AS t WHERE {where} AND {pred} LIMIT %s").format(
        table=target.ref(), where=where, pred=pred
    )
    return Query(text, [*where_params, *params, limit])


def unique_query(target: Target, rule: Rule, window: Window, limit: int) -> Query:
    """Duplicated key values: rows `(dup_rows, dup_keys, sample)`, biggest groups first.

    Rows with a NULL in any key column are ignored (SQL UNIQUE semantics). Returns no row when
    every key is unique; `limit` is at least 1 so the totals always come back.
    """
    cols = [col(c) for c in rule.columns]
    where, where_params = window_filter(target, window)
    not_null = sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(c) for c in cols)
    text = sql.SQL(
        "SELECT sum(d.n) OVER () AS dup_rows, count(*) OVER () AS dup_keys, to_jsonb(d) AS sample "
        "FROM (SELECT {cols}, count(*) AS n FROM {table} AS t WHERE {where} AND {not_null} "
        "GROUP BY {cols} HAVING count(*) > 1) AS d ORDER BY d.n DESC LIMIT %s"
    ).format(cols=sql.SQL(", ").join(cols), table=target.ref(), where=where, not_null=not_null)
    return Query(text, [*where_params, max(1, limit)])


def freshness_query(target: Target, rule: Rule) -> Query:
    """Newest value of the rule's column and its age in seconds (the time window does not apply)."""
    assert rule.column
    text = sql.SQL(
        "SELECT max({c}) AS newest, EXTRACT(EPOCH FROM (now() - max({c})))::float8 AS age_s FROM {table} AS t"
    ).format(c=col(rule.column), table=target.ref())
    return Query(text)


def columns_query(schema: str, tables: list[str]) -> Query:
    """Columns and data types of `tables` in `schema` (to validate rules before running them)."""
    return Query(
        sql.SQL(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = %s AND table_name = ANY(%s) ORDER BY table_name, ordinal_position"
        ),
        [schema, tables],
    )
