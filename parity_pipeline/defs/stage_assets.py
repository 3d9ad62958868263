"""The three stage assets. Each reads the one ``sampled_data`` panel and calls ``core``."""

import dataclasses

import dagster as dg
import pandas as pd

from parity_pipeline import constants
from parity_pipeline.core.atomic import atomic_write_bytes
from parity_pipeline.core.ranking import (
    RankingConfig,
    RankingResult,
    rank_targets,
    ranking_table,
    routed_pairs,
)
from parity_pipeline.core.selection import (
    SelectionConfig,
    SelectionResult,
    select_features,
    selection_table,
)
from parity_pipeline.core.training import TrainingConfig, train_models, training_table
from parity_pipeline.defs import plots
from parity_pipeline.defs.checks import stage_check_specs, stage_checks
from parity_pipeline.defs.common import hashed_result, stage_identity
from parity_pipeline.defs.metadata import frame_to_table
from parity_pipeline.resources.data_source import ParquetDataSource
from parity_pipeline.resources.settings import ArtifactStore, PipelineSettings


class RankingAssetConfig(dg.Config):
    n_folds: int = 5
    purge_buffer_minutes: int = 30
    min_skill: float = 0.02
    min_t_stat: float = 2.0


class SelectionAssetConfig(dg.Config):
    top_k: int = constants.TOP_K_FEATURES
    n_resamples: int = 5


class TrainingAssetConfig(dg.Config):
    valid_fraction: float = 0.2
    purge_buffer_minutes: int = 30


def _save_csv(store: ArtifactStore, run_id: str, name: str, table: pd.DataFrame) -> str:
    path = store.run_dir(run_id) / name
    atomic_write_bytes(path, table.to_csv(index=False).encode("utf-8"))
    return str(path)


@dg.asset(group_name="parity", kinds={"lightgbm"},
          check_specs=stage_check_specs("ranked_targets"))
def ranked_targets(context: dg.AssetExecutionContext, config: RankingAssetConfig,
                   sampled_data: pd.DataFrame, settings: PipelineSettings,
                   data_source: ParquetDataSource, store: ArtifactStore):
    """Which targets are predictable, per view, under purged walk-forward CV (out of fold)."""
    registry = data_source.registry()
    ranking_config = RankingConfig(**config.model_dump())
    result = rank_targets(sampled_data, registry, ranking_config, settings.base_seed,
                          report=context.log.info)
    table = ranking_table(result)
    path = _save_csv(store, context.run.run_id, "ranked_targets.csv", table)
    context.log.info("TARGET_RANKING: %d targets scored, routes %s", len(result.routes),
                     {r.target: r.route for r in result.routes})
    identity = stage_identity("TARGET_RANKING", sampled_data, registry,
                              settings.max_rows_per_symbol, settings.base_seed,
                              dataclasses.asdict(ranking_config))
    leaks = [dataclasses.asdict(leak) for leak in result.leaks]
    checks = stage_checks(context, "ranked_targets", store.root_path(), identity,
                          result.per_symbol_counts, settings.max_rows_per_symbol,
                          result.train_seed, {"SAMPLING": settings.base_seed}, settings.base_seed)
    return hashed_result(result, identity, result.n_effective, {
        "ranking": frame_to_table(table), "ranking_csv": dg.MetadataValue.path(path),
        "skill_by_horizon": plots.ranking_by_horizon(table, registry),
        "leaks": dg.MetadataValue.json(leaks), "routed": len(routed_pairs(result))},
        result.per_symbol_counts, settings.max_rows_per_symbol, checks)


@dg.asset(group_name="parity", kinds={"lightgbm", "sklearn"},
          check_specs=stage_check_specs("selected_features"))
def selected_features(context: dg.AssetExecutionContext, config: SelectionAssetConfig,
                      sampled_data: pd.DataFrame, ranked_targets: RankingResult,
                      settings: PipelineSettings, data_source: ParquetDataSource,
                      store: ArtifactStore):
    """Multi-model importance, normalized consensus, top-K and stability per routed target."""
    registry = data_source.registry()
    selection_config = SelectionConfig(top_k=config.top_k, n_resamples=config.n_resamples)
    result = select_features(sampled_data, registry, routed_pairs(ranked_targets),
                             ranked_targets.candidate_features, selection_config,
                             settings.base_seed, report=context.log.info)
    table = selection_table(result)
    path = _save_csv(store, context.run.run_id, "selected_features.csv", table)
    context.log.info("FEATURE_SELECTION: %d target x view selections", len(result.selections))
    identity = stage_identity("FEATURE_SELECTION", sampled_data, registry,
                              settings.max_rows_per_symbol, settings.base_seed,
                              dataclasses.asdict(selection_config))
    selected = table[table["selected"]] if len(table) else table
    checks = stage_checks(context, "selected_features", store.root_path(), identity,
                          result.per_symbol_counts, settings.max_rows_per_symbol,
                          result.train_seed, {"TARGET_RANKING": ranked_targets.train_seed},
                          settings.base_seed)
    return hashed_result(result, identity, result.n_effective, {
        "selected": frame_to_table(selected), "selection_csv": dg.MetadataValue.path(path),
        "importance_charts": plots.importance_bars(table)},
        result.per_symbol_counts, settings.max_rows_per_symbol, checks)


@dg.asset(group_name="parity", kinds={"lightgbm", "sklearn"},
          check_specs=stage_check_specs("trained_models"))
def trained_models(context: dg.AssetExecutionContext, config: TrainingAssetConfig,
                   sampled_data: pd.DataFrame, selected_features: SelectionResult,
                   settings: PipelineSettings, data_source: ParquetDataSource,
                   store: ArtifactStore):
    """LightGBM and scikit-learn models per routed target x view (x symbol), saved as files."""
    registry = data_source.registry()
    training_config = TrainingConfig(valid_fraction=config.valid_fraction,
                                     purge_buffer_minutes=config.purge_buffer_minutes)
    selected = {(item.target, item.view): item.selected for item in selected_features.selections}
    out_dir = store.run_dir(context.run.run_id) / "trained_models"
    result = train_models(sampled_data, registry, selected, training_config,
                          settings.base_seed, out_dir, report=context.log.info)
    table = training_table(result)
    path = _save_csv(store, context.run.run_id, "trained_models.csv", table)
    context.log.info("TRAINING: %d models trained", len(result.models))
    identity = stage_identity("TRAINING", sampled_data, registry, settings.max_rows_per_symbol,
                              settings.base_seed, dataclasses.asdict(training_config))
    checks = stage_checks(context, "trained_models", store.root_path(), identity,
                          result.per_symbol_counts, settings.max_rows_per_symbol,
                          result.train_seed, {"FEATURE_SELECTION": selected_features.train_seed},
                          settings.base_seed)
    return hashed_result(result, identity, result.n_effective, {
        "models": frame_to_table(table), "models_csv": dg.MetadataValue.path(path),
        "model_dir": dg.MetadataValue.path(str(out_dir))},
        result.per_symbol_counts, settings.max_rows_per_symbol, checks)
