"""Training: one model per routed target × view (× symbol) × family, with real OOS metrics.

Split: ``cv.chronological_holdout`` on the unit's timestamps (the last ``valid_fraction`` of them
validate; training stops ``horizon + buffer`` earlier). Never shuffled (DESIGN §8).

LightGBM early-stops on that validation window. This is *training* (choosing the number of
trees), not the ranking stage's CV score, which never early-stops on a test fold; the validation
metrics below are therefore mildly optimistic for LightGBM, by one tuned integer. NaNs go to
LightGBM as missing values. ``sklearn_linear`` = training-median NaN fill, StandardScaler fitted
on training rows, then Ridge (regression) / LogisticRegression (binary).

Metrics on the validation window (``y_pred`` from the *reloaded* artifact):

- regression: ``spearman_ic`` = time-series Spearman for a symbol model, mean per-timestamp
  cross-sectional Spearman for CROSS_SECTIONAL; ``ic_t_stat``: CROSS_SECTIONAL, the Newey-West
  (HAC, lags = horizon bars) t of the per-timestamp ICs; a symbol model, the IC's t with n
  counted in non-overlapping horizon blocks; NaN when too short. ``n_ic_values`` counts the ICs
  (timestamps) or rows; ``pearson``, ``rmse``, ``mae``, ``r2`` over the pooled rows.
- binary: pooled ``auc``; ``auc_t_stat`` = (auc - 0.5) / Hanley–McNeil (1982) stderr, which
  treats rows as independent and so overstates significance for overlapping labels;
  ``logloss``, ``accuracy`` (threshold 0.5), ``base_rate`` (validation share of 1s).

Artifacts are objects of the content store (``core.store.content``), named by ``model_sha256`` and
``predictions_sha256``; their paths, shown in a run's view under ``trained_models/`` (names
sanitized by ``model_io.safe_name``), are ``models/<target>/<view>/<symbol or ALL>/<family>.
{txt,json}`` (formats in ``model_io``) and ``predictions/<same>/<family>.parquet`` (symbol, ts,
y_true, y_pred sorted by symbol, ts).
``n_effective`` = n_train + n_valid (purged rows never reach the model);
``hyperparameters_signature`` hashes the hyperparameters without the seed.

A unit that cannot be trained (too few rows, one class in train or validation) raises
``ParityInputError`` naming target/view/symbol: a silently missing model is worse than a stop.
"""

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy import stats
from sklearn import metrics as skm
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from parity_pipeline import constants
from parity_pipeline.core.data.registry import FeatureRegistry, TargetSpec
from parity_pipeline.core.errors import ParityInputError
from parity_pipeline.core.hashing import sha256_json, to_canonical
from parity_pipeline.core.stages import cv, model_io, scoring
from parity_pipeline.core.stages.panel import (
    LOGISTIC_SOLVER,
    checked_panel,
    fit_columns,
    symbol_counts,
    symbols_of,
    target_rows,
)
from parity_pipeline.core.stages.progress import Report, UnitProgress
from parity_pipeline.core.store import reuse
from parity_pipeline.core.store.content import ContentStore, split_name

logger = logging.getLogger(__name__)

FAMILIES = ("lightgbm", "sklearn_linear")


@dataclass(frozen=True)
class TrainingConfig:
    valid_fraction: float = 0.2
    purge_buffer_minutes: int = 30
    families: tuple[str, ...] = FAMILIES
    lgbm_n_estimators: int = 300
    lgbm_learning_rate: float = 0.05
    lgbm_num_leaves: int = 15
    lgbm_min_child_samples: int = 50
    early_stopping_rounds: int = 30
    ridge_alpha: float = 1.0
    logistic_C: float = 1.0
    min_train_rows: int = 100
    min_valid_rows: int = 20


@dataclass(frozen=True)
class TrainedModel:
    target: str
    task: str
    view: str
    symbol: str | None  # None for CROSS_SECTIONAL
    family: str
    features: tuple[str, ...]
    model_path: str  # in the run view's trained_models/ folder, POSIX
    model_format: str
    model_sha256: str
    predictions_path: str
    predictions_sha256: str
    metrics: dict[str, float]
    metrics_sha256: str
    hyperparameters: dict
    hyperparameters_signature: str
    split: dict
    split_signature: str
    n_train: int
    n_valid: int
    n_effective: int  # n_train + n_valid: rows that reached the model
    per_symbol_counts: dict[str, int]
    train_seed: int
    best_iteration: int | None
    # sha256 of the stored files' bytes: a later run checks them before reusing this model
    # without parsing either file again (``model_intact``)
    file_sha256: dict[str, str]


@dataclass(frozen=True)
class TrainingResult:
    models: tuple[TrainedModel, ...]  # sorted by (target, view, symbol or "", family)
    n_effective: int  # panel rows seen
    per_symbol_counts: dict[str, int]  # panel rows per symbol
    train_seed: int
    config: dict


@dataclass(frozen=True)
class _Unit:
    spec: TargetSpec
    view: str
    symbol: str | None
    features: tuple[str, ...]
    train: pd.DataFrame
    valid: pd.DataFrame
    fold: cv.Fold
    purge: pd.Timedelta

    @property
    def where(self) -> str:
        return f"target={self.spec.name}, view={self.view}, symbol={self.symbol or 'ALL'}"


@dataclass(frozen=True)
class _Fitted:
    model_format: str
    text: str
    y_pred: np.ndarray
    hyperparameters: dict
    best_iteration: int | None


def train_models(panel: pd.DataFrame, registry: FeatureRegistry,
                 selected: Mapping[tuple[str, str], Sequence[str]], config: TrainingConfig,
                 base_seed: int, objects: ContentStore, report: Report | None = None
                 ) -> TrainingResult:
    """Train every (target, view[, symbol]) × family on the panel; store models and
    predictions in ``objects`` (a second identical model stores nothing new)."""
    frame = checked_panel(panel)
    families = _checked_families(config)
    units = [unit for key in sorted(selected)
             for unit in _units(frame, registry, key, selected[key], config)]
    check_distinct_dirs([model_io.unit_dir(u.spec.name, u.view, u.symbol) for u in units])
    progress = UnitProgress("TRAINING", len(units) * len(families), "models", report)
    models = []
    # host-independent BLAS, see selection.py; the keys read the panel's shared digests
    with threadpool_limits(limits=1, user_api="blas"), reuse.panel_digests(panel):
        for unit in units:
            # digested once for its families' keys
            data = fit_columns(panel, unit.spec, unit.features,
                               None if unit.symbol is None else [unit.symbol])
            for family in families:
                label = reuse.unit_label("TRAINING", unit.spec.name, unit.view,
                                         unit.symbol or "", family)
                with reuse.current().unit(label):
                    models.append(_reused_family(unit, data, family, config, int(base_seed),
                                                 objects))
                progress.done(f"{unit.spec.name} {unit.view} {unit.symbol or 'ALL'} {family}")
    models.sort(key=lambda m: (m.target, m.view, m.symbol or "", m.family))
    return TrainingResult(models=tuple(models), n_effective=len(frame),
                          per_symbol_counts=symbol_counts(frame), train_seed=int(base_seed),
                          config=to_canonical(config))


def model_files(model: TrainedModel) -> dict[str, str]:
    """A model's files as a run view shows them (under ``trained_models/``) -> object names."""
    return {f"trained_models/{model.model_path}":
            f"{model.model_sha256}{Path(model.model_path).suffix}",
            f"trained_models/{model.predictions_path}": f"{model.predictions_sha256}.parquet"}


def training_table(result: TrainingResult) -> pd.DataFrame:
    """One row per model: identity, sizes, hashes and every metric (NaN where not defined)."""
    rows = [{"target": m.target, "view": m.view, "symbol": m.symbol, "family": m.family,
             "n_features": len(m.features), "n_train": m.n_train, "n_valid": m.n_valid,
             "best_iteration": m.best_iteration, **m.metrics, "model_path": m.model_path,
             "model_sha256": m.model_sha256, "predictions_sha256": m.predictions_sha256}
            for m in result.models]
    # no model (every target blocked) still gives a CSV with its header, not a 1-byte file
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=TRAINING_TABLE_COLUMNS)


TRAINING_TABLE_COLUMNS = ["target", "view", "symbol", "family", "n_features", "n_train",
                          "n_valid", "best_iteration", "model_path", "model_sha256",
                          "predictions_sha256"]


def _units(frame: pd.DataFrame, registry: FeatureRegistry, key: tuple[str, str],
           features: Sequence[str], config: TrainingConfig) -> list[_Unit]:
    target, view = key
    spec = registry.target(target)
    checked = _checked_features(frame, registry, key, features)
    if view not in constants.VIEWS:
        raise ParityInputError(f"view {view!r} for target {target!r}: use one of "
                               f"{list(constants.VIEWS)}")
    rows = target_rows(frame, spec)
    if view == "CROSS_SECTIONAL":
        return [_split_unit(rows, spec, view, None, checked, config)]
    return [_split_unit(group.reset_index(drop=True), spec, view, str(sym), checked, config)
            for sym, group in rows.groupby("symbol", sort=True)]


def _split_unit(rows: pd.DataFrame, spec: TargetSpec, view: str, symbol: str | None,
                features: tuple[str, ...], config: TrainingConfig) -> _Unit:
    purge = pd.Timedelta(minutes=spec.horizon_minutes + config.purge_buffer_minutes)
    fold = cv.chronological_holdout(rows["ts"], config.valid_fraction, purge, spec.horizon_bars)
    unit = _Unit(spec, view, symbol, features, rows.iloc[fold.train_rows],
                 rows.iloc[fold.test_rows], fold, purge)
    _check_unit(unit, config)
    return unit


def _check_unit(unit: _Unit, config: TrainingConfig) -> None:
    if len(unit.train) < config.min_train_rows or len(unit.valid) < config.min_valid_rows:
        raise ParityInputError(
            f"training ({unit.where}): {len(unit.train)} train / {len(unit.valid)} validation "
            f"rows, need >= {config.min_train_rows} / {config.min_valid_rows}; raise "
            "max_rows_per_symbol or valid_fraction, or do not route this view")
    for part, rows in (("training", unit.train), ("validation", unit.valid)):
        if unit.spec.task == "binary" and rows["__target__"].nunique() < 2:
            raise ParityInputError(f"training ({unit.where}): the {part} window holds one class"
                                   " only; the label cannot be learned or scored here")


def _reused_family(unit: _Unit, data: reuse.SharedInput, family: str, config: TrainingConfig,
                   seed: int, objects: ContentStore) -> TrainedModel:
    """``_train_family``, reused when the unit's data (``fit_columns``), features, split,
    config and seed are those of an earlier run and its model and predictions are still intact
    in the store."""
    inputs = {"spec": unit.spec, "view": unit.view, "symbol": unit.symbol,
              "features": unit.features, "data": data, "fold": unit.fold,
              "purge_seconds": unit.purge.total_seconds(), "family": family,
              "config": config, "seed": seed}

    return reuse.reused_or_computed(
        "training.train_family", inputs,
        lambda: _train_family(unit, family, config, seed, objects),
        lambda model: model_intact(model, objects))


def model_intact(model: TrainedModel, objects: ContentStore) -> bool:
    """A stored model is reused only while its model file and predictions hold exactly the
    bytes written when it was trained (recorded in the model, itself stored by its hash)."""
    return all(objects.holds_bytes(name, digest)
               for name, digest in sorted(model.file_sha256.items()))


def _train_family(unit: _Unit, family: str, config: TrainingConfig, seed: int,
                  objects: ContentStore) -> TrainedModel:
    fitted = (_fit_lightgbm(unit, config, seed) if family == "lightgbm"
              else _fit_linear(unit, config))
    stem = f"{model_io.unit_dir(unit.spec.name, unit.view, unit.symbol)}/{family}"
    model_path = f"models/{stem}.{model_io.FORMAT_SUFFIX[fitted.model_format]}"
    predictions = _predictions(unit, fitted.y_pred)
    predictions_name = objects.put_table(predictions)
    model_sha256 = model_io.model_sha256(fitted.text, fitted.model_format)
    model_name = objects.put_text(fitted.text, f".{model_io.FORMAT_SUFFIX[fitted.model_format]}",
                                  model_sha256)
    metrics = evaluate(unit.spec.task, unit.view, predictions, unit.spec.horizon_bars)
    seed_free = {k: v for k, v in fitted.hyperparameters.items() if k != "seed"}
    logger.info("trained %s/%s: %s", unit.where, family, metrics)
    return TrainedModel(
        target=unit.spec.name, task=unit.spec.task, view=unit.view, symbol=unit.symbol,
        family=family, features=unit.features, model_path=model_path,
        model_format=fitted.model_format,
        model_sha256=model_sha256, predictions_path=f"predictions/{stem}.parquet",
        predictions_sha256=split_name(predictions_name)[0],
        metrics=metrics, metrics_sha256=sha256_json(metrics),
        hyperparameters=fitted.hyperparameters,
        hyperparameters_signature=sha256_json(seed_free),
        split={**unit.fold.boundaries(), "purge_seconds": unit.purge.total_seconds(),
               "purge_bars": unit.spec.horizon_bars},
        split_signature=cv.split_signature([unit.fold], unit.purge, unit.spec.horizon_bars),
        n_train=len(unit.train), n_valid=len(unit.valid),
        n_effective=len(unit.train) + len(unit.valid),
        per_symbol_counts=symbol_counts(pd.concat([unit.train, unit.valid])),
        train_seed=seed, best_iteration=fitted.best_iteration,
        file_sha256={name: objects.bytes_sha256(name) for name in (model_name, predictions_name)})


def _fit_lightgbm(unit: _Unit, config: TrainingConfig, seed: int) -> _Fitted:
    binary = unit.spec.task == "binary"
    params = {"objective": "binary" if binary else "regression",
              "metric": "binary_logloss" if binary else "l2",
              "learning_rate": config.lgbm_learning_rate, "num_leaves": config.lgbm_num_leaves,
              "min_child_samples": config.lgbm_min_child_samples, "deterministic": True,
              "force_row_wise": True, "num_threads": constants.LIGHTGBM_NUM_THREADS,
              "seed": seed, "verbosity": -1}
    train_set = lgb.Dataset(*_xy(unit.train, unit.features), feature_name=list(unit.features),
                            params={"verbosity": -1})
    valid_set = lgb.Dataset(*_xy(unit.valid, unit.features), reference=train_set)
    booster = lgb.train(params, train_set, num_boost_round=config.lgbm_n_estimators,
                        valid_sets=[valid_set], callbacks=[lgb.early_stopping(
                            config.early_stopping_rounds, first_metric_only=True, verbose=False)])
    text = booster.model_to_string(num_iteration=booster.best_iteration)
    y_pred = model_io.LightGBMModel(lgb.Booster(model_str=text)).predict(unit.valid)
    hyper = {"family": "lightgbm", **params, "n_estimators": config.lgbm_n_estimators,
             "early_stopping_rounds": config.early_stopping_rounds,
             "early_stopping_window": "chronological_validation"}
    return _Fitted(model_io.LIGHTGBM_FORMAT, text, y_pred, hyper, int(booster.best_iteration))


def _fit_linear(unit: _Unit, config: TrainingConfig) -> _Fitted:
    binary = unit.spec.task == "binary"
    fill = unit.train[list(unit.features)].median().fillna(0.0)  # training window only
    x_train = unit.train[list(unit.features)].fillna(fill).to_numpy(dtype=np.float64)
    scaler = StandardScaler().fit(x_train)
    params = ({"estimator": "LogisticRegression", "C": config.logistic_C,
               "solver": LOGISTIC_SOLVER, "max_iter": 1000}
              if binary else {"estimator": "Ridge", "alpha": config.ridge_alpha})
    model = (LogisticRegression(C=config.logistic_C, solver=LOGISTIC_SOLVER, max_iter=1000)
             if binary else Ridge(alpha=config.ridge_alpha))
    model.fit(scaler.transform(x_train), unit.train["__target__"].to_numpy(dtype=np.float64))
    spec = {"task": unit.spec.task, "estimator": params["estimator"],
            "features": list(unit.features), "fill_values": fill.tolist(),
            "scaler_mean": scaler.mean_.tolist(), "scaler_scale": scaler.scale_.tolist(),
            "coef": np.ravel(model.coef_).tolist(),
            "intercept": float(np.ravel(model.intercept_)[0]) if binary
            else float(model.intercept_),
            "classes": model.classes_.tolist() if binary else None, "params": params}
    text = model_io.linear_text(spec)
    y_pred = model_io.LinearModel(json.loads(text)).predict(unit.valid)  # what a reload sees
    hyper = {"family": "sklearn_linear", **params, "scaler": "StandardScaler(train)",
             "nan_fill": "train_median"}
    return _Fitted(model_io.LINEAR_FORMAT, text, y_pred, hyper, None)


def _xy(rows: pd.DataFrame, features: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    return (rows[list(features)].to_numpy(dtype=np.float64),
            rows["__target__"].to_numpy(dtype=np.float64))


def _predictions(unit: _Unit, y_pred: np.ndarray) -> pd.DataFrame:
    frame = pd.DataFrame({"symbol": unit.valid["symbol"].astype(str).to_numpy(),
                          "ts": unit.valid["ts"].to_numpy(),
                          "y_true": unit.valid["__target__"].to_numpy(dtype=np.float64),
                          "y_pred": np.asarray(y_pred, dtype=np.float64)})
    return frame.sort_values(["symbol", "ts"], kind="mergesort", ignore_index=True)


def evaluate(task: str, view: str, predictions: pd.DataFrame,
             horizon_bars: int = 1) -> dict[str, float]:
    """Out-of-sample metrics from a (symbol, ts, y_true, y_pred) frame (module docstring)."""
    y_true = predictions["y_true"].to_numpy(dtype=np.float64)
    y_pred = predictions["y_pred"].to_numpy(dtype=np.float64)
    if task == "binary":
        return _binary_metrics(y_true, y_pred)
    ic, t_stat, n_values = _ic_and_t(view, predictions, horizon_bars)
    defined = np.ptp(y_pred) > 0 and np.ptp(y_true) > 0
    return {"spearman_ic": ic, "ic_t_stat": t_stat, "n_ic_values": float(n_values),
            "pearson": float(stats.pearsonr(y_true, y_pred).statistic) if defined
            else float("nan"),
            "rmse": float(np.sqrt(skm.mean_squared_error(y_true, y_pred))),
            "mae": float(skm.mean_absolute_error(y_true, y_pred)),
            "r2": float(skm.r2_score(y_true, y_pred))}


def _ic_and_t(view: str, predictions: pd.DataFrame, horizon_bars: int
              ) -> tuple[float, float, int]:
    """Headline IC and a t-stat honest about overlapping labels (module docstring)."""
    pred, true = predictions["y_pred"].to_numpy(), predictions["y_true"].to_numpy()
    if view == "CROSS_SECTIONAL":
        per_ts = scoring.per_timestamp_ic(predictions["ts"], pred, true)
        headline = float(per_ts.mean()) if len(per_ts) else float("nan")
        return headline, scoring.newey_west_t(per_ts.to_numpy(), horizon_bars), len(per_ts)
    ic = scoring.rank_ic(pred, true)
    headline = float("nan") if ic is None else ic
    return headline, scoring.effective_n_t(headline, len(pred), horizon_bars), len(pred)


def _binary_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    auc = float(skm.roc_auc_score(y_true.astype(np.int64), y_pred))
    n_pos, n_neg = float(y_true.sum()), float(len(y_true) - y_true.sum())
    q1, q2 = auc / (2.0 - auc), 2.0 * auc**2 / (1.0 + auc)
    variance = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2)
                + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)
    return {"auc": auc,
            "auc_t_stat": float((auc - 0.5) / np.sqrt(variance)) if variance > 0
            else float("nan"),
            "logloss": float(skm.log_loss(y_true, y_pred, labels=[0.0, 1.0])),
            "accuracy": float(np.mean((y_pred >= 0.5) == (y_true == 1.0))),
            "base_rate": float(np.mean(y_true))}


def check_distinct_dirs(dirs: Sequence[str]) -> None:
    """Sanitized names could collide ("A/B" and "A_B"); refuse rather than overwrite."""
    clashes = sorted({d for d in dirs if dirs.count(d) > 1})
    if clashes:
        raise ParityInputError(f"artifact directories {clashes} would be shared by different "
                               "targets/symbols after sanitizing names; rename them")


def planned_model_dirs(panel: pd.DataFrame, keys: Sequence[tuple[str, str]]) -> list[str]:
    """Every unit directory the routed ``(target, view)`` keys will write, before any step
    writes one (per-target steps cannot see each other's directories)."""
    symbols = symbols_of(panel)
    return [model_io.unit_dir(target, view, symbol) for target, view in sorted(keys)
            for symbol in (symbols if view == "SYMBOL_SPECIFIC" else [None])]


def _checked_families(config: TrainingConfig) -> tuple[str, ...]:
    unknown = sorted(set(config.families) - set(FAMILIES))
    if unknown or not config.families:
        raise ParityInputError(f"training families {list(config.families)}: use a non-empty "
                               f"subset of {list(FAMILIES)} (unknown: {unknown})")
    return tuple(sorted(set(config.families)))


def _checked_features(frame: pd.DataFrame, registry: FeatureRegistry, key: tuple[str, str],
                      features: Sequence[str]) -> tuple[str, ...]:
    declared = set(registry.feature_names)
    bad = [f for f in features if f not in declared or f not in frame.columns]
    if not features or bad or len(set(features)) != len(features):
        raise ParityInputError(f"training {key}: selected features must be a non-empty list of "
                               f"distinct declared features present in the panel; bad: {bad}")
    return tuple(features)  # selection's rank order is kept: it is part of the model's identity
