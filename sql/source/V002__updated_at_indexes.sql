-- Incremental `dims sync` reads `WHERE updated_at >= <watermark - lookback>`: without an index each
-- run scans the whole source table (about 0.1 s per million clients), whatever the number of
-- changes. Production sources should have the same indexes (see docs/dimensions.md).
CREATE INDEX IF NOT EXISTS idx_clients_updated_at ON clients (updated_at);
CREATE INDEX IF NOT EXISTS idx_instruments_updated_at ON instruments (updated_at);
CREATE INDEX IF NOT EXISTS idx_lps_updated_at ON liquidity_providers (updated_at);
