"""Benchmark: wall time of each pipeline stage, and how a whole run grows with the universe.

Each run goes through ``runner.execute_pipeline`` (what ``parity run`` does: in-process, one
worker) in a fresh temporary PARITY_HOME; per-stage times are read back from the Dagster
instance (``get_run_step_stats``: step start -> end). Cases:

* ``default``: 10 symbols x 20,000 rows of history, max_rows_per_symbol N = 2000;
* ``50x2000``: 50 symbols, N = 2000, history 2,500 rows (the tail of 2,000 then starts after
  the longest feature lookback, 390 bars, as in the default case: no warm-up NaNs).

Both cases use the same N, so the panel grows 5x with the symbols. Always exits 0.

    .venv/bin/python bench/bench_pipeline.py [--cases default,50x2000] [--repeats 1]
"""

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from _common import (
    DATASETS_DIR,
    STAGES,
    ensure_dataset,
    fresh_home,
    median,
    open_instance,
    run_span_seconds,
    step_seconds,
)

from parity_pipeline.runner import RunRequestOptions, execute_pipeline


@dataclass(frozen=True)
class Case:
    name: str
    n_symbols: int
    history_rows: int
    max_rows: int

    @property
    def panel_rows(self) -> int:
        return self.n_symbols * min(self.history_rows, self.max_rows)


CASES = {case.name: case for case in (Case("default", 10, 20_000, 2000),
                                      Case("50x2000", 50, 2_500, 2000))}


@dataclass
class CaseTimes:
    """Seconds per repeat: one list per stage, plus the three whole-run measures."""

    steps: dict[str, list[float]] = field(default_factory=lambda: {s: [] for s in STAGES})
    steps_sum: list[float] = field(default_factory=list)
    run_span: list[float] = field(default_factory=list)
    wall: list[float] = field(default_factory=list)
    outcomes: list[str] = field(default_factory=list)


def run_once(case: Case, data_dir: Path, times: CaseTimes) -> None:
    options = RunRequestOptions(data_dir=str(data_dir), max_rows_per_symbol=case.max_rows)
    with fresh_home(case.name) as parity_home:
        started = time.perf_counter()
        outcome = execute_pipeline(options, progress=lambda _message: None)
        wall = time.perf_counter() - started
        instance = open_instance(parity_home)
        try:
            steps = step_seconds(instance, outcome.run_id)
            span = run_span_seconds(instance, outcome.run_id)
        finally:
            instance.dispose()
    for stage in STAGES:
        times.steps[stage].append(steps.get(stage, float("nan")))
    times.steps_sum.append(sum(steps.get(stage, 0.0) for stage in STAGES))
    times.run_span.append(span)
    times.wall.append(wall)
    failed = sum(not check.passed for check in outcome.checks)
    times.outcomes.append(f"{'SUCCESS' if outcome.success else 'FAILURE'}, "
                          f"{failed} failed checks, exit {outcome.exit_code}")
    print(f"  {case.name}: wall {wall:.1f}s ({times.outcomes[-1]})")


def print_stage_table(cases: list[Case], results: dict[str, CaseTimes], repeats: int) -> None:
    print(f"\nstage wall times in seconds (median of {repeats} run(s) per case; "
          "step start -> end as recorded by Dagster)")
    names = [c.name for c in cases]
    labels = [f"{c.name} ({c.n_symbols}x{c.history_rows:,}, N={c.max_rows})" for c in cases]
    width = max(len(label) for label in labels)
    header = f"{'stage':<24}" + "".join(f" | {label:>{width}}" for label in labels)
    if len(cases) == 2:
        header += f" | {'ratio':>6}"
    print(header + "\n" + "-" * len(header))
    rows = [(stage, [results[n].steps[stage] for n in names]) for stage in STAGES]
    rows += [("sum of stages", [results[n].steps_sum for n in names]),
             ("run (Dagster start->end)", [results[n].run_span for n in names]),
             ("total wall (execute)", [results[n].wall for n in names])]
    for label, series in rows:
        values = [median(v) for v in series]
        line = f"{label:<24}" + "".join(f" | {v:>{width}.2f}" for v in values)
        if len(values) == 2:
            line += f" | {values[1] / values[0]:>5.2f}x"
        print(line)
    for case in cases:
        print(f"  {case.name}: {'; '.join(results[case.name].outcomes)}")


def print_scaling(cases: list[Case], results: dict[str, CaseTimes]) -> None:
    """Growth of the total with the number of symbols (same N, so also with panel rows)."""
    print("\nscaling of the total wall time with symbols")
    header = (f"{'case':<10} | {'symbols':>7} | {'panel rows':>10} | {'total s':>8} | "
              f"{'s / symbol':>10} | {'s / 1k panel rows':>17}")
    print(header + "\n" + "-" * len(header))
    for case in cases:
        total = median(results[case.name].wall)
        print(f"{case.name:<10} | {case.n_symbols:>7} | {case.panel_rows:>10,} | {total:>8.1f} | "
              f"{total / case.n_symbols:>10.2f} | {total / case.panel_rows * 1000:>17.2f}")
    if len(cases) < 2:
        return
    base, big = cases[0], cases[-1]
    total_ratio = median(results[big.name].wall) / median(results[base.name].wall)
    symbol_ratio = big.n_symbols / base.n_symbols
    # Exponent b in total ~ symbols^b: 1 is linear, < 1 means fixed costs are being amortized.
    exponent = math.log(total_ratio) / math.log(symbol_ratio)
    print(f"\n{big.name} / {base.name}: {symbol_ratio:g}x symbols -> {total_ratio:.2f}x total "
          f"time (growth exponent {exponent:.2f}; 1.00 = linear in symbols)")


def parse_cases(text: str) -> list[Case]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in CASES]
    if unknown:
        raise SystemExit(f"unknown case(s) {unknown}; choose from {', '.join(CASES)}")
    return [CASES[name] for name in names]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="default,50x2000",
                        help=f"comma-separated, from: {', '.join(CASES)}")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=DATASETS_DIR)
    args = parser.parse_args()

    cases = parse_cases(args.cases)
    datasets = {c.name: ensure_dataset(c.n_symbols, c.history_rows, args.workdir) for c in cases}
    results = {c.name: CaseTimes() for c in cases}
    for repeat in range(1, args.repeats + 1):
        print(f"repeat {repeat}/{args.repeats}")
        for case in cases:  # cases alternate within a repeat, so drift hits every case
            run_once(case, datasets[case.name], results[case.name])

    print_stage_table(cases, results, args.repeats)
    print_scaling(cases, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
