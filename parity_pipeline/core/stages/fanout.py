"""Fan-out helpers: ordering a stage's pieces for its parts (one step each), merging the parts.

A stage run as parts of targets must produce the very artifact the one-process function
produces (same bytes, same hash), so the per-target results are merged here, sorted by their
unit key, onto ``base``: the stage run on no unit at all, which carries the panel-level fields
(n_effective, per-symbol counts, seed, config) every result must agree with.
"""

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from parity_pipeline.core.data.registry import FeatureRegistry
from parity_pipeline.core.hashing import canonical_json


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


# Relative cost of one (target, view) unit by view, to order a stage's pieces costliest first
# (each stage fans out by unit, so a target's two views may run in different parts). A
# SYMBOL_SPECIFIC unit fits one model family per symbol, a CROSS_SECTIONAL unit one on the
# pooled rows: at 10 symbols x 2000 rows a SYMBOL_SPECIFIC unit took 1.9x a CROSS_SECTIONAL one
# in feature selection and 2.6x in training (per-target times of one run, 2026-12-05), and
# 2.1x in target ranking at 50 symbols (profile of one run, 2026-12-05). Only the order
# depends on it: which part computes a piece is settled as the parts run (claims).
VIEW_COST = {"CROSS_SECTIONAL": 1.0, "SYMBOL_SPECIFIC": 2.0}

Unit = tuple[str, str]  # (target, view)
# A piece of a stage's work: a whole unit, (target, view), or a share of one, (target, view,
# *symbols) (SYMBOL_SPECIFIC units of more than SS_SYMBOLS_PER_PIECE symbols)
PieceKey = tuple[str, ...]
Key = TypeVar("Key", bound=PieceKey)


def costliest_first(costs: Mapping[Key, float]) -> list[Key]:
    """The pieces by falling cost, ties by key: the order a stage's parts claim them, so the
    small pieces come last and the parts end close together. Depends only on the costs."""
    return sorted(costs, key=lambda key: (-costs[key], key))


# Above this many symbols a SYMBOL_SPECIFIC unit of ranking or selection is computed in groups
# of at most this many consecutive symbols, one piece each, so the last pieces a stage's parts
# claim are small and the parts end close together (at 50 symbols a stage's two parts ended up
# to one whole unit apart: 2.9 s in ranking, 6.3 s in selection). At the default 10 symbols a
# unit stays one piece, so its log lines do not grow.
SS_SYMBOLS_PER_PIECE = 12


def symbol_groups(symbols: Sequence[str],
                  per_piece: int = SS_SYMBOLS_PER_PIECE) -> tuple[tuple[str, ...], ...]:
    """``symbols`` (sorted) in consecutive groups of near-equal size, none above
    ``per_piece``: the pieces of one SYMBOL_SPECIFIC unit."""
    ordered = tuple(sorted(symbols))
    n_groups = max(1, math.ceil(len(ordered) / per_piece))
    size, larger = divmod(len(ordered), n_groups)  # the first `larger` groups get one more
    ends = [(i + 1) * size + min(i + 1, larger) for i in range(n_groups)]
    return tuple(ordered[end - size - (i < larger):end] for i, end in enumerate(ends))


def piece_costs(units: Iterable[Unit], symbols: Sequence[str]) -> dict[PieceKey, float]:
    """The pieces of a stage's units with their relative costs (``VIEW_COST``): a
    SYMBOL_SPECIFIC unit of more than ``SS_SYMBOLS_PER_PIECE`` symbols is one piece per group
    of symbols, ``(target, view, *group)``, costing its share of the unit; any other unit is
    one piece, ``(target, view)``."""
    groups = symbol_groups(symbols)
    costs: dict[PieceKey, float] = {}
    for target, view in units:
        if view == "SYMBOL_SPECIFIC" and len(groups) > 1:
            costs.update({(target, view, *group): VIEW_COST[view] * len(group) / len(symbols)
                          for group in groups})
        else:
            costs[target, view] = VIEW_COST[view]
    return costs


# A CROSS_SECTIONAL selection unit fits each family on the pooled rows once for its main fits
# and once per stability resample: about 1 s at 10 symbols, half in the main fits (50 trees per
# tree family) and half in the 3 resamples (15 each). It is two pieces, its main fits and its
# resamples, so the selection stage's last pieces are half a unit: with whole units its two
# parts ended 0.02-1.2 s apart (2-worker runs at 10 symbols, 2026-12-05). The key's last item
# names the fits ("fits=...": no symbol name holds "=").
FIT_SHARDS = {"fits=main": ("main",), "fits=resamples": ("resamples",)}


def selection_piece_costs(units: Iterable[Unit],
                          symbols: Sequence[str]) -> dict[PieceKey, float]:
    """``piece_costs`` with each CROSS_SECTIONAL unit split in two pieces of half its cost:
    ``(target, view, "fits=main")`` and ``(target, view, "fits=resamples")``."""
    costs: dict[PieceKey, float] = {}
    for key, cost in piece_costs(units, symbols).items():
        if key[1] == "CROSS_SECTIONAL":
            costs.update({(*key, shard): cost / len(FIT_SHARDS) for shard in FIT_SHARDS})
        else:
            costs[key] = cost
    return costs


def selection_share_of(key: PieceKey) -> tuple[Unit, tuple[str, ...], tuple[str, ...]]:
    """A ``selection_piece_costs`` key read back: its unit, the symbols of its share (empty:
    every symbol) and the fits it computes (empty: all of them)."""
    unit, shard = (key[0], key[1]), tuple(key[2:])
    if len(shard) == 1 and shard[0] in FIT_SHARDS:
        return unit, (), FIT_SHARDS[shard[0]]
    return unit, shard, ()


def bins_group(key: PieceKey, registry: FeatureRegistry) -> str:
    """The group of a ranking or selection piece whose fits may read the same LightGBM binned
    datasets (``core.stages.binned``): same view, same symbols, same target horizon (targets
    of one horizon have the same rows). A selection unit's main fits and resamples bin the
    same window, so they are one group too."""
    spec = registry.target(key[0])
    symbols = tuple(item for item in key[2:] if item not in FIT_SHARDS)
    return canonical_json([key[1], spec.horizon_bars, spec.horizon_minutes, *symbols])


def next_piece(remaining: Sequence["Piece"], group: str | None) -> "Piece":
    """The piece a part tries next: the first of ``remaining`` (costliest first) in the
    ``group`` of the piece it computed last, else the first. The binned datasets are shared
    within a part's process only, so a part takes a group's pieces one after another; a
    group's pieces are of one view and symbol set, so of equal cost, and the order stays
    costliest first."""
    return next((piece for piece in remaining if piece.group == group), remaining[0])


@dataclasses.dataclass(frozen=True)
class Piece:
    """One piece of a stage as a part computes it: the (target, view) ``unit`` it belongs to,
    the ``shard`` of that unit it is (its symbols; empty for the whole unit), ``work``, what
    the stage's per-piece work reads besides the shared inputs, and ``group``, the pieces
    whose fits share binned datasets (``bins_group``; empty: none)."""

    unit: Unit
    work: Any
    shard: tuple[str, ...] = ()
    group: str = ""

    @property
    def claim(self) -> str:
        """The piece's name in the claims folder."""
        return canonical_json(self.unit + self.shard)


@dataclasses.dataclass(frozen=True)
class PartWork:
    """What one part of a stage may compute: every piece of the stage, costliest first,
    claimed piece by piece as the part runs (``core.store.claims``). ``part`` is the claimant
    (the step's mapping key), ``plan_run`` the run whose plan step made the list (its claims
    folder), and ``n_parts`` how many parts share it (one part claims nothing: it computes
    every piece)."""

    part: str
    n_parts: int
    plan_run: str
    pieces: tuple[Piece, ...]
