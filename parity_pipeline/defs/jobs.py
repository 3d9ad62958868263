"""The job that materializes the whole graph (used by `parity run`, the schedule and the UI),
and the executor its steps run on."""

import dagster as dg

PARITY_JOB_NAME = "parity_all"

# Each step is a process forked from a server that has already imported the code location:
# a spawned step (Dagster's default start method) spends ~3.5 s importing dagster, LightGBM,
# scikit-learn and the definitions, and a fanned-out run has ~30 steps.
FORKSERVER = {"forkserver": {"preload_modules": ["parity_pipeline.definitions"]}}


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
                "trained_models → snapshots, with every asset check; the stages run one step "
                "per target, side by side on the multiprocess executor.")
