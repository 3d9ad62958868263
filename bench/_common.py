"""Helpers shared by the pipeline benchmarks: cached datasets, throw-away homes, step times.

Imported as ``_common`` (the scripts run as ``python bench/<script>.py``, so ``bench/`` is on
``sys.path``). Not a benchmark itself.
"""

import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from parity_pipeline.core.data.synth import synthesize_dataset
from parity_pipeline.core.store import home

SEED = 42
STAGES = ("sampled_data", "ranked_targets", "selected_features", "trained_models", "snapshots")
RESULTS_DIR = Path(__file__).resolve().parent / "results"
DATASETS_DIR = RESULTS_DIR / "datasets"


def ensure_dataset(n_symbols: int, n_rows: int, workdir: Path = DATASETS_DIR) -> Path:
    """Generate a synthetic dataset once and reuse it: generation is not what we measure."""
    out_dir = workdir / f"symbols={n_symbols},rows={n_rows},seed={SEED}"
    if (out_dir / "feature_registry.json").is_file():
        print(f"reusing dataset {out_dir}")
        return out_dir
    print(f"generating dataset {out_dir} ({n_symbols} symbols x {n_rows:,} rows) ...")
    started = time.perf_counter()
    synthesize_dataset(out_dir, n_symbols=n_symbols, n_rows=n_rows, seed=SEED)
    print(f"  done in {time.perf_counter() - started:.1f}s")
    return out_dir


@contextmanager
def fresh_home(prefix: str) -> Iterator[Path]:
    """A new empty PARITY_HOME (and Dagster instance) for one run, removed afterwards.

    Each run starts from the same empty state, so no run pays for (or profits from) ledgers,
    indexes or event logs that earlier runs left behind. DAGSTER_HOME is cleared because it
    wins over PARITY_HOME (core.store.home) and ``ensure_dagster_home`` re-exports it.
    """
    saved = {name: os.environ.get(name) for name in ("PARITY_HOME", "DAGSTER_HOME")}
    folder = Path(tempfile.mkdtemp(prefix=f"parity-bench-{prefix}-"))
    os.environ["PARITY_HOME"] = str(folder)
    os.environ.pop("DAGSTER_HOME", None)
    try:
        home.ensure_dagster_home()
        yield folder
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        shutil.rmtree(folder, ignore_errors=True)


def open_instance(parity_home: Path) -> dg.DagsterInstance:
    return dg.DagsterInstance.from_config(str(parity_home / "dagster"))


def step_seconds(instance: dg.DagsterInstance, run_id: str) -> dict[str, float]:
    """Time of each asset as Dagster recorded it (step start -> step success/failure), summed
    over its steps: a fanned-out stage is ``<asset>.plan...``, one step per target and
    ``<asset>.collect...`` (on one worker these run one after another, so the sum is its wall
    time)."""
    totals: dict[str, float] = {}
    for stats in instance.get_run_step_stats(run_id):
        if stats.start_time is not None and stats.end_time is not None:
            asset = stats.step_key.split(".", 1)[0]
            totals[asset] = totals.get(asset, 0.0) + stats.end_time - stats.start_time
    return totals


def run_span_seconds(instance: dg.DagsterInstance, run_id: str) -> float:
    """Dagster's own run start -> end (includes step orchestration, excludes our setup)."""
    stats = instance.get_run_stats(run_id)
    return stats.end_time - stats.start_time


def time_split(instance: dg.DagsterInstance, run_id: str, launched_at: float,
               ended_at: float) -> dict[str, float]:
    """Where a run's wall time went, from Dagster's step stats (epoch seconds): before the run
    started (the CLI's imports, input checks, the run's creation), in the stages' parts (per
    stage, the first part's start to the last part's end: the time that can split over
    workers), in the other steps (sampling, plan, collect, snapshots: one after another), the
    gaps between steps (a step process starting, the executor noticing one end), and after
    the run's last event. The five add up to the wall time."""
    run = instance.get_run_stats(run_id)
    steps = [s for s in instance.get_run_step_stats(run_id)
             if s.start_time is not None and s.end_time is not None]
    phases: dict[str, list[float]] = {}
    serial = 0.0
    for stats in steps:
        if "_part[" in stats.step_key:
            span = phases.setdefault(stats.step_key.split("[", 1)[0], [stats.start_time,
                                                                       stats.end_time])
            span[0], span[1] = min(span[0], stats.start_time), max(span[1], stats.end_time)
        else:
            serial += stats.end_time - stats.start_time
    parts = sum(end - start for start, end in phases.values())
    start, end = run.start_time or launched_at, run.end_time or ended_at
    return {"before_run_s": start - launched_at, "parts_s": parts, "other_steps_s": serial,
            "gaps_s": (end - start) - parts - serial, "after_run_s": ended_at - end}


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
