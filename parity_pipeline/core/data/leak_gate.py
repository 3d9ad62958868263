"""The pre-launch leak gate: a declared feature that nearly copies a target or a label-side
column (both computed from the future) is refused before a run starts.

The registry already refuses a feature that *is* a target or label-side column or is named
like one (``registry.FORWARD_PREFIXES``); this gate looks at the values. A feature whose
``|Pearson correlation|`` with such a column reaches ``MAX_ABS_CORR_TO_LABEL`` on the rows
where both are present (identical values included) would be selected first and trained on the
answer.

Per symbol, not on the pooled panel: the gate runs where the other value gates run
(``sampling.check_window_values``, called by ``preflight`` before ``parity run`` launches and
by the ``sampled_data`` step of runs started from the UI or the schedule), both of which read
one symbol's window at a time, so the message can name the file; and a column built as a copy
is a copy in every symbol's window.

Ranking's in-run scan (``ranking.scan_leaks``, ``RankingConfig.leak_corr`` = 0.99 on the pooled
panel) stays as the second line, for what this gate does not look for: a feature whose rounding
reproduces a binary label (label agreement) while its correlation stays below the limit, and
panels built in code rather than read from files.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from parity_pipeline.core.data.registry import FeatureRegistry
from parity_pipeline.core.errors import ParityInputError

# Real signals are far weaker (the sample's planted features reach |corr| 0.47 with a forward
# return, daily equities 0.24): at 0.95 a feature is a copy of the future, not a forecast of it.
MAX_ABS_CORR_TO_LABEL = 0.95
MIN_OVERLAP_ROWS = 30  # fewer rows where both are present say nothing either way


@dataclass(frozen=True)
class NearCopy:
    feature: str
    label: str  # the closest target or label-side column
    abs_corr: float
    rows: int  # rows of the window where both are present
    identical: bool


def near_copies(window: pa.Table, registry: FeatureRegistry) -> list[NearCopy]:
    """Every feature of ``window`` that nearly copies a target or label-side column, by name."""
    labels = [name for name in sorted(set(registry.target_names) | set(registry.label_side))
              if name in window.column_names and _numeric(window.schema.field(name).type)]
    if not labels:
        return []
    features = list(registry.feature_names)
    feature_values, label_values = _matrix(window, features), _matrix(window, labels)
    corr, overlap = abs_correlations(feature_values, label_values, MIN_OVERLAP_ROWS)
    found = []
    for row in np.flatnonzero((np.nan_to_num(corr) >= MAX_ABS_CORR_TO_LABEL).any(axis=1)):
        col = int(np.nanargmax(corr[row]))
        f, g = feature_values[:, row], label_values[:, col]
        both = ~(np.isnan(f) | np.isnan(g))
        found.append(NearCopy(features[row], labels[col], float(corr[row, col]),
                              int(overlap[row, col]), np.array_equal(f[both], g[both])))
    return found


def refuse_near_copies(window: pa.Table, path: Path, symbol: str,
                       registry: FeatureRegistry) -> None:
    """Raise ``ParityInputError`` naming the first near copy (feature, its column, how close)
    and the file; the other near-copy features are listed so one edit fixes them all."""
    found = near_copies(window, registry)
    if not found:
        return
    first = found[0]
    role = "target" if first.label in registry.target_names else "label-side column"
    likeness = "identical values" if first.identical else f"|correlation| {first.abs_corr:.4f}"
    others = f"; other near copies: {', '.join(c.feature for c in found[1:])}" \
        if len(found) > 1 else ""
    raise ParityInputError(
        f"symbol {symbol}: {path} feature {first.feature!r} nearly copies {role} "
        f"{first.label!r}: {likeness} on the {first.rows} rows of the window where both are "
        f"present (limit {MAX_ABS_CORR_TO_LABEL}){others}; a feature must be known at the bar's "
        f"close, so this one would be trained on the answer: remove it from the features of "
        f"{registry.source}, or give it the role raw; nothing was run")


def abs_correlations(features: np.ndarray, labels: np.ndarray, min_rows: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """``|Pearson correlation|`` of every feature column with every label column over the rows
    where both are present (as ``pandas.DataFrame.corr``), and those row counts. NaN where
    fewer than ``min_rows`` rows overlap or a side is constant on them. The masked sums are
    matrix products: one pass for every pair, not one per pair (this runs on every window)."""
    f, f_in = _centred(features)  # centred first, so the sums below lose no precision
    g, g_in = _centred(labels)
    n = f_in.T @ g_in
    sum_f, sum_g = f.T @ g_in, f_in.T @ g
    sq_f, sq_g = (f * f).T @ g_in, f_in.T @ (g * g)
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = f.T @ g - sum_f * sum_g / n
        var_f, var_g = sq_f - sum_f ** 2 / n, sq_g - sum_g ** 2 / n
        corr = np.abs(cov) / np.sqrt(var_f * var_g)
    # constant on the overlap: the variance is rounding residue of the sum of squares
    flat = (var_f <= 1e-12 * sq_f) | (var_g <= 1e-12 * sq_g)
    corr[(n < min_rows) | flat] = np.nan
    return np.minimum(corr, 1.0), n


def _centred(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Columns minus their mean with NaN as 0, and the 0/1 mask of present values."""
    present = ~np.isnan(values)
    mean = np.where(present, values, 0.0).sum(axis=0) / np.maximum(present.sum(axis=0), 1)
    return np.where(present, values - mean, 0.0), present.astype(float)


def _matrix(window: pa.Table, names: list[str]) -> np.ndarray:
    """Rows x columns as float64 (label-side columns are not cast by the sampler)."""
    return np.column_stack([window.column(name).to_numpy(zero_copy_only=False).astype(float)
                            for name in names])


def _numeric(field_type: pa.DataType) -> bool:
    return pa.types.is_floating(field_type) or pa.types.is_integer(field_type)
