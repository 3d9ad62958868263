"""The panel as the stages read it, shared by feature selection and training: ``ts`` as UTC
nanoseconds, a target's rows, the rows per symbol, and the model settings both stages fit with."""

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from parity_pipeline.core.data.registry import TargetSpec
from parity_pipeline.core.errors import ParityInputError
from parity_pipeline.core.store import reuse

# Newton steps converge in a few iterations even on collinear MTF features (lbfgs needs ~50).
LOGISTIC_SOLVER = "newton-cholesky"


def checked_panel(panel: pd.DataFrame) -> pd.DataFrame:
    """The panel with ``ts`` as UTC nanoseconds (cv compares ``asi8`` with ns Timestamps)."""
    if "symbol" not in panel.columns or "ts" not in panel.columns or panel.empty:
        raise ParityInputError("the panel needs rows and the columns symbol, ts; build it with "
                               "the sampled_data stage")
    if not isinstance(panel["ts"].dtype, pd.DatetimeTZDtype):
        raise ParityInputError(f"panel column ts must be tz-aware UTC, got {panel['ts'].dtype}")
    return panel.assign(ts=panel["ts"].dt.tz_convert("UTC").dt.as_unit("ns"))


def target_rows(panel: pd.DataFrame, spec: TargetSpec) -> pd.DataFrame:
    """Rows with a non-null target, the target copied to ``__target__`` as float64."""
    rows = panel.loc[panel[spec.name].notna()]
    rows = rows.assign(__target__=rows[spec.name].astype(np.float64)).reset_index(drop=True)
    if spec.task == "binary" and not rows["__target__"].isin([0.0, 1.0]).all():
        raise ParityInputError(f"binary target {spec.name!r} holds values other than 0/1; fix "
                               "the label or declare it as a regression target")
    return rows


def symbol_counts(frame: pd.DataFrame) -> dict[str, int]:
    counts = frame["symbol"].value_counts()
    return {str(sym): int(counts[sym]) for sym in sorted(counts.index)}


def symbols_of(frame: pd.DataFrame) -> tuple[str, ...]:
    """The frame's symbols, sorted: the order SYMBOL_SPECIFIC results are kept and joined in."""
    return tuple(sorted(str(symbol) for symbol in frame["symbol"].unique()))


def require_each_symbol_once(groups: Iterable[Sequence[str]], symbols: Sequence[str],
                             what: str) -> None:
    """Refuse the symbol groups of a unit's shares unless, joined in order, they are
    ``symbols`` sorted: each symbol once, every group consecutive (so the shares' values join
    in the order the unit computed whole keeps them)."""
    covered = [str(symbol) for group in sorted(map(tuple, groups)) for symbol in group]
    if covered != sorted(symbols):
        raise ValueError(f"{what} cover {covered}, not each of the panel's symbols "
                         f"{sorted(symbols)} once")


def fit_columns(panel: pd.DataFrame, spec: TargetSpec, features: Sequence[str],
                symbols: Sequence[str] | None = None) -> reuse.SharedInput:
    """What a fit reads of ``panel``, for its reuse key: ``ts``, the target and ``features`` of
    ``symbols``' rows (None: of every symbol, in the panel's order). The rows a stage fits
    (target rows, folds, splits) are a function of those columns and of the code, so a change
    to one symbol's data changes that symbol's keys and the pooled ones only."""
    return reuse.panel_columns(panel, ("ts", spec.name, *features), symbols)
