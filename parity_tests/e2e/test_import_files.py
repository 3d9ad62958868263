"""`parity data import` on files as people have them: the `backtesting` package's hourly EURUSD
(FX, one symbol, an unnamed time column) and daily GOOG, imported exactly as shipped; the
synthetic 5-minute sample written out as CSV / parquet and imported back (its features must
match the generator's where both define them the same way); close-only files, zero volume,
several files at once, local time zones."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from parity_pipeline.cli import main as cli
from parity_pipeline.core.data.importer import import_ohlcv
from parity_pipeline.core.data.registry import load_registry
from parity_pipeline.core.data.synth import synthesize_dataset
from parity_pipeline.core.errors import ParityInputError
from parity_tests.helpers import IN_PROCESS, parity_run, read_json, run_dir_of

pytest.importorskip("backtesting", reason="optional extra: pip install -e '.[real]'")
SHIPPED = Path(importlib.util.find_spec("backtesting").submodule_search_locations[0]) / "test"
PRICES = ["open", "high", "low", "close", "volume"]


def _target(registry, name: str):
    return next(spec for spec in registry.targets if spec.name == name)


def _import(tmp_path, *argv) -> tuple[int, Path]:
    out = tmp_path / "data"
    return cli.main(["data", "import", *argv, "--out", str(out)]), out


def test_hourly_eurusd_imports_as_shipped_as_1h_fx_bars(tmp_path, capsys):
    code, out = _import(tmp_path, "--input", str(SHIPPED / "EURUSD.csv"), "--symbol", "EURUSD")
    assert code == 0, capsys.readouterr().err
    assert "1 symbols (5000 1h bars" in capsys.readouterr().out
    registry = load_registry(out)
    assert registry.interval == "1h" and registry.bar_minutes == 60
    raw = pd.read_csv(SHIPPED / "EURUSD.csv", index_col=0, parse_dates=True)
    frame = pd.read_parquet(out / "interval=1h" / "symbol=EURUSD" / "EURUSD.parquet")
    # round-the-clock FX: a "day" is 24 hourly bars, measured from the data
    features = {c["name"]: c for c in json.loads(
        (out / "feature_registry.json").read_text())["columns"]}
    assert features["ret_1d"]["lookback_bars"] == 24 and features["ret_4h"]["lookback_bars"] == 4
    np.testing.assert_allclose(frame["ret_1d"], raw["Close"] / raw["Close"].shift(24) - 1)
    np.testing.assert_allclose(frame["fwd_ret_4h"], raw["Close"].shift(-4) / raw["Close"] - 1)
    # purges follow calendar time: one hourly bar can span a weekend (or a holiday)
    longest_step = raw.index.to_series().diff().max()
    assert _target(registry, "fwd_ret_1h").horizon_minutes == math.ceil(
        longest_step.total_seconds() / 60) >= 48 * 60
    assert set(registry.target_names) == {"fwd_ret_1h", "fwd_ret_4h", "fwd_ret_1d",
                                          "y_will_peak_4h_1sd", "y_will_valley_4h_1sd"}


def test_a_file_without_a_symbol_column_needs_symbol(tmp_path, capsys):
    code, out = _import(tmp_path, "--input", str(SHIPPED / "EURUSD.csv"))
    assert code == 2 and not out.exists()
    assert "EURUSD.csv has no symbol column" in capsys.readouterr().err


def test_daily_goog_imports_as_shipped_without_warnings(tmp_path, capsys):
    code, out = _import(tmp_path, "--input", str(SHIPPED / "GOOG.csv"), "--symbol", "GOOG")
    captured = capsys.readouterr()
    assert code == 0 and "warning" not in captured.err, captured.err
    registry = load_registry(out)
    assert registry.interval == "1d"
    assert {"fwd_ret_1d", "fwd_ret_5d", "fwd_ret_10d", "fwd_ret_20d"} <= set(
        registry.target_names)
    assert read_json(out / "dataset.json")["rows"] == {"GOOG": 2148}


def test_zero_volume_builds_no_volume_features_and_says_so(tmp_path, capsys):
    raw = pd.read_csv(SHIPPED / "EURUSD.csv").assign(Volume=0)
    path = tmp_path / "quotes.csv"
    raw.to_csv(path, index=False)
    code, out = _import(tmp_path, "--input", str(path), "--symbol", "EURUSD")
    assert code == 0
    assert "volume is 0 on every bar of a symbol: no volume features" in capsys.readouterr().err
    names = load_registry(out).feature_names
    assert names and not [n for n in names if n.startswith("volume")]


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return synthesize_dataset(tmp_path_factory.mktemp("synth") / "data", n_symbols=2,
                              n_rows=2000)


def _synth_frame(synth, symbol: str) -> pd.DataFrame:
    return pd.read_parquet(synth.out_dir / "interval=5m" / f"symbol={symbol}" / f"{symbol}.parquet")


# Columns both define the same way (the generator's volume features and EMAs differ), with the
# generator's name where it differs.
SAME_DEFINITION = {name: name for name in (
    "ret_5m", "ret_15m", "ret_1h", "ret_1d", "range_5m", "range_15m", "range_1h", "range_1d",
    "vol_15m", "vol_1h", "vol_1d", "close_pos_15m", "close_pos_1h", "close_pos_1d",
    "fwd_ret_15m")} | {"fwd_ret_1h": "fwd_ret_60m"}


def test_synthetic_5m_bars_round_trip_through_csv(synth, tmp_path):
    bars = pd.concat([_synth_frame(synth, s)[["ts", *PRICES]].assign(symbol=s)
                      for s in synth.symbols])
    csv = tmp_path / "bars.csv"
    bars.rename(columns={"ts": "Timestamp", "close": "Close"}).to_csv(csv, index=False)
    summary = import_ohlcv(csv, "auto", tmp_path / "out")
    assert summary.interval == "5m" and summary.symbols == synth.symbols
    registry = load_registry(tmp_path / "out")
    content = read_json(tmp_path / "out" / "feature_registry.json")
    lookbacks = {c["name"]: c.get("lookback_bars") for c in content["columns"]}
    assert lookbacks["ret_1d"] == 78, "one regular session of 5m bars, measured"
    for symbol in synth.symbols:
        mine = pd.read_parquet(tmp_path / "out" / "interval=5m" / f"symbol={symbol}" /
                               f"{symbol}.parquet")
        theirs = _synth_frame(synth, symbol)
        pd.testing.assert_series_equal(mine["ts"], theirs["ts"])
        for name, generator_name in SAME_DEFINITION.items():
            np.testing.assert_allclose(mine[name], theirs[generator_name], rtol=1e-9, atol=1e-12,
                                       err_msg=f"{symbol} {name}")
    # a 1h target's 12 bars can span a weekend: the purge covers it
    assert _target(registry, "fwd_ret_1h").horizon_minutes > 2 * 24 * 60


def test_one_file_per_symbol_local_time_parquet_with_a_time_index(synth, tmp_path):
    paths = []
    for symbol in synth.symbols:
        frame = _synth_frame(synth, symbol)[["ts", *PRICES]]
        local = frame.assign(ts=frame["ts"].dt.tz_convert("America/New_York")
                             .dt.tz_localize(None)).set_index("ts")
        paths.append(tmp_path / f"{symbol}.parquet")
        local.rename(columns=str.upper).to_parquet(paths[-1])
    argv = [a for p, s in zip(paths, synth.symbols, strict=True)
            for a in ("--input", str(p), "--symbol", s)]
    code, out = _import(tmp_path, *argv, "--tz", "America/New_York")
    assert code == 0
    for symbol in synth.symbols:
        mine = pd.read_parquet(out / "interval=5m" / f"symbol={symbol}" / f"{symbol}.parquet")
        pd.testing.assert_series_equal(mine["ts"], _synth_frame(synth, symbol)["ts"])
    dataset = read_json(out / "dataset.json")
    assert [i["symbol"] for i in dataset["inputs"]] == list(synth.symbols)
    assert dataset["timezone"] == "America/New_York"


def test_a_close_only_file_gets_close_derived_features(synth, tmp_path):
    symbol = synth.symbols[0]
    path = tmp_path / "closes.csv"
    _synth_frame(synth, symbol)[["ts", "close"]].to_csv(path, index=False)
    code, out = _import(tmp_path, "--input", str(path), "--symbol", symbol)
    assert code == 0
    registry = load_registry(out)
    kinds = {name.rsplit("_", 1)[0] for name in registry.feature_names}
    assert kinds == {"ret", "vol", "ma_ratio"}
    content = json.loads((out / "feature_registry.json").read_text())
    peak = next(c for c in content["columns"] if c["name"] == "y_will_peak_1h_1sd")
    assert peak["definition"].startswith("max(close[t+1..t+12])")


def test_overlapping_files_and_mismatched_symbols_are_refused(synth, tmp_path):
    frame = _synth_frame(synth, synth.symbols[0])[["ts", *PRICES]]
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    frame.head(1500).to_csv(first, index=False)
    frame.tail(1000).to_csv(second, index=False)
    with pytest.raises(ParityInputError, match=r"a\.csv and .*b\.csv both hold symbol X"):
        import_ohlcv([first, second], "auto", tmp_path / "out", symbols=["X", "X"])
    with pytest.raises(ParityInputError, match=r"1 --symbol for 2 --input files"):
        import_ohlcv([first, second], "auto", tmp_path / "out", symbols=["X"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv", "b.csv"]


@pytest.mark.slow
def test_the_pipeline_ranks_hourly_eurusd_honestly(tmp_path):
    """One FX symbol: the CROSS_SECTIONAL view is skipped with one reason, no model is a copy,
    the run passes its checks, and every routed target is trained per symbol."""
    code, data = _import(tmp_path, "--input", str(SHIPPED / "EURUSD.csv"), "--symbol", "EURUSD")
    assert code == 0
    run = parity_run(tmp_path / "home", "--data", str(data), *IN_PROCESS)
    assert run.exit_code == 0, run.stdout + run.stderr
    folder = run_dir_of(run)
    table = pd.read_csv(folder / "ranked_targets.csv")
    cross = table[table["view"] == "CROSS_SECTIONAL"]
    assert len(cross) == 5 and cross["score"].isna().all() and (cross["n_effective"] == 0).all()
    assert cross["reasons"].str.fullmatch(r"too few symbols for a cross-section: 1 < 2 .*").all()
    single = table[table["view"] == "SYMBOL_SPECIFIC"]
    assert len(single) == 5 and np.isfinite(single["t_stat"]).all()
    models = pd.read_csv(folder / "trained_models.csv")
    assert set(models["view"]) <= {"SYMBOL_SPECIFIC"}
    routed = set(table.loc[table["route"] != "BLOCKED", "target"])
    assert set(models["target"]) == routed
