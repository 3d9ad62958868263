"""Every Dagster object of the parity code location, listed explicitly."""

import dagster as dg

from parity_pipeline.defs.jobs import parity_all_job
from parity_pipeline.defs.sampling_assets import sampled_data
from parity_pipeline.resources.data_source import ParquetDataSource
from parity_pipeline.resources.io_manager import ReproducibilityIOManager
from parity_pipeline.resources.settings import ArtifactStore, PipelineSettings

defs = dg.Definitions(
    assets=[sampled_data],
    jobs=[parity_all_job],
    resources={
        "io_manager": ReproducibilityIOManager(),
        "settings": PipelineSettings(),
        "data_source": ParquetDataSource(),
        "store": ArtifactStore(),
    },
)
