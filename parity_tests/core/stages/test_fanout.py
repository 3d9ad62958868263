"""Ordering a stage's pieces for its parts, merging parts."""

import dataclasses
import functools
import random

import pytest

from parity_pipeline.core.data.registry import registry_from_dict
from parity_pipeline.core.stages import fanout
from parity_pipeline.core.stages.fanout import (
    SS_SYMBOLS_PER_PIECE,
    VIEW_COST,
    costliest_first,
    merge_parts,
    piece_costs,
    selection_piece_costs,
    selection_share_of,
    symbol_groups,
)


def test_pieces_are_claimed_costliest_first_and_the_order_depends_only_on_costs():
    costs = {("a", "v"): 2.0, ("b", "v"): 1.0, ("c", "v"): 1.0, ("d", "v"): 2.0,
             ("e", "v"): 1.0, ("f", "v"): 1.0}
    order = [target for target, _ in costliest_first(costs)]
    assert order == ["a", "d", "b", "c", "e", "f"]  # costliest first, ties by unit
    shuffled = dict(random.Random(7).sample(sorted(costs.items()), len(costs)))
    assert [target for target, _ in costliest_first(shuffled)] == order
    assert costliest_first({}) == []


def test_symbol_specific_units_come_before_cross_sectional_ones():
    """The 10-symbol benchmark data's routing: four targets in both views, two cross-sectional
    only. A SYMBOL_SPECIFIC unit costs about twice a CROSS_SECTIONAL one, so the parts claim
    those first and end on the short pieces (a part never waits long for the last one)."""
    routed = [(target, view) for target in ("r120", "r30", "r60", "peak")
              for view in ("CROSS_SECTIONAL", "SYMBOL_SPECIFIC")]
    routed += [("r15", "CROSS_SECTIONAL"), ("valley", "CROSS_SECTIONAL")]
    order = costliest_first({unit: VIEW_COST[unit[1]] for unit in routed})
    assert [view for _, view in order] == ["SYMBOL_SPECIFIC"] * 4 + ["CROSS_SECTIONAL"] * 6
    assert sorted(order) == sorted(routed)


@dataclasses.dataclass(frozen=True)
class _Result:
    items: tuple
    n_effective: int


def test_merge_parts_sorts_units_and_refuses_disagreeing_or_overlapping_parts():
    base = _Result(items=(), n_effective=10)
    parts = [_Result(items=(("b", 2), ("b", 1)), n_effective=10),
             _Result(items=(("a", 9),), n_effective=10)]
    merged = merge_parts(base, parts, "items", sort_key=lambda item: item)
    assert merged == _Result(items=(("a", 9), ("b", 1), ("b", 2)), n_effective=10)
    assert merge_parts(base, list(reversed(parts)), "items", lambda item: item) == merged
    assert merge_parts(base, [], "items", lambda item: item) == base
    with pytest.raises(ValueError, match="disagrees"):
        merge_parts(base, [*parts, _Result(items=(("c", 1),), n_effective=11)], "items",
                    lambda item: item)
    with pytest.raises(ValueError, match="computed twice"):
        merge_parts(base, [*parts, _Result(items=(("a", 9),), n_effective=10)], "items",
                    lambda item: item)


@pytest.mark.parametrize(("n_symbols", "per_piece", "sizes"), [
    (10, 12, [10]), (12, 12, [12]), (13, 12, [7, 6]), (50, 12, [10, 10, 10, 10, 10]),
    (6, 4, [3, 3]), (6, 1, [1] * 6)])
def test_symbol_groups_are_consecutive_near_equal_and_cover_every_symbol_once(
        n_symbols, per_piece, sizes):
    symbols = [f"S{i:02d}" for i in range(n_symbols)]
    groups = symbol_groups(list(reversed(symbols)), per_piece)
    assert [len(group) for group in groups] == sizes
    assert [symbol for group in groups for symbol in group] == symbols  # sorted, each once


def test_only_symbol_specific_units_of_many_symbols_split_into_groups_by_cost():
    units = [("a", "CROSS_SECTIONAL"), ("a", "SYMBOL_SPECIFIC")]
    few = [f"S{i:02d}" for i in range(SS_SYMBOLS_PER_PIECE)]
    assert piece_costs(units, few) == {unit: VIEW_COST[unit[1]] for unit in units}
    many = [f"S{i:02d}" for i in range(50)]
    costs = piece_costs(units, many)
    groups = symbol_groups(many)
    assert costs == {("a", "CROSS_SECTIONAL"): 1.0,
                     **{("a", "SYMBOL_SPECIFIC", *group): 0.4 for group in groups}}
    # the groups are claimed last: the parts end on pieces smaller than any whole unit
    assert costliest_first(costs)[0] == ("a", "CROSS_SECTIONAL")
    assert sum(costs.values()) == pytest.approx(sum(VIEW_COST[view] for _, view in units))


def test_cross_sectional_selection_units_split_into_main_fits_and_resamples():
    units = [("a", "CROSS_SECTIONAL"), ("a", "SYMBOL_SPECIFIC")]
    few = [f"S{i:02d}" for i in range(SS_SYMBOLS_PER_PIECE)]
    costs = selection_piece_costs(units, few)
    assert costs == {("a", "CROSS_SECTIONAL", "fits=main"): 0.5,
                     ("a", "CROSS_SECTIONAL", "fits=resamples"): 0.5,
                     ("a", "SYMBOL_SPECIFIC"): 2.0}
    assert [selection_share_of(key) for key in costliest_first(costs)] == [
        (("a", "SYMBOL_SPECIFIC"), (), ()),
        (("a", "CROSS_SECTIONAL"), (), ("main",)),
        (("a", "CROSS_SECTIONAL"), (), ("resamples",))]
    many = [f"S{i:02d}" for i in range(50)]
    groups = symbol_groups(many)
    assert {key: cost for key, cost in selection_piece_costs(units, many).items()
            if key[1] == "SYMBOL_SPECIFIC"} == {("a", "SYMBOL_SPECIFIC", *group): 0.4
                                                for group in groups}
    assert selection_share_of(("a", "SYMBOL_SPECIFIC", *groups[1])) == (
        ("a", "SYMBOL_SPECIFIC"), groups[1], ())


CS, SS = "CROSS_SECTIONAL", "SYMBOL_SPECIFIC"


def _horizon_registry():
    columns = [{"name": "ts", "role": "timestamp"},
               {"name": "f", "role": "feature", "timeframe": "5m", "lookback_bars": 1}]
    columns += [{"name": name, "role": "target", "task": "regression", "horizon_bars": bars,
                 "horizon_minutes": 5 * bars}
                for name, bars in (("a_3", 3), ("b_12", 12), ("c_3", 3), ("d_12", 12))]
    return registry_from_dict({"bar_minutes": 5, "interval": "5m", "columns": columns})


def test_pieces_share_a_bins_group_by_view_symbols_and_horizon_only():
    registry = _horizon_registry()
    group = functools.partial(fanout.bins_group, registry=registry)
    assert group(("a_3", SS)) == group(("c_3", SS)) != group(("b_12", SS))
    assert group(("a_3", SS)) != group(("a_3", CS))
    assert group(("a_3", SS, "S1", "S2")) == group(("c_3", SS, "S1", "S2"))
    assert group(("a_3", SS, "S1", "S2")) != group(("c_3", SS, "S3"))
    # a selection unit's main fits and resamples bin the same window
    assert group(("a_3", CS, "fits=main")) == group(("c_3", CS, "fits=resamples"))


def test_a_part_takes_its_last_pieces_group_first_and_keeps_the_cost_order():
    registry = _horizon_registry()
    costs = fanout.piece_costs([(t, v) for t in ("a_3", "b_12", "c_3", "d_12")
                                for v in (CS, SS)], ["S1", "S2"])
    remaining = [fanout.Piece((key[0], key[1]), None, key[2:],
                              fanout.bins_group(key, registry))
                 for key in fanout.costliest_first(costs)]
    taken, group = [], None
    while remaining:
        piece = fanout.next_piece(remaining, group)
        remaining.remove(piece)
        taken.append(piece.unit)
        group = piece.group
    # costliest first (SYMBOL_SPECIFIC), each horizon's targets one after the other
    assert taken == [("a_3", SS), ("c_3", SS), ("b_12", SS), ("d_12", SS),
                     ("a_3", CS), ("c_3", CS), ("b_12", CS), ("d_12", CS)]
    # without groups the order is the plain cost order
    plain = [fanout.Piece((key[0], key[1]), None, key[2:]) for key in fanout.costliest_first(costs)]
    assert fanout.next_piece(plain[1:], "") is plain[1]
