"""Feature selection: a weighted consensus of three importance families (DESIGN §4, stage FS).

For each routed ``(target, view)``:

1. Rows with a non-null target are split by ``cv.purged_walk_forward`` (purge = target horizon +
   buffer). Every family is fitted on the training window of the **last** fold, so the last test
   block is never seen by selection.
2. Feature NaNs are filled with medians of that training window (per symbol for
   SYMBOL_SPECIFIC): statistics come from training rows only, so later rows cannot leak in. A
   feature that is NaN on every training row is filled with 0 (a constant, zero importance).
3. Families: LightGBM split gain, ExtraTrees impurity decrease, and ``|coef|`` of Ridge
   (regression) / LogisticRegression (binary) on features standardized with training-window
   statistics. Each family's vector is normalized to sum 1 *before* weighting, because the raw
   scales (gain in loss units, impurity shares, coefficients) are not comparable (DESIGN §8).
   An all-zero vector (e.g. LightGBM made no split) becomes uniform: that family expresses no
   preference, and a vector still summing to 1 keeps the families on the same footing.
4. SYMBOL_SPECIFIC: each symbol is fitted alone; each family's normalized vector is averaged over
   symbols (sorted) before the consensus.
5. Ranked by consensus, descending, ties broken by feature name; the first ``top_k`` are selected.
6. Stability: ``n_resamples`` timestamp-block bootstraps of the same training window (blocks of
   consecutive timestamps keep autocorrelated rows together; seeds from ``derive_seed(base_seed,
   "FEATURE_SELECTION", target, view, purpose="resample<i>")``). For speed the resamples use
   ``resample_n_estimators`` trees per tree family instead of the full model size; the reported
   stability therefore describes the selection procedure with lighter tree ensembles. LightGBM
   bins a resample's rows with the window's bin edges (``binned.Matrix.resampled``: built once
   for the main fit), so a resample varies the rows and nothing else.

Model seeds are ``base_seed`` everywhere (LightGBM ``seed``, ExtraTrees ``random_state``);
LightGBM runs ``deterministic``/``force_row_wise`` on ``constants.LIGHTGBM_NUM_THREADS`` threads and
BLAS on one thread, so results do not depend on the host's core count. ``family_weights`` may
name a subset of ``FAMILIES``; only the named families are fitted and reported.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.ensemble import ExtraTreesClassifier, ExtraTreesRegressor
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from parity_pipeline import constants
from parity_pipeline.core.data.registry import FeatureRegistry, TargetSpec
from parity_pipeline.core.errors import ParityInputError
from parity_pipeline.core.hashing import derive_seed, to_canonical
from parity_pipeline.core.stages import binned, cv
from parity_pipeline.core.stages.panel import (
    LOGISTIC_SOLVER,
    checked_panel,
    fit_columns,
    require_each_symbol_once,
    symbol_counts,
    symbols_of,
    target_rows,
)
from parity_pipeline.core.stages.progress import Report, UnitProgress
from parity_pipeline.core.stages.stability import StabilityStats, selection_stability
from parity_pipeline.core.store import reuse

logger = logging.getLogger(__name__)

STAGE = "FEATURE_SELECTION"
FAMILIES = ("extra_trees", "lightgbm_gain", "linear_coef")
MIN_FIT_ROWS = 50
# what a share of a unit computes: its main fits, its stability resamples, or both
FITS = ("main", "resamples")


@dataclass(frozen=True)
class SelectionConfig:
    top_k: int = constants.TOP_K_FEATURES
    # 3 resamples, not 5: on the default sample the mean Jaccard@K / Kendall tau / Nogueira
    # phi move by <= 0.004 (0.944/0.801/0.926 with 5; 0.946/0.805/0.929 with 3) and every
    # top-K is the same, for 31% less selection CPU (README, Performance)
    n_resamples: int = 3
    family_weights: tuple[tuple[str, float], ...] = (
        ("extra_trees", 1.0), ("lightgbm_gain", 1.0), ("linear_coef", 1.0))
    purge_buffer_minutes: int = 30
    n_folds: int = 4
    # 50 trees (LightGBM at twice the learning rate) instead of 100: on the default sample every
    # top-K set is the same and the stability means move by <= 0.007, for 25% less selection
    # CPU (README, Performance); the importances only have to rank the candidates
    lgbm_n_estimators: int = 50
    lgbm_num_leaves: int = 15
    lgbm_learning_rate: float = 0.1
    lgbm_min_child_samples: int = 50
    lgbm_max_bin: int = 63  # coarser histograms: ~2x faster, ample resolution for a ranking
    et_n_estimators: int = 50
    et_max_depth: int = 8
    et_min_samples_leaf: int = 20
    et_max_features: str | float = "sqrt"  # features tried per split; sqrt keeps ET fast
    ridge_alpha: float = 1.0
    logistic_C: float = 1.0
    # lighter tree ensembles in the stability resamples: 15 trees, not 25, for 18% less selection
    # CPU; the main fits (so every top-K and its order) are unchanged, the stability means read
    # lower as the lighter ensembles add their own noise (default sample: Jaccard@K / Kendall
    # tau / Nogueira phi 0.944/0.812/0.926 with 25 trees, 0.925/0.803/0.902 with 15;
    # docs/architecture.md)
    resample_n_estimators: int = 15
    resample_blocks: int = 20  # timestamp blocks per bootstrap

    def weights(self) -> dict[str, float]:
        weights = {str(k): float(v) for k, v in dict(self.family_weights).items()}
        unknown = sorted(set(weights) - set(FAMILIES))
        if unknown or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ParityInputError(f"family_weights {weights} must use families {list(FAMILIES)}"
                                   f" (unknown: {unknown}) with weights >= 0 and a positive sum")
        return {family: weights[family] for family in sorted(weights)}


@dataclass(frozen=True)
class FeatureImportance:
    feature: str
    rank: int  # 1-based
    consensus: float
    per_family: dict[str, float]  # each family normalized to sum 1 over the candidates
    selected: bool


@dataclass(frozen=True)
class TargetSelection:
    target: str
    task: str
    view: str
    candidates: tuple[str, ...]  # the input set, sorted
    selected: tuple[str, ...]  # top K in rank order
    importances: tuple[FeatureImportance, ...]  # rank order
    stability: StabilityStats
    n_effective: int  # training rows (non-null target) the families were fitted on
    per_symbol_counts: dict[str, int]
    split_signature: str
    hyperparameters: dict


@dataclass(frozen=True)
class SelectionResult:
    selections: tuple[TargetSelection, ...]  # sorted by (target, view)
    n_effective: int  # panel rows seen
    per_symbol_counts: dict[str, int]  # panel rows per symbol
    train_seed: int
    config: dict


@dataclass(frozen=True)
class SelectionShare:
    """Some symbols' share of one (target, view) selection: each family's normalized importances
    of each fit (one per symbol with training rows, in symbol order; one pooled fit for
    CROSS_SECTIONAL), for the main fits, for every stability resample, or both. Shares of
    consecutive symbol groups, joined in order, hold the fits of the whole unit; a
    CROSS_SECTIONAL unit (one pooled fit of every symbol) splits only into its main fits and
    its resamples."""

    target: str
    view: str
    symbols: tuple[str, ...]  # the group it was given (every panel symbol: the whole unit)
    # family -> one normalized vector per fit; None: another share holds the main fits
    main: dict[str, tuple[np.ndarray, ...]] | None
    # one such dict per resample; None: another share holds the resamples
    resamples: tuple[dict[str, tuple[np.ndarray, ...]], ...] | None

    def holds(self, fits: str) -> bool:
        return (self.main if fits == "main" else self.resamples) is not None


@dataclass(frozen=True)
class _Fit:
    """One group's training rows, NaNs filled: what every family is fitted on."""

    where: str  # "target=..., view=..., symbol=..." for error messages
    features: np.ndarray
    target: np.ndarray
    ts: np.ndarray  # int64 timestamps, for block bootstraps
    # the group's whole window, binned once for LightGBM, and which of its rows this fit takes
    # (None: all; a resample's rows, in the window's bins: binned module doc)
    window: binned.Matrix
    rows: np.ndarray | None = None


def select_features(panel: pd.DataFrame, registry: FeatureRegistry,
                    routed: Sequence[tuple[str, str]], candidate_features: Sequence[str],
                    config: SelectionConfig, base_seed: int,
                    report: Report | None = None) -> SelectionResult:
    """Consensus top-K features for every routed ``(target, view)`` on the same panel."""
    frame = checked_panel(panel)
    candidates = _checked_candidates(frame, registry, candidate_features)
    units = _checked_units(frame, sorted({(str(t), str(v)) for t, v in routed}))
    # One BLAS thread: a multi-threaded reduction order depends on the host's cores, and on a
    # busy host OpenBLAS threads slow the linear fits by ~100x.
    progress = UnitProgress("FEATURE_SELECTION", len(units), "target x view units", report)
    selections = []
    with threadpool_limits(limits=1, user_api="blas"), reuse.panel_digests(panel), \
            binned.shared():
        for target, view in units:
            spec = registry.target(target)
            with reuse.current().unit(reuse.unit_label(STAGE, target, view)):
                selections.append(_reused_select_one(
                    frame, fit_columns(panel, spec, candidates), spec, view, candidates,
                    config, base_seed))
            progress.done(f"{target} {view}")
    return _result(frame, selections, config, base_seed)


def _result(panel: pd.DataFrame, selections: Sequence[TargetSelection], config: SelectionConfig,
            base_seed: int) -> SelectionResult:
    return SelectionResult(selections=tuple(selections), n_effective=len(panel),
                           per_symbol_counts=symbol_counts(panel), train_seed=int(base_seed),
                           config=to_canonical(config))


def select_share(panel: pd.DataFrame, registry: FeatureRegistry, unit: tuple[str, str],
                 symbols: Sequence[str], candidate_features: Sequence[str],
                 config: SelectionConfig, base_seed: int,
                 fits: Sequence[str] = FITS) -> SelectionShare:
    """The ``fits`` (``FITS``: the main fits, the stability resamples) of ``symbols`` (a group
    of the panel's, sorted; empty: every symbol) for one unit: a piece of the Dagster wiring. A
    SYMBOL_SPECIFIC unit is split by symbols when the panel has more than
    ``fanout.SS_SYMBOLS_PER_PIECE``, a CROSS_SECTIONAL one (a pooled fit of every symbol) only
    by fits. Reused like a whole unit (``_reused_select_one``), keyed by its share too."""
    frame = checked_panel(panel)
    candidates = _checked_candidates(frame, registry, candidate_features)
    (target, view), = _checked_units(frame, [unit])
    group = sorted(symbols) or list(symbols_of(frame))
    if view != "SYMBOL_SPECIFIC" and group != list(symbols_of(frame)):
        raise ValueError(f"only a SYMBOL_SPECIFIC unit has symbol groups, not ({target}, {view}):"
                         " a pooled model is one fit of every symbol")
    held = tuple(kind for kind in FITS if kind in fits)
    if not held or len(held) != len(fits):
        raise ValueError(f"a selection share computes some of {list(FITS)}, not {list(fits)}")
    spec = registry.target(target)
    with threadpool_limits(limits=1, user_api="blas"), \
            reuse.current().unit(reuse.unit_label(STAGE, target, view)):
        return reuse.reused_or_computed(
            "selection.share", {"spec": spec, "view": view, "candidates": candidates,
                                "config": config, "seed": base_seed,
                                # even a symbol group reads every symbol's ts and target
                                # (the training window and bootstrap blocks are the panel's)
                                "data": fit_columns(panel, spec, candidates),
                                "symbols": group, "fits": list(held)},
            lambda: _share(_training_window(frame, spec, config)[0], spec, view, candidates,
                           config, base_seed, group, held))


def selection_from_shares(panel: pd.DataFrame, registry: FeatureRegistry,
                          unit: tuple[str, str], candidate_features: Sequence[str],
                          config: SelectionConfig, base_seed: int,
                          shares: Sequence[SelectionShare]) -> SelectionResult:
    """The unit's selection joined from its shares (in any order): for its main fits and for
    its resamples, shares of consecutive symbol groups covering each of the panel's symbols
    once. The result ``select_features`` gives for that unit, to the bit."""
    panel = checked_panel(panel)
    candidates = _checked_candidates(panel, registry, candidate_features)
    (target, view), = _checked_units(panel, [unit])
    if any((share.target, share.view) != (target, view) for share in shares):
        raise ValueError(f"selection shares of ({target}, {view}) include another unit's")
    for kind in FITS:
        require_each_symbol_once((share.symbols for share in shares if share.holds(kind)),
                                 symbols_of(panel),
                                 f"selection shares of ({target}, {view}) holding its {kind} fits")
    spec = registry.target(target)
    train, fold, purge = _training_window(panel, spec, config)
    return _result(panel, [_from_shares(train, fold, purge, spec, view, candidates, config,
                                        shares)], config, base_seed)


def selection_table(result: SelectionResult) -> pd.DataFrame:
    """One row per target × view × feature with rank, consensus, each family and ``selected``."""
    families = sorted(dict.fromkeys(f for s in result.selections for i in s.importances
                                    for f in i.per_family))
    rows = [{"target": s.target, "view": s.view, "feature": imp.feature, "rank": imp.rank,
             "consensus": imp.consensus, **{f: imp.per_family.get(f) for f in families},
             "selected": imp.selected}
            for s in result.selections for imp in s.importances]
    columns = ["target", "view", "feature", "rank", "consensus", *families, "selected"]
    return pd.DataFrame(rows, columns=columns)


def rank_features(names: Sequence[str], scores: np.ndarray) -> list[str]:
    """Names by score descending; equal scores in name order (deterministic, no hash())."""
    order = sorted(range(len(names)), key=lambda i: (-float(scores[i]), names[i]))
    return [names[i] for i in order]


def _reused_select_one(panel: pd.DataFrame, data: reuse.SharedInput, spec: TargetSpec,
                       view: str, candidates: tuple[str, ...], config: SelectionConfig,
                       base_seed: int) -> TargetSelection:
    """``_select_one``, reused when the columns it reads (``data``), the config and the seed
    are the same as in an earlier run (``core.store.reuse``)."""
    return reuse.reused_or_computed(
        "selection.select_one", {"spec": spec, "view": view, "candidates": candidates,
                                 "config": config, "seed": base_seed, "data": data},
        lambda: _select_one(panel, spec, view, candidates, config, base_seed))


def _select_one(panel: pd.DataFrame, spec: TargetSpec, view: str, candidates: tuple[str, ...],
                config: SelectionConfig, base_seed: int) -> TargetSelection:
    train, fold, purge = _training_window(panel, spec, config)
    share = _share(train, spec, view, candidates, config, base_seed, None)
    return _from_shares(train, fold, purge, spec, view, candidates, config, [share])


def _training_window(panel: pd.DataFrame, spec: TargetSpec,
                     config: SelectionConfig) -> tuple[pd.DataFrame, cv.Fold, pd.Timedelta]:
    """The last fold's training rows of the target (every symbol), the fold and its purge."""
    if config.n_resamples < 2:
        raise ParityInputError(f"n_resamples must be >= 2 for stability, got {config.n_resamples}")
    rows = target_rows(panel, spec)
    purge = pd.Timedelta(minutes=spec.horizon_minutes + config.purge_buffer_minutes)
    fold = cv.purged_walk_forward(rows["ts"], config.n_folds, purge,
                                  purge_bars=spec.horizon_bars)[-1]
    return rows.iloc[fold.train_rows], fold, purge


def _share(train: pd.DataFrame, spec: TargetSpec, view: str, candidates: tuple[str, ...],
           config: SelectionConfig, base_seed: int, symbols: Sequence[str] | None,
           held: Sequence[str] = FITS) -> SelectionShare:
    """The ``held`` fits of ``symbols`` (None: of every symbol) and their importances. The
    bootstrap blocks are drawn over the whole window's timestamps, so every group resamples
    alike; each group's window is binned for LightGBM once for its fit and its resamples."""
    mine = train if symbols is None else train.loc[train["symbol"].isin(symbols)]
    fits = _group_fits(mine, spec, view, candidates)
    window_ts = pd.DatetimeIndex(train["ts"]).asi8
    resamples = []
    with binned.shared():
        main = None if "main" not in held else _fit_importances(
            fits, spec.task, config, base_seed, config.lgbm_n_estimators,
            config.et_n_estimators)
        for i in range(config.n_resamples if "resamples" in held else 0):
            seed = derive_seed(base_seed, STAGE, spec.name, view, purpose=f"resample{i}")
            starts, counts = _block_counts(window_ts, config.resample_blocks, seed)
            resampled = [_resampled(fit, starts, counts, spec.task) for fit in fits]
            resamples.append(_fit_importances(resampled, spec.task, config, base_seed,
                                              config.resample_n_estimators,
                                              config.resample_n_estimators))
    given = symbols_of(train) if symbols is None else tuple(symbols)
    return SelectionShare(spec.name, view, tuple(str(symbol) for symbol in given), main,
                          tuple(resamples) if "resamples" in held else None)


def _from_shares(train: pd.DataFrame, fold: cv.Fold, purge: pd.Timedelta, spec: TargetSpec,
                 view: str, candidates: tuple[str, ...], config: SelectionConfig,
                 shares: Sequence[SelectionShare]) -> TargetSelection:
    """The selection from its shares, in any order: each family averaged over every fit in
    symbol order (the averages a single share of all symbols gives, to the bit)."""
    ordered = sorted(shares, key=lambda share: share.symbols)
    per_family = _joined(ordered, None)
    consensus = _consensus(per_family, config.weights())
    ranked = rank_features(candidates, consensus)
    top_k = min(config.top_k, len(candidates))
    logger.info("FS %s/%s: %d training rows, top %d of %d: %s", spec.name, view,
                len(train), top_k, len(candidates), ranked[:top_k])
    selections, scores = [], []
    for i in range(config.n_resamples):
        resampled = _consensus(_joined(ordered, i), config.weights())
        selections.append(rank_features(candidates, resampled)[:top_k])
        scores.append(resampled)
    return TargetSelection(
        target=spec.name, task=spec.task, view=view, candidates=candidates,
        selected=tuple(ranked[:top_k]),
        importances=_importances(candidates, ranked, consensus, per_family, top_k),
        stability=selection_stability(candidates, selections, scores),
        n_effective=len(train),  # the fits split the training rows
        per_symbol_counts=symbol_counts(train),
        split_signature=cv.split_signature([fold], purge, spec.horizon_bars),
        hyperparameters=_hyperparameters(spec.task, config))


def _joined(shares: Sequence[SelectionShare], resample: int | None) -> dict[str, np.ndarray]:
    """Each family's vectors of every share holding them, in the given order, averaged: those
    of the main fits, or of stability resample number ``resample``."""
    def vectors(share: SelectionShare) -> dict[str, tuple[np.ndarray, ...]] | None:
        if resample is None:
            return share.main
        return None if share.resamples is None else share.resamples[resample]

    per_share = [held for held in map(vectors, shares) if held is not None]
    return {family: np.mean([vector for fitted in per_share for vector in fitted[family]],
                            axis=0) for family in per_share[0]}


def _importances(candidates: tuple[str, ...], ranked: list[str], consensus: np.ndarray,
                 per_family: dict[str, np.ndarray], top_k: int) -> tuple[FeatureImportance, ...]:
    position = {name: i for i, name in enumerate(candidates)}
    return tuple(FeatureImportance(
        feature=name, rank=rank, consensus=float(consensus[position[name]]),
        per_family={f: float(v[position[name]]) for f, v in per_family.items()},
        selected=rank <= top_k) for rank, name in enumerate(ranked, start=1))


def _block_counts(ts: np.ndarray, n_blocks: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Block start timestamps and how often each block is drawn (with replacement)."""
    blocks = [b for b in np.array_split(np.unique(ts), n_blocks) if len(b)]
    draws = np.random.default_rng(seed).integers(0, len(blocks), size=len(blocks))
    return np.array([b[0] for b in blocks]), np.bincount(draws, minlength=len(blocks))


def _resampled(fit: _Fit, starts: np.ndarray, counts: np.ndarray, task: str) -> _Fit:
    block = np.searchsorted(starts, fit.ts, side="right") - 1
    rows = np.repeat(np.arange(len(fit.ts)), counts[block])  # stays in time order
    resampled = _Fit(f"{fit.where}, bootstrap", fit.features[rows], fit.target[rows],
                     fit.ts[rows], fit.window, rows)
    _check_fit(resampled, task)
    return resampled


def _fit_importances(fits: list[_Fit], task: str, config: SelectionConfig, seed: int,
                     lgbm_trees: int, et_trees: int) -> dict[str, tuple[np.ndarray, ...]]:
    """Each family's importances of each fit, normalized per fit (averaged over the fits, in
    symbol order, by ``_joined``)."""
    fitters = {"extra_trees": lambda fit: _extra_trees(fit, task, config, seed, et_trees),
               "lightgbm_gain": lambda fit: _lightgbm_gain(fit, task, config, seed, lgbm_trees),
               "linear_coef": lambda fit: _linear_coef(fit, task, config)}
    return {family: tuple(normalized(fitters[family](fit)) for fit in fits)
            for family in config.weights()}


def normalized(values: np.ndarray) -> np.ndarray:
    """Scale to sum 1; an all-zero vector means "no preference" and becomes uniform."""
    values = np.asarray(values, dtype=float)
    total = float(values.sum())
    if not np.isfinite(total) or total <= 0.0:
        return np.full(len(values), 1.0 / len(values))
    return values / total


def _consensus(per_family: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    total = sum(weights.values())
    # np.asarray returns that same array: typeshed types a sum() of arrays as array-or-0
    return np.asarray(
        sum(weights[family] * per_family[family] for family in sorted(weights)) / total)


def _lightgbm_gain(fit: _Fit, task: str, config: SelectionConfig, seed: int,
                   n_estimators: int) -> np.ndarray:
    params = {**_lightgbm_params(task, config), "seed": int(seed)}
    dataset = (fit.window.binned(params, fit.target) if fit.rows is None
               else fit.window.resampled(params, fit.target, fit.rows))
    booster = binned.train(params, dataset, n_estimators)
    return booster.feature_importance(importance_type="gain")


def _extra_trees(fit: _Fit, task: str, config: SelectionConfig, seed: int,
                 n_estimators: int) -> np.ndarray:
    estimator = ExtraTreesClassifier if task == "binary" else ExtraTreesRegressor
    model = estimator(n_estimators=n_estimators, random_state=int(seed), n_jobs=1,
                      **_extra_trees_params(config))
    return model.fit(fit.features, fit.target).feature_importances_


def _linear_coef(fit: _Fit, task: str, config: SelectionConfig) -> np.ndarray:
    scaled = StandardScaler().fit_transform(fit.features)  # these are training rows only
    model = (LogisticRegression(C=config.logistic_C, solver=LOGISTIC_SOLVER, max_iter=1000)
             if task == "binary" else Ridge(alpha=config.ridge_alpha))
    return np.abs(np.ravel(model.fit(scaled, fit.target).coef_))


def _lightgbm_params(task: str, config: SelectionConfig) -> dict:
    return {"objective": "binary" if task == "binary" else "regression",
            "learning_rate": config.lgbm_learning_rate, "num_leaves": config.lgbm_num_leaves,
            "min_child_samples": config.lgbm_min_child_samples,
            "max_bin": config.lgbm_max_bin, "deterministic": True,
            "force_row_wise": True, "num_threads": constants.LIGHTGBM_NUM_THREADS,
            "verbosity": -1}


def _extra_trees_params(config: SelectionConfig) -> dict:
    return {"max_depth": config.et_max_depth, "min_samples_leaf": config.et_min_samples_leaf,
            "max_features": config.et_max_features}


def _hyperparameters(task: str, config: SelectionConfig) -> dict:
    """Seed-free settings of every family (the seed is ``train_seed``, recorded apart)."""
    return {"lightgbm_gain": {**_lightgbm_params(task, config),
                              "n_estimators": config.lgbm_n_estimators},
            "extra_trees": {**_extra_trees_params(config), "n_estimators": config.et_n_estimators},
            "linear_coef": {"estimator": f"LogisticRegression({LOGISTIC_SOLVER})"
                            if task == "binary" else "Ridge",
                            "alpha_or_C": config.logistic_C if task == "binary"
                            else config.ridge_alpha, "standardize": "train_window"},
            "family_weights": config.weights(), "top_k": config.top_k,
            "n_folds": config.n_folds, "purge_buffer_minutes": config.purge_buffer_minutes,
            # "lightgbm_bins": a resample's LightGBM bins are its window's (binned module);
            # recorded so snapshots of the rule before it form their own comparison groups
            "resample": {"n_resamples": config.n_resamples, "blocks": config.resample_blocks,
                         "n_estimators": config.resample_n_estimators,
                         "lightgbm_bins": "window"},
            "nan_fill": "train_window_median"}


def _group_fits(train: pd.DataFrame, spec: TargetSpec, view: str,
                candidates: tuple[str, ...]) -> list[_Fit]:
    if view == "CROSS_SECTIONAL":
        groups = [("ALL", train)]
    else:
        groups = [(str(sym), frame) for sym, frame in train.groupby("symbol", sort=True)]
    fits = [_make_fit(frame, f"target={spec.name}, view={view}, symbol={sym}", candidates)
            for sym, frame in groups]
    for fit in fits:
        _check_fit(fit, spec.task)
    return fits


def _make_fit(frame: pd.DataFrame, where: str, candidates: tuple[str, ...]) -> _Fit:
    block = frame[list(candidates)]
    medians = block.median().fillna(0.0)  # training-window statistics only
    window = binned.Matrix(block.fillna(medians).to_numpy(dtype=np.float64))
    return _Fit(where, window.values, frame["__target__"].to_numpy(dtype=np.float64),
                pd.DatetimeIndex(frame["ts"]).asi8, window)


def _check_fit(fit: _Fit, task: str) -> None:
    if len(fit.target) < MIN_FIT_ROWS:
        raise ParityInputError(f"feature selection ({fit.where}): {len(fit.target)} training rows,"
                               f" need >= {MIN_FIT_ROWS}; raise max_rows_per_symbol or lower "
                               "n_folds/the purge, or do not route this view")
    if task == "binary" and len(np.unique(fit.target)) < 2:
        raise ParityInputError(f"feature selection ({fit.where}): the binary target has one "
                               "class in the training window; this target cannot be selected on")


def _checked_candidates(panel: pd.DataFrame, registry: FeatureRegistry,
                        candidate_features: Sequence[str]) -> tuple[str, ...]:
    candidates = tuple(sorted(set(candidate_features)))
    undeclared = [c for c in candidates if c not in set(registry.feature_names)]
    missing = [c for c in candidates if c not in panel.columns]
    if not candidates or undeclared or missing:
        raise ParityInputError(f"candidate features must be non-empty, declared as features in "
                               f"{registry.source} and present in the panel; undeclared: "
                               f"{undeclared}, missing from panel: {missing}")
    return candidates


def _checked_units(panel: pd.DataFrame, units: list[tuple[str, str]]) -> list[tuple[str, str]]:
    for target, view in units:
        if view not in constants.VIEWS or target not in panel.columns:
            raise ParityInputError(f"routed ({target!r}, {view!r}): the view must be one of "
                                   f"{list(constants.VIEWS)} and the target a panel column")
    return units
