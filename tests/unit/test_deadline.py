"""Outbound calls have a total deadline: a server trickling its answer cannot hang them."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orion_etl.adapters.alerts import AlertDeliveryError, WebhookChannel
from orion_etl.adapters.connect import ConnectClient
from orion_etl.adapters.deadline import Budget, DeadlineExceededError, call_with_deadline
from orion_etl.config.models import ConnectSettings
from orion_etl.core.dq_results import Alert, AlertKind
from orion_etl.errors import ServiceUnavailableError
from tests.slow_http import slow_http_server

ALERT = Alert(AlertKind.FAILURE, "fact_trades.x", "fact_trades", "x", "ERROR", "m", 1, "run", ())


def test_httpx_alone_does_not_bound_the_request() -> None:
    """The premise: each read succeeds within httpx's timeout, so the request goes on and on."""
    with slow_http_server() as server, httpx.Client(timeout=1.0) as client:
        started = time.monotonic()
        with pytest.raises(DeadlineExceededError):
            call_with_deadline(lambda: client.post(server.url, json={}), 3.0, cancel=client.close)
        assert time.monotonic() - started < 4.5


def test_webhook_post_ends_at_its_total_deadline() -> None:
    with slow_http_server() as server:
        channel = WebhookChannel(server.url, timeout_s=2.0, source="test", include_samples=False)
        started = time.monotonic()
        with pytest.raises(AlertDeliveryError, match=r"no complete answer within 2\.0 s"):
            channel.send(ALERT)
        elapsed = time.monotonic() - started
        assert 1.9 < elapsed < 3.5
        with pytest.raises(AlertDeliveryError, match=r"within 0\.5 s"):
            channel.send(ALERT, deadline_s=0.5)  # the phase budget left is smaller
        channel.close()
        time.sleep(0.7)
        assert len(server.closed) == 2  # the sockets were closed, not left trickling


def test_connect_call_ends_at_its_total_deadline() -> None:
    with slow_http_server() as server:
        client = ConnectClient(ConnectSettings(url=server.url.removesuffix("/hook"), timeout_s=1.5))
        started = time.monotonic()
        with pytest.raises(ServiceUnavailableError, match=r"no complete answer to GET / within 1\.5 s"):
            client.worker_info()
        assert time.monotonic() - started < 3.0
        client.close()


@settings(max_examples=20, deadline=None)
@given(work_s=st.floats(0, 0.02), limit_s=st.floats(0.5, 2.0))
def test_a_call_within_its_deadline_returns_its_value(work_s: float, limit_s: float) -> None:
    cancelled: list[bool] = []

    def work() -> float:
        time.sleep(work_s)
        return work_s

    assert call_with_deadline(work, limit_s, cancel=lambda: cancelled.append(True)) == work_s
    assert not cancelled


@settings(max_examples=20, deadline=None)
@given(limit_s=st.floats(0.02, 0.3))
def test_a_call_past_its_deadline_is_cancelled_at_once(limit_s: float) -> None:
    stop = threading.Event()  # what closing the socket does to the worker: it stops waiting

    def work() -> None:
        stop.wait(30)

    started = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        call_with_deadline(work, limit_s, cancel=stop.set)
    elapsed = time.monotonic() - started
    assert stop.is_set() and limit_s <= elapsed < limit_s + 1.0


def test_errors_of_the_call_are_raised_in_the_caller() -> None:
    def boom() -> None:
        raise ValueError("x")

    with pytest.raises(ValueError, match="x"):
        call_with_deadline(boom, 1.0, cancel=lambda: None)


def test_budget_runs_out() -> None:
    budget = Budget(0.05)
    assert not budget.spent and budget.left() <= 0.05
    time.sleep(0.06)
    assert budget.spent and budget.left() == 0.0
