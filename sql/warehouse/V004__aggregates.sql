-- Aggregates. Optional dimensions are NULL at levels that do not group by them; the unique keys
-- use NULLS NOT DISTINCT (PostgreSQL 15) so upserts work without COALESCE expression indexes.

CREATE TABLE agg_daily_trade_summary (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id           UUID NOT NULL,
    trade_date          DATE NOT NULL,
    trade_date_key      INTEGER NOT NULL,
    aggregation_level   VARCHAR(20) NOT NULL
        CHECK (aggregation_level IN ('TENANT', 'CLIENT', 'INSTRUMENT', 'LP', 'CLIENT_INSTRUMENT')),
    client_id           UUID,
    instrument_id       UUID,
    lp_id               UUID,
    trade_count         BIGINT NOT NULL,
    buy_count           BIGINT NOT NULL,
    sell_count          BIGINT NOT NULL,
    total_volume        NUMERIC(38, 10) NOT NULL,
    buy_volume          NUMERIC(38, 10) NOT NULL,
    sell_volume         NUMERIC(38, 10) NOT NULL,
    total_notional      NUMERIC(38, 10) NOT NULL,
    total_fees          NUMERIC(38, 10) NOT NULL,
    avg_price           NUMERIC(28, 10),
    vwap_price          NUMERIC(28, 10),
    min_price           NUMERIC(28, 10),
    max_price           NUMERIC(28, 10),
    avg_latency_ms      NUMERIC(18, 4),
    max_latency_ms      INTEGER,
    is_final            BOOLEAN NOT NULL DEFAULT false,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT uq_agg_daily_trade_summary UNIQUE NULLS NOT DISTINCT
        (tenant_id, trade_date, aggregation_level, client_id, instrument_id, lp_id)
);
CREATE INDEX idx_agg_daily_summary_date ON agg_daily_trade_summary (trade_date, aggregation_level);

CREATE TABLE agg_client_metrics (
    id                  BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id           UUID NOT NULL,
    client_id           UUID NOT NULL,
    metric_date         DATE NOT NULL,            -- first day of the period
    period_type         VARCHAR(10) NOT NULL
        CHECK (period_type IN ('DAILY', 'WEEKLY', 'MONTHLY', 'QUARTERLY', 'YEARLY')),
    period_end          DATE NOT NULL,            -- exclusive
    trading_days        INTEGER NOT NULL,
    total_trades        BIGINT NOT NULL,
    unique_instruments  INTEGER NOT NULL,
    total_volume        NUMERIC(38, 10) NOT NULL,
    total_notional      NUMERIC(38, 10) NOT NULL,
    avg_trade_size      NUMERIC(38, 10),
    total_fees          NUMERIC(38, 10) NOT NULL,
    realized_pnl        NUMERIC(38, 10) NOT NULL DEFAULT 0,
    avg_utilization     NUMERIC(9, 4) NOT NULL DEFAULT 0,
    max_utilization     NUMERIC(9, 4) NOT NULL DEFAULT 0,
    breach_count        INTEGER NOT NULL DEFAULT 0,
    risk_score          NUMERIC(9, 4),
    engagement_score    NUMERIC(9, 6) NOT NULL,
    notional_rank       INTEGER,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT uq_agg_client_metrics UNIQUE (tenant_id, client_id, metric_date, period_type)
);

CREATE TABLE agg_lp_performance (
    id                      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant_id               UUID NOT NULL,
    lp_id                   UUID NOT NULL,
    instrument_id           UUID,                 -- NULL: the LP over all instruments
    metric_date             DATE NOT NULL,
    period_type             VARCHAR(10) NOT NULL
        CHECK (period_type IN ('DAILY', 'WEEKLY', 'MONTHLY', 'QUARTERLY', 'YEARLY')),
    period_end              DATE NOT NULL,
    quote_count             BIGINT NOT NULL DEFAULT 0,
    avg_spread              NUMERIC(28, 10),
    avg_spread_bps          NUMERIC(18, 6),
    quote_availability_pct  NUMERIC(9, 4),
    avg_latency_ms          NUMERIC(18, 4),
    trade_count             BIGINT NOT NULL DEFAULT 0,
    total_notional          NUMERIC(38, 10) NOT NULL DEFAULT 0,
    order_count             BIGINT NOT NULL DEFAULT 0,
    fill_rate               NUMERIC(12, 8),
    rejection_count         BIGINT NOT NULL DEFAULT 0,
    overall_rank            INTEGER,
    performance_score       NUMERIC(12, 8),
    created_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at              TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT uq_agg_lp_performance UNIQUE NULLS NOT DISTINCT
        (tenant_id, lp_id, instrument_id, metric_date, period_type)
);
