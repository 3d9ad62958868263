"""A real cluster run: the Celery executor, two dagster-celery workers, Redis as the broker and
PostgreSQL as the instance, all on this machine (``parity_pipeline.devcluster``).

The run must give the in-process run's answers (every stage artifact, snapshot and fingerprint),
its steps must have run on both workers, its history must be in PostgreSQL, and every process
the test started must be gone afterwards. A second run has Redis restarted while a target step
computes: it must still succeed with the same fingerprints, its drift checks must read the first
run from PostgreSQL, and `parity diff` must find the two runs identical there. A third run has
the process computing a target step SIGKILLed: it must fail, be marked failed, and publish
nothing.
"""

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from parity_pipeline.core.repro import checks
from parity_pipeline.devcluster import local_cluster, port_open, step_timing
from parity_tests.helpers import parity_cli, parity_run

pytestmark = pytest.mark.slow

DRIFT_CHECKS = (checks.N_EFFECTIVE_DRIFT, checks.UNIVERSE_CHANGE, checks.NAN_RATE_DRIFT)


def _manifest(home: Path, run_id: str | None = None) -> dict:
    found = sorted((home / "artifacts" / "runs").glob(f"{run_id or '*'}/manifest.json"))
    assert len(found) == 1, found
    return json.loads(found[0].read_text())


# "... - parity_all - <run_id> - <pid> - <step_key> - STEP_START - ..." in a worker's log
STEP_START = re.compile(r" - parity_all - ([0-9a-f-]{36}) - (\d+) - (\S+) - STEP_START - ")


def _ranking_part_started(cluster, launched, earlier_runs: set[str]) -> tuple[str, int, str]:
    """Wait until a worker starts the first ranking part of the new run: (run_id, the pid
    computing it, step key)."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and launched.poll() is None:
        for name in sorted(cluster.workers):
            text = cluster.worker_log(name).read_text(errors="replace")
            for run_id, pid, step in STEP_START.findall(text):
                if run_id not in earlier_runs and "rank_targets_part" in step:
                    time.sleep(1)  # inside the step's work, not its start
                    return run_id, int(pid), step
        time.sleep(0.2)
    raise AssertionError("no ranking part started on a worker")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _status(cluster, run_id: str) -> list[list[str]]:
    return cluster.pg.query(f"SELECT status FROM runs WHERE run_id = '{run_id}'")


@pytest.fixture(scope="module")
def cluster_run(small_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("cluster")
    with local_cluster(root) as cluster:
        code, output = cluster.run_pipeline(small_dataset)
        assert code == 0, output[-6000:]
        manifest = _manifest(cluster.parity_home)
        run_id = manifest["run_id"]
        facts = {
            "manifest": manifest,
            "steps_by_worker": cluster.steps_by_worker(),
            "run_status": _status(cluster, run_id),
            "steps_done": {row[0] for row in cluster.pg.query(
                "SELECT step_key FROM event_logs WHERE dagster_event_type = 'STEP_SUCCESS' "
                f"AND run_id = '{run_id}'")},
            "part_log_lines": [row[0] for row in cluster.pg.query(
                "SELECT event FROM event_logs WHERE dagster_event_type IS NULL "
                f"AND run_id = '{run_id}' AND step_key LIKE '%\\_part[%'")],
            "worker_logs": "".join(cluster.worker_log(name).read_text(errors="replace")
                                   for name in sorted(cluster.workers)),
            "check_rows": cluster.pg.query(
                f"SELECT count(*) FROM asset_check_executions WHERE run_id = '{run_id}'"),
            "timing": step_timing(cluster.pg, run_id),
            "pids": [process.pid for process in cluster.workers.values()],
            "postgres_port": cluster.pg.port,
        }

        launched = cluster.launch(small_dataset)
        restarted_run, _, step = _ranking_part_started(cluster, launched, {run_id})
        running_at_restart = launched.poll() is None
        cluster.redis.restart(down_s=5)
        output, _ = launched.communicate(timeout=900)
        names = ", ".join(f"'{name}'" for name in DRIFT_CHECKS)
        facts["restarted"] = {
            "exit_code": launched.returncode, "output": output, "step": step,
            "running_at_restart": running_at_restart, "status": _status(cluster, restarted_run),
            "manifest": _manifest(cluster.parity_home, restarted_run),
            "worker_logs": "".join(cluster.worker_log(name).read_text(errors="replace")
                                   for name in sorted(cluster.workers)),
            "steps_done": [row[0] for row in cluster.pg.query(
                "SELECT step_key FROM event_logs WHERE dagster_event_type = 'STEP_SUCCESS' "
                f"AND run_id = '{restarted_run}'")],
            "drift_checks": cluster.pg.query(
                "SELECT check_name, execution_status, "
                f"position('{run_id}' in evaluation_event) > 0 FROM asset_check_executions "
                f"WHERE run_id = '{restarted_run}' AND check_name IN ({names})"),
            "diff": parity_cli(cluster.parity_home, "diff", run_id, restarted_run, "--json",
                               env={**cluster.pg.env(),
                                    "DAGSTER_HOME": cluster.env["DAGSTER_HOME"]})}

        launched = cluster.launch(small_dataset)
        killed_run, pid, killed_step = _ranking_part_started(cluster, launched,
                                                            {run_id, restarted_run})
        os.kill(pid, signal.SIGKILL)
        output, _ = launched.communicate(timeout=900)
        facts["killed"] = {
            "exit_code": launched.returncode, "output": output, "step": killed_step,
            "status": _status(cluster, killed_run),
            "manifest": (cluster.parity_home / "artifacts" / "runs" / killed_run /
                         "manifest.json").exists(),
            "indexes": "".join(path.read_text() for path in sorted(
                (cluster.parity_home / "artifacts" / "globals").glob("*.json"))),
            "run_id": killed_run}
    return facts


@pytest.fixture(scope="module")
def in_process(small_dataset, tmp_path_factory):
    home = tmp_path_factory.mktemp("cluster_reference") / "home"
    run = parity_run(home, "--data", str(small_dataset), "--workers", "1")
    assert run.outcome is not None and run.exit_code == 0, run.stdout + run.stderr
    return _manifest(home)


def test_a_celery_run_gives_the_in_process_answers(cluster_run, in_process):
    cluster = cluster_run["manifest"]
    assert cluster["run_id"] != in_process["run_id"]
    for field in ("fingerprints", "inputs", "snapshots", "snapshot_counts", "data_fingerprint",
                  "per_symbol_stats", "train_seed"):
        assert cluster[field] == in_process[field], field
    assert cluster["snapshot_counts"]["TRAINING"] > 0


def test_the_steps_ran_on_both_workers(cluster_run):
    by_worker = cluster_run["steps_by_worker"]
    assert len(by_worker) == 2 and all(by_worker.values()), by_worker
    ran = [step for steps in by_worker.values() for step in steps]
    assert len(ran) == len(set(ran)), "a step succeeded on two workers"
    assert set(ran) == cluster_run["steps_done"]
    assert {"sampled_data", "snapshots"} <= set(ran)
    assert any("_part[part_" in step for step in ran)


def test_the_step_logs_in_postgresql_name_the_worker_process(cluster_run):
    """What the UI shows of a part step names the worker's host and process."""
    named = {int(pid) for line in cluster_run["part_log_lines"]
             for pid in re.findall(r" pid (\d+)\b", line)}
    started = {int(pid) for run_id, pid, step in STEP_START.findall(cluster_run["worker_logs"])
               if run_id == cluster_run["manifest"]["run_id"] and "_part[" in step}
    assert len(started) == 2, started  # one pool process per worker
    assert named == started


def test_the_run_and_its_checks_are_recorded_in_postgresql(cluster_run):
    assert cluster_run["run_status"] == [["SUCCESS"]]
    assert int(cluster_run["check_rows"][0][0]) > 0


def test_the_run_timing_is_read_from_its_events_in_postgresql(cluster_run):
    timing = cluster_run["timing"]
    assert timing.steps == len(cluster_run["steps_done"])
    assert 0 < timing.compute_s and 0 < timing.run_wall_s
    assert 0 <= timing.wait_median_s <= timing.wait_max_s < timing.run_wall_s
    assert f"{timing.steps} steps computed" in timing.text()


def test_every_process_of_the_cluster_is_gone(cluster_run):
    assert not [pid for pid in cluster_run["pids"] if _alive(pid)]
    assert not port_open(cluster_run["postgres_port"])


def test_a_killed_worker_process_fails_the_run_clearly_and_publishes_nothing(cluster_run):
    killed = cluster_run["killed"]
    assert killed["exit_code"] != 0
    assert killed["status"] == [["FAILURE"]]
    assert "WorkerLostError" in killed["output"] and killed["step"] in killed["output"]
    assert not killed["manifest"]
    assert killed["run_id"] not in killed["indexes"]
    assert cluster_run["manifest"]["run_id"] in killed["indexes"]  # the good run is history


def test_a_broker_restart_mid_step_leaves_the_run_successful_and_identical(cluster_run):
    restarted = cluster_run["restarted"]
    assert restarted["running_at_restart"], "the run ended before Redis went down"
    assert "Connection to broker lost" in restarted["worker_logs"]
    assert restarted["exit_code"] == 0, restarted["output"][-6000:]
    assert restarted["status"] == [["SUCCESS"]]
    starts = [step for run_id, _, step in STEP_START.findall(restarted["worker_logs"])
              if run_id == restarted["manifest"]["run_id"]]
    assert len(starts) == len(set(starts)), "a step ran twice after the restart"
    assert sorted(starts) == sorted(restarted["steps_done"]) == sorted(cluster_run["steps_done"])
    for field in ("fingerprints", "inputs", "data_fingerprint", "train_seed"):
        assert restarted["manifest"][field] == cluster_run["manifest"][field], field
    # the same snapshot objects; each path's sequence number counts the runs that wrote it
    assert ({path: entry["object"] for path, entry in restarted["manifest"]["snapshots"].items()}
            == {path: entry["object"] for path, entry in
                cluster_run["manifest"]["snapshots"].items()})


def test_drift_checks_and_diff_read_the_cluster_history_from_postgresql(cluster_run):
    drift = cluster_run["restarted"]["drift_checks"]
    assert {row[0] for row in drift} == set(DRIFT_CHECKS)
    # each passed, comparing against the first cluster run, found in PostgreSQL
    assert all(row[1] == "SUCCEEDED" and row[2] == "t" for row in drift), drift
    diff = cluster_run["restarted"]["diff"]
    assert diff.returncode == 0, diff.stdout + diff.stderr
    report = json.loads(diff.stdout)
    assert report["run_a"] == cluster_run["manifest"]["run_id"]
    assert report["compared"] > 0 and report["identical"] == report["compared"]
