-- Issue 15: late dimension versions re-key facts, without a race with the streaming loader.
--
-- One row per dimension: `epoch` is bumped by `dims sync` (batch, --full, --from-cdc) in the same
-- transaction that creates, back-dates, splits or closes versions and re-keys the committed facts
-- of the changed members. The loader resolves keys outside its commit transaction: it reads the
-- epoch BEFORE reading the versions, and in its commit transaction reads it again FOR SHARE. Equal:
-- no version of any member changed since (a sync that changes versions must update this row, and
-- waits for the lock until the loader commits, then re-keys the loader's facts itself). Different:
-- the loader re-keys its batch's facts set-based before committing. See docs/dimensions.md.
-- The row is updated only at the end of a sync's transaction, so the loader waits at most for the
-- re-key statements, not for the source read.
CREATE TABLE etl_dim_key_epoch (
    dimension   VARCHAR(30) PRIMARY KEY,
    epoch       BIGINT NOT NULL DEFAULT 0,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO etl_dim_key_epoch (dimension) VALUES ('client'), ('instrument'), ('lp');

-- Re-keying looks facts up by member and event time. Trades and risk snapshots have such an
-- index (idx_fact_trades_client, the primary key); orders by client did not. Instrument and LP
-- re-keys (rare: those dimensions change seldom) use the event-time indexes, bounded below by the
-- earliest changed instant.
CREATE INDEX IF NOT EXISTS idx_fact_orders_client ON fact_orders (client_id, order_date);
