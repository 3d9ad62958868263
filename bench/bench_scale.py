"""Benchmark: how a whole run scales with symbols and with workers (issue: beyond one process).

Cases: 10, 50 and 100 symbols x N = 2000 rows (history 2,500 bars), all targets; each with 1
worker (in-process executor) and 2 workers (the multiprocess executor: one step per part of
targets, forked from a preloaded server; the steps between the parts in the run's process).
Every run is a fresh interpreter in a fresh PARITY_HOME, whose Dagster instance (the SQLite
schemas, ~0.6 s, once per home) is created before the clock starts, as every run but a home's
first finds it; the time it took is printed apart, with the speedup a home's first run gives.
Peak memory per worker is the largest peak RSS (``VmHWM`` in /proc, sampled every 1 s over the
run's whole process tree: forkserver steps are grandchildren, which
``getrusage(RUSAGE_CHILDREN)`` does not see) among the processes that run steps: the run's own
process, and for 2 workers also the step processes.

Each run's line also gives the share of the machine's CPU time the hypervisor stole during it
(``steal`` in /proc/stat): a run with several % stolen is slower for reasons outside the code.

Targets: 2 workers >= 1.6x faster than 1 on 10 symbols and >= 1.8x on 50; time grows at most
linearly in symbols (exponent <= 1 from the smallest to the largest case, same workers); peak
memory per worker < 2 GB at 100 symbols. Always exits 0: it reports, it does not gate.

    .venv/bin/python bench/bench_scale.py [--symbols 10,50,100] [--workers 1,2] [--repeat 3]
                                          [--ceiling]

With ``--repeat R`` each size runs R rounds (the order of the worker counts alternating) and
each case is reported by its median run: one 2-worker run on this 2-core VM moves by 10-20 %.

``--ceiling`` first measures, per size, what two processes give the stages' own work on this
machine without Dagster: the ranking's targets split in two parts as the fan-out splits them,
each part scored alone and then both at once (each in a fresh interpreter, timed from its
first fit). The 2-worker targets can only be met when this ratio leaves room above them.

``--executor celery`` measures the same cases on the local cluster (``parity_pipeline.devcluster``:
PostgreSQL, Redis, one dagster-celery worker per worker slot) beside the local executors: the
run's wall time from launch to end (the cluster is started before and stopped after), the
speedup of 2 workers over 1, and the Celery run's overhead against the multiprocess executor.
"""

import argparse
import json
import math
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from _common import ensure_dataset, fresh_home, median, open_instance, time_split

HISTORY_ROWS, MAX_ROWS = 2_500, 2000
SPEEDUP_TARGETS = {10: 1.6, 50: 1.8}  # 2 workers over 1, by symbols
MEMORY_LIMIT_MIB = 2048
CHILD_FLAG = "--_one-run"
CEILING_FLAG = "--_ceiling-part"


def one_run_here(data_dir: str, workers: int) -> None:
    """Child side: one run, then its wall time and exit code as JSON. As ``parity run`` does,
    a run of several workers starts the steps' fork server (in the run's home) before it
    imports the runner."""
    with fresh_home(f"scale-w{workers}") as home:
        if workers > 1:
            from parity_pipeline.defs.step_server import start_step_server

            start_step_server()
        from parity_pipeline.resources.instance import open_instance as create_instance
        from parity_pipeline.runner import RunRequestOptions, execute_pipeline

        started = time.perf_counter()
        create_instance().dispose()  # what a home's first run creates (its schema)
        instance_s = time.perf_counter() - started
        started, launched_at = time.perf_counter(), time.time()
        outcome = execute_pipeline(RunRequestOptions(data_dir=data_dir, workers=workers,
                                                     max_rows_per_symbol=MAX_ROWS),
                                   progress=lambda _line: None)
        wall = time.perf_counter() - started
        instance = open_instance(home)
        split = time_split(instance, outcome.run_id, launched_at, launched_at + wall)
    print(json.dumps({"wall_s": wall, "exit_code": outcome.exit_code, "split": split,
                      "instance_s": instance_s}))


def _tree(root: int) -> list[int]:
    """``root`` and all its descendants, from /proc (Linux)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # exited meanwhile
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        found.extend(frontier)
    return found


def _peak_rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _cpu_ticks() -> tuple[int, int] | None:
    """(steal, total) CPU ticks since boot from /proc/stat (Linux), else None. Steal is time
    the hypervisor gave this VM's CPUs to others: on this VM 0.1-1.6 % per run in one session
    and 4.6 % over another, enough to move a run by as much as the changes being measured."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return (fields[7] if len(fields) > 7 else 0), sum(fields)


def measure(data_dir: Path, workers: int) -> dict:
    ticks_before = _cpu_ticks()
    child = subprocess.Popen([sys.executable, __file__, CHILD_FLAG, str(data_dir), str(workers)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks: dict[int, float] = {}
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(1.0):  # VmHWM is a high-water mark: 1 s is enough
            for pid in _tree(child.pid):
                peak = _peak_rss_mib(pid)
                if peak is not None:
                    peaks[pid] = max(peaks.get(pid, 0.0), peak)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = child.communicate()
    stop.set()
    sampler.join()
    if child.returncode != 0:
        raise SystemExit(f"run failed ({data_dir}, {workers} workers):\n{stderr[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    ticks_after = _cpu_ticks()
    if ticks_before and ticks_after and ticks_after[1] > ticks_before[1]:
        result["steal_pct"] = (100 * (ticks_after[0] - ticks_before[0])
                               / (ticks_after[1] - ticks_before[1]))
    run_process = peaks.pop(child.pid, 0.0)
    # 1 worker: every step runs in the run's own process; 2: the parts in the step processes
    # and the steps between them in the run's process (the forkserver holds only the
    # preloaded imports and never runs a step)
    result["run_process_peak_mib"] = run_process
    result["peak_per_worker_mib"] = max([run_process, *peaks.values()])
    return result


def ceiling_part_here(data_dir: str, part: int, n_parts: int) -> None:
    """Child side: one part of the ranking's targets (split evenly, in turn),
    scored without Dagster; the seconds from the first fit on (loading excluded) as JSON."""
    from parity_pipeline.core.data.registry import load_registry
    from parity_pipeline.core.data.sampling import load_panel
    from parity_pipeline.core.stages.ranking import (
        VIEWS,
        RankingConfig,
        plan_ranking,
        prepared_panel,
        score_planned_view,
    )

    registry = load_registry(Path(data_dir))
    frame = prepared_panel(load_panel(Path(data_dir), registry, MAX_ROWS).panel)
    plan = plan_ranking(frame, registry, RankingConfig())
    # equal-cost targets dealt out in turn: how the parts' claims split them when they keep pace
    targets = sorted(plan.targets)[part::n_parts]
    started = time.perf_counter()
    for target in targets:
        for view in VIEWS:
            score_planned_view(frame, registry, plan, target, view, 42)
    print(json.dumps({"seconds": time.perf_counter() - started}))


def _ceiling_parts(data_dir: Path, parts: list[int]) -> list[float]:
    """The given parts (of 2), each in its own interpreter, all started at once."""
    children = [subprocess.Popen([sys.executable, __file__, CEILING_FLAG, str(data_dir),
                                  str(part), "2"], stdout=subprocess.PIPE, text=True)
                for part in parts]
    return [json.loads(child.communicate()[0].strip().splitlines()[-1])["seconds"]
            for child in children]


def ceiling(data_dir: Path) -> dict:
    """What 2 cores give the stages' own work, without Dagster: the ranking's two parts one
    after another against both at once (a ratio under 2 would be the machine's, not ours)."""
    alone = [_ceiling_parts(data_dir, [part])[0] for part in (0, 1)]
    together = _ceiling_parts(data_dir, [0, 1])
    return {"alone": alone, "together": together, "speedup": sum(alone) / max(together)}


def measure_celery(data_dir: Path, workers: int) -> dict:
    """One run of the whole graph through the Celery executor on ``workers`` workers."""
    from parity_pipeline.devcluster import local_cluster

    with tempfile.TemporaryDirectory(prefix="parity-bench-cluster-") as folder, \
            local_cluster(Path(folder), n_workers=workers) as cluster:
        started = time.perf_counter()
        code, output = cluster.run_pipeline(data_dir)
        wall = time.perf_counter() - started
    if code != 0:  # a failed run's time is not a figure
        raise SystemExit(f"Celery run failed ({data_dir}, {workers} workers):\n{output[-3000:]}")
    return {"wall_s": wall, "exit_code": code}


def celery_report(datasets: dict[int, Path], symbol_counts: list[int],
                  worker_counts: list[int]) -> None:
    print("\nCelery executor (local cluster) beside the local executors:")
    header = (f"{'symbols':>7} | {'workers':>7} | {'local s':>8} | {'celery s':>8} | "
              f"{'celery/local':>12}")
    print(header + "\n" + "-" * len(header))
    celery: dict[tuple[int, int], float] = {}
    for n in symbol_counts:
        for workers in worker_counts:
            local = measure(datasets[n], workers)
            run = measure_celery(datasets[n], workers)
            celery[(n, workers)] = run["wall_s"]
            print(f"{n:>7} | {workers:>7} | {local['wall_s']:>8.1f} | {run['wall_s']:>8.1f} | "
                  f"{run['wall_s'] / local['wall_s']:>11.2f}x", flush=True)
    if 1 in worker_counts and 2 in worker_counts:
        for n in symbol_counts:
            print(f"  {n} symbols on Celery: 2 workers "
                  f"{celery[(n, 1)] / celery[(n, 2)]:.2f}x faster than 1")


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", default="10,50,100")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--executor", choices=("local", "celery"), default="local",
                        help="celery: also run each case on the local Celery cluster")
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds per size (odd: the median run is a real run); the "
                             "order of the worker counts alternates between rounds")
    parser.add_argument("--ceiling", action="store_true",
                        help="first measure what 2 processes give the ranking's own work "
                             "without Dagster, per size")
    parser.add_argument(CHILD_FLAG, nargs=2, default=None, help=argparse.SUPPRESS)
    parser.add_argument(CEILING_FLAG, nargs=3, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._one_run:
        one_run_here(args._one_run[0], int(args._one_run[1]))
        return 0
    if args._ceiling_part:
        ceiling_part_here(args._ceiling_part[0], int(args._ceiling_part[1]),
                          int(args._ceiling_part[2]))
        return 0

    symbol_counts = [int(s) for s in args.symbols.split(",")]
    worker_counts = [int(w) for w in args.workers.split(",")]
    datasets = {n: ensure_dataset(n, HISTORY_ROWS) for n in symbol_counts}
    if args.executor == "celery":
        celery_report(datasets, symbol_counts, worker_counts)
        return 0
    if args.ceiling:
        print("\nthe machine's ceiling: the ranking's targets in 2 parts without Dagster, "
              "one after another / both at once")
        for n in symbol_counts:
            found = ceiling(datasets[n])
            print(f"  {n} symbols: {sum(found['alone']):.1f} s / "
                  f"{max(found['together']):.1f} s = {found['speedup']:.2f}x (parts alone "
                  f"{found['alone'][0]:.1f} s, {found['alone'][1]:.1f} s; together "
                  f"{found['together'][0]:.1f} s, {found['together'][1]:.1f} s)", flush=True)
    runs: dict[tuple[int, int], list[dict]] = {}
    for n in symbol_counts:
        for round_number in range(args.repeat):
            # back to back on the same data, the order alternating between rounds
            order = worker_counts if round_number % 2 == 0 else worker_counts[::-1]
            for workers in order:
                r = measure(datasets[n], workers)
                runs.setdefault((n, workers), []).append(r)
                print(f"  {n} symbols, {workers} worker(s): {r['wall_s']:.1f} s, peak "
                      f"{r['peak_per_worker_mib']:.0f} MiB per worker (run process "
                      f"{r['run_process_peak_mib']:.0f} MiB), exit {r['exit_code']}"
                      + (f", CPU stolen by the host {r['steal_pct']:.1f} %"
                         if "steal_pct" in r else ""), flush=True)
    # each case by its median run (wall, time split); peak memory is the largest of its runs
    results = {case: {**sorted(found, key=lambda r: r["wall_s"])[len(found) // 2],
                      "peak_per_worker_mib": max(r["peak_per_worker_mib"] for r in found)}
               for case, found in runs.items()}

    print("\nwhere the wall time went (s): before the run | stages' parts | other steps | "
          "gaps between steps | after the run")
    for (n, workers), r in results.items():
        split = r["split"]
        print(f"  {n} symbols, {workers} worker(s): " + " | ".join(
            f"{split[key]:.1f}" for key in ("before_run_s", "parts_s", "other_steps_s",
                                            "gaps_s", "after_run_s")))

    print(f"\nscaling benchmark: N = {MAX_ROWS} rows per symbol, all targets")
    header = f"{'symbols':>7} | {'workers':>7} | {'wall s':>8} | {'peak MiB/worker':>15}"
    print(header + "\n" + "-" * len(header))
    for (n, workers), r in results.items():
        print(f"{n:>7} | {workers:>7} | {r['wall_s']:>8.1f} | {r['peak_per_worker_mib']:>15.0f}")

    print("\ntargets:")
    if 1 in worker_counts and 2 in worker_counts:
        for n in symbol_counts:
            speedup = results[(n, 1)]["wall_s"] / results[(n, 2)]["wall_s"]
            target = SPEEDUP_TARGETS.get(n)
            mark = f"(>= {target}x)  {verdict(speedup >= target)}" if target else "(context)"
            rounds = ", ".join(f"{one['wall_s'] / two['wall_s']:.2f}x" for one, two in
                               zip(runs[(n, 1)], runs[(n, 2)], strict=True))
            print(f"  {n} symbols: 2 workers {speedup:.2f}x faster than 1 (medians; each "
                  f"round: {rounds})  {mark}")
            creating = median([r["instance_s"] for w in (1, 2) for r in runs[(n, w)]])
            first = ((results[(n, 1)]["wall_s"] + creating)
                     / (results[(n, 2)]["wall_s"] + creating))
            print(f"    a home's first run, its instance created too ({creating:.2f} s): "
                  f"{first:.2f}x")
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
