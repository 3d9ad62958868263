"""The job that materializes the whole graph (used by `parity run`, the schedule and the UI)."""

import dagster as dg

PARITY_JOB_NAME = "parity_all"

parity_all_job = dg.define_asset_job(
    name=PARITY_JOB_NAME, selection=dg.AssetSelection.all(),
    description="Materialize sampled_data → ranked_targets → selected_features → "
                "trained_models → snapshots, with every asset check.")
