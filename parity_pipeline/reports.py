"""Loading runs for ``parity diff`` and ``parity runs``: artifacts by run id, runs from the
Dagster instance (its run records give the order; file modification times never do)."""

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from parity_pipeline.core.diff import RunSide
from parity_pipeline.core.errors import ArtifactIntegrityError, ParityInputError
from parity_pipeline.core.hashing import sha256_json
from parity_pipeline.core.snapshot_store import INDEX_FILES
from parity_pipeline.defs.jobs import PARITY_JOB_NAME
from parity_pipeline.runner import summarize_run


@dataclass(frozen=True)
class RunRow:
    run_id: str
    started: str
    status: str
    failed_checks: tuple[str, ...]


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ArtifactIntegrityError(f"{path} is not valid JSON ({exc}); it was edited or "
                                     "corrupted: restore it or re-run") from exc


def load_run_side(artifacts_root: Path, run_id: str) -> RunSide:
    run_dir = artifacts_root / "runs" / run_id
    metadata_path = run_dir / "metadata.json"
    if not metadata_path.is_file():
        raise ParityInputError(f"run {run_id!r} is unknown here: no {metadata_path}; list runs "
                               "with `parity runs`")
    metadata = _read(metadata_path)
    manifest = _read(run_dir / "manifest.json") if (run_dir / "manifest.json").is_file() else {}
    snapshots = [read_snapshot(artifacts_root, entry)
                 for entry in index_entries_of(artifacts_root, run_id)]
    return RunSide(run_id=run_id, snapshots=snapshots,
                   per_symbol_n={s: v["n"] for s, v in metadata["per_symbol_stats"].items()},
                   library_versions=manifest.get("library_versions", {}),
                   git_commit=(manifest.get("git") or {}).get("commit"),
                   settings=manifest.get("settings", {}))


def index_entries_of(artifacts_root: Path, run_id: str) -> list[dict]:
    """The run's entries in the three global snapshot indexes (stage order: TR, FS, TRAINING)."""
    entries = []
    for name in sorted(INDEX_FILES.values()):
        index_path = artifacts_root / "globals" / name
        if index_path.is_file():
            entries += [e for e in _read(index_path)["entries"] if e["run_id"] == run_id]
    return entries


def read_snapshot(artifacts_root: Path, entry: dict) -> dict:
    """A snapshot file, checked against the hash its index entry recorded when it was written."""
    path = artifacts_root / entry["path"]
    if not path.is_file():
        raise ArtifactIntegrityError(f"snapshot {path} listed in the index is missing; restore "
                                     "it or re-run")
    snapshot = _read(path)
    expected = entry.get("snapshot_sha256")
    if expected is not None and sha256_json(snapshot) != expected:
        raise ArtifactIntegrityError(f"snapshot {path} was edited after it was written (its hash "
                                     f"differs from the index's {expected[:12]}…); restore it "
                                     "or re-run, never edit snapshots")
    return snapshot


def _parity_runs(instance: dg.DagsterInstance, artifacts_root: Path, limit: int):
    """Runs of the parity job (CLI, schedule) and any other run that made parity artifacts
    (the UI's *Materialize all* runs an implicit asset job), newest first."""
    for run in instance.get_runs(limit=limit):
        if run.job_name == PARITY_JOB_NAME or (artifacts_root / "runs" / run.run_id).is_dir():
            yield run


def _has_snapshots(artifacts_root: Path, run_id: str) -> bool:
    return (artifacts_root / "runs" / run_id / "metadata.json").is_file()


def recent_runs(instance: dg.DagsterInstance, artifacts_root: Path, limit: int = 20
                ) -> list[RunRow]:
    rows = []
    for run in _parity_runs(instance, artifacts_root, limit):
        started = instance.get_run_stats(run.run_id).start_time
        outcome = summarize_run(instance, run.run_id)
        rows.append(RunRow(
            run_id=run.run_id, status=run.status.value,
            started=_iso(started) if started else "-",
            failed_checks=tuple(f"{c.asset}:{c.check}[{c.severity}]" for c in outcome.checks
                                if not c.passed)))
    return rows


def runs_with_artifacts(instance: dg.DagsterInstance, artifacts_root: Path,
                        limit: int = 50) -> list[str]:
    """Run ids with stored artifacts, newest first (no per-run check queries)."""
    return [run.run_id for run in _parity_runs(instance, artifacts_root, limit)
            if _has_snapshots(artifacts_root, run.run_id)]


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="seconds")


def last_two_runs(instance: dg.DagsterInstance, artifacts_root: Path) -> tuple[str, str]:
    usable = runs_with_artifacts(instance, artifacts_root)
    if len(usable) < 2:
        raise ParityInputError("parity diff needs two runs with artifacts; found "
                               f"{len(usable)} (run `parity run` twice or pass RUN_A RUN_B)")
    return usable[1], usable[0]


@dataclass(frozen=True)
class VerifyReport:
    run_id: str
    artifacts: int
    model_files: int
    snapshots: int


def verify_run(artifacts_root: Path, run_id: str) -> VerifyReport:
    """Re-hash everything a run stored; the first mismatch raises ArtifactIntegrityError."""
    from parity_pipeline.core.artifact import MANIFEST_FILE, read_artifact
    from parity_pipeline.core.snapshot_store import verify_model_outputs
    from parity_pipeline.resources.io_manager import payload_types

    run_dir = artifacts_root / "runs" / run_id
    if not run_dir.is_dir():
        raise ParityInputError(f"run {run_id!r} is unknown here: no {run_dir}; list runs with "
                               "`parity runs`")
    payloads = {folder.name: read_artifact(folder, payload_types())
                for folder in sorted(run_dir.iterdir()) if (folder / MANIFEST_FILE).is_file()}
    models = getattr(payloads.get("trained_models"), "models", ())
    for model in models:
        verify_model_outputs(run_dir / "trained_models", model.model_path, model.model_sha256,
                             model.predictions_path, model.predictions_sha256)
    entries = index_entries_of(artifacts_root, run_id)
    for entry in entries:
        read_snapshot(artifacts_root, entry)
    return VerifyReport(run_id, len(payloads), len(models), len(entries))
