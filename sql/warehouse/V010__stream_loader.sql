-- Streaming loader (orion-etl stream): ordering positions of domain events, versioned delete
-- tombstones and the reproducible state of deterministic quote sampling.

-- Domain events are ordered by (event version, event time): the version is the producer's
-- per-entity sequence (e.g. an amended trade is version 2). CDC rows leave it NULL.
ALTER TABLE fact_trades ADD COLUMN src_event_version BIGINT;
ALTER TABLE fact_orders ADD COLUMN src_event_version BIGINT;
-- The Kafka record that last wrote a fact row (lineage for support and DLQ replay).
ALTER TABLE fact_trades ADD COLUMN src_kafka JSONB;
ALTER TABLE fact_orders ADD COLUMN src_kafka JSONB;

-- A delete (Debezium op=d) is kept as a versioned tombstone, whether or not the fact row exists
-- yet, so that an older create/update arriving after it can never resurrect the row. The fact
-- row itself (when it exists) is soft-deleted (is_deleted = true) with the delete's position.
CREATE TABLE etl_fact_tombstones (
    fact_table         TEXT        NOT NULL,   -- 'fact_trades' | 'fact_orders'
    natural_key        UUID        NOT NULL,
    src_origin         VARCHAR(10) NOT NULL,
    src_commit_lsn     BIGINT,
    src_lsn            BIGINT,
    src_event_version  BIGINT,
    src_event_ts       TIMESTAMPTZ,
    deleted_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (fact_table, natural_key)
);

-- Quote sampling state per (consumer group, topic, partition, tenant, instrument, LP): how many quotes were seen
-- since the last kept one and that quote's spread. It is written in the same transaction as the
-- kept quotes and the Kafka positions, so a restart continues with exactly the state of the
-- last committed batch and the same input always keeps the same quotes (also for a replay by
-- another consumer group, which starts from its own empty state).
CREATE TABLE etl_quote_sampler_state (
    consumer_group        TEXT    NOT NULL,
    topic                 TEXT    NOT NULL,
    partition             INTEGER NOT NULL,
    tenant_id             UUID    NOT NULL,
    instrument_id         UUID    NOT NULL,
    lp_id                 UUID    NOT NULL,
    seen_since_kept       INTEGER NOT NULL,
    last_kept_spread_bps  NUMERIC(18, 6),
    last_kept_offset      BIGINT  NOT NULL,
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition, tenant_id, instrument_id, lp_id)
);
