-- The streaming loader resolves every dimension key in the same transaction that writes the fact
-- (a point-in-time lookup, or an inferred member it inserts first), and dimension rows are never
-- deleted (SCD2 closes versions, inferred members are completed in place). The per-row foreign-key
-- triggers therefore only re-check what the loader guarantees, and cost about a third of the fact
-- upsert time (measured: 37 of 116 ms per 5,000 trades). Referential integrity stays audited by the
-- data-quality `relationships` rules. Kimball's usual practice: keys enforced by the ETL.
ALTER TABLE fact_trades DROP CONSTRAINT IF EXISTS fact_trades_client_key_fkey;
ALTER TABLE fact_trades DROP CONSTRAINT IF EXISTS fact_trades_instrument_key_fkey;
ALTER TABLE fact_trades DROP CONSTRAINT IF EXISTS fact_trades_lp_key_fkey;
ALTER TABLE fact_orders DROP CONSTRAINT IF EXISTS fact_orders_client_key_fkey;
ALTER TABLE fact_orders DROP CONSTRAINT IF EXISTS fact_orders_instrument_key_fkey;
ALTER TABLE fact_orders DROP CONSTRAINT IF EXISTS fact_orders_lp_key_fkey;
-- Point-in-time lookups read (natural id, valid_from) and the key; covering indexes make them
-- index-only scans.
CREATE INDEX IF NOT EXISTS idx_dim_clients_pit ON dim_clients (client_id, valid_from) INCLUDE (client_key, version);
CREATE INDEX IF NOT EXISTS idx_dim_instruments_pit
    ON dim_instruments (instrument_id, valid_from) INCLUDE (instrument_key, version);
CREATE INDEX IF NOT EXISTS idx_dim_lps_pit ON dim_liquidity_providers (lp_id, valid_from) INCLUDE (lp_key, version);
