"""Deterministic quote sampling (no randomness): the same input keeps the same quotes.

Per (topic, partition, tenant, instrument, LP) and consumer group, in offset order, a quote is kept when
  * it is the first quote ever seen for that key, or
  * `every_n` quotes have been seen since the last kept one (so every Nth is kept), or
  * its spread moved by at least `change_bps` basis points versus the last kept quote.

The state (quotes seen since the last kept one, the last kept spread) is data, not memory: the
loader stores it in `etl_quote_sampler_state` in the same transaction as the kept quotes and the
Kafka positions. A restart after a crash therefore resumes with exactly the state that matches the
committed offsets, and a full replay from empty tables keeps exactly the same quotes. Keying by
partition keeps the decision independent of which process owns which partition.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import polars as pl

SamplerKey = tuple[str, int, str, str, str]  # topic, partition, tenant_id, instrument_id, lp_id


@dataclass
class SamplerState:
    """What the sampler remembers about one key."""

    seen_since_kept: int
    last_kept_spread_bps: Decimal | None
    last_kept_offset: int


def sampler_keys(frame: pl.DataFrame) -> list[SamplerKey]:
    """Distinct sampler keys of a quote frame."""
    cols = ["_topic", "_partition", "tenant_id", "instrument_id", "lp_id"]
    return [tuple(r) for r in frame.select(cols).unique().iter_rows()]


def sample_quotes(
    frame: pl.DataFrame, state: dict[SamplerKey, SamplerState], every_n: int, change_bps: Decimal
) -> tuple[pl.DataFrame, dict[SamplerKey, SamplerState]]:
    """(kept quotes, updated state for the keys seen). `state` is not modified."""
    if frame.is_empty():
        return frame, {}
    ordered = frame.sort(["_topic", "_partition", "_offset"])
    cols = ["_topic", "_partition", "tenant_id", "instrument_id", "lp_id", "spread_bps", "_offset"]
    updated: dict[SamplerKey, SamplerState] = {}
    keep: list[bool] = []
    for topic, partition, tenant, instrument, lp, bps, offset in ordered.select(cols).iter_rows():
        key = (topic, partition, tenant, instrument, lp)
        current = updated.get(key) or state.get(key)
        if current is None or current.seen_since_kept + 1 >= every_n:
            kept = True
        elif bps is None or current.last_kept_spread_bps is None:
            kept = bps is not None
        else:
            kept = abs(bps - current.last_kept_spread_bps) >= change_bps
        if kept:
            updated[key] = SamplerState(0, bps, offset)
        else:
            assert current is not None
            updated[key] = SamplerState(
                current.seen_since_kept + 1, current.last_kept_spread_bps, current.last_kept_offset
            )
        keep.append(kept)
    return ordered.filter(pl.Series(keep, dtype=pl.Boolean)), updated
