"""Stored artifacts: one logical hash, written with the value, verified on every load.

An ``Artifact`` pairs a stage's output (a table or a result dataclass) with its logical sha256
and the identity keys of the unit that made it. The hash is computed once, here, by the rule in
``hashing``; the asset reports it as the Dagster ``DataVersion`` and the IO manager stores and
verifies it, so the UI, the ledger and the files can never disagree on what a version is.

Storage per artifact folder: ``data.parquet`` (tables) or ``data.json`` (canonical JSON of a
result dataclass with its type name), plus ``artifact.json`` (sha256, kind, type, identity).
"""

import dataclasses
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import TypeAdapter, ValidationError

from parity_pipeline.core.atomic import atomic_write_bytes, atomic_write_json
from parity_pipeline.core.errors import ArtifactIntegrityError
from parity_pipeline.core.hashing import canonical_json, sha256_json, table_sha256

TABLE_FILE, JSON_FILE, MANIFEST_FILE = "data.parquet", "data.json", "artifact.json"


@dataclass(frozen=True)
class ArtifactIdentity:
    stage: str
    comparable_key: str
    replicate_key: str
    strict_key: str
    n_effective: int
    train_seed: int
    per_symbol_counts: dict[str, int]


@dataclass(frozen=True)
class Artifact:
    payload: Any
    sha256: str
    identity: ArtifactIdentity


def artifact_sha256(payload: Any) -> str:
    """The logical hash of a payload: table content for frames, canonical JSON otherwise."""
    if isinstance(payload, pd.DataFrame):
        keys = [c for c in ("symbol", "ts") if c in payload.columns]
        return table_sha256(payload, sort_by=keys or None)
    if dataclasses.is_dataclass(payload):
        return sha256_json(payload)
    raise TypeError(f"cannot store {type(payload).__name__}: use a DataFrame or a dataclass")


def make_artifact(payload: Any, identity: ArtifactIdentity) -> Artifact:
    return Artifact(payload=payload, sha256=artifact_sha256(payload), identity=identity)


def write_artifact(folder: Path, artifact: Artifact) -> Path:
    """Write payload then manifest (the manifest last: a folder without it is incomplete)."""
    payload = artifact.payload
    if isinstance(payload, pd.DataFrame):
        data_path = folder / TABLE_FILE
        atomic_write_bytes(data_path, _parquet_bytes(payload))
        kind, type_name = "table", "DataFrame"
    else:
        data_path = folder / JSON_FILE
        type_name = type(payload).__name__
        atomic_write_bytes(data_path, canonical_json(payload).encode("utf-8"))
        kind = "json"
    atomic_write_json(folder / MANIFEST_FILE, {
        "sha256": artifact.sha256, "kind": kind, "type": type_name,
        "identity": artifact.identity, "bytes": data_path.stat().st_size})
    return data_path


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, engine="pyarrow")
    return buffer.getvalue()


def read_manifest(folder: Path) -> dict[str, Any]:
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise ArtifactIntegrityError(f"artifact {folder} has no {MANIFEST_FILE}: it was never "
                                     "completed; re-materialize the asset")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ArtifactIntegrityError(f"{path} is not valid JSON ({exc}); re-materialize the "
                                     "asset") from exc


def read_artifact(folder: Path, types: Mapping[str, type], expected_sha256: str | None = None):
    """Load a payload and verify its logical hash; raise ArtifactIntegrityError on mismatch."""
    manifest = read_manifest(folder)
    recorded = manifest["sha256"]
    if expected_sha256 is not None and expected_sha256 != recorded:
        raise ArtifactIntegrityError(f"artifact {folder} records sha256 {recorded[:12]}… but the "
                                     f"materialization expects {expected_sha256[:12]}…")
    payload = _load_payload(folder, manifest, types)
    actual = artifact_sha256(payload)
    if actual != recorded:
        raise ArtifactIntegrityError(
            f"artifact {folder} was modified or corrupted: content hash {actual[:12]}… differs "
            f"from the recorded {recorded[:12]}…; re-materialize it, never edit artifacts")
    return payload


def _load_payload(folder: Path, manifest: Mapping[str, Any], types: Mapping[str, type]):
    if manifest.get("kind") == "table":
        try:
            return pd.read_parquet(folder / TABLE_FILE, engine="pyarrow")
        except (OSError, ValueError) as exc:
            raise ArtifactIntegrityError(f"{folder / TABLE_FILE} is unreadable ({exc}); "
                                         "re-materialize the asset") from exc
    payload_type = types.get(manifest.get("type", ""))
    if payload_type is None:
        raise ArtifactIntegrityError(f"artifact {folder} holds unknown type {manifest.get('type')}")
    try:
        content = json.loads((folder / JSON_FILE).read_text(encoding="utf-8"))
        return TypeAdapter(payload_type).validate_python(content)
    except (OSError, json.JSONDecodeError, ValidationError) as exc:
        raise ArtifactIntegrityError(f"{folder / JSON_FILE} is unreadable or was edited ({exc}); "
                                     "re-materialize the asset") from exc
