"""The sample window: per symbol, the last ``max_rows_per_symbol`` rows by ``ts`` (DESIGN §2).

One panel is built here and every stage reads it, so no stage can sample differently (a stage
that read a symbol's whole history instead would train and score on other rows than the
others, and its numbers could not be compared with theirs). File order is never trusted: row
groups are chosen from the parquet ``ts`` statistics (newest first) and rows are sorted by
``ts`` before the tail is taken, so an unsorted file still yields the latest N rows by time.
Only the row groups that can hold one of those N rows are read, so the cost follows N, not the
length of the history.
"""

import dataclasses
import functools
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from parity_pipeline.core.data.leak_gate import refuse_near_copies
from parity_pipeline.core.data.registry import FeatureRegistry
from parity_pipeline.core.errors import ParityInputError
from parity_pipeline.core.hashing import table_sha256, to_canonical

logger = logging.getLogger(__name__)

SYMBOL_PATTERN = re.compile(r"^[A-Za-z0-9._-]+$")
PANEL_SORT = ["ts", "symbol"]
READ_THREADS = 4


@dataclass(frozen=True)
class SymbolStats:
    n: int
    start: str
    end: str
    available_rows: int
    row_groups_read: int
    truncated_by_limit: bool
    # {column: share of NaN rows in the window} for every feature and target, sorted: recorded
    # per run so a burst of NaN (which keeps n the same) is seen by nan_rate_drift and diff
    nan_rates: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SampledPanel:
    panel: pd.DataFrame  # symbol, ts, declared columns; sorted by (ts, symbol); RangeIndex
    per_symbol_stats: dict[str, SymbolStats]
    max_rows_per_symbol: int
    universe: tuple[str, ...]
    n_effective: int

    @functools.cached_property
    def data_fingerprint(self) -> str:
        """Content hash of the window, computed on first use: loading and hashing are timed
        apart (bench/bench_sampling.py, bench/bench_repro.py)."""
        return panel_fingerprint(self.panel)


def check_symbol_name(symbol: str) -> str:
    if not SYMBOL_PATTERN.match(symbol) or symbol in (".", ".."):
        raise ParityInputError(f"symbol {symbol!r} is not a valid name: use letters, digits and "
                               "'.', '_' or '-' only (no path separators)")
    return symbol


def symbol_file(data_dir: Path, interval: str, symbol: str) -> Path:
    check_symbol_name(symbol)
    return Path(data_dir) / f"interval={interval}" / f"symbol={symbol}" / f"{symbol}.parquet"


def discover_symbols(data_dir: Path, interval: str) -> tuple[str, ...]:
    data_dir = Path(data_dir)
    if data_dir.exists() and not data_dir.is_dir():
        # a file (e.g. the symbol's parquet or a CSV) is not a dataset: synth there would fail
        raise ParityInputError(f"--data {data_dir} is a file, not a dataset folder: pass the "
                               f"folder that holds feature_registry.json and interval=<..>/ "
                               f"(e.g. {data_dir.parent}), or import plain bars with `parity "
                               f"data import --input {data_dir} --out <new folder>`")
    if not data_dir.is_dir():
        raise ParityInputError(f"data folder {data_dir} does not exist: run `parity data synth "
                               f"--out {data_dir}` or pass --data pointing at your dataset")
    interval_dir = data_dir / f"interval={interval}"
    found = sorted(p.name.removeprefix("symbol=") for p in interval_dir.glob("symbol=*")
                   if p.is_dir()) if interval_dir.is_dir() else []
    if not found:
        raise ParityInputError(f"no symbols under {interval_dir}: expected folders "
                               f"symbol=<SYM>/<SYM>.parquet (Hive layout)")
    return tuple(check_symbol_name(s) for s in found)


def load_panel(data_dir: Path, registry: FeatureRegistry, max_rows_per_symbol: int,
               symbols: tuple[str, ...] | None = None) -> SampledPanel:
    """Build the shared panel; raises ParityInputError naming the file/symbol/field at fault."""
    if isinstance(max_rows_per_symbol, bool) or not isinstance(max_rows_per_symbol, int) \
            or max_rows_per_symbol <= 0:
        raise ParityInputError(f"max_rows_per_symbol must be a positive integer, got "
                               f"{max_rows_per_symbol!r}")
    available = discover_symbols(data_dir, registry.interval)
    universe = tuple(sorted(check_symbol_name(s) for s in set(symbols))) if symbols else available
    unknown = [s for s in universe if s not in available]
    if unknown:
        raise ParityInputError(f"symbols {unknown} have no file under {data_dir}; available: "
                               f"{', '.join(available)}")
    # Arrow decodes without the GIL, so a few threads overlap file reads; results are taken in
    # universe order, so the panel never depends on which read finished first. The windows stay
    # Arrow tables until one concat, one sort and one conversion to pandas for the whole panel.
    with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
        windows = list(pool.map(lambda symbol: read_symbol_table(
            symbol_file(data_dir, registry.interval, symbol), symbol, registry,
            max_rows_per_symbol), universe))
    stats = {symbol: symbol_stats for symbol, (_, symbol_stats) in zip(universe, windows,
                                                                        strict=True)}
    combined = pa.concat_tables([table for table, _ in windows], promote_options="default")
    order = pc.sort_indices(combined, sort_keys=[(key, "ascending") for key in PANEL_SORT])
    panel = combined.take(order).to_pandas()
    return SampledPanel(panel=panel, per_symbol_stats=stats,
                        max_rows_per_symbol=max_rows_per_symbol, universe=universe,
                        n_effective=len(panel))


def preflight(data_dir: Path, registry: FeatureRegistry, max_rows_per_symbol: int,
              symbols: tuple[str, ...] | None = None) -> dict[str, pd.DatetimeIndex]:
    """Check every symbol file before a run is launched: readable parquet with rows, declared
    columns and types (from the footer), and the window's timestamps (only the ``ts`` column of
    the row groups the run will read) and values (``check_window_values``). Bad input then
    fails in seconds and no run starts. Returns each symbol's window timestamps (sorted)."""
    available = discover_symbols(data_dir, registry.interval)
    universe = tuple(sorted(set(symbols))) if symbols else available
    windows = {}
    for symbol in universe:
        path = symbol_file(data_dir, registry.interval, check_symbol_name(symbol))
        parquet = _open_parquet(path, symbol)
        columns = _columns_to_read(parquet.schema_arrow, path, registry)
        _check_schema(parquet.schema_arrow, path, registry)
        groups = _row_groups_for_tail(parquet, max_rows_per_symbol, path)
        window = _tail_by_time(parquet.read_row_groups(groups, columns=columns,
                                                       use_threads=False),
                               path, symbol, max_rows_per_symbol)
        window = _cast_window(window, registry)
        check_window_values(window, path, symbol, registry)
        windows[symbol] = pd.DatetimeIndex(window.column("ts").to_pandas())
    return windows


def check_window_values(window: pa.Table, path: Path, symbol: str,
                        registry: FeatureRegistry) -> None:
    """Data-quality gates on the rows a run reads (``_cast_window`` output, sorted by ``ts``):
    no ±inf in a feature or target, no feature NaN on every row or with gaps (NaN after its
    first value) on more than ``max_nan_rate`` of them, none constant. Each would fail a run
    mid-way or be "selected" while carrying no information. Last, no feature may nearly copy
    a target or label-side column (``leak_gate``: it would be selected first)."""
    ts = window.column("ts").to_pandas()
    for name in sorted(set(registry.feature_names) | set(registry.target_names)):
        values = window.column(name).to_numpy(zero_copy_only=False)
        infinite = np.flatnonzero(np.isinf(values))
        if len(infinite):
            row = infinite[0]
            raise ParityInputError(
                f"symbol {symbol}: {path} column {name!r} holds {values[row]} at ts={ts[row]} "
                f"({len(infinite)} infinite values in the window): replace infinities with NaN "
                "(e.g. where a denominator is 0) and write the file again; nothing was run")
    for name in registry.feature_names:
        values = window.column(name).to_numpy(zero_copy_only=False)
        present = values[~np.isnan(values)]
        if not len(present):
            raise ParityInputError(
                f"symbol {symbol}: {path} feature {name!r} is NaN on all {len(values)} rows of "
                "the window: fix its computation, or remove it from the registry's features "
                "(or give it the role raw); nothing was run")
        # gaps: NaN after the first value (a long lookback's warm-up at the start is not one)
        first_value = int(np.flatnonzero(~np.isnan(values))[0])
        gaps = first_value + np.flatnonzero(np.isnan(values[first_value:]))
        if len(gaps) > registry.max_nan_rate * len(values):
            first = int(gaps[0])
            raise ParityInputError(
                f"symbol {symbol}: {path} feature {name!r} has gaps: NaN on {len(gaps)} of the "
                f"{len(values)} rows of the window after its first value "
                f"({len(gaps) / len(values):.1%}, first at ts={ts[first]}), above max_nan_rate "
                f"{registry.max_nan_rate:.0%} of {registry.source}: repair the data, or raise "
                "max_nan_rate there if such gaps are expected; nothing was run")
        if len(present) > 1 and np.all(present == present[0]):
            raise ParityInputError(
                f"symbol {symbol}: {path} feature {name!r} is constant ({present[0]}) on the "
                f"{len(values)} rows of the window from ts={ts[0]}: it carries no information; "
                "fix its source (e.g. a volume of zeros) or remove it from the registry's "
                "features; nothing was run")
    refuse_near_copies(window, path, symbol, registry)


def panel_fingerprint(panel: pd.DataFrame) -> str:
    """Content hash of the sampled window (every row, every column)."""
    return table_sha256(panel, sort_by=["symbol", "ts"])


def read_symbol_window(path: Path, symbol: str, registry: FeatureRegistry,
                       max_rows: int) -> tuple[pd.DataFrame, SymbolStats]:
    """One symbol's window as a DataFrame (``symbol``, ``ts``, declared columns)."""
    table, stats = read_symbol_table(path, symbol, registry, max_rows)
    return table.to_pandas(), stats


def read_symbol_table(path: Path, symbol: str, registry: FeatureRegistry,
                      max_rows: int) -> tuple[pa.Table, SymbolStats]:
    parquet = _open_parquet(path, symbol)
    columns = _columns_to_read(parquet.schema_arrow, path, registry)
    groups = _row_groups_for_tail(parquet, max_rows, path)
    table = parquet.read_row_groups(groups, columns=columns, use_threads=False)
    _check_schema(table.schema, path, registry)
    # Validate and cut the tail in Arrow; the caller converts the whole panel to pandas once.
    window = _cast_window(_tail_by_time(table, path, symbol, max_rows), registry)
    check_window_values(window, path, symbol, registry)  # also for runs launched from the UI
    window = window.add_column(0, "symbol", pa.array([symbol] * window.num_rows, pa.string()))
    ts_ns = window.column("ts").cast(pa.int64())
    total = parquet.metadata.num_rows
    return window, SymbolStats(
        n=window.num_rows, start=_iso_utc(ts_ns[0].as_py()), end=_iso_utc(ts_ns[-1].as_py()),
        available_rows=total, row_groups_read=len(groups), truncated_by_limit=total > max_rows,
        nan_rates=window_nan_rates(window, registry))


NAN_RATE_DECIMALS = 6  # stable in JSON and across platforms; finer than one row in 10^6


def window_nan_rates(window: pa.Table, registry: FeatureRegistry) -> dict[str, float]:
    """Share of NaN (or null) rows of each feature and target in the window, sorted by name."""
    rates = {}
    for name in sorted(set(registry.feature_names) | set(registry.target_names)):
        values = window.column(name).to_numpy(zero_copy_only=False)  # nulls read as NaN
        rates[name] = round(float(np.isnan(values).mean()), NAN_RATE_DECIMALS)
    return rates


def _iso_utc(nanos: int) -> str:
    return pd.Timestamp(nanos, unit="ns", tz="UTC").isoformat()


def _open_parquet(path: Path, symbol: str) -> pq.ParquetFile:
    if not path.is_file():
        raise ParityInputError(f"symbol {symbol}: file {path} is missing; regenerate the data "
                               "or drop the symbol with --symbols")
    try:
        # Local files: memory-mapped, no read coalescing (pre_buffer helps object stores, but
        # here it copies whole column chunks we then decode once): ~20% faster per window.
        parquet = pq.ParquetFile(path, memory_map=True, pre_buffer=False)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ParityInputError(f"symbol {symbol}: {path} is not a readable parquet file ({exc});"
                               " it may be truncated or another format: re-export it") from exc
    if parquet.metadata.num_rows == 0:
        raise ParityInputError(f"symbol {symbol}: {path} has no rows; remove the symbol or "
                               "re-export its data")
    return parquet


def _columns_to_read(schema: pa.Schema, path: Path, registry: FeatureRegistry) -> list[str]:
    present = set(schema.names)
    if "ts" not in present:
        raise ParityInputError(f"{path}: column 'ts' (UTC timestamp) is missing")
    needed = set(registry.feature_names) | set(registry.target_names)
    missing = sorted(needed - present)
    if missing:
        raise ParityInputError(f"{path}: declared columns {missing} are missing; the file does "
                               f"not match {registry.source}")
    return ["ts", *sorted((set(registry.declared_columns) & present) - {"ts"})]


def _row_groups_for_tail(parquet: pq.ParquetFile, max_rows: int, path: Path) -> list[int]:
    """Row groups that can hold one of the newest ``max_rows`` rows, from ``ts`` statistics.

    Groups are taken newest-max first until they hold ``max_rows`` rows; the N-th newest
    timestamp among them is a lower bound for the window, so any other group whose max reaches
    it must be read too (it happens only when the file is not sorted by time).
    """
    bounds = _ts_bounds(parquet)
    if bounds is None:
        logger.warning("%s: no ts statistics; reading every row group", path)
        return list(range(parquet.metadata.num_row_groups))
    order = sorted(bounds, key=lambda b: (-b[2], b[0]))  # newest max first, then group index
    chosen, rows = [], 0
    for index, n_rows, _, min_ts in order:
        chosen.append((index, min_ts))
        rows += n_rows
        if rows >= max_rows:
            break
    lower_bound = min(min_ts for _, min_ts in chosen) if rows >= max_rows else None
    extra = [b[0] for b in order[len(chosen):] if lower_bound is None or b[2] >= lower_bound]
    return sorted([index for index, _ in chosen] + extra)


def _ts_bounds(parquet: pq.ParquetFile) -> list[tuple[int, int, int, int]] | None:
    ts_index = parquet.schema_arrow.get_field_index("ts")
    bounds = []
    for index in range(parquet.metadata.num_row_groups):
        group = parquet.metadata.row_group(index)
        column_stats = group.column(ts_index).statistics
        if column_stats is None or not column_stats.has_min_max:
            return None
        bounds.append((index, group.num_rows, _as_nanos(column_stats.max),
                       _as_nanos(column_stats.min)))
    return bounds


def _as_nanos(value: object) -> int:
    return pd.Timestamp(value).as_unit("ns").value


def _check_schema(schema: pa.Schema, path: Path, registry: FeatureRegistry) -> None:
    ts_type = schema.field("ts").type
    if not pa.types.is_timestamp(ts_type) or ts_type.tz is None:
        raise ParityInputError(f"{path}: column 'ts' must be a time-zone aware timestamp (UTC), "
                               f"found {ts_type}; convert it with tz='UTC'")
    for name in sorted(set(registry.feature_names) | set(registry.target_names)):
        field_type = schema.field(name).type
        if not (pa.types.is_floating(field_type) or pa.types.is_integer(field_type)):
            raise ParityInputError(f"{path}: column {name!r} must be numeric (float), found "
                                   f"{field_type}; fix the export or the registry")


def _tail_by_time(table: pa.Table, path: Path, symbol: str, max_rows: int) -> pa.Table:
    """The newest ``max_rows`` rows by ``ts`` (never file order); rejects null/duplicate ts."""
    ts = table.column("ts")
    if ts.null_count:
        raise ParityInputError(f"{path}: {ts.null_count} rows have a null 'ts'; drop or repair "
                               "them")
    order = pc.sort_indices(ts)  # stable
    ts_sorted = pc.take(ts, order).cast(pa.int64()).to_numpy()
    repeats = np.flatnonzero(np.diff(ts_sorted) == 0)
    if len(repeats):
        first = pd.Timestamp(int(ts_sorted[repeats[0]]), unit=ts.type.unit, tz="UTC")
        raise ParityInputError(f"symbol {symbol}: {path} has duplicate timestamps (first: "
                               f"{first}); keep one row per bar")
    keep = order.slice(max(len(order) - max_rows, 0))
    return table.take(keep)


def _cast_window(window: pa.Table, registry: FeatureRegistry) -> pa.Table:
    """Features and targets as float64, ``ts`` as UTC nanoseconds: one dtype per column."""
    numeric = set(registry.feature_names) | set(registry.target_names)
    fields = [pa.field(f.name, pa.float64()) if f.name in numeric
              else pa.field("ts", pa.timestamp("ns", tz="UTC")) if f.name == "ts" else f
              for f in window.schema]
    return window.cast(pa.schema(fields))


def stats_as_dicts(sampled: SampledPanel) -> dict[str, dict]:
    """``per_symbol_stats`` as recorded (JSON values: UTC ISO timestamps), by symbol."""
    return {symbol: to_canonical(dataclasses.asdict(stats))
            for symbol, stats in sorted(sampled.per_symbol_stats.items())}


def panel_stats(panel: pd.DataFrame) -> dict[str, dict]:
    """``per_symbol_stats`` of a panel: {symbol: {n, start, end}} (UTC ISO timestamps)."""
    grouped = panel.groupby("symbol", sort=True)["ts"].agg(["size", "min", "max"])
    return {str(symbol): {"n": int(row["size"]), "start": to_canonical(row["min"]),
                          "end": to_canonical(row["max"])} for symbol, row in grouped.iterrows()}
