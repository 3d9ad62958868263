"""Asset checks, evaluated in the asset's own step so a blocking failure stops what follows.

Each check is one property (``core.repro.checks``); here we only gather its inputs (the panel's
stats from ``sampled_data``'s materialization, the previous ledger record of the same comparable
key) and turn the verdict into a ``dg.AssetCheckResult``. Severity and blocking are explained in
``core.repro.checks`` and in each spec's description (shown in the UI).
"""

from typing import Any

import dagster as dg

from parity_pipeline.core.repro import checks
from parity_pipeline.core.repro.checks import (
    MODELS_TRAINED,
    N_EFFECTIVE_DRIFT,
    N_EFFECTIVE_PARITY,
    NAN_RATE_DRIFT,
    OUTPUT_PARITY,
    SAMPLE_LIMIT_RESPECTED,
    TRAIN_SEED_DRIFT,
    UNIVERSE_CHANGE,
)
from parity_pipeline.core.repro.identity import UnitIdentity
from parity_pipeline.core.store.content import ContentStore
from parity_pipeline.core.store.indexes import JsonIndex
from parity_pipeline.defs.common import StepContext
from parity_pipeline.resources.events import materialization, metadata_value
from parity_pipeline.resources.lineage import resolve_upstream
from parity_pipeline.resources.runs import CompleteRuns
from parity_pipeline.resources.settings import PipelineSettings

DESCRIPTIONS = {
    N_EFFECTIVE_PARITY: "ERROR, blocking: the stage saw exactly the sampled panel's rows per "
                        "symbol; a stage that read more (or fewer) rows than the shared "
                        "sample would compare unlike things across stages, so a wrong sample "
                        "never reaches training.",
    N_EFFECTIVE_DRIFT: "ERROR, not blocking: n_effective and per-symbol counts equal the "
                       "previous materialization with the same comparable_key (a moved window "
                       "is alerted, and the run completes so `parity diff` can show why).",
    TRAIN_SEED_DRIFT: "ERROR, blocking when train_seed differs from base_seed or between "
                      "stages; WARN when it changed since the previous run of the comparison "
                      "group (deliberate, but alerted).",
    SAMPLE_LIMIT_RESPECTED: "ERROR, blocking: max(per_symbol n) <= max_rows_per_symbol, with "
                            "the same N as the panel.",
    UNIVERSE_CHANGE: "WARN: the same symbols as the previous complete run on the same dataset. A "
                     "symbol added or removed starts new comparison groups, where no drift check "
                     "would see it; the check names the symbols and alerts.",
    NAN_RATE_DRIFT: "WARN: each feature's and target's NaN rate per symbol within the "
                    "registry's max_nan_rate_change (default 0.05) of the previous complete run "
                    "on the same dataset. A burst of NaN keeps every count the same; the check "
                    "names the symbol, column and both rates, and alerts.",
    MODELS_TRAINED: "WARN: the run trained at least one model. None means ranking routed no "
                    "target: the check names each blocked target, view and its first reason "
                    "(every CSV keeps its header).",
    OUTPUT_PARITY: "ERROR: snapshots with the same strict_key as an earlier run have identical "
                   "output hashes (otherwise the pipeline is non-deterministic).",
}


BLOCKING = {N_EFFECTIVE_PARITY: True, N_EFFECTIVE_DRIFT: False, TRAIN_SEED_DRIFT: True,
            SAMPLE_LIMIT_RESPECTED: True}


def stage_check_specs(asset_name: str) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(name, asset=asset_name, blocking=BLOCKING[name],
                              description=DESCRIPTIONS[name])
            for name in (N_EFFECTIVE_PARITY, N_EFFECTIVE_DRIFT, TRAIN_SEED_DRIFT,
                         SAMPLE_LIMIT_RESPECTED)]


def universe_spec() -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(UNIVERSE_CHANGE, asset="sampled_data",
                             description=DESCRIPTIONS[UNIVERSE_CHANGE])


def previous_sampled(instance: dg.DagsterInstance, run_id: str, data_dir: str
                     ) -> tuple[dict[str, dg.MetadataValue] | None, str | None]:
    """Metadata of the newest ``sampled_data`` made by another complete run from ``data_dir``."""
    complete = CompleteRuns(instance)
    records = instance.fetch_materializations(dg.AssetKey("sampled_data"), limit=100).records
    for record in records:  # newest first
        metadata = materialization(record).metadata
        if record.run_id == run_id or record.run_id not in complete:
            continue
        if "data_dir" in metadata and metadata["data_dir"].value == data_dir:
            return dict(metadata), record.run_id
    return None, None


def previous_universe(instance: dg.DagsterInstance, run_id: str, data_dir: str
                      ) -> tuple[list[str] | None, str | None]:
    """Symbols of the newest ``sampled_data`` made by another complete run from ``data_dir``."""
    metadata, previous_run = previous_sampled(instance, run_id, data_dir)
    return (metadata_value(metadata, "universe", str).split(", ") if metadata else None,
            previous_run)


def universe_result(context: dg.AssetExecutionContext, universe: list[str],
                    data_dir: str) -> dg.AssetCheckResult:
    previous, previous_run = previous_universe(context.instance, context.run.run_id, data_dir)
    verdict = checks.universe_change(universe, previous, previous_run)
    if not verdict.passed:
        context.log.warning("check sampled_data.%s failed: %s", UNIVERSE_CHANGE, verdict.summary)
    return to_result("sampled_data", UNIVERSE_CHANGE, verdict)


def nan_rate_spec() -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(NAN_RATE_DRIFT, asset="sampled_data",
                             description=DESCRIPTIONS[NAN_RATE_DRIFT])


def nan_rate_result(context: dg.AssetExecutionContext, stats: dict[str, dict], data_dir: str,
                    max_change: float) -> dg.AssetCheckResult:
    """``stats``: this run's per_symbol_stats; the previous ones from the same run as the
    universe check's (a run made before NaN rates were recorded has none: the check passes)."""
    metadata, previous_run = previous_sampled(context.instance, context.run.run_id, data_dir)
    previous = None
    if metadata is not None:
        previous = {symbol: values["nan_rates"] for symbol, values
                    in metadata_value(metadata, "per_symbol_stats", dict).items()
                    if "nan_rates" in values}
    current = {symbol: values["nan_rates"] for symbol, values in stats.items()}
    verdict = checks.nan_rate_drift(current, previous, previous_run, max_change)
    if not verdict.passed:
        context.log.warning("check sampled_data.%s failed: %s", NAN_RATE_DRIFT, verdict.summary)
    return to_result("sampled_data", NAN_RATE_DRIFT, verdict)


def to_result(asset_name: str, check_name: str, verdict: checks.CheckVerdict
              ) -> dg.AssetCheckResult:
    severity = dg.AssetCheckSeverity.ERROR if verdict.severity == checks.ERROR \
        else dg.AssetCheckSeverity.WARN
    return dg.AssetCheckResult(
        asset_key=asset_name, check_name=check_name, passed=verdict.passed, severity=severity,
        description=verdict.summary,
        metadata={k: dg.MetadataValue.json(v) if isinstance(v, dict | list) else v
                  for k, v in verdict.metadata.items() if v is not None})


def previous_record(instance: dg.DagsterInstance, content: ContentStore, comparable_key: str
                    ) -> dict[str, Any] | None:
    """The last ledger record of ``comparable_key`` written by a complete run (a killed or
    crashed run's record is not history)."""
    complete = CompleteRuns(instance)
    return JsonIndex(content.ledger_path(comparable_key)).last(lambda e: e["run_id"] in complete)


def panel_reference(instance: dg.DagsterInstance, run_id: str) -> checks.PanelReference:
    """Per-symbol n and N recorded by the ``sampled_data`` materialization this run reads
    (``lineage``: its own, the re-executed run's, else the latest)."""
    record = resolve_upstream(instance, dg.AssetKey("sampled_data"), run_id)
    if record is None:
        return checks.PanelReference({}, None)
    metadata = materialization(record).metadata
    stats = metadata_value(metadata, "per_symbol_stats", dict)
    return checks.PanelReference({s: int(v["n"]) for s, v in stats.items()},
                                 metadata_value(metadata, "max_rows_per_symbol", int))


def stage_checks(context: StepContext, asset_name: str, content: ContentStore,
                 identity: UnitIdentity, seen: checks.StageObservation,
                 settings: PipelineSettings) -> list[dg.AssetCheckResult]:
    """The four stage checks, against the panel this run reads and the ledger's history."""
    previous = previous_record(context.instance, content, identity.comparable_key)
    panel = (checks.PanelReference(seen.counts, settings.max_rows_per_symbol)
             if asset_name == "sampled_data" else
             panel_reference(context.instance, context.run.run_id))
    verdicts = checks.stage_verdicts(seen, panel, settings.max_rows_per_symbol,
                                     settings.base_seed, previous)
    for name, verdict in verdicts.items():
        if not verdict.passed:
            context.log.warning("check %s.%s failed: %s", asset_name, name, verdict.summary)
    return [to_result(asset_name, name, verdict) for name, verdict in verdicts.items()]


def models_trained_spec() -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(MODELS_TRAINED, asset="trained_models",
                             description=DESCRIPTIONS[MODELS_TRAINED])


def models_trained_result(context: StepContext, n_models: int) -> dg.AssetCheckResult:
    """The reasons come from the ranking this run reads (``lineage``), through the table in
    its materialization's metadata: no artifact to load for a line of explanation."""
    record = resolve_upstream(context.instance, dg.AssetKey("ranked_targets"),
                              context.run.run_id)
    metadata = materialization(record).metadata if record else {}
    table = (metadata_value(metadata, "ranking", dg.TableMetadataValue)
             if "ranking" in metadata else None)
    rows = [row.data for row in table.records] if table is not None else []
    verdict = checks.models_trained(n_models, rows)
    if not verdict.passed:
        context.log.warning("check trained_models.%s failed: %s", MODELS_TRAINED,
                            verdict.summary)
    return to_result("trained_models", MODELS_TRAINED, verdict)
