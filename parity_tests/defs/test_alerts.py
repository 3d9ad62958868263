"""Alerts, the sensor, the schedule and the blocking cross-stage check, on real Dagster parts.

A real HTTP server on 127.0.0.1 receives the webhook; the sensor is evaluated with Dagster's
sensor context and, separately, by the daemon of a real ``dagster dev`` started here and stopped
by PID; the stage that sees a wrong-size panel is simulated by a test-only IO manager.
"""

import contextlib
import datetime as dt
import json
import os
import shutil
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest

from parity_pipeline.core.data.registry import load_registry
from parity_pipeline.core.data.sampling import load_panel
from parity_pipeline.core.errors import ParityInputError
from parity_pipeline.core.repro.alerts import Alert, deliver, validate_webhook_url
from parity_pipeline.core.store import home
from parity_pipeline.definitions import defs
from parity_pipeline.defs.ranking_assets import ranked_targets
from parity_pipeline.defs.sampling_assets import sampled_data
from parity_pipeline.defs.schedules import nightly_parity_schedule
from parity_pipeline.defs.selection_assets import selected_features
from parity_pipeline.defs.sensors import (
    DELIVERY_JOB,
    RUN_KEY_TAG,
    SENSOR_NAME,
    SENSOR_NAME_TAG,
    WEBHOOK_ENV,
    AlertWebhook,
    deliver_run_alerts,
    parity_alerts,
)
from parity_pipeline.defs.snapshot_assets import snapshots
from parity_pipeline.defs.training_assets import trained_models
from parity_pipeline.resources.data_source import ParquetDataSource
from parity_pipeline.resources.io_manager import ReproducibilityIOManager, StepHandoffIOManager
from parity_pipeline.resources.settings import ArtifactStore, PipelineSettings
from parity_tests.helpers import dagster_dev, process_group_alive

ASSETS = [sampled_data, ranked_targets, selected_features, trained_models, snapshots]


# --- a real webhook receiver -------------------------------------------------------------------

class _Receiver(ThreadingHTTPServer):
    def __init__(self, status: int):
        self.status, self.bodies = status, []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/hook"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.bodies.append(json.loads(body))
        self.send_response(self.server.status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture()
def receiver(request):
    server = _Receiver(getattr(request, "param", 200))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _alert(record_id: int = 7) -> Alert:
    return Alert(kind="check_failed", record_id=record_id, asset="sampled_data",
                 check="n_effective_drift",
                 severity="ERROR", run_id="run-abc", partition=None,
                 description="n_effective changed", metadata={
                     "previous_n_effective": 8000, "observed": 7500,
                     "changed_symbols": {"MSFT": "2000 -> 1500"}}, evaluated_at=1.0)


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_webhook_receives_slack_compatible_json(receiver, tmp_path):
    result = deliver(_alert(), tmp_path, receiver.url, timeout_s=2)
    assert result.webhook_status == "delivered"
    assert len(receiver.bodies) == 1
    body = receiver.bodies[0]
    assert "sampled_data:n_effective_drift" in body["text"] and "run-abc" in body["text"]
    assert body["alert"]["metadata"]["changed_symbols"] == {"MSFT": "2000 -> 1500"}
    assert [line["kind"] for line in _jsonl(tmp_path / "alerts.jsonl")] == ["check_failed"]


@pytest.mark.parametrize("receiver", [500], indirect=True)
def test_webhook_failure_is_retried_logged_and_keeps_the_jsonl_alert(receiver, tmp_path):
    result = deliver(_alert(), tmp_path, receiver.url, timeout_s=2, retries=2)
    assert result.webhook_status.startswith("failed") and "500" in result.webhook_status
    assert len(receiver.bodies) == 3, "one try and two retries"
    lines = _jsonl(tmp_path / "alerts.jsonl")
    assert [line["kind"] for line in lines] == ["check_failed", "delivery_failed"]
    assert lines[1]["alert"] == f"check_failed:{lines[0]['record_id']}" == "check_failed:7"


def test_unreachable_webhook_keeps_the_jsonl_alert(tmp_path):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    result = deliver(_alert(), tmp_path, f"http://127.0.0.1:{port}/hook", timeout_s=1, retries=1)
    assert result.webhook_status.startswith("failed")
    assert [line["kind"] for line in _jsonl(tmp_path / "alerts.jsonl")] == [
        "check_failed", "delivery_failed"]


@pytest.mark.parametrize("url", ["ftp://example.com/x", "hooks.slack.com/x", "http://", ""])
def test_webhook_url_must_be_http(url):
    with pytest.raises(ParityInputError, match="http"):
        validate_webhook_url(url)


# --- the schedule ------------------------------------------------------------------------------

def test_nightly_schedule_requests_the_whole_graph_at_two_utc():
    tick = dt.datetime(2026, 11, 26, 2, 0, tzinfo=dt.UTC)
    context = dg.build_schedule_context(scheduled_execution_time=tick)
    requests = list(nightly_parity_schedule.evaluate_tick(context).run_requests or [])
    assert len(requests) == 1
    job = defs.resolve_job_def(nightly_parity_schedule.job_name)
    assert nightly_parity_schedule.cron_schedule == "0 2 * * *"
    assert nightly_parity_schedule.execution_timezone == "UTC"
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == {
        "sampled_data", "ranked_targets", "selected_features", "trained_models", "snapshots"}
    assert dg.validate_run_config(job, requests[0].run_config or {}) is not None


# --- a stage handed the wrong panel (test-only IO manager) -------------------------------------

class FullHistoryForRanking(ReproducibilityIOManager):
    """Test-only: gives ``ranked_targets`` every row of the data instead of the sampled panel,
    as a stage that reads its own data would (the original 188k-rows bug)."""

    data_dir: str

    def load_input(self, context: dg.InputContext):
        value = super().load_input(context)
        # every step of the ranked_targets graph (plan, each target, collect) gets the history
        if context.asset_key == dg.AssetKey("sampled_data") and \
                context.step_context.step.key.startswith("ranked_targets."):
            path = Path(self.data_dir)
            return load_panel(path, load_registry(path), 10**9).panel
        return value


def _resources(data_dir: Path, root: Path, io_manager) -> dict:
    store = ArtifactStore(root=str(root))
    return {"io_manager": io_manager(store=store), "store": store,
            "step_handoff_io_manager": StepHandoffIOManager(store=store),
            "settings": PipelineSettings(), "data_source": ParquetDataSource(
                data_dir=str(data_dir))}


@pytest.fixture(scope="session")
def oversized_stage_run(small_dataset, tmp_path_factory):
    """One run in a real on-disk instance where ranked_targets saw more rows than the panel."""
    parity_home = tmp_path_factory.mktemp("oversized") / "home"
    saved = {k: os.environ.get(k) for k in ("PARITY_HOME", "DAGSTER_HOME")}
    os.environ["PARITY_HOME"] = str(parity_home)
    os.environ.pop("DAGSTER_HOME", None)
    try:
        dagster_dir = home.ensure_dagster_home()
        with dg.DagsterInstance.from_config(str(dagster_dir)) as instance:
            resources = _resources(small_dataset, home.artifacts_root(), lambda store: (
                FullHistoryForRanking(store=store, data_dir=str(small_dataset))))
            result = dg.materialize(ASSETS, instance=instance, resources=resources,
                                    raise_on_error=False)
            materialized = sorted({e.asset_key.to_user_string()
                                   for e in result.get_asset_materialization_events()})
            evaluations = {(e.asset_key.to_user_string(), e.check_name): e
                           for e in result.get_asset_check_evaluations()}
            run_id = result.run_id
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
    return {"home": parity_home, "dagster": dagster_dir, "materialized": materialized,
            "evaluations": evaluations, "run_id": run_id, "data": small_dataset}


@pytest.mark.slow
def test_wrong_size_panel_fails_parity_as_error_and_blocks_training(oversized_stage_run):
    evaluations = oversized_stage_run["evaluations"]
    parity = evaluations[("ranked_targets", "n_effective_parity")]
    assert not parity.passed
    assert parity.severity == dg.AssetCheckSeverity.ERROR
    assert parity.metadata["expected"].value == 4 * 2000
    assert parity.metadata["observed"].value == 4 * 3000
    assert evaluations[("sampled_data", "n_effective_parity")].passed
    # blocking: nothing downstream of the wrong sample was materialized
    assert oversized_stage_run["materialized"] == ["ranked_targets", "sampled_data"]
    assert ("trained_models", "n_effective_parity") not in evaluations


def _sensor_context(instance, cursor: str | None = None):
    return dg.build_sensor_context(instance=instance, cursor=cursor, definitions=defs)


def _deliver(instance, request, artifacts_root: Path):
    """Execute one requested delivery run, as the daemon does for a committed tick."""
    job = defs.resolve_job_def(DELIVERY_JOB)
    return job.execute_in_process(
        run_config=request.run_config, instance=instance, tags=request.tags,
        resources={"store": ArtifactStore(root=str(artifacts_root)),
                   "webhook": AlertWebhook(url=os.environ.get(WEBHOOK_ENV, ""))})


@pytest.mark.slow
def test_sensor_evaluation_has_no_side_effect_and_each_failure_is_delivered_once(
        oversized_stage_run, tmp_path, monkeypatch, receiver):
    # a private copy of the home: the daemon test below needs failures not yet delivered
    copy = tmp_path / "home"
    shutil.copytree(oversized_stage_run["home"], copy)
    monkeypatch.setenv(WEBHOOK_ENV, receiver.url)
    artifacts = copy / "artifacts"
    alerts_file = artifacts / "alerts" / "alerts.jsonl"
    with dg.DagsterInstance.from_config(str(copy / "dagster")) as instance:
        first = parity_alerts(_sensor_context(instance))
        # evaluating (what "Preview tick result" does) sends nothing and writes nothing
        assert not alerts_file.exists() and receiver.bodies == []
        second = parity_alerts(_sensor_context(instance, first.cursor))
        for request in first.run_requests:
            assert _deliver(instance, request, artifacts).success
        delivery_runs = instance.get_runs(filters=dg.RunsFilter(job_name=DELIVERY_JOB))
    alerts = _jsonl(alerts_file)
    failed = sorted(k for k, e in oversized_stage_run["evaluations"].items() if not e.passed)
    checks = [a for a in alerts if a["kind"] == "check_failed"]
    assert sorted((a["asset"], a["check"]) for a in checks) == failed
    # the blocking check failed the run: the run failure is alerted too, once
    runs = [a for a in alerts if a["kind"] == "run_failed"]
    assert len(runs) == 1 and "ranked_targets" in runs[0]["description"]
    assert all(a["run_id"] == oversized_stage_run["run_id"] for a in alerts)
    parity = next(a for a in checks if a["check"] == "n_effective_parity")
    assert parity["severity"] == "ERROR" and parity["metadata"]["observed"] == 12000
    assert [r.run_key for r in first.run_requests] == [
        f"{a['kind']}:{a['record_id']}" for a in alerts]
    assert len(delivery_runs) == len(alerts)  # the runs list shows each delivery
    cursor = json.loads(first.cursor)
    assert cursor["check"] == max(a["record_id"] for a in checks)
    assert cursor["run"] == runs[0]["record_id"]
    assert second.cursor == first.cursor and not second.run_requests
    assert "no new" in second.skip_reason.skip_message
    assert [b["alert"]["record_id"] for b in receiver.bodies] == [a["record_id"] for a in alerts]


@pytest.mark.slow
def test_parity_run_delivery_is_skipped_by_a_later_sensor_tick(oversized_stage_run, tmp_path):
    copy = tmp_path / "home"
    shutil.copytree(oversized_stage_run["home"], copy)
    with dg.DagsterInstance.from_config(str(copy / "dagster")) as instance, \
            _parity_home(copy):
        first = deliver_run_alerts(instance, defs, oversized_stage_run["run_id"])
        again = deliver_run_alerts(instance, defs, oversized_stage_run["run_id"])
        requests = parity_alerts(_sensor_context(instance)).run_requests
        tagged = [run.tags[RUN_KEY_TAG] for run in instance.get_runs(
            filters=dg.RunsFilter(tags={SENSOR_NAME_TAG: SENSOR_NAME}))]
    assert first and all(ok for _, ok in first) and again == []
    # the daemon dedupes run requests by run key among the sensor's runs: all are there
    assert sorted(r.run_key for r in requests) == sorted(tagged)
    assert len(_jsonl(copy / "artifacts" / "alerts" / "alerts.jsonl")) == len(first)


@contextlib.contextmanager
def _parity_home(path: Path):
    saved = os.environ.get("PARITY_HOME")
    os.environ["PARITY_HOME"] = str(path)
    try:
        yield
    finally:
        os.environ.pop("PARITY_HOME") if saved is None else os.environ.__setitem__(
            "PARITY_HOME", saved)


def _error_chain(error) -> str:
    parts = []
    while error is not None:
        parts.append(f"{error.cls_name}: {error.message}")
        error = error.cause
    return "\n".join(parts)


@pytest.mark.slow
def test_tampered_artifact_is_refused_on_load(oversized_stage_run):
    # The materialization records the artifact's absolute path; edit that file, then restore it.
    payload = (oversized_stage_run["home"] / "artifacts" / "runs" / oversized_stage_run["run_id"]
               / "ranked_targets" / "data.json")
    original = payload.read_bytes()
    content = json.loads(original)
    content["train_seed"] = 43  # an edit that still parses and validates
    payload.write_text(json.dumps(content))
    try:
        with dg.DagsterInstance.from_config(str(oversized_stage_run["dagster"])) as instance:
            result = dg.materialize(
                ASSETS, selection=["selected_features"], instance=instance, raise_on_error=False,
                resources=_resources(oversized_stage_run["data"],
                                     oversized_stage_run["home"] / "artifacts",
                                     lambda store: ReproducibilityIOManager(store=store)))
    finally:
        payload.write_bytes(original)
    assert not result.success
    assert result.get_asset_materialization_events() == []
    failures = [_error_chain(e.step_failure_data.error) for e in result.get_step_failure_events()]
    assert len(failures) == 1
    assert "ArtifactIntegrityError" in failures[0] and "modified or corrupted" in failures[0]
    # the view file is a hard link: the edit changed the object it shows, which names itself
    sha = json.loads((payload.parent / "artifact.json").read_text())["sha256"]
    assert f"objects/{sha[:2]}/{sha}.json" in failures[0]


# --- the sensor under a running daemon ---------------------------------------------------------

def _delivery_runs(home: Path) -> list:
    """The deliver_alerts runs the alert sensor requested in ``home``'s instance."""
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        return list(instance.get_runs(filters=dg.RunsFilter(
            job_name=DELIVERY_JOB, tags={SENSOR_NAME_TAG: SENSOR_NAME})))


@pytest.mark.slow
def test_daemon_sensor_alerts_failed_checks(oversized_stage_run, tmp_path, receiver):
    copy = tmp_path / "home"
    shutil.copytree(oversized_stage_run["home"], copy)
    env = {**os.environ, "PARITY_HOME": str(copy), "DAGSTER_HOME": str(copy / "dagster"),
           WEBHOOK_ENV: receiver.url}
    log_path = tmp_path / "dagster_dev.log"
    alerts_file = copy / "artifacts" / "alerts" / "alerts.jsonl"
    # every failed run in the copied instance alerts once: the fixture's run, and any run an
    # earlier test of this module failed on the same home (the tampered-artifact test does)
    with dg.DagsterInstance.from_config(str(copy / "dagster")) as instance:
        failed_runs = instance.get_runs(filters=dg.RunsFilter(
            statuses=[dg.DagsterRunStatus.FAILURE]))
    expected = (sum(r.job_name != DELIVERY_JOB for r in failed_runs)
                + sum(not e.passed for e in oversized_stage_run["evaluations"].values()))
    with dagster_dev(env, log_path) as (dev, _):
        # until every alert is recorded and every delivery run has ended: stopping the daemon
        # while the last delivery run is still finishing would end that run, not test it
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and (
                len(_jsonl(alerts_file)) < expected
                or sum(run.is_finished for run in _delivery_runs(copy)) < expected):
            assert dev.poll() is None, log_path.read_text()[-3000:]
            time.sleep(2)
    assert not process_group_alive(dev.pid), "webserver, daemon and code server all stopped"
    assert len(_jsonl(alerts_file)) == expected, (
        [(a["kind"], a.get("check"), a.get("run_id")) for a in _jsonl(alerts_file)],
        log_path.read_text()[-3000:])
    alerts = [a for a in _jsonl(alerts_file) if a["kind"] == "check_failed"]
    assert {(a["asset"], a["check"]) for a in alerts} >= {("ranked_targets", "n_effective_parity")}
    assert len(receiver.bodies) == len(_jsonl(alerts_file))
    # each alert was delivered by a deliver_alerts run the sensor requested
    deliveries = _delivery_runs(copy)
    delivered = sorted(r.tags[RUN_KEY_TAG] for r in deliveries
                       if r.status == dg.DagsterRunStatus.SUCCESS)
    assert delivered == sorted(f"{a['kind']}:{a['record_id']}" for a in _jsonl(alerts_file)), \
        [(r.status, r.tags) for r in deliveries]
