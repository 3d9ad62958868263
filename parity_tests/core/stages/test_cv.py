"""The purge in bars: a label of h bars at the end of a session reaches into the next one."""

import numpy as np
import pandas as pd
import pytest

from parity_pipeline.core.data.synth import BARS_PER_SESSION, session_calendar
from parity_pipeline.core.stages import cv

H = 12  # a 60-minute target on 5-minute bars
TIME_PURGE = pd.Timedelta(minutes=60 + 30)  # horizon + buffer, as ranking computes it


def _label_ends(ts: pd.DatetimeIndex) -> pd.Series:
    return pd.Series(ts).shift(-H)  # the bar whose close ends each row's label


@pytest.mark.parametrize("purge_bars", [0, H])
def test_no_training_label_ends_inside_the_test_block(purge_bars):
    ts = session_calendar(4 * BARS_PER_SESSION)[0]  # 4 sessions: each fold tests one session
    folds = cv.purged_walk_forward(pd.Series(ts), 3, TIME_PURGE, 10, purge_bars=purge_bars)
    ends = _label_ends(ts)
    leaked = [int((ends.iloc[f.train_rows] >= f.test_start).sum()) for f in folds]
    if purge_bars:
        assert leaked == [0, 0, 0]
    else:  # the time purge alone: the last hour of the previous session trains on the test
        assert leaked == [H, H, H]


def test_holdout_purges_bars_too():
    ts = session_calendar(4 * BARS_PER_SESSION)[0]
    fold = cv.chronological_holdout(pd.Series(ts), 0.25, TIME_PURGE, purge_bars=H)
    assert fold.test_start == ts[3 * BARS_PER_SESSION]  # the last session validates
    assert (_label_ends(ts).iloc[fold.train_rows] < fold.test_start).all()
    assert len(fold.train_rows) == 3 * BARS_PER_SESSION - H


def test_the_bar_purge_is_counted_on_the_calendar_of_the_panel():
    """Pooled symbols at the same timestamps: h timestamps, not h rows, are purged."""
    ts = session_calendar(2 * BARS_PER_SESSION)[0]
    pooled = pd.Series(np.repeat(ts, 3))  # three symbols
    fold = cv.chronological_holdout(pooled, 0.5, TIME_PURGE, purge_bars=H)
    assert len(fold.train_rows) == 3 * (BARS_PER_SESSION - H)


def test_split_signature_names_the_bar_purge():
    ts = pd.Series(session_calendar(2 * BARS_PER_SESSION)[0])
    fold = cv.chronological_holdout(ts, 0.5, TIME_PURGE, purge_bars=H)
    assert cv.split_signature([fold], TIME_PURGE, H) != cv.split_signature([fold], TIME_PURGE)
