"""Benchmark: where a run's time goes, what the orchestration costs, and a reused nightly.

On the default sample (10 symbols x 20,000 rows, N = 2000), each phase in a fresh interpreter
(a phase run after another in the same process is slower for reasons that have nothing to do
with it), in this order:

1. **direct**: the stage functions called without Dagster (load the panel, rank, select, train
   into a throw-away content store, build the snapshots): CPU and wall per stage, and the fits
   and the ML floor (time inside LightGBM / scikit-learn fit and predict) per stage;
2. **parity run**: ``runner.execute_pipeline`` in-process (one worker, reuse off) in a fresh
   PARITY_HOME: CPU, wall per stage (Dagster's step times), fits, and events in the run's
   event log; the ratio of its CPU to the direct calls' CPU is the orchestration +
   reproducibility overhead of a run. The home's Dagster instance (its SQLite schema: ~0.5 s
   of CPU, once per home) is created before the clock starts, as every run after a home's
   first finds it; its CPU is printed apart, with the ratio a home's first run would give;
3. **nightly, unchanged data**: the same run again in the same home with reuse on (what the
   schedule does), its wall time against the full run's;
4. **overhead, paired**: ``--pairs`` more pairs of phases 1 and 2, alternating which runs
   first, each in a fresh interpreter and home; the overhead is the ratio of the CPU sums over
   every pair, phases 1 and 2 included (one pair moves by +-10 % on a shared machine). The
   same fits take a different time in two processes (their C code, by up to +-1.5 s here), so
   each pair also shows the CPU the run spends outside fit and predict beyond what the direct
   calls spend there, and the ratio that cost alone gives.

The fits are counted by wrapping LightGBM's and scikit-learn's fit/predict entry points in this
process only (instrumentation, nothing is replaced), and so are the datasets LightGBM bins from
raw values ("lightgbm binned datasets": fewer than its fits where fits share them). Always
exits 0: it reports, it does not gate.

    .venv/bin/python bench/bench_pipeline.py [--symbols 10] [--rows 20000] [--pairs 2]
"""

import argparse
import functools
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import lightgbm
import lightgbm.sklearn
import sklearn.ensemble._forest as forest
import sklearn.linear_model as linear
from _common import STAGES, ensure_dataset, fresh_home, open_instance, step_seconds

from parity_pipeline.core.data.registry import load_registry
from parity_pipeline.core.data.sampling import load_panel
from parity_pipeline.core.repro.identity import reuse_environment
from parity_pipeline.core.repro.snapshot_index import build_run_snapshots
from parity_pipeline.core.repro.snapshots import run_context
from parity_pipeline.core.stages.ranking import RankingConfig, rank_targets, routed_pairs
from parity_pipeline.core.stages.selection import SelectionConfig, select_features
from parity_pipeline.core.stages.training import TrainingConfig, train_models
from parity_pipeline.core.store import reuse
from parity_pipeline.core.store.content import ContentStore
from parity_pipeline.core.store.reuse import UnitMemo
from parity_pipeline.resources.instance import open_instance as create_instance
from parity_pipeline.runner import RunRequestOptions, execute_pipeline


class FitMeter:
    """Counts fits by family and the seconds spent inside fit/predict (outermost call only)."""

    def __init__(self) -> None:
        self.fits: Counter[str] = Counter()
        self.seconds = 0.0
        self._depth = 0

    def wrap(self, owner, name: str, family: str | None) -> None:
        original = getattr(owner, name)

        @functools.wraps(original)
        def measured(*args, **kwargs):
            if self._depth:
                return original(*args, **kwargs)
            self._depth += 1
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started
                self._depth -= 1
                if family:
                    self.fits[family] += 1
        setattr(owner, name, measured)

    def count(self, owner, name: str, label: str) -> None:
        """Count every call, nested ones too (LightGBM bins a dataset inside lgb.train when
        it was not built before)."""
        original = getattr(owner, name)

        @functools.wraps(original)
        def counted(*args, **kwargs):
            self.fits[label] += 1
            return original(*args, **kwargs)
        setattr(owner, name, counted)

    def install(self) -> None:
        # a dataset binned from raw values (a subset of binned rows is not: it copies bins)
        self.count(lightgbm.basic.Dataset, "_lazy_init", "lightgbm binned datasets")
        self.wrap(lightgbm, "train", "lightgbm")
        # binned datasets are built before lgb.train is called (core.stages.binned): part of a fit
        self.wrap(lightgbm.Dataset, "construct", None)
        self.wrap(lightgbm.sklearn.LGBMModel, "fit", "lightgbm")
        self.wrap(lightgbm.Booster, "predict", None)
        self.wrap(lightgbm.sklearn.LGBMModel, "predict", None)
        self.wrap(lightgbm.sklearn.LGBMClassifier, "predict_proba", None)
        self.wrap(forest.BaseForest, "fit", "extra_trees")
        for model in (linear.Ridge, linear.LogisticRegression):
            self.wrap(model, "fit", "linear")
            self.wrap(model, "predict", None)

    def snapshot(self) -> tuple[Counter, float]:
        return Counter(self.fits), self.seconds


def _since(meter: FitMeter, before: tuple[Counter, float]) -> tuple[Counter, float]:
    fits, seconds = meter.snapshot()
    return fits - before[0], seconds - before[1]


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def direct_calls(data_dir: Path, meter: FitMeter) -> dict[str, dict]:
    """The stage functions without Dagster, on a throw-away store (no reuse)."""
    stages: dict[str, dict] = {}
    registry = load_registry(data_dir)
    with tempfile.TemporaryDirectory(prefix="parity-bench-direct-") as folder, \
            reuse.active(UnitMemo(None, reuse_environment(), enabled=False)):
        store = ContentStore(Path(folder))

        def timed(stage, call):
            wall, cpu = _clock()
            before = meter.snapshot()
            value = call()
            fits, ml = _since(meter, before)
            stages[stage] = {"wall": time.perf_counter() - wall,
                             "cpu": time.process_time() - cpu, "fits": fits, "ml": ml}
            return value

        panel = timed("sampled_data", lambda: load_panel(data_dir, registry, 2000).panel)
        ranking = timed("ranked_targets", lambda: rank_targets(panel, registry,
                                                               RankingConfig(), 42))
        selection = timed("selected_features", lambda: select_features(
            panel, registry, routed_pairs(ranking), ranking.candidate_features,
            SelectionConfig(), 42))
        selected = {(s.target, s.view): s.selected for s in selection.selections}
        training = timed("trained_models", lambda: train_models(panel, registry, selected,
                                                                TrainingConfig(), 42, store))
        # the snapshots asset's body: every snapshot published into the throw-away store
        timed("snapshots", lambda: build_run_snapshots(
            store, run_context("direct", "2026-01-01T00:00:00+00:00", panel, registry, 2000, 42),
            registry, panel, ranking, selection, training,
            {"base_seed": 42, "max_rows_per_symbol": 2000}))
    return stages


def parity_run(data_dir: Path, meter: FitMeter, reuse_on: bool) -> dict:
    """``execute_pipeline`` in-process in the current PARITY_HOME."""
    wall, cpu = _clock()
    before = meter.snapshot()
    outcome = execute_pipeline(RunRequestOptions(data_dir=str(data_dir), reuse=reuse_on),
                               progress=lambda _line: None)
    result = {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu,
              "outcome": outcome}
    result["fits"], result["ml"] = _since(meter, before)
    return result


def run_details(parity_home: Path, run_id: str) -> tuple[dict[str, float], int, Counter]:
    instance = open_instance(parity_home)
    try:
        steps = step_seconds(instance, run_id)
        records = instance.get_records_for_run(run_id, limit=100_000).records
        kinds = Counter(r.event_log_entry.dagster_event.event_type_value
                        if r.event_log_entry.dagster_event else "LOG_MESSAGE" for r in records)
        return steps, len(records), kinds
    finally:
        instance.dispose()


def _fits_text(fits: dict) -> str:
    return ", ".join(f"{family} {fits[family]}" for family in sorted(fits)) or "none"


def _cpu_of(stages: dict[str, dict]) -> float:
    """The direct calls' CPU: the sum over the stages."""
    return sum(row["cpu"] for row in stages.values())


def _ml_of(stages: dict[str, dict]) -> float:
    """The direct calls' seconds inside fit and predict."""
    return sum(row["ml"] for row in stages.values())


def _outside_fits(direct_side: tuple[float, float], run_side: tuple[float, float]) -> float:
    """What the run spends outside fit and predict beyond what the direct calls spend there:
    the orchestration + reproducibility cost without the fits' own run-to-run spread."""
    return (run_side[0] - run_side[1]) - (direct_side[0] - direct_side[1])


CHILD_FLAG = "--_phase"
RESULT_PREFIX = "BENCH_RESULT "


def phase_here(phase: str, data_dir: Path) -> None:
    """Child side: one phase in a fresh interpreter (so no phase inherits another's heap or
    caches), then its figures as one JSON line. The home comes from PARITY_HOME."""
    meter = FitMeter()
    meter.install()
    if phase == "direct":
        stages = direct_calls(data_dir, meter)
        result = {"stages": {name: {**row, "fits": dict(row["fits"])}
                             for name, row in stages.items()}}
    else:
        started = time.process_time()
        create_instance().dispose()  # what a home's first run creates (its schema)
        instance_cpu = time.process_time() - started
        run = parity_run(data_dir, meter, reuse_on=phase == "nightly")
        steps, n_events, kinds = run_details(Path(os.environ["PARITY_HOME"]),
                                             run["outcome"].run_id)
        result = {"wall": run["wall"], "cpu": run["cpu"], "ml": run["ml"],
                  "instance_cpu": instance_cpu,
                  "fits": dict(run["fits"]), "summary": run["outcome"].summary.splitlines()[0],
                  "steps": steps, "events": n_events, "event_kinds": kinds.most_common(6)}
    print(RESULT_PREFIX + json.dumps(result))


def phase(name: str, data_dir: Path) -> dict:
    done = subprocess.run([sys.executable, __file__, CHILD_FLAG, name, str(data_dir)],
                          capture_output=True, text=True, env=os.environ.copy())
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"phase {name} failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len(RESULT_PREFIX):])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=10)
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--pairs", type=int, default=2,
                        help="pairs of direct calls and parity run measured after phase 3")
    args = parser.parse_args()
    data_dir = ensure_dataset(args.symbols, args.rows)

    print("\n1. stage functions called directly (no Dagster)")
    direct = phase("direct", data_dir)["stages"]
    print(f"{'stage':<18} | {'wall s':>7} | {'cpu s':>7} | {'ML fit+predict s':>16} | fits")
    for stage, row in direct.items():
        print(f"{stage:<18} | {row['wall']:>7.2f} | {row['cpu']:>7.2f} | {row['ml']:>16.2f} | "
              f"{_fits_text(row['fits'])}")
    direct_cpu = _cpu_of(direct)
    print(f"{'total':<18} | {sum(r['wall'] for r in direct.values()):>7.2f} | "
          f"{direct_cpu:>7.2f} | {sum(r['ml'] for r in direct.values()):>16.2f} |")

    with fresh_home("pipeline"):
        print("\n2. parity run (in-process, one worker, reuse off)")
        full = phase("full", data_dir)
        print(f"outcome: {full['summary']}")
        for stage in STAGES:
            print(f"  {stage:<18} {full['steps'].get(stage, float('nan')):>7.2f} s "
                  "(Dagster step times)")
        print(f"wall {full['wall']:.2f} s, cpu {full['cpu']:.2f} s, ML fit+predict "
              f"{full['ml']:.2f} s ({full['ml'] / full['wall']:.0%} of wall); fits: "
              f"{_fits_text(full['fits'])}")
        print(f"events in the run's event log: {full['events']} ("
              f"{', '.join(f'{k} {v}' for k, v in full['event_kinds'])}, ...)")
        print(f"parity run cpu / direct stage calls cpu: {full['cpu'] / direct_cpu:.2f}x "
              "(this pair; all pairs in 4)")
        print(f"the home's Dagster instance, created before the run (once per home): "
              f"{full['instance_cpu']:.2f} s cpu")

        print("\n3. nightly on unchanged data (same home, reuse on)")
        nightly = phase("nightly", data_dir)
        print(f"outcome: {nightly['summary']}")
        print(f"wall {nightly['wall']:.2f} s, cpu {nightly['cpu']:.2f} s, fits: "
              f"{_fits_text(nightly['fits'])}")
        print(f"unchanged nightly / full run wall: {nightly['wall'] / full['wall']:.1%}")

    print(f"\n4. orchestration + reproducibility overhead, {args.pairs + 1} pairs "
          "(parity run cpu / direct stage calls cpu)")
    # (cpu, ML fit+predict) of each side: the same fits take a different time in two
    # processes of this VM (by up to +-1.5 s here), so the CPU outside the fits is shown too
    pairs = [((direct_cpu, _ml_of(direct)), (full["cpu"], full["ml"]))]
    instance_cpus = [full["instance_cpu"]]
    for number in range(2, args.pairs + 2):
        order = ("full", "direct") if number % 2 == 0 else ("direct", "full")
        measured = {}
        for name in order:
            if name == "direct":
                stages = phase(name, data_dir)["stages"]
                measured[name] = (_cpu_of(stages), _ml_of(stages))
            else:
                with fresh_home("pipeline"):
                    run = phase(name, data_dir)
                measured[name] = (run["cpu"], run["ml"])
                instance_cpus.append(run["instance_cpu"])
        pairs.append((measured["direct"], measured["full"]))
    for number, (direct_side, run_side) in enumerate(pairs, start=1):
        first = "full" if number % 2 == 0 else "direct"
        print(f"  pair {number} ({first} first): {run_side[0]:.2f} / {direct_side[0]:.2f} s = "
              f"{run_side[0] / direct_side[0]:.2f}x; outside fit+predict "
              f"+{_outside_fits(direct_side, run_side):.2f} s")
    run_sum, direct_sum = sum(p[1][0] for p in pairs), sum(p[0][0] for p in pairs)
    outside = sum(_outside_fits(*pair) for pair in pairs)
    print(f"  all pairs: {run_sum:.2f} / {direct_sum:.2f} s = {run_sum / direct_sum:.2f}x "
          "(target <= 1.10x)")
    first_runs = run_sum + sum(instance_cpus)
    print(f"  a home's first run, its instance created too: {first_runs:.2f} / {direct_sum:.2f} s "
          f"= {first_runs / direct_sum:.2f}x ({sum(instance_cpus) / len(pairs):.2f} s per run)")
    print(f"  the CPU parity run adds outside the fits: {outside / len(pairs):.2f} s per run "
          f"on average, {(direct_sum + outside) / direct_sum:.2f}x of the direct calls' CPU "
          "with both sides' fits taking the same time")
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == CHILD_FLAG:
        phase_here(sys.argv[2], Path(sys.argv[3]))
        sys.exit(0)
    sys.exit(main())
