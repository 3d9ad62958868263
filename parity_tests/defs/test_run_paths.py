"""Every Dagster way of running gives the full run's answer, or refuses before it changes
anything (issue: a content-addressed store for every run path).

All runs go to one real on-disk instance and artifact store. The job is the parity job on the
in-process executor (its steps then see this process's PARITY_HOME; the multiprocess executor
is covered by test_determinism and the CLI). Answers are compared by the logical hashes the
assets report (their DataVersions): the same hash means byte-identical content.
"""

import os
import shutil
import subprocess
import sys

import dagster as dg
import pytest

from parity_pipeline.cli.reports import load_run_side, recent_runs, verify_run
from parity_pipeline.core.repro.diff import compare_runs
from parity_pipeline.core.store.content import ContentStore
from parity_pipeline.defs.jobs import PARITY_JOB_NAME
from parity_pipeline.resources.lineage import run_materializations
from parity_tests.helpers import parity_cli, step_failures

pytestmark = pytest.mark.slow

ASSETS = ("sampled_data", "ranked_targets", "selected_features", "trained_models", "snapshots")
SYMBOLS = ["AAPL", "AMZN", "MSFT"]
ONE_TARGET = "fwd_ret_60m"


def in_process_parity_job() -> dg.JobDefinition:
    """The parity job on the in-process executor (module level: ``dg.reconstructable``)."""
    from parity_pipeline.definitions import defs

    return defs.resolve_job_def(PARITY_JOB_NAME).with_executor_def(dg.in_process_executor)


def _config(data_dir, **settings) -> dict:
    return {"resources": {
        "settings": {"config": {"max_rows_per_symbol": 1200, "symbols": SYMBOLS, **settings}},
        "data_source": {"config": {"data_dir": str(data_dir)}}}}


class Paths:
    """One home: its instance, its store, and how to launch runs into it."""

    def __init__(self, home, data_dir):
        self.home, self.data_dir = home, data_dir
        self.instance = dg.DagsterInstance.from_config(str(home / "dagster"))
        self.content = ContentStore(home / "artifacts")

    def execute(self, run_config=None, **options) -> dg.DagsterRun:
        with dg.execute_job(dg.reconstructable(in_process_parity_job), instance=self.instance,
                            run_config=run_config or _config(self.data_dir),
                            raise_on_error=False, **options) as result:
            return self.instance.get_run_by_id(result.run_id)

    def reexecute(self, parent: dg.DagsterRun, step_selection=None, from_failure=False):
        options = (dg.ReexecutionOptions.from_failure(parent.run_id, self.instance)
                   if from_failure else dg.ReexecutionOptions(parent.run_id, step_selection))
        return self.execute(parent.run_config, reexecution_options=options)

    def hashes(self, run: dg.DagsterRun) -> dict[str, str]:
        """{asset: logical sha256} of what the run itself materialized."""
        return {asset: str(record.asset_materialization.metadata["sha256"].value)
                for asset, record in run_materializations(self.instance, run.run_id).items()}

    def target_step(self, run: dg.DagsterRun) -> str:
        """One training part step the run executed."""
        records = self.instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS).records
        return sorted(key for key in (r.event_log_entry.step_key for r in records)
                      if key.startswith("trained_models.train_targets_part["))[0]

    def failure(self, run: dg.DagsterRun) -> str:
        return step_failures(self.instance, run.run_id)


@pytest.fixture(scope="module")
def paths(small_dataset, tmp_path_factory):
    home = tmp_path_factory.mktemp("paths") / "home"
    saved = {k: os.environ.get(k) for k in ("PARITY_HOME", "DAGSTER_HOME")}
    os.environ["PARITY_HOME"] = str(home)
    os.environ.pop("DAGSTER_HOME", None)
    from parity_pipeline.core.store import home as parity_home

    parity_home.ensure_dagster_home()
    os.environ.pop("DAGSTER_HOME", None)
    try:
        yield Paths(home, small_dataset)
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None)
            if value is not None:
                os.environ[key] = value


@pytest.fixture(scope="module")
def failed_then_resumed(paths):
    """A full run whose last step fails (its snapshot index is damaged), then Re-execute from
    failure once the index is restored: only the failed step runs again."""
    index = paths.content.globals_dir() / "training_snapshot_index.json"
    index.parent.mkdir(parents=True, exist_ok=True)
    index.write_text("{not json")
    failed = paths.execute()
    index.unlink()
    resumed = paths.reexecute(failed, from_failure=True)
    return failed, resumed


@pytest.fixture(scope="module")
def full(paths, failed_then_resumed):
    """Re-execute all of the resumed run: a complete run from scratch, the reference."""
    return paths.reexecute(failed_then_resumed[1], step_selection=None)


def test_reexecute_from_failure_completes_the_run_with_the_full_answer(paths, failed_then_resumed,
                                                                       full):
    failed, resumed = failed_then_resumed
    assert failed.status == dg.DagsterRunStatus.FAILURE
    assert "training_snapshot_index.json" in paths.failure(failed)
    assert set(paths.hashes(failed)) == set(ASSETS) - {"snapshots"}
    assert resumed.status == dg.DagsterRunStatus.SUCCESS
    assert set(paths.hashes(resumed)) == {"snapshots"}  # nothing else was recomputed
    assert full.status == dg.DagsterRunStatus.SUCCESS
    assert paths.hashes(resumed)["snapshots"] == paths.hashes(full)["snapshots"]
    assert {**paths.hashes(failed), **paths.hashes(resumed)} == paths.hashes(full)
    # the resumed run is a run like any other for verify and diff
    assert verify_run(paths.instance, paths.content, resumed.run_id).complete
    side = load_run_side(paths.instance, paths.content, resumed.run_id)
    assert side.assets == paths.hashes(full) and side.snapshots


@pytest.mark.parametrize("asset", ASSETS)
def test_each_asset_alone_reproduces_the_full_run(paths, full, asset):
    run = paths.execute(asset_selection=[dg.AssetKey(asset)])
    assert run.status == dg.DagsterRunStatus.SUCCESS, paths.failure(run)
    assert paths.hashes(run) == {asset: paths.hashes(full)[asset]}
    report = verify_run(paths.instance, paths.content, run.run_id)
    assert report.produced == (asset,) and report.complete
    # diff takes the one-asset run too: by snapshots, or by the stage output both stand for
    diff = compare_runs(load_run_side(paths.instance, paths.content, full.run_id),
                        load_run_side(paths.instance, paths.content, run.run_id))
    assert not diff.differs, diff
    assert (diff.compared > 0) if asset == "snapshots" else (asset in diff.note)


def test_a_second_identical_run_stores_no_new_model_prediction_or_stage_object(paths, full):
    before = set(paths.content.object_names())
    again = paths.reexecute(full, step_selection=None)
    assert paths.hashes(again) == paths.hashes(full)
    added = set(paths.content.object_names()) - before
    # besides what names the run (snapshots: run id, time; the run manifest; their manifests),
    # only hand-offs from a plan to its parts (the claims folder names the run) and from the
    # parts to the collect step (which part claimed which piece varies from run to run)
    steps = paths.content.steps_dir(again.run_id)
    pointers = [(path.relative_to(steps).parts[0], path.read_text())
                for path in steps.rglob("*.pkl")]
    handoffs = {name for step, name in pointers if "_part__" in step or step.endswith("_step")}
    assert {name for name in added if name.endswith(".pkl")} <= handoffs, added
    texts = [paths.content.read_text(name) for name in added if name.endswith(".json")]
    assert all(again.run_id in text or '"asset":"snapshots"' in text for text in texts)
    assert {name.rsplit(".", 1)[1] for name in added} <= {"json", "pkl"}, added
    # hand-offs are small: no model, prediction or table among them
    assert sum(paths.content.object_path(name).stat().st_size for name in added
               if name.endswith(".pkl")) < 200_000


def test_lone_target_step_fails_saying_what_to_run_and_changes_nothing(paths, full):
    step = paths.target_step(full)
    latest_before = paths.instance.get_latest_materialization_event(dg.AssetKey("trained_models"))
    objects_before = set(paths.content.object_names())
    run = paths.reexecute(full, step_selection=[step])
    assert run.status == dg.DagsterRunStatus.FAILURE
    message = paths.failure(run)
    assert "trained_models.collect_training" in message and "Re-execute from failure" in message
    assert paths.hashes(run) == {}
    latest = paths.instance.get_latest_materialization_event(dg.AssetKey("trained_models"))
    assert latest.run_id == latest_before.run_id
    assert set(paths.content.object_names()) == objects_before  # refused before any work


def test_target_step_with_its_collect_step_updates_the_asset(paths, full):
    steps = [paths.target_step(full), "trained_models.collect_training"]
    run = paths.reexecute(full, step_selection=steps)
    assert run.status == dg.DagsterRunStatus.SUCCESS, paths.failure(run)
    assert paths.hashes(run) == {"trained_models": paths.hashes(full)["trained_models"]}


def test_partial_run_says_so_and_is_not_fed_to_a_full_run(paths, full):
    partial = paths.execute(_config(paths.data_dir, targets=[ONE_TARGET]),
                            asset_selection=[dg.AssetKey("ranked_targets")])
    assert partial.status == dg.DagsterRunStatus.SUCCESS, paths.failure(partial)
    run = paths.instance.get_run_by_id(partial.run_id)
    assert run.tags["parity/kind"] == "partial" and run.tags["parity/targets"] == ONE_TARGET
    record = run_materializations(paths.instance, partial.run_id)["ranked_targets"]
    assert record.asset_materialization.tags["parity/kind"] == "partial"
    row = next(r for r in recent_runs(paths.instance) if r.run_id == partial.run_id)
    assert f"partial: targets {ONE_TARGET}" in row.scope
    # the latest ranked_targets is now partial: a full run of the next stage must refuse it
    refused = paths.execute(asset_selection=[dg.AssetKey("selected_features")])
    assert refused.status == dg.DagsterRunStatus.FAILURE
    message = paths.failure(refused)
    assert "ranked_targets" in message and "targets" in message and ONE_TARGET in message
    assert paths.hashes(refused) == {}
    # restore a full ranking for the tests that follow
    paths.execute(asset_selection=[dg.AssetKey("ranked_targets")])


def test_dagster_asset_materialize_cli_reproduces_the_full_run(paths, full):
    env = {**os.environ, "PARITY_HOME": str(paths.home), "DAGSTER_HOME": str(paths.home /
                                                                             "dagster"),
           "PARITY_DATA_DIR": str(paths.data_dir)}
    config = paths.home / "snapshots_config.yaml"
    config.write_text("resources:\n  settings:\n    config:\n      max_rows_per_symbol: 1200\n"
                      f"      symbols: {SYMBOLS}\n")
    done = subprocess.run(
        [str(shutil.which("dagster", path=os.path.dirname(sys.executable))), "asset",
         "materialize", "-m", "parity_pipeline.definitions", "--select", "snapshots",
         "--config", str(config)], capture_output=True, text=True, env=env, timeout=600,
        check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    latest = paths.instance.get_latest_materialization_event(dg.AssetKey("snapshots"))
    assert latest.run_id != full.run_id
    assert str(latest.asset_materialization.metadata["sha256"].value) == \
        paths.hashes(full)["snapshots"]
    verified = parity_cli(paths.home, "verify", latest.run_id)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_nightly_schedule_request_runs_the_whole_graph(paths, full):
    from parity_pipeline.defs.schedules import nightly_parity_schedule

    context = dg.build_schedule_context(instance=paths.instance)
    requests = nightly_parity_schedule.evaluate_tick(context).run_requests
    assert len(requests) == 1
    config = requests[0].run_config or {}
    merged = {**config, **_config(paths.data_dir)}
    run = paths.execute(merged, tags=requests[0].tags)
    assert run.status == dg.DagsterRunStatus.SUCCESS, paths.failure(run)
    assert paths.hashes(run) == paths.hashes(full)


def test_undeclared_target_in_run_config_fails_before_anything_is_materialized(paths, full):
    """What the launchpad sends: settings.targets naming no declared target."""
    run = paths.execute(_config(paths.data_dir, targets=["fwd_nope"]))
    assert run.status == dg.DagsterRunStatus.FAILURE
    message = paths.failure(run)
    assert "fwd_nope" in message and "declared: " in message and ONE_TARGET in message
    assert paths.hashes(run) == {}  # sampled_data was not materialized either
