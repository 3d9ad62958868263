"""Run-wide settings and the artifact store location, as Dagster resources."""

from pathlib import Path

import dagster as dg
from pydantic import Field

from parity_pipeline import constants
from parity_pipeline.core.repro.identity import reuse_environment
from parity_pipeline.core.store import home
from parity_pipeline.core.store.content import ContentStore
from parity_pipeline.core.store.reuse import UnitMemo


class PipelineSettings(dg.ConfigurableResource):
    """Parameters every stage must share: one seed, one sample limit, one universe."""

    base_seed: int = Field(default=constants.BASE_SEED, description=(
        "The one seed: recorded as train_seed in every stage; other seeds derive from it."))
    max_rows_per_symbol: int = Field(default=constants.MAX_ROWS_PER_SYMBOL, description=(
        "N: every stage reads the last N rows per symbol, by time."))
    symbols: list[str] = Field(default=[], description=(
        "Symbols to load; empty = every symbol of the dataset."))
    targets: list[str] = Field(default=[], description=(
        "A partial run of these declared targets; empty = every declared target."))
    reuse: bool = Field(default=False, description=(
        "Reuse a fit whose inputs, code, libraries, config and seed match an earlier run's "
        "verified result instead of recomputing it (the nightly schedule and `parity run` turn "
        "it on). Results are recorded either way; the answers are the same."))

    @property
    def run_kind(self) -> str:
        return "partial" if self.targets else "full"

    def scope(self, data_dir: Path, per_target: bool) -> dict:
        """The settings that shape an asset's output. A stage's output also depends on the
        targets it covers; the panel does not."""
        scope = {"data_dir": str(data_dir), "symbols": sorted(self.symbols),
                 "max_rows_per_symbol": self.max_rows_per_symbol, "base_seed": self.base_seed}
        return {**scope, "targets": sorted(self.targets)} if per_target else scope


def scope_conflicts(recorded: dict, current: dict) -> dict[str, tuple]:
    """Fields of a stored output's scope that differ from this run's: {field: (stored, now)}."""
    return {key: (value, current.get(key)) for key, value in sorted(recorded.items())
            if current.get(key) != value}


class ArtifactStore(dg.ConfigurableResource):
    """The artifact root; empty means ``$PARITY_HOME/artifacts`` (resolved at run time)."""

    root: str = ""

    def root_path(self) -> Path:
        return Path(self.root).resolve() if self.root else home.artifacts_root()

    def content(self) -> ContentStore:
        """The store's layout (``core.store.content``): every path inside it is joined there."""
        return ContentStore(self.root_path())

    def memo(self, settings: PipelineSettings) -> UnitMemo:
        """The reuse memo of a step (``core.store.reuse``): this store, this code and libraries."""
        return UnitMemo(self.content(), reuse_environment(), enabled=settings.reuse)
