-- ETL control tables (the story's, plus what the loader needs to keep its Kafka positions).

CREATE TABLE etl_job_runs (
    id                 UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    job_name           VARCHAR(100) NOT NULL,
    job_type           VARCHAR(50)  NOT NULL,  -- STREAM, DIMENSION_SYNC, AGGREGATION, DQ_AUDIT, DLQ_REPLAY, MIGRATION
    status             VARCHAR(20)  NOT NULL CHECK (status IN ('RUNNING', 'COMPLETED', 'FAILED')),
    started_at         TIMESTAMPTZ  NOT NULL DEFAULT now(),
    completed_at       TIMESTAMPTZ,
    records_processed  BIGINT NOT NULL DEFAULT 0,
    records_failed     BIGINT NOT NULL DEFAULT 0,
    error_message      TEXT,
    metadata           JSONB NOT NULL DEFAULT '{}'::jsonb,
    host               TEXT,
    pid                INTEGER
);
CREATE INDEX idx_etl_job_runs_name ON etl_job_runs (job_name, started_at DESC);
CREATE INDEX idx_etl_job_runs_status ON etl_job_runs (status, started_at DESC);

CREATE TABLE etl_data_quality_issues (
    id             UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    job_run_id     UUID REFERENCES etl_job_runs (id) ON DELETE SET NULL,
    source_table   VARCHAR(100) NOT NULL,
    record_id      VARCHAR(200),
    rule_name      VARCHAR(100) NOT NULL,
    severity       VARCHAR(20)  NOT NULL CHECK (severity IN ('ERROR', 'WARNING')),
    error_message  TEXT NOT NULL,
    record_data    JSONB,
    failed_count   BIGINT NOT NULL DEFAULT 1,
    origin         JSONB,               -- e.g. {"topic": ..., "partition": ..., "offset": ...}
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_etl_dq_issues_job ON etl_data_quality_issues (job_run_id);
CREATE INDEX idx_etl_dq_issues_date ON etl_data_quality_issues (created_at);
CREATE INDEX idx_etl_dq_issues_rule ON etl_data_quality_issues (source_table, rule_name, created_at);

-- Watermarks of incremental jobs: CDC positions per source table, dimension-sync change times, ...
CREATE TABLE etl_cdc_watermarks (
    id                        UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    source_table              VARCHAR(100) UNIQUE NOT NULL,
    last_processed_lsn        VARCHAR(100),
    last_processed_timestamp  TIMESTAMPTZ,
    updated_at                TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Kafka positions of the streaming loader, committed in the same transaction as the rows they
-- produced (effectively-once). next_offset is the offset of the next record to consume.
CREATE TABLE etl_consumer_offsets (
    consumer_group  TEXT    NOT NULL,
    topic           TEXT    NOT NULL,
    partition       INTEGER NOT NULL,
    next_offset     BIGINT  NOT NULL CHECK (next_offset >= 0),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, partition)
);
