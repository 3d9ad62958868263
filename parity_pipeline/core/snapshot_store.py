"""Publishing snapshots: per-unit files under the run, then the global indexes, locked.

Files are written first and the index entry last (inside the index lock), so an index entry
always points at a complete snapshot. ``snapshot_seq`` is assigned under that same lock.
Training artifacts are re-hashed from disk before their snapshot is published: a manifest
never names a file that is missing or differs (the original ``.pkl`` vs ``.joblib`` failure).
"""

import dataclasses
import json
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd

from parity_pipeline.core.atomic import atomic_write_bytes, atomic_write_json
from parity_pipeline.core.errors import ArtifactIntegrityError
from parity_pipeline.core.hashing import (
    lightgbm_model_sha256,
    sha256_json,
    table_sha256,
    to_canonical,
)
from parity_pipeline.core.home import project_root
from parity_pipeline.core.index_store import JsonIndex
from parity_pipeline.core.registry import FeatureRegistry
from parity_pipeline.core.selection import SelectionResult
from parity_pipeline.core.snapshots import (
    RunContextInfo,
    SnapshotBundle,
    SnapshotFingerprints,
    TargetRankingSnapshot,
    TrainingSnapshot,
    assign_sequence,
    fingerprints_of,
    index_entry,
    selection_snapshots,
)

INDEX_FILES = {"TARGET_RANKING": "target_ranking_snapshot_index.json",
               "FEATURE_SELECTION": "fs_snapshot_index.json",
               "TRAINING": "training_snapshot_index.json"}
SNAPSHOT_FILES = {"TARGET_RANKING": "tr_snapshot.json", "FEATURE_SELECTION": "fs_snapshot.json",
                  "TRAINING": "training_snapshot.json"}


def unit_folder(snapshot: Any) -> str:
    parts = [snapshot.stage.lower(), snapshot.target, snapshot.view]
    if snapshot.stage == "TRAINING":
        parts += [snapshot.symbol or "ALL", snapshot.model_family]
    return "/".join(parts)


def read_index_entries(artifacts_root: Path) -> list[dict]:
    """Every entry of the three global indexes, oldest first within each index."""
    entries = []
    for stage in sorted(INDEX_FILES):
        entries += JsonIndex(artifacts_root / "globals" / INDEX_FILES[stage]).read()
    return entries


def publish_snapshots(artifacts_root: Path, ctx: RunContextInfo, registry: FeatureRegistry,
                      tr: tuple[TargetRankingSnapshot, ...], selection: SelectionResult,
                      training: tuple[TrainingSnapshot, ...]) -> SnapshotBundle:
    run_dir = artifacts_root / "runs" / ctx.run_id
    fs_artifacts = write_selection_tables(run_dir, selection)
    fs = selection_snapshots(ctx, selection, fs_artifacts, registry)
    for snapshot in training:
        verify_training_artifacts(run_dir / "trained_models", snapshot)
    published = {stage: _publish(artifacts_root, run_dir, stage, list(snaps))
                 for stage, snaps in (("TARGET_RANKING", tr), ("FEATURE_SELECTION", fs),
                                      ("TRAINING", training))}
    return SnapshotBundle(run_id=ctx.run_id, target_ranking=tuple(published["TARGET_RANKING"]),
                          feature_selection=tuple(published["FEATURE_SELECTION"]),
                          training=tuple(published["TRAINING"]))


def _publish(root: Path, run_dir: Path, stage: str, snaps: list) -> list:
    index = JsonIndex(root / "globals" / INDEX_FILES[stage])
    numbered: list = []

    def write_then_index(existing: list[dict]) -> list[dict]:
        numbered.extend(assign_sequence(snaps, existing))
        entries = []
        for snapshot in numbered:
            relative = f"{unit_folder(snapshot)}/{SNAPSHOT_FILES[stage]}"
            atomic_write_json(run_dir / relative, snapshot)
            entries.append(index_entry(snapshot, f"runs/{snapshot.run_id}/{relative}"))
        return entries

    index.append_many(write_then_index)
    return numbered


def write_selection_tables(run_dir: Path, selection: SelectionResult) -> dict:
    """One importance table per (target, view); returns {unit: {relative path: sha256}}."""
    artifacts = {}
    for item in selection.selections:
        rows = [{"feature": imp.feature, "rank": imp.rank, "consensus": imp.consensus,
                 "selected": imp.selected, **{f"imp_{k}": v for k, v in sorted(
                     imp.per_family.items())}} for imp in item.importances]
        table = pd.DataFrame(rows)
        relative = f"feature_selection/{item.target}/{item.view}/importances.parquet"
        atomic_write_bytes(run_dir / relative, table.to_parquet(index=False))
        artifacts[(item.target, item.view)] = {relative: table_sha256(table)}
    return artifacts


def verify_training_artifacts(model_root: Path, snapshot: TrainingSnapshot) -> None:
    model_path, predictions_path = sorted(snapshot.artifacts, key=lambda p: p.endswith(
        ".parquet"))
    verify_model_outputs(model_root, model_path, snapshot.model_artifact_sha256,
                         predictions_path, snapshot.predictions_sha256)


def verify_model_outputs(model_root: Path, model_path: str, model_sha256: str,
                         predictions_path: str, predictions_sha256: str) -> None:
    """A model file and its predictions table against the hashes recorded at training."""
    verify_model_file(model_root / model_path, model_sha256)
    path = model_root / predictions_path
    if not path.is_file():
        raise ArtifactIntegrityError(f"predictions file {path} named by the training manifest "
                                     "is missing; re-run training")
    frame = pd.read_parquet(path)
    if table_sha256(frame, sort_by=["symbol", "ts"]) != predictions_sha256:
        raise ArtifactIntegrityError(f"predictions file {path} does not match its recorded "
                                     "sha256; re-run training")


def verify_model_file(path: Path, expected_sha256: str) -> None:
    """Re-hash a saved model by its format's rule (LightGBM text / canonical JSON)."""
    if not path.is_file():
        raise ArtifactIntegrityError(f"model file {path} named by the training manifest is "
                                     "missing; re-run training")
    text = path.read_text(encoding="utf-8")
    try:
        actual = (lightgbm_model_sha256(text) if path.suffix == ".txt"
                  else sha256_json(json.loads(text)))
    except json.JSONDecodeError as exc:
        raise ArtifactIntegrityError(f"model file {path} is not valid JSON ({exc})") from exc
    if actual != expected_sha256:
        raise ArtifactIntegrityError(f"model file {path} was modified or corrupted: sha256 "
                                     f"{actual[:12]}… differs from the recorded "
                                     f"{expected_sha256[:12]}…; re-run training")


def run_manifest(run_dir: Path, ctx: RunContextInfo, settings: dict,
                 bundle: SnapshotBundle) -> SnapshotFingerprints:
    """Provenance (Qlib's recorder): config, seed, input hashes, versions, git commit."""
    fingerprints = fingerprints_of(bundle)
    atomic_write_json(run_dir / "manifest.json", {
        "run_id": ctx.run_id, "timestamp": ctx.timestamp, "settings": settings,
        "train_seed": ctx.base_seed, "data_fingerprint": ctx.data_fingerprint,
        "feature_registry_hash": ctx.feature_registry_hash,
        "library_versions": ctx.library_versions, "git": git_state(),
        "snapshot_counts": {"TARGET_RANKING": len(bundle.target_ranking),
                            "FEATURE_SELECTION": len(bundle.feature_selection),
                            "TRAINING": len(bundle.training)},
        "fingerprints": to_canonical(dataclasses.asdict(fingerprints))})
    return fingerprints


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
