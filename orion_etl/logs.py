"""Logging set-up: every log line goes to stderr (rich on a terminal, JSON lines otherwise).

Secrets are masked by field, not by substring in finished text: a value registered as a secret is
masked where it is a whole field value (`mask`) or a whole token of free text (`redact`), so a short
secret such as ``2026`` or ``null`` can never cut a timestamp or a JSON document in two.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

if TYPE_CHECKING:
    from rich.console import Console

REDACTED = "********"

_LOGRECORD_ATTRS = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}
# Keys whose value is a secret whatever it is (connector configs, librdkafka passthrough keys).
_SECRET_KEY = re.compile(r"(^|[._-])(password|passwd|secret|token|api[._-]?key|sasl\.jaas\.config)$", re.I)


# Values with a structure of their own (timestamps, dates, UUIDs, numbers): never token-masked, so a
# secret of `2026` cannot turn `2026-12-02T09:31:03Z` into `********-12-02T09:31:03Z`.
_STRUCTURED = re.compile(
    r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}(:?\d{2})?)?)?"
    r"|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"|[+-]?\d+(\.\d+)?([eE][+-]?\d+)?"
)


# A config-provider reference (`${file:/path:key}`, `${env:VAR}`) names where a secret is, not the secret.
_PROVIDER_REF = re.compile(r"\$\{[A-Za-z0-9_.-]+:[^{}]+\}")


def is_secret_key(key: str) -> bool:
    """True for a setting name that always carries a secret (`database.password`, `sasl.password`)."""
    return bool(_SECRET_KEY.search(key))


class SecretRedactor:
    """Known secret values of known settings. One shared instance; `register` adds values."""

    def __init__(self) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None

    def register(self, *values: str | None) -> None:
        for value in values:
            if value and value.strip() and value not in self._secrets:
                self._secrets.add(value)
                self._pattern = None

    def redact(self, text: str) -> str:
        """Mask secrets that stand as whole tokens in free text (an error message, a log line).

        A token is bounded by anything that is not a letter, digit or '_', so `pw=s3cret;` loses
        `s3cret` while `s3cretive` stays. Free text only: structured data goes through `mask`.
        """
        if not self._secrets or not text:
            return text
        if self._pattern is None:
            alternatives = "|".join(re.escape(s) for s in sorted(self._secrets, key=len, reverse=True))
            self._pattern = re.compile(rf"(?<![\w])(?:{alternatives})(?![\w])")
        return self._pattern.sub(REDACTED, text)

    def mask_text(self, text: str, key: str = "") -> str:
        """One string value: masked whole when it is a secret or under a secret key; a timestamp,
        id or number stays as it is; other text loses the secrets that are whole tokens in it."""
        if text in self._secrets:
            return REDACTED
        if key and is_secret_key(key) and text and not _PROVIDER_REF.fullmatch(text):
            return REDACTED
        if _STRUCTURED.fullmatch(text):
            return text
        return self.redact(text)

    def mask(self, data: Any, key: str = "") -> Any:
        """Mask a structure field by field: secret keys, values equal to a secret, free-text tokens.

        Numbers, booleans, None, timestamps and ids are never touched (a secret of `2026` or `null`
        cannot change them); strings are masked when they are a secret or sit under a secret key,
        and otherwise only where a secret is a whole token of their text.
        """
        if isinstance(data, dict):
            return {k: self.mask(v, str(k)) for k, v in data.items()}
        if isinstance(data, list | tuple):
            return [self.mask(v, key) for v in data]
        if isinstance(data, str):
            return self.mask_text(data, key)
        return data


redactor = SecretRedactor()


def json_value(value: Any) -> Any:
    """The JSON convention for one value: ISO-8601 UTC timestamps, exact decimals as strings."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, UUID | Path):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


class RedactingFilter(logging.Filter):
    """Renders the message once, then masks secrets in it (whole tokens) and in extra fields."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # malformed %-args: keep the raw template
            message = str(record.msg)
        record.msg = redactor.redact(message)
        record.args = None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redactor.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        for key, value in list(record.__dict__.items()):
            if key not in _LOGRECORD_ATTRS and not key.startswith("_"):
                setattr(record, key, redactor.mask(value, key))
        return True


def log_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The `extra=` fields of a record (what `log.info(..., extra={...})` added)."""
    return {k: v for k, v in record.__dict__.items() if k not in _LOGRECORD_ATTRS and not k.startswith("_")}


def safe_extra(fields: dict[str, Any]) -> dict[str, Any]:
    """`fields` usable as `extra=`: names the LogRecord owns (`name`, `msg`, ...) get a `_` suffix."""
    return {(f"{k}_" if k in _LOGRECORD_ATTRS else k): v for k, v in fields.items()}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, msg and the `extra=` fields as values."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", None) or record.name.rsplit(".", 1)[-1],
            "msg": record.getMessage(),
        }
        for key, value in log_fields(record).items():
            payload[key] = value
        if record.exc_text:
            payload["exc"] = record.exc_text
        return json.dumps(payload, default=json_value, ensure_ascii=False)


class PlainFormatter(logging.Formatter):
    """`time LEVEL logger: message key=value ...`: one line, extra fields as key=value."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {k: v for k, v in log_fields(record).items() if k != "event"}
        if fields:
            line += " " + " ".join(f"{k}={_plain(v)}" for k, v in fields.items())
        return line.replace("\n", "\\n")


def _plain(value: Any) -> str:
    if isinstance(value, dict | list | tuple):
        return json.dumps(value, default=json_value, ensure_ascii=False, separators=(",", ":"))
    if value is None or isinstance(value, bool | int | float | str):
        return (
            json.dumps(value, ensure_ascii=False) if isinstance(value, str) and " " in value else str(value)
        )
    return str(json_value(value))


class _ConsoleHandler(logging.Handler):
    """Writes formatted records through the shared stderr console.

    A rich `Live` view on the same console then prints each line above the live region instead of
    being cut by it.
    """

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stderr_console().print(self.format(record), markup=False, highlight=False, soft_wrap=True)
        except Exception:
            self.handleError(record)


@cache
def stderr_console() -> Console:
    """The one console on stderr: log lines, progress bars and live views share it."""
    from rich.console import Console

    return Console(stderr=True)


_LOG_FORMATS = ("auto", "rich", "json", "plain")


def resolve_log_format(fmt: str) -> str:
    """`auto` -> rich on a terminal, JSON lines otherwise."""
    fmt = fmt.lower()
    if fmt not in _LOG_FORMATS:
        from orion_etl.errors import UsageError

        raise UsageError(f"--log-format: {fmt!r} is not one of {', '.join(_LOG_FORMATS)}")
    if fmt == "auto":
        return "rich" if sys.stderr.isatty() else "json"
    return fmt


def configure_logging(level: str = "INFO", fmt: str = "auto") -> None:
    """Install one stderr handler on the `orion_etl` logger tree."""
    fmt = resolve_log_format(fmt)
    handler: logging.Handler
    if fmt == "rich":
        handler = _rich_handler()
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        handler = _ConsoleHandler()
        handler.setFormatter(JsonFormatter() if fmt == "json" else PlainFormatter())
    handler.addFilter(RedactingFilter())
    root = logging.getLogger("orion_etl")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def _rich_handler() -> logging.Handler:
    """A RichHandler on the shared stderr console that appends `extra=` fields as `key=value`."""
    from rich.logging import RichHandler

    class FieldsRichHandler(RichHandler):
        def render_message(self, record: logging.LogRecord, message: str) -> Any:
            fields = {k: v for k, v in log_fields(record).items() if k != "event"}
            if fields:
                message += "  " + " ".join(f"{k}={_plain(v)}" for k, v in fields.items())
            return super().render_message(record, message)

    return FieldsRichHandler(console=stderr_console(), show_path=False, rich_tracebacks=False, markup=False)
