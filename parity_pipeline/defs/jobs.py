"""The job that materializes the whole graph (used by `parity run`, the schedule and the UI),
and the executor its steps run on."""

import multiprocessing
from multiprocessing import forkserver

import dagster as dg

PARITY_JOB_NAME = "parity_all"

# Each step is a process forked from a server that has already imported the code location:
# a spawned step (Dagster's default start method) spends ~3.5 s importing dagster, LightGBM,
# scikit-learn and the definitions. The server also imports the SQLite instance storage (and
# through it sqlalchemy and alembic), which every step opens before it starts: without it each
# step spent ~0.6 s importing them (measured on 2 cores, 2026-12-04).
INSTANCE_STORAGE_MODULES = ["dagster._core.storage.runs.sqlite",
                            "dagster._core.storage.event_log.sqlite",
                            "dagster._core.storage.schedules.sqlite"]
FORKSERVER = {"forkserver": {"preload_modules": ["parity_pipeline.definitions",
                                                 *INSTANCE_STORAGE_MODULES]}}


def _multiprocess_config(config: dict) -> dict:
    return {"max_concurrent": config["max_concurrent"], "start_method": FORKSERVER}


parity_executor = dg.multiprocess_executor.configured(
    _multiprocess_config, name="parity_multiprocess",
    config_schema={"max_concurrent": dg.Field(
        int, default_value=0,
        description="Steps run at once; 0 = one per CPU (Dagster's multiprocess default).")})


def start_step_server() -> None:
    """Start the fork server the multiprocess executor forks steps from, without waiting for it.

    Dagster starts it at a run's first step, which then waits ~3.5 s for its imports; a caller
    that will execute a run in this process (``parity run --workers N``) starts it first, so the
    imports overlap the input checks. Dagster then finds it running (same preload list: the
    executor's own module first, as Dagster sets it)."""
    preload = ["dagster._core.executor.multiprocess", *FORKSERVER["forkserver"]["preload_modules"]]
    multiprocessing.get_context("forkserver").set_forkserver_preload(preload)
    forkserver.ensure_running()


def executor_run_config(workers: int) -> dict:
    """Run config for ``parity_executor`` with ``workers`` steps at once."""
    return {"config": {"max_concurrent": workers}}


parity_all_job = dg.define_asset_job(
    name=PARITY_JOB_NAME, selection=dg.AssetSelection.all(), executor_def=parity_executor,
    description="Materialize sampled_data → ranked_targets → selected_features → "
                "trained_models → snapshots, with every asset check; each stage's targets run in "
                "one part per worker, side by side on the multiprocess executor.")
