"""Stored artifacts: one logical hash, written with the value, verified on every load.

An ``Artifact`` pairs a stage's output (a table or a result dataclass) with its logical sha256,
the identity keys of the unit that made it and the files it produced (models, predictions,
snapshots, tables for people), each already an object of the content store (``core.store.content``).
The hash is computed once, here, by the rule in ``hashing``; the asset reports it as the Dagster
``DataVersion`` and the IO manager stores it, so the UI, the ledger and the files agree.

What one materialization produced is recorded in a **materialization manifest**, itself an
object (canonical JSON)::

    {"schema": "parity.materialization/v1", "asset": ..., "sha256": <payload logical hash>,
     "kind": "table" | "json", "type": <payload type>, "payload": <object name>,
     "identity": {...}, "scope": {...}, "files": {<path in the run view>: <object name>}}

The asset's Dagster metadata records the manifest's object name (``manifest``); downstream
assets load through it, from whichever run made it.
"""

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from pydantic import TypeAdapter, ValidationError

from parity_pipeline.core.errors import ArtifactIntegrityError
from parity_pipeline.core.hashing import sha256_json
from parity_pipeline.core.store.content import ContentStore, frame_sha256

MANIFEST_SCHEMA = "parity.materialization/v1"
MANIFEST_VIEW = "artifact.json"  # the manifest's name in the run view, beside the payload


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
    files: Mapping[str, str] = field(default_factory=dict)  # run-view path -> object name
    scope: Mapping[str, Any] = field(default_factory=dict)  # the settings that shaped it


def artifact_sha256(payload: Any) -> str:
    """The logical hash of a payload: table content for frames, canonical JSON otherwise."""
    if isinstance(payload, pd.DataFrame):
        return frame_sha256(payload)
    if dataclasses.is_dataclass(payload):
        return sha256_json(payload)
    raise TypeError(f"cannot store {type(payload).__name__}: use a DataFrame or a dataclass")


def make_artifact(payload: Any, identity: ArtifactIdentity,
                  files: Mapping[str, str] | None = None,
                  scope: Mapping[str, Any] | None = None) -> Artifact:
    return Artifact(payload=payload, sha256=artifact_sha256(payload), identity=identity,
                    files=dict(files or {}), scope=dict(scope or {}))


def write_materialization(store: ContentStore, asset: str, artifact: Artifact
                          ) -> tuple[str, dict[str, Any]]:
    """Store the payload and the manifest naming it; return (manifest object name, manifest).
    The files it lists were stored by the steps that made them."""
    payload = artifact.payload
    if isinstance(payload, pd.DataFrame):
        payload_name = store.put_table(payload, artifact.sha256)
        kind, type_name = "table", "DataFrame"
    else:
        payload_name = store.put_json(payload)
        kind, type_name = "json", type(payload).__name__
    if not payload_name.startswith(artifact.sha256):
        raise ArtifactIntegrityError(f"{asset}: the stored payload {payload_name[:12]}… does not "
                                     f"match its logical hash {artifact.sha256[:12]}…")
    manifest = {"schema": MANIFEST_SCHEMA, "asset": asset, "sha256": artifact.sha256,
                "kind": kind, "type": type_name, "payload": payload_name,
                "identity": dataclasses.asdict(artifact.identity), "scope": dict(artifact.scope),
                "files": {path: artifact.files[path] for path in sorted(artifact.files)}}
    return store.put_json(manifest), manifest


def payload_view_path(asset: str, manifest: Mapping[str, Any]) -> str:
    return f"{asset}/data.{'parquet' if manifest['kind'] == 'table' else 'json'}"


def link_materialization(store: ContentStore, run_id: str, manifest_name: str,
                         manifest: Mapping[str, Any]) -> str:
    """Show a materialization in ``runs/<run_id>/``; returns the payload's view path."""
    asset = manifest["asset"]
    for path, name in manifest["files"].items():
        store.link_view(run_id, path, name)
    payload_path = payload_view_path(asset, manifest)
    store.link_view(run_id, payload_path, manifest["payload"])
    store.link_view(run_id, f"{asset}/{MANIFEST_VIEW}", manifest_name)
    return payload_path


def read_manifest(store: ContentStore, manifest_name: str) -> dict[str, Any]:
    manifest = store.read_json(manifest_name)
    if not isinstance(manifest, dict) or manifest.get("schema") != MANIFEST_SCHEMA:
        raise ArtifactIntegrityError(f"object {manifest_name} is not a materialization manifest "
                                     f"({MANIFEST_SCHEMA})")
    return manifest


def read_payload(store: ContentStore, manifest: Mapping[str, Any], types: Mapping[str, type]):
    """Load a manifest's payload; the object is re-hashed on read, and must be the one named."""
    if not str(manifest["payload"]).startswith(manifest["sha256"]):
        raise ArtifactIntegrityError(f"manifest of {manifest['asset']} names payload "
                                     f"{manifest['payload']} but records sha256 "
                                     f"{manifest['sha256'][:12]}…; re-materialize the asset")
    if manifest["kind"] == "table":
        return store.read_table(manifest["payload"])
    payload_type = types.get(manifest.get("type", ""))
    if payload_type is None:
        raise ArtifactIntegrityError(f"manifest of {manifest['asset']} holds unknown type "
                                     f"{manifest.get('type')}")
    try:
        return TypeAdapter(payload_type).validate_python(store.read_json(manifest["payload"]))
    except ValidationError as exc:
        raise ArtifactIntegrityError(f"payload {manifest['payload']} of {manifest['asset']} does "
                                     f"not hold a {payload_type.__name__} ({exc}); "
                                     "re-materialize the asset") from exc


def referenced_objects(manifest: Mapping[str, Any]) -> list[str]:
    """Every object a materialization references: its payload and its files."""
    return [manifest["payload"], *manifest["files"].values()]
