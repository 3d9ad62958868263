"""NaN rates per symbol and column are recorded, checked against the previous run (WARN
``nan_rate_drift``, alerted) and named by `parity diff` (issue 14: a burst of NaN in 5
features over 300 rows of one symbol kept n_effective and every count the same, so nothing
checked saw it and `parity diff` only said "data")."""

import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parity_pipeline.core.data.registry import load_registry, registry_from_dict
from parity_pipeline.core.data.sampling import read_symbol_window, symbol_file
from parity_pipeline.core.errors import ParityInputError
from parity_pipeline.core.repro.checks import WARN, nan_rate_changes, nan_rate_drift
from parity_pipeline.core.repro.diff import RunSide, compare_runs, render_text
from parity_tests.helpers import (
    IN_PROCESS,
    failed_checks_besides_no_model,
    parity_cli,
    parity_run,
    read_alerts,
    read_json,
    run_dir_of,
)

BURST_COLUMNS = ["flow_imb_5m", "noise_1", "noise_2", "ret_1h", "vol_15m"]
WINDOW, BURST = 800, 300


def _nan_burst(data: Path, symbol: str, columns: list[str], window: int, rows: int) -> None:
    """NaN in ``columns`` on ``rows`` rows in the middle of the symbol's last ``window`` rows
    (after each feature's first value: gaps, as a halted feed would leave)."""
    path = symbol_file(data, "5m", symbol)
    frame = pq.read_table(path).to_pandas().sort_values("ts", ignore_index=True)
    start = len(frame) - window + (window - rows) // 2
    frame.loc[start:start + rows - 1, columns] = np.nan
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path,
                   row_group_size=10_000)


# --- the recorded rates -------------------------------------------------------------------------

def test_window_records_the_nan_rate_of_every_feature_and_target(dataset_copy):
    _nan_burst(dataset_copy, "AAPL", ["noise_1", "ret_1h"], window=500, rows=30)
    registry = load_registry(dataset_copy)
    window, stats = read_symbol_window(symbol_file(dataset_copy, "5m", "AAPL"), "AAPL",
                                       registry, 500)
    declared = sorted(set(registry.feature_names) | set(registry.target_names))
    assert list(stats.nan_rates) == declared  # sorted, every feature and target
    # against pandas on the window it returned
    expected = {name: round(float(window[name].isna().mean()), 6) for name in declared}
    assert stats.nan_rates == expected
    assert stats.nan_rates["noise_1"] == stats.nan_rates["ret_1h"] == 0.06
    assert stats.nan_rates["noise_2"] == 0.0
    assert stats.nan_rates["fwd_ret_60m"] == round(12 / 500, 6)  # its last 12 bars: no future
    again = read_symbol_window(symbol_file(dataset_copy, "5m", "AAPL"), "AAPL", registry, 500)
    assert json.dumps(again[1].nan_rates) == json.dumps(stats.nan_rates)


# --- the check ----------------------------------------------------------------------------------

PREVIOUS = {"AAPL": {"noise_1": 0.0, "ret_1h": 0.0, "fwd_ret_60m": 0.006},
            "MSFT": {"noise_1": 0.0, "ret_1h": 0.01, "fwd_ret_60m": 0.006}}


def test_no_previous_run_passes():
    verdict = nan_rate_drift(PREVIOUS, None, None, 0.05)
    assert verdict.passed and verdict.severity == WARN
    assert "no previous run" in verdict.summary
    assert nan_rate_drift(PREVIOUS, {}, "r0", 0.05).passed  # a run that recorded none


def test_moves_within_the_threshold_pass():
    current = {"AAPL": {**PREVIOUS["AAPL"], "fwd_ret_60m": 0.008},
               "MSFT": {**PREVIOUS["MSFT"], "ret_1h": 0.06}}  # exactly 0.05: not more
    verdict = nan_rate_drift(current, PREVIOUS, "r0", 0.05)
    assert verdict.passed, verdict.summary
    assert verdict.metadata["changed"] == []


def test_a_burst_fails_as_warn_naming_symbol_column_and_both_rates():
    current = {"AAPL": {**PREVIOUS["AAPL"], "noise_1": 0.375, "ret_1h": 0.375},
               "MSFT": dict(PREVIOUS["MSFT"])}
    verdict = nan_rate_drift(current, PREVIOUS, "r0", 0.05)
    assert not verdict.passed and verdict.severity == WARN
    assert verdict.metadata["changed"] == [
        {"symbol": "AAPL", "column": "noise_1", "previous": 0.0, "current": 0.375},
        {"symbol": "AAPL", "column": "ret_1h", "previous": 0.0, "current": 0.375}]
    assert verdict.metadata["previous_run_id"] == "r0" and verdict.metadata["observed"] == 2
    assert "AAPL: noise_1 0.000 -> 0.375, ret_1h 0.000 -> 0.375" in verdict.summary
    assert "MSFT" not in verdict.summary


def test_symbols_and_columns_in_one_run_only_are_left_to_other_checks():
    current = {"AAPL": {"noise_1": 0.0, "new_col": 0.9}, "NVDA": {"noise_1": 0.9}}
    assert nan_rate_changes(PREVIOUS, current, 0.0) == []


def test_registry_max_nan_rate_change_is_read_and_hashed_only_when_present():
    columns = [{"name": "ts", "role": "timestamp"},
               {"name": "x", "role": "feature", "lookback_bars": 1},
               {"name": "fwd_y", "role": "target", "task": "regression", "horizon_bars": 1,
                "horizon_minutes": 5}]
    base = {"interval": "5m", "bar_minutes": 5, "columns": columns}
    default = registry_from_dict(base)
    assert default.max_nan_rate_change == 0.05
    set_to = registry_from_dict({**base, "max_nan_rate_change": 0.2})
    assert set_to.max_nan_rate_change == 0.2
    assert set_to.content_hash != default.content_hash
    with pytest.raises(ParityInputError, match="max_nan_rate_change must be a number in"):
        registry_from_dict({**base, "max_nan_rate_change": 2})


# --- parity diff --------------------------------------------------------------------------------

UNIT = {"stage": "TRAINING", "target": "fwd_ret_60m", "model_family": "lightgbm",
        "comparable_key": "c1", "replicate_key": "r1", "strict_key": "s1",
        "data_fingerprint": "d1", "model_artifact_sha256": "m1"}


def _units(data: str) -> list[dict]:
    return [{**UNIT, "view": "SYMBOL_SPECIFIC", "symbol": symbol, "data_fingerprint": data}
            for symbol in ("AAPL", "MSFT")] + [
        {**UNIT, "view": "CROSS_SECTIONAL", "symbol": None, "data_fingerprint": data}]


def _side(run_id: str, data: str, nan_rates: dict, aapl_n: int = 800) -> RunSide:
    return RunSide(run_id=run_id, snapshots=_units(data),
                   per_symbol_n={"AAPL": aapl_n, "MSFT": 800}, library_versions={},
                   git_commit="abc", settings={}, nan_rates=nan_rates)


def test_diff_names_symbol_and_columns_and_the_cause_nan_rates():
    current = {"AAPL": {**PREVIOUS["AAPL"], "noise_1": 0.15}, "MSFT": dict(PREVIOUS["MSFT"])}
    report = compare_runs(_side("a", "d1", PREVIOUS), _side("b", "d2", current))
    assert report.nan_rate_changes == {"AAPL": "noise_1 0.000 -> 0.150"}
    causes = {unit.unit: unit.cause for unit in report.units}
    assert causes == {"TRAINING fwd_ret_60m SYMBOL_SPECIFIC AAPL lightgbm": "nan_rates",
                      "TRAINING fwd_ret_60m SYMBOL_SPECIFIC MSFT lightgbm": "data",
                      "TRAINING fwd_ret_60m CROSS_SECTIONAL lightgbm": "nan_rates"}
    assert "NaN rates: AAPL: noise_1 0.000 -> 0.150" in render_text(report)


def test_diff_lists_small_moves_but_calls_them_data():
    # a window that lost rows: a target's last horizon bars weigh more, nothing else moved
    current = {"AAPL": {**PREVIOUS["AAPL"], "fwd_ret_60m": 0.008},
               "MSFT": dict(PREVIOUS["MSFT"])}
    report = compare_runs(_side("a", "d1", PREVIOUS), _side("b", "d2", current))
    assert report.nan_rate_changes == {"AAPL": "fwd_ret_60m 0.006 -> 0.008"}
    assert set(report.cause_counts) == {"data"}
    # a window cut short brings a long lookback's warm-up in: its length is the cause
    warm_up = {"AAPL": {**PREVIOUS["AAPL"], "ret_1h": 0.2}, "MSFT": dict(PREVIOUS["MSFT"])}
    shorter = compare_runs(_side("a", "d1", PREVIOUS), _side("b", "d2", warm_up, aapl_n=600))
    assert shorter.nan_rate_changes == {"AAPL": "ret_1h 0.000 -> 0.200"}
    assert set(shorter.cause_counts) == {"data"}
    same = compare_runs(_side("a", "d1", PREVIOUS), _side("b", "d1", PREVIOUS))
    assert not same.differs and same.nan_rate_changes == {}


# --- end to end ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_nan_burst_is_warned_alerted_and_diffed(small_dataset, tmp_path):
    data, home = tmp_path / "data", tmp_path / "home"
    shutil.copytree(small_dataset, data)
    registry_path = data / "feature_registry.json"
    # 300 NaN rows are 37.5% of an 800-row window: above the default 10% gap gate, which
    # would refuse the run; the burst must reach the window for the drift check to see it
    registry = read_json(registry_path)
    registry_path.write_text(json.dumps({**registry, "max_nan_rate": 0.5}), encoding="utf-8")
    args = ("--data", str(data), "--max-rows-per-symbol", str(WINDOW), "--symbols",
            "AAPL,MSFT")
    before = parity_run(home, *args, *IN_PROCESS)
    assert before.exit_code == 0 and not failed_checks_besides_no_model(before), before.stdout
    _nan_burst(data, "AAPL", BURST_COLUMNS, WINDOW, BURST)
    after = parity_run(home, *args, *IN_PROCESS)
    assert after.exit_code == 0, after.stdout[-2000:]  # a WARN: the run is not failed
    failed = failed_checks_besides_no_model(after)
    assert failed == [("sampled_data", "nan_rate_drift", "WARN")]  # counts did not move
    stats = [read_json(run_dir_of(run) / "metadata.json")["per_symbol_stats"]
             for run in (before, after)]
    assert {s: v["n"] for s, v in stats[0].items()} == {s: v["n"] for s, v in stats[1].items()}
    assert {c: stats[1]["AAPL"]["nan_rates"][c] for c in BURST_COLUMNS} == \
        dict.fromkeys(BURST_COLUMNS, BURST / WINDOW)

    alerts = [a for a in read_alerts(home) if a["kind"] == "check_failed"
              and a["check"] != "models_trained"]
    assert [a["check"] for a in alerts] == ["nan_rate_drift"]
    assert alerts[0]["severity"] == "WARN"
    assert alerts[0]["metadata"]["previous_run_id"] == before.outcome.run_id
    assert alerts[0]["metadata"]["changed"] == [
        {"symbol": "AAPL", "column": c, "previous": 0.0, "current": 0.375}
        for c in BURST_COLUMNS]
    assert "AAPL: " + ", ".join(f"{c} 0.000 -> 0.375" for c in BURST_COLUMNS) \
        in alerts[0]["description"]

    diffed = parity_cli(home, "diff")
    assert diffed.returncode == 1, diffed.stdout + diffed.stderr
    assert "NaN rates: AAPL: " + ", ".join(f"{c} 0.000 -> 0.375" for c in BURST_COLUMNS) \
        in diffed.stdout
    report = json.loads(parity_cli(home, "diff", "--json").stdout)
    assert "nan_rates" in report["cause_counts"], report["cause_counts"]
    assert report["per_symbol_changes"] == {}
