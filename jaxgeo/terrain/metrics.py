"""Evaluation without pretrained networks (NumPy, float64).

- :func:`wasserstein1`: exact 1-D Wasserstein-1 distance of two empirical distributions,
  used on slopes (m per cell) and curvatures (m per cell²) of generated vs held-out terrain;
- :func:`spectrum_slope`: slope of the radially averaged power spectrum in log-log (a fractal
  surface with ``P(k) ∝ k^-β`` gives ``-β``);
- :func:`condition_consistency`: how well samples honour their conditions (RMSE of the block
  means against the coarse heightmap; agreement of the class map);
- :func:`seam_discontinuity`: jump across outpainting seams beyond what the neighbouring
  differences predict (zero for any field quadratic across the seam).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "condition_consistency",
    "curvature",
    "radial_spectrum",
    "seam_discontinuity",
    "slope",
    "spectrum_slope",
    "terrain_stats",
    "wasserstein1",
]


def slope(z: np.ndarray) -> np.ndarray:
    """Gradient magnitude (elevation units per cell) of ``(..., h, w)`` fields, as
    :func:`jaxgeo.terrain.conditions.slope`."""
    z = np.asarray(z, np.float64)
    gy, gx = np.gradient(z, axis=(-2, -1))
    return np.hypot(gx, gy)


def curvature(z: np.ndarray) -> np.ndarray:
    """Five-point Laplacian (elevation units per cell²) at interior cells, ``(..., h-2, w-2)``."""
    z = np.asarray(z, np.float64)
    c = z[..., 1:-1, 1:-1]
    return z[..., :-2, 1:-1] + z[..., 2:, 1:-1] + z[..., 1:-1, :-2] + z[..., 1:-1, 2:] - 4.0 * c


def wasserstein1(a: np.ndarray, b: np.ndarray) -> float:
    """Exact W1 between the empirical distributions of ``a`` and ``b`` (any sizes):
    ``∫ |F_a(x) - F_b(x)| dx`` over the merged support."""
    a = np.sort(np.asarray(a, np.float64).ravel())
    b = np.sort(np.asarray(b, np.float64).ravel())
    allv = np.concatenate([a, b])
    allv.sort(kind="mergesort")
    deltas = np.diff(allv)
    fa = np.searchsorted(a, allv[:-1], side="right") / a.size
    fb = np.searchsorted(b, allv[:-1], side="right") / b.size
    return float(np.sum(np.abs(fa - fb) * deltas))


def radial_spectrum(z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum of square ``(..., n, n)`` fields (averaged over leading
    axes): ``(k, P(k))`` for integer wavenumbers ``k = 1 .. n/2`` (cycles per field).

    Each field has its mean plane removed and a Hann window applied, so the edges' jump (the
    periodic extension's discontinuity) does not add a ``k^-2`` tail.
    """
    z = np.asarray(z, np.float64)
    n = z.shape[-1]
    z = z.reshape(-1, z.shape[-2], n)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float64)
    design = np.stack([np.ones(n * n), yy.ravel(), xx.ravel()], axis=1)
    coef, *_ = np.linalg.lstsq(design, z.reshape(z.shape[0], -1).T, rcond=None)
    z = z - (design @ coef).T.reshape(z.shape)
    w = np.hanning(n)
    power = np.abs(np.fft.fft2(z * np.outer(w, w))) ** 2
    power = power.mean(axis=0)
    k = np.fft.fftfreq(n) * n
    kr = np.rint(np.hypot(*np.meshgrid(k, k, indexing="ij"))).astype(int)
    ks = np.arange(1, n // 2 + 1)
    p = np.array([power[kr == kk].mean() for kk in ks])
    return ks.astype(np.float64), p


def spectrum_slope(z: np.ndarray, k_range: tuple[float, float] | None = None) -> float:
    """Least-squares slope of ``log P`` against ``log k`` of :func:`radial_spectrum`, over
    ``k_range`` (default: 2 to n/4 cycles per field, above the window's smoothing and below
    the grid scale)."""
    k, p = radial_spectrum(z)
    n = 2 * int(k[-1])
    lo, hi = k_range if k_range is not None else (2.0, n / 4)
    sel = (k >= lo) & (k <= hi) & (p > 0)
    return float(np.polyfit(np.log(k[sel]), np.log(p[sel]), 1)[0])


def condition_consistency(z_m: np.ndarray, coarse_m: np.ndarray | None, factor: int) -> float:
    """RMSE (metres) between the ``factor``-block means of ``z_m`` and the condition."""
    z = np.asarray(z_m, np.float64)
    *lead, h, w = z.shape
    blocks = z.reshape(*lead, h // factor, factor, w // factor, factor).mean(axis=(-3, -1))
    return float(np.sqrt(np.mean((blocks - np.asarray(coarse_m, np.float64)) ** 2)))


def seam_discontinuity(z: np.ndarray, seams: Sequence[int], axis: int = -1) -> float:
    """RMS over the seam lines of ``d_s - (d_{s-1} + d_{s+1}) / 2``, where ``d_j`` is the
    difference between cells ``j`` and ``j - 1`` along ``axis`` and seam ``s`` lies between
    cells ``s - 1`` and ``s``: the jump across the seam minus what its neighbours predict.

    Zero for any field that is a quadratic polynomial across the seam (so for smooth fields up
    to O(h³)); a step of height ``a`` at the seam gives ``a``.
    """
    z = np.moveaxis(np.asarray(z, np.float64), axis, -1)
    d = np.diff(z, axis=-1)  # d[..., j-1] = z_j - z_{j-1}
    errs = []
    for s in seams:
        if not 2 <= s <= z.shape[-1] - 2:
            raise ValueError(
                f"seam {s} needs two cells on each side along an axis of {z.shape[-1]}"
            )
        errs.append(d[..., s - 1] - 0.5 * (d[..., s - 2] + d[..., s]))
    return float(np.sqrt(np.mean(np.square(errs))))


def terrain_stats(generated_m: np.ndarray, reference_m: np.ndarray) -> dict[str, float]:
    """Distribution distances of generated vs reference heightmaps (both ``(b, n, n)`` metres):
    slope and curvature W1, spectrum slopes and their difference, mean slopes."""
    sg, sr = slope(generated_m), slope(reference_m)
    return {
        "slope_w1": wasserstein1(sg, sr),
        "curvature_w1": wasserstein1(curvature(generated_m), curvature(reference_m)),
        "spectrum_slope": spectrum_slope(generated_m),
        "spectrum_slope_ref": spectrum_slope(reference_m),
        "spectrum_slope_err": abs(spectrum_slope(generated_m) - spectrum_slope(reference_m)),
        "mean_slope": float(sg.mean()),
        "mean_slope_ref": float(sr.mean()),
    }
