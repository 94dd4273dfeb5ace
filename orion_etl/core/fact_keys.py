"""Which fact columns hold point-in-time dimension keys: the registry that re-keying and checks use.

A fact row references the dimension version valid at its event time. When a dimension version is
created, back-dated, split or closed after facts were loaded (a late `dims sync`, an inferred
member completed into several versions), those facts must be re-keyed; `dims check` and the
`fact_keys_point_in_time` audit rule count the ones that are not. Both walk this registry, so a
new keyed fact (e.g. positions) only has to `register` its columns once, at import time of the
module that loads it, and is then re-keyed and checked like the others.

Pure: no I/O. The SQL lives in `orion_etl.adapters.fact_rekey`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from orion_etl.core.fact_model import FACT_MODELS
from orion_etl.core.scd import CATALOG

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class FactKeyRef:
    """One dimension key column of one fact table.

    `natural_column` holds the member's natural id, `time_column` the event time the version is
    chosen by, `key_column` the surrogate key; `row_id` names the columns that identify a row in
    samples (the primary key, or the Kafka coordinates for facts without one).
    """

    fact_table: str
    dimension: str  # client | instrument | lp (a key of orion_etl.core.scd.CATALOG)
    key_column: str
    natural_column: str
    time_column: str
    row_id: tuple[str, ...]

    @property
    def dimension_table(self) -> str:
        return CATALOG[self.dimension].table

    @property
    def dimension_key(self) -> str:
        return CATALOG[self.dimension].key

    @property
    def dimension_natural_id(self) -> str:
        return CATALOG[self.dimension].natural_id

    @property
    def label(self) -> str:
        return f"{self.fact_table}.{self.key_column}"


_REGISTRY: dict[tuple[str, str], FactKeyRef] = {}


def register(ref: FactKeyRef) -> FactKeyRef:
    """Add (or replace) a keyed fact column; returns it. Idempotent for the same reference."""
    if ref.dimension not in CATALOG:
        raise ValueError(f"unknown dimension {ref.dimension!r} for {ref.label}")
    names = (ref.fact_table, ref.key_column, ref.natural_column, ref.time_column, *ref.row_id)
    bad = [n for n in names if not _IDENTIFIER.fullmatch(n)]
    if bad:
        raise ValueError(f"{ref.label}: not a plain lower-case SQL identifier: {', '.join(bad)}")
    _REGISTRY[(ref.fact_table, ref.key_column)] = ref
    return ref


def registered(dimension: str | None = None) -> list[FactKeyRef]:
    """The registered key columns (of one dimension), in a stable order."""
    refs = sorted(_REGISTRY.values(), key=lambda r: (r.fact_table, r.key_column))
    return [r for r in refs if dimension is None or r.dimension == dimension]


def refs_for_table(fact_table: str) -> list[FactKeyRef]:
    """The key columns of one fact table."""
    return [r for r in registered() if r.fact_table == fact_table]


def _q(name: str) -> str:
    """A registered (validated, lower-case) identifier, quoted."""
    return f'"{name}"'


def point_in_time_sql(ref: FactKeyRef, alias: str = "t") -> str:
    """SQL expression: the key of the version of `alias`'s member valid at `alias`'s event time.

    The loader's rule (`orion_etl.core.dimension_keys`): the highest version with
    `valid_from <= time`, else (a fact older than every version) the first version; NULL when the
    member has no row. Two index-only probes of the `(natural id, valid_from) INCLUDE (key,
    version)` index. Identifiers come from the validated registry, so the text is safe to compose.
    """
    dim, key, nat = _q(ref.dimension_table), _q(ref.dimension_key), _q(ref.dimension_natural_id)
    member, at = f"{_q(alias)}.{_q(ref.natural_column)}", f"{_q(alias)}.{_q(ref.time_column)}"
    return (
        f"coalesce((SELECT d.{key} FROM {dim} d WHERE d.{nat} = {member} AND d.valid_from <= {at} "
        f"ORDER BY d.valid_from DESC, d.version DESC LIMIT 1), "
        f"(SELECT d.{key} FROM {dim} d WHERE d.{nat} = {member} ORDER BY d.valid_from, d.version LIMIT 1))"
    )


def mismatch_predicate(ref: FactKeyRef, alias: str = "t") -> str:
    """SQL predicate TRUE on a fact row whose key is not the version valid at its event time."""
    member, key = f"{_q(alias)}.{_q(ref.natural_column)}", f"{_q(alias)}.{_q(ref.key_column)}"
    return f"({member} IS NOT NULL AND {key} IS DISTINCT FROM {point_in_time_sql(ref, alias)})"


for _model in FACT_MODELS.values():  # every keyed column of the fact model
    for _dim in _model.dims:
        register(
            FactKeyRef(
                _model.table, _dim.dimension, _dim.key_column, _dim.column, _model.time_column, _model.row_id
            )
        )
