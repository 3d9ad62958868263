"""``ReproducibilityIOManager``: stores every asset output in the content store, by its hash.

Assets yield ``Output(Artifact, data_version=DataVersion(artifact.sha256))`` (``defs.common``)
(an IO manager cannot set a data version itself, dagster#15584), so the hash is computed once in
``core.repro.artifact`` and the same value becomes the DataVersion, the payload object's name, the
output metadata and the comparison-group ledger entry.

Writing stores the payload and a materialization manifest as objects, links them into the run's
view and records the manifest's name in the materialization metadata. Loading resolves which
materialization the input means (``lineage``: this run's, the re-executed run's, else the
latest), refuses one made under other settings (a partial ranking fed to a full run), and
re-hashes every object it reads.
"""

import pickle
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dagster as dg

from parity_pipeline.core.errors import ArtifactIntegrityError, ParityInputError
from parity_pipeline.core.hashing import to_canonical
from parity_pipeline.core.repro.artifact import (
    Artifact,
    link_materialization,
    read_manifest,
    read_payload,
    write_materialization,
)
from parity_pipeline.core.repro.snapshots import payload_types
from parity_pipeline.core.store.atomic import atomic_write_bytes
from parity_pipeline.core.store.indexes import JsonIndex
from parity_pipeline.resources.data_source import ParquetDataSource
from parity_pipeline.resources.events import materialization
from parity_pipeline.resources.lineage import MANIFEST_KEY, manifest_of, resolve_upstream
from parity_pipeline.resources.settings import ArtifactStore, PipelineSettings, scope_conflicts


class ReproducibilityIOManager(dg.ConfigurableIOManager):
    """Objects by content under ``objects/``, a manifest per materialization, a view per run."""

    store: dg.ResourceDependency[ArtifactStore]

    def handle_output(self, context: dg.OutputContext, obj: Artifact) -> None:
        if not isinstance(obj, Artifact):
            raise TypeError(f"{context.asset_key.to_user_string()} must return an Artifact "
                            "(core.repro.artifact.make_artifact) so its hash is recorded")
        content = self.store.content()
        asset = context.asset_key.to_user_string()
        manifest_name, manifest = write_materialization(content, asset, obj)
        payload_view = link_materialization(content, context.run_id, manifest_name, manifest)
        ledger = JsonIndex(content.ledger_path(obj.identity.comparable_key))
        record = {"asset": asset, "run_id": context.run_id, "sha256": obj.sha256,
                  "manifest": manifest_name, **to_canonical(obj.identity)}
        entry = ledger.append(lambda entries: {**record, "seq": len(entries) + 1})
        context.add_output_metadata({
            MANIFEST_KEY: manifest_name, "sha256": obj.sha256,
            "path": dg.MetadataValue.path(str(content.view_path(context.run_id, payload_view))),
            "bytes": content.object_path(manifest["payload"]).stat().st_size,
            "objects": len(manifest["files"]) + 2, "ledger_seq": entry["seq"]})

    def load_input(self, context: dg.InputContext):
        asset = context.asset_key.to_user_string()
        run_id = context.step_context.run_id
        record = resolve_upstream(context.instance, context.asset_key, run_id)
        if record is None or MANIFEST_KEY not in materialization(record).metadata:
            raise ArtifactIntegrityError(
                f"asset {asset} has no materialization in the content store; materialize it "
                "(or the whole graph: Materialize all / `parity run`) first")
        content = self.store.content()
        manifest = read_manifest(content, manifest_of(record))
        _check_scope(context, asset, manifest, record.run_id)
        key = (str(content.root), str(manifest["payload"]))
        if key in _PAYLOADS and content.verified_unchanged(key[1]):
            _PAYLOADS.move_to_end(key)
            return _PAYLOADS[key]
        payload = read_payload(content, manifest, payload_types())
        _PAYLOADS[key] = payload
        while len(_PAYLOADS) > _PAYLOADS_KEPT:
            _PAYLOADS.popitem(last=False)
        return payload


# Payloads this process loaded, by payload object: objects are immutable, so the steps of an
# in-process run parse and validate the panel and each stage result once, not once per step
# (pandas copy-on-write keeps a step's edits to its own frame; result dataclasses are frozen).
# An object whose file changed since it was hashed is read and hashed again.
_PAYLOADS: OrderedDict[tuple[str, str], Any] = OrderedDict()
_PAYLOADS_KEPT = 8


def _check_scope(context: dg.InputContext, asset: str, manifest: dict, made_by: str) -> None:
    """Refuse an upstream output made under settings other than this run's."""
    # The run's effective resource config (run config over the definitions' values): nested
    # resource fields of an IO manager keep the definitions' values, not the run's.
    resources = context.step_context.resolved_run_config.resources
    settings = PipelineSettings(**resources["settings"].config)
    data_source = ParquetDataSource(**resources["data_source"].config)
    recorded = manifest.get("scope") or {}
    current = settings.scope(data_source.path(), per_target="targets" in recorded)
    conflicts = scope_conflicts(recorded, current)
    if conflicts:
        told = "; ".join(f"{key}: {stored!r} there, {now!r} here"
                         for key, (stored, now) in conflicts.items())
        raise ParityInputError(
            f"the {asset} this run would read (materialized by run {made_by}) was made under "
            f"other settings ({told}). Materialize {asset} with this run's settings first (add "
            "it to the selection), or launch this run with the settings above")


class StepHandoffIOManager(dg.ConfigurableIOManager):
    """Hand-offs between the steps inside one stage (the plan, one target's scores/selection/
    models): pickled into the content store (an identical run's hand-offs are stored once), with
    a pointer naming the object at ``steps/<run_id>/<step_key>/<output>.pkl``, atomically.

    Not Dagster's ``FilesystemIOManager``: it unpickles whatever file lies at its path, while
    here the object is re-hashed before it is unpickled, so a truncated or altered hand-off (on
    a folder shared by workers) is refused instead of loaded. These are not artifacts: the
    stage's final step merges them into the one hashed, verified output.
    A re-execution reads the parent run's hand-offs for the steps it does not repeat."""

    store: dg.ResourceDependency[ArtifactStore]

    def _file(self, identifier: Sequence[str]) -> Path:
        # [run_id, step_key, output_name(, mapping_key)]; a step key holds "[key]" when mapped
        run_id, *rest = identifier
        parts = [part.replace("[", "__").replace("]", "") for part in rest]
        return self.store.content().steps_dir(run_id) / Path(*parts).with_suffix(".pkl")

    def handle_output(self, context: dg.OutputContext, obj) -> None:
        name = self.store.content().put_bytes(
            pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL), ".pkl")
        atomic_write_bytes(self._file(context.get_identifier()), name.encode("ascii"))

    def load_input(self, context: dg.InputContext):
        upstream = context.upstream_output
        if upstream is None:  # every input of a hand-off comes from an upstream step's output
            raise TypeError(f"{type(self).__name__} loads only outputs of upstream steps")
        pointer = self._file(upstream.get_identifier())
        try:
            name = pointer.read_text(encoding="ascii").strip()
        except FileNotFoundError as exc:
            raise ArtifactIntegrityError(
                f"hand-off {pointer} of run {upstream.run_id} is missing; "
                "re-execute the whole stage (Re-execute all, or materialize the asset)") from exc
        # the object is re-hashed on read: only what this store wrote is ever unpickled
        return pickle.loads(self.store.content().read_bytes(name))
