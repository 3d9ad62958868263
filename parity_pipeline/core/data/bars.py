"""Plain OHLCV files as people have them, read into one validated table of bars.

A file is CSV or parquet. Column names are matched case-insensitively, with spaces and dashes
read as underscores, and with the common aliases:

- time: ``ts``, ``timestamp``, ``datetime``, ``date``, ``time``, or an unnamed first column
  (a CSV written with its index, as pandas and the ``backtesting`` package ship them);
- symbol: ``symbol`` or ``ticker``; a file without one is imported under ``--symbol NAME``;
- prices: ``open``, ``high``, ``low``, ``close`` (required), ``volume``, and an adjusted close
  (``adj_close``, ``adjusted``, ``adjusted_close``, ``adjclose``).

``close`` is the only price a file must have: without ``open``/``high``/``low`` (a close-only
export) the importer builds the close-derived features only and measures barriers on closes;
without ``volume`` (or with a volume of zeros, as FX quotes have) it builds no volume features.

Timestamps without a time zone are read in ``--tz`` (default UTC) and stored in UTC.

Gates (each a ``ParityInputError`` naming file, symbol, column and first offending row, before
anything is written): unreadable file or missing columns; non-numeric, missing, infinite or
non-positive prices, or high below low; an invalid symbol name; duplicate timestamps, or
timestamps that go backwards within a symbol (in a time-ordered export that means a broken
file: a daylight-saving repeat, pieces appended out of order); symbols whose bar spacing differs.

The bar interval is detected from the timestamps (the median step between a symbol's bars; a
session's overnight and weekend gaps do not move the median): 1m to 4h intraday, ``1d``,
``1w`` or ``1mo``. A ``--interval`` that contradicts it is refused, naming the spacing found.
"""

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from parity_pipeline.core.data.sampling import SYMBOL_PATTERN
from parity_pipeline.core.errors import ParityInputError

TIME_ALIASES = ("ts", "timestamp", "datetime", "date", "time")
SYMBOL_ALIASES = ("symbol", "ticker")
ADJUSTED_ALIASES = ("adj_close", "adjusted", "adjusted_close", "adjclose")
OPTIONAL_PRICES = ("open", "high", "low", "volume")
# pandas' names for a header cell left empty (CSV) and for a stored index (parquet)
UNNAMED_FIRST = ("unnamed:_0", "", "__index_level_0__", "index")

INTRADAY_MINUTES = (1, 2, 3, 5, 10, 15, 20, 30, 60, 120, 180, 240)
# Calendar intervals: nominal minutes, and the median steps that identify them (a daily series
# steps 1 day, 3 over a weekend; a monthly one 28-31 days).
CALENDAR_INTERVALS = {"1d": (1440, pd.Timedelta(hours=20), pd.Timedelta(days=4)),
                      "1w": (7 * 1440, pd.Timedelta(days=6), pd.Timedelta(days=8)),
                      "1mo": (30 * 1440, pd.Timedelta(days=27), pd.Timedelta(days=32))}


@dataclass(frozen=True)
class Interval:
    label: str  # "5m", "1h", "1d", "1w", "1mo"
    minutes: int  # nominal length of one bar

    @property
    def intraday(self) -> bool:
        return self.minutes < 1440


def minutes_label(minutes: int) -> str:
    return f"{minutes // 60}h" if minutes % 60 == 0 else f"{minutes}m"


SUPPORTED = tuple(minutes_label(m) for m in INTRADAY_MINUTES) + tuple(CALENDAR_INTERVALS)


def parse_interval(text: str) -> Interval:
    """``--interval`` as an Interval ("60m" and "1h" are the same); refuses what is unknown."""
    match = re.fullmatch(r"(\d+)(m|h|d|w|mo)", text.strip().lower())
    if match:
        count, unit = int(match.group(1)), match.group(2)
        if unit in ("m", "h") and count * (60 if unit == "h" else 1) in INTRADAY_MINUTES:
            minutes = count * (60 if unit == "h" else 1)
            return Interval(minutes_label(minutes), minutes)
        if f"{count}{unit}" in CALENDAR_INTERVALS:
            return Interval(f"{count}{unit}", CALENDAR_INTERVALS[f"{count}{unit}"][0])
    raise ParityInputError(f"--interval {text!r} is not a bar interval parity imports; use one "
                           f"of {', '.join(SUPPORTED)}, or 'auto' to detect it")


def spacing_label(step: pd.Timedelta) -> str:
    minutes = step.total_seconds() / 60
    if minutes >= 1440 and minutes % 1440 == 0:
        return f"{int(minutes // 1440)}d"
    if minutes >= 1 and minutes % 1 == 0:
        return minutes_label(int(minutes))
    return f"{step.total_seconds():g}s"


def bar_spacing(bars: pd.DataFrame) -> dict[str, pd.Timedelta]:
    """Each symbol's median step between consecutive timestamps (bars sorted by symbol, ts)."""
    steps = bars.groupby("symbol", sort=True)["ts"].diff()
    return {str(symbol): step for symbol, step in
            steps.groupby(bars["symbol"], sort=True).median().items()}


def interval_of(step: pd.Timedelta) -> Interval | None:
    """The interval a median step identifies, or None when it is none parity imports."""
    for label, (minutes, low, high) in CALENDAR_INTERVALS.items():
        if low <= step <= high:
            return Interval(label, minutes)
    minutes = step.total_seconds() / 60
    if minutes in INTRADAY_MINUTES:
        return Interval(minutes_label(int(minutes)), int(minutes))
    return None


def detect_interval(bars: pd.DataFrame, requested: str, source: str) -> Interval:
    """The bar interval of every symbol (they must agree); a contradicting request is refused."""
    found: dict[str, Interval] = {}
    for symbol, step in bar_spacing(bars).items():
        interval = interval_of(step)
        if interval is None:
            raise ParityInputError(
                f"{source}: symbol {symbol}'s bars are {spacing_label(step)} apart (median step "
                f"between timestamps), which is not a bar interval parity imports "
                f"({', '.join(SUPPORTED)}); resample the bars to one of them first (open first, "
                "high max, low min, close last, volume sum)")
        found[symbol] = interval
    labels = sorted({i.label for i in found.values()})
    if len(labels) > 1:
        by_label = {label: [s for s, i in found.items() if i.label == label][:3]
                    for label in labels}
        raise ParityInputError(f"{source}: symbols have different bar intervals {by_label}; "
                               "import each interval into its own dataset")
    interval = next(iter(found.values()))
    if requested != "auto" and parse_interval(requested) != interval:
        symbol = next(iter(found))
        raise ParityInputError(
            f"{source}: --interval {requested} contradicts the data: symbol {symbol}'s bars are "
            f"{interval.label} apart (median step between timestamps); imported as "
            f"{requested}, {interval.label} returns would be labelled as {requested} ones. "
            f"Use --interval {interval.label} (or leave --interval at auto)")
    return interval


def normalized_name(name: object) -> str:
    return re.sub(r"[\s\-]+", "_", str(name).strip().lower())


def read_file(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise ParityInputError(f"input file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet", ".pq"):
        raise ParityInputError(f"input file {path}: use a .csv or .parquet file")
    try:
        raw = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    except (ValueError, OSError, pa.ArrowInvalid) as exc:
        raise ParityInputError(f"input file {path} cannot be read ({exc}); export it again as "
                               "CSV or parquet") from exc
    if not isinstance(raw.index, pd.RangeIndex):  # a parquet written with its time index
        raw = raw.reset_index()
    return raw


def _time_column(columns: dict[str, object], first: str) -> object | None:
    named = next((columns[a] for a in TIME_ALIASES if a in columns), None)
    return named if named is not None else columns.get(first) if first in UNNAMED_FIRST else None


def read_bars(path: Path, symbol: str | None = None, tz: str = "UTC") -> pd.DataFrame:
    """One file as (symbol, ts, close[, open, high, low, volume]), validated, sorted by
    (symbol, ts); ``row`` keeps each bar's data row in the file for error messages."""
    raw = read_file(path)
    columns = {normalized_name(c): c for c in raw.columns}
    time_column = _time_column(columns, normalized_name(raw.columns[0]) if len(raw.columns) else "")
    symbol_column = next((columns[a] for a in SYMBOL_ALIASES if a in columns), None)
    missing = (["time (timestamp/date)"] if time_column is None else []) + (
        ["close"] if "close" not in columns else [])
    if missing:
        raise ParityInputError(
            f"input file {path}: no {' or '.join(missing)} column among {list(raw.columns)[:12]}"
            f"; it needs a time column ({', '.join(TIME_ALIASES)}, or an unnamed first column) "
            "and close (open, high, low, volume and an adjusted close are optional)")
    if symbol_column is not None and symbol is not None:
        raise ParityInputError(f"input file {path} has a symbol column "
                               f"({symbol_column!r}); drop --symbol {symbol} for it")
    if symbol_column is None and symbol is None:
        raise ParityInputError(f"input file {path} has no symbol column (symbol or ticker): "
                               f"name its symbol with --symbol (e.g. --symbol {path.stem})")
    names = raw[symbol_column].astype(str).str.strip() if symbol_column is not None else symbol
    bars = pd.DataFrame({"symbol": names, "ts": _utc_times(raw[time_column], path, tz),
                         "row": np.arange(len(raw))})
    for name in ("close", *OPTIONAL_PRICES):
        if name in columns:
            bars[name] = _numbers(raw[columns[name]], path, bars, name)
    adjusted_column = next((columns[a] for a in ADJUSTED_ALIASES if a in columns), None)
    if adjusted_column is not None:
        _adjust(bars, _numbers(raw[adjusted_column], path, bars, str(adjusted_column)), path)
    _check_names(bars, path)
    _check_prices(bars, path)
    _check_order(bars, path)
    return bars.sort_values(["symbol", "ts"], kind="mergesort", ignore_index=True)


def _utc_times(values: pd.Series, path: Path, tz: str) -> pd.Series:
    try:
        stamps = pd.to_datetime(values)
        if stamps.dt.tz is None:
            stamps = stamps.dt.tz_localize(tz, ambiguous="raise", nonexistent="raise")
        stamps = stamps.dt.tz_convert("UTC")
    except (ValueError, TypeError) as exc:
        raise ParityInputError(f"input file {path}: the time column cannot be read as "
                               f"timestamps in {tz} ({exc})") from exc
    if stamps.isna().any():
        raise ParityInputError(f"input file {path}: {int(stamps.isna().sum())} rows have no "
                               f"time (first at row {int(np.flatnonzero(stamps.isna())[0])}); "
                               "drop or repair them")
    return stamps.dt.as_unit("ns")


def _first(mask: np.ndarray, bars: pd.DataFrame) -> str:
    row = int(np.flatnonzero(mask)[0])
    return f"row {int(bars['row'].iloc[row])}, symbol {bars['symbol'].iloc[row]}"


def _numbers(column: pd.Series, path: Path, bars: pd.DataFrame, name: str) -> pd.Series:
    values = pd.to_numeric(column, errors="coerce")
    bad = (values.isna() & column.notna()).to_numpy()
    if bad.any():
        raise ParityInputError(f"input file {path}: column {name!r} has non-numeric values "
                               f"(first at {_first(bad, bars)}: {column[bad].iloc[0]!r})")
    if values.isna().any():
        raise ParityInputError(
            f"input file {path}: column {name!r} has {int(values.isna().sum())} missing values "
            f"(first at {_first(values.isna().to_numpy(), bars)}); fill or drop those rows, or "
            "leave the column out (only close is required)")
    infinite = np.isinf(values.to_numpy(dtype="float64"))
    if infinite.any():
        raise ParityInputError(f"input file {path}: column {name!r} holds infinite values "
                               f"(first at {_first(infinite, bars)}); repair or drop those rows")
    return values.astype("float64")


def _adjust(bars: pd.DataFrame, adjusted: pd.Series, path: Path) -> None:
    """Scale prices by adjusted / close and volume by its inverse, so splits and dividends do not
    show up as returns (a 20:1 split would otherwise be a -95 % "return")."""
    factor = adjusted / bars["close"]
    if (factor <= 0).any() or factor.isna().any():
        raise ParityInputError(f"input file {path}: the adjusted close must be positive on every "
                               f"row (first bad at {_first((factor <= 0).to_numpy(), bars)})")
    for name in ("open", "high", "low", "close"):
        if name in bars:
            bars[name] = bars[name] * factor
    if "volume" in bars:
        bars["volume"] = bars["volume"] / factor


def _check_names(bars: pd.DataFrame, path: Path) -> None:
    bad_names = sorted({s for s in bars["symbol"].unique() if not SYMBOL_PATTERN.match(s)})
    if bad_names:
        raise ParityInputError(f"input file {path}: symbols {bad_names[:5]} are not valid names "
                               "(letters, digits, '.', '_', '-')")


def _check_prices(bars: pd.DataFrame, path: Path) -> None:
    for name in ("open", "high", "low", "close"):
        if name in bars and (bars[name] <= 0).any():
            raise ParityInputError(
                f"input file {path}: column {name!r} must be positive (first bad at "
                f"{_first((bars[name] <= 0).to_numpy(), bars)}); prices must be positive with "
                "high >= low (check split adjustments and column order)")
    if "high" in bars and "low" in bars and (bars["high"] < bars["low"]).any():
        raise ParityInputError(
            f"input file {path}: high is below low (first at "
            f"{_first((bars['high'] < bars['low']).to_numpy(), bars)}); prices must be "
            "positive with high >= low (check the column order)")


def _check_order(bars: pd.DataFrame, path: Path) -> None:
    repeated = bars.duplicated(["symbol", "ts"]).to_numpy()
    if repeated.any():
        row = int(np.flatnonzero(repeated)[0])
        raise ParityInputError(
            f"input file {path}: symbol {bars['symbol'].iloc[row]} has more than one bar at "
            f"{bars['ts'].iloc[row]} (row {int(bars['row'].iloc[row])}); keep one bar per time")
    steps = bars.groupby("symbol", sort=False)["ts"].diff()
    backwards = (steps < pd.Timedelta(0)).to_numpy()
    if backwards.any():
        row = int(np.flatnonzero(backwards)[0])
        raise ParityInputError(
            f"input file {path}: symbol {bars['symbol'].iloc[row]}'s time goes backwards at row "
            f"{int(bars['row'].iloc[row])} ({bars['ts'].iloc[row]} after "
            f"{bars['ts'].iloc[row] - steps.iloc[row]}): in a time-ordered export that means a "
            "broken file (pieces appended out of order, a daylight-saving repeat); sort each "
            "symbol's bars by time, check the file, then import again")
