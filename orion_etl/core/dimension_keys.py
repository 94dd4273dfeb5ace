"""Point-in-time dimension keys for fact rows (pure polars, no I/O).

A fact row references the dimension version that was valid at the event's time (SCD2
point-in-time lookup): among the member's versions with `valid_from <= time`, the highest version;
when the time precedes every version (an event older than the first version the warehouse knows),
the first version. A row whose natural id is null, or has no version at all, gets a null key.

The loader resolves keys here, for a whole batch at once, from the versions of the batch's members
(read in the batch's transaction after the inferred members were inserted), so the fact rows can be
COPYed with their keys. `valid_from` values of -infinity / +infinity (inferred members) are read as
the smallest / largest representable timestamps, which compare the same way against fact times.
"""

from __future__ import annotations

import polars as pl

TIME = pl.Datetime("us", "UTC")
VERSIONS_SCHEMA: dict[str, pl.DataType] = {
    "natural_id": pl.String(),
    "key": pl.Int64(),
    "valid_from": TIME,
    "version": pl.Int64(),
}


def empty_versions() -> pl.DataFrame:
    """A versions frame without rows."""
    return pl.DataFrame(schema=VERSIONS_SCHEMA)


def resolve_dimension_keys(
    frame: pl.DataFrame, natural_column: str, time_column: str, versions: pl.DataFrame, key_column: str
) -> pl.DataFrame:
    """`frame` with `key_column` (Int64) added: the key of the version valid at `time_column`.

    `versions` has the VERSIONS_SCHEMA columns (natural_id as canonical lowercase UUID text, like
    the frame's natural id column); rows of other members are ignored.
    """
    if frame.is_empty() or versions.is_empty():
        return frame.with_columns(pl.lit(None, pl.Int64).alias(key_column))
    versions = versions.select(
        pl.col("natural_id").cast(pl.String),
        pl.col("key").cast(pl.Int64),
        pl.col("valid_from").cast(TIME),
        pl.col("version").cast(pl.Int64),
    )
    natural = pl.col(natural_column).cast(pl.String)
    if versions.get_column("natural_id").is_unique().all():
        # Every member has one version (the common case): it is the answer whatever the time.
        key = natural.replace_strict(
            versions.get_column("natural_id"), versions.get_column("key"), default=None, return_dtype=pl.Int64
        )
        return frame.with_columns(key.alias(key_column))
    lazy_versions = versions.lazy()
    # One row per (member, valid_from) with the highest version starting then, and the highest
    # version started at or before it: what a fact time in [valid_from, next valid_from) gets.
    started = (
        lazy_versions.group_by("natural_id", "valid_from")
        .agg(pl.col("version").max())
        .sort("natural_id", "valid_from")
        .with_columns(pl.col("version").cum_max().over("natural_id").alias("_valid_version"))
        .select("natural_id", "valid_from", "_valid_version")
        .sort("valid_from")
    )
    first = lazy_versions.group_by("natural_id").agg(pl.col("version").min().alias("_first_version"))
    rows = frame.lazy().select(
        pl.int_range(pl.len(), dtype=pl.UInt32).alias("_row"),
        natural.alias("natural_id"),
        pl.col(time_column).cast(TIME).alias("_at"),
    )
    timed = rows.filter(pl.col("_at").is_not_null() & pl.col("natural_id").is_not_null()).sort("_at")
    valid = timed.join_asof(
        started,
        left_on="_at",
        right_on="valid_from",
        by="natural_id",
        strategy="backward",
        check_sortedness=False,
    ).select("_row", "_valid_version")
    chosen = (
        rows.join(valid, on="_row", how="left")
        .join(first, on="natural_id", how="left")
        .select("_row", "natural_id", pl.coalesce("_valid_version", "_first_version").alias("version"))
        .join(lazy_versions.select("natural_id", "version", "key"), on=["natural_id", "version"], how="left")
        .sort("_row")
        .collect()
    )
    return frame.with_columns(chosen.get_column("key").alias(key_column))
