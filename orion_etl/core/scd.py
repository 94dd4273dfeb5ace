"""Slowly changing dimensions: what each dimension holds and how a change is classified.

Pure: no I/O. The warehouse applies changes set-based in SQL (`orion_etl.adapters.dim_store`);
this module owns the rules that SQL implements, written once more in Python as a small reference
model (`apply_change`) so that the rules are unit- and property-tested and the SQL is checked
against them.

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
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol
from uuid import UUID

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


# --- hashing ---------------------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    if isinstance(value, UUID | date | datetime):
        return str(value) if isinstance(value, UUID) else value.isoformat()
    return value


def canonical_text(values: list[Any]) -> str:
    """The text PostgreSQL's `jsonb_build_array(v1, v2, ...)::text` gives for these values.

    Null-safe (NULL is `null`, distinct from the string 'null') and unambiguous (strings are
    quoted and escaped), so equal texts mean equal attribute values. Attributes are taken in
    sorted column order.
    """
    return json.dumps([_json_value(v) for v in values], ensure_ascii=False)


def attr_hash(values: list[Any]) -> str:
    """md5 of `canonical_text` (what the warehouse stores in scd2_hash / scd1_hash)."""
    return hashlib.md5(canonical_text(values).encode()).hexdigest()  # noqa: S324 - change detection


# --- classification and the reference model --------------------------------------------------


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


@dataclass
class Version:
    """One row of a dimension in the reference model."""

    key: int
    version: int
    valid_from: datetime
    valid_to: datetime
    is_current: bool
    attrs: dict[str, Any]
    h2: str | None
    h1: str | None
    is_inferred: bool = False
    is_deleted: bool = False
    source_updated_at: datetime | None = None


@dataclass(frozen=True)
class Change:
    """A staged change to one natural id."""

    attrs: dict[str, Any]
    change_time: datetime
    created_at: datetime | None = None
    deleted: bool = False


# PostgreSQL's 'infinity' / '-infinity' in the model.
INFINITY = datetime.max.replace(tzinfo=UTC)
MINUS_INFINITY = datetime.min.replace(tzinfo=UTC)
TICK = timedelta(microseconds=1)


def classify(
    cur: Version | None,
    change: Change,
    h2: str,
    h1: str,
    close_on_delete: bool,
    closed_at: datetime | None = None,
) -> Action:
    """The action for `change` given the current row (None when there is none; `closed_at` is then
    the end of the member's closed history, if any)."""
    if cur is None:
        if change.deleted:
            return Action.IGNORED_DELETE
        if closed_at is not None and change.change_time < closed_at:
            return Action.STALE  # a replayed change from before the member was deleted
        return Action.INSERT
    if change.deleted:
        if close_on_delete:
            return Action.CLOSE
        return Action.UNCHANGED if cur.is_deleted else Action.DELETE_FLAG
    if cur.is_inferred:
        return Action.COMPLETE
    if cur.source_updated_at is not None and change.change_time < cur.source_updated_at:
        return Action.STALE
    if cur.h2 != h2:
        return Action.SCD2 if change.change_time > cur.valid_from else Action.CORRECT
    if cur.h1 != h1 or cur.is_deleted:
        return Action.SCD1
    return Action.UNCHANGED


@dataclass
class ModelDimension:
    """An in-memory dimension applying changes with the same rules as the SQL (for tests)."""

    spec: DimensionSpec
    rows: dict[Any, list[Version]] = field(default_factory=dict)
    next_key: int = 1

    def hashes(self, attrs: dict[str, Any]) -> tuple[str, str]:
        return (
            attr_hash([attrs.get(c) for c in self.spec.scd2]),
            attr_hash([attrs.get(c) for c in self.spec.scd1]),
        )

    def add_inferred(self, natural_id: Any) -> None:
        """What the loader does for a fact whose member is unknown."""
        self.rows[natural_id] = [
            Version(self._key(), 1, MINUS_INFINITY, INFINITY, True, {}, None, None, is_inferred=True)
        ]

    def _key(self) -> int:
        self.next_key += 1
        return self.next_key - 1

    def apply_change(self, natural_id: Any, change: Change) -> Action:
        """Apply one change; returns the action taken."""
        versions = self.rows.get(natural_id, [])
        cur = next((v for v in versions if v.is_current), None)
        h2, h1 = self.hashes(change.attrs)
        closed_at = max(v.valid_to for v in versions) if versions and cur is None else None
        action = classify(cur, change, h2, h1, self.spec.close_on_delete, closed_at)
        ct = change.change_time
        if action is Action.INSERT:
            last = versions[-1] if versions else None
            start = max(ct, last.valid_to) if last else (change.created_at or ct)
            number = last.version + 1 if last else 1
            self.rows[natural_id] = versions
            versions.append(
                Version(
                    self._key(),
                    number,
                    start,
                    INFINITY,
                    True,
                    dict(change.attrs),
                    h2,
                    h1,
                    source_updated_at=ct,
                )
            )
        elif cur is None or action in (Action.STALE, Action.UNCHANGED, Action.IGNORED_DELETE):
            pass
        elif action is Action.CLOSE:
            cur.valid_to, cur.is_current, cur.is_deleted = max(ct, cur.valid_from + TICK), False, True
        elif action is Action.DELETE_FLAG:
            cur.is_deleted = True
        elif action in (Action.COMPLETE, Action.CORRECT):
            cur.attrs, cur.h2, cur.h1 = dict(change.attrs), h2, h1
            cur.is_inferred, cur.is_deleted, cur.source_updated_at = False, False, ct
        else:  # SCD1 / SCD2: type-1 attributes overwritten on every version
            for v in versions:
                if v.h1 != h1:
                    v.attrs.update({c: change.attrs.get(c) for c in self.spec.scd1})
                    v.h1 = h1
            if action is Action.SCD2:
                # A delete-flagged member changed again lives in the source: the closed version
                # is ordinary history, not "closed by a deletion" (as the warehouse SQL does).
                cur.valid_to, cur.is_current, cur.is_deleted = ct, False, False
                versions.append(
                    Version(
                        self._key(),
                        cur.version + 1,
                        ct,
                        INFINITY,
                        True,
                        dict(change.attrs),
                        h2,
                        h1,
                        source_updated_at=ct,
                    )
                )
            else:
                cur.is_deleted, cur.source_updated_at = False, ct
        return action
