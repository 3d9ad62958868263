"""LightGBM's binned datasets, built once per feature matrix and shared by the fits that read it.

LightGBM trains on a *binned* copy of its feature matrix (each value replaced by the histogram
bin it falls in; bin edges from the matrix's own values). Building it is a sizeable part of a
small fit: on 16,000 rows x 17 features it took 38 ms against 74 ms for the whole 50-tree fit
(2026-12-05), and a default run built 676 of them. Two kinds of fits read the same binned data:

- **The same rows for another target.** Target ranking fits every target on each fold's
  training rows; targets of one horizon have the same rows (the same null tail), so the same
  matrix. ``shared()`` keeps each binned dataset built inside it, keyed by the matrix's content,
  the rows and the dataset parameters, and a later fit on the same key only sets its labels
  (ranking bins 140 datasets for its 280 fits on the default sample). The model is the one a
  fresh build gives, to the bit (tested against LightGBM's scikit-learn estimators): the bins
  are a function of the matrix and those parameters alone. One dataset per symbol set over all
  rows, subset per fold, would share more but take bin edges from the test folds' features
  too, so a fold's bins only ever come from the rows it trains on.
- **A resample of the rows.** Feature selection's stability resamples are block bootstraps of
  one training window. Each takes its rows of the window's binned dataset (``Matrix.resampled``,
  LightGBM's ``Dataset.subset``: no new bin edges, a copy of the binned rows) instead of
  binning the resampled rows again. The bin edges are then those of the window the main fit
  bins, the same for every resample, so a resample varies the rows and nothing else; it is an
  algorithm change from binning each resample on its own (its importances and so the stability
  figures moved; README, Performance).

Only parameters that shape the bins key a dataset; the rest (``TRAINING_ONLY``) are the
booster's. A shared dataset's labels are set by each fit just before it trains (the fits of a
step run one after another), and no booster keeps training on it afterwards (``lgb.train``
returns a booster rebuilt from its model text).
"""

import collections
import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from typing import Any

import lightgbm as lgb
import numpy as np

from parity_pipeline.core.hashing import sha256_json
from parity_pipeline.core.store import reuse

# Booster parameters that do not shape the binned dataset (LightGBM checks the others, its
# dataset parameters, when a built dataset is trained with new parameters). A parameter not
# named here keys the dataset, so an unknown one costs a rebuild, never a wrong bin.
TRAINING_ONLY = frozenset({"objective", "metric", "learning_rate", "num_leaves",
                           "n_estimators", "num_iterations", "early_stopping_round"})
# What ``shared()`` may keep, counted as one byte per binned value (LightGBM's dense bins at
# up to 255 bins a feature). Every dataset of a ranking step at 50 symbols x 2000 rows and
# the default 34 features comes to about 54 MB by the folds' sizes (pooled folds train on 2.5
# panels' rows per horizon, a symbol's on 1.5 times its rows; 4 horizons), so 256 MB keeps
# them all with room to spare and bounds what a larger panel can hold.
MAX_SHARED_BYTES = 256 * 2**20


class _Shared:
    """Binned datasets by key, least recently used first out past ``MAX_SHARED_BYTES``."""

    def __init__(self) -> None:
        self.datasets: collections.OrderedDict[str, tuple[lgb.Dataset, int]] = (
            collections.OrderedDict())
        self.size = 0

    def get(self, key: str) -> lgb.Dataset | None:
        held = self.datasets.get(key)
        if held is None:
            return None
        self.datasets.move_to_end(key)
        return held[0]

    def put(self, key: str, dataset: lgb.Dataset, size: int) -> None:
        self.datasets[key] = (dataset, size)
        self.size += size
        while self.size > MAX_SHARED_BYTES and len(self.datasets) > 1:
            _, (_, freed) = self.datasets.popitem(last=False)
            self.size -= freed


_SHARED: contextvars.ContextVar[_Shared | None] = contextvars.ContextVar(
    "parity_binned_datasets", default=None)


@contextlib.contextmanager
def shared() -> Iterator[None]:
    """Within: every binned dataset built is kept and reused by later fits on the same matrix,
    rows and dataset parameters (a step's pieces, a stage call's targets). Nested calls share
    the outer scope's datasets."""
    if _SHARED.get() is not None:
        yield
        return
    token = _SHARED.set(_Shared())
    try:
        yield
    finally:
        _SHARED.reset(token)


def dataset_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters that shape a binned dataset (every one but ``TRAINING_ONLY``)."""
    return {name: value for name, value in params.items() if name not in TRAINING_ONLY}


class Matrix:
    """A float64 feature matrix whose row sets are binned for LightGBM, each at most once in
    a ``shared()`` scope (its content digest taken once, when a key first needs it)."""

    def __init__(self, values: np.ndarray) -> None:
        # kept as given: the other families fit on this very array, and a copy in another
        # memory order changed a linear fit's coefficients in the 15th digit
        self.values = np.asarray(values, dtype=np.float64)
        self._digest: Any = None

    def digest(self) -> Any:
        if self._digest is None:
            self._digest = reuse.digest(self.values)
        return self._digest

    def binned(self, params: Mapping[str, Any], label: np.ndarray,
               rows: np.ndarray | None = None) -> lgb.Dataset:
        """The rows ``rows`` (None: all) binned on their own values, labelled ``label``: the
        dataset ``lgb.Dataset(values[rows], label, params=params)`` builds, reused when
        ``shared()`` holds it. Train on it before asking for another."""
        wanted = dataset_params(params)
        pool = _SHARED.get()
        key = sha256_json({"matrix": self.digest(), "params": wanted,
                           "rows": None if rows is None else reuse.digest(rows)})
        dataset = pool.get(key) if pool is not None else None
        if dataset is None:
            values = self.values if rows is None else self.values[rows]
            dataset = lgb.Dataset(values, label=_labels(label), params=wanted).construct()
            if pool is not None:
                pool.put(key, dataset, int(values.size))
        return dataset.set_label(_labels(label))

    def resampled(self, params: Mapping[str, Any], label: np.ndarray,
                  rows: np.ndarray) -> lgb.Dataset:
        """Rows ``rows`` of the matrix (ascending, repeats allowed) in the bins of all its rows,
        labelled ``label`` (one per row of ``rows``). Inside ``shared()`` the matrix is binned
        once for all its resamples and its own fit."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) != len(label) or np.any(np.diff(rows) < 0):
            raise ValueError("resampled rows must be ascending, one label each")
        whole = self.binned(params, np.zeros(len(self.values)))
        subset = whole.subset(rows.tolist(), params=dataset_params(params)).construct()
        return subset.set_label(_labels(label))


def _labels(label: np.ndarray) -> np.ndarray:
    return np.asarray(label, dtype=np.float64)


def train(params: Mapping[str, Any], dataset: lgb.Dataset, num_boost_round: int) -> lgb.Booster:
    """A booster trained on a dataset of ``Matrix`` (LightGBM's own ``lgb.train``)."""
    return lgb.train(dict(params), dataset, num_boost_round=int(num_boost_round))
