-- The operational (source) schema captured by Debezium, inferred from the story's queries.
-- Used by the demo and the tests; production sources already have their own.

CREATE TABLE clients (
    id            UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     UUID NOT NULL,
    client_code   VARCHAR(50) NOT NULL,
    name          VARCHAR(200) NOT NULL,
    client_type   VARCHAR(50) NOT NULL,
    region        VARCHAR(50),
    segment       VARCHAR(50),
    industry      VARCHAR(100),
    onboard_date  DATE,
    status        VARCHAR(30) NOT NULL DEFAULT 'ACTIVE',
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (tenant_id, client_code)
);

CREATE TABLE instruments (
    id                  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    symbol              VARCHAR(50) NOT NULL UNIQUE,
    name                VARCHAR(200) NOT NULL,
    asset_class         VARCHAR(50) NOT NULL,
    instrument_type     VARCHAR(50) NOT NULL,
    base_currency       VARCHAR(10),
    quote_currency      VARCHAR(10),
    exchange            VARCHAR(50),
    price_precision     INTEGER NOT NULL DEFAULT 5,
    quantity_precision  INTEGER NOT NULL DEFAULT 2,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE liquidity_providers (
    id          UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    code        VARCHAR(50) NOT NULL UNIQUE,
    name        VARCHAR(200) NOT NULL,
    type        VARCHAR(50) NOT NULL,
    region      VARCHAR(50),
    tier        VARCHAR(30),
    is_active   BOOLEAN NOT NULL DEFAULT true,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE orders (
    id                  UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id           UUID NOT NULL,
    client_id           UUID NOT NULL REFERENCES clients (id),
    instrument_id       UUID NOT NULL REFERENCES instruments (id),
    lp_id               UUID REFERENCES liquidity_providers (id),
    order_type          VARCHAR(20) NOT NULL,
    side                VARCHAR(4) NOT NULL,
    status              VARCHAR(20) NOT NULL,
    requested_quantity  NUMERIC(28, 10) NOT NULL,
    filled_quantity     NUMERIC(28, 10) NOT NULL DEFAULT 0,
    limit_price         NUMERIC(28, 10),
    avg_fill_price      NUMERIC(28, 10),
    fill_count          INTEGER NOT NULL DEFAULT 0,
    total_latency_ms    INTEGER NOT NULL DEFAULT 0,
    routing_latency_ms  INTEGER NOT NULL DEFAULT 0,
    created_at          TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at          TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE trades (
    id               UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        UUID NOT NULL,
    trade_reference  VARCHAR(100) NOT NULL,
    order_id         UUID REFERENCES orders (id),
    client_id        UUID NOT NULL REFERENCES clients (id),
    instrument_id    UUID NOT NULL REFERENCES instruments (id),
    lp_id            UUID REFERENCES liquidity_providers (id),
    trade_date       TIMESTAMPTZ NOT NULL,
    settlement_date  DATE,
    side             VARCHAR(4) NOT NULL,
    order_type       VARCHAR(20),
    quantity         NUMERIC(28, 10) NOT NULL,
    price            NUMERIC(28, 10) NOT NULL,
    fees             NUMERIC(28, 10) NOT NULL DEFAULT 0,
    currency         VARCHAR(10),
    execution_venue  VARCHAR(50),
    fill_latency_ms  INTEGER NOT NULL DEFAULT 0,
    fill_count       INTEGER NOT NULL DEFAULT 1,
    is_partial_fill  BOOLEAN NOT NULL DEFAULT false,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_trades_client ON trades (client_id, trade_date);

CREATE TABLE positions (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       UUID NOT NULL,
    client_id       UUID NOT NULL REFERENCES clients (id),
    instrument_id   UUID NOT NULL REFERENCES instruments (id),
    quantity        NUMERIC(28, 10) NOT NULL DEFAULT 0,
    avg_price       NUMERIC(28, 10),
    realized_pnl    NUMERIC(38, 10) NOT NULL DEFAULT 0,
    unrealized_pnl  NUMERIC(38, 10) NOT NULL DEFAULT 0,
    opened_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (client_id, instrument_id)
);

-- updated_at is the source change time used by incremental dimension sync: keep it honest.
CREATE FUNCTION orion_touch_updated_at() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := clock_timestamp();
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER trg_clients_touch BEFORE UPDATE ON clients FOR EACH ROW EXECUTE FUNCTION orion_touch_updated_at();
CREATE TRIGGER trg_instruments_touch BEFORE UPDATE ON instruments FOR EACH ROW EXECUTE FUNCTION orion_touch_updated_at();
CREATE TRIGGER trg_lps_touch BEFORE UPDATE ON liquidity_providers FOR EACH ROW EXECUTE FUNCTION orion_touch_updated_at();
CREATE TRIGGER trg_orders_touch BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION orion_touch_updated_at();
CREATE TRIGGER trg_trades_touch BEFORE UPDATE ON trades FOR EACH ROW EXECUTE FUNCTION orion_touch_updated_at();
CREATE TRIGGER trg_positions_touch BEFORE UPDATE ON positions FOR EACH ROW EXECUTE FUNCTION orion_touch_updated_at();
