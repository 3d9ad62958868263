"""The ``trained_models`` asset: training, fanned out by selected (target, view) unit
(``defs.fanout``)."""

import dataclasses

import dagster as dg
import pandas as pd

from parity_pipeline.core.stages.fanout import VIEW_COST, PartWork, merge_parts
from parity_pipeline.core.stages.selection import SelectionResult
from parity_pipeline.core.stages.training import (
    TrainingConfig,
    check_distinct_dirs,
    model_files,
    model_intact,
    planned_model_dirs,
    train_models,
    training_table,
)
from parity_pipeline.defs.checks import models_trained_result
from parity_pipeline.defs.common import reuse_metadata
from parity_pipeline.defs.executor import (
    FIRST_PART_IN_EXECUTOR_PROCESS,
    IN_EXECUTOR_PROCESS,
)
from parity_pipeline.defs.fanout import (
    HANDOFF,
    StageOutcome,
    collect_outs,
    csv_file,
    fan_out,
    fanned_out,
    per_unit,
    plan_outs,
    shared_inputs,
    stage_outputs,
    start_step,
    view_path,
)
from parity_pipeline.defs.metadata import frame_to_table
from parity_pipeline.resources.data_source import ParquetDataSource
from parity_pipeline.resources.settings import ArtifactStore, PipelineSettings


# What a run may set from the launchpad; the defaults are the stage config's own.
class TrainingAssetConfig(dg.Config):
    valid_fraction: float = TrainingConfig.valid_fraction
    purge_buffer_minutes: int = TrainingConfig.purge_buffer_minutes


@dg.op(out=plan_outs(), tags=IN_EXECUTOR_PROCESS)
def plan_training_step(context: dg.OpExecutionContext, config: TrainingAssetConfig,
                       sampled_data: pd.DataFrame, selected_features: SelectionResult,
                       settings: PipelineSettings):
    """The selected (target, view) units, one piece each ({unit: features}) for the parts to
    claim; model folders are checked for clashes across all."""
    start_step(context, settings, "trained_models", "collect_training")
    selected = {(item.target, item.view): item.selected for item in selected_features.selections}
    # parts cannot see each other's folders: refuse a clash before any is written
    check_distinct_dirs(planned_model_dirs(sampled_data, list(selected)))
    context.log.info("TRAINING: %d selected units of %d targets fan out", len(selected),
                     len({target for target, _ in selected}))
    yield dg.Output(TrainingConfig(valid_fraction=config.valid_fraction,
                                   purge_buffer_minutes=config.purge_buffer_minutes), "plan")
    yield from fan_out(context, {unit: VIEW_COST[unit[1]] for unit in selected},
                       lambda unit: {unit: selected[unit]})


@dg.op(out=dg.Out(io_manager_key=HANDOFF), tags=FIRST_PART_IN_EXECUTOR_PROCESS)
def train_targets_part(context: dg.OpExecutionContext, sampled_data: pd.DataFrame,
                       plan: TrainingConfig, targets: PartWork, settings: PipelineSettings,
                       data_source: ParquetDataSource, store: ArtifactStore) -> tuple:
    """Every model of each selected (target, view) unit this part claims (every symbol,
    every family), stored as objects: ``((TrainingResult per unit, ...), reused units)``."""
    start_step(context, settings, "trained_models", "collect_training")
    registry = data_source.registry()

    def train(_: str, units: dict) -> object:
        return train_models(sampled_data, registry, units, plan, settings.base_seed,
                            store.content())

    shared = shared_inputs(sampled_data, data_source, settings, plan)
    return per_unit(context, settings, store, targets, sampled_data, train,
                    lambda unit, part: f"TRAINING {unit[0]} {unit[1]}: "
                                       f"{len(part.models)} models done",
                    lambda _, units: {**shared, "units": units},
                    lambda part: all(model_intact(m, store.content())
                                     for m in part.models))


@dg.op(out=collect_outs("trained_models"), tags=IN_EXECUTOR_PROCESS)
def collect_training(context: dg.OpExecutionContext, sampled_data: pd.DataFrame,
                     selected_features: SelectionResult, plan: TrainingConfig, parts: list,
                     settings: PipelineSettings, data_source: ParquetDataSource,
                     store: ArtifactStore):
    registry = data_source.registry()
    empty = train_models(sampled_data, registry, {}, plan, settings.base_seed, store.content())
    unit_results = [one for results, _ in parts for one in results]
    result = merge_parts(empty, unit_results, "models",
                         lambda m: (m.target, m.view, m.symbol or "", m.family))
    table = training_table(result)
    files = csv_file(store, "trained_models.csv", table)
    for model in result.models:
        files.update(model_files(model))
    n_planned = sum(len(part.models) for part in unit_results)
    context.log.info("TRAINING: %d/%d models done", len(result.models), n_planned)
    # no model: the failed WARN check's console line says so, with each blocked view's reason
    models_check = models_trained_result(context, len(result.models))
    yield from stage_outputs(context, StageOutcome(
        "trained_models", "TRAINING", result, dataclasses.asdict(plan),
        {"FEATURE_SELECTION": selected_features.train_seed}, {
            "models": frame_to_table(table),
            "models_csv": view_path(context, store, "trained_models.csv"),
            "model_dir": view_path(context, store, "trained_models"),
            **reuse_metadata([units for _, units in parts])}, files, (models_check,)),
        sampled_data, data_source, settings, store)


trained_models = fanned_out(
    "trained_models", ("sampled_data", "selected_features"), plan_training_step,
    train_targets_part, collect_training, TrainingAssetConfig, {"lightgbm", "sklearn"},
    "LightGBM and scikit-learn models per routed target x view (x symbol), saved as files; "
    "targets in parts, side by side.")
