-- Aggregation (issue 6): period rollups in agg_daily_trade_summary, mergeable sums for intraday
-- running aggregates, honest realized PnL, and dirty buckets marked by statement-level triggers.
-- See docs/aggregates.md.

-- 1. agg_daily_trade_summary holds one row per (period bucket, level, group). DAILY rows are the
--    story's daily summary; WEEKLY/MONTHLY/QUARTERLY/YEARLY rows are pre-computed rollups whose
--    trade_date is the first day of the period and period_end the exclusive end.
ALTER TABLE agg_daily_trade_summary
    ADD COLUMN period_type VARCHAR(10) NOT NULL DEFAULT 'DAILY'
        CHECK (period_type IN ('DAILY', 'WEEKLY', 'MONTHLY', 'QUARTERLY', 'YEARLY')),
    ADD COLUMN period_end DATE,
    -- exact sums behind avg_price, vwap_price and avg_latency_ms: they make rows mergeable, so
    -- intraday deltas can be added without rescanning the day and still equal a full recompute
    ADD COLUMN sum_price NUMERIC NOT NULL DEFAULT 0,
    ADD COLUMN sum_price_qty NUMERIC NOT NULL DEFAULT 0,
    ADD COLUMN sum_latency_ms NUMERIC NOT NULL DEFAULT 0;
UPDATE agg_daily_trade_summary SET period_end = trade_date + 1 WHERE period_end IS NULL;
ALTER TABLE agg_daily_trade_summary ALTER COLUMN period_end SET NOT NULL;
ALTER TABLE agg_daily_trade_summary DROP CONSTRAINT uq_agg_daily_trade_summary;
ALTER TABLE agg_daily_trade_summary ADD CONSTRAINT uq_agg_trade_summary_period UNIQUE NULLS NOT DISTINCT
    (tenant_id, period_type, trade_date, aggregation_level, client_id, instrument_id, lp_id);
DROP INDEX IF EXISTS idx_agg_daily_summary_date;
CREATE INDEX idx_agg_trade_summary_bucket
    ON agg_daily_trade_summary (period_type, trade_date, aggregation_level);

-- 2. The warehouse has no positions fact, and period realized PnL cannot be derived from one
--    period's trades (it needs the cost basis of positions opened earlier). NULL means "not
--    available" instead of a misleading 0 or the story's all-time sum.
ALTER TABLE agg_client_metrics ALTER COLUMN realized_pnl DROP NOT NULL;
ALTER TABLE agg_client_metrics ALTER COLUMN realized_pnl DROP DEFAULT;
CREATE INDEX idx_agg_client_metrics_bucket ON agg_client_metrics (period_type, metric_date);
CREATE INDEX idx_agg_lp_performance_bucket ON agg_lp_performance (period_type, metric_date);

-- 3. Intraday watermark: the id of the transaction that inserted each trade. Existing rows keep
--    NULL (no table rewrite) and count as "already aggregated" once a first full run happened.
ALTER TABLE fact_trades ADD COLUMN load_xid xid8;
ALTER TABLE fact_trades ALTER COLUMN load_xid SET DEFAULT pg_current_xact_id();
CREATE INDEX idx_fact_trades_load_xid ON fact_trades (load_xid);

-- The snapshot of the last intraday run: trades whose inserting transaction is visible now but
-- was not visible in this snapshot are exactly the ones loaded since (no clock skew, no
-- long-transaction gap as with a loaded_at timestamp watermark).
CREATE TABLE agg_intraday_state (
    name        TEXT PRIMARY KEY,
    snapshot    pg_snapshot NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- 4. Dirty buckets: an append-only log written by statement-level triggers (one INSERT of the
--    distinct touched buckets per statement, never per row). `aggregate --intraday` claims the
--    rows visible to it (DELETE ... RETURNING in its own transaction) and recomputes exactly those
--    buckets; rows committed later stay for the next run. Appends never conflict, so loaders never
--    wait on the aggregator.
CREATE TABLE agg_dirty_buckets (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    period_type   VARCHAR(10) NOT NULL
        CHECK (period_type IN ('DAILY', 'WEEKLY', 'MONTHLY', 'QUARTERLY', 'YEARLY')),
    period_start  DATE NOT NULL,
    source_table  VARCHAR(100) NOT NULL,
    op            VARCHAR(10) NOT NULL CHECK (op IN ('INSERT', 'UPDATE', 'DELETE', 'RECOMPUTE')),
    marked_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_agg_dirty_buckets_period ON agg_dirty_buckets (period_type, period_start);

-- First day of the period bucket containing `day` (ISO weeks start on Monday).
CREATE FUNCTION agg_bucket_start(period_type TEXT, day DATE) RETURNS DATE
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE period_type
        WHEN 'DAILY' THEN day
        WHEN 'WEEKLY' THEN date_trunc('week', day::timestamp)::date
        WHEN 'MONTHLY' THEN date_trunc('month', day::timestamp)::date
        WHEN 'QUARTERLY' THEN date_trunc('quarter', day::timestamp)::date
        WHEN 'YEARLY' THEN date_trunc('year', day::timestamp)::date
    END
$$;

-- Statement-level trigger body: TG_ARGV[0] names the fact's trading-day key column (YYYYMMDD).
CREATE FUNCTION agg_mark_dirty_buckets() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    keycol TEXT := TG_ARGV[0];
    days   TEXT;
BEGIN
    days := CASE TG_OP
        WHEN 'INSERT' THEN format('SELECT %I AS k FROM new_rows', keycol)
        WHEN 'DELETE' THEN format('SELECT %I AS k FROM old_rows', keycol)
        -- a correction may move a fact to another day: both days are touched
        ELSE format('SELECT %1$I AS k FROM old_rows UNION SELECT %1$I FROM new_rows', keycol)
    END;
    EXECUTE format(
        'INSERT INTO agg_dirty_buckets (period_type, period_start, source_table, op)
         SELECT DISTINCT p.period_type, agg_bucket_start(p.period_type, to_date(d.k::text, %L)), %L, %L
         FROM (SELECT DISTINCT k FROM (%s) x) d
         CROSS JOIN (VALUES (%L), (%L), (%L), (%L), (%L)) p (period_type)',
        'YYYYMMDD', TG_TABLE_NAME, TG_OP, days,
        'DAILY', 'WEEKLY', 'MONTHLY', 'QUARTERLY', 'YEARLY');
    RETURN NULL;
END
$$;

CREATE TRIGGER trg_fact_trades_dirty_ins AFTER INSERT ON fact_trades
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION agg_mark_dirty_buckets('trade_date_key');
CREATE TRIGGER trg_fact_trades_dirty_upd AFTER UPDATE ON fact_trades
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION agg_mark_dirty_buckets('trade_date_key');
CREATE TRIGGER trg_fact_trades_dirty_del AFTER DELETE ON fact_trades
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION agg_mark_dirty_buckets('trade_date_key');

CREATE TRIGGER trg_fact_orders_dirty_ins AFTER INSERT ON fact_orders
    REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION agg_mark_dirty_buckets('order_date_key');
CREATE TRIGGER trg_fact_orders_dirty_upd AFTER UPDATE ON fact_orders
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION agg_mark_dirty_buckets('order_date_key');
CREATE TRIGGER trg_fact_orders_dirty_del AFTER DELETE ON fact_orders
    REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION agg_mark_dirty_buckets('order_date_key');

-- Quotes and risk snapshots feed LP performance and client metrics. TimescaleDB hypertables do
-- not support transition tables; there the buckets of those two tables are not marked (documented).
DO $$
DECLARE
    t RECORD;
BEGIN
    FOR t IN SELECT * FROM (VALUES ('fact_quotes', 'quote_date_key'), ('fact_risk_snapshots', 'snapshot_date_key')) v (tbl, keycol)
    LOOP
        IF to_regclass('timescaledb_information.hypertables') IS NOT NULL THEN
            IF EXISTS (SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_name = t.tbl) THEN
                CONTINUE;
            END IF;
        END IF;
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %I REFERENCING NEW TABLE AS new_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION agg_mark_dirty_buckets(%L)',
                       'trg_' || t.tbl || '_dirty_ins', t.tbl, t.keycol);
        EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %I REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION agg_mark_dirty_buckets(%L)',
                       'trg_' || t.tbl || '_dirty_upd', t.tbl, t.keycol);
        EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %I REFERENCING OLD TABLE AS old_rows
                        FOR EACH STATEMENT EXECUTE FUNCTION agg_mark_dirty_buckets(%L)',
                       'trg_' || t.tbl || '_dirty_del', t.tbl, t.keycol);
    END LOOP;
END
$$;
