"""The synthetic dataset: layout, determinism, calendar, registry, causality, planted signal."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from parity_pipeline.core.data import synth
from parity_pipeline.core.data.registry import load_registry
from parity_pipeline.core.data.synth import (
    TICKERS,
    compute_features,
    compute_labels,
    synthesize_dataset,
)
from parity_pipeline.core.errors import ParityInputError
from parity_pipeline.core.hashing import sha256_file

BAR_COLUMNS = ["ts", "open", "high", "low", "close", "volume", "buy_volume"]
SMALL = {"n_symbols": 3, "n_rows": 3000}


@pytest.fixture(scope="module")
def synth_small(tmp_path_factory) -> synth.SynthSummary:
    return synthesize_dataset(tmp_path_factory.mktemp("synth") / "data", **SMALL, seed=42)


def _symbol_frame(summary: synth.SynthSummary, symbol: str) -> pd.DataFrame:
    return pd.read_parquet(summary.out_dir / "interval=5m" / f"symbol={symbol}"
                           / f"{symbol}.parquet")


def _file_hashes(root: Path) -> dict[str, str]:
    return {p.relative_to(root).as_posix(): sha256_file(p)
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_arguments_give_byte_identical_files(tmp_path, synth_small):
    again = synthesize_dataset(tmp_path / "again", **SMALL, seed=42)
    other = synthesize_dataset(tmp_path / "other", **SMALL, seed=43)
    first = _file_hashes(synth_small.out_dir)
    assert _file_hashes(again.out_dir) == first
    other_hashes = _file_hashes(other.out_dir)
    assert other_hashes.keys() == first.keys()
    parquet_names = [name for name in first if name.endswith(".parquet")]
    assert all(other_hashes[name] != first[name] for name in parquet_names)


def test_layout_summary_and_dtypes(synth_small):
    assert synth_small.symbols == ("AAPL", "MSFT", "NVDA")
    assert synth_small.n_rows == SMALL["n_rows"]
    expected = {synth_small.out_dir / name for name in
                ("feature_registry.json", "ground_truth.json", "dataset.json")}
    expected |= {synth_small.out_dir / "interval=5m" / f"symbol={s}" / f"{s}.parquet"
                 for s in synth_small.symbols}
    assert set(synth_small.files) == expected
    registry = load_registry(synth_small.out_dir)
    for symbol in synth_small.symbols:
        frame = _symbol_frame(synth_small, symbol)
        assert len(frame) == SMALL["n_rows"]
        assert str(frame["ts"].dtype) == "datetime64[ns, UTC]"
        assert all(frame[c].dtype == np.float64 for c in frame.columns if c != "ts")
        assert set(frame.columns) == set(registry.declared_columns)
    meta = json.loads((synth_small.out_dir / "dataset.json").read_text())
    assert meta["seed"] == 42 and meta["symbols"] == list(synth_small.symbols)


def test_calendar_is_regular_hours_weekdays_and_shared(synth_small):
    stamps = [_symbol_frame(synth_small, s)["ts"] for s in synth_small.symbols]
    ts = stamps[0]
    assert ts.is_monotonic_increasing and ts.is_unique
    assert all(other.equals(ts) for other in stamps[1:])
    local = ts.dt.tz_convert("America/New_York")
    assert local.iloc[-1] == pd.Timestamp("2026-10-30 15:55", tz="America/New_York")
    assert (local.dt.day_of_week < 5).all()
    minutes = local.dt.hour * 60 + local.dt.minute
    assert minutes.between(9 * 60 + 30, 15 * 60 + 55).all() and (minutes % 5 == 0).all()
    per_day = local.dt.date.value_counts().sort_index()
    assert (per_day.iloc[1:] == 78).all() and per_day.iloc[0] <= 78


def test_registry_declares_features_targets_and_label_side(synth_small):
    registry = load_registry(synth_small.out_dir)
    assert len(registry.features) >= 30
    assert {spec.timeframe for spec in registry.features} == {"5m", "15m", "1h", "1d"}
    assert set(registry.label_side) == {"fwd_high_60m", "fwd_low_60m"}
    assert {"buy_volume", "ts", "close"} <= set(registry.other_columns)
    assert registry.target("fwd_ret_60m").horizon_bars == 12
    assert registry.target("fwd_ret_120m").horizon_minutes == 120
    assert registry.target("y_will_peak_60m_0.8").task == "binary"
    assert registry.target("fwd_placebo_60m").task == "regression"
    truth = json.loads((synth_small.out_dir / "ground_truth.json").read_text())
    declared = set(registry.target_names)
    assert set(truth["predictable_targets"]) | set(truth["noise_targets"]) == declared
    assert set(truth["noise_features"]) <= set(registry.feature_names)
    planted = {f for feats in truth["predictable_targets"].values() for f in feats}
    assert planted <= set(registry.feature_names)


def test_features_read_only_the_past_and_labels_the_future(synth_small):
    frame = _symbol_frame(synth_small, "AAPL")
    bars = frame[BAR_COLUMNS]
    full_features, full_labels = compute_features(bars), compute_labels(bars)
    # The stored columns are exactly what the pure functions compute.
    pd.testing.assert_frame_equal(frame[full_features.columns], full_features)
    for cut in (500, 1777, 2900):
        head = bars.iloc[:cut]
        pd.testing.assert_frame_equal(compute_features(head), full_features.iloc[:cut],
                                      check_exact=True)
        assert not compute_labels(head).equals(full_labels.iloc[:cut])
    assert full_labels["fwd_ret_60m"].iloc[-12:].isna().all()
    assert full_labels["fwd_ret_60m"].iloc[-13:-12].notna().all()


def _mean_symbol_ic(frames: list[pd.DataFrame], feature: str, target: str) -> float:
    ics = []
    for frame in frames:
        pair = frame[[feature, target]].dropna()
        ics.append(spearmanr(pair[feature], pair[target]).statistic)
    return float(np.mean(ics))


def test_planted_signal_exists_and_noise_does_not(tmp_path):
    summary = synthesize_dataset(tmp_path / "signal", n_symbols=5, n_rows=5000, seed=42)
    frames = [_symbol_frame(summary, s) for s in summary.symbols]
    for feature in ("flow_imb_5m", "flow_imb_15m", "flow_imb_1h"):
        assert _mean_symbol_ic(frames, feature, "fwd_ret_60m") > 0.05, feature
    for feature in synth.NOISE_FEATURES:
        assert abs(_mean_symbol_ic(frames, feature, "fwd_ret_60m")) < 0.05, feature
    for placebo in synth.PLACEBO_TARGETS:
        assert abs(_mean_symbol_ic(frames, "noise_1", placebo)) < 0.05, placebo


@pytest.mark.parametrize(("kwargs", "argument"), [
    ({"n_symbols": 0}, "n_symbols"), ({"n_symbols": 101}, "n_symbols"),
    ({"n_rows": 199}, "n_rows"), ({"seed": -1}, "seed")])
def test_bad_arguments_name_the_argument(tmp_path, kwargs, argument):
    with pytest.raises(ParityInputError, match=argument):
        synthesize_dataset(tmp_path / "out", **({"n_rows": 300} | kwargs))
    assert not (tmp_path / "out").exists()


def test_refuses_a_non_empty_output_directory(tmp_path):
    out_dir = tmp_path / "taken"
    out_dir.mkdir()
    (out_dir / "keep.txt").write_text("mine")
    with pytest.raises(ParityInputError, match="taken"):
        synthesize_dataset(out_dir, n_symbols=1, n_rows=300)
    assert [p.name for p in out_dir.iterdir()] == ["keep.txt"]


def test_empty_output_directory_is_filled_without_leftovers(tmp_path):
    out_dir = tmp_path / "empty"
    out_dir.mkdir()
    summary = synthesize_dataset(out_dir, n_symbols=100, n_rows=200)
    assert summary.symbols == tuple(TICKERS) and len(set(TICKERS)) == 100
    assert TICKERS[:10] == ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "JPM",
                            "XOM", "JNJ"]
    assert [p.name for p in tmp_path.iterdir()] == ["empty"]


def test_failed_write_leaves_nothing_behind(tmp_path, monkeypatch):
    def broken_write(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(synth.pq, "write_table", broken_write)
    with pytest.raises(OSError, match="disk full"):
        synthesize_dataset(tmp_path / "out", n_symbols=2, n_rows=300)
    assert list(tmp_path.iterdir()) == []
