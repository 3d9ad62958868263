"""TR, FS and TRAINING snapshots (DESIGN §5): every field filled from a real value.

Snapshots are built from the three stage results plus the run's context. ``snapshot_seq`` is
assigned later, under the global index's lock (``assign_sequence``), as 1 + the number of
earlier snapshots with the same ``comparable_key``. Keys come from ``identity.UnitIdentity``.
"""

import dataclasses
from dataclasses import dataclass
from typing import Any

import pandas as pd

from parity_pipeline.core.data.registry import FeatureRegistry
from parity_pipeline.core.data.sampling import panel_fingerprint
from parity_pipeline.core.hashing import sha256_json
from parity_pipeline.core.repro import identity
from parity_pipeline.core.repro.identity import UnitIdentity, signature, universe_signature
from parity_pipeline.core.stages.ranking import RankingConfig, RankingResult, ViewScore
from parity_pipeline.core.stages.selection import SelectionConfig, SelectionResult, TargetSelection
from parity_pipeline.core.stages.training import TrainedModel, TrainingResult
from parity_pipeline.core.store.reuse import unit_label

COMMON_SOURCES = {
    "comparable_key": "sha256 of stage, target, view, symbol, model family, universe_sig, "
                      "max_rows_per_symbol, split config, feature registry hash, "
                      "hyperparameters signature, label definition",
    "replicate_key": "sha256 of comparable_key + data_fingerprint + library versions",
    "strict_key": "sha256 of replicate_key + train_seed",
    "data_fingerprint": "logical sha256 of the sampled panel (all rows and columns, sorted by "
                        "symbol, ts)",
    "split_signature": "sha256 of the fold/holdout boundaries (timestamps, row counts) and purge",
}
FS_SOURCES = {
    **COMMON_SOURCES,
    "feature_fingerprint_input": "sha256 of the sorted candidate feature names (after the "
                                 "leak scan)",
    "feature_fingerprint_output": "sha256 of the selected top-K feature names in rank order",
    "metrics_sha256": "sha256 of the importance table (every family, consensus, rank) and "
                      "stability statistics",
    "artifacts_manifest_sha256": "sha256 of {file: logical sha256} of the files this unit "
                                 "wrote (importances table, snapshot inputs)",
}
TRAINING_SOURCES = {
    **COMMON_SOURCES,
    "model_artifact_sha256": "sha256 of the saved model (LightGBM text without config-echo "
                             "lines; scikit-learn canonical JSON)",
    "predictions_sha256": "logical sha256 of validation predictions keyed by (symbol, ts)",
    "metrics_sha256": "sha256 of the out-of-sample metrics (canonical JSON)",
    "feature_fingerprint_input": "sha256 of the sorted features the model was offered",
    "feature_fingerprint_output": "sha256 of the features in the model, in model column order",
    "artifacts_manifest_sha256": "sha256 of {model file, predictions file: sha256}",
}
TR_SOURCES = {**COMMON_SOURCES,
              "metrics_sha256": "sha256 of the out-of-fold score record (metric, mean, stderr, "
                                "t-stat, skill, n)"}


@dataclass(frozen=True)
class RunContextInfo:
    run_id: str
    timestamp: str
    universe: tuple[str, ...]
    max_rows_per_symbol: int
    feature_registry_hash: str
    label_definitions: dict[str, str]  # target -> sha256 of its registry declaration
    data_fingerprint: str
    library_versions: dict[str, str]
    base_seed: int
    n_panel_rows: int
    # units whose every fit was reused from an earlier run (core.store.reuse.unit_label)
    reused_units: frozenset[str] = frozenset()


def run_context(run_id: str, timestamp: str, panel: pd.DataFrame, registry: FeatureRegistry,
                max_rows_per_symbol: int, base_seed: int,
                reused_units: frozenset[str] = frozenset()) -> RunContextInfo:
    """What every snapshot of a run shares, read from the panel the run's stages received."""
    return RunContextInfo(
        run_id=run_id, timestamp=timestamp, universe=tuple(sorted(panel["symbol"].unique())),
        max_rows_per_symbol=max_rows_per_symbol, feature_registry_hash=registry.content_hash,
        label_definitions={t.name: sha256_json(t) for t in registry.targets},
        data_fingerprint=panel_fingerprint(panel), library_versions=identity.library_versions(),
        base_seed=base_seed, n_panel_rows=len(panel), reused_units=reused_units)


@dataclass(frozen=True)
class ComparisonGroup:
    n_effective: int
    train_seed: int
    hyperparameters_signature: str
    feature_registry_hash: str
    split_signature: str
    universe_sig: str
    max_rows_per_symbol: int
    library_versions: dict[str, str]
    comparable_key: str


@dataclass(frozen=True)
class SnapshotCommon:
    run_id: str
    timestamp: str
    stage: str
    view: str
    target: str
    symbol: str | None
    snapshot_seq: int
    fingerprint_sources: dict[str, str]
    comparison_group: ComparisonGroup
    comparable_key: str
    replicate_key: str
    strict_key: str
    data_fingerprint: str
    per_symbol_counts: dict[str, int]
    n_panel_rows: int  # rows of the shared panel this unit started from
    row_filter: str  # which panel rows were dropped before the model (n_effective is the rest)
    reused: bool  # every fit of this unit was reused from an earlier run, none recomputed


ROW_FILTERS = {
    "TARGET_RANKING": "rows with a null target dropped; the first walk-forward block only "
                      "trains, so n_effective counts rows scored out of fold",
    "FEATURE_SELECTION": "rows with a null target dropped; n_effective counts the rows of the "
                         "last purged walk-forward training window the families were fitted on",
    "TRAINING": "rows with a null target dropped; n_effective = training + validation rows of "
                "the chronological holdout (rows inside the purge gap never reach the model)",
}


@dataclass(frozen=True)
class TargetRankingSnapshot(SnapshotCommon):
    task: str
    metric: str
    score: float
    stderr: float
    t_stat: float
    skill: float
    route: str
    eligible: bool
    reasons: tuple[str, ...]
    metrics_sha256: str


@dataclass(frozen=True)
class FeatureSelectionSnapshot(SnapshotCommon):
    task: str
    feature_fingerprint_input: str
    feature_fingerprint_output: str
    metrics_sha256: str
    artifacts_manifest_sha256: str
    n_candidates: int
    n_selected: int
    selected_features: tuple[str, ...]
    stability: dict[str, float]


@dataclass(frozen=True)
class TrainingSnapshot(SnapshotCommon):
    task: str
    model_family: str
    model_artifact_sha256: str
    predictions_sha256: str
    feature_fingerprint_input: str
    feature_fingerprint_output: str
    hyperparameters_signature: str
    metrics_sha256: str
    artifacts_manifest_sha256: str
    metrics: dict[str, float]
    artifacts: dict[str, str]  # relative path -> sha256


@dataclass(frozen=True)
class SnapshotBundle:
    run_id: str
    target_ranking: tuple[TargetRankingSnapshot, ...]
    feature_selection: tuple[FeatureSelectionSnapshot, ...]
    training: tuple[TrainingSnapshot, ...]


# Fields that change with every run by design; fingerprints and keys exclude them.
# snapshot_sha256 hashes the whole file, run id and timestamp included: it verifies the file,
# it is not a fingerprint of what the run computed
# reused: whether a run recomputed a unit or reused it, never what the unit holds
RUN_VARYING_FIELDS = ("run_id", "timestamp", "snapshot_seq", "path", "snapshot_sha256", "reused")


@dataclass(frozen=True)
class SnapshotFingerprints:
    """What must be byte-identical between two runs with the same inputs: every snapshot's
    fingerprints and keys, without the run-varying fields. It is the ``snapshots`` asset's value
    (so its DataVersion is equal for equal runs)."""

    entries: tuple[dict[str, Any], ...]


def fingerprints_of(bundle: SnapshotBundle) -> SnapshotFingerprints:
    rows = []
    for snapshot in (*bundle.target_ranking, *bundle.feature_selection, *bundle.training):
        entry = index_entry(snapshot, "")
        rows.append({k: v for k, v in entry.items() if k not in RUN_VARYING_FIELDS})
    rows.sort(key=lambda row: (row["stage"], row["target"], row["view"], row["symbol"] or "",
                               row.get("model_family", "")))
    return SnapshotFingerprints(entries=tuple(rows))


def _common(ctx: RunContextInfo, unit: UnitIdentity, n_effective: int, split_sig: str,
            counts: dict[str, int], sources: dict[str, str]) -> dict[str, Any]:
    group = ComparisonGroup(
        n_effective=n_effective, train_seed=unit.train_seed,
        hyperparameters_signature=unit.hyperparameters_signature,
        feature_registry_hash=ctx.feature_registry_hash, split_signature=split_sig,
        universe_sig=unit.universe_sig, max_rows_per_symbol=ctx.max_rows_per_symbol,
        library_versions=dict(ctx.library_versions), comparable_key=unit.comparable_key)
    return {"run_id": ctx.run_id, "timestamp": ctx.timestamp, "stage": unit.stage,
            "view": unit.view, "target": unit.target, "symbol": unit.symbol or None,
            "snapshot_seq": 0, "fingerprint_sources": sources, "comparison_group": group,
            "data_fingerprint": ctx.data_fingerprint, "per_symbol_counts": dict(counts),
            "n_panel_rows": ctx.n_panel_rows, "row_filter": ROW_FILTERS[unit.stage],
            "reused": unit_label(unit.stage, unit.target, unit.view, unit.symbol,
                                 unit.model_family) in ctx.reused_units,
            **unit.keys()}


def unit_identity(ctx: RunContextInfo, stage: str, target: str, view: str, symbol: str,
                  family: str, split_config: dict, hyperparameters_signature: str) -> UnitIdentity:
    return UnitIdentity(
        stage=stage, target=target, view=view, symbol=symbol, model_family=family,
        universe_sig=universe_signature(ctx.universe),
        max_rows_per_symbol=ctx.max_rows_per_symbol, split_config_signature=signature(split_config),
        feature_registry_hash=ctx.feature_registry_hash,
        hyperparameters_signature=hyperparameters_signature,
        label_definition=ctx.label_definitions.get(target, ""),
        data_fingerprint=ctx.data_fingerprint,
        library_versions_signature=signature(ctx.library_versions), train_seed=ctx.base_seed)


def ranking_snapshots(ctx: RunContextInfo, ranking: RankingResult,
                      registry: FeatureRegistry) -> tuple[TargetRankingSnapshot, ...]:
    config = RankingConfig(**ranking.config)
    routes = {route.target: route.route for route in ranking.routes}
    model_params = {k: v for k, v in ranking.config.items()
                    if k in ("n_estimators", "learning_rate", "num_leaves", "min_child_samples",
                             "ss_n_estimators")}
    return tuple(_ranking_snapshot(ctx, ranking, score, routes[score.target], config,
                                   registry, signature(model_params))
                 for score in ranking.scores)


def _ranking_snapshot(ctx, ranking: RankingResult, score: ViewScore, route: str,
                      config: RankingConfig, registry: FeatureRegistry, hp_sig: str):
    spec = registry.target(score.target)
    folds = config.n_folds if score.view == "CROSS_SECTIONAL" else config.ss_n_folds
    split_config = {"n_folds": folds, "purge_minutes": spec.horizon_minutes
                    + config.purge_buffer_minutes, "purge_bars": spec.horizon_bars,
                    "scheme": "purged_walk_forward"}
    unit = unit_identity(ctx, "TARGET_RANKING", score.target, score.view, "", "lightgbm",
                         split_config, hp_sig)
    metrics = {k: getattr(score, k) for k in ("metric", "mean", "stderr", "t_stat", "skill",
                                              "n_values", "n_effective")}
    return TargetRankingSnapshot(
        **_common(ctx, unit, score.n_effective, score.split_signature,
                  ranking.per_symbol_counts, TR_SOURCES),
        task=score.task, metric=score.metric, score=score.mean, stderr=score.stderr,
        t_stat=score.t_stat, skill=score.skill, route=route, eligible=score.eligible,
        reasons=score.reasons, metrics_sha256=sha256_json(metrics))


def selection_snapshots(ctx: RunContextInfo, selection: SelectionResult,
                        artifacts: dict[tuple[str, str], dict[str, str]],
                        registry: FeatureRegistry) -> tuple[FeatureSelectionSnapshot, ...]:
    config = SelectionConfig(**_config_args(SelectionConfig, selection.config))
    return tuple(_selection_snapshot(ctx, item, config, registry,
                                     artifacts[(item.target, item.view)])
                 for item in selection.selections)


def _selection_snapshot(ctx, item: TargetSelection, config: SelectionConfig,
                        registry: FeatureRegistry, artifacts: dict[str, str]):
    spec = registry.target(item.target)
    split_config = {"n_folds": config.n_folds, "purge_minutes": spec.horizon_minutes
                    + config.purge_buffer_minutes, "purge_bars": spec.horizon_bars,
                    "n_resamples": config.n_resamples}
    unit = unit_identity(ctx, "FEATURE_SELECTION", item.target, item.view, "", "consensus",
                         split_config, signature(item.hyperparameters))
    metrics = {"importances": item.importances, "stability": item.stability}
    return FeatureSelectionSnapshot(
        **_common(ctx, unit, item.n_effective, item.split_signature, item.per_symbol_counts,
                  FS_SOURCES),
        task=item.task, feature_fingerprint_input=sha256_json(sorted(item.candidates)),
        feature_fingerprint_output=sha256_json(list(item.selected)),
        metrics_sha256=sha256_json(metrics), artifacts_manifest_sha256=sha256_json(artifacts),
        n_candidates=len(item.candidates), n_selected=len(item.selected),
        selected_features=tuple(item.selected),
        stability={k: v for k, v in dataclasses.asdict(item.stability).items()})


def training_snapshots(ctx: RunContextInfo, training: TrainingResult,
                       candidates: dict[tuple[str, str], tuple[str, ...]]
                       ) -> tuple[TrainingSnapshot, ...]:
    config = training.config
    return tuple(_training_snapshot(ctx, model, config, candidates[(model.target, model.view)])
                 for model in training.models)


def _training_snapshot(ctx, model: TrainedModel, config: dict, offered: tuple[str, ...]):
    split_config = {"valid_fraction": config.get("valid_fraction"),
                    "purge_buffer_minutes": config.get("purge_buffer_minutes"),
                    "purge_bars": model.split.get("purge_bars"),
                    "scheme": "chronological_purged_holdout"}
    unit = unit_identity(ctx, "TRAINING", model.target, model.view, model.symbol or "",
                         model.family, split_config, model.hyperparameters_signature)
    artifacts = {model.model_path: model.model_sha256,
                 model.predictions_path: model.predictions_sha256}
    return TrainingSnapshot(
        **_common(ctx, unit, model.n_effective, model.split_signature, model.per_symbol_counts,
                  TRAINING_SOURCES),
        task=model.task, model_family=model.family, model_artifact_sha256=model.model_sha256,
        predictions_sha256=model.predictions_sha256,
        feature_fingerprint_input=sha256_json(sorted(offered)),
        feature_fingerprint_output=sha256_json(list(model.features)),
        hyperparameters_signature=model.hyperparameters_signature,
        metrics_sha256=model.metrics_sha256, artifacts_manifest_sha256=sha256_json(artifacts),
        metrics=dict(model.metrics), artifacts=artifacts)


def _config_args(cls: type, config: dict) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    args = {k: v for k, v in config.items() if k in names}
    if "family_weights" in args and isinstance(args["family_weights"], list | dict):
        items = args["family_weights"].items() if isinstance(args["family_weights"], dict) \
            else args["family_weights"]
        args["family_weights"] = tuple(tuple(pair) for pair in items)
    return args


def index_entry(snapshot: SnapshotCommon, path: str) -> dict[str, Any]:
    """The compact record kept in a global index (the full snapshot lives at ``path``)."""
    fields = ("run_id", "timestamp", "stage", "target", "view", "symbol", "snapshot_seq",
              "comparable_key", "replicate_key", "strict_key", "data_fingerprint")
    extra = ("model_family", "model_artifact_sha256", "predictions_sha256", "metrics_sha256",
             "feature_fingerprint_input", "feature_fingerprint_output", "route", "skill")
    entry = {name: getattr(snapshot, name) for name in fields}
    entry.update({name: getattr(snapshot, name) for name in extra if hasattr(snapshot, name)})
    # the hash of the snapshot file itself: `parity verify` / `parity diff` refuse an edited one
    entry.update({"n_effective": snapshot.comparison_group.n_effective,
                  "train_seed": snapshot.comparison_group.train_seed, "path": path,
                  "snapshot_sha256": sha256_json(snapshot)})
    return entry


def assign_sequence(snapshots: list, existing: list[dict[str, Any]]) -> list:
    """Number each snapshot within its comparison group, after what the index already holds."""
    counts: dict[str, int] = {}
    for entry in existing:
        counts[entry["comparable_key"]] = counts.get(entry["comparable_key"], 0) + 1
    numbered = []
    for snapshot in snapshots:
        counts[snapshot.comparable_key] = counts.get(snapshot.comparable_key, 0) + 1
        numbered.append(dataclasses.replace(snapshot, snapshot_seq=counts[snapshot.comparable_key]))
    return numbered


def payload_types() -> dict[str, type]:
    """The only types an artifact's manifest may name: loading never imports a class by an
    arbitrary name."""
    return {cls.__name__: cls for cls in
            (RankingResult, SelectionResult, TrainingResult, SnapshotFingerprints)}
