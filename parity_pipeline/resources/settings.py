"""Run-wide settings and the artifact store location, as Dagster resources."""

from pathlib import Path

import dagster as dg

from parity_pipeline import constants
from parity_pipeline.core import home


class PipelineSettings(dg.ConfigurableResource):
    """Parameters every stage must share: one seed, one sample limit, one universe."""

    base_seed: int = constants.BASE_SEED
    max_rows_per_symbol: int = constants.MAX_ROWS_PER_SYMBOL
    symbols: list[str] = []
    # empty = every declared target; else a partial run of these targets (the UI's launchpad:
    # resources.settings.config.targets, or `parity run --targets a,b`)
    targets: list[str] = []


class ArtifactStore(dg.ConfigurableResource):
    """The artifact root; empty means ``$PARITY_HOME/artifacts`` (resolved at run time)."""

    root: str = ""

    def root_path(self) -> Path:
        return Path(self.root).resolve() if self.root else home.artifacts_root()

    def run_dir(self, run_id: str) -> Path:
        return self.root_path() / "runs" / run_id

    def globals_dir(self) -> Path:
        return self.root_path() / "globals"
