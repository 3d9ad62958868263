"""Publishing snapshots: each an object of the content store, then the global indexes, locked.

Objects are stored first and the index entry last (inside the index lock), so an index entry
always names a complete snapshot (``object``; ``path`` is where a run's view shows it).
``snapshot_seq`` is assigned under that same lock. Training artifacts are re-hashed from the
store before their snapshot is published: a snapshot never names a file that is missing or
differs (the original ``.pkl`` vs ``.joblib`` failure).
"""

import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import pandas as pd

from parity_pipeline.core.data.registry import FeatureRegistry
from parity_pipeline.core.data.sampling import panel_stats
from parity_pipeline.core.hashing import to_canonical
from parity_pipeline.core.repro.artifact import artifact_sha256
from parity_pipeline.core.repro.snapshots import (
    RunContextInfo,
    SnapshotBundle,
    SnapshotFingerprints,
    TargetRankingSnapshot,
    TrainingSnapshot,
    assign_sequence,
    fingerprints_of,
    index_entry,
    ranking_snapshots,
    selection_snapshots,
    training_snapshots,
)
from parity_pipeline.core.stages.ranking import RankingResult
from parity_pipeline.core.stages.selection import SelectionResult
from parity_pipeline.core.stages.training import TrainingResult
from parity_pipeline.core.store.content import ContentStore, split_name
from parity_pipeline.core.store.home import project_root
from parity_pipeline.core.store.indexes import JsonIndex

INDEX_FILES = {"TARGET_RANKING": "target_ranking_snapshot_index.json",
               "FEATURE_SELECTION": "fs_snapshot_index.json",
               "TRAINING": "training_snapshot_index.json"}
RUN_FIELDS = ("run_id", "timestamp", "snapshot_seq")  # a snapshot's fields that name its run
SNAPSHOT_FILES = {"TARGET_RANKING": "tr_snapshot.json", "FEATURE_SELECTION": "fs_snapshot.json",
                  "TRAINING": "training_snapshot.json"}


def unit_folder(snapshot: Any) -> str:
    parts = [snapshot.stage.lower(), snapshot.target, snapshot.view]
    if snapshot.stage == "TRAINING":
        parts += [snapshot.symbol or "ALL", snapshot.model_family]
    return "/".join(parts)


def read_index_entries(content: ContentStore) -> list[dict]:
    """Every entry of the three global indexes, oldest first within each index."""
    entries = []
    for stage in sorted(INDEX_FILES):
        entries += JsonIndex(content.globals_dir() / INDEX_FILES[stage]).read()
    return entries


@dataclass(frozen=True)
class PublishedSnapshots:
    bundle: SnapshotBundle
    files: dict[str, str]  # what a run view shows: {path: object name}
    records: dict[str, dict]  # per snapshot path: {"object", "snapshot_seq"} (this run's part)


def snapshot_body(snapshot: Any) -> dict[str, Any]:
    """A snapshot without the fields that name its run (run id, time, sequence number): the
    same computation gives the same body, stored once however many runs repeat it."""
    return {key: value for key, value in to_canonical(snapshot).items()
            if key not in RUN_FIELDS}


def build_run_snapshots(content: ContentStore, ctx: RunContextInfo, registry: FeatureRegistry,
                        sampled: pd.DataFrame, ranking: RankingResult,
                        selection: SelectionResult, training: TrainingResult, settings: dict
                        ) -> tuple[PublishedSnapshots, SnapshotFingerprints, str]:
    """The snapshots stage on the three stages' results (the snapshots asset without Dagster):
    every TR, FS and TRAINING snapshot published, then the run manifest naming them and the
    hashes of its inputs. Returns (published, fingerprints, the manifest's object name)."""
    offered = {(item.target, item.view): item.selected for item in selection.selections}
    published = publish_snapshots(
        content, ctx, registry, ranking_snapshots(ctx, ranking, registry), selection,
        training_snapshots(ctx, training, offered),
        {name: digest for model in training.models for name, digest in model.file_sha256.items()})
    inputs = {name: artifact_sha256(value) for name, value in (
        ("sampled_data", sampled), ("ranked_targets", ranking),
        ("selected_features", selection), ("trained_models", training))}
    fingerprints, manifest = run_manifest(content, ctx, settings, published, panel_stats(sampled),
                                          inputs)
    return published, fingerprints, manifest


def publish_snapshots(content: ContentStore, ctx: RunContextInfo, registry: FeatureRegistry,
                      tr: tuple[TargetRankingSnapshot, ...], selection: SelectionResult,
                      training: tuple[TrainingSnapshot, ...],
                      written_bytes: Mapping[str, str]) -> PublishedSnapshots:
    """Store every snapshot's body as an object, then index it (the entry holds the run's
    fields). The run manifest lists each snapshot's object and sequence number.
    ``written_bytes``: {object name: sha256 of its bytes as written} (``TrainedModel.file_sha256``)
    for ``verify_training_artifacts``."""
    files, fs_artifacts = store_selection_tables(content, selection)
    fs = selection_snapshots(ctx, selection, fs_artifacts, registry)
    for snapshot in training:
        verify_training_artifacts(content, snapshot, written_bytes)
    records: dict[str, dict] = {}
    published = {stage: _publish(content, stage, list(snaps), files, records)
                 for stage, snaps in (("TARGET_RANKING", tr), ("FEATURE_SELECTION", fs),
                                      ("TRAINING", training))}
    bundle = SnapshotBundle(run_id=ctx.run_id, target_ranking=tuple(published["TARGET_RANKING"]),
                            feature_selection=tuple(published["FEATURE_SELECTION"]),
                            training=tuple(published["TRAINING"]))
    return PublishedSnapshots(bundle, files, records)


def _publish(content: ContentStore, stage: str, snaps: list, files: dict[str, str],
             records: dict[str, dict]) -> list:
    index = JsonIndex(content.globals_dir() / INDEX_FILES[stage])
    numbered: list = []

    def store_then_index(existing: list[dict]) -> list[dict]:
        numbered.extend(assign_sequence(snaps, existing))
        entries = []
        for snapshot in numbered:
            relative = f"{unit_folder(snapshot)}/{SNAPSHOT_FILES[stage]}"
            files[relative] = content.put_json(snapshot_body(snapshot))
            records[relative] = {"object": files[relative],
                                 "snapshot_seq": snapshot.snapshot_seq}
            entry = index_entry(snapshot, f"runs/{snapshot.run_id}/{relative}")
            entries.append({**entry, "object": files[relative]})
        return entries

    index.append_many(store_then_index)
    return numbered


def store_selection_tables(content: ContentStore, selection: SelectionResult
                           ) -> tuple[dict[str, str], dict]:
    """One importance table per (target, view): ({view path: object}, {unit: {path: sha256}})."""
    files, artifacts = {}, {}
    for item in selection.selections:
        rows = [{"feature": imp.feature, "rank": imp.rank, "consensus": imp.consensus,
                 "selected": imp.selected, **{f"imp_{k}": v for k, v in sorted(
                     imp.per_family.items())}} for imp in item.importances]
        relative = f"feature_selection/{item.target}/{item.view}/importances.parquet"
        files[relative] = content.put_table(pd.DataFrame(rows))
        artifacts[(item.target, item.view)] = {relative: split_name(files[relative])[0]}
    return files, artifacts


def verify_training_artifacts(content: ContentStore, snapshot: TrainingSnapshot,
                              written_bytes: Mapping[str, str]) -> None:
    """Every model and predictions object a TRAINING snapshot names must be in the store,
    intact, before the snapshot is published (never a manifest naming a missing file).

    An object whose file still holds the bytes recorded when it was written is intact: one
    read and a sha256, where its name's logical hash would parse the table (a snapshots step in
    a process that did not write them, 612 models at 50 symbols: the step took 5.1-7.0 s with
    the logical check, 1.9-2.2 s with this one). Anything else gets the full check, which names
    what is wrong."""
    for relative, sha256 in sorted(snapshot.artifacts.items()):
        name = f"{sha256}{PurePosixPath(relative).suffix}"
        recorded = written_bytes.get(name)
        if recorded is None or not content.holds_bytes(name, recorded):
            content.read_bytes(name)


def run_manifest(content: ContentStore, ctx: RunContextInfo, settings: dict,
                 published: PublishedSnapshots, per_symbol_stats: dict, inputs: dict[str, str]
                 ) -> tuple[SnapshotFingerprints, str]:
    """Provenance (Qlib's recorder): config, seed, input hashes, versions, git commit, and this
    run's snapshots (object and sequence number each). Returns the fingerprints (the snapshots
    asset's value, stored once) and the manifest's object name."""
    bundle = published.bundle
    fingerprints = fingerprints_of(bundle)
    name = content.put_json({
        "run_id": ctx.run_id, "timestamp": ctx.timestamp, "settings": settings,
        "train_seed": ctx.base_seed, "data_fingerprint": ctx.data_fingerprint,
        "feature_registry_hash": ctx.feature_registry_hash, "per_symbol_stats": per_symbol_stats,
        "inputs": inputs, "library_versions": ctx.library_versions, "git": git_state(),
        "snapshot_counts": {"TARGET_RANKING": len(bundle.target_ranking),
                            "FEATURE_SELECTION": len(bundle.feature_selection),
                            "TRAINING": len(bundle.training)},
        "snapshots": published.records, "fingerprints": content.put_json(fingerprints)})
    return fingerprints, name


def git_state() -> dict[str, Any]:
    root = project_root()
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                                text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True,
                               text=True, timeout=10, check=True).stdout.strip() != ""
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None, "note": "not a git checkout"}
    return {"commit": commit, "dirty": dirty}
