"""The fork server the multiprocess executor forks each step's process from, and what it
preloads. Nothing here imports Dagster, so ``parity run`` can start the server before it
imports Dagster itself: the server's imports (~3 s) then overlap the command's own.

Each step is a process forked from a server that has already imported the code location: a
spawned step (Dagster's default start method) spends ~3.5 s importing dagster, LightGBM,
scikit-learn and the definitions. The server also imports the SQLite instance storage (and
through it sqlalchemy and alembic), which every step opens before it starts: without it each
step spent ~0.6 s importing them (measured on 2 cores, 2026-12-04); and pyplot, which the charts
import when they are drawn (defs/plots.py), in a collect step.
"""

import multiprocessing
from multiprocessing import forkserver

INSTANCE_STORAGE_MODULES = ["dagster._core.storage.runs.sqlite",
                            "dagster._core.storage.event_log.sqlite",
                            "dagster._core.storage.schedules.sqlite"]
PRELOAD_MODULES = ["parity_pipeline.definitions", *INSTANCE_STORAGE_MODULES, "matplotlib.pyplot"]


def start_step_server() -> None:
    """Start the fork server the multiprocess executor forks steps from, without waiting for it.

    Dagster starts it at a run's first step, which then waits ~3.5 s for its imports; a caller
    that will execute a run in this process (``parity run --workers N``) starts it first, so the
    imports overlap its own work. Dagster then finds it running (same preload list: the
    executor's own module first, as Dagster sets it). Starting it twice is a no-op."""
    preload = ["dagster._core.executor.multiprocess", *PRELOAD_MODULES]
    multiprocessing.get_context("forkserver").set_forkserver_preload(preload)
    forkserver.ensure_running()
