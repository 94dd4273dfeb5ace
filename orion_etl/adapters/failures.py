"""Failures classified at the adapter boundary: transient (retry the same work) or terminal (stop).

Jobs ask `is_transient(exc)` and never look at psycopg exception classes, SQLSTATEs or Kafka
error codes themselves. Transient: `orion_etl.errors.TransientError` (a dependency reported
unavailable by an adapter), PostgreSQL connection failures (`OperationalError`, `InterfaceError`:
the server restarted, the network dropped) and Kafka errors that mean "the cluster cannot be
reached (yet)". Everything else is terminal for the work in hand; a row PostgreSQL refuses for a
reason of its values is a third case, dead-lettered rather than retried
(`warehouse_loader.is_data_rejection`, `describe_rejection`).
"""

from __future__ import annotations

import psycopg
from confluent_kafka import KafkaException

from orion_etl.adapters.kafka import is_unreachable
from orion_etl.errors import OrionError, TransientError


def is_transient(exc: BaseException) -> bool:
    """Whether retrying the same work may succeed (a dependency is temporarily unavailable)."""
    if isinstance(exc, TransientError | psycopg.OperationalError | psycopg.InterfaceError):
        return True
    return isinstance(exc, KafkaException) and bool(exc.args) and is_unreachable(exc.args[0])


def is_warehouse_failure(exc: BaseException) -> bool:
    """Whether `exc` is PostgreSQL's (or psycopg's) refusal or failure, whatever its kind."""
    return isinstance(exc, psycopg.Error)


def describe(exc: BaseException | None) -> str:
    """One line (at most 300 characters) for a log line about a failure."""
    if exc is None:
        return "?"
    if isinstance(exc, OrionError):
        return exc.message
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


def describe_rejection(exc: BaseException) -> tuple[str, str]:
    """(SQLSTATE, one-line reason) of a statement PostgreSQL refused because of its values."""
    if not isinstance(exc, psycopg.Error):
        return "", " ".join(str(exc).split())[:1000]
    text = f"SQLSTATE {exc.sqlstate}: {exc.diag.message_primary or exc}"
    return exc.sqlstate or "", " ".join(text.split())[:1000]
