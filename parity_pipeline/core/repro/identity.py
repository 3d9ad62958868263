"""Identity keys of a unit of work (DESIGN §2), all built with ``hashing.sha256_json``.

- ``comparable_key``: what must stay fixed for two runs to be compared: stage, target, view,
  symbol, model family, universe, ``max_rows_per_symbol``, split config, feature registry hash,
  hyperparameters signature, label definition. It excludes data content, seed and counts, so
  within one comparable key ``n_effective`` and ``train_seed`` must not drift.
- ``replicate_key``: comparable key + data fingerprint (the sampled window's content hash) +
  library versions.
- ``strict_key``: replicate key + ``train_seed``; within one strict key every output hash must
  be identical.
"""

import functools
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from parity_pipeline.core.data.registry import FeatureRegistry
from parity_pipeline.core.data.sampling import SampledPanel, panel_fingerprint
from parity_pipeline.core.hashing import sha256_file, sha256_json

TRACKED_LIBRARIES = ("dagster", "lightgbm", "numpy", "pandas", "parity-pipeline", "pyarrow",
                     "scikit-learn", "scipy")


@dataclass(frozen=True)
class UnitIdentity:
    """The named components of one unit's keys (kept so a diff can say which one moved)."""

    stage: str
    target: str
    view: str
    symbol: str
    model_family: str
    universe_sig: str
    max_rows_per_symbol: int
    split_config_signature: str
    feature_registry_hash: str
    hyperparameters_signature: str
    label_definition: str
    data_fingerprint: str
    library_versions_signature: str
    train_seed: int

    @property
    def comparable_key(self) -> str:
        return sha256_json({
            "stage": self.stage, "target": self.target, "view": self.view,
            "symbol": self.symbol, "model_family": self.model_family,
            "universe_sig": self.universe_sig, "max_rows_per_symbol": self.max_rows_per_symbol,
            "split_config_signature": self.split_config_signature,
            "feature_registry_hash": self.feature_registry_hash,
            "hyperparameters_signature": self.hyperparameters_signature,
            "label_definition": self.label_definition})

    @property
    def replicate_key(self) -> str:
        return sha256_json({"comparable_key": self.comparable_key,
                            "data_fingerprint": self.data_fingerprint,
                            "library_versions": self.library_versions_signature})

    @property
    def strict_key(self) -> str:
        return sha256_json({"replicate_key": self.replicate_key, "train_seed": self.train_seed})

    def keys(self) -> dict[str, str]:
        return {"comparable_key": self.comparable_key, "replicate_key": self.replicate_key,
                "strict_key": self.strict_key}


def universe_signature(symbols: tuple[str, ...] | list[str]) -> str:
    return sha256_json(sorted(symbols))


def library_versions() -> dict[str, str]:
    """The versions of the libraries this process has loaded (read once: a process keeps the
    ones it imported even if the environment changes under it)."""
    return dict(_loaded_versions())


@functools.cache
def _loaded_versions() -> tuple[tuple[str, str], ...]:
    versions = {"python": platform.python_version()}
    for name in TRACKED_LIBRARIES:
        versions[name] = metadata.version(name)
    return tuple(versions.items())


def signature(value: Any) -> str:
    """Signature of a config/hyperparameter mapping (a named alias for the canonical hash)."""
    return sha256_json(value)


@functools.cache
def code_fingerprint() -> str:
    """SHA-256 of the package's source: every ``.py`` file under ``parity_pipeline``, by its
    POSIX path relative to the package and its bytes, in sorted path order."""
    package = Path(__file__).resolve().parent.parent
    files = sorted(package.rglob("*.py"), key=lambda p: p.relative_to(package).as_posix())
    return sha256_json({p.relative_to(package).as_posix(): sha256_file(p) for p in files})


def reuse_environment() -> str:
    """What a reused result must share with this process besides its inputs: the code that
    computes it and the libraries it runs on (``core.store.reuse``)."""
    return sha256_json({"code": code_fingerprint(), "libraries": library_versions()})


# --- the asset-level units: a stage over the whole panel -----------------------------------

def stage_identity(stage: str, panel: pd.DataFrame, registry: FeatureRegistry,
                   max_rows_per_symbol: int, base_seed: int, config: dict) -> UnitIdentity:
    """A stage as one unit over the panel it actually received (its asset's keys)."""
    return UnitIdentity(
        stage=stage, target="*", view="*", symbol="*", model_family="",
        universe_sig=universe_signature(sorted(panel["symbol"].unique())),
        max_rows_per_symbol=max_rows_per_symbol, split_config_signature=signature(config),
        feature_registry_hash=registry.content_hash, hyperparameters_signature=signature(config),
        label_definition=signature([t.__dict__ for t in registry.targets]),
        data_fingerprint=panel_fingerprint(panel),
        library_versions_signature=signature(library_versions()), train_seed=base_seed)


def sampling_identity(sampled: SampledPanel, registry_hash: str, base_seed: int) -> UnitIdentity:
    """The sampled panel as one unit: its window (N, universe), registry, content and seed."""
    return UnitIdentity(
        stage="SAMPLING", target="*", view="*", symbol="*", model_family="",
        universe_sig=universe_signature(sampled.universe),
        max_rows_per_symbol=sampled.max_rows_per_symbol, split_config_signature="",
        feature_registry_hash=registry_hash, hyperparameters_signature="", label_definition="",
        data_fingerprint=sampled.data_fingerprint,
        library_versions_signature=signature(library_versions()), train_seed=base_seed)
