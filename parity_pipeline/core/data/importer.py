"""``parity data import``: OHLCV bars at any interval (1 minute to 1 month) into the labeled
dataset layout ``parity data synth`` writes: ``DIR/interval=<interval>/symbol=<SYM>/<SYM>.parquet``
(``ts`` UTC, prices, features, targets, label-side columns), ``feature_registry.json`` and
``dataset.json``. Reading files as people have them (aliases, ``--symbol``, close-only files,
time zones) and the input gates live in :mod:`parity_pipeline.core.data.bars`.

Timeframes. Features are built from the base interval upward, from the past only (row t reads
bars up to and including t), at each timeframe's window of k bars:

- intraday (base b): b, then 15m, 1h and 4h where they are multiples of b shorter than a day,
  and ``1d`` = one day's bars, *measured* (the median number of bars per calendar day in
  ``--tz``): 78 for a 6.5-hour session of 5m bars, 24 for round-the-clock hourly FX. Windows
  count bars, so a window steps over the overnight and weekend gaps rather than into them;
- daily: 1d, 5d, 20d; weekly: 1w, 4w, 13w; monthly: 1mo, 3mo, 12mo.

Per timeframe: ``ret_<tf>`` (close / close k bars ago − 1), ``vol_<tf>`` (std of log returns),
``ma_ratio_<tf>`` (close / its k-bar mean − 1); with high/low: ``range_<tf>`` and
``close_pos_<tf>``, and ``gap_<base>`` (open / previous close − 1); with volume:
``volume_ratio_<tf>`` (volume / its k-bar mean). A close-only file gets the close-derived ones.
A feature that would be all-NaN, constant or gappy for a symbol (a volume of zeros, flat quotes)
is left out, with a warning naming it, rather than refused later by the pre-launch gates.

Targets (the future, never features): ``fwd_ret_<h>`` = close[t+h] / close[t] − 1 at each
horizon (intraday: the timeframes; daily: 1, 5, 10, 20 bars; weekly 1, 4, 13; monthly 1, 3,
12); barrier labels over the first horizon of at least 4 bars (5m → 1h, 1h → 4h, daily → 5d):
``y_will_peak_<h>_1sd`` / ``y_will_valley_<h>_1sd``, the highest high (lowest low; closes in a
close-only file) of bars t+1..t+h at least one volatility of the longest window scaled to h bars
(σ·√h) above (below) the close. ``fwd_high_<h>`` / ``fwd_low_<h>`` are declared ``label_side``.

Purges follow calendar time: each target declares ``horizon_minutes`` = the longest calendar
span of its h bars anywhere in the imported data (overnight, weekends and holidays included), so
a purge of that length always covers the label.

The registry carries ``max_plausible_ic = 0.1``: on real markets an out-of-sample IC of a return
target above 0.1 is far more likely a leak than a signal, so ranking flags it as one.

The output folder is built under a temporary name and renamed into place at the end: a failed
import leaves nothing behind, and an existing folder is never overwritten.
"""

import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from parity_pipeline.core.data.bars import (
    ADJUSTED_ALIASES,
    Interval,
    detect_interval,
    minutes_label,
    normalized_name,
    parse_interval,
    read_bars,
    read_file,
)
from parity_pipeline.core.data.registry import REGISTRY_FILENAME
from parity_pipeline.core.errors import ParityInputError
from parity_pipeline.core.hashing import sha256_file
from parity_pipeline.core.store.atomic import atomic_write_json

CALENDAR_WINDOWS = {"1d": (("1d", 1), ("5d", 5), ("20d", 20)),
                    "1w": (("1w", 1), ("4w", 4), ("13w", 13)),
                    "1mo": (("1mo", 1), ("3mo", 3), ("12mo", 12))}
CALENDAR_HORIZONS = {"1d": (("1d", 1), ("5d", 5), ("10d", 10), ("20d", 20)),
                     "1w": CALENDAR_WINDOWS["1w"], "1mo": CALENDAR_WINDOWS["1mo"]}
INTRADAY_TIMEFRAME_MINUTES = (15, 60, 240)
BARRIER_MIN_BARS, BARRIER_SIGMAS = 4, 1.0
MAX_PLAUSIBLE_IC = 0.1
MAX_GAP_RATE = 0.1  # the registry's default max_nan_rate: gappier features are left out
ROW_GROUP_ROWS = 10_000
PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
# A one-bar close move beyond these, in a file without an adjusted close, looks like a split
# (2:1 gives -50%, 1:2 gives +100%) when it is also far beyond the symbol's typical bar move
# (monthly crypto bars move +100% for real): warned, since a crash or squeeze is possible too.
SPLIT_LIKE_MOVE = (-0.4, 0.8)
SPLIT_LIKE_TYPICAL_MOVES = 10  # times the median absolute log move of one bar


@dataclass(frozen=True)
class LabelPlan:
    """What to compute for one dataset: timeframe windows and horizons as (label, bars)."""
    interval: Interval
    windows: tuple[tuple[str, int], ...]
    horizons: tuple[tuple[str, int], ...]
    has_range: bool  # open, high and low present
    has_volume: bool  # a volume column that is not all zeros

    @property
    def barrier(self) -> tuple[str, int]:
        return next((h for h in self.horizons if h[1] >= BARRIER_MIN_BARS), self.horizons[-1])

    @property
    def min_rows(self) -> int:
        return 2 * max(bars for _, bars in self.windows + self.horizons)


DAILY = LabelPlan(Interval("1d", 1440), CALENDAR_WINDOWS["1d"], CALENDAR_HORIZONS["1d"],
                  has_range=True, has_volume=True)


@dataclass(frozen=True)
class ImportSummary:
    out_dir: Path
    symbols: tuple[str, ...]
    rows: dict[str, int]
    start: str
    end: str
    interval: str = "1d"
    warnings: tuple[str, ...] = ()


def import_ohlcv(inputs: Path | Sequence[Path], interval: str, out_dir: Path, *,
                 symbols: Sequence[str] = (), tz: str = "UTC") -> ImportSummary:
    """Import one or more files; ``symbols`` names the symbol of each file that has no symbol
    column (one per input, in order). ``interval`` is a bar interval or ``auto``."""
    paths = [Path(inputs)] if isinstance(inputs, (str, Path)) else [Path(p) for p in inputs]
    out_dir = Path(out_dir)
    if interval != "auto":
        parse_interval(interval)  # an unknown interval is refused before any file is read
    if symbols and len(symbols) != len(paths):
        raise ParityInputError(f"{len(symbols)} --symbol for {len(paths)} --input files: give "
                               "one --symbol per input file, in the same order (or none when "
                               "the files have a symbol column)")
    if out_dir.exists():
        raise ParityInputError(f"output folder {out_dir} already exists; choose another --out "
                               "or delete it first (an import never overwrites a dataset)")
    parts = [read_bars(path, symbols[i] if symbols else None, tz) for i, path in enumerate(paths)]
    bars = _combined(parts, paths)
    source = ", ".join(str(p) for p in paths)
    plan = label_plan(bars, detect_interval(bars, interval, source), tz)
    _check_lengths(bars, plan, source)
    frames = {symbol: labeled_bars(group.reset_index(drop=True), plan)
              for symbol, group in bars.groupby("symbol", sort=True)}
    left_out = degenerate_features(frames, plan)
    frames = {s: f.drop(columns=sorted(left_out)) for s, f in frames.items()}
    warnings = [f"feature {name} left out: {why}" for name, why in sorted(left_out.items())]
    if not plan.has_volume and any("volume" in part for part in parts):
        warnings.insert(0, "volume is 0 on every bar of a symbol: no volume features built")
    for path, part in zip(paths, parts, strict=True):
        if not has_adjusted_close(path):
            warnings += split_like_moves(part)
    registry = registry_content(plan, calendar_spans(bars, plan), sorted(left_out))
    summary = ImportSummary(
        out_dir=out_dir, symbols=tuple(frames), rows={s: len(f) for s, f in frames.items()},
        start=bars["ts"].min().isoformat(), end=bars["ts"].max().isoformat(),
        interval=plan.interval.label, warnings=tuple(warnings))
    dataset = {"kind": "imported", "interval": plan.interval.label, "timezone": tz,
               "inputs": [{"file": p.name, "sha256": sha256_file(p),
                           "symbol": symbols[i] if symbols else None}
                          for i, p in enumerate(paths)],
               "symbols": list(summary.symbols), "rows": summary.rows,
               "start": summary.start, "end": summary.end,
               "features_left_out": dict(sorted(left_out.items()))}
    _write_dataset(out_dir, plan.interval.label, frames, registry, dataset)
    return summary


def _combined(parts: list[pd.DataFrame], paths: list[Path]) -> pd.DataFrame:
    """All files' bars in one table; a symbol's bar may come from one file only."""
    for i, part in enumerate(parts):
        part["file"] = i
    bars = pd.concat(parts, ignore_index=True).sort_values(["symbol", "ts"], kind="mergesort",
                                                           ignore_index=True)
    repeated = bars.duplicated(["symbol", "ts"], keep=False).to_numpy()
    if repeated.any():
        first = bars[repeated].iloc[:2]
        raise ParityInputError(
            f"input files {paths[first['file'].iloc[0]]} and {paths[first['file'].iloc[1]]} "
            f"both hold symbol {first['symbol'].iloc[0]} at {first['ts'].iloc[0]}: import "
            "each symbol's bars from one file (or remove the overlap)")
    present = [c for c in PRICE_COLUMNS if all(c in part for part in parts)]
    return bars[["symbol", "ts", *present]]


def label_plan(bars: pd.DataFrame, interval: Interval, tz: str = "UTC") -> LabelPlan:
    has_range = all(c in bars for c in ("open", "high", "low"))
    has_volume = "volume" in bars and bool(
        (bars.groupby("symbol")["volume"].max() > 0).all())
    if not interval.intraday:
        return LabelPlan(interval, CALENDAR_WINDOWS[interval.label],
                         CALENDAR_HORIZONS[interval.label], has_range, has_volume)
    per_day = int(round(bars.groupby(
        [bars["symbol"], bars["ts"].dt.tz_convert(tz).dt.date]).size().median()))
    windows = [(interval.label, 1)]
    for minutes in INTRADAY_TIMEFRAME_MINUTES:
        k = minutes // interval.minutes
        if minutes > interval.minutes and minutes % interval.minutes == 0 and k < per_day:
            windows.append((minutes_label(minutes), k))
    if per_day > windows[-1][1]:
        windows.append(("1d", per_day))  # one session's bars (24h for round-the-clock markets)
    return LabelPlan(interval, tuple(windows), tuple(windows), has_range, has_volume)


def _check_lengths(bars: pd.DataFrame, plan: LabelPlan, source: str) -> None:
    counts = bars.groupby("symbol").size()
    short = counts[counts < plan.min_rows]
    if len(short):
        raise ParityInputError(f"input file {source}: symbols {short.astype(int).to_dict()} have "
                               f"fewer than {plan.min_rows} bars (twice the longest "
                               f"{plan.interval.label} window or horizon); drop them or add "
                               "history")


def _write_dataset(out_dir: Path, interval: str, frames: dict[str, pd.DataFrame],
                   registry: dict, dataset: dict) -> None:
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        for symbol, frame in frames.items():
            folder = staging / f"interval={interval}" / f"symbol={symbol}"
            folder.mkdir(parents=True)
            pq.write_table(pa.Table.from_pandas(frame, preserve_index=False),
                           folder / f"{symbol}.parquet", row_group_size=ROW_GROUP_ROWS)
        atomic_write_json(staging / REGISTRY_FILENAME, registry)
        atomic_write_json(staging / "dataset.json", dataset)
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def has_adjusted_close(path: Path) -> bool:
    return any(normalized_name(name) in ADJUSTED_ALIASES for name in read_file(path).columns)


def split_like_moves(bars: pd.DataFrame) -> list[str]:
    """One warning per symbol whose unadjusted close jumps like a split would."""
    low, high = SPLIT_LIKE_MOVE
    warnings = []
    for symbol, group in bars.groupby("symbol", sort=True):
        moves = group["close"].pct_change()
        typical = np.log(group["close"]).diff().abs().median()
        outsized = np.log1p(moves).abs() > SPLIT_LIKE_TYPICAL_MOVES * typical
        jumps = group.loc[((moves <= low) | (moves >= high)) & outsized, "ts"]
        if len(jumps):
            first = jumps.iloc[0]
            warnings.append(
                f"symbol {symbol}: close moved {moves.loc[jumps.index[0]]:+.1%} on "
                f"{first.date()} ({len(jumps)} such one-bar moves) and the file has no adjusted "
                "close: if that is a split, the returns and labels around it are wrong; add an "
                "'adjusted' (adjusted close) column and import again")
    return warnings


def degenerate_features(frames: dict[str, pd.DataFrame], plan: LabelPlan) -> dict[str, str]:
    """Features the pre-launch gates would refuse for some symbol, with the first reason."""
    left_out = {}
    for name in feature_names(plan):
        for symbol, frame in frames.items():
            why = _degenerate(frame[name].to_numpy())
            if why:
                left_out[name] = f"{why} for symbol {symbol}"
                break
    return left_out


def _degenerate(values: np.ndarray) -> str | None:
    present = ~np.isnan(values)
    if not present.any():
        return "NaN on every bar"
    if np.all(values[present] == values[present][0]):
        return f"constant ({values[present][0]:g})"
    gaps = int((~present[int(np.argmax(present)):]).sum())
    if gaps > MAX_GAP_RATE * len(values):
        return f"NaN on {gaps} of {len(values)} bars after its first value"
    return None


def feature_specs(plan: LabelPlan) -> list[tuple[str, str, int]]:
    """(name, timeframe, lookback bars) of every feature the plan builds, in column order."""
    base = plan.interval.label
    specs = [(f"gap_{base}", base, 1)] if plan.has_range else []
    for tf, k in plan.windows:
        specs.append((f"ret_{tf}", tf, k))
        if plan.has_range:
            specs.append((f"range_{tf}", tf, k))
        if k > 1:
            specs.append((f"vol_{tf}", tf, k))
            if plan.has_range:
                specs.append((f"close_pos_{tf}", tf, k))
            if plan.has_volume:
                specs.append((f"volume_ratio_{tf}", tf, k))
            specs.append((f"ma_ratio_{tf}", tf, k))
    return specs


def feature_names(plan: LabelPlan) -> list[str]:
    return [name for name, _, _ in feature_specs(plan)]


def labeled_bars(bars: pd.DataFrame, plan: LabelPlan = DAILY) -> pd.DataFrame:
    """Features (past only), targets and label-side columns for one symbol's sorted bars."""
    close = bars["close"]
    high = bars["high"] if plan.has_range else close
    low = bars["low"] if plan.has_range else close
    log_ret = np.log(close).diff()
    prices = [c for c in PRICE_COLUMNS if c in bars and (c != "volume" or plan.has_volume)]
    out = bars[["ts", *prices]].copy()
    for name, tf, k in feature_specs(plan):
        kind = name[: -len(tf) - 1]
        if kind in ("range", "close_pos"):
            range_high, range_low = high.rolling(k).max(), low.rolling(k).min()
        if kind == "gap":
            out[name] = bars["open"] / close.shift(1) - 1
        elif kind == "ret":
            out[name] = close / close.shift(k) - 1
        elif kind == "range":
            out[name] = (range_high - range_low) / close
        elif kind == "vol":
            out[name] = log_ret.rolling(k).std()
        elif kind == "close_pos":
            out[name] = (close - range_low) / (range_high - range_low).replace(0.0, np.nan)
        elif kind == "volume_ratio":
            out[name] = bars["volume"] / bars["volume"].rolling(k).mean().replace(0.0, np.nan)
        else:  # ma_ratio
            out[name] = close / close.rolling(k).mean() - 1
    for label, h in plan.horizons:
        out[f"fwd_ret_{label}"] = close.shift(-h) / close - 1
    b_label, b = plan.barrier
    future_high = _future_extreme(high, b, "max")
    future_low = _future_extreme(low, b, "min")
    barrier = BARRIER_SIGMAS * out[_barrier_vol(plan)] * math.sqrt(b)
    out[f"fwd_high_{b_label}"], out[f"fwd_low_{b_label}"] = future_high, future_low
    known = future_high.notna() & barrier.notna()
    out[f"y_will_peak_{b_label}_1sd"] = ((future_high / close - 1) >= barrier).astype(
        "float64").where(known)
    out[f"y_will_valley_{b_label}_1sd"] = ((1 - future_low / close) >= barrier).astype(
        "float64").where(known)
    return out


def _barrier_vol(plan: LabelPlan) -> str:
    return f"vol_{plan.windows[-1][0]}"  # the longest window's volatility


def _future_extreme(values: pd.Series, bars: int, how: str) -> pd.Series:
    """max/min of values[t+1 .. t+bars]; NaN where the future is not fully known."""
    ahead = values[::-1].rolling(bars).agg(how)[::-1].shift(-1)
    return ahead.where(values.index <= len(values) - 1 - bars)


def calendar_spans(bars: pd.DataFrame, plan: LabelPlan) -> dict[int, int]:
    """For each horizon of h bars: the longest calendar time (minutes, rounded up) that h
    consecutive bars of any symbol span in the data. A purge this long covers every label."""
    spans = {}
    for h in sorted({bars_ for _, bars_ in plan.horizons}):
        ahead = bars.groupby("symbol", sort=True)["ts"].shift(-h) - bars["ts"]
        spans[h] = math.ceil(ahead.max().total_seconds() / 60)
    return spans


def registry_content(plan: LabelPlan, spans: dict[int, int], left_out: Sequence[str] = ()
                     ) -> dict:
    columns: list[dict[str, str | int]] = [{"name": "ts", "role": "timestamp"}]
    columns += [{"name": name, "role": "ohlcv"} for name in PRICE_COLUMNS
                if name in ("close", *(("open", "high", "low") if plan.has_range else ()),
                            *(("volume",) if plan.has_volume else ()))]
    columns += [{"name": n, "role": "feature", "timeframe": tf, "lookback_bars": lb}
                for n, tf, lb in feature_specs(plan) if n not in left_out]
    columns += [{"name": f"fwd_ret_{label}", "role": "target", "task": "regression",
                 "horizon_bars": h, "horizon_minutes": spans[h],
                 "definition": f"close[t+{h}] / close[t] - 1"} for label, h in plan.horizons]
    b_label, b = plan.barrier
    columns += [{"name": f"fwd_{side}_{b_label}", "role": "label_side",
                 "horizon_minutes": spans[b]} for side in ("high", "low")]
    high, low = ("high", "low") if plan.has_range else ("close", "close")
    for name, rule in ((f"y_will_peak_{b_label}_1sd", f"max({high}[t+1..t+{b}]) / close[t] - 1"),
                       (f"y_will_valley_{b_label}_1sd", f"1 - min({low}[t+1..t+{b}]) / close[t]")):
        columns.append({"name": name, "role": "target", "task": "binary", "horizon_bars": b,
                        "horizon_minutes": spans[b],
                        "definition": f"{rule} >= {BARRIER_SIGMAS:g} * {_barrier_vol(plan)} * "
                                      f"sqrt({b})"})
    return {"schema_version": 1, "interval": plan.interval.label,
            "bar_minutes": plan.interval.minutes, "max_plausible_ic": MAX_PLAUSIBLE_IC,
            "columns": sorted(columns, key=lambda c: c["name"])}
