-- Data-quality audits (`orion-etl dq audit`): what a set-based rule found, with sample rows, and
-- the open-failure state that keeps alerts from repeating while a failure stays open.

-- Audit issues carry one row per failing rule and run: rule kind, rows checked, a few sample rows.
-- Stream rejections keep using record_data / origin for the one rejected record.
ALTER TABLE etl_data_quality_issues
    ADD COLUMN IF NOT EXISTS rule_kind     VARCHAR(30),
    ADD COLUMN IF NOT EXISTS checked_count BIGINT,
    ADD COLUMN IF NOT EXISTS sample_rows   JSONB;

-- One row per rule key (<table>.<rule name>) that has ever failed an audit.
-- status is what the last audit found; notified_status is what the alert channels were last told.
-- An alert is due exactly when they differ, so a failed webhook delivery is retried by the next
-- audit and an open failure is never announced twice.
CREATE TABLE etl_dq_alert_state (
    rule_key         TEXT PRIMARY KEY,
    source_table     VARCHAR(100) NOT NULL,
    rule_name        VARCHAR(100) NOT NULL,
    severity         VARCHAR(20)  NOT NULL CHECK (severity IN ('ERROR', 'WARNING')),
    status           VARCHAR(10)  NOT NULL CHECK (status IN ('OPEN', 'RESOLVED')),
    notified_status  VARCHAR(10)  CHECK (notified_status IN ('OPEN', 'RESOLVED')),
    message          TEXT NOT NULL,
    failed_count     BIGINT NOT NULL DEFAULT 0,
    opened_at        TIMESTAMPTZ NOT NULL,
    last_seen_at     TIMESTAMPTZ NOT NULL,
    resolved_at      TIMESTAMPTZ,
    notified_at      TIMESTAMPTZ,
    last_job_run_id  UUID REFERENCES etl_job_runs (id) ON DELETE SET NULL,
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX idx_etl_dq_alert_state_status ON etl_dq_alert_state (status);
