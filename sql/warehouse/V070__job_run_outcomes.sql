-- The job ledger tells failures and dead processes apart (issue 19).
--
-- status is the run's life: RUNNING -> COMPLETED (exit 0 or 1) | FAILED (exit >= 2: failures found,
-- could not run, or stopped by a signal) | ABANDONED (the process died without closing the run:
-- kill -9, out of memory, host lost). outcome is how it ended: SUCCESS (exit 0), WARNING (1),
-- FAILED (2), ERROR (3), INTERRUPTED (stopped by SIGTERM/SIGINT); NULL while running or abandoned.
--
-- lock_key: the session-level advisory lock the run's ledger connection holds while it runs.
-- PostgreSQL releases it when that session ends however the process died, so a RUNNING row whose
-- lock is not held in pg_locks is abandoned (adapters/jobruns.py marks it when the ledger is read).
ALTER TABLE etl_job_runs DROP CONSTRAINT etl_job_runs_status_check;
ALTER TABLE etl_job_runs
    ADD COLUMN exit_code SMALLINT,
    ADD COLUMN outcome   VARCHAR(20)
        CHECK (outcome IN ('SUCCESS', 'WARNING', 'FAILED', 'ERROR', 'INTERRUPTED')),
    ADD COLUMN lock_key  BIGINT,
    ADD CONSTRAINT etl_job_runs_status_check
        CHECK (status IN ('RUNNING', 'COMPLETED', 'FAILED', 'ABANDONED'));

-- Earlier runs: the exit code some jobs kept in metadata (dq audit), else what the status implied.
UPDATE etl_job_runs SET
    exit_code = CASE
        WHEN metadata->>'exit_code' ~ '^[0-9]+$' THEN (metadata->>'exit_code')::smallint
        WHEN status = 'COMPLETED' THEN 0
        WHEN status = 'FAILED' THEN 3
    END
WHERE status <> 'RUNNING';
UPDATE etl_job_runs SET
    outcome = CASE
        WHEN exit_code = 0 THEN 'SUCCESS'
        WHEN exit_code = 1 THEN 'WARNING'
        WHEN exit_code = 2 THEN 'FAILED'
        ELSE 'ERROR'
    END,
    status = CASE WHEN exit_code >= 2 THEN 'FAILED' ELSE status END
WHERE status <> 'RUNNING';

CREATE INDEX idx_etl_job_runs_outcome ON etl_job_runs (outcome, started_at DESC);
