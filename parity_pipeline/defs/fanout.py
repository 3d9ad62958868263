"""How the three stage assets fan out into parts run as separate Dagster steps.

Each stage is a graph-backed asset of three ops, so an executor (multiprocess, Celery) can run
the stage's units side by side:

    plan_<stage>  ->  <stage>_part[part_i_of_n] (one mapped step per part)  ->  collect_<stage>

The plan step fixes what every unit shares (the leak scan and candidates, the config, the routed
units) and lists the stage's pieces, one per ``(target, view)`` unit (every target's two views
for ranking, the routed units for selection and training; a SYMBOL_SPECIFIC unit of ranking or
selection over more than 12 symbols one per group of symbols, ``piece_costs``), costliest first
(``VIEW_COST``), for as many parts as the executor runs steps at once (``step_slots``: one
in-process, ``max_concurrent`` or one per CPU on the multiprocess executor). Each part walks the
whole list and claims a piece before computing it (``core.store.claims``): whichever part is
free takes the next piece, so the parts end together without an estimate of what a piece costs.
The plan and collect steps and the first part run in the executor's process (``defs.executor``);
the other parts are forked. A step per unit would cost each unit Dagster's own events and, on
the multiprocess executor, a process start, for no more parallelism than the executor has slots.
The mapped steps call the same ``core`` functions piece by piece and log one line per finished
piece; the collect step joins a unit's symbol groups and merges the parts in unit order
(``core.stages.fanout.merge_parts``), so the asset's artifact and its hash are the ones a
one-process run produces, whatever the number of parts. Checks are evaluated in the collect
step: a blocking failure there stops the next stage. ``settings.targets`` restricts a run to
some targets (a partial run from the UI's launchpad or ``parity run --targets``).
"""

import dataclasses
import functools
import inspect
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import dagster as dg
import pandas as pd

from parity_pipeline.core.repro.checks import StageObservation
from parity_pipeline.core.repro.identity import stage_identity
from parity_pipeline.core.stages import binned
from parity_pipeline.core.stages.fanout import (
    Key,
    PartWork,
    Piece,
    costliest_first,
    next_piece,
)
from parity_pipeline.core.stages.ranking import RankingResult
from parity_pipeline.core.stages.selection import SelectionResult
from parity_pipeline.core.stages.training import TrainingResult
from parity_pipeline.core.store import reuse
from parity_pipeline.core.store.claims import claim
from parity_pipeline.defs.checks import (
    models_trained_spec,
    stage_check_specs,
    stage_checks,
)
from parity_pipeline.defs.common import (
    hashed_outputs,
    require_collect_step,
    tag_run,
)
from parity_pipeline.defs.executor import part_key
from parity_pipeline.defs.gate import gated
from parity_pipeline.resources.data_source import ParquetDataSource
from parity_pipeline.resources.settings import ArtifactStore, PipelineSettings

# Hand-offs between a stage's steps (not artifacts): resources/io_manager.StepHandoffIOManager
HANDOFF = "step_handoff_io_manager"


def plan_outs() -> dict[str, dg.Out]:
    """A plan step's outputs: the plan, and one dynamic output per part."""
    return {"plan": dg.Out(io_manager_key=HANDOFF),
            "targets": dg.DynamicOut(io_manager_key=HANDOFF)}


def csv_file(store: ArtifactStore, name: str, table: pd.DataFrame) -> dict[str, str]:
    """A table for people, stored as an object and shown as ``runs/<run_id>/<name>``."""
    return {name: store.content().put_bytes(table.to_csv(index=False).encode("utf-8"), ".csv")}


def view_path(context: dg.OpExecutionContext, store: ArtifactStore, name: str):
    return dg.MetadataValue.path(str(store.content().view_path(context.run.run_id, name)))


def start_step(context: dg.OpExecutionContext, settings: PipelineSettings, asset_name: str,
                collect_op: str) -> None:
    """Every non-final step of a stage: the run says its scope, and the step refuses to run
    without the step that writes the asset (a lone re-executed step would update nothing)."""
    tag_run(context, settings)
    require_collect_step(context, asset_name, collect_op)


def stage_specs(asset_name: str) -> list[dg.AssetCheckSpec]:
    """The stage checks, plus the WARN ``models_trained`` on the last stage."""
    extra = [models_trained_spec()] if asset_name == "trained_models" else []
    return [*stage_check_specs(asset_name), *extra]


def collect_outs(asset_name: str) -> dict[str, dg.Out]:
    """The asset's output plus one output per check (how a graph-backed asset emits checks)."""
    return {"result": dg.Out(),
            **{spec.get_python_identifier(): dg.Out() for spec in stage_specs(asset_name)}}


def step_slots(context: dg.OpExecutionContext) -> int:
    """How many steps the run's executor runs at once, so how many parts a stage splits into."""
    if context.job_def.executor_def.name in ("in_process", "execute_in_process_executor"):
        return 1
    execution = context.run_config.get("execution")
    config = execution.get("config") if isinstance(execution, Mapping) else None
    slots = config.get("max_concurrent") if isinstance(config, Mapping) else None
    # 0 or unset: one per CPU, Dagster's multiprocess default (also the guess for Celery)
    return int(slots or 0) or os.cpu_count() or 1


def fan_out(context: dg.OpExecutionContext, costs: Mapping[Key, float],
            work_of: Callable[[Key], Any],
            group_of: Callable[[Key], str] = lambda _key: "") -> Iterator[dg.DynamicOutput]:
    """One dynamic output per step slot (at most one per piece), each the stage's whole list
    of pieces: a piece per key of ``costs`` (a ``(target, view)`` unit, or a share of one
    named by its symbols), costliest first, carrying ``work_of(key)`` (what the stage's work
    reads for it) and ``group_of(key)`` (``Piece.group``). The parts claim them as they run
    (``per_unit``)."""
    pieces = tuple(Piece((key[0], key[1]), work_of(key), key[2:], group_of(key))
                   for key in costliest_first(costs))
    n_parts = min(step_slots(context), len(pieces))
    for number in range(1, n_parts + 1):
        key = part_key(number, n_parts)
        yield dg.DynamicOutput(PartWork(key, n_parts, context.run.run_id, pieces),
                               mapping_key=key, output_name="targets")


def per_unit(context: dg.OpExecutionContext, settings: PipelineSettings,
             store: ArtifactStore, part: PartWork, panel: pd.DataFrame, work: Callable,
             describe: Callable, inputs: Callable,
             valid: Callable = lambda _result: True) -> tuple:
    """``work(target, piece.work)`` for each piece of the stage this part claims first (all
    of them when it is the only part), in the plan's order but a group's pieces one after
    another (``next_piece``), each under its own reuse memo and
    reused whole when ``inputs(target, piece.work)`` (all it reads) match an earlier result
    that is ``valid``; one log line per finished piece, ``describe((target, view), result)``
    (a line per model would flood the event log), naming the host and process that computed
    it (on a cluster, the worker). ``panel``: the frame the pieces' work reads, whose column
    digests every piece's reuse keys share (``reuse.panel_digests``: each digested once a step);
    LightGBM's binned datasets are shared by the pieces too (``binned.shared``).
    Returns ``(results, reused units)``."""
    results: list = []
    reused_units: dict[str, bool] = {}
    worker = f"on {socket.gethostname()} pid {os.getpid()}"
    kind = f"{context.op_def.name}.target"
    claims = store.content().steps_dir(part.plan_run) / "claims" / context.op_def.name
    remaining, group = list(part.pieces), None
    with reuse.panel_digests(panel), binned.shared():
        while remaining:
            piece = next_piece(remaining, group)
            remaining.remove(piece)
            if part.n_parts > 1 and not claim(claims, piece.claim, part.part):
                continue  # another part claimed it first
            group, target = piece.group, piece.unit[0]
            with reuse.active(store.memo(settings)) as memo:
                result = memo.whole(kind, inputs(target, piece.work),
                                    functools.partial(work, target, piece.work), valid)
            context.log.info("%s; %s; %s", describe(piece.unit, result), memo.summary(),
                             worker)
            results.append(result)
            reused_units = reuse.all_reused([reused_units, memo.units])
    return tuple(results), reused_units


def shared_inputs(sampled_data: pd.DataFrame, data_source: ParquetDataSource,
                   settings: PipelineSettings, plan: object) -> dict:
    """What every piece of a part reads besides its own unit (the panel by its digest,
    computed once per step)."""
    return {"panel": reuse.digest(sampled_data), "registry": data_source.registry(),
            "plan": plan, "seed": settings.base_seed}


def chart(settings: PipelineSettings, store: ArtifactStore, kind: str, inputs: dict,
           draw: Callable[[], dg.MarkdownMetadataValue]) -> dg.MetadataValue:
    """A chart is a pure function of its inputs: drawn once per content and then reused like a
    fit (an unchanged nightly loads it instead of digesting the table and writing the SVG)."""
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
    checks compare it to (every stage ends the same way: ``stage_outputs``)."""

    asset_name: str
    stage: str
    result: RankingResult | SelectionResult | TrainingResult
    config: dict
    upstream_seeds: dict[str, int]
    metadata: dict
    files: dict[str, str]
    extra_checks: tuple[dg.AssetCheckResult, ...] = ()


def stage_outputs(context: dg.OpExecutionContext, outcome: StageOutcome,
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


def fanned_out(name: str, upstream: tuple[str, ...], plan: dg.OpDefinition,
                part: dg.OpDefinition, collect: dg.OpDefinition,
                config_class: type[dg.Config], kinds: set[str],
                description: str) -> dg.AssetsDefinition:
    """A stage as one graph-backed asset: ``plan`` -> one ``part`` step per step slot ->
    ``collect``. Each op gets the upstream assets it names as inputs, plus ``plan`` and
    ``targets`` (a part's ``PartWork``) or ``parts`` (every part's result)."""

    def compose(**assets):
        plan_out, part_works = plan(**_inputs_of(plan, assets))
        parts = part_works.map(lambda work: part(
            **_inputs_of(part, {**assets, "plan": plan_out, "targets": work})))
        return collect(**_inputs_of(collect, {**assets, "plan": plan_out,
                                              "parts": parts.collect()}))

    # Dagster reads a graph's inputs from its signature: the stage's upstream assets
    compose.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(asset, inspect.Parameter.POSITIONAL_OR_KEYWORD) for asset in upstream])
    return dg.graph_asset(name=name, group_name="parity", kinds=kinds,
                          check_specs=stage_specs(name), description=description,
                          config=_config_mapping(config_class, plan.name))(compose)


def _inputs_of(op: dg.OpDefinition, available: dict) -> dict:
    return {name: available[name] for name in op.input_dict}
