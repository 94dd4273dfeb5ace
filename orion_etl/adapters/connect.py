"""Kafka Connect REST API client (one place for every call orion-etl makes to Connect)."""

from __future__ import annotations

from typing import Any

import httpx

from orion_etl.config.models import ConnectSettings
from orion_etl.errors import OrionError, ServiceUnavailableError
from orion_etl.logs import redactor


class ConnectError(OrionError):
    """Kafka Connect answered with an error."""

    def __init__(self, message: str, *, status_code: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.status_code = status_code


class ConnectClient:
    """Thin synchronous client for the Kafka Connect REST API."""

    def __init__(self, settings: ConnectSettings, *, transport: httpx.BaseTransport | None = None) -> None:
        auth = None
        if settings.username and settings.password is not None:
            redactor.register(settings.password.get_secret_value())
            auth = httpx.BasicAuth(settings.username, settings.password.get_secret_value())
        self.base_url = settings.url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url, timeout=settings.timeout_s, auth=auth, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ConnectClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Send one request; map transport failures and HTTP errors to orion-etl errors."""
        try:
            response = self._http.request(method, path, **kwargs)
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
            raise ConnectError(
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
