"""Benchmark: `dims sync` (set-based) vs the story's row-by-row `syncClientDimension`, side by side.

    PYTHONPATH=. .venv/bin/python scripts/bench_dims.py [--rows 1000000] [--changed-pct 1]
        [--sample 0] [--profile] [--db-rtt-ms 0.5]

Creates two throwaway databases on the local stack (source + warehouse), loads N clients, runs
the initial `dims sync --full`, copies the resulting dimension into `bench_rowwise` (same rows,
same indexes) for the baseline, vacuums both (as autovacuum would have between two runs), then
changes X% of the clients (half SCD2 segment changes, half SCD1 renames) and, on the same data:

* baseline: the story's loop, statement for statement as TypeORM sends them (see `baseline`),
  over loopback psycopg: the most favourable case for it (no network latency, no ORM overhead);
  on every changed row, or on the first `--sample` rows and extrapolated linearly;
* set-based: the incremental `dims sync`, end to end (locks, job ledger, source COPY, apply,
  watermark, commit); `--profile` prints the time of every statement it sends.

With --db-rtt-ms X, both the baseline and the incremental sync reach PostgreSQL through a relay
that adds X ms to every round trip (scripts/netdelay.py; a userspace delay, this kernel has no
netem): the same data, both approaches, one run. Setup (load, initial sync, copies) stays on
loopback.

Prints the figures and a Markdown row for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.types.datetime import TimestamptzLoader

from orion_etl.adapters import dim_store, jobruns, migrations
from orion_etl.adapters.postgres import connect
from orion_etl.config.models import OrionSettings
from orion_etl.jobs import dims as dims_job
from orion_etl.jobs.dims import sync_batch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from netdelay import calibrated_port

PASSWORD = os.environ.get("ORION_STACK_PG_PASSWORD", "orion-stack-pw")
SCD2 = ("segment", "region", "status", "client_type")  # the story's checkScd2Changes for clients
COLUMNS = (
    "client_key, client_id, tenant_id, client_code, client_name, client_type, region, segment, industry, "
    "onboard_date, status, scd2_hash, scd1_hash, valid_from, valid_to, is_current, version, is_inferred, "
    "is_deleted, source_updated_at, created_at, updated_at"
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--changed-pct", type=float, default=1.0)
    parser.add_argument("--sample", type=int, default=0, help="baseline on this many rows (0: all)")
    parser.add_argument("--profile", action="store_true", help="time every statement of the sync")
    parser.add_argument(
        "--db-rtt-ms", type=float, default=0.0, help="add this to every PostgreSQL round trip"
    )
    args = parser.parse_args()

    suffix = uuid.uuid4().hex[:6]
    settings = OrionSettings(
        source={"dbname": f"orion_bench_src_{suffix}", "password": PASSWORD},
        warehouse={"dbname": f"orion_bench_wh_{suffix}", "password": PASSWORD},
    )
    admin = settings.warehouse.model_copy(update={"dbname": "postgres"})
    with connect(admin, autocommit=True) as conn:
        for db in (settings.source.dbname, settings.warehouse.dbname):
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    try:
        run(settings, args.rows, args.changed_pct, args.sample, args.profile, args.db_rtt_ms)
    finally:
        with connect(admin, autocommit=True) as conn:
            for db in (settings.source.dbname, settings.warehouse.dbname):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))


def baseline(wh: psycopg.Connection, src_row: tuple[Any, ...]) -> str:
    """The story's `syncClientDimension` for one source row, as TypeORM talks to PostgreSQL.

    `findOne` (1 round trip); SCD2: `dataSource.transaction` = BEGIN, `save(current)` (TypeORM
    loads the row by primary key to diff it, then UPDATEs the changed columns), `save(newVersion)`
    (INSERT ... RETURNING the generated columns), COMMIT: 6 round trips. SCD1: `repository.save`
    (its own transaction: BEGIN, SELECT by primary key, UPDATE, COMMIT): 5 round trips. `wh` is
    in autocommit mode so that psycopg sends exactly these statements, the transactions being
    TypeORM's explicit ones.
    """
    cid, _tenant, _code, name, ctype, region, segment, industry, _onboard, status = src_row
    cur = wh.execute(
        f"SELECT {COLUMNS} FROM bench_rowwise WHERE client_id = %s AND is_current = true LIMIT 1",
        (cid,),
    ).fetchone()
    if cur is None:
        raise RuntimeError(f"client {cid} missing from bench_rowwise")
    key, version = cur[0], cur[16]
    current = dict(
        zip(("client_type", "region", "segment", "status"), (cur[5], cur[6], cur[7], cur[10]), strict=True)
    )
    source = {"client_type": ctype, "region": region, "segment": segment, "status": status}
    if any(current[c] != source[c] for c in SCD2):
        wh.execute("BEGIN")
        wh.execute(f"SELECT {COLUMNS} FROM bench_rowwise WHERE client_key IN (%s)", (key,))
        wh.execute(
            "UPDATE bench_rowwise SET valid_to = %s, is_current = %s, updated_at = CURRENT_TIMESTAMP "
            "WHERE client_key IN (%s)",
            (datetime.now().astimezone(), False, key),
        )
        wh.execute(
            "INSERT INTO bench_rowwise (client_id, tenant_id, client_code, client_name, client_type, region, "
            "segment, industry, onboard_date, status, valid_from, valid_to, is_current, version, "
            "is_inferred, is_deleted) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, 'infinity', true, %s, false, false) "
            "RETURNING client_key, created_at, updated_at",
            (*src_row, datetime.now().astimezone() + timedelta(microseconds=1), version + 1),
        ).fetchone()
        wh.execute("COMMIT")
        return "scd2"
    if (cur[4], cur[8]) != (name, industry):
        wh.execute("BEGIN")
        wh.execute(f"SELECT {COLUMNS} FROM bench_rowwise WHERE client_key IN (%s)", (key,))
        wh.execute(
            "UPDATE bench_rowwise SET client_name = %s, industry = %s, updated_at = CURRENT_TIMESTAMP "
            "WHERE client_key IN (%s)",
            (name, industry, key),
        )
        wh.execute("COMMIT")
        return "scd1"
    return "unchanged"


class InfinityLoader(TimestamptzLoader):
    """'infinity' as datetime.max (node-postgres gives Infinity; psycopg would raise)."""

    def load(self, data: Any) -> datetime:
        if bytes(data) in (b"infinity", b"-infinity"):
            return datetime.max if bytes(data) == b"infinity" else datetime.min
        return super().load(data)


Timings = list[tuple[float, str]]


@contextlib.contextmanager
def statement_timer(timings: Timings) -> Iterator[None]:
    """Record the duration of every statement, COPY and commit psycopg runs inside the block."""
    execute, commit, copy_in = psycopg.Connection.execute, psycopg.Connection.commit, dim_store.copy_in_stage

    def timed_execute(self: psycopg.Connection, query: Any, params: Any = None, **kw: Any) -> Any:
        t = time.perf_counter()
        try:
            return execute(self, query, params, **kw)
        finally:
            text = query.as_string(self) if hasattr(query, "as_string") else str(query)
            timings.append((time.perf_counter() - t, " ".join(text.split())[:90]))

    def timed_commit(self: psycopg.Connection) -> None:
        t = time.perf_counter()
        commit(self)
        if not self.autocommit:
            timings.append((time.perf_counter() - t, "COMMIT"))

    @contextlib.contextmanager
    def timed_connect(settings: Any, **kw: Any) -> Iterator[psycopg.Connection]:
        t = time.perf_counter()
        with connect(settings, **kw) as conn:
            timings.append((time.perf_counter() - t, f"connect to {settings.dbname} {kw or ''}"))
            yield conn

    def timed_copy_in(*args: Any, **kw: Any) -> None:
        t = time.perf_counter()
        copy_in(*args, **kw)
        timings.append((time.perf_counter() - t, "COPY source -> _dim_stage (both sides, streamed)"))

    psycopg.Connection.execute = timed_execute  # type: ignore[method-assign]
    psycopg.Connection.commit = timed_commit  # type: ignore[method-assign]
    dims_job.dim_store.copy_in_stage = timed_copy_in  # type: ignore[assignment]
    dims_job.connect = jobruns.connect = timed_connect  # type: ignore[assignment]
    try:
        yield
    finally:
        psycopg.Connection.execute = execute  # type: ignore[method-assign]
        psycopg.Connection.commit = commit  # type: ignore[method-assign]
        dims_job.dim_store.copy_in_stage = copy_in  # type: ignore[assignment]
        dims_job.connect = jobruns.connect = connect


def run(
    settings: OrionSettings, rows: int, changed_pct: float, sample: int, profile: bool, db_rtt_ms: float
) -> None:
    for target, pg in (("warehouse", settings.warehouse), ("source", settings.source)):
        with connect(pg, autocommit=True) as conn:
            migrations.migrate(conn, target)
    with connect(settings.source, autocommit=True) as src:
        src.execute(
            "INSERT INTO clients (tenant_id, client_code, name, client_type, region, segment, industry, "
            "onboard_date, status, created_at, updated_at) "
            "SELECT '00000000-0000-0000-0000-000000000001', 'C' || g, 'Client ' || g, 'INSTITUTIONAL', "
            "'EMEA', 'TIER_2', 'Banking', DATE '2020-01-01', 'ACTIVE', now() - interval '30 days', "
            "now() - interval '1 day' - g * interval '1 second' FROM generate_series(1, %s) g",
            (rows,),
        )
        src.execute("VACUUM ANALYZE clients")
    t0 = time.perf_counter()
    sync_batch(settings, "client", full=True)
    initial_s = time.perf_counter() - t0

    with connect(settings.warehouse, autocommit=True) as wh:
        wh.execute("CREATE TABLE bench_rowwise (LIKE dim_clients INCLUDING ALL)")
        wh.execute("INSERT INTO bench_rowwise OVERRIDING SYSTEM VALUE SELECT * FROM dim_clients")
        wh.execute(
            "SELECT setval(pg_get_serial_sequence('bench_rowwise', 'client_key'), "
            "(SELECT max(client_key) FROM bench_rowwise))"
        )
        wh.execute("VACUUM ANALYZE dim_clients")
        wh.execute("VACUUM ANALYZE bench_rowwise")
        watermark = wh.execute(
            "SELECT watermark FROM etl_dim_sync_state WHERE dimension = 'client'"
        ).fetchone()
    assert watermark is not None and watermark[0] is not None
    since = watermark[0] - timedelta(seconds=settings.dims.lookback_s)

    changed = int(rows * changed_pct / 100)
    with connect(settings.source, autocommit=True) as src:
        src.execute(
            "UPDATE clients SET segment = CASE WHEN n %% 2 = 0 THEN 'TIER_1' ELSE segment END, "
            "name = CASE WHEN n %% 2 = 1 THEN name || ' (renamed)' ELSE name END "
            "FROM (SELECT id, row_number() OVER () AS n "
            "      FROM (SELECT id FROM clients ORDER BY random() LIMIT %s) r) s "
            "WHERE clients.id = s.id",
            (changed,),
        )

    with contextlib.ExitStack() as stack:
        model: dict[str, float] = {}
        measured = settings
        if db_rtt_ms > 0:
            port, model = stack.enter_context(
                calibrated_port(settings.warehouse, db_rtt_ms, max_seconds=1800)
            )
            print("delay model: " + ", ".join(f"{k} {v:.3f}" for k, v in model.items()))
            measured = settings.model_copy(
                update={
                    "warehouse": settings.warehouse.model_copy(update={"port": port}),
                    "source": settings.source.model_copy(update={"port": port}),
                }
            )
        compare(measured, rows, changed, sample, profile, since, initial_s, model)


def compare(
    settings: OrionSettings,
    rows: int,
    changed: int,
    sample: int,
    profile: bool,
    since: datetime,
    initial_s: float,
    model: dict[str, float],
) -> None:
    """The two approaches on the same changes, baseline first."""
    # Baseline: the story's query for the changed rows (same window as the incremental sync),
    # then syncClientDimension per row.
    outcomes: dict[str, int] = {}
    with connect(settings.source) as src, connect(settings.warehouse, autocommit=True) as wh:
        wh.adapters.register_loader("timestamptz", InfinityLoader)
        t0 = time.perf_counter()
        source_rows = src.execute(
            "SELECT id, tenant_id, client_code, name, client_type, region, segment, industry, onboard_date, "
            "status FROM clients WHERE updated_at >= %s",
            (since,),
        ).fetchall()
        todo = source_rows[:sample] if sample else source_rows
        for row in todo:
            outcome = baseline(wh, row)
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
        row_s = time.perf_counter() - t0
    per_row = row_s / max(len(todo), 1)
    row_total = per_row * len(source_rows)

    timings: Timings = []
    with statement_timer(timings) if profile else contextlib.nullcontext():
        t0 = time.perf_counter()
        report = sync_batch(settings, "client", full=False)
        set_based_s = time.perf_counter() - t0
    counts = {k: v for k, v in report.dimensions[0].as_dict().items() if v}
    with connect(settings.warehouse) as wh:
        pg_version = wh.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]

    for seconds, what in timings:
        print(f"{seconds * 1000:9.1f} ms  {what}")
    if timings:
        print(f"{sum(s for s, _ in timings) * 1000:9.1f} ms  (sum of statements)")
    ratio = row_total / set_based_s
    how = "all rows" if len(todo) == len(source_rows) else f"sample {len(todo):,}, extrapolated"
    print(f"rows={rows:,} read={len(source_rows):,} counts={counts}")
    print(f"baseline outcomes ({how}): {outcomes}")
    print(f"initial full sync: {initial_s:.2f} s")
    print(f"incremental set-based sync: {set_based_s:.3f} s")
    print(f"row-by-row: {per_row * 1000:.3f} ms/row -> {row_total:.2f} s ({how})")
    print(f"speed-up: {ratio:.1f}x")
    if model:
        print(
            f"network: +{model['added_rtt_ms']:.3f} ms per round trip measured "
            f"({model['direct_rtt_ms']:.3f} -> {model['relayed_rtt_ms']:.3f} ms)"
        )
    print(
        f"| {rows:,} | {changed:,} ({changed * 100 / rows:g}%) | {initial_s:.1f} s | {set_based_s:.2f} s | "
        f"{row_total:.1f} s ({per_row * 1000:.2f} ms/row x {len(source_rows):,}, {how}) | {ratio:.0f}x | "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"PostgreSQL {pg_version} |"
    )


if __name__ == "__main__":
    main()
