-- Exactly one dead letter per bad record (docs/dlq.md, "Exactly once"). With each batch's
-- positions the loader stores, per consumed partition, the DLQ offsets below which every letter
-- of the already committed records lies: {"<dlq partition>": <offset>, ...} of the partition's DLQ
-- topic. A process that re-reads the partition after a crash scans the DLQ from there and does
-- not publish a letter whose origin is already in it. NULL: written by an older version (the
-- re-read then publishes as before, at least once).
ALTER TABLE etl_consumer_offsets ADD COLUMN dlq_floor JSONB;

-- The same floors for partitions whose positions were never committed yet: written (autocommit,
-- first floor wins) before the first letters of such a partition are published, so a crash
-- before its first commit does not publish them twice either.
CREATE TABLE etl_dlq_first_floors (
    consumer_group  TEXT    NOT NULL,
    topic           TEXT    NOT NULL,
    partition       INTEGER NOT NULL,
    dlq_floor       JSONB   NOT NULL,
    noted_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);
