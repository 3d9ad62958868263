"""``parity data import``: plain OHLCV bars (CSV or parquet) into the labeled dataset layout.

Input columns (case-insensitive): ``symbol``, one of ``date``/``timestamp``/``ts``, ``open``,
``high``, ``low``, ``close``, ``volume``; other columns are ignored. Output is the same layout
``parity data synth`` writes: ``DIR/interval=1d/symbol=<SYM>/<SYM>.parquet`` (``ts`` UTC,
OHLCV, features, targets, label-side columns), ``feature_registry.json`` and ``dataset.json``.

Daily bars only for now (``--interval 1d``): a date becomes ``ts`` = that date 00:00 UTC.
When an ``adjusted`` (or ``adj_close``) column is present, open/high/low/close are scaled by
``adjusted / close`` and volume by its inverse, so splits and dividends do not show up as
returns (a 20:1 split would otherwise be a −95 % "return").

Features, from the past only (row t uses bars up to and including t), at 1d/5d/20d:
``ret_<w>d`` (close / close w bars ago − 1), ``vol_<w>d`` (std of daily log returns),
``range_<w>d`` ((max high − min low) / close), ``close_pos_<w>d`` (where the close sits in the
w-bar range), ``volume_ratio_<w>d`` (volume / its w-bar mean), ``ma_ratio_<w>d`` and
``gap_1d`` (open / previous close − 1).

Targets (the future, never features): ``fwd_ret_<h>d`` = close[t+h] / close[t] − 1 for h in
1, 5, 10, 20 bars; barrier labels over 5 bars ``y_will_peak_5d_1sd`` /
``y_will_valley_5d_1sd``: the highest high (lowest low) of bars t+1..t+5 moves at least one
20-day volatility scaled to 5 bars (σ₂₀·√5) above (below) the close. ``fwd_high_5d`` /
``fwd_low_5d`` are declared ``label_side``.

Purging works on calendar time, and h trading days can span weekends and holidays, so each
target declares ``horizon_minutes`` for h + 2·ceil(h/5) + 2 calendar days (a safe upper bound).

The registry carries ``max_plausible_ic = 0.1``: on daily equities an out-of-sample IC of a
return target above 0.1 is far more likely a leak than a signal, so ranking flags it as one.

The output folder is built under a temporary name and renamed into place at the end: a failed
import leaves nothing behind, and an existing folder is never overwritten.
"""

import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from parity_pipeline.core.atomic import atomic_write_json
from parity_pipeline.core.errors import ParityInputError
from parity_pipeline.core.hashing import sha256_file
from parity_pipeline.core.registry import REGISTRY_FILENAME
from parity_pipeline.core.sampling import SYMBOL_PATTERN

WINDOWS = (1, 5, 20)
HORIZONS = (1, 5, 10, 20)
BARRIER_BARS, BARRIER_SIGMAS = 5, 1.0
MAX_PLAUSIBLE_IC_DAILY = 0.1
MIN_ROWS_PER_SYMBOL = 2 * max(WINDOWS)
ROW_GROUP_ROWS = 10_000
PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
TIME_ALIASES = ("date", "timestamp", "ts")
ADJUSTED_ALIASES = ("adjusted", "adj_close", "adjusted_close")
SUPPORTED_INTERVALS = {"1d": 1440}


@dataclass(frozen=True)
class ImportSummary:
    out_dir: Path
    symbols: tuple[str, ...]
    rows: dict[str, int]
    start: str
    end: str
    warnings: tuple[str, ...] = ()


# A one-day close move beyond these, in a file without an adjusted close, looks like a split
# (2:1 gives -50%, 1:2 gives +100%): warned, since a real crash or squeeze is possible too.
SPLIT_LIKE_MOVE = (-0.4, 0.8)


def import_ohlcv(input_path: Path, interval: str, out_dir: Path) -> ImportSummary:
    input_path, out_dir = Path(input_path), Path(out_dir)
    if interval not in SUPPORTED_INTERVALS:
        raise ParityInputError(f"--interval {interval!r} is not supported yet; use one of "
                               f"{sorted(SUPPORTED_INTERVALS)}")
    if out_dir.exists():
        raise ParityInputError(f"output folder {out_dir} already exists; choose another --out "
                               "or delete it first (an import never overwrites a dataset)")
    bars = read_bars(input_path)
    frames = {symbol: labeled_bars(group.reset_index(drop=True))
              for symbol, group in bars.groupby("symbol", sort=True)}
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for symbol, frame in frames.items():
            folder = staging / f"interval={interval}" / f"symbol={symbol}"
            folder.mkdir(parents=True)
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False),
                           folder / f"{symbol}.parquet", row_group_size=ROW_GROUP_ROWS)
        atomic_write_json(staging / REGISTRY_FILENAME, registry_content(interval))
        summary = ImportSummary(
            out_dir=out_dir, symbols=tuple(frames), rows={s: len(f) for s, f in frames.items()},
            start=bars["ts"].min().isoformat(), end=bars["ts"].max().isoformat(),
            warnings=() if has_adjusted_close(input_path) else split_like_moves(bars))
        atomic_write_json(staging / "dataset.json", {
            "kind": "imported", "input": input_path.name,
            "input_sha256": sha256_file(input_path),
            "interval": interval, "symbols": list(summary.symbols), "rows": summary.rows,
            "start": summary.start, "end": summary.end})
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def read_bars(path: Path) -> pd.DataFrame:
    """The input as (symbol, ts, open, high, low, close, volume), validated, sorted."""
    if not path.is_file():
        raise ParityInputError(f"input file {path} does not exist")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            raw = pd.read_csv(path)
        elif suffix in (".parquet", ".pq"):
            raw = pd.read_parquet(path)
        else:
            raise ParityInputError(f"input file {path}: use a .csv or .parquet file")
    except (ValueError, OSError, pa.ArrowInvalid) as exc:
        raise ParityInputError(f"input file {path} cannot be read ({exc}); export it again as "
                               "CSV or parquet") from exc
    columns = {str(c).strip().lower(): c for c in raw.columns}
    time_column = next((columns[a] for a in TIME_ALIASES if a in columns), None)
    missing = [c for c in ("symbol", *PRICE_COLUMNS) if c not in columns]
    if missing or time_column is None:
        raise ParityInputError(
            f"input file {path}: missing columns {missing + ([] if time_column else ['date'])}; "
            f"it needs symbol, date (or timestamp), {', '.join(PRICE_COLUMNS)}")
    bars = pd.DataFrame({"symbol": raw[columns["symbol"]].astype(str).str.strip(),
                         "ts": _utc_dates(raw[time_column], path)})
    for name in PRICE_COLUMNS:
        values = pd.to_numeric(raw[columns[name]], errors="coerce")
        bad = values.isna() & raw[columns[name]].notna()
        if bad.any():
            raise ParityInputError(f"input file {path}: column {name!r} has non-numeric values "
                                   f"(first at row {int(np.flatnonzero(bad)[0])}: "
                                   f"{raw[columns[name]][bad].iloc[0]!r})")
        if values.isna().any():
            raise ParityInputError(f"input file {path}: column {name!r} has "
                                   f"{int(values.isna().sum())} missing values (first at row "
                                   f"{int(np.flatnonzero(values.isna())[0])}); fill or drop them")
        bars[name] = values.astype("float64")
    adjusted_column = next((columns[a] for a in ADJUSTED_ALIASES if a in columns), None)
    if adjusted_column is not None:
        factor = pd.to_numeric(raw[adjusted_column], errors="coerce") / bars["close"]
        if factor.isna().any() or (factor <= 0).any():
            raise ParityInputError(f"input file {path}: column {adjusted_column!r} must be a "
                                   "positive adjusted close on every row")
        for name in ("open", "high", "low", "close"):
            bars[name] = bars[name] * factor
        bars["volume"] = bars["volume"] / factor
    _check_bars(bars, path)
    return bars.sort_values(["symbol", "ts"], kind="mergesort", ignore_index=True)


def _utc_dates(values: pd.Series, path: Path) -> pd.Series:
    try:
        stamps = pd.to_datetime(values, utc=True)
    except (ValueError, TypeError) as exc:
        raise ParityInputError(f"input file {path}: the date column cannot be parsed as dates "
                               f"({exc})") from exc
    if stamps.isna().any():
        raise ParityInputError(f"input file {path}: {int(stamps.isna().sum())} rows have no "
                               "date; drop or repair them")
    return stamps.dt.as_unit("ns")


def _check_bars(bars: pd.DataFrame, path: Path) -> None:
    bad_names = sorted({s for s in bars["symbol"].unique() if not SYMBOL_PATTERN.match(s)})
    if bad_names:
        raise ParityInputError(f"input file {path}: symbols {bad_names[:5]} are not valid names "
                               "(letters, digits, '.', '_', '-')")
    duplicated = bars.duplicated(["symbol", "ts"])
    if duplicated.any():
        first = bars[duplicated].iloc[0]
        raise ParityInputError(f"input file {path}: symbol {first['symbol']} has more than one "
                               f"row for {first['ts'].date()}; keep one bar per day")
    if (bars["close"] <= 0).any() or (bars["high"] < bars["low"]).any():
        raise ParityInputError(f"input file {path}: prices must be positive with high >= low "
                               "(check split adjustments and column order)")
    _check_daily_spacing(bars, path)
    counts = bars.groupby("symbol").size()
    short = counts[counts < MIN_ROWS_PER_SYMBOL]
    if len(short):
        raise ParityInputError(f"input file {path}: symbols {short.astype(int).to_dict()} have "
                               f"fewer than {MIN_ROWS_PER_SYMBOL} bars; drop them or add history")


def has_adjusted_close(path: Path) -> bool:
    """Whether the input file has an adjusted-close column (header / schema only)."""
    names = (pd.read_csv(path, nrows=0).columns if path.suffix.lower() == ".csv"
             else pq.read_schema(path).names)
    return any(str(name).strip().lower() in ADJUSTED_ALIASES for name in names)


def split_like_moves(bars: pd.DataFrame) -> tuple[str, ...]:
    """One warning per symbol whose unadjusted close jumps like a split would."""
    low, high = SPLIT_LIKE_MOVE
    warnings = []
    for symbol, group in bars.groupby("symbol", sort=True):
        moves = group["close"].pct_change()
        jumps = group.loc[(moves <= low) | (moves >= high), "ts"]
        if len(jumps):
            first = jumps.iloc[0]
            warnings.append(
                f"symbol {symbol}: close moved {moves.loc[jumps.index[0]]:+.1%} on "
                f"{first.date()} ({len(jumps)} such one-bar moves) and the file has no adjusted "
                "close: if that is a split, the returns and labels around it are wrong; add an "
                "'adjusted' (adjusted close) column and import again")
    return tuple(warnings)


# Daily bars step 1 day (3 over a weekend, more over holidays): the median step is one day.
DAILY_MEDIAN_STEP = (pd.Timedelta(hours=20), pd.Timedelta(days=4))


def bar_spacing(bars: pd.DataFrame) -> dict[str, pd.Timedelta]:
    """Each symbol's median step between consecutive timestamps (its bar interval)."""
    ordered = bars.sort_values(["symbol", "ts"], kind="mergesort")
    steps = ordered.groupby("symbol", sort=True)["ts"].diff().dropna()
    medians = steps.groupby(ordered.loc[steps.index, "symbol"], sort=True).median()
    return {str(symbol): step for symbol, step in medians.items()}


def spacing_label(step: pd.Timedelta) -> str:
    minutes = int(step.total_seconds() // 60)
    if minutes and minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    if minutes and minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m" if minutes else f"{step.total_seconds():g}s"


def _check_daily_spacing(bars: pd.DataFrame, path: Path) -> None:
    """Refuse bars that are not daily: imported as daily, hourly returns would be labelled
    ret_1d / fwd_ret_1d and every horizon and purge would be wrong."""
    low, high = DAILY_MEDIAN_STEP
    for symbol, step in bar_spacing(bars).items():
        if not low <= step <= high:
            raise ParityInputError(
                f"input file {path}: symbol {symbol}'s bars are {spacing_label(step)} apart "
                f"(median step between timestamps), not daily: imported as --interval 1d, "
                f"{spacing_label(step)} returns would be labelled as daily ones (ret_1d, "
                "fwd_ret_1d). Only daily bars can be imported for now: resample to one bar per "
                "day first (open first, high max, low min, close last, volume sum), then import")


def labeled_bars(bars: pd.DataFrame) -> pd.DataFrame:
    """Features (past only), targets and label-side columns for one symbol's sorted bars."""
    close, high, low, volume = bars["close"], bars["high"], bars["low"], bars["volume"]
    log_ret = np.log(close).diff()
    out = bars[["ts", *PRICE_COLUMNS]].copy()
    out["gap_1d"] = bars["open"] / close.shift(1) - 1
    for w in WINDOWS:
        range_high, range_low = high.rolling(w).max(), low.rolling(w).min()
        out[f"ret_{w}d"] = close / close.shift(w) - 1
        out[f"range_{w}d"] = (range_high - range_low) / close
        if w > 1:
            out[f"vol_{w}d"] = log_ret.rolling(w).std()
            span = (range_high - range_low).replace(0.0, np.nan)
            out[f"close_pos_{w}d"] = (close - range_low) / span
            out[f"volume_ratio_{w}d"] = volume / volume.rolling(w).mean()
            out[f"ma_ratio_{w}d"] = close / close.rolling(w).mean() - 1
    for h in HORIZONS:
        out[f"fwd_ret_{h}d"] = close.shift(-h) / close - 1
    future_high = _future_extreme(high, BARRIER_BARS, "max")
    future_low = _future_extreme(low, BARRIER_BARS, "min")
    barrier = BARRIER_SIGMAS * out["vol_20d"] * math.sqrt(BARRIER_BARS)
    out[f"fwd_high_{BARRIER_BARS}d"], out[f"fwd_low_{BARRIER_BARS}d"] = future_high, future_low
    known = future_high.notna() & barrier.notna()
    out[f"y_will_peak_{BARRIER_BARS}d_1sd"] = ((future_high / close - 1) >= barrier).astype(
        "float64").where(known)
    out[f"y_will_valley_{BARRIER_BARS}d_1sd"] = ((1 - future_low / close) >= barrier).astype(
        "float64").where(known)
    return out


def _future_extreme(values: pd.Series, bars: int, how: str) -> pd.Series:
    """max/min of values[t+1 .. t+bars]; NaN where the future is not fully known."""
    ahead = values[::-1].rolling(bars).agg(how)[::-1].shift(-1)
    return ahead.where(values.index <= len(values) - 1 - bars)


def _calendar_minutes(trading_days: int) -> int:
    return (trading_days + 2 * math.ceil(trading_days / 5) + 2) * 1440


def registry_content(interval: str) -> dict:
    columns = [{"name": "ts", "role": "timestamp"}]
    columns += [{"name": name, "role": "ohlcv"} for name in PRICE_COLUMNS]
    features = [("gap_1d", "1d", 1)]
    for w in WINDOWS:
        features += [(f"ret_{w}d", f"{w}d", w), (f"range_{w}d", f"{w}d", w)]
        if w > 1:
            features += [(f"vol_{w}d", f"{w}d", w), (f"close_pos_{w}d", f"{w}d", w),
                         (f"volume_ratio_{w}d", f"{w}d", w), (f"ma_ratio_{w}d", f"{w}d", w)]
    columns += [{"name": n, "role": "feature", "timeframe": tf, "lookback_bars": lb}
                for n, tf, lb in features]
    columns += [{"name": f"fwd_ret_{h}d", "role": "target", "task": "regression",
                 "horizon_bars": h, "horizon_minutes": _calendar_minutes(h),
                 "definition": f"close[t+{h}] / close[t] - 1"} for h in HORIZONS]
    b = BARRIER_BARS
    columns += [{"name": f"fwd_high_{b}d", "role": "label_side",
                 "horizon_minutes": _calendar_minutes(b)},
                {"name": f"fwd_low_{b}d", "role": "label_side",
                 "horizon_minutes": _calendar_minutes(b)}]
    for name, rule in ((f"y_will_peak_{b}d_1sd", f"max(high[t+1..t+{b}]) / close[t] - 1"),
                       (f"y_will_valley_{b}d_1sd", f"1 - min(low[t+1..t+{b}]) / close[t]")):
        columns.append({"name": name, "role": "target", "task": "binary", "horizon_bars": b,
                        "horizon_minutes": _calendar_minutes(b),
                        "definition": f"{rule} >= {BARRIER_SIGMAS:g} * vol_20d * sqrt({b})"})
    return {"schema_version": 1, "interval": interval,
            "bar_minutes": SUPPORTED_INTERVALS[interval],
            "max_plausible_ic": MAX_PLAUSIBLE_IC_DAILY,
            "columns": sorted(columns, key=lambda c: c["name"])}

