"""Wiring shared by the stage assets: stage identity and the hashed output."""

import re
import warnings
from collections.abc import Iterator
from typing import TypeAlias

import dagster as dg

from parity_pipeline.core.errors import ParityInputError
from parity_pipeline.core.repro.artifact import ArtifactIdentity, make_artifact
from parity_pipeline.core.repro.identity import UnitIdentity
from parity_pipeline.core.store import reuse
from parity_pipeline.resources.settings import PipelineSettings

# The context of an asset's step: an @asset's own, or an op's of a graph-backed (fanned-out) asset.
StepContext: TypeAlias = dg.AssetExecutionContext | dg.OpExecutionContext


KEY_TAG_LENGTH = 16
KEY_TAG_LIMIT = 63  # Dagster's cap on a tag value


# Dagster validates the tags of an Output (materialization) more strictly than run tags.
OUTPUT_TAG_VALUE = re.compile(r"[A-Za-z0-9_.\-]{0,63}")


def scope_tags(scope: dict, output: bool = False) -> dict[str, str]:
    """``parity/kind`` (full | partial) and ``parity/targets`` for runs and materializations
    (``output``: only characters a materialization tag may hold, else the count; the full list
    is in the ``scope`` metadata)."""
    if "targets" not in scope:
        return {}
    targets = ",".join(scope["targets"])
    fits = len(targets) <= KEY_TAG_LIMIT and (not output or OUTPUT_TAG_VALUE.fullmatch(targets))
    shown = targets if fits else f"{len(scope['targets'])}{'_' if output else ' '}targets"
    return {"parity/kind": "partial" if targets else "full", "parity/targets": shown or "all"}


def tag_run(context: StepContext, settings: PipelineSettings) -> None:
    """Say on the run (runs list, `parity runs`) whether it covers every target: a launchpad
    run can only be told from inside (its tags are fixed before its config is read)."""
    tags = scope_tags({"targets": sorted(settings.targets)})
    current = context.run.tags
    missing = {k: v for k, v in tags.items() if current.get(k) != v}
    if missing:
        context.instance.add_run_tags(context.run.run_id, missing)


def require_collect_step(context: dg.OpExecutionContext, asset_name: str,
                         collect_op: str) -> None:
    """A step of a fanned-out stage updates nothing unless its collect step runs too (only it
    emits the asset). Refuse before any work: never a green step that changed nothing."""
    selected = context.run.step_keys_to_execute
    collect_key = f"{asset_name}.{collect_op}"
    if selected is not None and collect_key not in selected:
        raise ParityInputError(
            f"step {context.get_step_execution_context().step.key} alone cannot update the "
            f"{asset_name} asset: only its step {collect_key} writes it, and it is not in this "
            f"run. Re-execute from failure or re-execute all, select {collect_key} too, or "
            f"materialize {asset_name} from its asset page")


def hashed_outputs(payload, identity: UnitIdentity, n_effective: int, metadata: dict,
                   per_symbol: dict[str, int], max_rows_per_symbol: int,
                   check_results: list[dg.AssetCheckResult], scope: dict,
                   files: dict[str, str] | None = None) -> Iterator:
    """One hashing call: its sha256 is the DataVersion, the payload object's name and the
    ledger key. ``files``: the objects the step stored for people (run-view path -> object).

    Yields the asset's ``Output`` then its check results: the form both an ``@asset`` and the
    last op of a graph-backed (fanned-out) stage can emit."""
    artifact = make_artifact(payload, ArtifactIdentity(
        stage=identity.stage, n_effective=n_effective, train_seed=identity.train_seed,
        per_symbol_counts=dict(per_symbol), **identity.keys()), files=files or {}, scope=scope)
    with warnings.catch_warnings():  # Output(data_version=...) is beta; it is the documented way
        warnings.simplefilter("ignore", dg.BetaWarning)
        output = dg.Output(
            value=artifact, output_name="result", data_version=dg.DataVersion(artifact.sha256),
            # as tags too, so a key copied from a snapshot finds its materializations in the UI;
            # Dagster caps tag values at 63 characters, so tags hold the first 16 hex digits
            tags={**{f"parity/{name}": value[:KEY_TAG_LENGTH] for name, value in
                     identity.keys().items()}, **scope_tags(scope, output=True)},
            metadata={**metadata, "n_effective": n_effective, "train_seed": identity.train_seed,
                      "max_rows_per_symbol": max_rows_per_symbol,
                      "per_symbol_counts": dg.MetadataValue.json(per_symbol),
                      "data_fingerprint": identity.data_fingerprint,
                      "logical_sha256": artifact.sha256,
                      "scope": dg.MetadataValue.json(scope), **scope_tags(scope),
                      **identity.keys()})
    yield output
    yield from check_results


REUSED_UNITS = "reused_units"


def reuse_metadata(step_units: list[dict[str, bool]]) -> dict:
    """The stage's reuse report for the UI: how many units were reused, and which (the
    snapshots step marks those snapshots ``reused``)."""
    units = reuse.all_reused(step_units)
    reused = sorted(label for label, flag in units.items() if flag)
    return {"reused": f"{len(reused)} of {len(units)} units",
            REUSED_UNITS: dg.MetadataValue.json(reused)}
