"""Alerts the Dagster way: a sensor that finds failures, a small job that delivers each one.

``parity_alerts`` polls the instance for failed asset-check evaluations and failed runs (every
run source writes both there: the UI, the schedule, ``parity run``, ``dagster asset
materialize``). Evaluating it has no side effect: it returns one ``RunRequest`` of the
``deliver_alerts`` job per new failure, keyed by the failure (``run_key``), and its cursor (the
last event record ids seen) is its only state. Only a committed tick launches those runs, so
"Preview tick result" in the UI sends nothing, and the runs list shows every delivery.

``parity run`` (no daemon needed) delivers its own run's alerts through the same job with the
same run keys and sensor tag, so a daemon that later sees the same failures skips them.
Runs of ``deliver_alerts`` itself never alert (no loop); a run failed by the run gate alerts
through its failed checks only.
"""

import json
import os
from dataclasses import asdict

import dagster as dg
from pydantic import Field

from parity_pipeline import constants
from parity_pipeline.core.repro.alerts import (
    CHECK_FAILED,
    RUN_FAILED,
    Alert,
    deliver,
    validate_webhook_url,
)
from parity_pipeline.defs.console import console_logger
from parity_pipeline.resources.events import check_evaluation
from parity_pipeline.resources.runs import GATE_FAILED, GATE_TAG, first_failure
from parity_pipeline.resources.settings import ArtifactStore

WEBHOOK_ENV = constants.ALERT_WEBHOOK_ENV
SENSOR_NAME = "parity_alerts"
DELIVERY_JOB = "deliver_alerts"
# Executions read per check and tick: a check runs once per run, and the sensor ticks every 30 s.
HISTORY_PER_CHECK = 50
RUN_FAILURES_PER_TICK = 100
RUN_KEY_TAG, SENSOR_NAME_TAG = "dagster/run_key", "dagster/sensor_name"



def default_webhook_env() -> None:
    """Unset means "no webhook": the resource reads the variable through dg.EnvVar, which
    refuses an unset variable, so it gets the empty default in every process that loads these
    definitions (a run worker, the daemon) and before an in-process delivery."""
    os.environ.setdefault(WEBHOOK_ENV, "")


default_webhook_env()


class AlertWebhook(dg.ConfigurableResource):
    """Where alerts are POSTed (Slack-compatible JSON); empty = JSONL only."""

    url: str = Field(default="", description=f"http(s) URL; bound to ${WEBHOOK_ENV}")

    def checked_url(self) -> str | None:
        return validate_webhook_url(self.url) if self.url else None


class AlertConfig(dg.Config):
    alert_json: str = Field(description="the alert (core.repro.alerts.Alert) as JSON")


@dg.op(description="Append the alert to artifacts/alerts/alerts.jsonl, then POST it to the "
                   "webhook if one is set (retried; a final failure fails this run).")
def deliver_alert(context: dg.OpExecutionContext, config: AlertConfig, webhook: AlertWebhook,
                  store: ArtifactStore) -> None:
    alert = Alert(**json.loads(config.alert_json))
    result = deliver(alert, store.content().alerts_dir(), webhook.checked_url())
    context.log.info("alert %s (%s) -> %s; webhook: %s", alert.key, alert.run_id,
                     result.jsonl_path, result.webhook_status)
    if result.webhook_status.startswith("failed"):
        raise dg.Failure(f"webhook not reached ({result.webhook_status}); the alert is kept in "
                         f"{result.jsonl_path}", allow_retries=False)


# one small op: in-process, whatever executor the code location's asset jobs use
@dg.job(name=DELIVERY_JOB, tags={"parity/kind": "alert"}, executor_def=dg.in_process_executor,
        logger_defs={"console": console_logger},
        description="Deliver one parity alert (requested by the parity_alerts sensor).")
def deliver_alerts_job():
    deliver_alert()


# --- finding failures -----------------------------------------------------------------------

def _check_alert(evaluation: dg.AssetCheckEvaluation, record_id: int, run_id: str,
                 partition: str | None, evaluated_at: float) -> Alert:
    metadata = {k: getattr(v, "value", str(v)) for k, v in sorted(evaluation.metadata.items())}
    return Alert(kind=CHECK_FAILED, record_id=record_id,
                 asset=evaluation.asset_key.to_user_string(), check=evaluation.check_name,
                 severity=evaluation.severity.value, run_id=run_id, partition=partition,
                 description=evaluation.description or "", metadata=metadata,
                 evaluated_at=evaluated_at)


def failed_checks(instance: dg.DagsterInstance, keys: list[dg.AssetCheckKey],
                  after_id: int, run_id: str | None = None) -> list[Alert]:
    """Failed evaluations after ``after_id`` among each check's latest executions (read
    through the public event log storage; the execution record types are not public)."""
    alerts = []
    for key in sorted(keys, key=lambda k: (k.asset_key.to_user_string(), k.name)):
        for record in instance.event_log_storage.get_asset_check_execution_history(
                key, limit=HISTORY_PER_CHECK):
            entry = record.event
            if (entry is None or record.id <= after_id or run_id not in (None, record.run_id)
                    or entry.dagster_event_type != dg.DagsterEventType.ASSET_CHECK_EVALUATION):
                continue  # planned, still running, or the step failed before evaluating
            evaluation = check_evaluation(entry)
            if not evaluation.passed:
                alerts.append(_check_alert(evaluation, record.id, record.run_id,
                                           record.partition, record.create_timestamp))
    return sorted(alerts, key=lambda alert: alert.record_id)


def failed_runs(instance: dg.DagsterInstance, after_id: int, run_id: str | None = None
                ) -> list[Alert]:
    """Run failures after record ``after_id`` (oldest first), or ``run_id``'s own. Both come
    from the instance-wide run-status index, whose record ids are the alerts' keys (a per-run
    event log numbers its records differently)."""
    if run_id is None:
        status_filter = dg.RunStatusChangeRecordsFilter(
            event_type=dg.DagsterEventType.RUN_FAILURE, after_storage_id=after_id)
    else:
        run_record = instance.get_run_record_by_id(run_id)
        if run_record is None:
            raise dg.DagsterRunNotFoundError(f"run {run_id} is not in the Dagster instance",
                                             invalid_run_id=run_id)
        created = run_record.create_timestamp.timestamp()
        status_filter = dg.RunStatusChangeRecordsFilter(
            event_type=dg.DagsterEventType.RUN_FAILURE, after_timestamp=created - 1)
    records = instance.fetch_run_status_changes(status_filter, limit=RUN_FAILURES_PER_TICK,
                                                ascending=True).records
    alerts = []
    for record in records:
        if run_id not in (None, record.run_id):
            continue
        run = instance.get_run_by_id(record.run_id)
        if run is None or run.job_name == DELIVERY_JOB or run.tags.get(GATE_TAG) == GATE_FAILED:
            continue
        failure = first_failure(instance, run.run_id)
        description = failure[1] if failure else (record.event_log_entry.message or "failed")
        alerts.append(Alert(kind=RUN_FAILED, record_id=record.storage_id, asset="", check="",
                            severity="ERROR", run_id=run.run_id, partition=None,
                            description=description, metadata={"job": run.job_name},
                            evaluated_at=record.timestamp))
    return alerts


def delivery_request(alert: Alert) -> dg.RunRequest:
    return dg.RunRequest(
        run_key=alert.key, job_name=DELIVERY_JOB,
        run_config={"ops": {"deliver_alert": {"config": {
            "alert_json": json.dumps(asdict(alert), sort_keys=True, default=str)}}}},
        tags={"parity/alert": alert.kind, "parity/alerted_run": alert.run_id})


def _cursor(raw: str | None) -> dict[str, int]:
    values = json.loads(raw) if raw else {}
    return {"check": int(values.get("check", 0)), "run": int(values.get("run", 0))}


@dg.sensor(name=SENSOR_NAME, job=deliver_alerts_job, minimum_interval_seconds=30,
           default_status=dg.DefaultSensorStatus.RUNNING,
           description="One deliver_alerts run per failed asset check or failed parity run "
                       "(JSONL + the webhook in $PARITY_ALERT_WEBHOOK_URL).")
def parity_alerts(context: dg.SensorEvaluationContext):
    cursor = _cursor(context.cursor)
    if context.repository_def is None:  # set whenever the code location evaluates the sensor
        raise dg.DagsterInvariantViolationError(
            f"{SENSOR_NAME} reads the asset checks of its definitions: evaluate it with them")
    keys = list(context.repository_def.asset_graph.asset_check_keys)
    checks = failed_checks(context.instance, keys, cursor["check"])
    runs = failed_runs(context.instance, cursor["run"])
    new_cursor = json.dumps({"check": max([a.record_id for a in checks] + [cursor["check"]]),
                             "run": max([a.record_id for a in runs] + [cursor["run"]])})
    if not checks and not runs:
        return dg.SensorResult(skip_reason=dg.SkipReason(
            "no new failed asset check or failed run since the last tick"), cursor=new_cursor)
    return dg.SensorResult(run_requests=[delivery_request(a) for a in (*checks, *runs)],
                           cursor=new_cursor)


def deliver_run_alerts(instance: dg.DagsterInstance, definitions: dg.Definitions,
                       run_id: str) -> list[tuple[Alert, bool]]:
    """What ``parity run`` does after its run: request and execute the deliveries of that
    run's failures, tagged as the sensor would, skipping any already delivered. Returns each
    alert with whether its delivery run succeeded."""
    keys = list(definitions.resolve_asset_graph().asset_check_keys)
    alerts = [*failed_checks(instance, keys, 0, run_id), *failed_runs(instance, 0, run_id)]
    job = definitions.resolve_job_def(DELIVERY_JOB)
    default_webhook_env()
    delivered = []
    for alert in alerts:
        request = delivery_request(alert)  # its run_key is alert.key
        if instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: alert.key}), limit=1):
            continue
        result = job.execute_in_process(
            run_config={**request.run_config, "loggers": {"console": {"config": {
                "log_level": "WARNING"}}}},
            instance=instance, raise_on_error=False,
            tags={**request.tags, RUN_KEY_TAG: alert.key, SENSOR_NAME_TAG: SENSOR_NAME})
        delivered.append((alert, result.success))
    return delivered
