"""Benchmark: the tail-N sample loader against a naive full read, at two history lengths.

(a) naive: ``pd.read_parquet(file).sort_values("ts").tail(N)`` for each symbol file;
(b) the project's ``load_panel`` (reads only the row groups that can hold the last N rows,
    validates, builds the sorted panel). The window's content fingerprint is computed lazily by
    the asset, so it is timed apart and printed in its own column (it is not loading: (a) has
    nothing like it).
Targets: (a)/(b) >= 10 at the long history; (b) time and peak memory within 1.3x across
lengths (the cost must follow N, not the history). Always exits 0: it reports, it does not gate.

    .venv/bin/python bench/bench_sampling.py [--repeats 5] [--max-rows 2000] [--workdir DIR]
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa

from parity_pipeline.core.data.registry import load_registry
from parity_pipeline.core.data.sampling import load_panel, symbol_file
from parity_pipeline.core.data.synth import synthesize_dataset

N_SYMBOLS, SEED = 10, 42
SHORT_ROWS, LONG_ROWS = 20_000, 188_779
SPEEDUP_TARGET, GROWTH_LIMIT = 10.0, 1.3
DEFAULT_WORKDIR = Path(__file__).resolve().parent / "results" / "sampling_data"
MEASURE_FLAG = "--_measure-memory"  # hidden: run one load_panel in this (fresh) process


def ensure_dataset(workdir: Path, n_rows: int) -> Path:
    out_dir = workdir / f"rows={n_rows}"
    if (out_dir / "feature_registry.json").is_file():
        print(f"reusing dataset {out_dir}")
    else:
        print(f"generating dataset {out_dir} ({N_SYMBOLS} symbols x {n_rows} rows) ...")
        started = time.perf_counter()
        synthesize_dataset(out_dir, n_symbols=N_SYMBOLS, n_rows=n_rows, seed=SEED)
        print(f"  done in {time.perf_counter() - started:.1f}s")
    return out_dir


def naive_load(files: list[Path], max_rows: int) -> list[pd.DataFrame]:
    return [pd.read_parquet(f).sort_values("ts").tail(max_rows) for f in files]


def time_both(data_dir: Path, max_rows: int, repeats: int) -> tuple[float, float, float]:
    registry = load_registry(data_dir)
    symbols = tuple(sorted(p.name.removeprefix("symbol=")
                           for p in (data_dir / f"interval={registry.interval}").glob("symbol=*")))
    files = [symbol_file(data_dir, registry.interval, s) for s in symbols]
    run_a = lambda: naive_load(files, max_rows)  # noqa: E731
    run_b = lambda: load_panel(data_dir, registry, max_rows, symbols=symbols)  # noqa: E731
    run_a(), run_b()  # warm-up: page cache and lazy imports out of the timings
    naive_times, loader_times, fingerprint_times = [], [], []
    for _ in range(repeats):  # alternate a/b so drift hits both equally
        for run, times in ((run_a, naive_times), (run_b, loader_times)):
            started = time.perf_counter()
            loaded = run()
            times.append(time.perf_counter() - started)
        started = time.perf_counter()
        loaded.data_fingerprint  # noqa: B018 (the lazy hash is the thing timed)
        fingerprint_times.append(time.perf_counter() - started)
    return (statistics.median(naive_times), statistics.median(loader_times),
            statistics.median(fingerprint_times))


def peak_rss_kib(reset: bool = False) -> int:
    """Peak RSS of this process in KiB. Linux: VmHWM, which /proc/self/clear_refs can reset.

    ru_maxrss is only the fallback: in a child started by fork+exec it starts at the PARENT's
    peak (the kernel carries the pre-exec hiwater mark over), which would hide the child's own.
    """
    try:
        if reset:
            Path("/proc/self/clear_refs").write_text("5")
        status = Path("/proc/self/status").read_text().splitlines()
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def measure_memory_here(data_dir: Path, max_rows: int) -> None:
    """Child side: load once, print peak RSS growth over the post-import baseline as JSON."""
    registry = load_registry(data_dir)
    baseline_kib = peak_rss_kib(reset=True)
    sampled = load_panel(data_dir, registry, max_rows)
    print(json.dumps({"rss_delta_mib": (peak_rss_kib() - baseline_kib) / 1024,
                      "arrow_pool_peak_mib": pa.default_memory_pool().max_memory() / 2**20,
                      "arrow_allocated_now_mib": pa.total_allocated_bytes() / 2**20,
                      "rows": sampled.n_effective}))


def measure_memory(data_dir: Path, max_rows: int) -> dict:
    """Parent side: one fresh interpreter per measurement so peaks do not carry over."""
    result = subprocess.run([sys.executable, __file__, MEASURE_FLAG, str(data_dir),
                             "--max-rows", str(max_rows)], capture_output=True, text=True,
                            check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-rows", type=int, default=2000)
    parser.add_argument("--workdir", type=Path, default=DEFAULT_WORKDIR)
    parser.add_argument(MEASURE_FLAG, type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._measure_memory is not None:
        measure_memory_here(args._measure_memory, args.max_rows)
        return 0

    results = {}
    for n_rows in (SHORT_ROWS, LONG_ROWS):
        data_dir = ensure_dataset(args.workdir, n_rows)
        naive_s, loader_s, fingerprint_s = time_both(data_dir, args.max_rows, args.repeats)
        results[n_rows] = {"naive_s": naive_s, "loader_s": loader_s,
                           "fingerprint_s": fingerprint_s,
                           "memory": measure_memory(data_dir, args.max_rows)}

    print(f"\nsampling benchmark: {N_SYMBOLS} symbols, last {args.max_rows} rows each, "
          f"median of {args.repeats} runs (after 1 warm-up)")
    header = (f"{'history rows':>12} | {'(a) naive s':>11} | {'(b) loader s':>12} | "
              f"{'(a)/(b)':>7} | {'fingerprint s':>13} | {'(b) RSS peak MiB':>16} | "
              f"{'(b) Arrow pool peak MiB':>23}")
    print(header + "\n" + "-" * len(header))
    for n_rows, r in results.items():
        print(f"{n_rows:>12,} | {r['naive_s']:>11.4f} | {r['loader_s']:>12.4f} | "
              f"{r['naive_s'] / r['loader_s']:>7.1f} | {r['fingerprint_s']:>13.4f} | "
              f"{r['memory']['rss_delta_mib']:>16.1f} | "
              f"{r['memory']['arrow_pool_peak_mib']:>23.1f}")

    short, long = results[SHORT_ROWS], results[LONG_ROWS]
    speedup = long["naive_s"] / long["loader_s"]
    time_growth = long["loader_s"] / short["loader_s"]
    rss_growth = long["memory"]["rss_delta_mib"] / max(short["memory"]["rss_delta_mib"], 1e-9)
    pool_growth = (long["memory"]["arrow_pool_peak_mib"]
                   / max(short["memory"]["arrow_pool_peak_mib"], 1e-9))
    print("\ntargets:")
    print(f"  (a)/(b) at {LONG_ROWS:,} rows = {speedup:.1f}x  (>= {SPEEDUP_TARGET:g}x)  "
          f"{verdict(speedup >= SPEEDUP_TARGET)}")
    print(f"  (b) time  {LONG_ROWS:,} / {SHORT_ROWS:,} = {time_growth:.2f}x  "
          f"(<= {GROWTH_LIMIT:g}x)  {verdict(time_growth <= GROWTH_LIMIT)}")
    print(f"  (b) RSS peak growth        = {rss_growth:.2f}x  (<= {GROWTH_LIMIT:g}x)  "
          f"{verdict(rss_growth <= GROWTH_LIMIT)}")
    print(f"  (b) Arrow pool peak growth = {pool_growth:.2f}x  (<= {GROWTH_LIMIT:g}x)  "
          f"{verdict(pool_growth <= GROWTH_LIMIT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
