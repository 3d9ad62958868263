"""The ``ranked_targets`` asset: target ranking, fanned out by (target, view) unit
(``defs.fanout``)."""

import dataclasses

import dagster as dg
import pandas as pd

from parity_pipeline.core.stages.fanout import PartWork, bins_group, piece_costs
from parity_pipeline.core.stages.ranking import (
    CROSS_SECTIONAL,
    SYMBOL_SPECIFIC,
    VIEWS,
    RankingConfig,
    RankingPlan,
    SymbolShare,
    ViewScore,
    assemble_ranking,
    assemble_symbol_specific,
    plan_ranking,
    prepared_panel,
    ranking_table,
    routed_pairs,
    score_planned_share,
    score_planned_view,
    suspected_leaks,
    symbols_of,
)
from parity_pipeline.core.store import reuse
from parity_pipeline.defs import plots
from parity_pipeline.defs.common import reuse_metadata
from parity_pipeline.defs.executor import (
    FIRST_PART_IN_EXECUTOR_PROCESS,
    IN_EXECUTOR_PROCESS,
)
from parity_pipeline.defs.fanout import (
    HANDOFF,
    StageOutcome,
    chart,
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
class RankingAssetConfig(dg.Config):
    n_folds: int = RankingConfig.n_folds
    purge_buffer_minutes: int = RankingConfig.purge_buffer_minutes
    min_skill: float = RankingConfig.min_skill
    min_t_stat: float = RankingConfig.min_t_stat


@dg.op(out=plan_outs(), tags=IN_EXECUTOR_PROCESS)
def plan_ranking_step(context: dg.OpExecutionContext, config: RankingAssetConfig,
                      sampled_data: pd.DataFrame, settings: PipelineSettings,
                      data_source: ParquetDataSource, store: ArtifactStore):
    """The leak scan and candidate features, then every target's two views to score, one
    piece each (a SYMBOL_SPECIFIC view of many symbols one piece per group of symbols,
    ``piece_costs``), for the parts to claim."""
    start_step(context, settings, "ranked_targets", "collect_ranking")
    registry, ranking_config = data_source.registry(), RankingConfig(**config.model_dump())
    # the leak scan compares every feature with every label: a plan of the same panel,
    # registry, config and code is loaded instead (an unchanged nightly: 0.19-0.27 s -> 0.08-0.11 s)
    with reuse.active(store.memo(settings)) as memo:
        plan = memo.reused_or_computed(
            "ranking.plan", {"panel": reuse.digest(sampled_data), "registry": registry,
                             "config": ranking_config, "targets": sorted(settings.targets)},
            lambda: plan_ranking(prepared_panel(sampled_data), registry, ranking_config,
                                 settings.targets or None))
    context.log.info("TARGET_RANKING: %d targets fan out, %d candidate features, %d leaks",
                     len(plan.targets), len(plan.candidate_features), len(plan.leaks))
    yield dg.Output(plan, "plan")
    units = [(target, view) for target in plan.targets for view in VIEWS]
    yield from fan_out(context, piece_costs(units, symbols_of(sampled_data)),
                       lambda key: key[1:],  # (view, *symbols of its share)
                       lambda key: bins_group(key, registry))


@dg.op(out=dg.Out(io_manager_key=HANDOFF), tags=FIRST_PART_IN_EXECUTOR_PROCESS)
def rank_targets_part(context: dg.OpExecutionContext, sampled_data: pd.DataFrame,
                      plan: RankingPlan, targets: PartWork, settings: PipelineSettings,
                      data_source: ParquetDataSource, store: ArtifactStore) -> tuple:
    """The out-of-fold score of each (target, view) unit this part claims:
    ``((ViewScore, ...), reused units)``."""
    start_step(context, settings, "ranked_targets", "collect_ranking")
    panel, registry = prepared_panel(sampled_data), data_source.registry()

    def score(target: str, work: tuple[str, ...]) -> ViewScore | SymbolShare:
        view, symbols = work[0], work[1:]
        if symbols:
            return score_planned_share(panel, registry, plan, target, symbols,
                                       settings.base_seed)
        return score_planned_view(panel, registry, plan, target, view, settings.base_seed)

    def describe(unit: tuple[str, str], scored: ViewScore | SymbolShare) -> str:
        target = unit[0]
        position = f"(target {plan.targets.index(target) + 1} of {len(plan.targets)})"
        if isinstance(scored, SymbolShare):
            return (f"TARGET_RANKING {target} {unit[1]} {position}: symbols "
                    f"{scored.symbols[0]}..{scored.symbols[-1]} "
                    f"({len(scored.symbols)} symbols), {len(scored.values)} fold values")
        return f"TARGET_RANKING {target} {unit[1]} {position}: skill " \
               f"{scored.skill:.4f} (t {scored.t_stat:.2f})"

    shared = shared_inputs(sampled_data, data_source, settings, plan)
    return per_unit(context, settings, store, targets, panel, score, describe,
                    lambda target, work: {**shared, "target": target, "view": work[0],
                                          "symbols": list(work[1:])})


@dg.op(out=collect_outs("ranked_targets"), tags=IN_EXECUTOR_PROCESS)
def collect_ranking(context: dg.OpExecutionContext, sampled_data: pd.DataFrame,
                    plan: RankingPlan, parts: list, settings: PipelineSettings,
                    data_source: ParquetDataSource, store: ArtifactStore):
    registry, panel = data_source.registry(), prepared_panel(sampled_data)
    pieces = [piece for results, _ in parts for piece in results]
    scored = {(s.target, s.view): s for s in pieces if isinstance(s, ViewScore)}
    shares: dict[str, list[SymbolShare]] = {}
    for share in (s for s in pieces if isinstance(s, SymbolShare)):
        shares.setdefault(share.target, []).append(share)
    if len(scored) + sum(map(len, shares.values())) != len(pieces):
        raise ValueError("ranking parts overlap: a (target, view) unit was scored twice")
    for target, target_shares in sorted(shares.items()):  # refuses overlapping or missing groups
        scored[target, SYMBOL_SPECIFIC] = assemble_symbol_specific(panel, registry, plan,
                                                                   target, target_shares)
    # a target missing a view is left out, and assemble_ranking names it
    view_pairs = {target: (scored[target, CROSS_SECTIONAL], scored[target, SYMBOL_SPECIFIC])
                  for target in plan.targets if all((target, view) in scored for view in VIEWS)}
    result = assemble_ranking(panel, registry, plan, view_pairs, settings.base_seed)
    table = ranking_table(result)
    files = csv_file(store, "ranked_targets.csv", table)
    context.log.info("TARGET_RANKING: %d/%d targets done, routes %s; suspected leaks: %s",
                     len(result.routes), len(plan.targets),
                     {r.target: r.route for r in result.routes},
                     ", ".join(suspected_leaks(result)) or "none")
    leaks = [dataclasses.asdict(leak) for leak in result.leaks]
    yield from stage_outputs(context, StageOutcome(
        "ranked_targets", "TARGET_RANKING", result, dataclasses.asdict(plan.config),
        {"SAMPLING": settings.base_seed}, {
            "ranking": frame_to_table(table),
            "ranking_csv": view_path(context, store, "ranked_targets.csv"),
            "skill_by_horizon": chart(settings, store, "plots.ranking_by_horizon",
                                       {"table": table, "registry": registry},
                                       lambda: plots.ranking_by_horizon(table, registry)),
            "leaks": dg.MetadataValue.json(leaks), "routed": len(routed_pairs(result)),
            **reuse_metadata([units for _, units in parts])}, files),
        sampled_data, data_source, settings, store)


ranked_targets = fanned_out(
    "ranked_targets", ("sampled_data",), plan_ranking_step, rank_targets_part, collect_ranking,
    RankingAssetConfig, {"lightgbm"}, "Which targets are predictable, per view, under purged "
    "walk-forward CV (out of fold); targets in parts, side by side.")
