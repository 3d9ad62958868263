"""Typed reads of Dagster event-log records: the materialization or check evaluation a record
holds, and one metadata value of a known Python type.

Every query here selects records by event type, so these never fail on a well-formed instance;
when a record is not what was asked for, the error says which record and what it holds instead
of an ``AttributeError`` deep in a caller.
"""

from collections.abc import Mapping
from typing import TypeVar

import dagster as dg

V = TypeVar("V")


def materialization(record: dg.EventLogRecord) -> dg.AssetMaterialization:
    """The asset materialization of a record from an ``ASSET_MATERIALIZATION`` query."""
    found = record.asset_materialization
    if found is None:
        raise ValueError(f"event record {record.storage_id} of run {record.run_id} is not an "
                         f"asset materialization ({record.event_log_entry.dagster_event_type})")
    return found


def check_evaluation(entry: dg.EventLogEntry) -> dg.AssetCheckEvaluation:
    """The asset check evaluation of an entry from an ``ASSET_CHECK_EVALUATION`` query."""
    found = entry.asset_check_evaluation
    if found is None:
        raise ValueError(f"event of run {entry.run_id} is not an asset check evaluation "
                         f"({entry.dagster_event_type})")
    return found


def metadata_value(metadata: Mapping[str, dg.MetadataValue], key: str, kind: type[V]) -> V:
    """``metadata[key].value``, which must be a ``kind`` (``str`` for text, ``int``, ``dict``
    for a JSON object, ``dg.TableMetadataValue`` for a table)."""
    value = metadata[key].value
    if not isinstance(value, kind):
        raise TypeError(f"metadata {key!r} holds {type(value).__name__}, not {kind.__name__}")
    return value
