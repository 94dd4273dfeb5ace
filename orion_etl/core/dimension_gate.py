"""`stream.missing_dimension = "dlq"`: dead-letter fact rows whose natural ids have no dimension row.

Pure: the caller looks up which ids exist. "Exists" means any row of the dimension, current or
not, inferred or not (the point-in-time lookup then picks the right version). A NULL id is not
checked here (the required-value rules cover the required ones; `lp_id` is optional).
"""

from __future__ import annotations

import polars as pl

from orion_etl.core.fact_model import FACT_MODELS

# fact table -> (natural id column, dimension table, rule name), from the fact model
DIMENSION_REFS: dict[str, tuple[tuple[str, str, str], ...]] = {
    m.table: tuple((d.column, d.table, d.gate_rule) for d in m.dims) for m in FACT_MODELS.values()
}


def wanted_ids(frame: pl.DataFrame, table: str) -> dict[str, list[str]]:
    """Distinct non-null natural ids per dimension table referenced by `frame`."""
    out: dict[str, list[str]] = {}
    for column, dim, _ in DIMENSION_REFS[table]:
        if column in frame.columns:
            ids = frame.get_column(column).drop_nulls().unique().cast(pl.String).to_list()
            out[dim] = sorted(set(out.get(dim, [])) | set(ids))
    return out


def split_missing(
    frame: pl.DataFrame, table: str, existing: dict[str, set[str]]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(rows whose ids all exist, rows with a missing member; `_error` names each missing id)."""
    messages: list[pl.Expr] = []
    for column, dim, rule in DIMENSION_REFS[table]:
        if column not in frame.columns:
            continue
        known = pl.Series(sorted(existing.get(dim, set())), dtype=pl.String)
        value = pl.col(column).cast(pl.String)
        missing = value.is_not_null() & ~value.is_in(known.implode())
        messages.append(
            pl.when(missing).then(pl.format(f"[{rule}] no {dim} member for {column} {{}}", value))
        )
    if not messages:
        return frame, frame.clear()
    joined = pl.concat_str(messages, separator="; ", ignore_nulls=True)
    flagged = frame.with_columns(joined.alias("_dim_error"))
    bad = pl.col("_dim_error").is_not_null() & (pl.col("_dim_error") != "")
    kept = flagged.filter(~bad).drop("_dim_error")
    failed = flagged.filter(bad).with_columns(pl.col("_dim_error").alias("_error")).drop("_dim_error")
    return kept, failed
