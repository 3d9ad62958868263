"""A production instance: ``docs/dagster.postgres.yaml`` against a real PostgreSQL server.

The module starts its own server from Debian's binaries (``/usr/lib/postgresql/*/bin``, installed
by ``make postgres``): a cluster in a fresh folder, listening on 127.0.0.1 on a free port (and a
unix socket in that folder), with a password role and database for parity. The documented
dagster.yaml is copied unchanged into a private PARITY_HOME and configured only through the
``DAGSTER_PG_*`` variables. Two ``parity run``s (the second after truncating one symbol) then
show that runs, events and asset-check evaluations live in PostgreSQL and that the drift checks,
the alert sensor, ``parity runs`` and ``parity diff`` read their history from it. The server is
stopped (``pg_ctl stop -m fast``) and checked to be gone at the end.

PostgreSQL refuses to run as root, so as root the server tools run as the ``postgres`` user
that Debian's package creates, in a folder under /tmp that user owns (pytest's own temporary
folders are private to root).
"""

import json
import shutil

import dagster as dg
import pytest

from parity_pipeline.devcluster import postgres_server
from parity_tests.helpers import (
    PROJECT,
    parity_cli,
    parity_run,
    read_alerts,
    truncate_symbol,
)

pytestmark = pytest.mark.slow

DOCS_YAML = PROJECT / "docs" / "dagster.postgres.yaml"


@pytest.fixture(scope="session")
def pg_history(small_dataset, tmp_path_factory):
    """Two runs in one PARITY_HOME whose instance is the documented PostgreSQL dagster.yaml."""
    data = tmp_path_factory.mktemp("pg_data") / "data"
    shutil.copytree(small_dataset, data)
    home = tmp_path_factory.mktemp("pg_home") / "home"
    (home / "dagster").mkdir(parents=True)
    shutil.copyfile(DOCS_YAML, home / "dagster" / "dagster.yaml")
    with postgres_server() as server, pytest.MonkeyPatch.context() as env:
        for name, value in server.env().items():  # the test's own instance reads them too
            env.setenv(name, value)
        env.delenv("DAGSTER_HOME", raising=False)
        baseline = parity_run(home, "--data", str(data), env=server.env())
        truncate_symbol(data, "MSFT", 1500)
        truncated = parity_run(home, "--data", str(data), env=server.env())
        yield {"server": server, "home": home, "baseline": baseline, "truncated": truncated}


def _ids(history) -> tuple[str, str]:
    for key in ("baseline", "truncated"):
        run = history[key]
        assert run.outcome is not None, run.stdout + run.stderr
    return history["baseline"].outcome.run_id, history["truncated"].outcome.run_id


def test_baseline_run_passes(pg_history):
    run = pg_history["baseline"]
    assert run.exit_code == 0, run.stdout + run.stderr
    assert run.outcome.checks and all(c.passed for c in run.outcome.checks)


def test_truncated_run_fails_n_effective_drift(pg_history):
    run = pg_history["truncated"]
    assert run.exit_code == 1, run.stdout + run.stderr
    failed = {(c.asset, c.check) for c in run.outcome.checks if not c.passed}
    assert ("sampled_data", "n_effective_drift") in failed
    assert "FAILED [ERROR] sampled_data:n_effective_drift" in run.stdout
    # Every stage's n_effective_parity compares with the sampled_data materialization it reads
    # from the instance (checks.panel_reference): they pass, so that read found this run's.
    assert {check for _, check in failed} == {"n_effective_drift"}
    parity = [c for c in run.outcome.checks if c.check == "n_effective_parity"]
    assert len(parity) >= 4 and all(c.passed for c in parity)


def test_the_instance_is_postgres_and_holds_the_history(pg_history):
    server, home = pg_history["server"], pg_history["home"]
    first, second = _ids(pg_history)
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert {r.run_id for r in instance.get_runs()} >= {first, second}
    # Nothing fell back to the embedded default: no SQLite file anywhere in the instance folder.
    assert not [p for p in (home / "dagster").rglob("*") if p.suffix in {".db", ".sqlite"}]
    rows = dict(server.query("SELECT run_id, status FROM runs"))
    # the truncated run's failed ERROR check turned it red through the run gate
    assert rows[first] == "SUCCESS" and rows[second] == "FAILURE"
    gate = server.query(f"SELECT value FROM run_tags WHERE run_id = '{second}' "
                        "AND key = 'parity/checks'")
    assert [r[0] for r in gate] == ["failed"]
    materialized = server.query(
        "SELECT run_id FROM event_logs WHERE dagster_event_type = 'ASSET_MATERIALIZATION' "
        "AND asset_key = '[\"sampled_data\"]' ORDER BY id")
    assert [r[0] for r in materialized] == [first, second]
    failed = server.query(
        "SELECT run_id, check_name FROM asset_check_executions "
        "WHERE asset_key = '[\"sampled_data\"]' AND execution_status = 'FAILED'")
    assert [second, "n_effective_drift"] in failed
    assert all(run_id == second for run_id, _ in failed)


def test_alert_sensor_reads_check_history_from_postgres(pg_history):
    server, home = pg_history["server"], pg_history["home"]
    _, second = _ids(pg_history)
    alerts = [a for a in read_alerts(home)
              if a.get("kind") == "check_failed" and a["check"] == "n_effective_drift"]
    sampled = [a for a in alerts if a["asset"] == "sampled_data"]
    assert len(sampled) == 1 and sampled[0]["run_id"] == second
    assert sampled[0]["metadata"]["changed_symbols"] == {"MSFT": "2000 -> 1500"}
    assert sampled[0]["severity"] == "ERROR"
    # The alert's record id is the evaluation's row in PostgreSQL's asset_check_executions.
    record_id = int(sampled[0]["record_id"])
    [row] = server.query("SELECT asset_key, check_name, run_id, execution_status FROM "
                         f"asset_check_executions WHERE id = {record_id}")
    assert row == ['["sampled_data"]', "n_effective_drift", second, "FAILED"]


def test_runs_lists_both_runs_from_postgres(pg_history):
    first, second = _ids(pg_history)
    done = parity_cli(pg_history["home"], "runs", env=pg_history["server"].env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert first in done.stdout and second in done.stdout
    assert "sampled_data:n_effective_drift[ERROR]" in done.stdout


def test_diff_reports_the_truncated_symbol_as_data(pg_history):
    home, env = pg_history["home"], pg_history["server"].env()
    first, second = _ids(pg_history)
    done = parity_cli(home, "diff", first, second, "--json", env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    report = json.loads(done.stdout)
    assert report["per_symbol_changes"] == {"MSFT": "2000 -> 1500"}
    assert set(report["cause_counts"]) == {"data"}
    # Without run ids, diff takes the last two runs from the instance's run list.
    latest = json.loads(parity_cli(home, "diff", "--json", env=env).stdout)
    assert (latest["run_a"], latest["run_b"]) == (first, second)
    assert latest["per_symbol_changes"] == {"MSFT": "2000 -> 1500"}
