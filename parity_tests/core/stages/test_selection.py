"""Feature selection and stability on a hand-built panel with planted signal features."""

import dataclasses
import itertools

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kendalltau

from parity_pipeline.core import hashing
from parity_pipeline.core.data.registry import registry_from_dict
from parity_pipeline.core.errors import ParityInputError
from parity_pipeline.core.stages import selection, stability
from parity_pipeline.core.stages.fanout import symbol_groups

CS, SS = "CROSS_SECTIONAL", "SYMBOL_SPECIFIC"
SIGNAL = ("sig_a", "sig_b")
NOISE = tuple(f"noise_{i}" for i in range(6))
CONSTANT = ("const_b", "const_a")  # identical constant columns: an exact tie
FEATURES = SIGNAL + NOISE + CONSTANT
FAST = selection.SelectionConfig(top_k=3, n_resamples=5, lgbm_n_estimators=40,
                                 et_n_estimators=40, resample_n_estimators=15)


def make_panel(n_symbols: int = 6, n_bars: int = 600, seed: int = 7) -> pd.DataFrame:
    """Symbols × 5-minute bars; ``fwd`` = 0.6·sig_a + 0.4·sig_b + noise, ``up`` = planted label."""
    rng = np.random.default_rng(seed)
    ts = pd.date_range("2025-03-03 14:30", periods=n_bars, freq="5min", tz="UTC").as_unit("ns")
    frames = []
    for i in range(n_symbols):
        columns = {name: rng.standard_normal(n_bars) for name in SIGNAL + NOISE}
        columns.update({name: np.full(n_bars, 1.5) for name in CONSTANT})
        columns["noise_0"][rng.random(n_bars) < 0.05] = np.nan  # NaNs are filled, not dropped
        fwd = 0.6 * columns["sig_a"] + 0.4 * columns["sig_b"] + 0.6 * rng.standard_normal(n_bars)
        up = (columns["sig_a"] + 0.7 * rng.standard_normal(n_bars) > 0).astype(float)
        fwd[-3:], up[-3:] = np.nan, np.nan  # the horizon runs past the last bar
        frames.append(pd.DataFrame({"symbol": f"SYM{i}", "ts": ts, **columns, "fwd": fwd,
                                    "up": up}))
    panel = pd.concat(frames).sort_values(["ts", "symbol"], kind="mergesort")
    return panel.reset_index(drop=True)


def make_registry():
    columns = [{"name": "ts", "role": "timestamp"}]
    columns += [{"name": f, "role": "feature", "timeframe": "5m", "lookback_bars": 1}
                for f in FEATURES]
    columns += [{"name": "fwd", "role": "target", "task": "regression", "horizon_bars": 3,
                 "horizon_minutes": 15},
                {"name": "up", "role": "target", "task": "binary", "horizon_bars": 3,
                 "horizon_minutes": 15}]
    return registry_from_dict({"bar_minutes": 5, "interval": "5m", "columns": columns})


@pytest.fixture(scope="module")
def panel() -> pd.DataFrame:
    return make_panel()


@pytest.fixture(scope="module")
def result(panel) -> selection.SelectionResult:
    routed = [("fwd", CS), ("fwd", SS), ("up", CS), ("up", SS)]
    return selection.select_features(panel, make_registry(), routed, FEATURES, FAST, 42)


def _pick(result, target, view) -> selection.TargetSelection:
    return next(s for s in result.selections if (s.target, s.view) == (target, view))


@pytest.mark.parametrize("view", [CS, SS])
def test_signal_features_rank_top_and_noise_does_not(result, view):
    regression, binary = _pick(result, "fwd", view), _pick(result, "up", view)
    assert set(regression.selected[:2]) == set(SIGNAL)
    assert binary.selected[0] == "sig_a"
    assert not set(regression.selected[:2]) & set(NOISE + CONSTANT)


def test_each_family_is_normalized_and_consensus_is_their_weighted_mean(result):
    for sel in result.selections:
        for family in selection.FAMILIES:
            assert sum(i.per_family[family] for i in sel.importances) == pytest.approx(1, 1e-12)
        for imp in sel.importances:
            expected = np.mean([imp.per_family[f] for f in selection.FAMILIES])
            assert imp.consensus == pytest.approx(expected, abs=1e-15)


def test_family_weights_steer_the_consensus(panel):
    config = dataclasses.replace(FAST, family_weights=(("linear_coef", 2.0),), n_resamples=2)
    sel = selection.select_features(panel, make_registry(), [("fwd", CS)], FEATURES, config,
                                    42).selections[0]
    assert all(i.consensus == pytest.approx(i.per_family["linear_coef"]) for i in sel.importances)
    assert set(sel.importances[0].per_family) == {"linear_coef"}


def test_exact_ties_are_broken_by_feature_name(result):
    assert selection.rank_features(["b", "c", "a"], np.array([1.0, 0.0, 1.0])) == ["a", "b", "c"]
    for sel in result.selections:
        by_name = {i.feature: i for i in sel.importances}
        tied_a, tied_b = by_name["const_a"], by_name["const_b"]
        assert tied_a.consensus == tied_b.consensus  # exact, not approximate
        assert tied_b.rank == tied_a.rank + 1


def test_top_k_and_candidate_set_are_recorded_apart(result):
    for sel in result.selections:
        assert sel.candidates == tuple(sorted(FEATURES))
        assert len(sel.selected) == FAST.top_k and sel.selected != sel.candidates
        assert sel.selected == tuple(i.feature for i in sel.importances[:FAST.top_k])
        assert [i.rank for i in sel.importances] == list(range(1, len(FEATURES) + 1))
        assert [i.selected for i in sel.importances].count(True) == FAST.top_k


def test_top_k_above_candidate_count_selects_all(panel):
    config = dataclasses.replace(FAST, top_k=50, n_resamples=2)
    sel = selection.select_features(panel, make_registry(), [("fwd", CS)], list(SIGNAL),
                                    config, 42).selections[0]
    assert sel.selected == ("sig_a", "sig_b") or sel.selected == ("sig_b", "sig_a")
    assert np.isnan(sel.stability.nogueira_phi)  # Φ is undefined when every feature is kept


def test_symbol_specific_averages_each_family_over_single_symbol_fits(panel):
    config = dataclasses.replace(FAST, n_resamples=2)
    registry = make_registry()
    pooled = selection.select_features(panel, registry, [("fwd", SS)], FEATURES, config, 42)
    singles = [selection.select_features(panel[panel["symbol"] == sym], registry,
                                         [("fwd", CS)], FEATURES, config, 42).selections[0]
               for sym in sorted(panel["symbol"].unique())]
    for imp in pooled.selections[0].importances:
        for family in selection.FAMILIES:
            expected = np.mean([next(i.per_family[family] for i in s.importances
                                     if i.feature == imp.feature) for s in singles])
            assert imp.per_family[family] == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_counts_split_and_result_are_canonical_and_deterministic(panel, result):
    assert result.n_effective == len(panel) and result.train_seed == 42
    assert result.per_symbol_counts == {f"SYM{i}": 600 for i in range(6)}
    for sel in result.selections:
        assert sel.n_effective == sum(sel.per_symbol_counts.values()) < len(panel)
        assert len(sel.split_signature) == 64
    routed = [("up", SS), ("fwd", SS), ("up", CS), ("fwd", CS)]  # order must not matter
    again = selection.select_features(panel, make_registry(), routed, FEATURES[::-1], FAST, 42)
    assert hashing.sha256_json(again) == hashing.sha256_json(result)


def test_selection_table_has_one_row_per_feature(result):
    table = selection.selection_table(result)
    assert len(table) == 4 * len(FEATURES)
    assert list(table.columns) == ["target", "view", "feature", "rank", "consensus",
                                   *sorted(selection.FAMILIES), "selected"]
    assert table.groupby(["target", "view"])["selected"].sum().eq(FAST.top_k).all()


@pytest.mark.parametrize(("routed", "candidates", "match"), [
    ([("fwd", CS)], ["sig_a", "fwd"], "undeclared"),
    ([("fwd", "BOTH")], list(FEATURES), "view must be one of"),
    ([("fwd", CS)], [], "non-empty"),
])
def test_bad_inputs_raise(panel, routed, candidates, match):
    with pytest.raises(ParityInputError, match=match):
        selection.select_features(panel, make_registry(), routed, candidates, FAST, 42)


def test_single_class_binary_target_names_the_unit(panel):
    one_class = panel.assign(up=panel["up"].where(panel["up"].isna(), 1.0))
    with pytest.raises(ParityInputError, match="target=up, view=SYMBOL_SPECIFIC, symbol=SYM0"):
        selection.select_features(one_class, make_registry(), [("up", SS)], FEATURES, FAST, 42)


def test_identical_selections_are_perfectly_stable():
    scores = [[0.5, 0.3, 0.2, 0.0]] * 4
    stats = stability.selection_stability(("a", "b", "c", "d"), [["a", "b"]] * 4, scores)
    assert (stats.jaccard_at_k, stats.kendall_tau, stats.nogueira_phi) == (1.0, 1.0, 1.0)


def test_hand_made_stability_matches_the_formulas():
    candidates = ("a", "b", "c", "d")
    selections = [["a", "b"], ["a", "c"], ["a", "b"]]
    scores = [[0.4, 0.3, 0.2, 0.1], [0.4, 0.2, 0.3, 0.1], [0.5, 0.2, 0.1, 0.2]]
    stats = stability.selection_stability(candidates, selections, scores)
    # p = (1, 2/3, 1/3, 0); s² = 3/2·p(1-p) = (0, 1/3, 1/3, 0); k̄/d = 1/2 -> Φ = 1 - (1/6)/(1/4)
    assert stats.nogueira_phi == pytest.approx(1 / 3, abs=1e-12)
    assert stats.jaccard_at_k == pytest.approx((1 / 3 + 1 + 1 / 3) / 3, abs=1e-12)
    taus = [kendalltau(a, b).statistic for a, b in itertools.combinations(scores, 2)]
    assert stats.kendall_tau == pytest.approx(np.mean(taus), abs=1e-12)
    assert stats.n_resamples == 3


def test_stability_needs_two_resamples():
    with pytest.raises(ParityInputError, match=">= 2 resamples"):
        stability.selection_stability(("a",), [["a"]], [[1.0]])


LIGHT = dataclasses.replace(FAST, n_resamples=2)


@pytest.mark.parametrize("per_piece", [1, 4])
def test_symbol_specific_shares_join_into_the_whole_selection_bit_for_bit(panel, per_piece):
    """What the Dagster wiring does above SS_SYMBOLS_PER_PIECE symbols: each group of symbols
    fitted on its own (in any order, one symbol without labels), then joined: the importances,
    top-K and stability of the one-piece selection."""
    unlabelled = panel.assign(fwd=panel["fwd"].where(panel["symbol"] != "SYM0"))
    registry = make_registry()
    groups = symbol_groups(sorted(panel["symbol"].unique()), per_piece)
    for frame, unit in ((panel, ("fwd", SS)), (panel, ("up", SS)), (unlabelled, ("fwd", SS))):
        whole = selection.select_features(frame, registry, [unit], FEATURES, LIGHT, 42)
        shares = [selection.select_share(frame, registry, unit, group, FEATURES, LIGHT, 42)
                  for group in reversed(groups)]
        joined = selection.selection_from_shares(frame, registry, unit, FEATURES, LIGHT, 42,
                                                 shares)
        assert repr(joined) == repr(whole)


def test_selection_shares_that_overlap_skip_or_interleave_symbols_are_refused(panel):
    registry = make_registry()
    symbols = sorted(panel["symbol"].unique())

    def share(group):
        return selection.select_share(panel, registry, ("fwd", SS), group, FEATURES, LIGHT, 42)

    first, second, third = symbol_groups(symbols, 2)
    for shares in ([share(first), share(second)],  # one group missing
                   [share(first), share(first), share(second), share(third)],  # twice
                   [share(symbols[0::2]), share(symbols[1::2])]):  # not consecutive
        with pytest.raises(ValueError, match="not each of the panel's symbols"):
            selection.selection_from_shares(panel, registry, ("fwd", SS), FEATURES, LIGHT, 42,
                                            shares)
    other = selection.select_share(panel, registry, ("up", SS), first, FEATURES, LIGHT, 42)
    with pytest.raises(ValueError, match="include another unit's"):
        selection.selection_from_shares(panel, registry, ("fwd", SS), FEATURES, LIGHT, 42,
                                        [other, share(second), share(third)])
    with pytest.raises(ValueError, match="only a SYMBOL_SPECIFIC unit has symbol groups"):
        selection.select_share(panel, registry, ("fwd", CS), first, FEATURES, LIGHT, 42)


@pytest.mark.parametrize("unit", [("fwd", CS), ("up", CS), ("fwd", SS)])
def test_main_fits_and_resamples_computed_apart_join_into_the_whole_selection(panel, unit):
    """What the Dagster wiring does with a CROSS_SECTIONAL unit: its main fits and its
    stability resamples as two pieces, joined: the one-piece selection to the bit."""
    registry = make_registry()
    whole = selection.select_features(panel, registry, [unit], FEATURES, LIGHT, 42)
    shares = [selection.select_share(panel, registry, unit, (), FEATURES, LIGHT, 42, (fits,))
              for fits in reversed(selection.FITS)]
    assert [share.holds("main") for share in shares] == [False, True]
    assert shares[0].resamples is not None and len(shares[0].resamples) == LIGHT.n_resamples
    joined = selection.selection_from_shares(panel, registry, unit, FEATURES, LIGHT, 42, shares)
    assert repr(joined) == repr(whole)


def test_shares_missing_or_repeating_fits_are_refused(panel):
    registry = make_registry()
    unit = ("fwd", CS)

    def share(*fits):
        return selection.select_share(panel, registry, unit, (), FEATURES, LIGHT, 42, fits)

    main, resamples = share("main"), share("resamples")
    for shares in ([main], [resamples], [main, main, resamples], [share(*selection.FITS), main]):
        with pytest.raises(ValueError, match="not each of the panel's symbols"):
            selection.selection_from_shares(panel, registry, unit, FEATURES, LIGHT, 42, shares)
    for fits in ((), ("main", "main"), ("importances",)):
        with pytest.raises(ValueError, match="computes some of"):
            share(*fits)
