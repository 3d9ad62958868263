"""Stability of a feature selection across resamples (DESIGN §4).

Given the top-K sets and consensus scores from ``M`` resamples over the same ``d`` candidates:

- **Jaccard@K**: mean over the ``M(M-1)/2`` pairs of ``|A ∩ B| / |A ∪ B|``.
- **Kendall tau**: mean over pairs of ``scipy.stats.kendalltau`` (tau-b, so tied scores are
  handled) between the resamples' consensus scores, i.e. agreement of the whole ranking, not only
  of the top K. A pair where either ranking is constant has no defined tau and is left out.
- **Nogueira Φ** (Nogueira, Sechidis & Brown, JMLR 2018, eq. 4)::

      Φ = 1 - mean_f(s_f²) / ((k̄/d)(1 - k̄/d)),   s_f² = M/(M-1) · p_f (1 - p_f)

  where ``p_f`` is the share of resamples selecting feature ``f`` and ``k̄`` the mean number of
  features selected. Φ is 1 for identical selections, ~0 for random ones, and is undefined (NaN)
  when every resample selects all or none of the candidates (the denominator is 0).
"""

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import kendalltau

from parity_pipeline.core.errors import ParityInputError


@dataclass(frozen=True)
class StabilityStats:
    n_resamples: int
    jaccard_at_k: float
    kendall_tau: float
    nogueira_phi: float


def jaccard(first: Sequence[str], second: Sequence[str]) -> float:
    union = set(first) | set(second)
    if not union:
        return 1.0  # two empty selections agree completely
    return len(set(first) & set(second)) / len(union)


def mean_pairwise_jaccard(selections: Sequence[Sequence[str]]) -> float:
    pairs = list(itertools.combinations(selections, 2))
    return float(np.mean([jaccard(a, b) for a, b in pairs]))


def mean_pairwise_kendall(scores: Sequence[npt.ArrayLike]) -> float:
    """Mean tau-b over pairs of score vectors (same candidate order); NaN if no pair defines tau."""
    taus = [kendalltau(np.asarray(a), np.asarray(b)).statistic
            for a, b in itertools.combinations(scores, 2)
            if np.ptp(np.asarray(a)) > 0 and np.ptp(np.asarray(b)) > 0]
    finite = [float(t) for t in taus if math.isfinite(t)]
    return float(np.mean(finite)) if finite else math.nan


def nogueira_phi(indicators: np.ndarray) -> float:
    """Φ for an ``M × d`` 0/1 matrix (row = resample, column = candidate feature)."""
    matrix = np.asarray(indicators, dtype=float)
    n_resamples, n_features = matrix.shape
    share = matrix.mean(axis=0)
    variance = n_resamples / (n_resamples - 1) * share * (1.0 - share)
    k_bar = matrix.sum(axis=1).mean()
    denominator = (k_bar / n_features) * (1.0 - k_bar / n_features)
    if denominator <= 0.0:
        return math.nan
    return float(1.0 - variance.mean() / denominator)


def selection_stability(candidates: Sequence[str], selections: Sequence[Sequence[str]],
                        scores: Sequence[npt.ArrayLike]) -> StabilityStats:
    """Jaccard@K, Kendall tau and Φ; each score vector follows the order of ``candidates``."""
    if len(selections) < 2 or len(selections) != len(scores):
        raise ParityInputError(f"stability needs >= 2 resamples with one score vector each, got "
                               f"{len(selections)} selections and {len(scores)} score vectors")
    position = {name: i for i, name in enumerate(candidates)}
    indicators = np.zeros((len(selections), len(candidates)))
    for row, selected in enumerate(selections):
        indicators[row, [position[name] for name in selected]] = 1.0
    return StabilityStats(n_resamples=len(selections),
                          jaccard_at_k=mean_pairwise_jaccard(selections),
                          kendall_tau=mean_pairwise_kendall(scores),
                          nogueira_phi=nogueira_phi(indicators))
