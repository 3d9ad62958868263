"""Fan-out helpers: splitting a stage's targets into parts (one step each), merging the parts.

A stage run as parts of targets must produce the very artifact the one-process function
produces (same bytes, same hash), so the per-target results are merged here, sorted by their
unit key, onto ``base``: the stage run on no unit at all, which carries the panel-level fields
(n_effective, per-symbol counts, seed, config) every result must agree with.
"""

import dataclasses
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

V = TypeVar("V")


def merge_parts(base: Any, parts: Sequence[Any], field: str,
                sort_key: Callable[[Any], Any]) -> Any:
    """``base`` with ``field`` holding every part's items, sorted by ``sort_key``."""
    for part in parts:
        if dataclasses.replace(part, **{field: ()}) != base:
            raise ValueError(f"a per-target part disagrees with the stage on the panel-level "
                             f"fields (n_effective, counts, seed or config) of {type(base)}")
    items = sorted((item for part in parts for item in getattr(part, field)), key=sort_key)
    keys = [sort_key(item) for item in items]
    if len(set(keys)) != len(keys):
        raise ValueError(f"per-target parts overlap in {field}: a unit was computed twice")
    return dataclasses.replace(base, **{field: tuple(items)})


# Relative cost of one routed unit by view, for balancing parts (the two later stages fan out by
# unit, so a target's two views may land in different parts). A SYMBOL_SPECIFIC unit fits one
# model family per symbol, a CROSS_SECTIONAL unit one on the pooled rows: at 10 symbols x 2000
# rows a SYMBOL_SPECIFIC unit took 1.9x a CROSS_SECTIONAL one in feature selection and 2.6x in
# training (per-target times of one run, 2026-12-05). Balancing by targets (1 or 2 views each)
# left the selection's two parts 0.8-1.0 s apart in an 8 s stage.
VIEW_COST = {"CROSS_SECTIONAL": 1.0, "SYMBOL_SPECIFIC": 2.0}

Name = TypeVar("Name", str, tuple[str, str])  # a target, or a (target, view) unit


def balanced_groups(costs: dict[Name, float], n_groups: int) -> list[tuple[Name, ...]]:
    """Split names into at most ``n_groups`` groups of about equal total cost.

    Longest processing time first: the costliest name goes to the least-loaded group (ties to
    the lower group number), names tied on cost in sorted order, so the split depends only on
    the costs and the group count. Each group lists its names sorted; empty groups are dropped.
    """
    if n_groups < 1:
        raise ValueError(f"n_groups must be >= 1, got {n_groups}")
    loads = [0.0] * n_groups
    groups: list[list[Name]] = [[] for _ in range(n_groups)]
    for name in sorted(costs, key=lambda name: (-costs[name], name)):
        lightest = min(range(n_groups), key=lambda i: (loads[i], i))
        loads[lightest] += costs[name]
        groups[lightest].append(name)
    return [tuple(sorted(group)) for group in groups if group]


def by_target(units: Iterable[tuple[tuple[str, str], V]]) -> dict[str, dict[tuple[str, str], V]]:
    """``((target, view), value)`` pairs grouped by target, in the order given: what a stage
    fans out (each target carries its own units, so a part never needs another target's)."""
    grouped: dict[str, dict[tuple[str, str], V]] = {}
    for unit, value in units:
        grouped.setdefault(unit[0], {})[unit] = value
    return grouped
