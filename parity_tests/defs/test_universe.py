"""A symbol removed between two runs on the same dataset: a WARN check naming it, an alert,
and the cause `universe` in `parity diff` (a universe change starts new comparison groups, so
no drift check would see it)."""

import json
import shutil

import pytest

from parity_tests.helpers import (
    IN_PROCESS,
    failed_checks_besides_no_model,
    parity_cli,
    parity_run,
    read_alerts,
)

pytestmark = pytest.mark.slow
SHORT = ("--max-rows-per-symbol", "800")


def test_a_removed_symbol_is_warned_alerted_and_diffed_as_universe(small_dataset, tmp_path):
    data, home = tmp_path / "data", tmp_path / "home"
    shutil.copytree(small_dataset, data)
    before = parity_run(home, "--data", str(data), *SHORT, *IN_PROCESS)
    assert before.exit_code == 0 and all(c.passed for c in before.outcome.checks)
    shutil.rmtree(data / "interval=5m" / "symbol=NVDA")
    after = parity_run(home, "--data", str(data), *SHORT, *IN_PROCESS)
    assert after.exit_code == 0, after.stdout[-2000:]  # a WARN: the run is not failed
    failed = failed_checks_besides_no_model(after)
    assert failed == [("sampled_data", "universe_change", "WARN")]
    alerts = [a for a in read_alerts(home) if a["kind"] == "check_failed"
              and a["check"] != "models_trained"]
    assert [a["check"] for a in alerts] == ["universe_change"]
    assert alerts[0]["metadata"]["removed"] == ["NVDA"] and alerts[0]["metadata"]["added"] == []
    assert alerts[0]["metadata"]["previous_run_id"] == before.outcome.run_id
    diffed = parity_cli(home, "diff", "--json")
    report = json.loads(diffed.stdout)
    assert "universe" in report["cause_counts"], report["cause_counts"]
    assert report["per_symbol_changes"] == {"NVDA": "800 -> -"}
