"""What ``parity runs``, ``parity diff`` and ``parity verify`` read: runs from the Dagster
instance, what they produced from the content store.

A run stands for the materializations it made plus those of the runs it re-executes
(``resources.lineage``), so a single-asset run, a re-execution and a partial run are all runs
here. Everything read is re-hashed against its object name first: an edited or corrupted file
is refused (exit 3), never reported as a difference.
"""

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath

import dagster as dg

from parity_pipeline.core.errors import ArtifactIntegrityError, ParityInputError
from parity_pipeline.core.repro.artifact import (
    MANIFEST_VIEW,
    payload_view_path,
    read_manifest,
    referenced_objects,
)
from parity_pipeline.core.repro.diff import RunSide
from parity_pipeline.core.repro.snapshot_index import SNAPSHOT_FILES
from parity_pipeline.core.store.content import (
    ContentStore,
    content_sha256_or_unreadable,
    split_name,
)
from parity_pipeline.defs.jobs import PARITY_JOB_NAME
from parity_pipeline.resources.events import materialization
from parity_pipeline.resources.lineage import (
    effective_materializations,
    manifest_of,
    run_materializations,
)
from parity_pipeline.resources.runs import is_complete
from parity_pipeline.runner import summarize_run

ASSETS = ("sampled_data", "ranked_targets", "selected_features", "trained_models", "snapshots")
ASSET_JOB_PREFIX = "__ASSET_JOB"  # the UI's Materialize and `dagster asset materialize`
STEP_SELECTION_TAG = "dagster/step_selection"  # set by Dagster on a run of selected steps


@dataclass(frozen=True)
class RunRow:
    run_id: str
    started: str
    status: str
    scope: str
    produced: tuple[str, ...]
    failed_checks: tuple[str, ...]
    reason: str  # why a failed run failed (first line), else ""


@dataclass(frozen=True)
class RunContents:
    """What one run stands for: {asset: (run that made it, manifest name, manifest)}."""

    run_id: str
    status: str
    complete: bool  # resources.runs.is_complete: its outputs may be read as history
    manifests: dict[str, tuple[str, str, dict]]

    def produced(self) -> list[str]:
        return [asset for asset in ASSETS if asset in self.manifests]


def run_contents(instance: dg.DagsterInstance, content: ContentStore, run_id: str
                 ) -> RunContents:
    run = instance.get_run_by_id(run_id)
    if run is None:
        raise ParityInputError(f"run {run_id!r} is unknown to the Dagster instance "
                               f"{instance.root_directory}; list runs with `parity runs`")
    manifests = {}
    for asset, (maker, record) in effective_materializations(instance, run_id).items():
        name = manifest_of(record)
        manifests[asset] = (maker, name, read_manifest(content, name))
    return RunContents(run_id, run.status.value, is_complete(run), manifests)


def scope_of(run: dg.DagsterRun) -> str:
    """How much of the graph a run covers, in words."""
    parts = [run.tags.get("parity/kind", "full")]
    if run.tags.get("parity/kind") == "partial":
        parts[0] = f"partial: targets {run.tags.get('parity/targets', '?')}"
    if run.asset_selection and len(run.asset_selection) < len(ASSETS):
        parts.append("assets " + ",".join(sorted(k.to_user_string()
                                                 for k in run.asset_selection)))
    if STEP_SELECTION_TAG in run.tags:
        parts.append(f"steps {run.tags[STEP_SELECTION_TAG]}")
    if run.parent_run_id:
        parts.append(f"re-executes {run.parent_run_id[:8]}")
    return "; ".join(parts)


# --- parity runs --------------------------------------------------------------------------------

def _parity_runs(instance: dg.DagsterInstance, limit: int):
    """Runs of the parity job (CLI, schedule) and asset runs (UI, `dagster asset materialize`)
    that made or tried to make parity assets, newest first."""
    for run in instance.get_runs(limit=limit):
        if run.job_name == PARITY_JOB_NAME or run.job_name.startswith(ASSET_JOB_PREFIX):
            yield run


def recent_runs(instance: dg.DagsterInstance, limit: int = 20) -> list[RunRow]:
    rows = []
    for run in _parity_runs(instance, limit):
        started = instance.get_run_stats(run.run_id).start_time
        outcome = summarize_run(instance, run.run_id)
        made = run_materializations(instance, run.run_id)
        rows.append(RunRow(
            run_id=run.run_id, status=run.status.value,
            started=_iso(started) if started else "-", scope=scope_of(run),
            produced=tuple(asset for asset in ASSETS if asset in made),
            failed_checks=tuple(f"{c.asset}:{c.check}[{c.severity}]" for c in outcome.checks
                                if not c.passed),
            reason=outcome.failure_message.splitlines()[0] if outcome.failure_message else ""))
    return rows


def runs_with_snapshots(instance: dg.DagsterInstance, limit: int = 100) -> list[str]:
    """Complete runs (successful, or failed only by their ERROR checks) that stand for a
    snapshots materialization, newest first: what `verify` and `diff` take by default."""
    return [run.run_id for run in _parity_runs(instance, limit)
            if is_complete(run) and "snapshots" in effective_materializations(instance,
                                                                               run.run_id)]


def _iso(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp, dt.UTC).isoformat(timespec="seconds")


def last_two_runs(instance: dg.DagsterInstance) -> tuple[str, str]:
    usable = runs_with_snapshots(instance)
    if len(usable) < 2:
        raise ParityInputError("parity diff needs two complete runs with snapshots; found "
                               f"{len(usable)} (run `parity run` twice or pass RUN_A RUN_B)")
    return usable[1], usable[0]


# --- parity diff --------------------------------------------------------------------------------

def load_run_side(instance: dg.DagsterInstance, content: ContentStore, run_id: str) -> RunSide:
    """A run's snapshots and provenance, every object verified before it is compared."""
    contents = run_contents(instance, content, run_id)
    if not contents.manifests:
        raise ParityInputError(f"run {run_id} ({contents.status}) produced no parity asset; "
                               "nothing to compare (list runs with `parity runs`)")
    _require_intact(content, _objects_to_compare(content, contents), run_id)
    assets = {asset: manifest["sha256"] for asset, (_, _, manifest)
              in contents.manifests.items()}
    if "snapshots" not in contents.manifests:
        return RunSide(run_id=run_id, snapshots=[], per_symbol_n=_panel_counts(content, contents),
                       library_versions={}, git_commit=None, settings={}, assets=assets,
                       has_snapshots=False, nan_rates=_panel_nan_rates(content, contents))
    files = contents.manifests["snapshots"][2]["files"]
    run_manifest = content.read_json(files["manifest.json"])
    return RunSide(
        run_id=run_id, snapshots=[content.read_json(files[p]) for p in _snapshot_paths(files)],
        per_symbol_n={s: v["n"] for s, v in run_manifest["per_symbol_stats"].items()},
        library_versions=run_manifest.get("library_versions", {}),
        git_commit=(run_manifest.get("git") or {}).get("commit"),
        settings=run_manifest.get("settings", {}), assets=assets,
        nan_rates=_panel_nan_rates(content, contents))


def _snapshot_paths(files: dict[str, str]) -> list[str]:
    names = set(SNAPSHOT_FILES.values())
    return [path for path in sorted(files) if PurePosixPath(path).name in names]


def _panel_counts(content: ContentStore, contents: RunContents) -> dict[str, int]:
    if "sampled_data" not in contents.manifests:
        return {}
    metadata = content.read_json(contents.manifests["sampled_data"][2]["files"]["metadata.json"])
    return {s: v["n"] for s, v in metadata["per_symbol_stats"].items()}


def _panel_nan_rates(content: ContentStore, contents: RunContents
                     ) -> dict[str, dict[str, float]]:
    """{symbol: {column: NaN rate}} recorded by the run's ``sampled_data`` (a run made before
    they were recorded has none: nothing to compare)."""
    if "sampled_data" not in contents.manifests:
        return {}
    metadata = content.read_json(contents.manifests["sampled_data"][2]["files"]["metadata.json"])
    return {s: v["nan_rates"] for s, v in metadata["per_symbol_stats"].items()
            if "nan_rates" in v}


def _objects_to_compare(content: ContentStore, contents: RunContents) -> dict[str, str]:
    """Every manifest, payload and file of the run, and every model, prediction and importance
    object its snapshots name (they may come from another run): {object name: what it is}."""
    names: dict[str, str] = {}
    for asset, (_, manifest_name, manifest) in sorted(contents.manifests.items()):
        names[manifest_name] = f"{asset}/{MANIFEST_VIEW}"
        names[manifest["payload"]] = payload_view_path(asset, manifest)
        names.update({name: path for path, name in manifest["files"].items()})
    if "snapshots" in contents.manifests:
        files = contents.manifests["snapshots"][2]["files"]
        for path in _snapshot_paths(files):
            try:
                body = content.read_json(files[path])  # verified as it is read
            except ArtifactIntegrityError:
                continue  # reported with the rest; a damaged snapshot names nothing
            for relative, sha in sorted(body.get("artifacts", {}).items()):
                names.setdefault(f"{sha}{PurePosixPath(relative).suffix}",
                                 f"{relative} (named by {path})")
    return dict(sorted(names.items()))


def _damage(content: ContentStore, names: dict[str, str]) -> dict[str, str]:
    """{object name: "<what it is>: <problem>"} for every damaged object."""
    found = {name: content.damage(name) for name in names}
    return {name: f"{names[name]}: {problem}" for name, problem in found.items() if problem}


def _require_intact(content: ContentStore, names: dict[str, str], run_id: str) -> None:
    damaged = _damage(content, names)
    if damaged:
        raise ArtifactIntegrityError(
            f"run {run_id}: {len(damaged)} stored object(s) do not match their names, so the "
            "run cannot be trusted or compared. " + " | ".join(damaged.values()))


# --- parity verify ------------------------------------------------------------------------------

@dataclass(frozen=True)
class VerifyReport:
    run_id: str
    status: str
    produced: tuple[str, ...]  # materialized by this run itself
    inherited: tuple[str, ...]  # stood for through the runs it re-executes
    objects: int
    view_files: int
    missing: tuple[str, ...]
    finished: bool  # the run is complete (resources.runs.is_complete)

    @property
    def complete(self) -> bool:
        return self.finished and not self.missing


def verify_run(instance: dg.DagsterInstance, content: ContentStore, run_id: str
               ) -> VerifyReport:
    """Re-hash every object the run references (manifests, payloads, models, predictions,
    importances, snapshots, run metadata and manifest) and its view's files against them.
    Any mismatch raises ArtifactIntegrityError listing all of them."""
    contents = run_contents(instance, content, run_id)
    names = _objects_to_compare(content, contents)
    damaged = _damage(content, names)
    view_files, view_problems = _verify_view(content, contents, set(damaged))
    problems = [*damaged.values(), *view_problems]
    if problems:
        raise ArtifactIntegrityError(
            f"run {run_id}: {len(problems)} problem(s) found. " + " | ".join(problems))
    own = tuple(a for a in contents.produced() if contents.manifests[a][0] == run_id)
    inherited = tuple(a for a in contents.produced() if a not in own)
    expected = contents.produced() if _is_partial_selection(instance, run_id) else ASSETS
    return VerifyReport(run_id, contents.status, own, inherited, len(names), view_files,
                        tuple(a for a in expected if a not in contents.produced()),
                        contents.complete)


def _is_partial_selection(instance: dg.DagsterInstance, run_id: str) -> bool:
    run = instance.get_run_by_id(run_id)
    return run is not None and is_complete(run) and (
        run.asset_selection is not None or run.step_keys_to_execute is not None)


def _verify_view(content: ContentStore, contents: RunContents, damaged: set[str]
                 ) -> tuple[int, list[str]]:
    """The run's own view files must still be their objects (an editor that saved a new file
    over a hard link leaves the object intact and the view lying)."""
    checked, problems = 0, []
    for asset, (maker, manifest_name, manifest) in sorted(contents.manifests.items()):
        if maker != contents.run_id:
            continue
        shown = {**manifest["files"], payload_view_path(asset, manifest): manifest["payload"],
                 f"{asset}/{MANIFEST_VIEW}": manifest_name}
        for relative, name in sorted(shown.items()):
            path = content.view_path(contents.run_id, relative)
            if not path.is_file() or name in damaged:
                continue  # the view is derived (deleting it loses nothing); damage is reported
            checked += 1
            sha, suffix = split_name(name)
            if content_sha256_or_unreadable(path.read_bytes(), suffix) != sha:
                problems.append(f"{path} was edited: it no longer matches object {name}; the "
                                "stored object is intact (`parity verify` checked it): delete "
                                "the edited file and re-materialize to restore the view")
    return checked, problems


def verify_store(instance: dg.DagsterInstance, content: ContentStore) -> tuple[int, dict]:
    """Re-hash every object in the store: (objects checked, {damaged object: (problem, runs
    that use it)})."""
    users = _object_users(instance, content)
    checked, damaged = 0, {}
    for name in content.object_names():
        checked += 1
        problem = content.damage(name)
        if problem:
            damaged[name] = (problem, tuple(sorted(users.get(name, ()))))
    return checked, damaged


def _all_materializations(instance: dg.DagsterInstance, key: dg.AssetKey
                          ) -> Iterable[dg.EventLogRecord]:
    cursor = None
    while True:
        page = instance.fetch_materializations(key, limit=1000, cursor=cursor)
        yield from page.records
        if not page.has_more:
            return
        cursor = page.cursor


def _object_users(instance: dg.DagsterInstance, content: ContentStore) -> dict[str, set[str]]:
    """Which runs reference each object, from every parity materialization in the instance."""
    users: dict[str, set[str]] = {}
    for asset in ASSETS:
        for record in _all_materializations(instance, dg.AssetKey(asset)):
            if "manifest" not in materialization(record).metadata:
                continue
            name = manifest_of(record)
            # a damaged manifest is itself reported; the files it names cannot be listed
            names = [name] + ([] if content.damage(name)
                              else referenced_objects(read_manifest(content, name)))
            for each in names:
                users.setdefault(each, set()).add(record.run_id)
    return users
