"""Drift injected on purpose, end to end through `parity run`, alerts and `parity diff`."""

import json

import dagster as dg
import pytest

from parity_pipeline.cli.reports import runs_with_snapshots
from parity_tests.helpers import (
    IN_PROCESS,
    parity_cli,
    parity_run,
    read_alerts,
    read_json,
    truncate_symbol,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def drift_history(small_dataset, tmp_path_factory):
    """Three runs in one PARITY_HOME: baseline, one symbol truncated, then seed 7."""
    import shutil

    data = tmp_path_factory.mktemp("drift") / "data"
    shutil.copytree(small_dataset, data)
    home = tmp_path_factory.mktemp("drift_home") / "home"
    baseline = parity_run(home, "--data", str(data), *IN_PROCESS)
    truncate_symbol(data, "MSFT", 1500)
    truncated = parity_run(home, "--data", str(data), *IN_PROCESS)
    alerts_after_truncation = read_alerts(home)
    reseeded = parity_run(home, "--data", str(data), "--base-seed", "7", *IN_PROCESS)
    return {"home": home, "data": data, "baseline": baseline, "truncated": truncated,
            "reseeded": reseeded, "alerts_after_truncation": alerts_after_truncation}


def test_baseline_passes(drift_history):
    run = drift_history["baseline"]
    assert run.exit_code == 0, run.stdout + run.stderr
    assert run.outcome.checks and all(c.passed for c in run.outcome.checks)
    baseline_alerts = [a for a in read_alerts(drift_history["home"])
                       if a.get("run_id") == run.outcome.run_id]
    assert baseline_alerts == []


def test_truncated_symbol_fails_n_effective_drift_and_alerts(drift_history):
    run = drift_history["truncated"]
    assert run.exit_code == 1, run.stdout
    failed = {(c.asset, c.check) for c in run.outcome.checks if not c.passed}
    assert ("sampled_data", "n_effective_drift") in failed
    alerts = [a for a in drift_history["alerts_after_truncation"]
              if a.get("kind") == "check_failed" and a["check"] == "n_effective_drift"]
    assert alerts and alerts[0]["run_id"] == run.outcome.run_id
    sampled = next(a for a in alerts if a["asset"] == "sampled_data")
    assert sampled["metadata"]["changed_symbols"] == {"MSFT": "2000 -> 1500"}
    assert sampled["severity"] == "ERROR"


def test_failed_error_check_makes_the_run_visibly_failed_yet_complete(drift_history):
    run = drift_history["truncated"]
    assert run.outcome.summary.splitlines()[0].endswith("CHECKS FAILED")
    with dg.DagsterInstance.from_config(str(drift_history["home"] / "dagster")) as instance:
        record = instance.get_run_by_id(run.outcome.run_id)
        # red in the runs list, tagged by the run gate; its snapshots are still history
        assert record.status == dg.DagsterRunStatus.FAILURE
        assert record.tags["parity/checks"] == "failed"
        assert run.outcome.run_id in runs_with_snapshots(instance)
    listed = parity_cli(drift_history["home"], "runs").stdout
    assert listed.split(run.outcome.run_id, 1)[1].split()[1] == "FAILURE"
    # the gate's failure is not alerted twice: the failed checks were
    assert not [a for a in drift_history["alerts_after_truncation"]
                if a["kind"] == "run_failed"]


def test_diff_names_the_symbol_count_and_data_cause(drift_history):
    home = drift_history["home"]
    a = drift_history["baseline"].outcome.run_id
    b = drift_history["truncated"].outcome.run_id
    done = parity_cli(home, "diff", a, b)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "MSFT 2000 -> 1500" in done.stdout
    report = json.loads(parity_cli(home, "diff", a, b, "--json").stdout)
    assert report["per_symbol_changes"] == {"MSFT": "2000 -> 1500"}
    assert set(report["cause_counts"]) == {"data"}
    assert {u["first_divergence"] for u in report["units"]} == {"data window"}


def test_seed_change_is_flagged_as_warn_and_alerted(drift_history):
    run = drift_history["reseeded"]
    seed_checks = [c for c in run.outcome.checks if c.check == "train_seed_drift"]
    assert seed_checks and all(not c.passed and c.severity == "WARN" for c in seed_checks)
    alerts = [a for a in read_alerts(drift_history["home"]) if a.get("kind") == "check_failed"
              and a["check"] == "train_seed_drift" and a["run_id"] == run.outcome.run_id]
    assert alerts
    assert {a["metadata"]["previous_train_seed"] for a in alerts} == {42}
    assert {a["metadata"]["observed"] for a in alerts} == {7}


def test_seed_7_is_train_seed_everywhere(drift_history):
    home, run_id = drift_history["home"], drift_history["reseeded"].outcome.run_id
    for name in ("target_ranking_snapshot_index.json", "fs_snapshot_index.json",
                 "training_snapshot_index.json"):
        entries = [e for e in read_json(home / "artifacts" / "globals" / name)["entries"]
                   if e["run_id"] == run_id]
        assert entries and {e["train_seed"] for e in entries} == {7}, name


def test_diff_classifies_the_seed_change(drift_history):
    home = drift_history["home"]
    a = drift_history["truncated"].outcome.run_id
    b = drift_history["reseeded"].outcome.run_id
    report = json.loads(parity_cli(home, "diff", a, b, "--json").stdout)
    assert report["cause_counts"].get("seed", 0) > 0
    assert not set(report["cause_counts"]) - {"seed"}


def test_alerts_are_never_repeated(drift_history):
    ids = [a["record_id"] for a in read_alerts(drift_history["home"])
           if a["kind"] == "check_failed"]
    assert len(ids) == len(set(ids)) > 0


def test_runs_lists_every_run_with_failed_checks(drift_history):
    done = parity_cli(drift_history["home"], "runs")
    assert done.returncode == 0
    for key in ("baseline", "truncated", "reseeded"):
        assert drift_history[key].outcome.run_id in done.stdout
    assert "sampled_data:n_effective_drift[ERROR]" in done.stdout


def test_diff_rejects_unknown_run(drift_history):
    done = parity_cli(drift_history["home"], "diff", "nope", "nada")
    assert done.returncode == 2
    assert "unknown" in done.stderr and "Traceback" not in done.stderr


def test_identical_rerun_diffs_clean_with_output_parity(drift_history):
    home, data = drift_history["home"], drift_history["data"]
    again = parity_run(home, "--data", str(data), "--base-seed", "7", *IN_PROCESS)
    parity = [c for c in again.outcome.checks if c.check == "output_parity"]
    assert parity and parity[0].passed
    done = parity_cli(home, "diff", drift_history["reseeded"].outcome.run_id,
                      again.outcome.run_id)
    assert done.returncode == 0, done.stdout
    assert "identical" in done.stdout
