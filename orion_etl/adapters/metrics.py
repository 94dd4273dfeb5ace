"""Prometheus metrics: one registry, an HTTP endpoint for `stream`, textfile output for batch jobs.

Long-running `orion-etl stream --metrics-port N` serves the registry over HTTP. Batch commands run
from cron/systemd write a node-exporter textfile (`--metrics-file PATH`, written atomically) with
their last run's outcome, so alerting can fire on "dims sync has not succeeded for an hour".
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
    write_to_textfile,
)

REGISTRY = CollectorRegistry(auto_describe=True)

STREAM_MESSAGES = Counter(
    "orion_etl_stream_messages",
    "Kafka messages handled by the loader, by topic and outcome (loaded, stale, dlq, ignored).",
    ["topic", "outcome"],
    registry=REGISTRY,
)
STREAM_BATCHES = Counter(
    "orion_etl_stream_batches", "Micro-batches committed to the warehouse.", registry=REGISTRY
)
STREAM_LAG = Gauge(
    "orion_etl_stream_consumer_lag_messages",
    "High watermark minus next offset, per assigned partition.",
    ["topic", "partition"],
    registry=REGISTRY,
)
STREAM_LATENCY = Histogram(
    "orion_etl_stream_end_to_end_latency_seconds",
    "Source commit (or event) time to warehouse commit.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=REGISTRY,
)
STREAM_BATCH_SECONDS = Histogram(
    "orion_etl_stream_batch_seconds",
    "Time to transform and commit one micro-batch.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=REGISTRY,
)
DLQ_MESSAGES = Counter(
    "orion_etl_dlq_messages", "Messages dead-lettered, by origin topic and error class.",
    ["topic", "error_class"], registry=REGISTRY,
)  # fmt: skip
DQ_VIOLATIONS = Counter(
    "orion_etl_dq_violations", "Data-quality rule violations, by table, rule and severity.",
    ["table", "rule", "severity"], registry=REGISTRY,
)  # fmt: skip

JOB_LAST_RUN = Gauge(
    "orion_etl_job_last_run_timestamp_seconds", "When the job last finished.", ["job"], registry=REGISTRY
)
JOB_LAST_SUCCESS = Gauge(
    "orion_etl_job_last_success_timestamp_seconds", "When the job last succeeded.", ["job"], registry=REGISTRY
)
JOB_DURATION = Gauge(
    "orion_etl_job_duration_seconds", "Duration of the last run.", ["job"], registry=REGISTRY
)
JOB_EXIT_CODE = Gauge("orion_etl_job_exit_code", "Exit code of the last run.", ["job"], registry=REGISTRY)
JOB_RECORDS = Gauge(
    "orion_etl_job_records_processed", "Records processed by the last run.", ["job"], registry=REGISTRY
)


def serve(port: int, addr: str = "127.0.0.1") -> None:
    """Expose the registry on http://addr:port/metrics (background thread)."""
    start_http_server(port, addr=addr, registry=REGISTRY)


def record_batch_job(
    path: str | os.PathLike[str], job: str, *, started: float, exit_code: int, records: int
) -> None:
    """Write the node-exporter textfile for one finished batch job (atomic rename)."""
    now = time.time()
    JOB_LAST_RUN.labels(job).set(now)
    if exit_code in (0, 1):
        JOB_LAST_SUCCESS.labels(job).set(now)
    JOB_DURATION.labels(job).set(now - started)
    JOB_EXIT_CODE.labels(job).set(exit_code)
    JOB_RECORDS.labels(job).set(records)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(target), REGISTRY)
