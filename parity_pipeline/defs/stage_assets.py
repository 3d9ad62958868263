"""The three stage assets, each fanned out by target into separate Dagster steps.

Each stage is a graph-backed asset of three ops, so an executor (multiprocess, Celery) can run
the targets of a stage side by side:

    plan_<stage>  ->  <stage>_target[<target>] (one mapped step per target)  ->  collect_<stage>

The plan step fixes what every target shares (the leak scan and candidates, the config, the
routed units); the mapped steps call the same ``core`` functions on one target; the collect
step merges the parts in unit order (``core.fanout.merge_parts``), so the asset's artifact and
its hash are the ones a one-process run produces. Checks are evaluated in the collect step: a
blocking failure there stops the next stage. ``settings.targets`` restricts a run to some
targets (a partial run from the UI's launchpad or ``parity run --targets``).
"""

import dataclasses
from collections.abc import Iterator

import dagster as dg
import pandas as pd

from parity_pipeline import constants
from parity_pipeline.core import reuse
from parity_pipeline.core.fanout import mapping_keys, merge_parts
from parity_pipeline.core.ranking import (
    RankingConfig,
    RankingPlan,
    RankingResult,
    assemble_ranking,
    plan_ranking,
    prepared_panel,
    ranking_table,
    routed_pairs,
    score_planned_target,
    suspected_leaks,
)
from parity_pipeline.core.selection import (
    SelectionConfig,
    SelectionResult,
    select_features,
    selection_table,
)
from parity_pipeline.core.training import (
    TrainingConfig,
    check_distinct_dirs,
    model_files,
    planned_model_dirs,
    train_models,
    training_table,
)
from parity_pipeline.defs import plots
from parity_pipeline.defs.checks import (
    models_trained_result,
    models_trained_spec,
    stage_check_specs,
    stage_checks,
)
from parity_pipeline.defs.common import (
    hashed_outputs,
    require_collect_step,
    reuse_metadata,
    stage_identity,
    tag_run,
)
from parity_pipeline.defs.gate import gated
from parity_pipeline.defs.metadata import frame_to_table
from parity_pipeline.resources.data_source import ParquetDataSource
from parity_pipeline.resources.settings import ArtifactStore, PipelineSettings

# Hand-offs between a stage's steps (not artifacts): resources/io_manager.StepHandoffIOManager
HANDOFF = "step_handoff_io_manager"


class RankingAssetConfig(dg.Config):
    n_folds: int = 5
    purge_buffer_minutes: int = 30
    min_skill: float = 0.02
    min_t_stat: float = 2.0


class SelectionAssetConfig(dg.Config):
    top_k: int = constants.TOP_K_FEATURES
    n_resamples: int = SelectionConfig.n_resamples


class TrainingAssetConfig(dg.Config):
    valid_fraction: float = 0.2
    purge_buffer_minutes: int = 30


def _csv_file(store: ArtifactStore, name: str, table: pd.DataFrame) -> dict[str, str]:
    """A table for people, stored as an object and shown as ``runs/<run_id>/<name>``."""
    return {name: store.content().put_bytes(table.to_csv(index=False).encode("utf-8"), ".csv")}


def _view_path(context: dg.OpExecutionContext, store: ArtifactStore, name: str):
    return dg.MetadataValue.path(str(store.content().view_path(context.run.run_id, name)))


def _start_step(context: dg.OpExecutionContext, settings: PipelineSettings, asset_name: str,
                collect_op: str) -> None:
    """Every non-final step of a stage: the run says its scope, and the step refuses to run
    without the step that writes the asset (a lone re-executed step would update nothing)."""
    tag_run(context, settings)
    require_collect_step(context, asset_name, collect_op)


def _check_specs(asset_name: str) -> list[dg.AssetCheckSpec]:
    """The stage checks, plus the WARN ``models_trained`` on the last stage."""
    extra = [models_trained_spec()] if asset_name == "trained_models" else []
    return [*stage_check_specs(asset_name), *extra]


def _collect_outs(asset_name: str) -> dict[str, dg.Out]:
    """The asset's output plus one output per check (how a graph-backed asset emits checks)."""
    return {"result": dg.Out(),
            **{spec.get_python_identifier(): dg.Out() for spec in _check_specs(asset_name)}}


def _fan_out(units: dict[str, object]) -> Iterator[dg.DynamicOutput]:
    """One dynamic output per target, in sorted target order, keyed by a safe mapping key."""
    keys = mapping_keys(units)
    for target in sorted(units):
        yield dg.DynamicOutput(units[target], mapping_key=keys[target], output_name="targets")


def _identity_config(config: dict, settings: PipelineSettings) -> dict:
    # a run restricted to some targets is its own comparison group; a full run keeps its key
    return {**config, "targets": sorted(settings.targets)} if settings.targets else config


def _config_mapping(config_class: type[dg.Config], plan_op: str) -> dg.ConfigMapping:
    """Keep the stage's config at ``ops: {<asset>: {config: ...}}`` (on its plan step)."""
    return dg.ConfigMapping(config_fn=lambda values: {plan_op: {"config": values}},
                            config_schema=config_class.to_config_schema())


def _stage_outputs(context: dg.OpExecutionContext, asset_name: str, stage: str, result,
                   sampled_data: pd.DataFrame, data_source: ParquetDataSource,
                   settings: PipelineSettings, store: ArtifactStore, config: dict,
                   upstream_seeds: dict[str, int], metadata: dict, files: dict[str, str],
                   extra_checks: tuple[dg.AssetCheckResult, ...] = ()) -> Iterator:
    """A collect step's ending, the same for every stage: identity, checks, hashed output."""
    tag_run(context, settings)
    identity = stage_identity(stage, sampled_data, data_source.registry(),
                              settings.max_rows_per_symbol, settings.base_seed,
                              _identity_config(config, settings))
    checks = stage_checks(context, asset_name, store.content(), identity,
                          result.per_symbol_counts, settings.max_rows_per_symbol,
                          result.train_seed, upstream_seeds, settings.base_seed)
    checks += extra_checks
    yield from gated(context, asset_name, hashed_outputs(
        result, identity, result.n_effective, metadata, result.per_symbol_counts,
        settings.max_rows_per_symbol, checks, settings.scope(data_source.path(), per_target=True),
        files))


# --- TARGET_RANKING ---------------------------------------------------------------------------

@dg.op(out={"plan": dg.Out(io_manager_key=HANDOFF),
            "targets": dg.DynamicOut(io_manager_key=HANDOFF)})
def plan_ranking_step(context: dg.OpExecutionContext, config: RankingAssetConfig,
                      sampled_data: pd.DataFrame, settings: PipelineSettings,
                      data_source: ParquetDataSource):
    """The leak scan and candidate features, then one step per target to score."""
    _start_step(context, settings, "ranked_targets", "collect_ranking")
    plan = plan_ranking(prepared_panel(sampled_data), data_source.registry(),
                        RankingConfig(**config.model_dump()), settings.targets or None)
    context.log.info("TARGET_RANKING: %d targets fan out, %d candidate features, %d leaks",
                     len(plan.targets), len(plan.candidate_features), len(plan.leaks))
    yield dg.Output(plan, "plan")
    yield from _fan_out({target: target for target in plan.targets})


@dg.op(out=dg.Out(io_manager_key=HANDOFF))
def rank_target(context: dg.OpExecutionContext, sampled_data: pd.DataFrame, plan: RankingPlan,
                target: str, settings: PipelineSettings, data_source: ParquetDataSource,
                store: ArtifactStore) -> tuple:
    """Both views' out-of-fold scores of one target: ``(target, (cs, ss), reused units)``."""
    _start_step(context, settings, "ranked_targets", "collect_ranking")
    with reuse.active(store.memo(settings)) as memo:
        cs, ss = score_planned_target(prepared_panel(sampled_data), data_source.registry(),
                                      plan, target, settings.base_seed)
    context.log.info("TARGET_RANKING %s (target %d of %d): CS skill %.4f (t %.2f), SS skill "
                     "%.4f (t %.2f); %s", target, plan.targets.index(target) + 1,
                     len(plan.targets), cs.skill, cs.t_stat, ss.skill, ss.t_stat, memo.summary())
    return target, (cs, ss), memo.units


@dg.op(out=_collect_outs("ranked_targets"))
def collect_ranking(context: dg.OpExecutionContext, sampled_data: pd.DataFrame,
                    plan: RankingPlan, scored: list, settings: PipelineSettings,
                    data_source: ParquetDataSource, store: ArtifactStore):
    registry = data_source.registry()
    result = assemble_ranking(prepared_panel(sampled_data), registry, plan,
                              {target: pair for target, pair, _ in scored}, settings.base_seed)
    table = ranking_table(result)
    files = _csv_file(store, "ranked_targets.csv", table)
    context.log.info("TARGET_RANKING: %d/%d targets done, routes %s; suspected leaks: %s",
                     len(result.routes), len(plan.targets),
                     {r.target: r.route for r in result.routes},
                     ", ".join(suspected_leaks(result)) or "none")
    leaks = [dataclasses.asdict(leak) for leak in result.leaks]
    yield from _stage_outputs(
        context, "ranked_targets", "TARGET_RANKING", result, sampled_data, data_source,
        settings, store, dataclasses.asdict(plan.config), {"SAMPLING": settings.base_seed}, {
            "ranking": frame_to_table(table),
            "ranking_csv": _view_path(context, store, "ranked_targets.csv"),
            "skill_by_horizon": plots.ranking_by_horizon(table, registry),
            "leaks": dg.MetadataValue.json(leaks), "routed": len(routed_pairs(result)),
            **reuse_metadata([units for _, _, units in scored])}, files)


@dg.graph_asset(group_name="parity", kinds={"lightgbm"},
                check_specs=stage_check_specs("ranked_targets"),
                config=_config_mapping(RankingAssetConfig, "plan_ranking_step"))
def ranked_targets(sampled_data):
    """Which targets are predictable, per view, under purged walk-forward CV (out of fold);
    one step per target."""
    plan, targets = plan_ranking_step(sampled_data)
    scored = targets.map(lambda target: rank_target(sampled_data, plan, target))
    return collect_ranking(sampled_data, plan, scored.collect())


# --- FEATURE_SELECTION ------------------------------------------------------------------------

@dg.op(out={"plan": dg.Out(io_manager_key=HANDOFF),
            "targets": dg.DynamicOut(io_manager_key=HANDOFF)})
def plan_selection_step(context: dg.OpExecutionContext, config: SelectionAssetConfig,
                        ranked_targets: RankingResult, settings: PipelineSettings):
    """One step per routed target, holding its routed views."""
    _start_step(context, settings, "selected_features", "collect_selection")
    routed: dict[str, tuple[tuple[str, str], ...]] = {}
    for target, view in routed_pairs(ranked_targets):
        routed[target] = (*routed.get(target, ()), (target, view))
    context.log.info("FEATURE_SELECTION: %d routed targets fan out", len(routed))
    yield dg.Output(SelectionConfig(top_k=config.top_k, n_resamples=config.n_resamples), "plan")
    yield from _fan_out(routed)


@dg.op(out=dg.Out(io_manager_key=HANDOFF))
def select_target(context: dg.OpExecutionContext, sampled_data: pd.DataFrame,
                  ranked_targets: RankingResult, plan: SelectionConfig,
                  units: tuple, settings: PipelineSettings, data_source: ParquetDataSource,
                  store: ArtifactStore) -> tuple:
    """Consensus top-K for one target's routed views: ``(part, reused units)``."""
    _start_step(context, settings, "selected_features", "collect_selection")
    with reuse.active(store.memo(settings)) as memo:
        part = select_features(sampled_data, data_source.registry(), units,
                               ranked_targets.candidate_features, plan, settings.base_seed)
    # one event per finished target step (a line per unit would flood the event log)
    context.log.info("FEATURE_SELECTION %s: %d view(s) done, top features %s; %s", units[0][0],
                     len(part.selections), {s.view: list(s.selected[:3]) for s in part.selections},
                     memo.summary())
    return part, memo.units


@dg.op(out=_collect_outs("selected_features"))
def collect_selection(context: dg.OpExecutionContext, sampled_data: pd.DataFrame,
                      ranked_targets: RankingResult, plan: SelectionConfig, parts: list,
                      settings: PipelineSettings, data_source: ParquetDataSource,
                      store: ArtifactStore):
    registry = data_source.registry()
    # the stage on no unit carries the panel-level fields every part must agree with
    empty = select_features(sampled_data, registry, (), ranked_targets.candidate_features,
                            plan, settings.base_seed)
    result = merge_parts(empty, [part for part, _ in parts], "selections",
                         lambda s: (s.target, s.view))
    table = selection_table(result)
    files = _csv_file(store, "selected_features.csv", table)
    context.log.info("FEATURE_SELECTION: %d/%d target x view units done",
                     len(result.selections), len(routed_pairs(ranked_targets)))
    selected = table[table["selected"]] if len(table) else table
    yield from _stage_outputs(
        context, "selected_features", "FEATURE_SELECTION", result, sampled_data, data_source,
        settings, store, dataclasses.asdict(plan), {"TARGET_RANKING": ranked_targets.train_seed},
        {"selected": frame_to_table(selected),
         "selection_csv": _view_path(context, store, "selected_features.csv"),
         "importance_charts": plots.importance_bars(table),
         **reuse_metadata([units for _, units in parts])}, files)


@dg.graph_asset(group_name="parity", kinds={"lightgbm", "sklearn"},
                check_specs=stage_check_specs("selected_features"),
                config=_config_mapping(SelectionAssetConfig, "plan_selection_step"))
def selected_features(sampled_data, ranked_targets):
    """Multi-model importance, normalized consensus, top-K and stability per routed target;
    one step per target."""
    plan, targets = plan_selection_step(ranked_targets)
    parts = targets.map(lambda units: select_target(sampled_data, ranked_targets, plan, units))
    return collect_selection(sampled_data, ranked_targets, plan, parts.collect())


# --- TRAINING ---------------------------------------------------------------------------------

@dg.op(out={"plan": dg.Out(io_manager_key=HANDOFF),
            "targets": dg.DynamicOut(io_manager_key=HANDOFF)})
def plan_training_step(context: dg.OpExecutionContext, config: TrainingAssetConfig,
                       sampled_data: pd.DataFrame, selected_features: SelectionResult,
                       settings: PipelineSettings):
    """One step per selected target; model folders are checked for clashes across all."""
    _start_step(context, settings, "trained_models", "collect_training")
    selected: dict[str, dict[tuple[str, str], tuple[str, ...]]] = {}
    for item in selected_features.selections:
        selected.setdefault(item.target, {})[(item.target, item.view)] = item.selected
    # per-target steps cannot see each other's folders: refuse a clash before any is written
    check_distinct_dirs(planned_model_dirs(
        sampled_data, [key for units in selected.values() for key in units]))
    context.log.info("TRAINING: %d selected targets fan out", len(selected))
    yield dg.Output(TrainingConfig(valid_fraction=config.valid_fraction,
                                   purge_buffer_minutes=config.purge_buffer_minutes), "plan")
    yield from _fan_out(selected)


@dg.op(out=dg.Out(io_manager_key=HANDOFF))
def train_target(context: dg.OpExecutionContext, sampled_data: pd.DataFrame,
                 plan: TrainingConfig, units: dict, settings: PipelineSettings,
                 data_source: ParquetDataSource, store: ArtifactStore) -> tuple:
    """Every model of one target (both views, every symbol, every family), stored as objects:
    ``(part, reused units)``."""
    _start_step(context, settings, "trained_models", "collect_training")
    with reuse.active(store.memo(settings)) as memo:
        part = train_models(sampled_data, data_source.registry(), units, plan,
                            settings.base_seed, store.content())
    context.log.info("TRAINING %s: %d models done; %s", next(iter(units))[0], len(part.models),
                     memo.summary())
    return part, memo.units


@dg.op(out=_collect_outs("trained_models"))
def collect_training(context: dg.OpExecutionContext, sampled_data: pd.DataFrame,
                     selected_features: SelectionResult, plan: TrainingConfig, parts: list,
                     settings: PipelineSettings, data_source: ParquetDataSource,
                     store: ArtifactStore):
    registry = data_source.registry()
    empty = train_models(sampled_data, registry, {}, plan, settings.base_seed, store.content())
    result = merge_parts(empty, [part for part, _ in parts], "models",
                         lambda m: (m.target, m.view, m.symbol or "", m.family))
    table = training_table(result)
    files = _csv_file(store, "trained_models.csv", table)
    for model in result.models:
        files.update(model_files(model))
    n_planned = sum(len(part.models) for part, _ in parts)
    context.log.info("TRAINING: %d/%d models done", len(result.models), n_planned)
    # no model: the failed WARN check's console line says so, with each blocked view's reason
    models_check = models_trained_result(context, len(result.models))
    yield from _stage_outputs(
        context, "trained_models", "TRAINING", result, sampled_data, data_source, settings,
        store, dataclasses.asdict(plan), {"FEATURE_SELECTION": selected_features.train_seed}, {
            "models": frame_to_table(table),
            "models_csv": _view_path(context, store, "trained_models.csv"),
            "model_dir": _view_path(context, store, "trained_models"),
            **reuse_metadata([units for _, units in parts])}, files, (models_check,))


@dg.graph_asset(group_name="parity", kinds={"lightgbm", "sklearn"},
                check_specs=_check_specs("trained_models"),
                config=_config_mapping(TrainingAssetConfig, "plan_training_step"))
def trained_models(sampled_data, selected_features):
    """LightGBM and scikit-learn models per routed target x view (x symbol), saved as files;
    one step per target."""
    plan, targets = plan_training_step(sampled_data, selected_features)
    parts = targets.map(lambda units: train_target(sampled_data, plan, units))
    return collect_training(sampled_data, selected_features, plan, parts.collect())
