"""The job that materializes the whole graph (used by `parity run`, the schedule and the UI)."""

import dagster as dg

from parity_pipeline.defs.executor import parity_executor

PARITY_JOB_NAME = "parity_all"

parity_all_job = dg.define_asset_job(
    name=PARITY_JOB_NAME, selection=dg.AssetSelection.all(), executor_def=parity_executor,
    description="Materialize sampled_data → ranked_targets → selected_features → "
                "trained_models → snapshots, with every asset check; each stage's targets run in "
                "one part per worker, side by side on the multiprocess executor (the steps "
                "between the parts run in the executor's process).")
