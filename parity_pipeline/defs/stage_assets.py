"""The three stage assets, each fanned out into parts of targets run as separate Dagster steps.

Each stage is a graph-backed asset of three ops, so an executor (multiprocess, Celery) can run
the targets of a stage side by side:

    plan_<stage>  ->  <stage>_part[part_i_of_n] (one mapped step per part)  ->  collect_<stage>

The plan step fixes what every target shares (the leak scan and candidates, the config, the
routed units) and splits the targets into as many parts as the executor runs steps at once
(``step_slots``: one in-process, ``max_concurrent`` or one per CPU on the multiprocess
executor), balanced by their number of units (``core.stages.fanout.balanced_groups``). A step per
target would cost each target Dagster's own events and, on the multiprocess executor, a
process start, for no more parallelism than the executor has slots. The mapped steps call the
same ``core`` functions target by target and log one line per finished target; the collect step
merges the parts in unit order (``core.stages.fanout.merge_parts``), so the asset's artifact and its
hash are the ones a one-process run produces, whatever the number of parts. Checks are
evaluated in the collect step: a blocking failure there stops the next stage.
``settings.targets`` restricts a run to some targets (a partial run from the UI's launchpad or
``parity run --targets``).
"""

import dataclasses
import functools
import inspect
import os
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

import dagster as dg
import pandas as pd

from parity_pipeline.core.repro.checks import StageObservation
from parity_pipeline.core.repro.identity import stage_identity
from parity_pipeline.core.stages.fanout import balanced_groups, by_target, merge_parts
from parity_pipeline.core.stages.ranking import (
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
from parity_pipeline.core.stages.selection import (
    SelectionConfig,
    SelectionResult,
    select_features,
    selection_table,
)
from parity_pipeline.core.stages.training import (
    TrainingConfig,
    TrainingResult,
    check_distinct_dirs,
    model_files,
    model_intact,
    planned_model_dirs,
    train_models,
    training_table,
)
from parity_pipeline.core.store import reuse
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
    tag_run,
)
from parity_pipeline.defs.gate import gated
from parity_pipeline.defs.metadata import frame_to_table
from parity_pipeline.resources.data_source import ParquetDataSource
from parity_pipeline.resources.settings import ArtifactStore, PipelineSettings

# Hand-offs between a stage's steps (not artifacts): resources/io_manager.StepHandoffIOManager
HANDOFF = "step_handoff_io_manager"
Units = TypeVar("Units")  # what a stage fans out per target (its units)


# What a run may set from the launchpad; the defaults are the stage configs' own.
class RankingAssetConfig(dg.Config):
    n_folds: int = RankingConfig.n_folds
    purge_buffer_minutes: int = RankingConfig.purge_buffer_minutes
    min_skill: float = RankingConfig.min_skill
    min_t_stat: float = RankingConfig.min_t_stat


class SelectionAssetConfig(dg.Config):
    top_k: int = SelectionConfig.top_k
    n_resamples: int = SelectionConfig.n_resamples


class TrainingAssetConfig(dg.Config):
    valid_fraction: float = TrainingConfig.valid_fraction
    purge_buffer_minutes: int = TrainingConfig.purge_buffer_minutes


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


def step_slots(context: dg.OpExecutionContext) -> int:
    """How many steps the run's executor runs at once, so how many parts a stage splits into."""
    if context.job_def.executor_def.name in ("in_process", "execute_in_process_executor"):
        return 1
    execution = context.run_config.get("execution")
    config = execution.get("config") if isinstance(execution, Mapping) else None
    slots = config.get("max_concurrent") if isinstance(config, Mapping) else None
    # 0 or unset: one per CPU, Dagster's multiprocess default (also the guess for Celery)
    return int(slots or 0) or os.cpu_count() or 1


def _fan_out(context: dg.OpExecutionContext, units: Mapping[str, Units],
             cost: Callable[[Units], float]) -> Iterator[dg.DynamicOutput]:
    """One dynamic output per part: ``{target: units}`` of the targets in it."""
    parts = balanced_groups({target: cost(units[target]) for target in units},
                            step_slots(context))
    for number, targets in enumerate(parts, start=1):
        yield dg.DynamicOutput({target: units[target] for target in targets},
                               mapping_key=f"part_{number}_of_{len(parts)}",
                               output_name="targets")


def _per_target(context: dg.OpExecutionContext, settings: PipelineSettings,
                store: ArtifactStore, part: dict, work: Callable, describe: Callable,
                inputs: Callable, valid: Callable = lambda _result: True) -> tuple:
    """``work(target, units)`` for each target of a part, in sorted order, each under its own
    reuse memo and reused whole when ``inputs(target, units)`` (all it reads) match an earlier
    result that is ``valid``; one log line per finished target (a line per unit would flood
    the event log). Returns ``(results, reused units)``."""
    results, reused_units = [], {}
    kind = f"{context.op_def.name}.target"
    for target in sorted(part):
        with reuse.active(store.memo(settings)) as memo:
            result = memo.whole(kind, inputs(target, part[target]),
                                functools.partial(work, target, part[target]), valid)
        context.log.info("%s; %s", describe(target, result), memo.summary())
        results.append(result)
        reused_units.update(memo.units)
    return tuple(results), reused_units


def _shared_inputs(sampled_data: pd.DataFrame, data_source: ParquetDataSource,
                   settings: PipelineSettings, plan: object) -> dict:
    """What every target of a part reads besides its own units (the panel by its digest,
    computed once per step)."""
    return {"panel": reuse.digest(sampled_data), "registry": data_source.registry(),
            "plan": plan, "seed": settings.base_seed}


def _chart(settings: PipelineSettings, store: ArtifactStore, kind: str, inputs: dict,
           draw: Callable[[], dg.MarkdownMetadataValue]) -> dg.MetadataValue:
    """A chart is a pure function of its inputs: drawn once per content and then reused like a
    fit (matplotlib takes most of a second per chart set, a large part of an unchanged nightly)."""
    with reuse.active(store.memo(settings)) as memo:
        return dg.MetadataValue.md(memo.reused_or_computed(kind, inputs, lambda: draw().value))


def _identity_config(config: dict, settings: PipelineSettings) -> dict:
    # a run restricted to some targets is its own comparison group; a full run keeps its key
    return {**config, "targets": sorted(settings.targets)} if settings.targets else config


def _config_mapping(config_class: type[dg.Config], plan_op: str) -> dg.ConfigMapping:
    """Keep the stage's config at ``ops: {<asset>: {config: ...}}`` (on its plan step)."""
    return dg.ConfigMapping(config_fn=lambda values: {plan_op: {"config": values}},
                            config_schema=config_class.to_config_schema())


@dataclasses.dataclass(frozen=True)
class StageOutcome:
    """What a collect step ends with: the merged result, what it is shown with, and what its
    checks compare it to (every stage ends the same way: ``_stage_outputs``)."""

    asset_name: str
    stage: str
    result: RankingResult | SelectionResult | TrainingResult
    config: dict
    upstream_seeds: dict[str, int]
    metadata: dict
    files: dict[str, str]
    extra_checks: tuple[dg.AssetCheckResult, ...] = ()


def _stage_outputs(context: dg.OpExecutionContext, outcome: StageOutcome,
                   sampled_data: pd.DataFrame, data_source: ParquetDataSource,
                   settings: PipelineSettings, store: ArtifactStore) -> Iterator:
    """A collect step's ending: identity, checks, hashed output."""
    tag_run(context, settings)
    result = outcome.result
    identity = stage_identity(outcome.stage, sampled_data, data_source.registry(),
                              settings.max_rows_per_symbol, settings.base_seed,
                              _identity_config(outcome.config, settings))
    seen = StageObservation(result.per_symbol_counts, result.train_seed, outcome.upstream_seeds)
    checks = [*stage_checks(context, outcome.asset_name, store.content(), identity, seen,
                            settings), *outcome.extra_checks]
    yield from gated(context, outcome.asset_name, hashed_outputs(
        result, identity, result.n_effective, outcome.metadata, result.per_symbol_counts,
        settings.max_rows_per_symbol, checks, settings.scope(data_source.path(), per_target=True),
        outcome.files))


def _fanned_out(name: str, upstream: tuple[str, ...], plan: dg.OpDefinition,
                part: dg.OpDefinition, collect: dg.OpDefinition,
                config_class: type[dg.Config], kinds: set[str],
                description: str) -> dg.AssetsDefinition:
    """A stage as one graph-backed asset: ``plan`` -> one ``part`` step per group of targets
    -> ``collect``. Each op gets the upstream assets it names as inputs, plus ``plan`` and
    ``targets`` (a part's group) or ``parts`` (every part's result)."""

    def compose(**assets):
        plan_out, groups = plan(**_inputs_of(plan, assets))
        parts = groups.map(lambda group: part(
            **_inputs_of(part, {**assets, "plan": plan_out, "targets": group})))
        return collect(**_inputs_of(collect, {**assets, "plan": plan_out,
                                              "parts": parts.collect()}))

    # Dagster reads a graph's inputs from its signature: the stage's upstream assets
    compose.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(asset, inspect.Parameter.POSITIONAL_OR_KEYWORD) for asset in upstream])
    return dg.graph_asset(name=name, group_name="parity", kinds=kinds,
                          check_specs=_check_specs(name), description=description,
                          config=_config_mapping(config_class, plan.name))(compose)


def _inputs_of(op: dg.OpDefinition, available: dict) -> dict:
    return {name: available[name] for name in op.input_dict}


# --- TARGET_RANKING ---------------------------------------------------------------------------

@dg.op(out={"plan": dg.Out(io_manager_key=HANDOFF),
            "targets": dg.DynamicOut(io_manager_key=HANDOFF)})
def plan_ranking_step(context: dg.OpExecutionContext, config: RankingAssetConfig,
                      sampled_data: pd.DataFrame, settings: PipelineSettings,
                      data_source: ParquetDataSource):
    """The leak scan and candidate features, then the targets to score, in parts."""
    _start_step(context, settings, "ranked_targets", "collect_ranking")
    plan = plan_ranking(prepared_panel(sampled_data), data_source.registry(),
                        RankingConfig(**config.model_dump()), settings.targets or None)
    context.log.info("TARGET_RANKING: %d targets fan out, %d candidate features, %d leaks",
                     len(plan.targets), len(plan.candidate_features), len(plan.leaks))
    yield dg.Output(plan, "plan")
    # every target is scored in both views on the same rows: equal cost
    yield from _fan_out(context, {target: target for target in plan.targets}, lambda _: 1.0)


@dg.op(out=dg.Out(io_manager_key=HANDOFF))
def rank_targets_part(context: dg.OpExecutionContext, sampled_data: pd.DataFrame,
                      plan: RankingPlan, targets: dict, settings: PipelineSettings,
                      data_source: ParquetDataSource, store: ArtifactStore) -> tuple:
    """Both views' out-of-fold scores of each target of a part:
    ``(((target, (cs, ss)), ...), reused units)``."""
    _start_step(context, settings, "ranked_targets", "collect_ranking")
    panel, registry = prepared_panel(sampled_data), data_source.registry()

    def score(target: str, _: str) -> tuple:
        return target, score_planned_target(panel, registry, plan, target, settings.base_seed)

    def describe(target: str, scored: tuple) -> str:
        cs, ss = scored[1]
        return (f"TARGET_RANKING {target} (target {plan.targets.index(target) + 1} of "
                f"{len(plan.targets)}): CS skill {cs.skill:.4f} (t {cs.t_stat:.2f}), SS skill "
                f"{ss.skill:.4f} (t {ss.t_stat:.2f})")

    shared = _shared_inputs(sampled_data, data_source, settings, plan)
    return _per_target(context, settings, store, targets, score, describe,
                       lambda target, _: {**shared, "target": target})


@dg.op(out=_collect_outs("ranked_targets"))
def collect_ranking(context: dg.OpExecutionContext, sampled_data: pd.DataFrame,
                    plan: RankingPlan, parts: list, settings: PipelineSettings,
                    data_source: ParquetDataSource, store: ArtifactStore):
    registry = data_source.registry()
    scored = {target: pair for results, _ in parts for target, pair in results}
    result = assemble_ranking(prepared_panel(sampled_data), registry, plan, scored,
                              settings.base_seed)
    table = ranking_table(result)
    files = _csv_file(store, "ranked_targets.csv", table)
    context.log.info("TARGET_RANKING: %d/%d targets done, routes %s; suspected leaks: %s",
                     len(result.routes), len(plan.targets),
                     {r.target: r.route for r in result.routes},
                     ", ".join(suspected_leaks(result)) or "none")
    leaks = [dataclasses.asdict(leak) for leak in result.leaks]
    yield from _stage_outputs(context, StageOutcome(
        "ranked_targets", "TARGET_RANKING", result, dataclasses.asdict(plan.config),
        {"SAMPLING": settings.base_seed}, {
            "ranking": frame_to_table(table),
            "ranking_csv": _view_path(context, store, "ranked_targets.csv"),
            "skill_by_horizon": _chart(settings, store, "plots.ranking_by_horizon",
                                       {"table": table, "registry": registry},
                                       lambda: plots.ranking_by_horizon(table, registry)),
            "leaks": dg.MetadataValue.json(leaks), "routed": len(routed_pairs(result)),
            **reuse_metadata([units for _, units in parts])}, files),
        sampled_data, data_source, settings, store)


ranked_targets = _fanned_out(
    "ranked_targets", ("sampled_data",), plan_ranking_step, rank_targets_part, collect_ranking,
    RankingAssetConfig, {"lightgbm"}, "Which targets are predictable, per view, under purged "
    "walk-forward CV (out of fold); targets in parts, side by side.")


# --- FEATURE_SELECTION ------------------------------------------------------------------------

@dg.op(out={"plan": dg.Out(io_manager_key=HANDOFF),
            "targets": dg.DynamicOut(io_manager_key=HANDOFF)})
def plan_selection_step(context: dg.OpExecutionContext, config: SelectionAssetConfig,
                        ranked_targets: RankingResult, settings: PipelineSettings):
    """The routed targets, each holding its routed views, in parts."""
    _start_step(context, settings, "selected_features", "collect_selection")
    routed = {target: tuple(units) for target, units in
              by_target((pair, None) for pair in routed_pairs(ranked_targets)).items()}
    context.log.info("FEATURE_SELECTION: %d routed targets fan out", len(routed))
    yield dg.Output(SelectionConfig(top_k=config.top_k, n_resamples=config.n_resamples), "plan")
    yield from _fan_out(context, routed, len)  # cost: routed views


@dg.op(out=dg.Out(io_manager_key=HANDOFF))
def select_targets_part(context: dg.OpExecutionContext, sampled_data: pd.DataFrame,
                        ranked_targets: RankingResult, plan: SelectionConfig, targets: dict,
                        settings: PipelineSettings, data_source: ParquetDataSource,
                        store: ArtifactStore) -> tuple:
    """Consensus top-K for the routed views of each target of a part:
    ``((part per target, ...), reused units)``."""
    _start_step(context, settings, "selected_features", "collect_selection")
    registry = data_source.registry()

    def select(_: str, units: tuple) -> SelectionResult:
        return select_features(sampled_data, registry, units,
                               ranked_targets.candidate_features, plan, settings.base_seed)

    def describe(target: str, part: SelectionResult) -> str:
        top = {item.view: list(item.selected[:3]) for item in part.selections}
        return (f"FEATURE_SELECTION {target}: {len(part.selections)} view(s) done, "
                f"top features {top}")

    shared = {**_shared_inputs(sampled_data, data_source, settings, plan),
              "candidates": ranked_targets.candidate_features}
    return _per_target(context, settings, store, targets, select, describe,
                       lambda _, units: {**shared, "units": units})


@dg.op(out=_collect_outs("selected_features"))
def collect_selection(context: dg.OpExecutionContext, sampled_data: pd.DataFrame,
                      ranked_targets: RankingResult, plan: SelectionConfig, parts: list,
                      settings: PipelineSettings, data_source: ParquetDataSource,
                      store: ArtifactStore):
    registry = data_source.registry()
    # the stage on no unit carries the panel-level fields every part must agree with
    empty = select_features(sampled_data, registry, (), ranked_targets.candidate_features,
                            plan, settings.base_seed)
    result = merge_parts(empty, [one for results, _ in parts for one in results], "selections",
                         lambda s: (s.target, s.view))
    table = selection_table(result)
    files = _csv_file(store, "selected_features.csv", table)
    context.log.info("FEATURE_SELECTION: %d/%d target x view units done",
                     len(result.selections), len(routed_pairs(ranked_targets)))
    selected = table[table["selected"]] if len(table) else table
    yield from _stage_outputs(context, StageOutcome(
        "selected_features", "FEATURE_SELECTION", result, dataclasses.asdict(plan),
        {"TARGET_RANKING": ranked_targets.train_seed},
        {"selected": frame_to_table(selected),
         "selection_csv": _view_path(context, store, "selected_features.csv"),
         "importance_charts": _chart(settings, store, "plots.importance_bars", {"table": table},
                                     lambda: plots.importance_bars(table)),
         **reuse_metadata([units for _, units in parts])}, files),
        sampled_data, data_source, settings, store)


selected_features = _fanned_out(
    "selected_features", ("sampled_data", "ranked_targets"), plan_selection_step,
    select_targets_part, collect_selection, SelectionAssetConfig, {"lightgbm", "sklearn"},
    "Multi-model importance, normalized consensus, top-K and stability per routed target; "
    "targets in parts, side by side.")


# --- TRAINING ---------------------------------------------------------------------------------

@dg.op(out={"plan": dg.Out(io_manager_key=HANDOFF),
            "targets": dg.DynamicOut(io_manager_key=HANDOFF)})
def plan_training_step(context: dg.OpExecutionContext, config: TrainingAssetConfig,
                       sampled_data: pd.DataFrame, selected_features: SelectionResult,
                       settings: PipelineSettings):
    """The selected targets in parts; model folders are checked for clashes across all."""
    _start_step(context, settings, "trained_models", "collect_training")
    selected = by_target(((item.target, item.view), item.selected)
                         for item in selected_features.selections)
    # parts cannot see each other's folders: refuse a clash before any is written
    check_distinct_dirs(planned_model_dirs(
        sampled_data, [key for units in selected.values() for key in units]))
    context.log.info("TRAINING: %d selected targets fan out", len(selected))
    yield dg.Output(TrainingConfig(valid_fraction=config.valid_fraction,
                                   purge_buffer_minutes=config.purge_buffer_minutes), "plan")
    yield from _fan_out(context, selected, len)  # cost: selected views


@dg.op(out=dg.Out(io_manager_key=HANDOFF))
def train_targets_part(context: dg.OpExecutionContext, sampled_data: pd.DataFrame,
                       plan: TrainingConfig, targets: dict, settings: PipelineSettings,
                       data_source: ParquetDataSource, store: ArtifactStore) -> tuple:
    """Every model of each target of a part (both views, every symbol, every family), stored
    as objects: ``((part per target, ...), reused units)``."""
    _start_step(context, settings, "trained_models", "collect_training")
    registry = data_source.registry()

    def train(_: str, units: dict) -> object:
        return train_models(sampled_data, registry, units, plan, settings.base_seed,
                            store.content())

    shared = _shared_inputs(sampled_data, data_source, settings, plan)
    return _per_target(context, settings, store, targets, train,
                       lambda target, part: f"TRAINING {target}: {len(part.models)} models done",
                       lambda _, units: {**shared, "units": units},
                       lambda part: all(model_intact(m, store.content()) for m in part.models))


@dg.op(out=_collect_outs("trained_models"))
def collect_training(context: dg.OpExecutionContext, sampled_data: pd.DataFrame,
                     selected_features: SelectionResult, plan: TrainingConfig, parts: list,
                     settings: PipelineSettings, data_source: ParquetDataSource,
                     store: ArtifactStore):
    registry = data_source.registry()
    empty = train_models(sampled_data, registry, {}, plan, settings.base_seed, store.content())
    per_target = [one for results, _ in parts for one in results]
    result = merge_parts(empty, per_target, "models",
                         lambda m: (m.target, m.view, m.symbol or "", m.family))
    table = training_table(result)
    files = _csv_file(store, "trained_models.csv", table)
    for model in result.models:
        files.update(model_files(model))
    n_planned = sum(len(part.models) for part in per_target)
    context.log.info("TRAINING: %d/%d models done", len(result.models), n_planned)
    # no model: the failed WARN check's console line says so, with each blocked view's reason
    models_check = models_trained_result(context, len(result.models))
    yield from _stage_outputs(context, StageOutcome(
        "trained_models", "TRAINING", result, dataclasses.asdict(plan),
        {"FEATURE_SELECTION": selected_features.train_seed}, {
            "models": frame_to_table(table),
            "models_csv": _view_path(context, store, "trained_models.csv"),
            "model_dir": _view_path(context, store, "trained_models"),
            **reuse_metadata([units for _, units in parts])}, files, (models_check,)),
        sampled_data, data_source, settings, store)


trained_models = _fanned_out(
    "trained_models", ("sampled_data", "selected_features"), plan_training_step,
    train_targets_part, collect_training, TrainingAssetConfig, {"lightgbm", "sklearn"},
    "LightGBM and scikit-learn models per routed target x view (x symbol), saved as files; "
    "targets in parts, side by side.")
