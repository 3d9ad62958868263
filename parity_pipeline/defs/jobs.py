"""The job that materializes the whole graph (used by `parity run`, the schedule and the UI),
and the executor its steps run on."""

import dagster as dg

from parity_pipeline.defs.stepserver import PRELOAD_MODULES

PARITY_JOB_NAME = "parity_all"
# steps forked from a server that has imported the code location (defs/stepserver.py)
FORKSERVER = {"forkserver": {"preload_modules": PRELOAD_MODULES}}


def _multiprocess_config(config: dict) -> dict:
    return {"max_concurrent": config["max_concurrent"], "start_method": FORKSERVER}


parity_executor = dg.multiprocess_executor.configured(
    _multiprocess_config, name="parity_multiprocess",
    config_schema={"max_concurrent": dg.Field(
        int, default_value=0,
        description="Steps run at once; 0 = one per CPU (Dagster's multiprocess default).")})


def executor_run_config(workers: int) -> dict:
    """Run config for ``parity_executor`` with ``workers`` steps at once."""
    return {"config": {"max_concurrent": workers}}


parity_all_job = dg.define_asset_job(
    name=PARITY_JOB_NAME, selection=dg.AssetSelection.all(), executor_def=parity_executor,
    description="Materialize sampled_data → ranked_targets → selected_features → "
                "trained_models → snapshots, with every asset check; each stage's targets run in "
                "one part per worker, side by side on the multiprocess executor.")
