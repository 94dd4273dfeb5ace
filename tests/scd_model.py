"""The SCD rules written once more in Python: the reference model the tests check the SQL against.

`orion_etl.core.scd` documents the rules and `orion_etl.adapters.dim_store` applies them set-based
in SQL; nothing in the package runs this model, so it lives with the tests (unit tests of the rules,
integration tests comparing the SQL with it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from uuid import UUID

from orion_etl.core.scd import Action, DimensionSpec

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
    return hashlib.md5(canonical_text(values).encode()).hexdigest()


# --- classification and the reference model --------------------------------------------------


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
