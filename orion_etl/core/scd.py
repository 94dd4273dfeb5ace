"""Slowly changing dimensions: what each dimension holds and how a change is classified.

Pure: no I/O. The warehouse applies changes set-based in SQL (`orion_etl.adapters.dim_store`);
this module owns the rules that SQL implements. The tests hold them once more in Python as a small
reference model (`tests/scd_model.py`: `classify`, `ModelDimension`) so that the rules are unit-
and property-tested and the SQL is checked against them.

Rules for one staged change (natural id, attributes, change time `ct`, deleted flag) against the
dimension's current row `cur` (the order below is the priority):

* no current row: INSERT version 1, `valid_from = created_at` (else `ct`); when the id has a
  closed history (deleted, then re-created) the new version follows the last one, unless `ct` is
  before that history's end (a replayed old change: STALE).
* deleted in the source: CLOSE the current version (`valid_to = ct`, `is_current = false`,
  `is_deleted = true`) when `close_on_delete`, else only flag it `is_deleted` (DELETE_FLAG).
* `cur` is an inferred member (created by the loader for an early fact): COMPLETE it in place:
  attributes and hashes set, `is_inferred = false`, key and `valid_from` kept.
* `ct` older than what the row already reflects (`ct < cur.source_updated_at`): STALE, ignored
  and counted (a late or replayed change must not rewrite history or undo newer values).
* hashes equal (and not flagged deleted): UNCHANGED, no row touched.
* SCD2 hash differs: SCD2: close `cur` at `ct`, insert version + 1 from `ct` carrying every new
  attribute (SCD1 ones included: one version for a mixed change). If `ct` is not after
  `cur.valid_from` (two states with the same change time) the current version is CORRECTed in
  place instead, since a zero-length interval is not a version.
* else SCD1: overwrite SCD1 attributes in place on ALL versions of the id (Kimball type 1:
  history shows today's name), `source_updated_at = ct` on the current one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Protocol

from orion_etl.errors import ConfigError


class ScdSplit(Protocol):
    """The configured SCD split of one dimension (`config.models.DimensionSettings` has it)."""

    @property
    def scd2(self) -> Sequence[str]: ...

    @property
    def scd1(self) -> Sequence[str]: ...

    @property
    def close_on_delete(self) -> bool: ...


DIMENSION_NAMES = ("client", "instrument", "lp")


@dataclass(frozen=True)
class Attribute:
    """A dimension column, the source expression that feeds it and its PostgreSQL type."""

    column: str
    source: str
    pg_type: str


@dataclass(frozen=True)
class DimensionSpec:
    """One dimension: tables, keys, attributes and which of them are SCD2 / SCD1."""

    name: str
    table: str
    key: str
    natural_id: str
    source_table: str
    attributes: tuple[Attribute, ...]
    scd2: tuple[str, ...] = ()
    scd1: tuple[str, ...] = ()
    close_on_delete: bool = True

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(a.column for a in self.attributes)

    def fingerprint(self) -> str:
        """Changes when the SCD2/SCD1 split changes (stored hashes must then be recomputed)."""
        text = json.dumps({"v": 1, "scd2": list(self.scd2), "scd1": list(self.scd1)})
        return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - a fingerprint, not security


_VC = "varchar"
CATALOG: dict[str, DimensionSpec] = {
    "client": DimensionSpec(
        "client",
        "dim_clients",
        "client_key",
        "client_id",
        "clients",
        (
            Attribute("tenant_id", "tenant_id", "uuid"),
            Attribute("client_code", "client_code", _VC),
            Attribute("client_name", "name", _VC),
            Attribute("client_type", "client_type", _VC),
            Attribute("region", "region", _VC),
            Attribute("segment", "segment", _VC),
            Attribute("industry", "industry", _VC),
            Attribute("onboard_date", "onboard_date", "date"),
            Attribute("status", "status", _VC),
        ),
    ),
    "instrument": DimensionSpec(
        "instrument",
        "dim_instruments",
        "instrument_key",
        "instrument_id",
        "instruments",
        (
            Attribute("symbol", "symbol", _VC),
            Attribute("name", "name", _VC),
            Attribute("asset_class", "asset_class", _VC),
            Attribute("instrument_type", "instrument_type", _VC),
            Attribute("base_currency", "base_currency", _VC),
            Attribute("quote_currency", "quote_currency", _VC),
            Attribute("exchange", "exchange", _VC),
            Attribute("price_precision", "price_precision", "integer"),
            Attribute("quantity_precision", "quantity_precision", "integer"),
        ),
    ),
    "lp": DimensionSpec(
        "lp",
        "dim_liquidity_providers",
        "lp_key",
        "lp_id",
        "liquidity_providers",
        (
            Attribute("lp_code", "code", _VC),
            Attribute("lp_name", "name", _VC),
            Attribute("lp_type", "type", _VC),
            Attribute("region", "region", _VC),
            Attribute("tier", "tier", _VC),
            Attribute("is_active", "is_active", "boolean"),
        ),
    ),
}


def resolve_spec(name: str, settings: object) -> DimensionSpec:
    """The catalogue entry of `name` with the configured SCD split (validated).

    `settings` has one `ScdSplit` attribute per dimension name (`config.models.DimsSettings`).
    """
    if name not in CATALOG:
        raise ConfigError(f"unknown dimension {name!r} (expected one of {', '.join(DIMENSION_NAMES)})")
    base = CATALOG[name]
    conf: ScdSplit = getattr(settings, name)
    known = set(base.columns)
    for kind, listed in (("scd2", conf.scd2), ("scd1", conf.scd1)):
        unknown = [c for c in listed if c not in known]
        if unknown:
            raise ConfigError(
                f"dims.{name}.{kind}: unknown attribute(s) {', '.join(unknown)} "
                f"(known: {', '.join(sorted(known))})"
            )
    both = sorted(set(conf.scd2) & set(conf.scd1))
    if both:
        raise ConfigError(f"dims.{name}: {', '.join(both)} listed as both scd2 and scd1")
    scd2 = tuple(sorted(set(conf.scd2)))
    scd1 = tuple(sorted(known - set(scd2)))  # unlisted attributes are type 1
    return replace(base, scd2=scd2, scd1=scd1, close_on_delete=conf.close_on_delete)


# --- classification (the reference model: tests/scd_model.py) -------------------------------


class Action(StrEnum):
    """What applying one staged change does."""

    INSERT = "insert"
    SCD1 = "scd1"
    SCD2 = "scd2"
    CORRECT = "correct"
    CLOSE = "close"
    DELETE_FLAG = "delete_flag"
    COMPLETE = "complete"
    STALE = "stale"
    UNCHANGED = "unchanged"
    IGNORED_DELETE = "ignored_delete"
