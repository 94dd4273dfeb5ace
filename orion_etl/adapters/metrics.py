"""Prometheus metrics: one registry per purpose, never mixed.

* `STREAM_REGISTRY`: the streaming loader, served over HTTP by `orion-etl stream --metrics-addr
  HOST:PORT` (or `--metrics-port N` on 127.0.0.1).
* A fresh registry per batch command run with `--metrics-file PATH`: a node-exporter textfile
  (written atomically) with only that job's families, labelled `orion_job` (never `job`, which
  Prometheus owns and would rename to `exported_job`). Each job writes its own file, so several
  files side by side hold no duplicate series. `cdc status` adds the replication-slot families,
  `dq audit` its rule outcomes.

Every family is listed in `STREAM_FAMILIES` / `JOB_FAMILIES` / `EXTRA_FAMILIES` (docs/operations.md
§9 documents them; the shipped alert rules and Grafana dashboard are checked against these names).
Counters have one meaning each: what the loader read (`consumed_messages`, per topic) is not mixed
with what became of it (`records`, per `outcome`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
    write_to_textfile,
)
from prometheus_client.parser import text_string_to_metric_families

# --- the streaming loader ---------------------------------------------------------------------

STREAM_REGISTRY = CollectorRegistry(auto_describe=True)

STREAM_CONSUMED = Counter(
    "orion_etl_stream_consumed_messages",
    "Kafka records read and committed by the loader, per input topic.",
    ["topic"],
    registry=STREAM_REGISTRY,
)
STREAM_RECORDS = Counter(
    "orion_etl_stream_records",
    "What became of the records read: outcome = loaded (fact row written, deleted or quote "
    "inserted), stale (older than the stored row), duplicate (same position again), superseded "
    "(a newer change in the same batch), sampled_out (quote not kept), tombstone (Kafka delete "
    "marker), dlq (dead-lettered).",
    ["outcome"],
    registry=STREAM_REGISTRY,
)
STREAM_DEAD_LETTERS = Counter(
    "orion_etl_stream_dead_letters",
    "Records dead-lettered, by origin topic and error class.",
    ["topic", "error_class"],
    registry=STREAM_REGISTRY,
)
STREAM_DQ_VIOLATIONS = Counter(
    "orion_etl_stream_dq_violations",
    "Data-quality rule violations in streamed batches, by table, rule and severity.",
    ["table", "rule", "severity"],
    registry=STREAM_REGISTRY,
)
STREAM_BATCHES = Counter(
    "orion_etl_stream_batches", "Micro-batches committed to the warehouse.", registry=STREAM_REGISTRY
)
STREAM_LAST_COMMIT = Gauge(
    "orion_etl_stream_last_commit_timestamp_seconds",
    "When the loader last committed a batch.",
    registry=STREAM_REGISTRY,
)
STREAM_LAG = Gauge(
    "orion_etl_stream_consumer_lag_messages",
    "High watermark minus the next offset to load, per assigned partition.",
    ["topic", "partition"],
    registry=STREAM_REGISTRY,
)
STREAM_SOURCE_COMMIT = Gauge(
    "orion_etl_stream_source_commit_timestamp_seconds",
    "Source commit time of the newest CDC change loaded, per source table (freshness).",
    ["source_table"],
    registry=STREAM_REGISTRY,
)
STREAM_LATENCY = Histogram(
    "orion_etl_stream_end_to_end_latency_seconds",
    "Source commit (or event) time to warehouse commit.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
    registry=STREAM_REGISTRY,
)
STREAM_BATCH_SECONDS = Histogram(
    "orion_etl_stream_batch_seconds",
    "Time to transform and commit one micro-batch.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
    registry=STREAM_REGISTRY,
)

# Family names as exposed (counters get `_total`).
STREAM_FAMILIES = (
    "orion_etl_stream_consumed_messages_total",
    "orion_etl_stream_records_total",
    "orion_etl_stream_dead_letters_total",
    "orion_etl_stream_dq_violations_total",
    "orion_etl_stream_batches_total",
    "orion_etl_stream_last_commit_timestamp_seconds",
    "orion_etl_stream_consumer_lag_messages",
    "orion_etl_stream_source_commit_timestamp_seconds",
    "orion_etl_stream_end_to_end_latency_seconds",
    "orion_etl_stream_batch_seconds",
)


def parse_addr(addr: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::]:9464` for IPv6, `:9464` for every address) -> (host, port)."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{addr!r} is not HOST:PORT (e.g. 0.0.0.0:9464, [::]:9464, 127.0.0.1:9464)")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104  # the operator asked for every address
    return host, int(port)


def serve(host: str, port: int) -> None:
    """Expose the loader's registry on http://host:port/metrics (background thread)."""
    start_http_server(port, addr=host, registry=STREAM_REGISTRY)


# --- batch jobs (`--metrics-file`) ---------------------------------------------------------------

JOB_FAMILIES = (
    "orion_etl_job_last_run_timestamp_seconds",
    "orion_etl_job_last_success_timestamp_seconds",
    "orion_etl_job_duration_seconds",
    "orion_etl_job_exit_code",
    "orion_etl_job_records_processed",
    "orion_etl_job_records_failed",
)
# Families a job adds to its own textfile: `cdc status` and `dq audit`.
EXTRA_FAMILIES = {
    "orion_etl_replication_slot_retained_wal_bytes": ("WAL the slot keeps from being removed.", ["slot"]),
    "orion_etl_replication_slot_flush_lag_bytes": (
        "Current WAL position minus the slot's confirmed flush position (replication lag).",
        ["slot"],
    ),
    "orion_etl_replication_slot_active": ("1 while a client streams from the slot.", ["slot"]),
    "orion_etl_replication_heartbeat_age_seconds": ("Age of the connector's last heartbeat.", []),
    "orion_etl_dq_audit_rules": (
        "Rules of the last audit, by outcome (pass, fail, error, ...).",
        ["outcome"],
    ),
}


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


# Samples of EXTRA_FAMILIES the command recorded (written with its textfile, if any).
job_samples: list[Sample] = []


def add_job_samples(samples: Iterable[Sample]) -> None:
    for sample in samples:
        if sample.name not in EXTRA_FAMILIES:
            raise ValueError(f"{sample.name} is not a documented job metric family")
        job_samples.append(sample)


def _previous_success(target: Path, job: str) -> float | None:
    """The last-success time an earlier run of this job wrote (kept when this run failed)."""
    try:
        text = target.read_text()
    except OSError:
        return None
    try:
        for family in text_string_to_metric_families(text):
            if family.name == "orion_etl_job_last_success_timestamp_seconds":
                for s in family.samples:
                    if s.labels.get("orion_job") == job:
                        return float(s.value)
    except ValueError:  # a damaged file: start afresh
        return None
    return None


def record_batch_job(
    path: str | os.PathLike[str],
    job: str,
    *,
    started: float,
    exit_code: int,
    records: int,
    failed: int = 0,
) -> None:
    """Write the node-exporter textfile of one finished batch job (atomic rename)."""
    target = Path(path)
    registry = CollectorRegistry(auto_describe=True)
    now = time.time()

    def gauge(name: str, help_text: str, value: float) -> None:
        Gauge(name, help_text, ["orion_job"], registry=registry).labels(job).set(value)

    gauge(JOB_FAMILIES[0], "When the job last finished.", now)
    last_success = now if exit_code in (0, 1) else _previous_success(target, job)
    if last_success is not None:
        gauge(JOB_FAMILIES[1], "When the job last succeeded (exit 0 or 1).", last_success)
    gauge(JOB_FAMILIES[2], "Duration of the last run.", now - started)
    gauge(JOB_FAMILIES[3], "Exit code of the last run (0 ok, 1 warnings, 2 invalid, 3 error, 4 failed).",
          exit_code)  # fmt: skip
    gauge(JOB_FAMILIES[4], "Records processed by the last run (as in the job ledger).", records)
    gauge(JOB_FAMILIES[5], "Records the last run could not process.", failed)
    extras: dict[str, Gauge] = {}
    for sample in job_samples:
        help_text, labels = EXTRA_FAMILIES[sample.name]
        family = extras.get(sample.name)
        if family is None:
            family = extras[sample.name] = Gauge(
                sample.name, help_text, ["orion_job", *labels], registry=registry
            )
        family.labels(job, *(sample.labels[k] for k in labels)).set(sample.value)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_to_textfile(str(target), registry)
