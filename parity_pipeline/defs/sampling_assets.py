"""The ``sampled_data`` asset: the one panel every stage reads."""

import dagster as dg

from parity_pipeline.core.atomic import atomic_write_json
from parity_pipeline.core.identity import UnitIdentity, library_versions, signature
from parity_pipeline.core.identity import universe_signature
from parity_pipeline.core.artifact import ArtifactIdentity, make_artifact
from parity_pipeline.core.sampling import SampledPanel
from parity_pipeline.defs.metadata import per_symbol_table, stats_as_dicts
from parity_pipeline.resources.data_source import ParquetDataSource
from parity_pipeline.resources.settings import ArtifactStore, PipelineSettings


@dg.asset(group_name="parity", kinds={"parquet", "pandas"})
def sampled_data(context: dg.AssetExecutionContext, settings: PipelineSettings,
                 data_source: ParquetDataSource, store: ArtifactStore) -> dg.MaterializeResult:
    """The last max_rows_per_symbol rows per symbol by time: the one panel every stage reads."""
    sampled = data_source.sample(settings.max_rows_per_symbol, settings.symbols)
    registry = data_source.registry()
    identity = sampling_identity(sampled, registry.content_hash, settings.base_seed)
    artifact = make_artifact(sampled.panel, ArtifactIdentity(
        stage="SAMPLING", n_effective=sampled.n_effective, train_seed=settings.base_seed,
        **identity.keys()))
    stats = stats_as_dicts(sampled)
    run_metadata = {"max_rows_per_symbol": sampled.max_rows_per_symbol,
                    "per_symbol_stats": stats, "n_effective": sampled.n_effective,
                    "universe": list(sampled.universe), "data_fingerprint": sampled.data_fingerprint,
                    "feature_registry_hash": registry.content_hash,
                    "data_dir": str(data_source.path()), "train_seed": settings.base_seed}
    atomic_write_json(store.run_dir(context.run.run_id) / "metadata.json", run_metadata)
    context.log.info("sampled %d rows over %d symbols (N=%d)", sampled.n_effective,
                     len(sampled.universe), sampled.max_rows_per_symbol)
    return dg.MaterializeResult(value=artifact, data_version=dg.DataVersion(artifact.sha256),
                                metadata={**run_metadata, "per_symbol_stats": dg.MetadataValue.json(stats),
                                          "per_symbol_table": per_symbol_table(sampled),
                                          "universe": ", ".join(sampled.universe),
                                          **identity.keys()})


def sampling_identity(sampled: SampledPanel, registry_hash: str, base_seed: int) -> UnitIdentity:
    return UnitIdentity(
        stage="SAMPLING", target="*", view="*", symbol="*", model_family="",
        universe_sig=universe_signature(sampled.universe),
        max_rows_per_symbol=sampled.max_rows_per_symbol, split_config_signature="",
        feature_registry_hash=registry_hash, hyperparameters_signature="", label_definition="",
        data_fingerprint=sampled.data_fingerprint,
        library_versions_signature=signature(library_versions()), train_seed=base_seed)
