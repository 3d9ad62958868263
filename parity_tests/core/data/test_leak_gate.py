"""The pre-launch leak gate (core/data/leak_gate): a declared feature that nearly copies a target or
a label-side column is refused by `parity run` (exit 2, one paragraph naming both columns,
nothing run), and by the sampling step that UI runs go through; a feature that merely predicts
one is not."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parity_pipeline.cli import main as cli
from parity_pipeline.core.data.leak_gate import abs_correlations, near_copies
from parity_pipeline.core.data.registry import load_registry, registry_from_dict
from parity_pipeline.core.data.sampling import check_window_values, read_symbol_table, symbol_file
from parity_pipeline.core.errors import ParityInputError
from parity_tests.e2e.test_bad_inputs import INPUT, _assert_one_paragraph
from parity_tests.helpers import use_home

COPY = "flow_copy_1h"  # named like a real feature: only its values give it away


def _declare_copy_of(data: Path, column: str) -> None:
    """Every symbol gets ``COPY`` = ``column`` * 1.01 + tiny noise, declared as a feature."""
    rng = np.random.default_rng(0)
    for path in sorted(data.glob("interval=5m/symbol=*/*.parquet")):
        table = pq.read_table(path)
        values = table.column(column).to_numpy(zero_copy_only=False)
        copy = values * 1.01 + 1e-7 * rng.standard_normal(len(values))
        pq.write_table(table.append_column(COPY, pa.array(copy)), path, row_group_size=10_000)
    registry_path = data / "feature_registry.json"
    registry = json.loads(registry_path.read_text())
    registry["columns"].append({"name": COPY, "role": "feature", "timeframe": "1h",
                                "lookback_bars": 12})
    registry_path.write_text(json.dumps(registry))


def _run_outputs(home: Path) -> list[Path]:
    """Whatever a launched run would leave: run views, stored objects, step hand-offs, runs."""
    folders = ("artifacts/runs", "artifacts/objects", "artifacts/steps", "dagster/history")
    return [path for folder in folders for path in sorted((home / folder).rglob("*"))]


@pytest.mark.parametrize(("column", "role"), [("fwd_ret_60m", "target"),
                                              ("fwd_high_60m", "label-side column")])
def test_parity_run_refuses_a_near_copy_before_launch(dataset_copy, tmp_path, monkeypatch,
                                                      capsys, column, role):
    _declare_copy_of(dataset_copy, column)
    home = tmp_path / "home"
    use_home(monkeypatch, home)

    assert cli.main(["run", "--data", str(dataset_copy)]) == INPUT
    _assert_one_paragraph(capsys.readouterr().err, (
        rf"symbol AAPL: \S+AAPL\.parquet feature '{COPY}' nearly copies {role} '{column}': "
        r"\|correlation\| 1\.0000 on the \d+ rows of the window where both are present \(limit "
        r"0\.95\); .* remove it from the features of \S+feature_registry\.json, or give it the "
        r"role raw; nothing was run"))
    assert _run_outputs(home) == [], "nothing was launched, nothing written"


def test_the_sampling_step_refuses_it_too(dataset_copy):
    """Runs launched from the UI or the schedule skip preflight: sampled_data reads each
    symbol's window with read_symbol_table, which applies the same gate."""
    _declare_copy_of(dataset_copy, "fwd_ret_60m")
    registry = load_registry(dataset_copy)
    with pytest.raises(ParityInputError, match=rf"feature '{COPY}' nearly copies target"):
        read_symbol_table(symbol_file(dataset_copy, "5m", "AAPL"), "AAPL", registry, 2000)


# --- the gate on hand-built windows ----------------------------------------------------------

N_ROWS = 2000


def _window(**columns: np.ndarray) -> pa.Table:
    ts = pd.date_range("2024-01-02 14:30", periods=N_ROWS, freq="5min", tz="UTC")
    return pa.table({"ts": pa.array(ts), **{name: pa.array(values, pa.float64())
                                           for name, values in columns.items()}})


def _registry(features: list[str]):
    columns = [{"name": "ts", "role": "timestamp"},
               {"name": "fwd_ret_60m", "role": "target", "task": "regression",
                "horizon_bars": 12, "horizon_minutes": 60},
               {"name": "fwd_high_60m", "role": "label_side", "horizon_minutes": 60}]
    columns += [{"name": name, "role": "feature", "timeframe": "1h", "lookback_bars": 12}
                for name in features]
    return registry_from_dict({"interval": "5m", "bar_minutes": 5, "columns": columns})


def _correlated(target: np.ndarray, rho: float, rng: np.random.Generator) -> np.ndarray:
    return rho * target + np.sqrt(1 - rho ** 2) * rng.standard_normal(len(target))


@pytest.mark.parametrize(("rho", "refused"), [(0.3, False), (0.5, False), (0.9, False),
                                              (0.97, True), (-0.97, True)])
def test_only_a_near_copy_is_refused(rho, refused):
    """A strong signal (|corr| 0.5, even 0.9) is a forecast, not a copy; 0.97 is refused,
    whatever the sign."""
    rng = np.random.default_rng(7)
    target = rng.standard_normal(N_ROWS)
    signal = _correlated(target, rho, rng)
    window = _window(fwd_ret_60m=target, fwd_high_60m=np.abs(rng.standard_normal(N_ROWS)),
                     sig_1h=signal, noise_1=rng.standard_normal(N_ROWS))
    registry = _registry(["noise_1", "sig_1h"])
    if not refused:
        check_window_values(window, Path("S.parquet"), "S", registry)
        assert near_copies(window, registry) == []
        return
    expected = abs(np.corrcoef(signal, target)[0, 1])  # the reference: numpy's Pearson
    with pytest.raises(ParityInputError, match=rf"symbol S: S\.parquet feature 'sig_1h' nearly "
                                               rf"copies target 'fwd_ret_60m': \|correlation\| "
                                               rf"{expected:.4f} on the 2000 rows"):
        check_window_values(window, Path("S.parquet"), "S", registry)


def test_identical_values_are_named_and_every_copy_is_listed():
    rng = np.random.default_rng(3)
    high = np.abs(rng.standard_normal(N_ROWS))
    target = rng.standard_normal(N_ROWS)
    window = _window(fwd_ret_60m=target, fwd_high_60m=high, a_copy=high.copy(),
                     b_copy=-2 * target, noise_1=rng.standard_normal(N_ROWS))
    registry = _registry(["a_copy", "b_copy", "noise_1"])
    found = near_copies(window, registry)
    assert [(c.feature, c.label, c.identical) for c in found] == [
        ("a_copy", "fwd_high_60m", True), ("b_copy", "fwd_ret_60m", False)]
    with pytest.raises(ParityInputError, match=r"feature 'a_copy' nearly copies label-side "
                                               r"column 'fwd_high_60m': identical values .*"
                                               r"other near copies: b_copy;"):
        check_window_values(window, Path("S.parquet"), "S", registry)


def test_too_few_overlapping_rows_say_nothing():
    """A copy seen on fewer than 30 rows where both are present is not judged."""
    rng = np.random.default_rng(5)
    target = np.full(N_ROWS, np.nan)
    target[:20] = rng.standard_normal(20)
    window = _window(fwd_ret_60m=target, sig_1h=np.where(np.isnan(target), 0.1 * np.arange(
        N_ROWS), target))
    assert near_copies(window, _registry(["sig_1h"])) == []


def test_correlations_match_pandas_pairwise_corr():
    """The matrix form equals pandas' pairwise-complete Pearson correlation (the reference),
    with NaN scattered, a column constant, and too few shared rows for one pair."""
    rng = np.random.default_rng(11)
    features = rng.standard_normal((500, 4)) + [0, 100, -3, 1e3]  # offsets: precision kept
    features[:, 3] = 2 * features[:, 0] + 0.01 * rng.standard_normal(500)
    labels = np.column_stack([features[:, 0] + rng.standard_normal(500),
                              np.full(500, 4.0), rng.standard_normal(500)])
    features[rng.random(features.shape) < 0.2] = np.nan
    labels[rng.random(labels.shape) < 0.3] = np.nan
    labels[25:, 2] = np.nan  # at most 25 rows shared with any feature
    corr, rows = abs_correlations(features, labels, min_rows=30)
    reference = pd.DataFrame(np.column_stack([features, labels])).corr(min_periods=30)
    np.testing.assert_allclose(corr, reference.abs().to_numpy()[:4, 4:], atol=1e-12)
    assert np.isnan(corr[:, 1:]).all() and not np.isnan(corr[:, 0]).any()
    assert rows[0, 0] == np.sum(~np.isnan(features[:, 0]) & ~np.isnan(labels[:, 0]))
