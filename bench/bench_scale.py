"""Benchmark: how a whole run scales with symbols and with workers (issue: beyond one process).

Cases: 10, 50 and 100 symbols x N = 2000 rows (history 2,500 bars), all targets; each with 1
worker (in-process executor) and 2 workers (Dagster's multiprocess executor). Every run is a
fresh interpreter in a fresh PARITY_HOME, so peak memory is its own: the run's process for 1
worker, the largest step subprocess for 2 workers (``getrusage(RUSAGE_CHILDREN)``).

Targets: 2 workers >= 1.6x faster than 1 on 50 symbols; time grows at most linearly in symbols
(exponent <= 1 from the smallest to the largest case, same workers); peak memory per worker
< 2 GB at 100 symbols. Always exits 0: it reports, it does not gate.

    .venv/bin/python bench/bench_scale.py [--symbols 10,50,100] [--workers 1,2]
"""

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from pathlib import Path

from _common import ensure_dataset, fresh_home

HISTORY_ROWS, MAX_ROWS = 2_500, 2000
SPEEDUP_TARGET, MEMORY_LIMIT_MIB = 1.6, 2048
CHILD_FLAG = "--_one-run"


def one_run_here(data_dir: str, workers: int) -> None:
    """Child side: one run, then wall time and peak RSS (self and largest child) as JSON."""
    from parity_pipeline.runner import RunRequestOptions, execute_pipeline

    with fresh_home(f"scale-w{workers}"):
        started = time.perf_counter()
        outcome = execute_pipeline(RunRequestOptions(data_dir=data_dir, workers=workers,
                                                     max_rows_per_symbol=MAX_ROWS),
                                   progress=lambda _line: None)
        wall = time.perf_counter() - started
    print(json.dumps({
        "wall_s": wall, "exit_code": outcome.exit_code,
        "self_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "child_peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))


def measure(data_dir: Path, workers: int) -> dict:
    done = subprocess.run([sys.executable, __file__, CHILD_FLAG, str(data_dir), str(workers)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"run failed ({data_dir}, {workers} workers):\n{done.stderr[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    # 1 worker: the steps run in the run's own process; 2: in step subprocesses
    result["peak_per_worker_mib"] = (result["self_peak_mib"] if workers == 1
                                     else max(result["child_peak_mib"], 0.0))
    return result


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", default="10,50,100")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument(CHILD_FLAG, nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._one_run:
        one_run_here(args._one_run[0], int(args._one_run[1]))
        return 0

    symbol_counts = [int(s) for s in args.symbols.split(",")]
    worker_counts = [int(w) for w in args.workers.split(",")]
    datasets = {n: ensure_dataset(n, HISTORY_ROWS) for n in symbol_counts}
    results: dict[tuple[int, int], dict] = {}
    for n in symbol_counts:
        for workers in worker_counts:  # 1 then 2 on the same data, back to back
            results[(n, workers)] = measure(datasets[n], workers)
            r = results[(n, workers)]
            print(f"  {n} symbols, {workers} worker(s): {r['wall_s']:.1f} s, peak "
                  f"{r['peak_per_worker_mib']:.0f} MiB per worker, exit {r['exit_code']}",
                  flush=True)

    print(f"\nscaling benchmark: N = {MAX_ROWS} rows per symbol, all targets")
    header = f"{'symbols':>7} | {'workers':>7} | {'wall s':>8} | {'peak MiB/worker':>15}"
    print(header + "\n" + "-" * len(header))
    for (n, workers), r in results.items():
        print(f"{n:>7} | {workers:>7} | {r['wall_s']:>8.1f} | {r['peak_per_worker_mib']:>15.0f}")

    print("\ntargets:")
    if 1 in worker_counts and 2 in worker_counts:
        for n in symbol_counts:
            speedup = results[(n, 1)]["wall_s"] / results[(n, 2)]["wall_s"]
            mark = f"(>= {SPEEDUP_TARGET}x)  {verdict(speedup >= SPEEDUP_TARGET)}" if n == 50 \
                else "(context)"
            print(f"  {n} symbols: 2 workers {speedup:.2f}x faster than 1  {mark}")
    if len(symbol_counts) >= 2:
        small, big = symbol_counts[0], symbol_counts[-1]
        for workers in worker_counts:
            ratio = results[(big, workers)]["wall_s"] / results[(small, workers)]["wall_s"]
            exponent = math.log(ratio) / math.log(big / small)
            print(f"  {workers} worker(s): {big / small:g}x symbols -> {ratio:.2f}x time "
                  f"(exponent {exponent:.2f}, <= 1.00)  {verdict(exponent <= 1.0)}")
    biggest = max(symbol_counts)
    peak = max(results[(biggest, w)]["peak_per_worker_mib"] for w in worker_counts)
    print(f"  peak memory per worker at {biggest} symbols: {peak:.0f} MiB "
          f"(< {MEMORY_LIMIT_MIB} MiB)  {verdict(peak < MEMORY_LIMIT_MIB)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
