"""Benchmark: what reproducibility costs a run, IO manager and in-asset hashing together.

Runs the default graph (10 symbols x 20,000 rows, N = 2000, in-process) alternately with
(a) ``ReproducibilityIOManager`` (payload + manifest + ledger, hash verified on every load) and
(b) a plain pickle IO manager built here (unwraps ``Artifact.payload``; no hash, manifest,
ledger or verification). Same assets, resources, run config and executor; each run in a fresh
temporary PARITY_HOME. Target: median overhead (a) vs (b) <= 5% of the run's wall time.

The assets hash in both variants (``make_artifact`` for the DataVersion, panel fingerprints,
identity signatures, snapshot fingerprints), so (a) - (b) alone understates the full cost:
every logical hashing call is timed as well (wrapped in this process only), split into calls
made inside the IO manager and calls made by the assets. Finally the throughput of the table
hash ``table_sha256`` on the default panel and on a 10x larger one, and what the content store
adds for a repeated identical run and for a run after one symbol changed. Always exits 0.

    .venv/bin/python bench/bench_repro.py [--repeats 3] [--hash-repeats 20]
"""

import argparse
import functools
import pickle
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pandas as pd
from _common import DATASETS_DIR, ensure_dataset, fresh_home, median

import parity_pipeline.definitions as definitions
from parity_pipeline.core import hashing
from parity_pipeline.core.data.registry import load_registry
from parity_pipeline.core.data.sampling import load_panel
from parity_pipeline.core.repro import artifact as artifact_module
from parity_pipeline.core.repro.artifact import Artifact
from parity_pipeline.defs.jobs import PARITY_JOB_NAME
from parity_pipeline.resources.io_manager import ReproducibilityIOManager
from parity_pipeline.runner import RunRequestOptions, run_config

N_SYMBOLS, HISTORY_ROWS, MAX_ROWS = 10, 20_000, 2000
OVERHEAD_TARGET_PCT = 5.0
REPRO, PLAIN = "repro", "plain"
# Captured before install_hash_timers() swaps the binding: the throughput loop is not timed.
HASH_TABLE_SHA256 = hashing.table_sha256

# ---------------------------------------------------------------------------------------------
# Time accounting: one ledger per run, filled by the IO-manager and hashing wrappers below.
# ---------------------------------------------------------------------------------------------


HashKey = tuple[str, str, str]  # (io_manager | assets, hashing function, calling function)


@dataclass
class RunLedger:
    io_seconds: float = 0.0
    hash_seconds: dict[HashKey, float] = field(default_factory=lambda: defaultdict(float))
    hash_calls: dict[HashKey, int] = field(default_factory=lambda: defaultdict(int))

    def hashing(self, where: str | None = None) -> float:
        return sum(s for key, s in self.hash_seconds.items() if where in (None, key[0]))


class Accounting:
    """Process-wide state: the current run's ledger, and whether we are inside the IO manager."""

    ledger = RunLedger()
    in_io_manager = False
    hash_depth = 0


def timed_io(method: Callable) -> Callable:
    """Count the IO manager's own time, and tag hashing done inside it as 'io_manager'."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        Accounting.in_io_manager = True
        started = time.perf_counter()
        try:
            return method(self, *args, **kwargs)
        finally:
            Accounting.ledger.io_seconds += time.perf_counter() - started
            Accounting.in_io_manager = False

    return wrapper


def calling_function(frame) -> str:
    """'module.function' of a hashing call's caller, to see which step the hashing serves."""
    module = frame.f_globals.get("__name__", "?").rsplit(".", 1)[-1]
    return f"{module}.{frame.f_code.co_name}"


def timed_hash(name: str, function: Callable) -> Callable:
    """Time the outermost hashing call only, so nested wrapped calls are not counted twice."""

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        if Accounting.hash_depth:
            return function(*args, **kwargs)
        Accounting.hash_depth += 1
        caller = calling_function(sys._getframe(1))
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            Accounting.hash_depth -= 1
            key = ("io_manager" if Accounting.in_io_manager else "assets", name, caller)
            Accounting.ledger.hash_seconds[key] += time.perf_counter() - started
            Accounting.ledger.hash_calls[key] += 1

    return wrapper


# Every SHA-256 entry point the pipeline calls. artifact_sha256 is the artifact hash
# (make_artifact in the assets, verification on load in the IO manager); table_sha256 and
# sha256_json are fingerprints and signatures; the model hashes cover saved models (sha256_text:
# linear models); derive_seed is listed so its inner sha256_text is not taken for a model hash.
HASH_FUNCTIONS = {
    "artifact_sha256": (artifact_module, "artifact_sha256"),
    "table_sha256": (hashing, "table_sha256"),
    "sha256_json": (hashing, "sha256_json"),
    "lightgbm_model_sha256": (hashing, "lightgbm_model_sha256"),
    "sha256_text": (hashing, "sha256_text"),
    "derive_seed": (hashing, "derive_seed"),
}


def install_hash_timers() -> None:
    """Replace every module-level binding of the hashing functions inside parity_pipeline.

    Callers import them by name (``from ...hashing import table_sha256``), so patching only the
    defining module would miss most calls; every parity module's binding is swapped instead.
    """
    for name, (module, attribute) in HASH_FUNCTIONS.items():
        original = getattr(module, attribute)
        wrapped = timed_hash(name, original)
        for loaded in list(sys.modules.values()):
            if getattr(loaded, "__name__", "").startswith("parity_pipeline"):
                for key, value in list(vars(loaded).items()):
                    if value is original:
                        setattr(loaded, key, wrapped)


# ---------------------------------------------------------------------------------------------
# The two IO managers.
# ---------------------------------------------------------------------------------------------


class TimedReproducibilityIOManager(ReproducibilityIOManager):
    """The project's IO manager unchanged, with its handle/load time counted."""

    handle_output = timed_io(ReproducibilityIOManager.handle_output)
    load_input = timed_io(ReproducibilityIOManager.load_input)


class PlainPickleIOManager(dg.ConfigurableIOManager):
    """The baseline: pickle the bare payload to a folder. No hash, manifest, ledger or check."""

    base_dir: str

    def _path(self, asset_key: dg.AssetKey) -> Path:
        return Path(self.base_dir).joinpath(*asset_key.path).with_suffix(".pkl")

    @timed_io
    def handle_output(self, context: dg.OutputContext, obj) -> None:
        payload = obj.payload if isinstance(obj, Artifact) else obj
        path = self._path(context.asset_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as handle:
            pickle.dump(payload, handle, protocol=pickle.HIGHEST_PROTOCOL)

    @timed_io
    def load_input(self, context: dg.InputContext):
        with open(self._path(context.asset_key), "rb") as handle:
            return pickle.load(handle)


def variant_job(variant: str, parity_home: Path) -> dg.JobDefinition:
    """The parity_all job of the code location, with only the io_manager resource swapped."""
    defs = definitions.defs
    if variant == REPRO:
        io_manager = TimedReproducibilityIOManager(store=definitions.artifact_store)
    else:
        io_manager = PlainPickleIOManager(base_dir=str(parity_home / "plain"))
    swapped = dg.Definitions(assets=defs.assets, jobs=defs.jobs,
                             resources={**defs.resources, "io_manager": io_manager})
    return swapped.resolve_job_def(PARITY_JOB_NAME)


# ---------------------------------------------------------------------------------------------
# Runs.
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunResult:
    variant: str
    wall: float
    success: bool
    ledger: RunLedger


def bench_run_config(data_dir: Path) -> dict:
    """The run config ``parity run`` would use, with the console quiet (same for both)."""
    config = run_config(RunRequestOptions(data_dir=str(data_dir), max_rows_per_symbol=MAX_ROWS))
    config["loggers"] = {"console": {"config": {"log_level": "WARNING"}}}
    return config


def run_variant(variant: str, data_dir: Path) -> RunResult:
    with fresh_home(variant) as parity_home:
        job = variant_job(variant, parity_home)
        instance = dg.DagsterInstance.from_config(str(parity_home / "dagster"))
        Accounting.ledger = RunLedger()
        try:
            started = time.perf_counter()
            result = job.execute_in_process(run_config=bench_run_config(data_dir),
                                            instance=instance, raise_on_error=False)
            wall = time.perf_counter() - started
        finally:
            instance.dispose()
    return RunResult(variant, wall, result.success, Accounting.ledger)


def run_order(repeats: int) -> list[str]:
    """Pairs in alternating order (a b, b a, a b, ...): first-run and drift effects cancel."""
    order: list[str] = []
    for pair in range(repeats):
        order += [REPRO, PLAIN] if pair % 2 == 0 else [PLAIN, REPRO]
    return order


# ---------------------------------------------------------------------------------------------
# Reports.
# ---------------------------------------------------------------------------------------------


def print_runs(results: list[RunResult]) -> None:
    print("\nruns (wall = execute_in_process; io = handle_output + load_input; hashing split by "
          "caller)")
    header = (f"{'#':>2} | {'variant':<7} | {'wall s':>7} | {'io mgr s':>8} | "
              f"{'hash: assets s':>14} | {'hash: io mgr s':>14} | status")
    print(header + "\n" + "-" * len(header))
    for number, r in enumerate(results, 1):
        print(f"{number:>2} | {r.variant:<7} | {r.wall:>7.2f} | {r.ledger.io_seconds:>8.3f} | "
              f"{r.ledger.hashing('assets'):>14.3f} | {r.ledger.hashing('io_manager'):>14.3f} | "
              f"{'SUCCESS' if r.success else 'FAILURE'}")


def medians_of(results: list[RunResult], variant: str) -> dict[str, float]:
    runs = [r for r in results if r.variant == variant]
    return {"wall": median([r.wall for r in runs]),
            "io": median([r.ledger.io_seconds for r in runs]),
            "hash_assets": median([r.ledger.hashing("assets") for r in runs]),
            "hash_io": median([r.ledger.hashing("io_manager") for r in runs]),
            "hash_total": median([r.ledger.hashing() for r in runs])}


def print_overhead(results: list[RunResult]) -> None:
    repro, plain = medians_of(results, REPRO), medians_of(results, PLAIN)
    print(f"\nmedians of {len(results) // 2} run(s) each")
    header = (f"{'variant':<7} | {'wall s':>7} | {'io mgr s':>8} | {'hash: assets s':>14} | "
              f"{'hash: io mgr s':>14} | {'hash total s':>12} | {'hash % of run':>13}")
    print(header + "\n" + "-" * len(header))
    for name, m in ((REPRO, repro), (PLAIN, plain)):
        print(f"{name:<7} | {m['wall']:>7.2f} | {m['io']:>8.3f} | {m['hash_assets']:>14.3f} | "
              f"{m['hash_io']:>14.3f} | {m['hash_total']:>12.3f} | "
              f"{100 * m['hash_total'] / m['wall']:>12.2f}%")

    overhead_s = repro["wall"] - plain["wall"]
    overhead_pct = 100 * overhead_s / plain["wall"]
    io_extra = repro["io"] - plain["io"]
    # Full cost vs a pipeline that hashes nothing: the IO-manager difference plus the hashing
    # the assets do in both variants, both timed directly (so not drowned in run-to-run noise).
    full_s = io_extra + repro["hash_assets"]
    verdict = "PASS" if overhead_pct <= OVERHEAD_TARGET_PCT else "FAIL"
    print(f"\nmedian overhead, repro vs plain run wall time: {overhead_s:+.2f}s = "
          f"{overhead_pct:+.2f}%  (target <= {OVERHEAD_TARGET_PCT:g}%)  {verdict}")
    print_noise(results, overhead_s)
    print(f"  IO manager time per run: repro {repro['io']:.3f}s vs plain {plain['io']:.3f}s "
          f"-> {io_extra:+.3f}s = {100 * io_extra / plain['wall']:+.2f}% of the plain run "
          f"(of which hash verification on load {repro['hash_io']:.3f}s)")
    print(f"  hashing time per run (repro): {repro['hash_total']:.3f}s = "
          f"{100 * repro['hash_total'] / repro['wall']:.2f}% of the run "
          f"({repro['hash_assets']:.3f}s in assets + {repro['hash_io']:.3f}s in the IO manager)")
    print(f"  hashing in assets, paid by both variants: {repro['hash_assets']:.3f}s "
          f"= {100 * repro['hash_assets'] / repro['wall']:.2f}% of the run")
    print(f"  full reproducibility cost, timed directly (IO-manager difference + in-asset "
          f"hashing): {full_s:.3f}s = {100 * full_s / repro['wall']:.2f}% of the repro run  "
          f"{'PASS' if 100 * full_s / repro['wall'] <= OVERHEAD_TARGET_PCT else 'FAIL'}")


def print_noise(results: list[RunResult], overhead_s: float) -> None:
    """Run-to-run spread: a wall-time difference smaller than it is not a measurement."""
    spreads = {}
    for variant in (REPRO, PLAIN):
        walls = [r.wall for r in results if r.variant == variant]
        spreads[variant] = max(walls) - min(walls)
    worst = max(spreads.values())
    within = "within" if abs(overhead_s) <= worst else "outside"
    print(f"  run-to-run spread (max - min): repro {spreads[REPRO]:.2f}s, plain "
          f"{spreads[PLAIN]:.2f}s; the wall-time difference is {within} that noise"
          + ("; the directly timed parts below are the better estimate" if within == "within"
             else ""))


def print_hash_breakdown(results: list[RunResult]) -> None:
    """Which hashing entry point costs what (median per run, repro variant)."""
    runs = [r for r in results if r.variant == REPRO]
    keys = sorted({key for r in runs for key in r.ledger.hash_seconds})
    print("\nhashing calls per run, repro variant (median; outermost hashing call only)")
    header = (f"{'where':<10} | {'function':<21} | {'called from':<40} | {'calls':>5} | "
              f"{'seconds':>7}")
    print(header + "\n" + "-" * len(header))
    for key in keys:
        seconds = median([r.ledger.hash_seconds.get(key, 0.0) for r in runs])
        calls = median([r.ledger.hash_calls.get(key, 0) for r in runs])
        print(f"{key[0]:<10} | {key[1]:<21} | {key[2]:<40} | {calls:>5.0f} | {seconds:>7.3f}")


def hash_throughput(frame: pd.DataFrame, repeats: int) -> tuple[float, float]:
    """Median seconds of one table_sha256 (the pipeline's panel sort keys) and MB/s."""
    table_sha256 = HASH_TABLE_SHA256
    table_sha256(frame, sort_by=["symbol", "ts"])  # warm-up
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        table_sha256(frame, sort_by=["symbol", "ts"])
        times.append(time.perf_counter() - started)
    seconds = median(times)
    return seconds, frame.memory_usage(deep=True).sum() / 1e6 / seconds


def print_throughput(data_dir: Path, repeats: int) -> None:
    registry = load_registry(data_dir)
    # The 10x frame is a real panel too: the same 10 symbols with N = 20,000 (whole history),
    # so (symbol, ts) stays a unique key exactly as in the pipeline's panels.
    panels = {f"default panel (N={MAX_ROWS:,})": load_panel(data_dir, registry, MAX_ROWS).panel,
              f"10x panel (N={HISTORY_ROWS:,})": load_panel(data_dir, registry,
                                                            HISTORY_ROWS).panel}
    print(f"\ntable_sha256 throughput (median of {repeats}, after 1 warm-up; size = "
          "memory_usage(deep=True))")
    header = (f"{'frame':<24} | {'rows':>8} | {'cols':>4} | {'MB':>7} | {'ms / hash':>9} | "
              f"{'MB/s':>7}")
    print(header + "\n" + "-" * len(header))
    for label, panel in panels.items():
        seconds, mb_per_s = hash_throughput(panel, repeats)
        size_mb = panel.memory_usage(deep=True).sum() / 1e6
        print(f"{label:<24} | {len(panel):>8,} | {panel.shape[1]:>4} | {size_mb:>7.1f} | "
              f"{1000 * seconds:>9.1f} | {mb_per_s:>7.1f}")



# ---------------------------------------------------------------------------------------------
# Dedup: bytes a run adds to a store that already holds an earlier run.
# ---------------------------------------------------------------------------------------------


def store_bytes(root: Path) -> int:
    """Bytes on disk under ``root``, each file counted once (a run view's hard links add none)."""
    seen, total = set(), 0
    for path in root.rglob("*"):
        if path.is_file():
            stat = path.stat()
            if (stat.st_dev, stat.st_ino) not in seen:
                seen.add((stat.st_dev, stat.st_ino))
                total += stat.st_size
    return total


def change_one_symbol(data_dir: Path, symbol: str, drop_newest: int) -> None:
    """Drop the newest rows of one symbol's file: its sampled window moves, the rest stay."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = next(data_dir.glob(f"interval=*/symbol={symbol}/{symbol}.parquet"))
    frame = pq.read_table(path).to_pandas().sort_values("ts")
    pq.write_table(pa.Table.from_pandas(frame.iloc[:-drop_newest], preserve_index=False), path)


def print_dedup(data_dir: Path) -> None:
    """One home: a first run, the same run again, then a run after one symbol changed."""
    import shutil
    import tempfile

    job = definitions.defs.resolve_job_def(PARITY_JOB_NAME)
    with fresh_home("dedup") as parity_home, tempfile.TemporaryDirectory() as scratch:
        data_copy = Path(scratch) / "data"
        shutil.copytree(data_dir, data_copy)
        instance = dg.DagsterInstance.from_config(str(parity_home / "dagster"))
        root, sizes, labels = parity_home / "artifacts", [], []
        steps = [("first run", None), ("identical run", None),
                 ("one symbol changed", lambda: change_one_symbol(data_copy, "AAPL", 5))]
        try:
            for label, change in steps:
                if change:
                    change()
                job.execute_in_process(run_config=bench_run_config(data_copy),
                                       instance=instance, raise_on_error=True)
                sizes.append(store_bytes(root))
                labels.append(label)
        finally:
            instance.dispose()
    first = sizes[0]
    print("\nstore growth (one PARITY_HOME; bytes on disk, hard links counted once)")
    print(f"{'run':<20} | {'added bytes':>12} | {'% of first run':>14}")
    print("-" * 52)
    for index, label in enumerate(labels):
        added = sizes[index] - (sizes[index - 1] if index else 0)
        print(f"{label:<20} | {added:>12,} | {100.0 * added / first:>13.1f}%")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant")
    parser.add_argument("--hash-repeats", type=int, default=20)
    parser.add_argument("--workdir", type=Path, default=DATASETS_DIR)
    args = parser.parse_args()

    data_dir = ensure_dataset(N_SYMBOLS, HISTORY_ROWS, args.workdir)
    install_hash_timers()
    results = []
    for number, variant in enumerate(run_order(args.repeats), 1):
        results.append(run_variant(variant, data_dir))
        print(f"  run {number}: {variant} {results[-1].wall:.1f}s")

    print(f"\nreproducibility overhead: {N_SYMBOLS} symbols x {HISTORY_ROWS:,} rows, "
          f"N = {MAX_ROWS}, in-process, fresh PARITY_HOME per run")
    print_runs(results)
    print_overhead(results)
    print_hash_breakdown(results)
    print_throughput(data_dir, args.hash_repeats)
    print_dedup(data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
