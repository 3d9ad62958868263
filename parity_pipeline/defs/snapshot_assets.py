"""The ``snapshots`` asset: TR/FS/TRAINING snapshots, the global indexes and the run manifest."""

import datetime as dt

import dagster as dg
import pandas as pd

from parity_pipeline.core.repro import checks as core_checks
from parity_pipeline.core.repro.identity import stage_identity
from parity_pipeline.core.repro.snapshot_index import (
    build_run_snapshots,
    read_index_entries,
)
from parity_pipeline.core.repro.snapshots import (
    index_entry,
    run_context,
)
from parity_pipeline.core.stages.panel import symbol_counts
from parity_pipeline.core.stages.ranking import RankingResult
from parity_pipeline.core.stages.selection import SelectionResult
from parity_pipeline.core.stages.training import TrainingResult
from parity_pipeline.defs.checks import DESCRIPTIONS, OUTPUT_PARITY, TRAIN_SEED_DRIFT, to_result
from parity_pipeline.defs.common import (
    REUSED_UNITS,
    hashed_outputs,
    tag_run,
)
from parity_pipeline.defs.executor import IN_EXECUTOR_PROCESS
from parity_pipeline.defs.gate import gated
from parity_pipeline.resources.data_source import ParquetDataSource
from parity_pipeline.resources.events import materialization
from parity_pipeline.resources.lineage import resolve_upstream
from parity_pipeline.resources.runs import CompleteRuns
from parity_pipeline.resources.settings import ArtifactStore, PipelineSettings


@dg.asset(group_name="parity", kinds={"json"}, op_tags=IN_EXECUTOR_PROCESS, check_specs=[
    dg.AssetCheckSpec(OUTPUT_PARITY, asset="snapshots", description=DESCRIPTIONS[OUTPUT_PARITY]),
    dg.AssetCheckSpec(TRAIN_SEED_DRIFT, asset="snapshots",
                      description=DESCRIPTIONS[TRAIN_SEED_DRIFT])])
def snapshots(context: dg.AssetExecutionContext, sampled_data: pd.DataFrame,
              ranked_targets: RankingResult, selected_features: SelectionResult,
              trained_models: TrainingResult, settings: PipelineSettings,
              data_source: ParquetDataSource, store: ArtifactStore):
    """TR, FS and TRAINING snapshots with fingerprints, plus the three global snapshot indexes."""
    tag_run(context, settings)
    registry = data_source.registry()
    run_id = context.run.run_id
    ctx = run_context(run_id, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), sampled_data,
                      registry, settings.max_rows_per_symbol, settings.base_seed,
                      reused_units(context.instance, run_id))
    content = store.content()
    # history: index entries of complete runs only (a killed or failed run's are not real)
    complete = CompleteRuns(context.instance)
    history = [entry for entry in read_index_entries(content) if entry["run_id"] in complete]
    published, fingerprints, manifest = build_run_snapshots(
        content, ctx, registry, sampled_data, ranked_targets, selected_features, trained_models,
        settings.model_dump())
    bundle, files = published.bundle, {**published.files, "manifest.json": manifest}
    context.log.info("snapshots: %d TR, %d FS, %d TRAINING", len(bundle.target_ranking),
                     len(bundle.feature_selection), len(bundle.training))
    checks = snapshot_checks(bundle, history, settings.base_seed)
    identity = stage_identity("SNAPSHOTS", sampled_data, registry, settings.max_rows_per_symbol,
                              settings.base_seed, {})
    yield from gated(context, "snapshots", hashed_outputs(
        fingerprints, identity, len(sampled_data), {
        "tr_snapshots": len(bundle.target_ranking), "fs_snapshots": len(bundle.feature_selection),
        "training_snapshots": len(bundle.training),
        "globals": dg.MetadataValue.path(str(content.globals_dir()))},
        symbol_counts(sampled_data), settings.max_rows_per_symbol, checks,
        settings.scope(data_source.path(), per_target=True), files))


def snapshot_checks(bundle, history: list[dict], base_seed: int) -> list[dg.AssetCheckResult]:
    """Output parity against earlier runs, and one train_seed across every stage's snapshots."""
    current = [index_entry(s, "") for s in (*bundle.target_ranking, *bundle.feature_selection,
                                             *bundle.training)]
    return [to_result("snapshots", OUTPUT_PARITY, core_checks.output_parity(current, history)),
            to_result("snapshots", TRAIN_SEED_DRIFT,
                      core_checks.snapshots_train_seed_drift(current, history, base_seed))]


STAGE_ASSETS = ("ranked_targets", "selected_features", "trained_models")


def reused_units(instance: dg.DagsterInstance, run_id: str) -> frozenset[str]:
    """The units the stage materializations this run reads reported as reused."""
    labels: set[str] = set()
    for asset in STAGE_ASSETS:
        record = resolve_upstream(instance, dg.AssetKey(asset), run_id)
        value = materialization(record).metadata.get(REUSED_UNITS) if record else None
        labels.update(getattr(value, "value", None) or [])
    return frozenset(labels)
