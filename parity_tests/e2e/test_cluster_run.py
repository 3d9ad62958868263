"""A real cluster run: the Celery executor, two dagster-celery workers, Redis as the broker and
PostgreSQL as the instance, all on this machine (``parity_pipeline.devcluster``).

The run must give the in-process run's answers (every stage artifact, snapshot and fingerprint),
its steps must have run on both workers, its history must be in PostgreSQL, and every process
the test started must be gone afterwards. A second run has the process computing a target step
SIGKILLed: it must fail, be marked failed, and publish nothing.
"""

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from parity_pipeline.devcluster import local_cluster, port_open
from parity_tests.helpers import parity_run

pytestmark = pytest.mark.slow


def _manifest(home: Path) -> dict:
    found = sorted((home / "artifacts" / "runs").glob("*/manifest.json"))
    assert len(found) == 1, found
    return json.loads(found[0].read_text())


# "... - parity_all - <run_id> - <pid> - <step_key> - STEP_START - ..." in a worker's log
STEP_START = re.compile(r" - parity_all - ([0-9a-f-]{36}) - (\d+) - (\S+) - STEP_START - ")


def _kill_a_target_step(cluster, launched, earlier_run: str) -> tuple[str, str]:
    """SIGKILL the worker process that runs the first ranking part of the new run: (run_id,
    step key)."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and launched.poll() is None:
        for name in sorted(cluster.workers):
            text = cluster.worker_log(name).read_text(errors="replace")
            for run_id, pid, step in STEP_START.findall(text):
                if run_id != earlier_run and "rank_targets_part" in step:
                    time.sleep(1)  # inside the step's work, not its start
                    os.kill(int(pid), signal.SIGKILL)
                    return run_id, step
        time.sleep(0.2)
    raise AssertionError("no ranking part started on a worker")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


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
            "run_status": cluster.pg.query(f"SELECT status FROM runs WHERE run_id = '{run_id}'"),
            "steps_done": {row[0] for row in cluster.pg.query(
                "SELECT step_key FROM event_logs WHERE dagster_event_type = 'STEP_SUCCESS' "
                f"AND run_id = '{run_id}'")},
            "check_rows": cluster.pg.query(
                f"SELECT count(*) FROM asset_check_executions WHERE run_id = '{run_id}'"),
            "pids": [process.pid for process in cluster.workers.values()],
            "postgres_port": cluster.pg.port,
        }
        launched = cluster.launch(small_dataset)
        killed_run, killed_step = _kill_a_target_step(cluster, launched, run_id)
        output, _ = launched.communicate(timeout=900)
        facts["killed"] = {
            "exit_code": launched.returncode, "output": output, "step": killed_step,
            "status": cluster.pg.query(
                f"SELECT status FROM runs WHERE run_id = '{killed_run}'"),
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


def test_the_run_and_its_checks_are_recorded_in_postgresql(cluster_run):
    assert cluster_run["run_status"] == [["SUCCESS"]]
    assert int(cluster_run["check_rows"][0][0]) > 0


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
