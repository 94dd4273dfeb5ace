-- Dimensions: surrogate keys that never change, SCD2 validity intervals [valid_from, valid_to),
-- `valid_to = 'infinity'` for the open version, at most one current version per natural key.
-- is_inferred marks members created by the loader for late-arriving facts (completed by dims sync).

CREATE TABLE dim_clients (
    client_key     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    client_id      UUID NOT NULL,
    tenant_id      UUID,
    client_code    VARCHAR(50),
    client_name    VARCHAR(200),
    client_type    VARCHAR(50),
    region         VARCHAR(50),
    segment        VARCHAR(50),
    industry       VARCHAR(100),
    onboard_date   DATE,
    status         VARCHAR(30),
    scd2_hash      TEXT,
    scd1_hash      TEXT,
    valid_from     TIMESTAMPTZ NOT NULL,
    valid_to       TIMESTAMPTZ NOT NULL DEFAULT 'infinity',
    is_current     BOOLEAN NOT NULL DEFAULT true,
    version        INTEGER NOT NULL DEFAULT 1,
    is_inferred    BOOLEAN NOT NULL DEFAULT false,
    is_deleted     BOOLEAN NOT NULL DEFAULT false,
    source_updated_at TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (valid_from < valid_to),
    UNIQUE (client_id, version)
);
CREATE UNIQUE INDEX uq_dim_clients_current ON dim_clients (client_id) WHERE is_current;
CREATE INDEX idx_dim_clients_validity ON dim_clients (client_id, valid_from, valid_to);

CREATE TABLE dim_instruments (
    instrument_key      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    instrument_id       UUID NOT NULL,
    symbol              VARCHAR(50),
    name                VARCHAR(200),
    asset_class         VARCHAR(50),
    instrument_type     VARCHAR(50),
    base_currency       VARCHAR(10),
    quote_currency      VARCHAR(10),
    exchange            VARCHAR(50),
    price_precision     INTEGER,
    quantity_precision  INTEGER,
    scd2_hash      TEXT,
    scd1_hash      TEXT,
    valid_from     TIMESTAMPTZ NOT NULL,
    valid_to       TIMESTAMPTZ NOT NULL DEFAULT 'infinity',
    is_current     BOOLEAN NOT NULL DEFAULT true,
    version        INTEGER NOT NULL DEFAULT 1,
    is_inferred    BOOLEAN NOT NULL DEFAULT false,
    is_deleted     BOOLEAN NOT NULL DEFAULT false,
    source_updated_at TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (valid_from < valid_to),
    UNIQUE (instrument_id, version)
);
CREATE UNIQUE INDEX uq_dim_instruments_current ON dim_instruments (instrument_id) WHERE is_current;
CREATE INDEX idx_dim_instruments_validity ON dim_instruments (instrument_id, valid_from, valid_to);

CREATE TABLE dim_liquidity_providers (
    lp_key         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    lp_id          UUID NOT NULL,
    lp_code        VARCHAR(50),
    lp_name        VARCHAR(200),
    lp_type        VARCHAR(50),
    region         VARCHAR(50),
    tier           VARCHAR(30),
    is_active      BOOLEAN,
    scd2_hash      TEXT,
    scd1_hash      TEXT,
    valid_from     TIMESTAMPTZ NOT NULL,
    valid_to       TIMESTAMPTZ NOT NULL DEFAULT 'infinity',
    is_current     BOOLEAN NOT NULL DEFAULT true,
    version        INTEGER NOT NULL DEFAULT 1,
    is_inferred    BOOLEAN NOT NULL DEFAULT false,
    is_deleted     BOOLEAN NOT NULL DEFAULT false,
    source_updated_at TIMESTAMPTZ,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (valid_from < valid_to),
    UNIQUE (lp_id, version)
);
CREATE UNIQUE INDEX uq_dim_lps_current ON dim_liquidity_providers (lp_id) WHERE is_current;
CREATE INDEX idx_dim_lps_validity ON dim_liquidity_providers (lp_id, valid_from, valid_to);

-- Calendar dimension, 2000-01-01 .. 2060-12-31. ISO week fields follow ISO 8601 (weeks start Monday).
CREATE TABLE dim_date (
    date_key        INTEGER PRIMARY KEY,        -- YYYYMMDD
    full_date       DATE NOT NULL UNIQUE,
    year            SMALLINT NOT NULL,
    quarter         SMALLINT NOT NULL,
    month           SMALLINT NOT NULL,
    day_of_month    SMALLINT NOT NULL,
    iso_day_of_week SMALLINT NOT NULL,          -- 1 = Monday
    iso_week        SMALLINT NOT NULL,
    iso_year        SMALLINT NOT NULL,
    week_start      DATE NOT NULL,
    month_start     DATE NOT NULL,
    quarter_start   DATE NOT NULL,
    year_start      DATE NOT NULL,
    is_weekend      BOOLEAN NOT NULL
);
INSERT INTO dim_date
SELECT to_char(d, 'YYYYMMDD')::INTEGER,
       d::DATE,
       EXTRACT(YEAR FROM d), EXTRACT(QUARTER FROM d), EXTRACT(MONTH FROM d), EXTRACT(DAY FROM d),
       EXTRACT(ISODOW FROM d), EXTRACT(WEEK FROM d), EXTRACT(ISOYEAR FROM d),
       date_trunc('week', d)::DATE, date_trunc('month', d)::DATE,
       date_trunc('quarter', d)::DATE, date_trunc('year', d)::DATE,
       EXTRACT(ISODOW FROM d) IN (6, 7)
FROM generate_series(DATE '2000-01-01', DATE '2060-12-31', INTERVAL '1 day') AS g(d);
