"""The ``selected_features`` asset: feature selection, fanned out by routed (target, view)
unit (``defs.fanout``)."""

import dataclasses

import dagster as dg
import pandas as pd

from parity_pipeline.core.stages.fanout import (
    PartWork,
    bins_group,
    merge_parts,
    selection_piece_costs,
    selection_share_of,
)
from parity_pipeline.core.stages.ranking import (
    RankingResult,
    routed_pairs,
)
from parity_pipeline.core.stages.selection import (
    FITS,
    SelectionConfig,
    SelectionResult,
    SelectionShare,
    select_features,
    select_share,
    selection_from_shares,
    selection_table,
)
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
class SelectionAssetConfig(dg.Config):
    top_k: int = SelectionConfig.top_k
    n_resamples: int = SelectionConfig.n_resamples


@dg.op(out=plan_outs(), tags=IN_EXECUTOR_PROCESS)
def plan_selection_step(context: dg.OpExecutionContext, config: SelectionAssetConfig,
                        ranked_targets: RankingResult, settings: PipelineSettings,
                        data_source: ParquetDataSource):
    """The routed (target, view) units in pieces for the parts to claim
    (``selection_piece_costs``): a SYMBOL_SPECIFIC unit of many symbols one piece per group of
    symbols, a CROSS_SECTIONAL unit one for its main fits and one for its resamples."""
    start_step(context, settings, "selected_features", "collect_selection")
    routed = routed_pairs(ranked_targets)
    context.log.info("FEATURE_SELECTION: %d routed units of %d targets fan out", len(routed),
                     len({target for target, _ in routed}))
    yield dg.Output(SelectionConfig(top_k=config.top_k, n_resamples=config.n_resamples), "plan")
    symbols = sorted(ranked_targets.per_symbol_counts)  # the panel's symbols
    registry = data_source.registry()
    yield from fan_out(context, selection_piece_costs(routed, symbols), selection_share_of,
                       lambda key: bins_group(key, registry))


@dg.op(out=dg.Out(io_manager_key=HANDOFF), tags=FIRST_PART_IN_EXECUTOR_PROCESS)
def select_targets_part(context: dg.OpExecutionContext, sampled_data: pd.DataFrame,
                        ranked_targets: RankingResult, plan: SelectionConfig, targets: PartWork,
                        settings: PipelineSettings, data_source: ParquetDataSource,
                        store: ArtifactStore) -> tuple:
    """Consensus top-K for each routed (target, view) unit this part claims:
    ``((SelectionResult per unit, ...), reused units)``."""
    start_step(context, settings, "selected_features", "collect_selection")
    registry = data_source.registry()

    def select(_: str, work: tuple) -> SelectionResult | SelectionShare:
        unit, symbols, fits = work  # selection_share_of: a share, or the whole unit
        if symbols or fits:
            return select_share(sampled_data, registry, unit, symbols,
                                ranked_targets.candidate_features, plan, settings.base_seed,
                                fits or FITS)
        return select_features(sampled_data, registry, (unit,),
                               ranked_targets.candidate_features, plan, settings.base_seed)

    def describe(unit: tuple[str, str], part: SelectionResult | SelectionShare) -> str:
        if isinstance(part, SelectionShare):
            fitted = " and ".join(kind for kind in FITS if part.holds(kind))
            return (f"FEATURE_SELECTION {unit[0]} {unit[1]}: symbols {part.symbols[0]}.."
                    f"{part.symbols[-1]} ({len(part.symbols)} symbols), {fitted} fits done")
        top = [list(item.selected[:3]) for item in part.selections]
        return f"FEATURE_SELECTION {unit[0]} {unit[1]}: top features {top[0] if top else []}"

    shared = {**shared_inputs(sampled_data, data_source, settings, plan),
              "candidates": ranked_targets.candidate_features}
    return per_unit(context, settings, store, targets, sampled_data, select, describe,
                    lambda _, work: {**shared, "unit": work[0], "symbols": list(work[1]),
                                     "fits": list(work[2])})


@dg.op(out=collect_outs("selected_features"), tags=IN_EXECUTOR_PROCESS)
def collect_selection(context: dg.OpExecutionContext, sampled_data: pd.DataFrame,
                      ranked_targets: RankingResult, plan: SelectionConfig, parts: list,
                      settings: PipelineSettings, data_source: ParquetDataSource,
                      store: ArtifactStore):
    registry = data_source.registry()
    # the stage on no unit carries the panel-level fields every part must agree with
    empty = select_features(sampled_data, registry, (), ranked_targets.candidate_features,
                            plan, settings.base_seed)
    pieces = [piece for results, _ in parts for piece in results]
    shares: dict[tuple[str, str], list[SelectionShare]] = {}
    for share in (piece for piece in pieces if isinstance(piece, SelectionShare)):
        shares.setdefault((share.target, share.view), []).append(share)
    joined = [selection_from_shares(sampled_data, registry, unit, ranked_targets.candidate_features,
                                    plan, settings.base_seed, unit_shares)
              for unit, unit_shares in sorted(shares.items())]  # refuses overlapping groups
    result = merge_parts(empty, [*joined, *(piece for piece in pieces
                                            if isinstance(piece, SelectionResult))],
                         "selections", lambda s: (s.target, s.view))
    table = selection_table(result)
    files = csv_file(store, "selected_features.csv", table)
    context.log.info("FEATURE_SELECTION: %d/%d target x view units done",
                     len(result.selections), len(routed_pairs(ranked_targets)))
    selected = table[table["selected"]] if len(table) else table
    yield from stage_outputs(context, StageOutcome(
        "selected_features", "FEATURE_SELECTION", result, dataclasses.asdict(plan),
        {"TARGET_RANKING": ranked_targets.train_seed},
        {"selected": frame_to_table(selected),
         "selection_csv": view_path(context, store, "selected_features.csv"),
         "importance_charts": chart(settings, store, "plots.importance_bars", {"table": table},
                                     lambda: plots.importance_bars(table)),
         **reuse_metadata([units for _, units in parts])}, files),
        sampled_data, data_source, settings, store)


selected_features = fanned_out(
    "selected_features", ("sampled_data", "ranked_targets"), plan_selection_step,
    select_targets_part, collect_selection, SelectionAssetConfig, {"lightgbm", "sklearn"},
    "Multi-model importance, normalized consensus, top-K and stability per routed target; "
    "targets in parts, side by side.")
