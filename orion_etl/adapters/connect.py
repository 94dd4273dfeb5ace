"""Kafka Connect REST API client (one place for every call orion-etl makes to Connect).

Every call retries HTTP 409, which Connect answers while its workers rebalance, with exponential
backoff (tenacity). Error messages pass through the shared redactor: Connect echoes config values
(including an inline database password) in some errors. Each call has a total deadline of
`[connect] timeout_s` (adapters.deadline), not only httpx's per-read timeout: a worker that
trickles its answer cannot hang a command.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    wait_exponential,
)

from orion_etl.adapters.deadline import DeadlineExceededError, call_with_deadline
from orion_etl.config.models import ConnectSettings
from orion_etl.errors import ExitCode, OrionError, ServiceUnavailableError
from orion_etl.logs import redactor


class ConnectError(OrionError):
    """Kafka Connect answered with an error."""

    def __init__(self, message: str, *, status_code: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status_code = status_code


class ConnectorNotFoundError(ConnectError):
    """The named connector is not registered (exit 4, a failed check: monitoring should act on it)."""

    exit_code = ExitCode.CHECKS_FAILED


log = logging.getLogger(__name__)


def _is_rebalance(exc: BaseException) -> bool:
    return isinstance(exc, ConnectError) and exc.status_code == 409


def _log_retry(state: RetryCallState) -> None:
    log.info("Kafka Connect is rebalancing (HTTP 409); retry %d", state.attempt_number)


def _path(name: str) -> str:
    return quote(name, safe="")


class ConnectClient:
    """Thin synchronous client for the Kafka Connect REST API."""

    def __init__(
        self,
        settings: ConnectSettings,
        *,
        transport: httpx.BaseTransport | None = None,
        rebalance_timeout_s: float = 60.0,
        backoff_max_s: float = 5.0,
    ) -> None:
        self._retrying = Retrying(
            retry=retry_if_exception(_is_rebalance),
            wait=wait_exponential(multiplier=0.25, max=backoff_max_s),
            stop=stop_after_delay(rebalance_timeout_s),
            before_sleep=_log_retry,
            reraise=True,
        )
        auth = None
        if settings.username and settings.password is not None:
            redactor.register(settings.password.get_secret_value())
            auth = httpx.BasicAuth(settings.username, settings.password.get_secret_value())
        self.base_url = settings.url.rstrip("/")
        self.timeout_s = settings.timeout_s
        self._client_args: dict[str, Any] = {
            "base_url": self.base_url,
            "timeout": settings.timeout_s,
            "auth": auth,
            "transport": transport,
        }
        self._http = httpx.Client(**self._client_args)

    def _cancel(self) -> None:
        """Past the deadline: close the client (its sockets); the next call opens a new one."""
        client, self._http = self._http, httpx.Client(**self._client_args)
        client.close()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ConnectClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send a request (retrying 409 rebalances); map failures to orion-etl errors."""
        return self._retrying(self._request_once, method, path, **kwargs)

    def _request_once(self, method: str, path: str, **kwargs: Any) -> Any:
        http = self._http
        try:
            response = call_with_deadline(
                lambda: http.request(method, path, **kwargs), self.timeout_s, cancel=self._cancel
            )
        except DeadlineExceededError as exc:
            raise ServiceUnavailableError(
                f"Kafka Connect at {self.base_url} gave no complete answer to {method} {path} "
                f"within {exc.seconds:.1f} s",
                hint="is the Connect worker overloaded? ([connect] timeout_s bounds each call)",
            ) from None
        except httpx.TransportError as exc:
            raise ServiceUnavailableError(
                f"cannot reach Kafka Connect at {self.base_url}: {type(exc).__name__}: {exc}",
                hint="is the Connect worker running? (local stack: scripts/stack.sh up)",
            ) from None
        if response.status_code >= 400:
            try:
                detail = response.json().get("message", response.text)
            except ValueError:
                detail = response.text
            error_type = ConnectorNotFoundError if response.status_code == 404 else ConnectError
            raise error_type(
                f"Kafka Connect {method} {path} failed with HTTP {response.status_code}: "
                f"{redactor.redact(str(detail))[:500]}",
                status_code=response.status_code,
            )
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def connector_plugins(self) -> list[dict[str, Any]]:
        """`GET /connector-plugins`: installed connector classes."""
        return list(self.request("GET", "/connector-plugins"))

    def worker_info(self) -> dict[str, Any]:
        """`GET /`: worker version and Kafka cluster id."""
        return dict(self.request("GET", "/"))

    # ------------------------------------------------------------------ connectors
    def validate(self, connector_class: str, config: dict[str, str]) -> dict[str, Any]:
        """`PUT /connector-plugins/{class}/config/validate`: per-property errors, nothing registered."""
        return dict(
            self.request("PUT", f"/connector-plugins/{_path(connector_class)}/config/validate", json=config)
        )

    def list_connectors(self) -> dict[str, Any]:
        """`GET /connectors?expand=status&expand=info`: every connector with its status and config."""
        result = self.request("GET", "/connectors", params=[("expand", "status"), ("expand", "info")])
        return dict(result or {})

    def get_config(self, name: str) -> dict[str, str] | None:
        """`GET /connectors/{name}/config` as stored (provider references unresolved); None if absent."""
        try:
            return dict(self.request("GET", f"/connectors/{_path(name)}/config"))
        except ConnectorNotFoundError:
            return None

    def put_config(self, name: str, config: dict[str, str]) -> dict[str, Any]:
        """`PUT /connectors/{name}/config`: create or update (idempotent)."""
        return dict(self.request("PUT", f"/connectors/{_path(name)}/config", json=config))

    def status(self, name: str) -> dict[str, Any]:
        """`GET /connectors/{name}/status`: connector and task states, traces of failures."""
        return dict(self._named("GET", name, "/status"))

    def pause(self, name: str) -> None:
        """`PUT /connectors/{name}/pause` (asynchronous: the state changes shortly after)."""
        self._named("PUT", name, "/pause")

    def resume(self, name: str) -> None:
        """`PUT /connectors/{name}/resume`."""
        self._named("PUT", name, "/resume")

    def restart(self, name: str, *, include_tasks: bool = False, only_failed: bool = False) -> Any:
        """`POST /connectors/{name}/restart?includeTasks=..&onlyFailed=..`."""
        params = {"includeTasks": str(include_tasks).lower(), "onlyFailed": str(only_failed).lower()}
        return self._named("POST", name, "/restart", params=params)

    def delete(self, name: str) -> None:
        """`DELETE /connectors/{name}` (the replication slot stays in PostgreSQL)."""
        self._named("DELETE", name, "")

    def _named(self, method: str, name: str, suffix: str, **kwargs: Any) -> Any:
        try:
            return self.request(method, f"/connectors/{_path(name)}{suffix}", **kwargs)
        except ConnectorNotFoundError as exc:
            raise ConnectorNotFoundError(
                f"connector {name!r} is not registered in Kafka Connect at {self.base_url}",
                status_code=404,
                hint="register it with `orion-etl connectors register`",
            ) from exc
