-- Facts. Money and quantities are exact NUMERIC. Dimension keys reference the dimension version
-- valid at the event's time. Every fact row keeps the source position that last wrote it
-- (Debezium source.sequence = [last commit LSN, LSN] for CDC, event time + version for domain
-- events) so that an older change arriving late never overwrites a newer one.

CREATE TABLE fact_trades (
    trade_id          UUID PRIMARY KEY,               -- natural key (source trades.id / event tradeId)
    tenant_id         UUID NOT NULL,
    trade_reference   VARCHAR(100),
    order_id          UUID,
    trade_date        TIMESTAMPTZ NOT NULL,           -- execution time
    trade_date_key    INTEGER NOT NULL,               -- trading day (config: trading_day), YYYYMMDD
    settlement_date   DATE,
    client_id         UUID NOT NULL,
    client_key        BIGINT REFERENCES dim_clients (client_key),
    instrument_id     UUID NOT NULL,
    instrument_key    BIGINT REFERENCES dim_instruments (instrument_key),
    lp_id             UUID,
    lp_key            BIGINT REFERENCES dim_liquidity_providers (lp_key),
    side              VARCHAR(4) NOT NULL CHECK (side IN ('BUY', 'SELL')),
    order_type        VARCHAR(20),
    quantity          NUMERIC(28, 10) NOT NULL,
    price             NUMERIC(28, 10) NOT NULL,
    notional_value    NUMERIC(38, 10) NOT NULL,
    fees              NUMERIC(28, 10) NOT NULL DEFAULT 0,
    net_amount        NUMERIC(38, 10) NOT NULL,
    currency          VARCHAR(10),
    execution_venue   VARCHAR(50),
    fill_latency_ms   INTEGER NOT NULL DEFAULT 0,
    fill_count        INTEGER NOT NULL DEFAULT 1,
    is_partial_fill   BOOLEAN NOT NULL DEFAULT false,
    is_deleted        BOOLEAN NOT NULL DEFAULT false,
    src_origin        VARCHAR(10) NOT NULL,           -- 'cdc' | 'event'
    src_commit_lsn    BIGINT,
    src_lsn           BIGINT,
    src_event_ts      TIMESTAMPTZ,
    loaded_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_fact_trades_day ON fact_trades (trade_date_key, tenant_id);
CREATE INDEX idx_fact_trades_date ON fact_trades (trade_date);
CREATE INDEX idx_fact_trades_client ON fact_trades (client_id, trade_date);
CREATE INDEX idx_fact_trades_ref ON fact_trades (tenant_id, trade_reference);
CREATE INDEX idx_fact_trades_updated ON fact_trades (updated_at);

CREATE TABLE fact_orders (
    order_id            UUID PRIMARY KEY,
    tenant_id           UUID NOT NULL,
    order_date          TIMESTAMPTZ NOT NULL,
    order_date_key      INTEGER NOT NULL,
    client_id           UUID NOT NULL,
    client_key          BIGINT REFERENCES dim_clients (client_key),
    instrument_id       UUID,
    instrument_key      BIGINT REFERENCES dim_instruments (instrument_key),
    lp_id               UUID,
    lp_key              BIGINT REFERENCES dim_liquidity_providers (lp_key),
    order_type          VARCHAR(20),
    side                VARCHAR(4),
    final_status        VARCHAR(20) NOT NULL,
    requested_quantity  NUMERIC(28, 10) NOT NULL,
    filled_quantity     NUMERIC(28, 10) NOT NULL DEFAULT 0,
    fill_rate           NUMERIC(12, 8) NOT NULL DEFAULT 0,
    limit_price         NUMERIC(28, 10),
    avg_fill_price      NUMERIC(28, 10),
    fill_count          INTEGER NOT NULL DEFAULT 0,
    total_latency_ms    INTEGER NOT NULL DEFAULT 0,
    routing_latency_ms  INTEGER NOT NULL DEFAULT 0,
    was_rejected        BOOLEAN NOT NULL DEFAULT false,
    was_cancelled       BOOLEAN NOT NULL DEFAULT false,
    is_deleted          BOOLEAN NOT NULL DEFAULT false,
    src_origin          VARCHAR(10) NOT NULL,
    src_commit_lsn      BIGINT,
    src_lsn             BIGINT,
    src_event_ts        TIMESTAMPTZ,
    loaded_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_fact_orders_day ON fact_orders (order_date_key, tenant_id);
CREATE INDEX idx_fact_orders_date ON fact_orders (order_date);
CREATE INDEX idx_fact_orders_updated ON fact_orders (updated_at);

-- Quotes have no natural key: the Kafka coordinates of the message that produced a row identify
-- it, so redelivery and DLQ replay cannot duplicate a quote.
CREATE TABLE fact_quotes (
    tenant_id        UUID NOT NULL,
    quote_timestamp  TIMESTAMPTZ NOT NULL,
    quote_date       DATE NOT NULL,
    quote_date_key   INTEGER NOT NULL,
    instrument_id    UUID NOT NULL,
    instrument_key   BIGINT,
    lp_id            UUID NOT NULL,
    lp_key           BIGINT,
    bid_price        NUMERIC(28, 10) NOT NULL,
    ask_price        NUMERIC(28, 10) NOT NULL,
    bid_size         NUMERIC(28, 10),
    ask_size         NUMERIC(28, 10),
    mid_price        NUMERIC(28, 10) NOT NULL,
    spread           NUMERIC(28, 10) NOT NULL,
    spread_bps       NUMERIC(18, 6),
    is_stale         BOOLEAN NOT NULL DEFAULT false,
    latency_ms       INTEGER NOT NULL DEFAULT 0,
    src_topic        TEXT NOT NULL,
    src_partition    INTEGER NOT NULL,
    src_offset       BIGINT NOT NULL,
    loaded_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- includes quote_timestamp so the table can become a TimescaleDB hypertable
    UNIQUE (src_topic, src_partition, src_offset, quote_timestamp)
);
CREATE INDEX idx_fact_quotes_day ON fact_quotes (quote_date_key, tenant_id, lp_id);
CREATE INDEX idx_fact_quotes_ts ON fact_quotes (quote_timestamp);

CREATE TABLE fact_risk_snapshots (
    tenant_id           UUID NOT NULL,
    client_id           UUID NOT NULL,
    client_key          BIGINT REFERENCES dim_clients (client_key),
    snapshot_time       TIMESTAMPTZ NOT NULL,
    snapshot_date       DATE NOT NULL,
    snapshot_date_key   INTEGER NOT NULL,
    exposure            NUMERIC(38, 10),
    margin_used         NUMERIC(38, 10),
    utilization_pct     NUMERIC(9, 4),
    soft_breach_count   INTEGER NOT NULL DEFAULT 0,
    hard_breach_count   INTEGER NOT NULL DEFAULT 0,
    risk_score          NUMERIC(9, 4),
    loaded_at           TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, snapshot_time)
);
CREATE INDEX idx_fact_risk_day ON fact_risk_snapshots (snapshot_date_key, tenant_id);

-- TimescaleDB is optional: where the extension is installed, time-series facts become hypertables.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb') THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        PERFORM create_hypertable('fact_quotes', 'quote_timestamp', migrate_data => true);
        PERFORM create_hypertable('fact_risk_snapshots', 'snapshot_time', migrate_data => true);
    END IF;
END
$$;
