"""The data source the assets depend on. The parquet layout is the one implementation today;
an importer for real data writes the same layout (``parity data import``)."""

import os
from pathlib import Path

import dagster as dg

from parity_pipeline import constants
from parity_pipeline.core.data.registry import FeatureRegistry, load_registry
from parity_pipeline.core.data.sampling import SampledPanel, load_panel
from parity_pipeline.core.store import home

# The dataset of UI and schedule runs (and of `parity run` without --data).
DATA_DIR_ENV = "PARITY_DATA_DIR"


def configured_data_dir() -> str:
    """``$PARITY_DATA_DIR``, else the sample; also set as the variable's default in every
    process that loads the definitions (dg.EnvVar refuses an unset variable)."""
    value = os.environ.get(DATA_DIR_ENV) or constants.DEFAULT_DATA_DIR
    os.environ[DATA_DIR_ENV] = value
    return value


class ParquetDataSource(dg.ConfigurableResource):
    """Hive-style per-symbol parquet files plus ``feature_registry.json``."""

    data_dir: str = constants.DEFAULT_DATA_DIR

    def path(self) -> Path:
        configured = Path(self.data_dir or constants.DEFAULT_DATA_DIR)
        return configured if configured.is_absolute() else home.project_root() / configured

    def registry(self) -> FeatureRegistry:
        return load_registry(self.path())

    def sample(self, max_rows_per_symbol: int, symbols: list[str]) -> SampledPanel:
        return load_panel(self.path(), self.registry(), max_rows_per_symbol,
                          tuple(symbols) if symbols else None)
