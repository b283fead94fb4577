"""GeoLLM's rank labels (Manvi et al. 2024, §3.2): a target becomes its normalised fractional
rank ``r`` in ``[0, 1]`` (ties share their average rank), reported as ``int(r * 100) / 10``
capped at 9.9, i.e. one of 0.0, 0.1, ..., 9.9. Ranks make targets with heavy tails (population
density) and bounded rates comparable, and give the language model a fixed output range."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.stats import pearsonr, rankdata

from jaxgeo.errors import InputError

__all__ = ["fractional_rank", "pearson_r2", "rank_labels"]


def fractional_rank(values: npt.ArrayLike) -> np.ndarray:
    """Normalised fractional rank ``(rank - 1) / (n - 1)`` with average ranks for ties: 0 for
    the smallest value, 1 for the largest.

    Raises:
        InputError: Fewer than two values, or a value that is not finite.
    """
    v = np.asarray(values, np.float64).reshape(-1)
    if v.size < 2:
        raise InputError(f"rank labels need at least 2 values, got {v.size}")
    if not np.isfinite(v).all():
        raise InputError("rank labels need finite target values (found NaN or inf)")
    return (rankdata(v, method="average") - 1.0) / (v.size - 1.0)


def rank_labels(values: npt.ArrayLike) -> np.ndarray:
    """Labels ``min(int(r * 100) / 10, 9.9)`` of the fractional ranks ``r`` (float64)."""
    r = fractional_rank(values)
    # The small offset keeps exact percentiles (r = 0.53 -> 53) from flooring to 52 through
    # binary rounding of r * 100.
    return np.minimum(np.floor(r * 100.0 + 1e-9) / 10.0, 9.9)


def pearson_r2(pred: npt.ArrayLike, true: npt.ArrayLike) -> float:
    """The paper's metric: squared Pearson correlation (0 when a side is constant)."""
    p, t = np.asarray(pred, np.float64).ravel(), np.asarray(true, np.float64).ravel()
    if p.shape != t.shape or p.size < 2:
        raise InputError(
            f"pearson_r2 needs two equal-length arrays of >= 2, got {p.shape} {t.shape}"
        )
    if np.ptp(p) == 0.0 or np.ptp(t) == 0.0:
        return 0.0
    return float(pearsonr(p, t).statistic ** 2)
