"""Walk-forward cross-validation purged by *time* (DESIGN §4).

The panel is split on its sorted unique timestamps, never on row positions, so every symbol's
rows at one timestamp land on the same side. Fold ``k`` tests on the ``k``-th of ``n_folds + 1``
equal blocks of timestamps (the first block is only ever trained on) and trains on every
timestamp strictly earlier than ``test_start - purge``. The purge must cover the target's
horizon (a label at ``t`` looks ``horizon`` ahead) plus a buffer.

A horizon of h *bars* can span more calendar time than h bar lengths: the last bars of a
session look into the next session, over the night or a weekend. So training also stops
``purge_bars`` (the target's ``horizon_bars``) timestamps of the panel's own calendar before
the test, and the earlier of the two cutoffs holds: the label of the last training bar then
ends before the first test bar wherever the symbols share that calendar, and the calendar-time
purge covers a symbol with missing bars (an imported dataset declares the longest calendar
span of its horizons as ``horizon_minutes``).

scikit-learn's ``TimeSeriesSplit(gap=...)`` purges by row count, which is wrong on a pooled
panel with many rows per timestamp and on calendars with overnight gaps; hence this module.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd

from parity_pipeline.core.errors import ParityInputError
from parity_pipeline.core.hashing import sha256_json


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: positional row indices plus the time boundaries they came from."""

    fold: int
    train_rows: np.ndarray
    test_rows: np.ndarray
    train_start: pd.Timestamp
    train_end: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp

    def boundaries(self) -> dict[str, object]:
        return {"fold": self.fold, "train_start": self.train_start, "train_end": self.train_end,
                "test_start": self.test_start, "test_end": self.test_end,
                "n_train": int(len(self.train_rows)), "n_test": int(len(self.test_rows))}


def train_cutoff(unique: pd.DatetimeIndex, test_index: int, purge: pd.Timedelta,
                 purge_bars: int) -> pd.Timestamp:
    """Training rows lie strictly before this: ``purge`` of calendar time before the test start
    ``unique[test_index]``, and at least ``purge_bars`` timestamps of the calendar before it."""
    return min(unique[test_index] - purge, unique[max(test_index - purge_bars, 0)])


def purged_walk_forward(ts: pd.Series, n_folds: int, purge: pd.Timedelta,
                        min_train_rows: int = 50, purge_bars: int = 0) -> list[Fold]:
    """Folds over ``ts`` (one timestamp per row, any order). Raises when the purge is too long.

    A fold whose purged training set has fewer than ``min_train_rows`` rows is dropped; if no
    fold survives the call raises with the numbers a user needs to fix the config.
    """
    if n_folds < 1:
        raise ParityInputError(f"n_folds must be >= 1, got {n_folds}")
    stamps = pd.DatetimeIndex(ts).as_unit("ns")  # compare in one unit (pandas 3 may use us)
    unique = stamps.unique().sort_values()
    span = unique[-1] - unique[0] if len(unique) else pd.Timedelta(0)
    if purge >= span:
        raise ParityInputError(
            f"purge {purge} is at least the data span {span} ({unique[0] if len(unique) else '-'}"
            f" .. {unique[-1] if len(unique) else '-'}): no training row would survive; lower "
            "the horizon/purge buffer or raise max_rows_per_symbol")
    blocks = np.array_split(np.arange(len(unique)), n_folds + 1)
    values = stamps.asi8
    folds = []
    for k, block in enumerate(blocks[1:]):
        if len(block) == 0:
            continue
        test_start, test_end = unique[block[0]], unique[block[-1]]
        cutoff = train_cutoff(unique, int(block[0]), purge, purge_bars)
        train_rows = np.flatnonzero(values < cutoff.value)
        test_rows = np.flatnonzero((values >= test_start.value) & (values <= test_end.value))
        if len(train_rows) < min_train_rows or len(test_rows) == 0:
            continue
        folds.append(Fold(fold=k, train_rows=train_rows, test_rows=test_rows,
                          train_start=unique[0], train_end=pd.Timestamp(stamps[train_rows].max()),
                          test_start=test_start, test_end=test_end))
    if not folds:
        raise ParityInputError(
            f"no walk-forward fold has {min_train_rows} training rows after a purge of {purge} "
            f"over a span of {span}; lower n_folds or the purge, or raise max_rows_per_symbol")
    return folds


def chronological_holdout(ts: pd.Series, valid_fraction: float,
                          purge: pd.Timedelta, purge_bars: int = 0) -> Fold:
    """One train/validation split: the last ``valid_fraction`` of timestamps validate, and
    training stops ``purge`` before them. Used for early stopping and out-of-sample metrics."""
    if not 0.0 < valid_fraction < 1.0:
        raise ParityInputError(f"valid_fraction must be in (0, 1), got {valid_fraction}")
    stamps = pd.DatetimeIndex(ts).as_unit("ns")  # compare in one unit (pandas 3 may use us)
    unique = stamps.unique().sort_values()
    first_index = int(np.floor(len(unique) * (1.0 - valid_fraction)))
    first_valid = unique[first_index]
    cutoff = train_cutoff(unique, first_index, purge, purge_bars)
    if cutoff <= unique[0]:
        raise ParityInputError(
            f"purge {purge} leaves no training data before the validation start {first_valid}; "
            "lower the purge or valid_fraction, or raise max_rows_per_symbol")
    values = stamps.asi8
    train_rows = np.flatnonzero(values < cutoff.value)
    valid_rows = np.flatnonzero(values >= first_valid.value)
    return Fold(fold=0, train_rows=train_rows, test_rows=valid_rows, train_start=unique[0],
                train_end=pd.Timestamp(stamps[train_rows].max()), test_start=first_valid,
                test_end=unique[-1])


def split_signature(folds: list[Fold], purge: pd.Timedelta, purge_bars: int = 0) -> str:
    """SHA-256 of the fold boundaries and the purge: equal splits give equal signatures."""
    return sha256_json({"purge_seconds": purge.total_seconds(), "purge_bars": purge_bars,
                        "folds": [fold.boundaries() for fold in folds]})
