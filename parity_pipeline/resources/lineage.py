"""Which materialization an asset input means, read from the Dagster instance.

Dagster is asset-centric: a run may materialize one asset on top of materializations made by
earlier runs, re-execute some steps of a parent run, or run everything. The rule, one for every
path: an upstream asset is the one materialized by this run, else by the run it re-executes
(its parent, then that run's parent ...), else the latest materialization of that asset.
Each materialization's metadata names its manifest object (``manifest``), so what is found here
is loaded from the content store, whichever run made it.
"""

from collections import OrderedDict

import dagster as dg

from parity_pipeline.resources.events import materialization

MANIFEST_KEY = "manifest"  # materialization metadata: the manifest's object name


def run_lineage(instance: dg.DagsterInstance, run_id: str) -> list[str]:
    """This run, then the runs it re-executes, nearest first."""
    chain: list[str] = []
    current = instance.get_run_by_id(run_id)
    while current is not None and current.run_id not in chain:
        chain.append(current.run_id)
        current = (instance.get_run_by_id(current.parent_run_id)
                   if current.parent_run_id else None)
    return chain or [run_id]


def run_materializations(instance: dg.DagsterInstance, run_id: str
                         ) -> dict[str, dg.EventLogRecord]:
    """The parity materializations one run made itself: {asset: last record}."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=1000).records
    found: dict[str, dg.EventLogRecord] = {}
    for record in records:
        materialization = record.asset_materialization
        if materialization is not None and MANIFEST_KEY in materialization.metadata:
            found[materialization.asset_key.to_user_string()] = record
    return found


def effective_materializations(instance: dg.DagsterInstance, run_id: str
                               ) -> dict[str, tuple[str, dg.EventLogRecord]]:
    """What a run stands for: its own materializations, then those of the runs it re-executes.
    {asset: (the run that made it, record)}."""
    found: dict[str, tuple[str, dg.EventLogRecord]] = {}
    for ancestor in run_lineage(instance, run_id):
        for asset, record in run_materializations(instance, ancestor).items():
            found.setdefault(asset, (ancestor, record))
    return found


# Materializations a run made itself, as this process found them: {(run_id, asset): record}.
# A run materializes an asset once, and a step reads an asset only after the run made it (or
# never makes it), so this run's own record is final once seen; a step's inputs, checks and the
# snapshots resolve the same few assets ~24 times per run, each a scan of the run's events.
# Records from the runs it re-executes or from the latest materialization are not kept: the run
# may still make its own.
_OWN_RECORDS: OrderedDict[tuple[str, str], dg.EventLogRecord] = OrderedDict()
_OWN_RECORDS_KEPT = 256


def resolve_upstream(instance: dg.DagsterInstance, asset_key: dg.AssetKey, run_id: str
                     ) -> dg.EventLogRecord | None:
    """The materialization of ``asset_key`` a step of ``run_id`` reads (module rule)."""
    asset = asset_key.to_user_string()
    if (run_id, asset) in _OWN_RECORDS:
        return _OWN_RECORDS[(run_id, asset)]
    found = effective_materializations(instance, run_id)
    for name, (maker, record) in sorted(found.items()):
        if maker == run_id:
            _OWN_RECORDS[(run_id, name)] = record
    while len(_OWN_RECORDS) > _OWN_RECORDS_KEPT:
        _OWN_RECORDS.popitem(last=False)
    made = found.get(asset)
    if made is not None:
        return made[1]
    latest = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=asset_key),
                                             limit=1).records
    return latest[0] if latest else None


def manifest_of(record: dg.EventLogRecord) -> str:
    return str(materialization(record).metadata[MANIFEST_KEY].value)
