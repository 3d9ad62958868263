"""Faults a real machine has, on real parts: concurrent processes on a fresh home, a run killed
with SIGKILL, a full disk and a read-only folder (real tmpfs mounts), a run that fails after
publishing. Each asserts what the user sees and what is kept (README: "What survives what")."""

import contextlib
import json
import logging
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from parity_pipeline.core.repro.snapshot_index import INDEX_FILES
from parity_pipeline.core.store.indexes import JsonIndex
from parity_pipeline.definitions import defs
from parity_pipeline.defs.ranking_assets import ranked_targets
from parity_pipeline.defs.sampling_assets import sampled_data
from parity_pipeline.defs.selection_assets import selected_features
from parity_pipeline.defs.sensors import parity_alerts
from parity_pipeline.defs.snapshot_assets import snapshots
from parity_pipeline.defs.training_assets import trained_models
from parity_pipeline.resources.data_source import ParquetDataSource
from parity_pipeline.resources.io_manager import ReproducibilityIOManager, StepHandoffIOManager
from parity_pipeline.resources.runs import GATE_TAG, PidCheckingRunLauncher, worker_tag
from parity_pipeline.resources.settings import ArtifactStore, PipelineSettings
from parity_tests.helpers import parity_cli, parity_run

SYMBOLS = "AAPL,MSFT,NVDA"
# 1200 rows: the planted signal routes (fwd_ret_60m, y_will_peak_60m_0.8 on these 3 symbols), so
# models, snapshots and index entries exist, in well under the time of N = 2000
SHORT = ("--max-rows-per-symbol", "1200")
ASSETS = [sampled_data, ranked_targets, selected_features, trained_models, snapshots]
NO_PREFLIGHT_SPACE = {"PARITY_MIN_FREE_MB": "0"}  # let a run start on a nearly full disk


@contextlib.contextmanager
def tmpfs(path: Path, size: str, read_only: bool = False):
    """A real small filesystem at ``path`` (needs mount rights: root or CAP_SYS_ADMIN)."""
    path.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)],
                             capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}): the disk-full and "
                    "read-only cases need mount rights")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _popen(home: Path, *args: str, log: Path, env: dict | None = None) -> subprocess.Popen:
    environment = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    environment.update({"PARITY_HOME": str(home), **(env or {})})
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "parity_pipeline.cli.main", *args],
                                stdout=out, stderr=subprocess.STDOUT, env=environment)


def _alembic_heads(home: Path) -> int:
    with contextlib.closing(sqlite3.connect(home / "dagster" / "history" / "runs.db")) as db:
        return db.execute("SELECT COUNT(*) FROM alembic_version").fetchone()[0]


def _runs(home: Path) -> list[dg.DagsterRun]:
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        return list(instance.get_runs())


# --- concurrency -------------------------------------------------------------------------------

@pytest.mark.slow
def test_concurrent_first_use_of_a_fresh_home_creates_one_instance(tmp_path):
    home = tmp_path / "home"
    logs = [tmp_path / f"runs-{i}.log" for i in range(8)]
    procs = [_popen(home, "runs", log=log) for log in logs]
    codes = [p.wait(timeout=300) for p in procs]
    assert codes == [0] * 8, [log.read_text()[-800:] for log in logs]
    assert _alembic_heads(home) == 1
    assert parity_cli(home, "runs").returncode == 0


@pytest.mark.slow
def test_eight_concurrent_runs_on_a_fresh_home(small_dataset, tmp_path):
    home = tmp_path / "home"
    logs = [tmp_path / f"run-{i}.log" for i in range(8)]
    procs = [_popen(home, "run", "--data", str(small_dataset), "--symbols", SYMBOLS, *SHORT,
                    log=log) for log in logs]
    codes = [p.wait(timeout=1500) for p in procs]
    assert codes == [0] * 8, [log.read_text()[-1500:] for log in logs]
    assert _alembic_heads(home) == 1
    run_ids = {r.run_id for r in _runs(home) if r.job_name == "parity_all"}
    assert len(run_ids) == 8
    for name in sorted(INDEX_FILES.values()):
        entries = JsonIndex(home / "artifacts" / "globals" / name).read()  # valid JSON
        json.loads((home / "artifacts" / "globals" / name).read_text())
        assert {e["run_id"] for e in entries} == run_ids
        counts = {sum(e["run_id"] == run_id for e in entries) for run_id in run_ids}
        assert len(counts) == 1  # 8 whole runs, each with the same number of entries
        groups: dict[str, list[int]] = {}
        for entry in entries:  # numbered within each comparison group, in file order
            groups.setdefault(entry["comparable_key"], []).append(entry["snapshot_seq"])
        assert groups and all(seqs == list(range(1, len(seqs) + 1)) for seqs in groups.values())
        assert {len(seqs) for seqs in groups.values()} == {8}  # one snapshot per run
    listed = parity_cli(home, "runs")
    assert listed.returncode == 0 and listed.stdout.count(" SUCCESS ") == 8, listed.stdout
    assert parity_cli(home, "verify", "--all").returncode == 0
    assert parity_cli(home, "diff").returncode == 0  # the same inputs: identical


# --- a run killed with SIGKILL ----------------------------------------------------------------

@pytest.fixture(scope="module")
def killed_run(small_dataset, tmp_path_factory):
    """One complete run, then a second killed with SIGKILL while it trains."""
    home = tmp_path_factory.mktemp("killed") / "home"
    complete = parity_run(home, "--data", str(small_dataset), "--symbols", SYMBOLS, *SHORT)
    assert complete.exit_code == 0, complete.stderr[-2000:]
    log = home.parent / "killed.log"
    proc = _popen(home, "run", "--data", str(small_dataset), "--symbols", SYMBOLS, *SHORT,
                  log=log)
    deadline = time.monotonic() + 600
    while "TRAINING:" not in log.read_text() and time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-2000:]
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    killed = next(r.run_id for r in _runs(home) if r.run_id != complete.outcome.run_id
                  and r.job_name == "parity_all")
    return {"home": home, "complete": complete.outcome.run_id, "killed": killed}


@pytest.mark.slow
def test_killed_run_is_shown_failed_process_gone(killed_run):
    listed = parity_cli(killed_run["home"], "runs")
    assert listed.returncode == 0
    row = listed.stdout.split(killed_run["killed"], 1)[1]
    assert row.split()[1] == "FAILURE" and "process gone" in row.split("\n")[1]
    status = {r.run_id: r.status for r in _runs(killed_run["home"])}
    assert status[killed_run["killed"]] == dg.DagsterRunStatus.FAILURE


@pytest.mark.slow
def test_killed_run_is_never_a_default_and_verify_says_what_is_missing(killed_run):
    home = killed_run["home"]
    verified = parity_cli(home, "verify")
    assert verified.returncode == 0 and killed_run["complete"] in verified.stdout
    incomplete = parity_cli(home, "verify", killed_run["killed"])
    assert incomplete.returncode == 3
    assert "incomplete" in incomplete.stdout and "snapshots" in incomplete.stdout
    diffed = parity_cli(home, "diff")  # one complete run: nothing to compare by default
    assert diffed.returncode == 2 and "two complete runs" in diffed.stderr


@pytest.mark.slow
def test_killed_run_raises_a_run_failure_alert(killed_run):
    parity_cli(killed_run["home"], "runs")  # marks it
    with dg.DagsterInstance.from_config(str(killed_run["home"] / "dagster")) as instance:
        result = parity_alerts(dg.build_sensor_context(instance=instance, definitions=defs))
    requested = [json.loads(r.run_config["ops"]["deliver_alert"]["config"]["alert_json"])
                 for r in result.run_requests]
    gone = [a for a in requested if a["run_id"] == killed_run["killed"]]
    assert [a["kind"] for a in gone] == ["run_failed"]
    assert "process gone" in gone[0]["description"]


@pytest.mark.slow
def test_run_monitoring_marks_a_launched_run_whose_worker_died(tmp_path):
    """The daemon's run monitoring asks the instance's launcher (dagster.yaml) about each
    STARTED run; a run worker that is gone is reported failed by Dagster's own code."""
    from dagster._daemon.monitoring.run_monitoring import monitor_started_run

    home = tmp_path / "home"
    assert parity_cli(home, "home").returncode == 0  # writes dagster.yaml
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    job = defs.resolve_job_def("parity_all")
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        assert isinstance(instance.run_launcher, PidCheckingRunLauncher)
        run = instance.create_run_for_job(job, run_config={}, status=dg.DagsterRunStatus.STARTED)
        instance.report_engine_event(f"Started process for run (pid: {worker.pid}).", run)
        alive = instance.run_launcher.check_run_worker_health(run)
        worker.kill()
        worker.wait()
        dead = instance.run_launcher.check_run_worker_health(run)
        monitor_started_run(instance, None, instance.get_run_record_by_id(run.run_id),
                            logging.getLogger("run_monitoring"))
        after = instance.get_run_by_id(run.run_id)
    assert alive.status.value == "RUNNING"
    assert dead.status.value == "FAILED" and "process gone" in dead.msg
    assert after.status == dg.DagsterRunStatus.FAILURE


def test_a_reused_pid_is_not_taken_for_the_run_worker():
    """This process is alive, but a worker tag with another start time for its pid names a
    process that died (its pid now reused): the run is reported gone."""
    from parity_pipeline.resources.runs import process_gone

    host, pid, ticks = worker_tag()["parity/worker"].rsplit(":", 2)
    assert int(pid) == os.getpid() and ticks.isdigit()
    started = dg.DagsterRun(job_name="parity_all", run_id="r",
                            status=dg.DagsterRunStatus.STARTED)
    same = started.with_tags(worker_tag())
    reused = started.with_tags({"parity/worker": f"{host}:{pid}:{int(ticks) + 1}"})
    assert process_gone(None, same) is None
    assert "process gone" in process_gone(None, reused)


def test_a_run_whose_process_died_before_marking_it_started_is_marked_failed(tmp_path):
    """`parity run` creates its run (NOT_STARTED, tagged with its process), then marks it
    started: a process killed, or an instance disk that filled, in between must not leave the
    run NOT_STARTED for ever. A NOT_STARTED run no process created (one the UI has not launched
    yet) is left alone."""
    from parity_pipeline.resources.runs import mark_dead_runs

    host, pid, ticks = worker_tag()["parity/worker"].rsplit(":", 2)
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        for run_id, tags in (("dead", {"parity/worker": f"{host}:{pid}:{int(ticks) + 1}"}),
                             ("alive", worker_tag()), ("untagged", {})):
            instance.add_run(dg.DagsterRun(job_name="parity_all", run_id=run_id, tags=tags,
                                           status=dg.DagsterRunStatus.NOT_STARTED))
        assert mark_dead_runs(instance) == ["dead"]
        statuses = {run_id: instance.get_run_by_id(run_id).status
                    for run_id in ("dead", "alive", "untagged")}
    assert statuses == {"dead": dg.DagsterRunStatus.FAILURE,
                        "alive": dg.DagsterRunStatus.NOT_STARTED,
                        "untagged": dg.DagsterRunStatus.NOT_STARTED}


# --- full and read-only disks ------------------------------------------------------------------

@pytest.mark.slow
def test_read_only_or_full_folders_are_refused_before_launch(small_dataset, tmp_path):
    home = tmp_path / "home"
    with tmpfs(home / "artifacts", "2m", read_only=True):
        done = parity_cli(home, "run", "--data", str(small_dataset), "--symbols", SYMBOLS)
    assert done.returncode == 4
    assert f"the artifact store {home / 'artifacts'} is not writable (Read-only file system)" \
        in done.stderr and "nothing was run" in done.stderr
    assert "Traceback" not in done.stderr
    with tmpfs(home / "artifacts", "2m"):
        full = parity_cli(home, "run", "--data", str(small_dataset), "--symbols", SYMBOLS)
    assert full.returncode == 4 and "MiB free, less than the 100 MiB" in full.stderr
    with tmpfs(home / "dagster", "2m", read_only=True):
        instance_ro = parity_cli(home, "run", "--data", str(small_dataset))
    assert instance_ro.returncode == 4 and str(home / "dagster") in instance_ro.stderr
    assert "Traceback" not in instance_ro.stderr
    assert _runs(home) == []  # no run was launched


@pytest.mark.slow
def test_artifacts_disk_full_mid_run(small_dataset, tmp_path):
    home = tmp_path / "home"
    with tmpfs(home / "artifacts", "3m"):
        done = parity_run(home, "--data", str(small_dataset), "--symbols", SYMBOLS,
                          env=NO_PREFLIGHT_SPACE)
        listed = parity_cli(home, "runs")
        verified = parity_cli(home, "verify")
    assert done.exit_code == 4, done.stdout[-2000:]
    assert "No space left on device" in done.stdout and "Traceback" not in done.stderr
    assert re.search(r"^run \S+: FAILURE$", done.stdout, re.MULTILINE), done.stdout
    assert listed.returncode == 0 and " FAILURE " in listed.stdout
    assert verified.returncode == 2 and "no complete run" in verified.stderr


@pytest.mark.slow
def test_instance_disk_full_mid_run(small_dataset, tmp_path):
    home = tmp_path / "home"
    with tmpfs(home / "dagster", "1m"):
        done = parity_cli(home, "run", "--data", str(small_dataset), "--symbols", SYMBOLS,
                          env=NO_PREFLIGHT_SPACE)
        subprocess.run(["mount", "-o", "remount,size=64m", str(home / "dagster")], check=True)
        listed = parity_cli(home, "runs")  # space is back: the dead run is marked
    assert done.returncode == 4, done.stderr[-2000:]
    assert f"the Dagster instance at {home / 'dagster'}" in done.stderr
    assert "Traceback" not in done.stderr
    assert listed.returncode == 0 and " FAILURE " in listed.stdout, listed.stdout
    assert " STARTED " not in listed.stdout


# --- a run that fails after publishing -------------------------------------------------------

class FailingAfterSnapshots(ReproducibilityIOManager):
    """Test-only: the disk fills right after the snapshots step published its index entries."""

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        super().handle_output(context, obj)
        if context.asset_key == dg.AssetKey("snapshots"):
            raise OSError(28, "No space left on device (the test's full disk)")


@pytest.mark.slow
def test_entries_of_a_run_that_failed_after_publishing_are_not_history(small_dataset,
                                                                       tmp_path):
    """A run (seed 7) writes its index and ledger entries, then fails; the next run (seed 42)
    must not compare itself with it (no train_seed drift), and no default takes it."""
    home = tmp_path / "home"
    assert parity_cli(home, "home").returncode == 0
    store = ArtifactStore(root=str(home / "artifacts"))
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        failing = dg.materialize(
            ASSETS, instance=instance, raise_on_error=False, resources={
                "io_manager": FailingAfterSnapshots(store=store), "store": store,
                "step_handoff_io_manager": StepHandoffIOManager(store=store),
                "settings": PipelineSettings(base_seed=7, symbols=SYMBOLS.split(","),
                                             max_rows_per_symbol=int(SHORT[1])),
                "data_source": ParquetDataSource(data_dir=str(small_dataset))})
    assert not failing.success
    written = JsonIndex(home / "artifacts" / "globals" / INDEX_FILES["TRAINING"]).read()
    assert {e["run_id"] for e in written} == {failing.run_id}  # the entries are there
    assert {e["train_seed"] for e in written} == {7}
    clean = parity_run(home, "--data", str(small_dataset), "--symbols", SYMBOLS, *SHORT)
    assert clean.exit_code == 0, clean.stdout[-2000:]
    seed_checks = [c for c in clean.outcome.checks if c.check == "train_seed_drift"]
    assert seed_checks and all(c.passed for c in clean.outcome.checks)
    verified = parity_cli(home, "verify")
    assert verified.returncode == 0 and clean.outcome.run_id in verified.stdout
    assert parity_cli(home, "diff").returncode == 2  # the failed run is not one of two


def test_gate_tag_marks_only_runs_failed_by_their_checks():
    # the gate's tag is what makes a FAILURE run complete: a plain failure is not
    from parity_pipeline.resources.runs import is_complete

    failed = dg.DagsterRun(job_name="parity_all", run_id="a", status=dg.DagsterRunStatus.FAILURE)
    gated = failed.with_tags({GATE_TAG: "failed"})
    assert not is_complete(failed) and is_complete(gated)
    assert is_complete(failed.with_status(dg.DagsterRunStatus.SUCCESS))
    assert not is_complete(gated.with_status(dg.DagsterRunStatus.STARTED))


@pytest.mark.slow
def test_an_older_parity_dagster_yaml_gains_run_monitoring_and_a_users_is_kept(tmp_path):
    old = "# Written by parity. Embedded default: SQLite storage under this folder.\n" \
          "telemetry:\n  enabled: false\n"
    ours, theirs = tmp_path / "ours", tmp_path / "theirs"
    for home, text in ((ours, old), (theirs, "telemetry:\n  enabled: false\n")):
        (home / "dagster").mkdir(parents=True)
        (home / "dagster" / "dagster.yaml").write_text(text)
        assert parity_cli(home, "home").returncode == 0
    updated = (ours / "dagster" / "dagster.yaml").read_text()
    assert "PidCheckingRunLauncher" in updated
    assert "TeeComputeLogManager" in updated and str(ours / "dagster" / "storage") in updated
    assert "PooledSqliteEventLogStorage" in updated
    assert str(ours / "dagster" / "history" / "runs") in updated  # Dagster's event log folder
    assert (theirs / "dagster" / "dagster.yaml").read_text() == "telemetry:\n  enabled: false\n"
