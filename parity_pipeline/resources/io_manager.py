"""``ReproducibilityIOManager``: stores every asset output with its logical hash.

Assets yield ``Output(Artifact, data_version=DataVersion(artifact.sha256))`` (``defs.common``)
(an IO manager cannot set a data version itself, dagster#15584), so the hash is computed once in
``core.artifact`` and the same value becomes the DataVersion, the stored manifest, the output
metadata and the comparison-group ledger entry. Loading verifies the hash and fails loudly.
"""

import pickle
from pathlib import Path

import dagster as dg

from parity_pipeline.core.artifact import Artifact, read_artifact, write_artifact
from parity_pipeline.core.atomic import atomic_write_bytes
from parity_pipeline.core.errors import ArtifactIntegrityError
from parity_pipeline.core.hashing import to_canonical
from parity_pipeline.core.index_store import JsonIndex
from parity_pipeline.resources.settings import ArtifactStore


def payload_types() -> dict[str, type]:
    """The only types an artifact folder may name: loading never imports by arbitrary name."""
    from parity_pipeline.core.ranking import RankingResult
    from parity_pipeline.core.selection import SelectionResult
    from parity_pipeline.core.snapshots import SnapshotFingerprints
    from parity_pipeline.core.training import TrainingResult

    return {cls.__name__: cls for cls in
            (RankingResult, SelectionResult, TrainingResult, SnapshotFingerprints)}


class ReproducibilityIOManager(dg.ConfigurableIOManager):
    """Writes ``runs/<run_id>/<asset>/``, hashes, ledgers; verifies hashes on load."""

    store: dg.ResourceDependency[ArtifactStore]

    def _root(self) -> Path:
        return self.store.root_path()

    def _path(self, run_id: str, asset_key: dg.AssetKey) -> Path:
        return self._root() / "runs" / run_id / "/".join(asset_key.path)

    def handle_output(self, context: dg.OutputContext, obj: Artifact) -> None:
        if not isinstance(obj, Artifact):
            raise TypeError(f"{context.asset_key.to_user_string()} must return an Artifact "
                            "(core.artifact.make_artifact) so its hash is recorded")
        folder = self._path(context.run_id, context.asset_key)
        data_path = write_artifact(folder, obj)
        ledger_entry = self._append_ledger(context, obj, data_path)
        context.add_output_metadata({
            "sha256": obj.sha256, "path": dg.MetadataValue.path(str(data_path)),
            "bytes": data_path.stat().st_size,  # the keys come with the asset's Output
            "ledger_seq": ledger_entry["seq"]})

    def _append_ledger(self, context: dg.OutputContext, obj: Artifact, data_path: Path) -> dict:
        """One ledger per comparison group, so a group's history is one small locked file."""
        ledger = JsonIndex(self._root() / "globals" / "ledgers"
                           / f"{obj.identity.comparable_key}.json")
        record = {"asset": context.asset_key.to_user_string(), "run_id": context.run_id,
                  "sha256": obj.sha256, "path": str(data_path),
                  **to_canonical(obj.identity)}
        return ledger.append(lambda entries: {**record, "seq": len(entries) + 1})

    def load_input(self, context: dg.InputContext):
        asset_key = context.asset_key
        folder, expected = self._locate(context, asset_key)
        return read_artifact(folder, payload_types(), expected_sha256=expected)

    def _locate(self, context: dg.InputContext, asset_key: dg.AssetKey) -> tuple[Path, str | None]:
        """This run's copy if it made one, else the latest materialization's recorded path."""
        run_id = context.step_context.run_id if context.has_asset_key else None
        if run_id and (self._path(run_id, asset_key) / "artifact.json").is_file():
            return self._path(run_id, asset_key), None
        event = context.instance.get_latest_materialization_event(asset_key)
        if event is None or event.asset_materialization is None:
            raise ArtifactIntegrityError(f"asset {asset_key.to_user_string()} has never been "
                                         "materialized; materialize it (or the whole graph) first")
        metadata = event.asset_materialization.metadata
        folder = Path(str(metadata["path"].value)).parent
        return folder, str(metadata["sha256"].value)


class StepHandoffIOManager(dg.ConfigurableIOManager):
    """Hand-offs between the steps inside one stage (the plan, one target's scores/selection/
    models): pickled under ``runs/<run_id>/_steps/<step_key>/<output>.pkl``, atomically.

    Not Dagster's ``FilesystemIOManager`` because its ``base_dir`` is fixed when the definitions
    load, while the artifact root follows ``PARITY_HOME`` at run time (``ArtifactStore``). These
    are not artifacts: the stage's final step merges them into the one hashed, verified output.
    They stay in the run folder (small: scores, selections, model lists) for inspection."""

    store: dg.ResourceDependency[ArtifactStore]

    def _file(self, identifier: list[str]) -> Path:
        # [run_id, step_key, output_name(, mapping_key)]; a step key holds "[key]" when mapped
        run_id, *rest = identifier
        parts = [part.replace("[", "__").replace("]", "") for part in rest]
        return self.store.run_dir(run_id) / "_steps" / Path(*parts).with_suffix(".pkl")

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        atomic_write_bytes(self._file(context.get_identifier()),
                           pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL))

    def load_input(self, context: dg.InputContext):
        return pickle.loads(self._file(context.upstream_output.get_identifier()).read_bytes())
