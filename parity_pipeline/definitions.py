"""Every Dagster object of the parity code location, listed explicitly."""

import warnings

import dagster as dg

from parity_pipeline.defs.console import console_logger
from parity_pipeline.defs.executor import parity_executor
from parity_pipeline.defs.jobs import parity_all_job
from parity_pipeline.defs.ranking_assets import ranked_targets
from parity_pipeline.defs.sampling_assets import sampled_data
from parity_pipeline.defs.schedules import nightly_parity_schedule
from parity_pipeline.defs.selection_assets import selected_features
from parity_pipeline.defs.sensors import (
    WEBHOOK_ENV,
    AlertWebhook,
    deliver_alerts_job,
    parity_alerts,
)
from parity_pipeline.defs.snapshot_assets import snapshots
from parity_pipeline.defs.training_assets import trained_models
from parity_pipeline.resources.data_source import (
    DATA_DIR_ENV,
    ParquetDataSource,
    configured_data_dir,
)
from parity_pipeline.resources.io_manager import ReproducibilityIOManager, StepHandoffIOManager
from parity_pipeline.resources.settings import ArtifactStore, PipelineSettings

# Dagster builds a sensor of its own with its beta `owners` parameter whenever the repository is
# resolved (in every step process too): a warning about Dagster's internals, not this project.
warnings.filterwarnings("ignore", message="Parameter `owners` of initializer `SensorDefinition",
                        category=dg.BetaWarning)

artifact_store = ArtifactStore()
# `PARITY_DATA_DIR=/path/to/dataset make ui` points the UI's runs (and the schedule's) at a
# dataset, read when a run starts; run config can still override it per run.
configured_data_dir()
data_source = ParquetDataSource(data_dir=dg.EnvVar(DATA_DIR_ENV))

defs = dg.Definitions(
    assets=[sampled_data, ranked_targets, selected_features, trained_models, snapshots],
    jobs=[parity_all_job, deliver_alerts_job],
    schedules=[nightly_parity_schedule],
    sensors=[parity_alerts],
    # also the UI's "Materialize" runs: one step per CPU, forked from a preloaded server
    executor=parity_executor,
    loggers={"console": console_logger},
    resources={
        "io_manager": ReproducibilityIOManager(store=artifact_store),
        "step_handoff_io_manager": StepHandoffIOManager(store=artifact_store),
        "settings": PipelineSettings(),
        "data_source": data_source,
        "store": artifact_store,
        "webhook": AlertWebhook(url=dg.EnvVar(WEBHOOK_ENV)),
    },
)
