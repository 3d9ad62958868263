"""Alerts (a failed asset check, a failed run): a JSON line always, a webhook POST when configured.

Delivery order matters: the JSONL line is written (locked, fsync'd) before any network call, so
a webhook that is down never loses an alert. The POST carries the whole alert as JSON plus a
Slack-compatible ``text`` field; it has a timeout and a bounded number of retries, and a final
failure is logged and recorded in the alert log, never raised into the sensor loop.

The standard library's ``urllib`` is used for the POST: one small JSON request needs no extra
dependency, and it keeps the alert path working when optional packages are missing.
"""

import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from parity_pipeline.core.errors import ParityInputError
from parity_pipeline.core.store.indexes import append_jsonl

logger = logging.getLogger(__name__)

ALERTS_FILE = "alerts.jsonl"


CHECK_FAILED, RUN_FAILED = "check_failed", "run_failed"


@dataclass(frozen=True)
class Alert:
    """One failure to tell people about. ``record_id`` is the Dagster event record that shows
    it (a check evaluation, a run-failure event); ``asset``/``check`` are empty for a run."""

    kind: str  # CHECK_FAILED | RUN_FAILED
    record_id: int
    asset: str
    check: str
    severity: str
    run_id: str
    partition: str | None
    description: str
    metadata: dict[str, Any]
    evaluated_at: float

    @property
    def key(self) -> str:
        """Unique per failure: the delivery run's run key, so it is delivered once."""
        return f"{self.kind}:{self.record_id}"

    def slack_text(self) -> str:
        if self.kind == RUN_FAILED:
            return (f":rotating_light: parity run `{self.run_id}` failed: {self.description}")
        return (f":rotating_light: parity check *{self.asset}:{self.check}* failed "
                f"[{self.severity}] in run `{self.run_id}`"
                f"{' partition ' + self.partition if self.partition else ''}: "
                f"{self.description}")


@dataclass(frozen=True)
class DeliveryResult:
    jsonl_path: str
    webhook_status: str  # "not configured" | "delivered" | "failed: ..."


def validate_webhook_url(url: str) -> str:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ParityInputError(f"webhook URL {url!r} is not an http(s) URL; set "
                               "PARITY_ALERT_WEBHOOK_URL to e.g. https://hooks.slack.com/...")
    return url


def deliver(alert: Alert, alerts_dir: Path, webhook_url: str | None = None,
            timeout_s: float = 5.0, retries: int = 2) -> DeliveryResult:
    path = alerts_dir / ALERTS_FILE
    append_jsonl(path, asdict(alert))
    if not webhook_url:
        return DeliveryResult(str(path), "not configured")
    status = post_json(webhook_url, {"text": alert.slack_text(), "alert": asdict(alert)},
                       timeout_s, retries)
    if status != "delivered":
        logger.error("alert %s:%s not delivered to webhook: %s", alert.asset, alert.check, status)
        append_jsonl(path, {"kind": "delivery_failed", "alert": alert.key, "status": status})
    return DeliveryResult(str(path), status)


def post_json(url: str, body: dict[str, Any], timeout_s: float, retries: int) -> str:
    data = json.dumps(body, sort_keys=True, default=str).encode("utf-8")
    last_error = ""
    for attempt in range(retries + 1):
        request = urllib.request.Request(url, data=data, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                if 200 <= response.status < 300:
                    return "delivered"
                last_error = f"HTTP {response.status}"
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            last_error = str(exc)
        if attempt < retries:
            time.sleep(0.2 * (attempt + 1))
    return f"failed: {last_error}"
