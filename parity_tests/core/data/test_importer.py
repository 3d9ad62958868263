"""`parity data import`: plain OHLCV into the labeled layout, past-only features, clear errors."""

import hashlib
import json

import numpy as np
import pandas as pd
import pytest

from parity_pipeline.core.data.importer import import_ohlcv, labeled_bars, read_bars
from parity_pipeline.core.data.registry import load_registry
from parity_pipeline.core.data.sampling import load_panel
from parity_pipeline.core.errors import ParityInputError


def make_bars(n_days: int = 120, symbols=("AAA", "BBB"), seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=n_days)
    frames = []
    for symbol in symbols:
        close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, n_days)))
        frames.append(pd.DataFrame({
            "Symbol": symbol, "Date": dates.strftime("%Y-%m-%d"), "Open": close * 0.999,
            "High": close * 1.01, "Low": close * 0.99, "Close": close,
            "Volume": rng.integers(1_000, 9_000, n_days), "note": "ignored"}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture()
def csv(tmp_path):
    path = tmp_path / "bars.csv"
    make_bars().to_csv(path, index=False)
    return path


def _files(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_import_writes_the_layout_the_pipeline_reads(csv, tmp_path):
    summary = import_ohlcv(csv, "1d", tmp_path / "out")
    assert summary.symbols == ("AAA", "BBB") and summary.rows == {"AAA": 120, "BBB": 120}
    registry = load_registry(tmp_path / "out")
    assert registry.interval == "1d" and registry.bar_minutes == 1440
    assert registry.max_plausible_ic == 0.1
    assert {"fwd_ret_1d", "fwd_ret_5d", "fwd_ret_10d", "fwd_ret_20d", "y_will_peak_5d_1sd",
            "y_will_valley_5d_1sd"} == set(registry.target_names)
    assert {"ret_1d", "ret_5d", "ret_20d", "vol_20d"} <= set(registry.feature_names)
    assert set(registry.label_side) == {"fwd_high_5d", "fwd_low_5d"}
    sampled = load_panel(tmp_path / "out", registry, 100)
    assert sampled.per_symbol_stats["AAA"].n == 100
    assert str(sampled.panel["ts"].dt.tz) == "UTC"


def test_same_input_gives_byte_identical_files(csv, tmp_path):
    import_ohlcv(csv, "1d", tmp_path / "a")
    import_ohlcv(csv, "1d", tmp_path / "b")
    assert _files(tmp_path / "a") == _files(tmp_path / "b")


def test_features_use_the_past_only_and_targets_the_future():
    bars = read_bars_frame(make_bars(symbols=("AAA",)))
    full = labeled_bars(bars)
    cut = labeled_bars(bars.head(80).copy())  # the future after row 79 is unknown
    features = [c for c in full.columns if not c.startswith(("fwd_", "y_")) and c != "ts"]
    pd.testing.assert_frame_equal(full[features].head(80), cut[features])
    assert cut["fwd_ret_5d"].iloc[-5:].isna().all() and full["fwd_ret_5d"].iloc[75:80].notna().all()
    expected = bars["close"].shift(-5) / bars["close"] - 1
    np.testing.assert_allclose(full["fwd_ret_5d"], expected)
    peak = full["y_will_peak_5d_1sd"].dropna()
    assert set(peak.unique()) <= {0.0, 1.0} and full["y_will_peak_5d_1sd"].iloc[-5:].isna().all()


def read_bars_frame(raw: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"ts": pd.to_datetime(raw["Date"], utc=True), "open": raw["Open"],
                         "high": raw["High"], "low": raw["Low"], "close": raw["Close"],
                         "volume": raw["Volume"].astype(float)}).reset_index(drop=True)


def test_adjusted_close_removes_a_split_from_returns(tmp_path):
    raw = make_bars(symbols=("AAA",))
    raw["Adjusted"] = raw["Close"]
    raw.loc[:59, ["Open", "High", "Low", "Close"]] *= 4  # before a 4:1 split, unadjusted
    path = tmp_path / "split.parquet"
    raw.to_parquet(path)
    bars = read_bars(path)
    np.testing.assert_allclose(bars["close"], raw["Adjusted"])
    assert labeled_bars(bars)["ret_1d"].abs().max() < 0.2, "no -75% day at the split"


def _swap_dates(f: pd.DataFrame, a: int, b: int) -> pd.DataFrame:
    dates = f["Date"].copy()
    dates[a], dates[b] = f["Date"][b], f["Date"][a]
    return f.assign(Date=dates)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda f: f.drop(columns=["Close"]), r"no close column"),
    (lambda f: f.drop(columns=["Date"]), r"no time \(timestamp/date\) column"),
    (lambda f: f.drop(columns=["Symbol"]), r"no symbol column .* --symbol bad"),
    (lambda f: f.assign(Volume=f["Volume"].astype(str).where(f.index != 3, "lots")),
     r"column 'volume' has non-numeric values \(first at row 3, symbol AAA: 'lots'\)"),
    (lambda f: f.assign(High=f["High"].where(f.index != 4)),
     r"column 'high' has 1 missing values \(first at row 4, symbol AAA\)"),
    (lambda f: f.assign(Close=f["Close"].where(f.index != 125, np.inf)),
     r"column 'close' holds infinite values \(first at row 125, symbol BBB\)"),
    (lambda f: pd.concat([f, f.head(1)]), r"symbol AAA has more than one bar at 2020-01-01"),
    (lambda f: _swap_dates(f, 10, 11), r"symbol AAA's time goes backwards at row 11"),
    (lambda f: f.assign(Symbol=f["Symbol"].where(f.index != 0, "../x")), r"not valid names"),
    (lambda f: f.assign(Date=f["Date"].where(f.index != 2, "not a date")), r"time column"),
    (lambda f: f.assign(Close=-f["Close"]), r"column 'close' must be positive"),
    (lambda f: f.assign(High=f["Low"] * 0.9), r"high is below low \(first at row 0"),
    (lambda f: f[(f["Symbol"] == "AAA") | (f.index < 130)], r"\{'BBB': 10\}.*fewer than 40"),
])
def test_bad_input_is_named_and_leaves_no_output(tmp_path, edit, message):
    path = tmp_path / "bad.csv"
    edit(make_bars()).to_csv(path, index=False)
    with pytest.raises(ParityInputError, match=message) as info:
        import_ohlcv(path, "1d", tmp_path / "out")
    assert str(path) in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"], "no partial dataset"


def test_refuses_to_overwrite_and_unknown_interval_and_format(csv, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ParityInputError, match="already exists"):
        import_ohlcv(csv, "1d", tmp_path / "out")
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"
    with pytest.raises(ParityInputError, match="--interval 5m contradicts the data: symbol "
                                               "AAA's bars are 1d apart"):
        import_ohlcv(csv, "5m", tmp_path / "other")
    with pytest.raises(ParityInputError, match="--interval '7m' is not a bar interval"):
        import_ohlcv(csv, "7m", tmp_path / "other")
    json_input = tmp_path / "bars.json"
    json_input.write_text(json.dumps([]))
    with pytest.raises(ParityInputError, match=r"use a \.csv or \.parquet file"):
        import_ohlcv(json_input, "1d", tmp_path / "other")


def _respaced(step: str) -> pd.DataFrame:
    """The same bars stamped every ``step`` instead of every business day."""
    bars = make_bars()
    stamps = pd.date_range("2020-01-01 09:30", periods=120, freq=step, tz="UTC")
    return bars.assign(Date=np.tile(stamps.strftime("%Y-%m-%d %H:%M:%S%z"), 2))


@pytest.mark.parametrize(("step", "label"), [("1h", "1h"), ("5min", "5m"), ("7D", "1w")])
def test_an_interval_that_contradicts_the_bars_is_refused_naming_their_spacing(
        tmp_path, capsys, step, label):
    """The reported case: hourly bars imported under --interval 1d became "daily" returns."""
    from parity_pipeline.cli import main as cli

    path = tmp_path / "bars.csv"
    _respaced(step).to_csv(path, index=False)
    with pytest.raises(ParityInputError, match=rf"--interval 1d contradicts the data: symbol "
                                               rf"AAA's bars are {label} apart"):
        import_ohlcv(path, "1d", tmp_path / "out")
    assert cli.main(["data", "import", "--input", str(path), "--interval", "1d", "--out",
                     str(tmp_path / "out")]) == 2
    assert f"bars are {label} apart" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bars.csv"], "nothing written"


def test_bars_at_no_importable_interval_are_refused(tmp_path):
    path = tmp_path / "bars.csv"
    _respaced("7min").to_csv(path, index=False)
    with pytest.raises(ParityInputError, match=r"symbol AAA's bars are 7m apart .* not a bar "
                                               r"interval parity imports"):
        import_ohlcv(path, "auto", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bars.csv"]


def test_import_help_shows_every_default(capsys):
    from parity_pipeline.cli import main as cli

    with pytest.raises(SystemExit):
        cli.main(["data", "import", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    for default in ("--interval INTERVAL", "(default: auto)", "--tz TZ", "(default: UTC)",
                    "--symbol NAME", "--input FILE"):
        assert default in shown, default


def test_an_unadjusted_split_is_warned_and_an_adjusted_close_silences_it(tmp_path, capsys):
    from parity_pipeline.cli import main as cli

    raw = make_bars(symbols=("AAA",))
    raw.loc[:59, ["Open", "High", "Low", "Close"]] *= 2  # a 2:1 split on row 60, unadjusted
    split_day = raw.loc[60, "Date"]
    path = tmp_path / "split.csv"
    raw.to_csv(path, index=False)
    assert cli.main(["data", "import", "--input", str(path), "--out",
                     str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "warning: symbol AAA: close moved -5" in err and f"on {split_day}" in err
    assert "add an 'adjusted' (adjusted close) column" in err
    adjusted = raw.assign(Adjusted=make_bars(symbols=("AAA",))["Close"])
    adjusted.to_csv(path, index=False)
    assert cli.main(["data", "import", "--input", str(path), "--out",
                     str(tmp_path / "out2")]) == 0
    assert "warning" not in capsys.readouterr().err
