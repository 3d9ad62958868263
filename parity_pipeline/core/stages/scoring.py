"""Out-of-fold scoring helpers for target ranking: LightGBM fits, ICs, AUCs, the leak scan.

Everything here is pure (numpy/pandas/LightGBM/scikit-learn) and deterministic: models run with
``deterministic=True``, ``force_row_wise=True``, a fixed thread count and the train seed, with a
fixed number of trees (no early stopping, so a test fold never steers a fit).

Spearman IC is the Pearson correlation of average ranks (what ``scipy.stats.spearmanr``
computes); groups with fewer than ``min_count`` rows or a constant side have no IC.
"""

import logging
import math
from collections.abc import Sequence
from typing import TypedDict

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import roc_auc_score

from parity_pipeline.constants import LIGHTGBM_NUM_THREADS
from parity_pipeline.core.data.leak_gate import abs_correlations
from parity_pipeline.core.stages import binned, model_io
from parity_pipeline.core.stages.cv import Fold
from parity_pipeline.core.store import reuse

logger = logging.getLogger(__name__)

NANOS_PER_DAY = 86_400 * 10**9
_EPS = 1e-12


class LGBMParams(TypedDict):
    """Keyword arguments of ``lgb.LGBMClassifier`` / ``LGBMRegressor`` (``lgbm_params``)."""

    n_estimators: int
    learning_rate: float
    num_leaves: int
    min_child_samples: int
    max_bin: int
    deterministic: bool
    force_row_wise: bool
    num_threads: int
    seed: int
    verbose: int


def lgbm_params(n_estimators: int, learning_rate: float, num_leaves: int,
                min_child_samples: int, max_bin: int, train_seed: int) -> LGBMParams:
    """The LightGBM hyper-parameters every ranking model uses (fixed trees, no early stopping)."""
    return {"n_estimators": int(n_estimators), "learning_rate": float(learning_rate),
            "num_leaves": int(num_leaves), "min_child_samples": int(min_child_samples),
            "max_bin": int(max_bin), "deterministic": True, "force_row_wise": True,
            "num_threads": LIGHTGBM_NUM_THREADS, "seed": int(train_seed), "verbose": -1}


def booster_params(task: str, params: LGBMParams) -> dict:
    """``params`` as ``lgb.train`` takes them: the booster LightGBM's scikit-learn estimator
    (``LGBMClassifier`` / ``LGBMRegressor(**params)``) trains, to the bit (tested)."""
    named = {name: value for name, value in params.items() if name != "n_estimators"}
    return {**named, "objective": "binary" if task == "binary" else "regression"}


def fit_predict(task: str, params: LGBMParams, x: binned.Matrix, y_train: np.ndarray,
                train_rows: np.ndarray, x_test: np.ndarray) -> np.ndarray | None:
    """Fit on the rows ``train_rows`` of ``x`` (binned once per distinct row set inside
    ``binned.shared()``) and predict ``x_test`` (P(y=1) for binary).

    Returns None when a binary training set holds a single class (nothing to learn)."""
    if task == "binary" and len(np.unique(y_train)) < 2:
        return None
    booster = binned.train(booster_params(task, params), x.binned(params, y_train, train_rows),
                           params["n_estimators"])
    return model_io.predict(booster, x_test)


def oof_predictions(task: str, params: LGBMParams, x: np.ndarray, y: np.ndarray,
                    folds: Sequence[Fold], data: reuse.SharedInput
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold predictions and the fold id of each row (NaN / -1 where never tested);
    reused from an earlier run when every input is the same (``core.store.reuse``). ``data``:
    the panel columns ``x`` and ``y`` were taken from (``panel.fit_columns``), which key them
    instead of their own bytes."""
    return reuse.reused_or_computed(
        "scoring.oof_predictions", {"task": task, "params": params, "data": data,
                                    "folds": list(folds)},
        lambda: _oof_predictions(task, params, x, y, folds))


def _oof_predictions(task: str, params: LGBMParams, x: np.ndarray, y: np.ndarray,
                     folds: Sequence[Fold]) -> tuple[np.ndarray, np.ndarray]:
    pred = np.full(len(y), np.nan)
    fold_id = np.full(len(y), -1, dtype=np.int64)
    matrix = binned.Matrix(x)
    for fold in folds:
        fold_pred = fit_predict(task, params, matrix, y[fold.train_rows], fold.train_rows,
                                matrix.values[fold.test_rows])
        if fold_pred is not None:
            pred[fold.test_rows] = fold_pred
            fold_id[fold.test_rows] = fold.fold
    return pred, fold_id


def per_timestamp_ic(ts: pd.Series, pred: np.ndarray, target: np.ndarray,
                     min_count: int = 3) -> pd.Series:
    """Cross-sectional Spearman IC at each timestamp (index: ts, sorted); skips small or
    constant cross-sections."""
    frame = pd.DataFrame({"ts": pd.DatetimeIndex(ts), "p": pred, "y": target}).dropna()
    keys = frame["ts"]
    by_ts = frame.groupby(keys, sort=True)
    rank_p, rank_y = by_ts["p"].rank(), by_ts["y"].rank()  # average ranks, as spearmanr
    dev_p = rank_p - rank_p.groupby(keys).transform("mean")
    dev_y = rank_y - rank_y.groupby(keys).transform("mean")
    cov = (dev_p * dev_y).groupby(keys, sort=True).sum()
    var_p = (dev_p**2).groupby(keys, sort=True).sum()
    var_y = (dev_y**2).groupby(keys, sort=True).sum()
    ok = (by_ts.size() >= min_count) & (var_p > _EPS) & (var_y > _EPS)
    return (cov[ok] / np.sqrt(var_p[ok] * var_y[ok])).rename("ic")


def session_means(ic: pd.Series, block_days: int = 1) -> pd.Series:
    """Mean IC per session: blocks of ``block_days`` whole UTC calendar days, counted from
    the Unix epoch (so a block never depends on where the data starts)."""
    nanos = pd.DatetimeIndex(ic.index).tz_convert("UTC").as_unit("ns").asi8
    session = nanos // (NANOS_PER_DAY * max(int(block_days), 1))
    return ic.groupby(session, sort=True).mean()


def newey_west_t(values: Sequence[float] | np.ndarray, lags: int) -> float:
    """t-stat of the mean of a series whose neighbours overlap (Bartlett-kernel HAC variance,
    Newey & West 1987). Overlapping forward labels make consecutive ICs dependent; ``lags`` is
    the label horizon in bars. Written here (a few lines) rather than adding statsmodels."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = len(x)
    if n < 3:
        return float("nan")
    dev = x - x.mean()
    variance = float(dev @ dev) / n
    for lag in range(1, min(int(lags), n - 1) + 1):
        variance += 2.0 * (1.0 - lag / (lags + 1.0)) * float(dev[lag:] @ dev[:-lag]) / n
    return float(x.mean() / np.sqrt(variance / n)) if variance > 0 else float("nan")


def effective_n_t(ic: float, n_rows: int, horizon_bars: int) -> float:
    """t-stat of one correlation over overlapping labels: n counted in non-overlapping blocks."""
    n_eff = n_rows / max(int(horizon_bars), 1)
    if not np.isfinite(ic) or n_eff <= 3 or abs(ic) >= 1:
        return float("nan")
    return float(ic * np.sqrt((n_eff - 2.0) / (1.0 - ic * ic)))


def mean_stderr(values: Sequence[float] | np.ndarray) -> tuple[float, float, int]:
    """Mean, standard error (ddof=1) and count; stderr is NaN with fewer than two values."""
    arr = np.asarray(values, dtype=float)
    if len(arr) == 0:
        return float("nan"), float("nan"), 0
    if len(arr) < 2:
        return float(arr.mean()), float("nan"), 1
    return float(arr.mean()), float(arr.std(ddof=1) / np.sqrt(len(arr))), int(len(arr))


def rank_ic(pred: np.ndarray, target: np.ndarray, min_count: int = 3) -> float | None:
    """Time-series Spearman IC, or None when too short or either side is constant."""
    if len(pred) < min_count or np.ptp(pred) <= _EPS or np.ptp(target) <= _EPS:
        return None
    return float(stats.spearmanr(pred, target).statistic)


def binary_auc(labels: np.ndarray, scores: np.ndarray) -> float | None:
    """ROC AUC, or None when only one class is present."""
    if len(np.unique(labels)) < 2:
        return None
    return float(roc_auc_score(labels.astype(np.int64), scores))


def fold_values(task: str, pred: np.ndarray, target: np.ndarray,
                fold_id: np.ndarray) -> list[float]:
    """One score per tested fold: AUC (binary) or time-series Spearman IC (regression)."""
    values = []
    for fold in sorted(int(f) for f in np.unique(fold_id[fold_id >= 0])):
        rows = fold_id == fold
        value = (binary_auc(target[rows], pred[rows]) if task == "binary"
                 else rank_ic(pred[rows], target[rows]))
        if value is not None:
            values.append(value)
    return values


def scored_folds(task: str, params: LGBMParams, x: np.ndarray, y: np.ndarray,
                 folds: Sequence[Fold], data: reuse.SharedInput) -> tuple[list[float], int]:
    """Per-fold out-of-fold scores of one series and the number of rows scored."""
    pred, fold_id = oof_predictions(task, params, x, y, folds, data)
    return fold_values(task, pred, y, fold_id), int((fold_id >= 0).sum())


# How far below a limit the screen of ``leak_scan`` still sends a pair to the exact test: the
# screen's correlations differ from ``np.corrcoef``'s by rounding (~1e-12), far less than this.
_SCREEN_MARGIN = 1e-6


def leak_scan(frame: pd.DataFrame, labels: dict[str, str], features: Sequence[str],
              min_rows: int, leak_corr: float,
              leak_agreement: float) -> list[tuple[str, str, str, float]]:
    """(feature, label, kind, value) for every feature that nearly copies a label column;
    ``labels`` maps each label column to its task, iterated in the given order.

    Every (feature, label) pair is screened at once (matrix products, ``leak_screen``); only
    pairs the screen cannot clear are tested one by one (``leak_kinds``), which gives the
    reported values. At 50 symbols (340 pairs on 100,000 rows) the pair-by-pair test took
    0.5-0.6 s and the screened scan 0.13 s, both on a second call in a process (the ranking's
    plan step, which nothing runs beside; a fresh process spends most of either on first-touch
    memory)."""
    feature_values = frame[list(features)].to_numpy(dtype=float)
    label_values = frame[list(labels)].to_numpy(dtype=float)
    suspects = leak_screen(feature_values, label_values,
                           [task == "binary" for task in labels.values()], min_rows,
                           leak_corr - _SCREEN_MARGIN, leak_agreement - _SCREEN_MARGIN)
    findings = []
    for column, (label, task) in enumerate(labels.items()):
        for row in np.flatnonzero(suspects[:, column]):
            found = leak_kinds(feature_values[:, row], label_values[:, column], task, min_rows,
                               leak_corr, leak_agreement)
            findings += [(features[int(row)], label, kind, value) for kind, value in found]
    return findings


def leak_screen(features: np.ndarray, labels: np.ndarray, binary: Sequence[bool],
                min_rows: int, corr_limit: float, agreement_limit: float) -> np.ndarray:
    """features x labels: True where the pair may reach a limit of ``leak_kinds`` (or the
    screen cannot tell: too few rows or a constant side), False where it surely does not."""
    corr, _ = abs_correlations(features, labels, min_rows)
    suspect = np.isnan(corr) | (corr >= corr_limit)
    rounded, present = np.round(features), ~np.isnan(features)
    for column in np.flatnonzero(binary):
        label = labels[:, column]
        both = present & ~np.isnan(label)[:, None]
        n_both = both.sum(axis=0)
        same = (both & (rounded == label[:, None])).sum(axis=0)
        flipped = (both & (rounded == 1.0 - label[:, None])).sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            agreement = np.maximum(same, flipped) / n_both
        suspect[:, column] |= (n_both < min_rows) | (agreement >= agreement_limit)
    return suspect


def near_copy_corr(feature: np.ndarray, target: np.ndarray, min_rows: int) -> float | None:
    """|Pearson correlation| over rows where both are present (None if too few or constant)."""
    both = ~(np.isnan(feature) | np.isnan(target))
    f, t = feature[both], target[both]
    if len(f) < min_rows or np.ptp(f) <= _EPS or np.ptp(t) <= _EPS:
        return None
    return float(abs(np.corrcoef(f, t)[0, 1]))


def label_agreement(feature: np.ndarray, label: np.ndarray, min_rows: int) -> float | None:
    """Share of rows where the feature rounded to 0/1 equals the label (or its complement,
    whichever is higher: an inverted copy leaks just as much)."""
    both = ~(np.isnan(feature) | np.isnan(label))
    if both.sum() < min_rows:
        return None
    same = float(np.mean(np.round(feature[both]) == label[both]))
    flipped = float(np.mean(np.round(feature[both]) == 1.0 - label[both]))
    return max(same, flipped)


def leak_kinds(feature: np.ndarray, label: np.ndarray, task: str, min_rows: int,
               leak_corr: float, leak_agreement: float) -> list[tuple[str, float]]:
    """The leak tests a feature fails against one label column, as (kind, value) pairs."""
    found = []
    corr = near_copy_corr(feature, label, min_rows)
    if corr is not None and corr >= leak_corr:
        found.append(("near_copy_corr", corr))
    agreement = label_agreement(feature, label, min_rows) if task == "binary" else None
    if agreement is not None and agreement >= leak_agreement:
        found.append(("label_agreement", agreement))
    return found


def target_problems(values: pd.Series, task: str, min_rows: int, min_class_fraction: float,
                    where: str = "") -> list[str]:
    """Blocking data problems of one target column: too few rows, degenerate values."""
    present = values.dropna().to_numpy(dtype=float)
    prefix = f"{where}: " if where else ""
    if len(present) < min_rows:
        return [f"too few rows: {prefix}{len(present)} non-null < min_rows {min_rows}"]
    if np.ptp(present) == 0:
        return [f"degenerate target: {prefix}constant"]
    if task == "binary" and not np.isin(present, (0.0, 1.0)).all():
        return [f"degenerate target: {prefix}binary values other than 0/1"]
    minority = min(float(present.mean()), 1.0 - float(present.mean()))
    if task == "binary" and minority < min_class_fraction:
        return [f"degenerate target: {prefix}minority class {minority:.2%} < "
                f"{min_class_fraction:.2%}"]
    return []


def null_stderr(task: str, n_rows: int, horizon_bars: int) -> float:
    """Standard error of the mean metric under no signal, from the effective sample size
    ``n_rows / horizon_bars`` (overlapping labels are not independent): Spearman IC 1/sqrt(n),
    AUC sqrt(1/(3n)) (Hanley-McNeil, balanced classes). A floor for the spread of a few fold
    values, which can be small by chance and make noise look significant."""
    n_effective = n_rows / max(int(horizon_bars), 1)
    if n_effective <= 1:
        return float("inf")
    return math.sqrt(1.0 / (3.0 * n_effective)) if task == "binary" else 1.0 / math.sqrt(
        n_effective)


def skill_stats(task: str, values: Sequence[float], stderr_floor: float = 0.0
                ) -> tuple[float, float, float, float, int]:
    """(mean, stderr, t_stat, skill, n) on the one skill scale: IC, or 2*AUC-1 for binary;
    the stderr is at least ``stderr_floor``."""
    mean, stderr, n_values = mean_stderr(values)
    stderr = max(stderr, stderr_floor)
    binary = task == "binary"
    skill = 2.0 * mean - 1.0 if binary else mean
    t_stat = (mean - 0.5 if binary else mean) / stderr if stderr > 0 else float("nan")
    return mean, stderr, t_stat, skill, n_values
