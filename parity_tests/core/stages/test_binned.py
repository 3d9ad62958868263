"""LightGBM's binned datasets built once per feature matrix (``core.stages.binned``): the fits
that share one give the models fresh datasets give, and each distinct matrix is binned once."""

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from parity_pipeline import constants
from parity_pipeline.core.data.registry import registry_from_dict
from parity_pipeline.core.stages import binned, cv, model_io, scoring, selection
from parity_pipeline.core.stages.ranking import RankingConfig, rank_targets
from parity_tests.core.stages import test_ranking, test_selection

SEED = 42
PARAMS = scoring.lgbm_params(40, 0.1, 15, 20, 63, SEED)


class Counts:
    """LightGBM datasets binned from raw values (a subset copies bins and is not counted) and
    boosters trained, as LightGBM itself sees them."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.builds = self.fits = 0
        build, train = lgb.basic.Dataset._lazy_init, lgb.train

        def counted_build(*args, **kwargs):
            self.builds += 1
            return build(*args, **kwargs)

        def counted_train(*args, **kwargs):
            self.fits += 1
            return train(*args, **kwargs)

        monkeypatch.setattr(lgb.basic.Dataset, "_lazy_init", counted_build)
        monkeypatch.setattr(lgb, "train", counted_train)

    def take(self) -> tuple[int, int]:
        taken = self.builds, self.fits
        self.builds = self.fits = 0
        return taken


@pytest.fixture()
def counts(monkeypatch) -> Counts:
    return Counts(monkeypatch)


def _matrix(n_rows: int = 900, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n_rows, 6))
    x[rng.random(x.shape) < 0.05] = np.nan  # LightGBM bins missing values apart
    signal = np.nan_to_num(x[:, 0]) + 0.5 * rng.normal(size=n_rows)
    return x, signal, (signal > 0).astype(float)


def _folds(n_rows: int) -> list[cv.Fold]:
    ts = np.datetime64("2026-01-05T14:30") + np.arange(n_rows) * np.timedelta64(5, "m")
    return cv.purged_walk_forward(pd.Series(pd.DatetimeIndex(ts, tz="UTC")), 4,
                                  pd.Timedelta(minutes=15), 100, 3)


def _estimator_oof(task: str, x: np.ndarray, y: np.ndarray, folds) -> np.ndarray:
    """The reference: one fresh LightGBM scikit-learn estimator per fold, as ranking fitted
    before its datasets were shared."""
    pred = np.full(len(y), np.nan)
    for fold in folds:
        if task == "binary":
            model = lgb.LGBMClassifier(**PARAMS).fit(x[fold.train_rows],
                                                     y[fold.train_rows].astype(np.int64))
            pred[fold.test_rows] = model.predict_proba(x[fold.test_rows])[:, 1]
        else:
            model = lgb.LGBMRegressor(**PARAMS).fit(x[fold.train_rows], y[fold.train_rows])
            pred[fold.test_rows] = model.predict(x[fold.test_rows])
    return pred


def test_shared_bins_give_the_estimators_predictions_to_the_bit(counts):
    x, returns, labels = _matrix()
    folds = _folds(len(x))
    with binned.shared():
        regression, _ = scoring._oof_predictions("regression", PARAMS, x, returns, folds)
        builds_first, _ = counts.take()
        binary, _ = scoring._oof_predictions("binary", PARAMS, x, labels, folds)
        builds_second, fits_second = counts.take()
    assert builds_first == len(folds)
    assert (builds_second, fits_second) == (0, len(folds))  # labels set on the same bins
    np.testing.assert_array_equal(regression, _estimator_oof("regression", x, returns, folds))
    np.testing.assert_array_equal(binary, _estimator_oof("binary", x, labels, folds))


def test_ranking_bins_each_training_matrix_once_across_targets(counts):
    panel = test_ranking.build_panel()
    registry = registry_from_dict(test_ranking.registry_dict(
        test_ranking.MODELLED))
    config = RankingConfig(n_estimators=30, ss_n_estimators=20)
    alone = rank_targets(panel, registry, config, SEED, targets=["y_up_15m"])
    builds_alone, fits_alone = counts.take()
    assert builds_alone == fits_alone > 0  # one target: every fold's rows are binned once
    # fwd_ret_15m, fwd_noise_15m and y_up_15m share the horizon and the null tail, so every
    # fold's training rows: the two others add fits and no bins
    same_rows = rank_targets(panel, registry, config, SEED,
                             targets=["fwd_ret_15m", "fwd_noise_15m", "y_up_15m"])
    assert counts.take() == (builds_alone, 3 * fits_alone)
    # the labels are the fit's own: y_up_15m scores as it does alone
    assert [s for s in same_rows.scores if s.target == "y_up_15m"] == list(alone.scores)
    # fwd_partial_15m lacks a symbol's labels: other rows, its own bins
    rank_targets(panel, registry, config, SEED, targets=["fwd_ret_15m", "fwd_partial_15m"])
    builds, fits = counts.take()
    assert builds_alone < builds < fits == 2 * fits_alone - 3  # no S00 model: 3 folds fewer


@pytest.mark.parametrize(("view", "groups"), [("CROSS_SECTIONAL", 1),
                                              ("SYMBOL_SPECIFIC", 6)])
def test_selection_bins_each_window_once_for_its_resamples_and_targets(counts, view, groups):
    panel, registry = test_selection.make_panel(), test_selection.make_registry()
    config = test_selection.FAST
    selection.select_features(panel, registry, [("fwd", view)], test_selection.FEATURES,
                              config, SEED)
    assert counts.take() == (groups, groups * (1 + config.n_resamples))
    # "up" has the same training window (same horizon and null tail): no bins of its own
    selection.select_features(panel, registry, [("fwd", view), ("up", view)],
                              test_selection.FEATURES, config, SEED)
    assert counts.take() == (groups, 2 * groups * (1 + config.n_resamples))
    # a piece holding only the resamples, called outside any shared() scope, bins its windows
    # once for all of them too
    selection.select_share(panel, registry, ("fwd", view), [], test_selection.FEATURES,
                           config, SEED, fits=("resamples",))
    assert counts.take() == (groups, groups * config.n_resamples)


def _model(dataset: lgb.Dataset, params: dict) -> str:
    return binned.train(params, dataset, 15).model_to_string()


def test_a_resample_trains_on_its_rows_in_the_window_bins():
    x, returns, _ = _matrix()
    rows = np.repeat(np.arange(len(x)), np.random.default_rng(5).integers(0, 3, len(x)))
    params = scoring.booster_params("regression", PARAMS)
    window = binned.Matrix(x)
    resampled = _model(window.resampled(params, returns[rows], rows), params)
    wanted = binned.dataset_params(params)
    window_bins = lgb.Dataset(x, label=returns, params=wanted).construct()
    in_window_bins = lgb.Dataset(x[rows], label=returns[rows], reference=window_bins,
                                 params=wanted)
    own_bins = lgb.Dataset(x[rows], label=returns[rows], params=wanted)
    assert resampled == _model(in_window_bins, params)
    assert resampled != _model(own_bins, params)  # the bins do differ: the test can fail
    with pytest.raises(ValueError, match="ascending"):
        window.resampled(params, returns[rows][::-1], rows[::-1])


def test_only_dataset_parameters_key_the_shared_bins(counts):
    x, returns, labels = _matrix()
    params = scoring.booster_params("regression", PARAMS)
    with binned.shared():
        for task, label in (("regression", returns), ("binary", labels)):
            booster_params = {**params, "objective": task, "learning_rate": 0.05}
            binned.train(booster_params, binned.Matrix(x).binned(booster_params, label), 5)
        assert counts.take() == (1, 2)  # objective and learning rate: the booster's
        binned.Matrix(x).binned({**params, "max_bin": 15}, returns)
        binned.Matrix(x[:-1]).binned(params, returns[:-1])
        binned.Matrix(x).binned(params, returns[:100], np.arange(100))
        assert counts.take()[0] == 3  # other bins, other matrix, other rows
    binned.Matrix(x).binned(params, returns)
    assert counts.take()[0] == 1  # outside shared(): nothing is kept


def test_the_shared_bins_stay_under_their_budget(counts, monkeypatch):
    x, returns, _ = _matrix()
    monkeypatch.setattr(binned, "MAX_SHARED_BYTES", x.size * 2)  # room for two matrices
    params = scoring.booster_params("regression", PARAMS)
    first, second, third = (np.delete(np.arange(len(x)), i) for i in range(3))
    with binned.shared():
        for rows in (first, second, third, third, first):
            binned.Matrix(x).binned(params, returns[rows], rows)
    assert counts.take()[0] == 4  # the first was evicted by the third, built again


def test_predictions_run_on_the_configured_threads(monkeypatch):
    """A booster rebuilt from model text (what lgb.train returns) forgets its parameters and
    would predict on a thread per core; two steps side by side would then oversubscribe."""
    calls = []
    predict = lgb.Booster.predict

    def recorded(self, *args, **kwargs):
        calls.append(kwargs.get("num_threads"))
        return predict(self, *args, **kwargs)

    monkeypatch.setattr(lgb.Booster, "predict", recorded)
    x, returns, _ = _matrix()
    folds = _folds(len(x))
    scoring._oof_predictions("regression", PARAMS, x, returns, folds)
    booster = lgb.Booster(model_str=binned.train(
        scoring.booster_params("regression", PARAMS), binned.Matrix(x).binned(PARAMS, returns),
        5).model_to_string())
    frame = pd.DataFrame(x, columns=booster.feature_name())
    model_io.LightGBMModel(booster).predict(frame)
    assert calls == [constants.LIGHTGBM_NUM_THREADS] * (len(folds) + 1)
