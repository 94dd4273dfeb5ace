-- Positions and risk in the warehouse (issue 17, docs/aggregates.md "Realized P&L").
--
-- 1. fact_positions: the history of the source `positions` rows, ONE ROW PER CHANGE (Debezium
--    create / update / snapshot read / delete), keyed by the position and the change's source
--    position (commit LSN, LSN). A redelivered change hits the primary key and is ignored; a late
--    (older) change takes its place in the history and never becomes the current state.
--    realized_pnl_delta = the change of the position's cumulative realized_pnl made by this change
--    (relative to the position's previous change in source order; 0 for a delete; the first change
--    after a delete, or the first change ever when it is a create, counts from 0; a first change
--    that is a snapshot read is the baseline and counts 0). The loader keeps it exact when a
--    change arrives out of order (it also recomputes the following change). Period realized P&L
--    is then the sum of the deltas of the changes timed inside the period.
CREATE TABLE fact_positions (
    position_id         UUID NOT NULL,                -- source positions.id
    tenant_id           UUID NOT NULL,
    client_id           UUID NOT NULL,
    client_key          BIGINT,                       -- dim_clients version valid at changed_at
    instrument_id       UUID NOT NULL,
    instrument_key      BIGINT,                       -- dim_instruments version valid at changed_at
    changed_at          TIMESTAMPTZ NOT NULL,         -- source updated_at; a delete: its commit time
    change_date_key     INTEGER NOT NULL,             -- trading day of changed_at (YYYYMMDD)
    quantity            NUMERIC(28, 10),              -- NULL only on a delete of an unknown image
    avg_price           NUMERIC(28, 10),
    realized_pnl        NUMERIC(38, 10),              -- cumulative, as the source row had it
    unrealized_pnl      NUMERIC(38, 10),
    opened_at           TIMESTAMPTZ,
    realized_pnl_delta  NUMERIC(38, 10) NOT NULL DEFAULT 0,
    is_deleted          BOOLEAN NOT NULL DEFAULT false, -- this change deleted the source row
    src_op              CHAR(1) NOT NULL CHECK (src_op IN ('c', 'u', 'r', 'd')),
    src_origin          VARCHAR(10) NOT NULL DEFAULT 'cdc',
    src_commit_lsn      BIGINT NOT NULL,              -- -1 when the connector sends no sequence
    src_lsn             BIGINT NOT NULL,
    src_event_version   BIGINT,
    src_event_ts        TIMESTAMPTZ,
    src_topic           TEXT,
    src_partition       INTEGER,
    src_offset          BIGINT,
    loaded_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (position_id, src_commit_lsn, src_lsn)
);
-- Client metrics read (day range) -> (tenant, client, delta): an index-only scan.
CREATE INDEX idx_fact_positions_day
    ON fact_positions (change_date_key, tenant_id) INCLUDE (client_id, realized_pnl_delta, is_deleted);
CREATE INDEX idx_fact_positions_client ON fact_positions (client_id, changed_at);

CREATE TRIGGER trg_fact_positions_dirty_ins AFTER INSERT ON fact_positions
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION agg_mark_dirty_buckets('change_date_key');
CREATE TRIGGER trg_fact_positions_dirty_upd AFTER UPDATE ON fact_positions
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION agg_mark_dirty_buckets('change_date_key');
CREATE TRIGGER trg_fact_positions_dirty_del AFTER DELETE ON fact_positions
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION agg_mark_dirty_buckets('change_date_key');

-- 2. fact_risk_snapshots (V003) is loaded from `risk.snapshot` events: one row per
--    (client, snapshot time), upserted guarded by the event's position like trades, with the Kafka
--    record that last wrote it.
ALTER TABLE fact_risk_snapshots
    ADD COLUMN src_origin VARCHAR(10) NOT NULL DEFAULT 'event',
    ADD COLUMN src_commit_lsn BIGINT,
    ADD COLUMN src_lsn BIGINT,
    ADD COLUMN src_event_version BIGINT,
    ADD COLUMN src_event_ts TIMESTAMPTZ,
    ADD COLUMN src_topic TEXT,
    ADD COLUMN src_partition INTEGER,
    ADD COLUMN src_offset BIGINT,
    ADD COLUMN updated_at TIMESTAMPTZ NOT NULL DEFAULT now();
-- The point-in-time key is resolved by the loader (no per-row FK trigger, as V011 for trades).
ALTER TABLE fact_risk_snapshots DROP CONSTRAINT IF EXISTS fact_risk_snapshots_client_key_fkey;

