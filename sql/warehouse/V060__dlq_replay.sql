-- `orion-etl dlq replay`: one row per dead letter (DLQ coordinates) that a replay attempted.
--
-- Written in the same transaction as the facts the replay loaded and the replay group's DLQ
-- positions (etl_consumer_offsets, consumer_group = dlq.replay_group), so a crash never leaves a
-- loaded letter unrecorded. A letter that fails again is NOT re-published to the DLQ (it already
-- is there); its attempt, class and error are recorded here instead.
CREATE TABLE etl_dlq_replays (
    dlq_topic         TEXT        NOT NULL,
    dlq_partition     INTEGER     NOT NULL,
    dlq_offset        BIGINT      NOT NULL,
    origin_topic      TEXT,
    origin_partition  INTEGER,
    origin_offset     BIGINT,
    letter_id         TEXT,                    -- the dlq.fingerprint header (per-record id)
    failure_fingerprint TEXT      NOT NULL,    -- the failure signature the letter was listed under
    outcome           VARCHAR(20) NOT NULL CHECK (outcome IN ('loaded', 'failed', 'unreplayable')),
    error_class       TEXT,                    -- when failed again: why (DLQ class of this attempt)
    error             TEXT,
    attempts          INTEGER     NOT NULL DEFAULT 1,
    first_attempt_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    last_attempt_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    job_run_id        UUID,
    PRIMARY KEY (dlq_topic, dlq_partition, dlq_offset)
);

CREATE INDEX etl_dlq_replays_outcome ON etl_dlq_replays (dlq_topic, outcome);
