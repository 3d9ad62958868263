"""TARGET_RANKING on small hand-built panels, checked against independent references."""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from parity_pipeline.core.data.registry import registry_from_dict
from parity_pipeline.core.errors import ParityInputError
from parity_pipeline.core.hashing import sha256_json
from parity_pipeline.core.stages import cv, scoring
from parity_pipeline.core.stages import ranking as ranking_module
from parity_pipeline.core.stages.fanout import symbol_groups
from parity_pipeline.core.stages.ranking import (
    BLOCKED,
    BOTH,
    CROSS_SECTIONAL,
    SYMBOL_SPECIFIC,
    TABLE_COLUMNS,
    RankingConfig,
    RankingResult,
    TargetRoute,
    ViewScore,
    assemble_symbol_specific,
    check_history,
    cross_sectional_oof,
    plan_ranking,
    prepared_panel,
    rank_targets,
    ranking_table,
    route_target,
    routed_pairs,
    score_planned_share,
    score_planned_view,
    symbols_of,
)

BARS_PER_SESSION, HORIZON_BARS = 78, 3
FEATURES = ["leak_copy", "leak_label", "noise_1", "noise_2", "noise_3", "signal"]
MODELLED = {"fwd_ret_15m": "regression", "fwd_noise_15m": "regression", "y_up_15m": "binary",
            "fwd_sq_15m": "regression", "fwd_partial_15m": "regression"}
BLOCKED_EARLY = {"fwd_const_15m": "regression", "y_rare_15m": "binary",
                 "fwd_sparse_15m": "regression", "fwd_absent_15m": "regression"}
CONFIG = RankingConfig(n_estimators=60, ss_n_estimators=30)
SEED = 42


def _timestamps(n_bars: int) -> pd.DatetimeIndex:
    """5-minute bars, 78 per session from 14:30 UTC, on consecutive days."""
    index = np.arange(n_bars)
    stamps = (pd.Timestamp("2026-01-05 14:30", tz="UTC")
              + pd.to_timedelta(index // BARS_PER_SESSION, unit="D")
              + pd.to_timedelta(5 * (index % BARS_PER_SESSION), unit="min"))
    return stamps.as_unit("ns")  # the panel contract: datetime64[ns, UTC]


def _forward(values: np.ndarray) -> np.ndarray:
    """A forward label is unknown on the last HORIZON_BARS bars of each series."""
    out = values.astype(float).copy()
    out[-HORIZON_BARS:] = np.nan
    return out


def _symbol_frame(i: int, n_bars: int, rng: np.random.Generator) -> pd.DataFrame:
    signal = rng.normal(size=n_bars)
    ret = _forward(0.3 * signal + rng.normal(size=n_bars))
    y_up = _forward((0.5 * signal + rng.normal(size=n_bars) > 0).astype(float))
    sparse = np.where(np.arange(n_bars) % 25 == 0, rng.normal(size=n_bars), np.nan)
    rare = (np.arange(n_bars) % 400 == 7).astype(float)
    frame = pd.DataFrame({
        "symbol": f"S{i:02d}", "ts": _timestamps(n_bars), "close": 100 + rng.normal(size=n_bars),
        "signal": signal, "noise_1": rng.normal(size=n_bars), "noise_2": rng.normal(size=n_bars),
        "noise_3": rng.normal(size=n_bars),
        "leak_copy": ret + 1e-9 * rng.normal(size=n_bars), "leak_label": np.nan_to_num(y_up),
        "fwd_ret_15m": ret, "fwd_noise_15m": _forward(rng.normal(size=n_bars)), "y_up_15m": y_up,
        "fwd_sq_15m": _forward(signal**2 + 0.01 * rng.normal(size=n_bars)),
        "fwd_partial_15m": _forward(0.3 * signal + rng.normal(size=n_bars)),
        "fwd_const_15m": 0.0, "y_rare_15m": rare, "fwd_sparse_15m": sparse,
        "fwd_high_15m": np.abs(ret) + 0.001})
    if i == 0:
        frame["fwd_partial_15m"] = np.nan  # one symbol without this label at all
    return frame


def build_panel(n_symbols: int = 6, n_bars: int = 600, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = [_symbol_frame(i, n_bars, rng) for i in range(n_symbols)]
    frames[-1] = frames[-1].iloc[60:]  # unequal per-symbol counts, as after a late listing
    panel = pd.concat(frames).sort_values(["ts", "symbol"], kind="mergesort", ignore_index=True)
    return panel.astype({c: "float64" for c in panel.columns if c not in ("symbol", "ts")})


def registry_dict(targets: dict[str, str], horizon_minutes: int = 15) -> dict:
    columns = [{"name": "ts", "role": "timestamp"}, {"name": "close", "role": "ohlcv"},
               {"name": "fwd_high_15m", "role": "label_side", "horizon_minutes": 15}]
    columns += [{"name": name, "role": "feature", "timeframe": "5m", "lookback_bars": 1}
                for name in FEATURES]
    columns += [{"name": name, "role": "target", "task": task, "horizon_bars": HORIZON_BARS,
                 "horizon_minutes": horizon_minutes} for name, task in targets.items()]
    return {"interval": "5m", "bar_minutes": 5, "columns": columns}


@pytest.fixture(scope="module")
def panel() -> pd.DataFrame:
    return build_panel()


@pytest.fixture(scope="module")
def registry():
    return registry_from_dict(registry_dict(MODELLED | BLOCKED_EARLY))


@pytest.fixture(scope="module")
def result(panel, registry) -> RankingResult:
    before = panel.copy()
    ranked = rank_targets(panel, registry, CONFIG, SEED)
    pd.testing.assert_frame_equal(panel, before)  # the input is never mutated
    return ranked


def _score(result: RankingResult, target: str, view: str) -> ViewScore:
    return next(s for s in result.scores if s.target == target and s.view == view)


def _route(result: RankingResult, target: str) -> TargetRoute:
    return next(r for r in result.routes if r.target == target)


def test_planted_target_outranks_noise_and_routes(result):
    planted = _score(result, "fwd_ret_15m", CROSS_SECTIONAL)
    noise = _score(result, "fwd_noise_15m", CROSS_SECTIONAL)
    assert planted.eligible and planted.skill > noise.skill + 0.1
    assert planted.t_stat >= CONFIG.min_t_stat
    assert _route(result, "fwd_ret_15m").route != BLOCKED
    assert _route(result, "y_up_15m").route != BLOCKED
    assert _route(result, "fwd_noise_15m").route == BLOCKED
    assert _route(result, "fwd_noise_15m").reasons  # says why


def test_cross_sectional_ic_matches_scipy_per_timestamp(panel, registry, result):
    spec = registry.target("fwd_ret_15m")
    oof, folds = cross_sectional_oof(panel, spec, result.candidate_features, CONFIG, SEED)
    tested = oof.loc[oof["fold"] >= 0]
    ics = {}
    for ts, group in tested.groupby("ts"):
        if len(group) >= 3:
            ics[ts] = stats.spearmanr(group["pred"], group["target"]).statistic
    per_ts = pd.Series(ics)
    sessions = per_ts.groupby(per_ts.index.date).mean()
    score = _score(result, "fwd_ret_15m", CROSS_SECTIONAL)
    assert score.metric == "spearman_ic" and score.n_values == len(sessions)
    assert score.mean == pytest.approx(sessions.mean(), abs=1e-12)
    assert score.stderr == pytest.approx(sessions.std(ddof=1) / math.sqrt(len(sessions)))
    assert score.t_stat == pytest.approx(score.mean / score.stderr)
    assert score.n_effective == len(tested)
    purge = pd.Timedelta(minutes=15 + CONFIG.purge_buffer_minutes)
    assert score.split_signature == cv.split_signature(folds, purge, 3)  # 15m = 3 bars


def test_oof_predictions_never_come_from_a_model_that_saw_them(panel, registry, result):
    oof, folds = cross_sectional_oof(panel, registry.target("fwd_ret_15m"),
                                     result.candidate_features, CONFIG, SEED)
    purge = pd.Timedelta(minutes=15 + CONFIG.purge_buffer_minutes)
    for fold in folds:
        assert oof["ts"].iloc[fold.train_rows].max() < fold.test_start - purge
    assert oof["target"].notna().all()  # null-target rows dropped before modelling
    assert oof.loc[oof["fold"] < 0, "pred"].isna().all()  # the first block is never tested


def test_binary_auc_matches_sklearn(panel, registry, result):
    oof, _ = cross_sectional_oof(panel, registry.target("y_up_15m"), result.candidate_features,
                                 CONFIG, SEED)
    tested = oof.loc[oof["fold"] >= 0]
    aucs = [roc_auc_score(g["target"].astype(int), g["pred"]) for _, g in tested.groupby("fold")]
    score = _score(result, "y_up_15m", CROSS_SECTIONAL)
    assert score.metric == "auc" and score.n_values == len(aucs)
    assert score.mean == pytest.approx(np.mean(aucs), abs=1e-12)
    assert score.skill == pytest.approx(2 * np.mean(aucs) - 1)
    assert score.t_stat == pytest.approx((np.mean(aucs) - 0.5) / score.stderr)


def test_leaky_features_are_caught_and_excluded(result):
    found = {(f.feature, f.target, f.kind) for f in result.leaks}
    assert ("leak_copy", "fwd_ret_15m", "near_copy_corr") in found
    assert ("leak_label", "y_up_15m", "label_agreement") in found
    assert result.excluded_features == ("leak_copy", "leak_label")
    assert result.candidate_features == ("noise_1", "noise_2", "noise_3", "signal")


def _pair_by_pair_leak_scan(frame, labels, features, min_rows, leak_corr, leak_agreement):
    """The scan without its screen: every pair through the exact test."""
    return [(feature, label, kind, value) for label, task in labels.items()
            for feature in features
            for kind, value in scoring.leak_kinds(
                frame[feature].to_numpy(dtype=float), frame[label].to_numpy(dtype=float), task,
                min_rows, leak_corr, leak_agreement)]


@pytest.mark.parametrize("seed", range(6))
def test_the_screened_leak_scan_finds_what_the_pair_by_pair_scan_finds(seed):
    """Copies just above and just below each limit, with NaNs, a constant feature and a
    label with too few rows: the screen may only skip pairs the exact test would pass."""
    rng = np.random.default_rng(seed)
    n = 3000
    ret = rng.normal(size=n)
    label = (rng.random(n) < 0.5).astype(float)
    columns = {"ret": ret, "label": label, "sparse": np.where(np.arange(n) < 40, ret, np.nan),
               "constant": np.full(n, 3.0), "noise": rng.normal(size=n)}
    for i, noise in enumerate(np.linspace(0.13, 0.15, 9)):  # |corr| around 0.99
        columns[f"near_{i}"] = ret + noise * rng.normal(size=n) * rng.choice([-1, 1])
    for i, flips in enumerate((1, 2, 3, 4, 6)):  # agreement around 99.9 %
        flipped = label.copy()
        flipped[rng.choice(n, flips, replace=False)] = 1 - flipped[:flips]
        columns[f"agree_{i}"] = flipped + rng.uniform(-0.4, 0.4, n)
    frame = pd.DataFrame(columns)
    holes = rng.random(frame.shape) < 0.05
    frame = frame.mask(pd.DataFrame(holes, columns=frame.columns) & (frame.columns != "constant"))
    labels = {"label": "binary", "ret": "regression", "sparse": "regression"}
    features = sorted(name for name in frame.columns if name not in labels)
    args = (100, 0.99, 0.999)
    expected = _pair_by_pair_leak_scan(frame, labels, features, *args)
    assert scoring.leak_scan(frame, labels, features, *args) == expected
    kinds = {kind for _, _, kind, _ in expected}
    assert kinds == {"near_copy_corr", "label_agreement"}  # both limits were crossed
    assert any(name.startswith("near_") for name, *_ in expected)


def test_targets_and_label_side_are_never_candidates(result, registry):
    never = set(registry.target_names) | set(registry.label_side) | set(registry.other_columns)
    assert not never & set(result.candidate_features)
    assert set(result.candidate_features) <= set(registry.feature_names)


@pytest.mark.parametrize(("target", "reason"), [
    ("fwd_const_15m", "degenerate target: constant"),
    ("y_rare_15m", "degenerate target: minority class"),
    ("fwd_sparse_15m", "too few rows"),
    ("fwd_absent_15m", "target not in panel"),
    ("fwd_sq_15m", "suspected leak"),
])
def test_blocking_reasons(result, target, reason):
    for view in (CROSS_SECTIONAL, SYMBOL_SPECIFIC):
        score = _score(result, target, view)
        assert not score.eligible
        assert any(text.startswith(reason) for text in score.reasons), score.reasons
    assert _route(result, target).route == BLOCKED


def test_symbol_without_labels_is_skipped_not_blocking(result):
    score = _score(result, "fwd_partial_15m", SYMBOL_SPECIFIC)
    assert score.eligible
    assert score.reasons == ("too few rows: S00: 0 non-null < min_rows 300 (symbol skipped)",)
    assert score.n_values == 5 * CONFIG.ss_n_folds


def test_counts_are_what_the_stage_saw(panel, result):
    assert result.per_symbol_counts == panel.groupby("symbol").size().to_dict()
    assert result.per_symbol_counts["S05"] == 540
    assert result.n_effective == len(panel)
    assert result.train_seed == SEED
    assert result.config == dataclasses.asdict(CONFIG)
    assert result.null_target_rows["fwd_ret_15m"] == panel["fwd_ret_15m"].isna().sum() == 18
    assert "fwd_absent_15m" not in result.null_target_rows


def test_same_inputs_give_identical_results():
    panel = build_panel(n_symbols=4, n_bars=500, seed=3)
    registry = registry_from_dict(registry_dict({"fwd_ret_15m": "regression",
                                                 "y_up_15m": "binary"}))
    config = RankingConfig(n_folds=3, n_estimators=30, ss_n_folds=2, ss_n_estimators=20)
    first = rank_targets(panel, registry, config, SEED)
    shuffled = panel.sample(frac=1.0, random_state=0).reset_index(drop=True)
    second = rank_targets(shuffled, registry, config, SEED)
    assert sha256_json(first) == sha256_json(second)
    micros = panel.assign(ts=panel["ts"].dt.as_unit("us"))  # pandas 3 readers' default unit
    assert sha256_json(rank_targets(micros, registry, config, SEED)) == sha256_json(first)
    assert sha256_json(first) != sha256_json(rank_targets(panel, registry, config, SEED + 1))


def test_purge_at_least_span_raises():
    panel = build_panel(n_symbols=3, n_bars=400)
    registry = registry_from_dict(registry_dict({"fwd_ret_15m": "regression"},
                                                horizon_minutes=30 * 24 * 60))
    with pytest.raises(ParityInputError, match="purge"):
        rank_targets(panel, registry, CONFIG, SEED)


@pytest.mark.parametrize(("change", "match"), [
    (lambda p: p.assign(ts=p["ts"].dt.tz_localize(None)), "tz-aware UTC"),
    (lambda p: pd.concat([p, p.iloc[:1]], ignore_index=True), "duplicate"),
    (lambda p: p.drop(columns=["noise_1"]), "missing from the panel"),
])
def test_bad_panels_raise(panel, registry, change, match):
    with pytest.raises(ParityInputError, match=match):
        rank_targets(change(panel), registry, CONFIG, SEED)


def test_prepared_panel_sorts_by_time_not_file_order(panel):
    reordered = panel.iloc[::-1].reset_index(drop=True)
    pd.testing.assert_frame_equal(prepared_panel(reordered), panel)


def test_per_timestamp_ic_hand_case():
    ts = pd.to_datetime(["2026-01-05 15:00"] * 4 + ["2026-01-05 15:05"] * 3
                        + ["2026-01-05 15:10"] * 2, utc=True)
    pred = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 5.0, 5.0, 1.0, 2.0])
    target = np.array([0.1, 0.3, 0.2, 0.4, 1.0, 2.0, 3.0, 1.0, 2.0])
    ic = scoring.per_timestamp_ic(pd.Series(ts), pred, target)
    assert list(ic.index) == [ts[0]]  # constant predictions and a 2-symbol section are skipped
    assert ic.iloc[0] == pytest.approx(stats.spearmanr(pred[:4], target[:4]).statistic)
    assert ic.iloc[0] == pytest.approx(0.8)


def test_session_means_and_stderr_hand_case():
    stamps = pd.to_datetime(["2026-01-05 15:00", "2026-01-05 20:55", "2026-01-06 15:00",
                             "2026-01-07 15:00"], utc=True).as_unit("us")
    ic = pd.Series([0.1, 0.3, 0.5, -0.1], index=stamps)
    assert scoring.session_means(ic).tolist() == pytest.approx([0.2, 0.5, -0.1])
    # long horizons, longer blocks (anchored at the Unix epoch: day 20458 starts block 6819)
    assert scoring.session_means(ic, block_days=3).tolist() == pytest.approx([0.3, -0.1])
    mean, stderr, n_values = scoring.mean_stderr([0.2, 0.5, -0.1])
    assert (mean, n_values) == (pytest.approx(0.2), 3)
    assert stderr == pytest.approx(np.std([0.2, 0.5, -0.1], ddof=1) / math.sqrt(3))
    assert math.isnan(scoring.mean_stderr([0.2])[1])


def _view(target: str, view: str, skill: float, t_stat: float = 5.0,
          eligible: bool = True) -> ViewScore:
    return ViewScore(target, "regression", view, "spearman_ic", skill, 0.01, t_stat, skill, 10,
                     100, eligible, () if eligible else ("too few rows: 3 non-null",), "sig")


@pytest.mark.parametrize(("cs", "ss", "route"), [
    ((0.05, 5.0, True), (0.05, 5.0, True), BOTH),
    ((0.05, 5.0, True), (0.01, 5.0, True), CROSS_SECTIONAL),
    ((0.05, 1.5, True), (0.05, 2.0, True), SYMBOL_SPECIFIC),
    ((0.05, 5.0, False), (float("nan"), float("nan"), True), BLOCKED),
    ((0.02, 2.0, True), (-0.3, -9.0, True), CROSS_SECTIONAL),  # thresholds are inclusive
])
def test_routing_thresholds(registry, cs, ss, route):
    spec = registry.target("fwd_ret_15m")
    routed = route_target(spec, _view(spec.name, CROSS_SECTIONAL, *cs),
                          _view(spec.name, SYMBOL_SPECIFIC, *ss), CONFIG)
    assert routed.route == route
    assert bool(routed.reasons) == (route != BOTH)


def _hand_result() -> RankingResult:
    scores = (_view("b_target", CROSS_SECTIONAL, 0.05), _view("a_target", CROSS_SECTIONAL, 0.05),
              _view("c_target", CROSS_SECTIONAL, 0.09), _view("a_target", SYMBOL_SPECIFIC, 0.01),
              _view("b_target", SYMBOL_SPECIFIC, float("nan"), eligible=False),
              _view("c_target", SYMBOL_SPECIFIC, 0.04))
    routes = (TargetRoute("a_target", "regression", CROSS_SECTIONAL, 0.05, 0.01, ()),
              TargetRoute("b_target", "regression", BLOCKED, 0.05, float("nan"), ()),
              TargetRoute("c_target", "regression", BOTH, 0.09, 0.04, ()))
    return RankingResult(scores, routes, (), ("f",), (), 10, {"S": 10}, SEED,
                         dataclasses.asdict(CONFIG))


def test_ranking_table_sorted_with_ties_broken_by_name():
    table = ranking_table(_hand_result())
    assert tuple(table.columns) == TABLE_COLUMNS
    assert list(zip(table["view"], table["target"], strict=True)) == [
        (CROSS_SECTIONAL, "c_target"), (CROSS_SECTIONAL, "a_target"),
        (CROSS_SECTIONAL, "b_target"), (SYMBOL_SPECIFIC, "c_target"),
        (SYMBOL_SPECIFIC, "a_target"), (SYMBOL_SPECIFIC, "b_target")]
    assert table.loc[4, "reasons"] == "skill 0.0100 < min_skill 0.02"
    assert table.loc[5, "reasons"] == "too few rows: 3 non-null"


def test_routed_pairs_follow_routes():
    assert routed_pairs(_hand_result()) == (
        ("a_target", CROSS_SECTIONAL), ("c_target", CROSS_SECTIONAL),
        ("c_target", SYMBOL_SPECIFIC))


def test_real_result_table_and_pairs_agree(result):
    table = ranking_table(result)
    assert len(table) == 2 * len(MODELLED | BLOCKED_EARLY)
    pairs = routed_pairs(result)
    assert ("fwd_noise_15m", CROSS_SECTIONAL) not in pairs
    assert ("fwd_ret_15m", CROSS_SECTIONAL) in pairs
    assert list(pairs) == sorted(pairs)


def test_symbol_specific_stderr_never_below_the_no_signal_one():
    # 12 fold ICs that agree by chance: spread 0.01, mean 0.06 -> t = 20 without a floor
    values = [0.06 + 0.01 * (-1) ** i for i in range(12)]
    floor = scoring.null_stderr("regression", n_rows=6000, horizon_bars=12)
    assert floor == pytest.approx(1 / math.sqrt(500))
    _, stderr, t_stat, _, _ = scoring.skill_stats("regression", values, stderr_floor=floor)
    assert stderr == floor and t_stat == pytest.approx(0.06 / floor) and t_stat < 2
    auc_floor = scoring.null_stderr("binary", n_rows=6000, horizon_bars=12)
    assert auc_floor == pytest.approx(math.sqrt(1 / 1500))
    assert scoring.null_stderr("regression", n_rows=10, horizon_bars=12) == math.inf
    _, raw_stderr, _, _, _ = scoring.skill_stats("regression", values)
    assert raw_stderr < floor, "the floor is what changed the verdict"


@pytest.mark.parametrize(("values", "suspected"), [
    ([0.90, 0.80, 0.85, 0.88], True),    # implausible IC, significant: a leak
    ([0.90, -0.10, 0.90], False),        # as large on average, but |t| < 2: noise, not a leak
])
def test_suspected_leak_needs_skill_and_significance(values, suspected):
    from parity_pipeline.core.data.registry import TargetSpec
    from parity_pipeline.core.stages.ranking import _view_score

    spec = TargetSpec("fwd_x_15m", "regression", 3, 15, "close[t+3] / close[t] - 1")
    score = _view_score(spec, CROSS_SECTIONAL, values, 100, "sig", [], CONFIG)
    assert abs(score.skill) >= CONFIG.leak_skill
    assert any(r.startswith("suspected leak") for r in score.reasons) is suspected, score.reasons


def test_one_symbol_gets_no_cross_sectional_view(registry):
    ranked = rank_targets(build_panel(n_symbols=1), registry, CONFIG, SEED)
    cross = _score(ranked, "y_up_15m", CROSS_SECTIONAL)
    specific = _score(ranked, "y_up_15m", SYMBOL_SPECIFIC)
    assert not cross.eligible and cross.n_values == 0
    assert cross.reasons == ("too few symbols for a cross-section: 1 < 2 (min_cs_symbols)",)
    assert specific.n_values > 0 and not any("symbols" in r for r in specific.reasons)
    assert all(route.route in ("SYMBOL_SPECIFIC", "BLOCKED") for route in ranked.routes)


@pytest.mark.parametrize("per_piece", [1, 2, 4])
def test_symbol_specific_shares_join_into_the_whole_score_bit_for_bit(panel, registry,
                                                                      per_piece):
    """What the Dagster wiring does above SS_SYMBOLS_PER_PIECE symbols: each group of symbols
    scored on its own (in any order), then joined; modelled, blocked-early and partly labelled
    targets (a symbol skipped) all come out as the one-piece score."""
    frame = prepared_panel(panel)
    plan = plan_ranking(frame, registry, CONFIG)
    groups = symbol_groups(symbols_of(frame), per_piece)
    for target in plan.targets:
        whole = score_planned_view(frame, registry, plan, target, SYMBOL_SPECIFIC, SEED)
        shares = [score_planned_share(frame, registry, plan, target, group, SEED)
                  for group in reversed(groups)]
        joined = assemble_symbol_specific(frame, registry, plan, target, shares)
        assert repr(joined) == repr(whole)  # repr: a float's shortest round trip; nan == nan
    skipped = _score(rank_targets(panel, registry, CONFIG, SEED), "fwd_partial_15m",
                     SYMBOL_SPECIFIC)
    assert any("symbol skipped" in reason for reason in skipped.reasons)  # covered above


def test_symbol_specific_shares_that_overlap_or_leave_a_symbol_out_are_refused(panel,
                                                                                registry):
    frame = prepared_panel(panel)
    plan = plan_ranking(frame, registry, CONFIG)
    first, second, *rest = symbol_groups(symbols_of(frame), 2)
    share = {group: score_planned_share(frame, registry, plan, "fwd_ret_15m", group, SEED)
             for group in (first, second, *rest)}
    with pytest.raises(ValueError, match="not each of the panel's symbols"):
        assemble_symbol_specific(frame, registry, plan, "fwd_ret_15m",
                                 [share[group] for group in (first, *rest)])
    with pytest.raises(ValueError, match="not each of the panel's symbols"):
        assemble_symbol_specific(frame, registry, plan, "fwd_ret_15m",
                                 [share[first], *share.values()])
    other = score_planned_share(frame, registry, plan, "fwd_noise_15m", first, SEED)
    with pytest.raises(ValueError, match="include another target's"):
        assemble_symbol_specific(frame, registry, plan, "fwd_ret_15m",
                                 [other, *(share[group] for group in (second, *rest))])


def _horizon_registry(horizons: dict[str, tuple[int, int]]):
    """Targets by name -> (horizon_minutes, horizon_bars)."""
    spec = registry_dict({})
    spec["columns"] += [{"name": name, "role": "target", "task": "regression",
                         "horizon_minutes": minutes, "horizon_bars": bars}
                        for name, (minutes, bars) in horizons.items()]
    return registry_from_dict(spec)


def test_history_is_checked_once_per_purge_and_horizon_naming_the_first_target_refused(
        monkeypatch):
    """Targets sharing a purge and horizon share their folds, so each pair is checked once; a
    longer one is still checked, and the refusal names the first target (registry order)."""
    shared = {"fwd_a_15m": (15, 3), "fwd_b_15m": (15, 3)}
    long_horizon = {"fwd_week": (7 * 1440, 7 * BARS_PER_SESSION)}
    windows = {"S00": _timestamps(600), "S01": _timestamps(600)}
    calls = []
    real = ranking_module.purged_walk_forward
    monkeypatch.setattr(ranking_module, "purged_walk_forward",
                        lambda *args, **kwargs: calls.append(1) or real(*args, **kwargs))
    check_history(windows, _horizon_registry(shared), CONFIG, 600)
    assert len(calls) == 2 + 1, "each symbol and the pooled panel once for the two targets"
    with pytest.raises(ParityInputError, match=r"symbol S00: 600 rows .* target fwd_week"):
        check_history(windows, _horizon_registry(shared | long_horizon), CONFIG, 600)
    short = {"S00": _timestamps(600), "S01": _timestamps(30)}
    with pytest.raises(ParityInputError, match=r"symbol S01: 30 rows .* target fwd_a_15m"):
        check_history(short, _horizon_registry(shared | long_horizon), CONFIG, 600)
