-- State of `orion-etl dims sync` per dimension, updated in the same transaction as the dimension.
-- watermark: source updated_at up to which changes are known applied (incremental reads re-read
-- from watermark - lookback, processing is idempotent). spec_fingerprint: the SCD2/SCD1 split the
-- stored hashes were computed with; when the configuration changes, hashes are recomputed once
-- instead of every row looking changed.
CREATE TABLE etl_dim_sync_state (
    dimension         VARCHAR(30) PRIMARY KEY,
    watermark         TIMESTAMPTZ,
    spec_fingerprint  TEXT,
    last_full_at      TIMESTAMPTZ,
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
