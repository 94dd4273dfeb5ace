"""Benchmark: `dims sync` (set-based) vs the story's row-by-row approach (findOne + save per row).

    PYTHONPATH=. .venv/bin/python scripts/bench_dims.py [--rows 1000000] [--changed-pct 1] [--sample 2000]

Creates two throwaway databases on the local stack (source + warehouse), loads N clients, runs
an initial full sync, changes X% of the clients (half SCD2 segment changes, half SCD1 renames),
then times the incremental sync. The row-by-row baseline replays the story's loop on a sample of
the changed rows (one SELECT of the current row, then UPDATE + INSERT, or UPDATE, per row, each
its own transaction) and is extrapolated to all changed rows. Prints a Markdown row.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import uuid

from psycopg import sql

from orion_etl.adapters import migrations
from orion_etl.adapters.postgres import connect
from orion_etl.config.models import OrionSettings
from orion_etl.jobs.dims import sync_batch

PASSWORD = os.environ.get("ORION_STACK_PG_PASSWORD", "orion-stack-pw")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--changed-pct", type=float, default=1.0)
    parser.add_argument("--sample", type=int, default=2000)
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
        run(settings, args.rows, args.changed_pct, args.sample)
    finally:
        with connect(admin, autocommit=True) as conn:
            for db in (settings.source.dbname, settings.warehouse.dbname):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))


def run(settings: OrionSettings, rows: int, changed_pct: float, sample: int) -> None:
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
        src.execute("ANALYZE clients")
    t0 = time.perf_counter()
    sync_batch(settings, "client", full=True)
    initial_s = time.perf_counter() - t0

    changed = int(rows * changed_pct / 100)
    with connect(settings.source, autocommit=True) as src:
        src.execute(
            "UPDATE clients SET segment = CASE WHEN n %% 2 = 0 THEN 'TIER_1' ELSE segment END, "
            "name = CASE WHEN n %% 2 = 1 THEN name || ' (renamed)' ELSE name END "
            "FROM (SELECT id, row_number() OVER () AS n FROM clients TABLESAMPLE SYSTEM (5) LIMIT %s) s "
            "WHERE clients.id = s.id",
            (changed,),
        )
        ids = [
            r[0] for r in src.execute("SELECT id FROM clients WHERE updated_at > now() - interval '1 hour'")
        ]
    changed = len(ids)

    # The story's loop on a sample, BEFORE the set-based sync, on a copy of the sample's rows:
    # one query for the changed source rows, then per row findOne + save (SCD2: a transaction
    # closing the current row and inserting the next version).
    sample_ids = ids[: min(sample, changed)]
    with connect(settings.warehouse) as wh:
        wh.execute("CREATE TABLE bench_rowwise (LIKE dim_clients INCLUDING ALL)")
        wh.execute(
            "INSERT INTO bench_rowwise OVERRIDING SYSTEM VALUE "
            "SELECT * FROM dim_clients WHERE client_id = ANY(%s)",
            (sample_ids,),
        )
        wh.commit()
    with connect(settings.source) as src, connect(settings.warehouse, autocommit=True) as wh:
        t0 = time.perf_counter()
        source_rows = src.execute(
            "SELECT id, name, client_type, region, segment, industry, status FROM clients WHERE id = ANY(%s)",
            (sample_ids,),
        ).fetchall()
        for cid, name, ctype, region, segment, industry, status in source_rows:
            cur = wh.execute(
                "SELECT client_key, version, segment, region, status, client_type "
                "FROM bench_rowwise WHERE client_id = %s AND is_current LIMIT 1",
                (cid,),
            ).fetchone()
            assert cur is not None
            if (cur[2], cur[3], cur[4], cur[5]) != (segment, region, status, ctype):
                with wh.transaction():
                    wh.execute(
                        "UPDATE bench_rowwise SET is_current = false, valid_to = now() WHERE client_key = %s",
                        (cur[0],),
                    )
                    wh.execute(
                        "INSERT INTO bench_rowwise (client_id, client_name, client_type, region, segment, "
                        "industry, status, valid_from, version) "
                        "VALUES (%s, %s, %s, %s, %s, %s, %s, now(), %s)",
                        (cid, name, ctype, region, segment, industry, status, cur[1] + 1),
                    )
            else:
                wh.execute(
                    "UPDATE bench_rowwise SET client_name = %s, industry = %s WHERE client_key = %s",
                    (name, industry, cur[0]),
                )
        row_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    report = sync_batch(settings, "client", full=False)
    set_based_s = time.perf_counter() - t0
    counts = report.dimensions[0].as_dict()
    per_row = row_s / max(len(sample_ids), 1)
    extrapolated = per_row * changed
    with connect(settings.warehouse) as wh:
        pg_version = wh.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    print(f"rows={rows} changed={changed} counts={counts}")
    print(f"initial full sync: {initial_s:.2f} s")
    print(f"incremental set-based sync: {set_based_s:.2f} s")
    print(
        f"row-by-row: {per_row * 1000:.3f} ms/row on {len(sample_ids)} rows "
        f"-> {extrapolated:.1f} s extrapolated"
    )
    print(f"speed-up: {extrapolated / set_based_s:.0f}x")
    print(
        f"| {rows:,} | {changed:,} | {initial_s:.1f} s | {set_based_s:.2f} s | {extrapolated:.1f} s "
        f"({per_row * 1000:.2f} ms/row x {changed:,}) | {extrapolated / set_based_s:.0f}x | "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"PostgreSQL {pg_version} |"
    )


if __name__ == "__main__":
    main()
