"""Alert channels: a Slack-compatible webhook (httpx) and the log.

The webhook URL is a secret: it is registered with the log redactor and never appears in
messages; delivery errors are reported by HTTP status or exception type only. Every POST has a
total deadline (`[dq.alerts] timeout_s`, adapters.deadline): a webhook that trickles its answer
cannot hold the audit. `Notifier.send` also takes the remaining budget of the whole alert phase.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import httpx

from orion_etl.adapters.deadline import Budget, DeadlineExceededError, call_with_deadline
from orion_etl.config.models import AlertSettings
from orion_etl.core.dq_results import Alert, AlertKind, slack_payload
from orion_etl.logs import redactor

log = logging.getLogger("orion_etl.dq.alerts")


class AlertDeliveryError(Exception):
    """A channel could not deliver an alert (never fails the audit; the next run retries)."""


class Channel(Protocol):
    name: str

    def send(self, alert: Alert, *, deadline_s: float | None = None) -> None: ...


class LogChannel:
    """Alerts as log records (`orion_etl.dq.alerts`): ERROR/WARNING for failures, INFO for recoveries."""

    name = "log"

    def send(self, alert: Alert, *, deadline_s: float | None = None) -> None:
        if alert.kind is AlertKind.RECOVERY:
            level = logging.INFO
        else:
            level = logging.ERROR if alert.severity == "ERROR" else logging.WARNING
        log.log(level, alert.text, extra={"rule_key": alert.rule_key, "alert": str(alert.kind)})


class WebhookChannel:
    """POSTs a Slack incoming-webhook JSON body (`text` + `blocks`) per alert."""

    name = "webhook"

    def __init__(self, url: str, *, timeout_s: float, source: str, include_samples: bool) -> None:
        redactor.register(url)
        self._url = url
        self._source = source
        self._include_samples = include_samples
        self._timeout_s = timeout_s
        self._client = self._new_client()

    def _new_client(self) -> httpx.Client:
        return httpx.Client(timeout=self._timeout_s, follow_redirects=False)

    def _cancel(self) -> None:
        """Close the client (its sockets) so the worker thread's read fails; the next send reopens."""
        client, self._client = self._client, self._new_client()
        client.close()

    def send(self, alert: Alert, *, deadline_s: float | None = None) -> None:
        """POST the alert; at most `timeout_s` (or the smaller `deadline_s`) in total."""
        body = slack_payload(alert, source=self._source, include_samples=self._include_samples)
        seconds = self._timeout_s if deadline_s is None else min(self._timeout_s, deadline_s)
        client = self._client
        try:
            response = call_with_deadline(
                lambda: client.post(self._url, json=body), seconds, cancel=self._cancel
            )
        except DeadlineExceededError as exc:
            raise AlertDeliveryError(f"webhook gave no complete answer within {exc.seconds:.1f} s") from None
        except httpx.HTTPError as exc:
            raise AlertDeliveryError(f"webhook unreachable ({type(exc).__name__})") from None
        if response.status_code >= 300:
            raise AlertDeliveryError(f"webhook answered HTTP {response.status_code}")

    def close(self) -> None:
        self._client.close()


@dataclass
class Delivery:
    """What happened to one alert."""

    alert: Alert
    delivered: bool
    errors: list[str]


class Notifier:
    """Sends each alert to every channel; an alert counts as delivered when all channels took it."""

    def __init__(self, channels: list[Channel]) -> None:
        self.channels = channels

    def send(self, alert: Alert, budget: Budget | None = None) -> Delivery:
        """Send to every channel, within what is `left` of the alert phase's budget (if given)."""
        errors = []
        for channel in self.channels:
            if budget is not None and budget.spent:
                errors.append(f"{channel.name}: not sent, the alert phase used its {budget.seconds:g} s")
                continue
            try:
                channel.send(alert, deadline_s=None if budget is None else budget.left())
            except AlertDeliveryError as exc:
                message = redactor.redact(str(exc))
                errors.append(f"{channel.name}: {message}")
                log.warning("alert for %s not delivered: %s: %s", alert.rule_key, channel.name, message)
        return Delivery(alert, not errors, errors)

    def close(self) -> None:
        for channel in self.channels:
            close = getattr(channel, "close", None)
            if close:
                close()


def notifier_from_settings(settings: AlertSettings, *, source: str) -> Notifier:
    """The channels configured in `[dq.alerts]`."""
    channels: list[Channel] = []
    if settings.log:
        channels.append(LogChannel())
    if settings.webhook_url is not None and settings.webhook_url.get_secret_value():
        channels.append(
            WebhookChannel(
                settings.webhook_url.get_secret_value(),
                timeout_s=settings.timeout_s,
                source=source,
                include_samples=settings.include_samples,
            )
        )
    return Notifier(channels)
