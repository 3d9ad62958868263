"""Wiring shared by the stage assets: stage identity and the hashed output."""

import warnings
from collections.abc import Iterator

import dagster as dg
import pandas as pd

from parity_pipeline.core.artifact import ArtifactIdentity, make_artifact
from parity_pipeline.core.identity import (
    UnitIdentity,
    library_versions,
    signature,
    universe_signature,
)
from parity_pipeline.core.registry import FeatureRegistry
from parity_pipeline.core.sampling import panel_fingerprint


def per_symbol_counts(panel: pd.DataFrame) -> dict[str, int]:
    counts = panel.groupby("symbol", sort=True).size()
    return {str(symbol): int(n) for symbol, n in counts.items()}


def stage_identity(stage: str, panel: pd.DataFrame, registry: FeatureRegistry,
                   max_rows_per_symbol: int, base_seed: int, config: dict) -> UnitIdentity:
    """The asset-level unit: the whole stage over the panel it actually received."""
    return UnitIdentity(
        stage=stage, target="*", view="*", symbol="*", model_family="",
        universe_sig=universe_signature(sorted(panel["symbol"].unique())),
        max_rows_per_symbol=max_rows_per_symbol, split_config_signature=signature(config),
        feature_registry_hash=registry.content_hash, hyperparameters_signature=signature(config),
        label_definition=signature([t.__dict__ for t in registry.targets]),
        data_fingerprint=panel_fingerprint(panel),
        library_versions_signature=signature(library_versions()), train_seed=base_seed)


KEY_TAG_LENGTH = 16


def hashed_outputs(payload, identity: UnitIdentity, n_effective: int, metadata: dict,
                   per_symbol: dict[str, int], max_rows_per_symbol: int,
                   check_results: list[dg.AssetCheckResult]) -> Iterator:
    """One hashing call: its sha256 is the DataVersion, the stored manifest and the ledger key.

    Yields the asset's ``Output`` then its check results: the form both an ``@asset`` and the
    last op of a graph-backed (fanned-out) stage can emit."""
    artifact = make_artifact(payload, ArtifactIdentity(
        stage=identity.stage, n_effective=n_effective, train_seed=identity.train_seed,
        per_symbol_counts=dict(per_symbol), **identity.keys()))
    with warnings.catch_warnings():  # Output(data_version=...) is beta; it is the documented way
        warnings.simplefilter("ignore", dg.BetaWarning)
        output = dg.Output(
            value=artifact, output_name="result", data_version=dg.DataVersion(artifact.sha256),
            # as tags too, so a key copied from a snapshot finds its materializations in the UI;
            # Dagster caps tag values at 63 characters, so tags hold the first 16 hex digits
            tags={f"parity/{name}": value[:KEY_TAG_LENGTH] for name, value in
                  identity.keys().items()},
            metadata={**metadata, "n_effective": n_effective, "train_seed": identity.train_seed,
                      "max_rows_per_symbol": max_rows_per_symbol,
                      "per_symbol_counts": dg.MetadataValue.json(per_symbol),
                      "data_fingerprint": identity.data_fingerprint,
                      "logical_sha256": artifact.sha256,
                      **identity.keys()})
    yield output
    yield from check_results
