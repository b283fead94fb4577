"""Losses and metrics for sparse labels: only labeled pixels count.

A label map holds biomass (Mg/ha) at lidar footprints and ``ignore_value`` (-1) everywhere
else, as the study's ``ignore_index = -1``. The masked RMSE is

    RMSE = sqrt( sum_i m_i (p_i - y_i)^2 / max(sum_i m_i, 1) ),   m_i = [y_i != ignore_value]

Unlabeled pixels are removed with ``where`` before squaring (not multiplied by a zero
weight), so a NaN or Inf prediction there cannot leak into the loss or its gradient, and the
gradient with respect to an unlabeled pixel's prediction is exactly zero. The square root has
an infinite derivative at 0 (a perfect fit); there it is defined as 0, so the value stays
exact everywhere.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

__all__ = ["BINS_MG_HA", "bias", "binned_rmse", "masked_mse", "masked_rmse"]

# The study's evaluation bins of biomass, Mg/ha.
BINS_MG_HA: tuple[tuple[float, float], ...] = ((0.0, 100.0), (100.0, 200.0), (200.0, 300.0))


def _mask(target: Array, ignore_value: float) -> Array:
    return target != ignore_value


def masked_mse(
    pred: Float[ArrayLike, "*shape"],
    target: Float[ArrayLike, "*shape"],
    ignore_value: float = -1.0,
) -> Float[Array, ""]:
    """Mean squared error over the pixels whose target is not ``ignore_value`` (0 when none)."""
    pred = jnp.asarray(pred)
    target = jnp.asarray(target, pred.dtype)
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {pred.shape} must equal target shape {target.shape}")
    m = _mask(target, ignore_value)
    # where() before the square: unlabeled pixels contribute nothing, not 0 * value.
    sq = jnp.where(m, jnp.square(jnp.where(m, pred, target) - target), 0.0)
    n = jnp.sum(m.astype(pred.dtype))
    return jnp.sum(sq) / jnp.maximum(n, 1.0)


def _safe_sqrt(x: Array) -> Array:
    # d sqrt(x)/dx is infinite at 0 (a perfect fit); define it as 0 there instead of NaN.
    pos = x > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, x, 1.0)), 0.0)


def masked_rmse(
    pred: Float[ArrayLike, "*shape"],
    target: Float[ArrayLike, "*shape"],
    ignore_value: float = -1.0,
) -> Float[Array, ""]:
    """Root-mean-square error over labeled pixels (``target != ignore_value``).

    Args:
        pred: Predictions, any shape (e.g. ``(b, H, W)``), Mg/ha.
        target: Labels of the same shape; ``ignore_value`` marks unlabeled pixels.
        ignore_value: The no-label value (the study's ``ignore_index = -1``).

    Returns:
        Scalar RMSE; 0 when no pixel is labeled. Its gradient is exactly zero at unlabeled
        pixels, whatever ``pred`` holds there (NaN included).
    """
    return _safe_sqrt(masked_mse(pred, target, ignore_value))


def binned_rmse(
    pred: np.ndarray,
    target: np.ndarray,
    bins: tuple[tuple[float, float], ...] = BINS_MG_HA,
    ignore_value: float = -1.0,
) -> dict[str, float | int | None]:
    """RMSE overall and within bins of the *label* (host-side, for evaluation).

    A labeled pixel belongs to bin ``[lo, hi)``; the last bin also takes ``hi`` itself.

    Returns:
        ``{"rmse": .., "n": .., "rmse_0_100": .., "n_0_100": .., ...}``; a bin's RMSE is None
        when it holds no label.
    """
    p = np.asarray(pred, np.float64).reshape(-1)
    y = np.asarray(target, np.float64).reshape(-1)
    m = y != ignore_value
    p, y = p[m], y[m]
    out: dict[str, float | int | None] = {
        "rmse": float(np.sqrt(np.mean((p - y) ** 2))) if y.size else None,
        "n": int(y.size),
    }
    for i, (lo, hi) in enumerate(bins):
        last = i == len(bins) - 1
        sel = (y >= lo) & ((y <= hi) if last else (y < hi))
        name = f"{lo:g}_{hi:g}"
        out[f"rmse_{name}"] = float(np.sqrt(np.mean((p[sel] - y[sel]) ** 2))) if sel.any() else None
        out[f"n_{name}"] = int(sel.sum())
    return out


def bias(pred: np.ndarray, target: np.ndarray, ignore_value: float = -1.0) -> float | None:
    """Mean of ``pred - target`` over labeled pixels (host-side)."""
    y = np.asarray(target, np.float64)
    m = y != ignore_value
    if not m.any():
        return None
    return float(np.mean(np.asarray(pred, np.float64)[m] - y[m]))
