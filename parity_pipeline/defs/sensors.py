"""The alert sensor: every failed asset-check evaluation, from every run source, alerted once.

OSS Dagster has no alerting on checks, and run-status sensors miss runs launched by
``dagster asset materialize``, so this sensor polls the instance's asset-check execution history
(every run source writes there). Which evaluations were alerted is kept in
``$PARITY_HOME/artifacts/alerts/alert_state.json`` (locked), shared by the daemon and by
``parity run`` (which evaluates this same sensor once after its run), so no evaluation is
alerted twice whoever sees it first. The Dagster cursor mirrors that state for the UI.
"""

import json
import os

import dagster as dg
from dagster._core.storage.asset_check_execution_record import (  # not re-exported publicly
    AssetCheckExecutionRecordStatus,
)

from parity_pipeline import constants
from parity_pipeline.core.alerts import Alert, deliver, validate_webhook_url
from parity_pipeline.core.index_store import JsonIndex
from parity_pipeline.resources.settings import ArtifactStore

WEBHOOK_ENV = constants.ALERT_WEBHOOK_ENV
HISTORY_PER_CHECK = 50
FAILED = {AssetCheckExecutionRecordStatus.FAILED}


def _check_keys(context: dg.SensorEvaluationContext) -> list[dg.AssetCheckKey]:
    keys = context.repository_def.asset_graph.asset_check_keys
    return sorted(keys, key=lambda k: (k.asset_key.to_user_string(), k.name))


def _to_alert(record) -> Alert:
    evaluation = record.event.dagster_event.event_specific_data
    metadata = {k: getattr(v, "value", str(v)) for k, v in sorted(evaluation.metadata.items())}
    return Alert(record_id=record.id, asset=record.key.asset_key.to_user_string(),
                 check=record.key.name, severity=evaluation.severity.value,
                 run_id=record.run_id, partition=record.partition,
                 description=evaluation.description or "", metadata=metadata,
                 evaluated_at=record.create_timestamp)


def failed_evaluations(instance: dg.DagsterInstance, keys: list[dg.AssetCheckKey]) -> list:
    records = []
    for key in keys:
        records += instance.event_log_storage.get_asset_check_execution_history(
            key, limit=HISTORY_PER_CHECK, status=FAILED)
    return sorted((r for r in records if r.event is not None), key=lambda r: r.id)


def send_new_alerts(instance: dg.DagsterInstance, keys: list[dg.AssetCheckKey],
                    store: ArtifactStore, webhook_url: str | None) -> list[Alert]:
    """Alert every failed evaluation not alerted before; the state update is locked."""
    alerts_dir = store.content().alerts_dir()
    state = JsonIndex(alerts_dir / "alert_state.json")
    sent: list[Alert] = []

    def claim(entries: list[dict]) -> list[dict]:
        seen = {entry["record_id"] for entry in entries}
        fresh = [_to_alert(r) for r in failed_evaluations(instance, keys) if r.id not in seen]
        for alert in fresh:
            deliver(alert, alerts_dir, webhook_url)
            sent.append(alert)
        return [{"record_id": a.record_id, "asset": a.asset, "check": a.check,
                 "run_id": a.run_id} for a in fresh]

    state.append_many(claim)
    return sent


@dg.sensor(name="check_failure_alerts", minimum_interval_seconds=30,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="Alerts (JSONL + optional webhook) on every failed asset check.")
def check_failure_alerts(context: dg.SensorEvaluationContext, store: ArtifactStore):
    webhook = os.environ.get(WEBHOOK_ENV) or None
    if webhook:
        validate_webhook_url(webhook)
    sent = send_new_alerts(context.instance, _check_keys(context), store, webhook)
    cursor = json.dumps({"last_alerted_record_id": max((a.record_id for a in sent),
                                                       default=_last_id(context.cursor))})
    if not sent:
        return dg.SensorResult(skip_reason=dg.SkipReason(
            "no new failed asset-check evaluations since the last tick"), cursor=cursor)
    context.log.info("sent %d alerts", len(sent))
    return dg.SensorResult(skip_reason=dg.SkipReason(f"alerted {len(sent)} failed checks "
                                                     "(this sensor launches no runs)"),
                           cursor=cursor)


def _last_id(cursor: str | None) -> int:
    return json.loads(cursor).get("last_alerted_record_id", 0) if cursor else 0
