"""The loader's Prometheus endpoint (`stream --metrics-addr|--metrics-port`)."""

from __future__ import annotations

from orion_etl.adapters import metrics
from orion_etl.errors import UsageError


def serve_metrics(addr: str | None, port: int | None) -> tuple[str, int] | None:
    """Start serving /metrics on `addr` (HOST:PORT) or 127.0.0.1:`port`; the address, or None."""
    if addr is not None and port is not None:
        raise UsageError("give --metrics-addr or --metrics-port, not both")
    address: tuple[str, int] | None = ("127.0.0.1", port) if port is not None else None
    if addr is not None:
        try:
            address = metrics.parse_addr(addr)
        except ValueError as exc:
            raise UsageError(f"--metrics-addr: {exc}") from None
    if address is not None:
        try:
            metrics.serve(*address)
        except OSError as exc:
            raise UsageError(f"--metrics-addr: cannot listen on {address[0]}:{address[1]}: {exc}") from None
    return address
