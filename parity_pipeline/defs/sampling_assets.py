"""The ``sampled_data`` asset: the one panel every stage reads."""

import dagster as dg

from parity_pipeline.core.data.sampling import stats_as_dicts
from parity_pipeline.core.repro.checks import StageObservation
from parity_pipeline.core.repro.identity import sampling_identity
from parity_pipeline.defs.checks import (
    nan_rate_result,
    nan_rate_spec,
    stage_check_specs,
    stage_checks,
    universe_result,
    universe_spec,
)
from parity_pipeline.defs.common import hashed_outputs, tag_run
from parity_pipeline.defs.executor import IN_EXECUTOR_PROCESS
from parity_pipeline.defs.gate import gated
from parity_pipeline.defs.metadata import per_symbol_table
from parity_pipeline.resources.data_source import ParquetDataSource
from parity_pipeline.resources.settings import ArtifactStore, PipelineSettings


@dg.asset(group_name="parity", kinds={"parquet", "pandas"}, op_tags=IN_EXECUTOR_PROCESS,
          check_specs=[*stage_check_specs("sampled_data"), universe_spec(), nan_rate_spec()])
def sampled_data(context: dg.AssetExecutionContext, settings: PipelineSettings,
                 data_source: ParquetDataSource, store: ArtifactStore):
    """The last max_rows_per_symbol rows per symbol by time: the one panel every stage reads."""
    # a bad partial-run target list fails here, before anything is materialized
    data_source.registry().check_targets(settings.targets)
    sampled = data_source.sample(settings.max_rows_per_symbol, settings.symbols)
    registry = data_source.registry()
    identity = sampling_identity(sampled, registry.content_hash, settings.base_seed)
    stats = stats_as_dicts(sampled)
    counts = {symbol: values["n"] for symbol, values in stats.items()}
    run_metadata = {"max_rows_per_symbol": sampled.max_rows_per_symbol,
                    "per_symbol_stats": stats, "n_effective": sampled.n_effective,
                    "n_filtered": 0, "filter": "none at sampling: each stage drops rows whose "
                    "target is null (recorded per unit as n_effective)",
                    "universe": list(sampled.universe),
                    "data_fingerprint": sampled.data_fingerprint,
                    "feature_registry_hash": registry.content_hash,
                    "data_dir": str(data_source.path()), "train_seed": settings.base_seed}
    tag_run(context, settings)
    files = {"metadata.json": store.content().put_json(run_metadata)}
    context.log.info("sampled %d rows over %d symbols (N=%d)", sampled.n_effective,
                     len(sampled.universe), sampled.max_rows_per_symbol)
    check_results = stage_checks(context, "sampled_data", store.content(), identity,
                                 StageObservation(counts, settings.base_seed), settings)
    check_results.append(universe_result(context, list(sampled.universe),
                                         str(data_source.path())))
    check_results.append(nan_rate_result(context, stats, str(data_source.path()),
                                         registry.max_nan_rate_change))
    yield from gated(context, "sampled_data", hashed_outputs(
        sampled.panel, identity, sampled.n_effective, {
        "per_symbol_stats": dg.MetadataValue.json(stats),
        "per_symbol_table": per_symbol_table(sampled),
        "universe": ", ".join(sampled.universe), "feature_registry_hash": registry.content_hash,
        "data_dir": str(data_source.path())}, counts, settings.max_rows_per_symbol, check_results,
        settings.scope(data_source.path(), per_target=False), files))
