"""Source terms S(θ, φ, t) of the flux-transport equation: random flux emergence and static maps.

Random flux emergence (RFE) follows HipFT's ``load_source`` / ``generate_rfe`` /
``update_source`` (models 1 and 2):

- A *frame* is a field of independent Gaussian deviates, one per grid cell, scaled by
  HipFT's ``normfac`` = √(π/2) so that E|g| = 1, then turned into a field in G/h:

  * model 1 spreads the unsigned flux rate evenly over the *cells*:
    ``S = g · R / (N_cells · dA_cell)``, with ``N_cells = n_theta · n_phi``;
  * model 2 spreads it evenly over the *area*: ``S = g · R / (4π)``;

  where ``R`` is the rate in G·sr/h (``rate_1e21_mx_per_hour · 1e21 / R_sun²``). As in HipFT,
  the pole rows are then replaced by their φ-average (so a pole cap receives far less than
  ``n_phi`` cells' worth of flux in model 1), and the frame is flux balanced with HipFT's
  multiplicative ``balance_flux`` (positive values divided, negative values multiplied, by
  √|Φ₊/Φ₋|), which leaves zero net signed flux to round-off.
- Frames are spaced ``lifetime_hours`` apart and the source is linear in time between them,
  as HipFT blends its two frames ``rfe1``/``rfe2``: for ``t`` in ``[t₀ + kL, t₀ + (k+1)L)``,
  ``S(t) = (1 − α) F_k + α F_{k+1}`` with ``α = (t − t₀)/L − k``.
- Frame ``k`` is drawn from ``jax.random.fold_in(key, k)``: statistically equivalent to
  HipFT's Fortran generator, not bitwise equal. HipFT uses the same random numbers for every
  realization; here each realization gets its own key (vmap over keys) unless the caller
  passes the same key.

Balancing is scale invariant, so a frame is exactly linear in the rate: the rate is a traced
argument (ensembles, gradients), and ``∂S/∂rate`` is the unit-rate field.

An optional ``sigma_deg`` (not in HipFT, where emergence is uncorrelated from cell to cell)
correlates the deviates over a Gaussian patch of that angular width before the model scaling;
each cell's deviate is renormalised so that E|g| = 1 still holds and the mean emerging
unsigned flux keeps the requested rate. ``sigma_deg=None`` (the default) is HipFT's model.

Flux integrals use HipFT's ``get_flux`` weights (:func:`hipft_flux_weights`): ``grid.cell_area``
except that column 0 (φ₀) uses the last φ spacing, which HipFT's two-point-overlap sum gives;
the two agree on uniform φ grids.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jaxgeo.errors import ConfigError, FileFormatError, InputError
from jaxgeo.io.hipft_h5 import read_psi_h5
from jaxgeo.sft.grid import SftGrid
from jaxgeo.sft.units import GAUSS_SR_TO_MX

__all__ = [
    "SourceFn",
    "balance_flux",
    "hipft_flux_weights",
    "load_static_source",
    "make_rfe_source",
    "rfe_frame",
    "signed_flux",
    "static_source",
    "unsigned_flux",
]

# HipFT's normfac = π/√(2π): E|normfac · N(0, 1)| = 1.
_NORMFAC = math.sqrt(0.5 * math.pi)
# 1e21 Mx/h -> G·sr/h on the unit sphere (HipFT's input_flux_fac / rsun_cm2).
_RATE_TO_GAUSS_SR = 1.0e21 / GAUSS_SR_TO_MX


class SourceFn(Protocol):
    """A source term: ``fn(key, t_hours, rate) -> S(θ, φ)`` in G/h, shape (n_theta, n_phi)."""

    def __call__(
        self, key: Array, t_hours: Float[ArrayLike, ""], rate: Float[ArrayLike, ""]
    ) -> Float[Array, "theta phi"]: ...


# ---------------------------------------------------------------------------------- flux helpers
def hipft_flux_weights(grid: SftGrid) -> np.ndarray:
    """HipFT's ``get_flux`` quadrature weights (n_theta, n_phi), steradians.

    Equal to ``grid.cell_area`` except in column 0: HipFT sums over its two-point overlap with
    half of ``dph(1)`` = half of the *last* φ spacing at each end of the seam, so φ₀ is
    weighted by φ₀ + 2π − φ_{n−1} instead of its control-volume width. Identical on uniform
    φ grids. These are the weights that ``balance_flux`` zeroes the net flux with.
    """
    w = np.array(grid.cell_area, dtype=np.float64, copy=True)
    w[:, 0] = grid.theta_weight * grid.dphi_face[-1]
    w.setflags(write=False)
    return w


def _flux_parts(
    field: Float[Array, "*b theta phi"], weights: np.ndarray
) -> tuple[Float[Array, "*b"], Float[Array, "*b"]]:
    fv = field * jnp.asarray(weights, dtype=field.dtype)
    pos = jnp.sum(jnp.where(fv > 0.0, fv, 0.0), axis=(-2, -1))
    neg = jnp.sum(jnp.where(fv > 0.0, 0.0, fv), axis=(-2, -1))
    return pos, neg


def signed_flux(field: Float[ArrayLike, "*b theta phi"], grid: SftGrid) -> Float[Array, "*b"]:
    """Net signed flux ∫ f dA on the unit sphere with HipFT's weights (units of f · sr)."""
    field = jnp.asarray(field)
    return jnp.sum(field * jnp.asarray(hipft_flux_weights(grid), dtype=field.dtype), axis=(-2, -1))


def unsigned_flux(field: Float[ArrayLike, "*b theta phi"], grid: SftGrid) -> Float[Array, "*b"]:
    """Unsigned flux ∫ |f| dA on the unit sphere with HipFT's weights (units of f · sr)."""
    field = jnp.asarray(field)
    return jnp.sum(
        jnp.abs(field) * jnp.asarray(hipft_flux_weights(grid), dtype=field.dtype), axis=(-2, -1)
    )


def balance_flux(
    field: Float[ArrayLike, "*b theta phi"], grid: SftGrid
) -> Float[Array, "*b theta phi"]:
    """HipFT's multiplicative flux balancing (``balance_flux``), per leading index.

    With Φ₊ > 0 and Φ₋ < 0 the positive and negative fluxes (HipFT's weights), positive
    values are divided and negative values multiplied by r = √(Φ₊/|Φ₋|), leaving
    Φ₊/r + Φ₋·r = 0. A field with zero net flux is returned unchanged; a field of one sign
    only becomes zero (HipFT's r = ∞ or 0). Differentiable where both signs are present.

    Args:
        field: (..., n_theta, n_phi).
        grid: the grid of ``field``.

    Returns:
        The balanced field, same shape.
    """
    field = jnp.asarray(field)
    pos, neg = _flux_parts(field, hipft_flux_weights(grid))
    both = (pos > 0.0) & (neg < 0.0)
    # Safe operands so that the untaken branch of the where has finite gradients.
    ratio = jnp.sqrt(jnp.where(both, pos, 1.0) / jnp.where(both, -neg, 1.0))
    inv = jnp.where(both, 1.0 / ratio, 0.0)
    mul = jnp.where(both, ratio, 0.0)
    balanced = jnp.where(field > 0.0, field * inv[..., None, None], field * mul[..., None, None])
    unchanged = (pos + neg) == 0.0
    return jnp.where(unchanged[..., None, None], field, balanced)


# ---------------------------------------------------------------------------------- RFE
def _model_scale(grid: SftGrid, model: int) -> np.ndarray:
    """Per-cell factor turning unit-mean |deviate| into G/h per unit rate (1e21 Mx/h)."""
    if model == 1:
        # HipFT's generate_rfe: da_ti·dp_i with the pole-cap θ weight at the pole rows and the
        # control-volume width dp (not get_flux's seam weight) in φ.
        inv_area = 1.0 / np.outer(grid.theta_weight, grid.dphi)
        return _RATE_TO_GAUSS_SR / (grid.n_theta * grid.n_phi) * inv_area
    if model == 2:
        return np.full(grid.shape, _RATE_TO_GAUSS_SR / (4.0 * math.pi))
    raise ConfigError(f"sources.rfe.model must be 1 or 2 (HipFT's source_rfe_model), got {model!r}")


class _PatchSmoother:
    """Gaussian patch correlation of white noise on the sphere (optional ``sigma_deg``).

    φ: a wrapped Gaussian of arc width σ, i.e. width σ/sin θ in φ, applied per row by FFT
    (needs uniform φ). θ: a Gaussian of width σ in θ, as a dense (n_theta, n_theta) matrix.
    The output is divided by its exact per-row standard deviation so each cell stays a unit
    Gaussian deviate.
    """

    def __init__(self, grid: SftGrid, sigma_deg: float) -> None:
        dphi = grid.dphi_face
        if not np.allclose(dphi, dphi[0], rtol=1e-9, atol=0.0):
            raise InputError("sources.rfe.sigma_deg needs a grid with uniform phi spacing")
        sigma = math.radians(sigma_deg)
        n_phi = grid.n_phi
        m = np.fft.rfftfreq(n_phi, d=1.0 / n_phi)  # integer wavenumbers 0..n/2
        pole = grid.sin_theta <= 0.0
        sigma_phi = sigma / np.where(pole, 1.0, grid.sin_theta)
        arg = np.outer(sigma_phi, m)
        # Pole rows: infinite width in φ, only the mean passes.
        arg[pole, 1:] = np.inf
        h = np.exp(-0.5 * arg**2)
        # Σ_k h_k² of the circulant kernel (Parseval over the full spectrum from the rfft half).
        full = np.concatenate([h, h[:, 1 : (n_phi + 1) // 2][:, ::-1]], axis=1)
        row_energy = np.mean(full**2, axis=1)
        d = grid.theta[:, None] - grid.theta[None, :]
        lt = np.exp(-0.5 * (d / sigma) ** 2) * grid.dtheta[None, :]
        lt /= lt.sum(axis=1, keepdims=True)
        std = np.sqrt(lt**2 @ row_energy)
        self.h = h
        self.l_theta = lt / std[:, None]

    def __call__(self, g: Float[Array, "theta phi"]) -> Float[Array, "theta phi"]:
        n_phi = g.shape[-1]
        spec = jnp.fft.rfft(g, axis=-1)
        spec = spec * jnp.asarray(self.h).astype(spec.dtype)
        gf = jnp.fft.irfft(spec, n=n_phi, axis=-1)
        return jnp.asarray(self.l_theta, dtype=g.dtype) @ gf


def _pole_average(field: Float[Array, "theta phi"], grid: SftGrid) -> Float[Array, "theta phi"]:
    # HipFT's generate_rfe: each pole row becomes Σ_k f(pole, k)·dp(k) / 2π.
    w = jnp.asarray(grid.dphi / (2.0 * math.pi), dtype=field.dtype)
    north = jnp.sum(field[0] * w)
    south = jnp.sum(field[-1] * w)
    field = field.at[0].set(north)
    return field.at[-1].set(south)


def rfe_frame(
    grid: SftGrid,
    key: Array,
    *,
    model: Literal[1, 2] = 2,
    sigma_deg: float | None = None,
    dtype: jnp.dtype = jnp.float64,
) -> Float[Array, "theta phi"]:
    """One flux-balanced RFE frame for a rate of 1 (1e21 Mx/h), in G/h.

    Args:
        grid: the grid.
        key: JAX PRNG key of this frame.
        model: HipFT's ``source_rfe_model`` (1: per cell, 2: per area).
        sigma_deg: optional patch width in degrees (None: HipFT's uncorrelated cells).
        dtype: floating dtype of the result.

    Returns:
        The frame (n_theta, n_phi); zero net signed flux to round-off.
    """
    scale = _model_scale(grid, int(model))
    smoother = None if sigma_deg is None else _PatchSmoother(grid, float(sigma_deg))
    return _frame(grid, key, scale, smoother, dtype)


def _frame(
    grid: SftGrid,
    key: Array,
    scale: np.ndarray,
    smoother: _PatchSmoother | None,
    dtype: jnp.dtype,
) -> Float[Array, "theta phi"]:
    g = jax.random.normal(key, grid.shape, dtype=dtype)
    if smoother is not None:
        g = smoother(g)
    frame = _NORMFAC * g * jnp.asarray(scale, dtype=dtype)
    return balance_flux(_pole_average(frame, grid), grid)


def make_rfe_source(
    grid: SftGrid,
    *,
    model: Literal[1, 2] = 2,
    lifetime_hours: float = 0.3,
    sigma_deg: float | None = None,
    start_hours: float = 0.0,
    dtype: jnp.dtype = jnp.float64,
) -> SourceFn:
    """Random flux emergence source, HipFT models 1 and 2, as a pure function of time.

    Args:
        grid: the grid (static).
        model: HipFT's ``source_rfe_model``: 1 spreads the rate evenly over cells, 2 evenly
            over area.
        lifetime_hours: time between frames (HipFT's ``source_rfe_lifetime``), > 0.
        sigma_deg: optional Gaussian patch width in degrees; None (default) is HipFT's
            cell-by-cell white noise.
        start_hours: time of frame 0 (HipFT's ``time_start``).
        dtype: floating dtype of the fields.

    Returns:
        ``fn(key, t_hours, rate_1e21_mx_per_hour) -> S`` (n_theta, n_phi) in G/h. ``key`` is a
        JAX PRNG key (``jax.random.key(seed)``); ``t_hours`` and the rate may be traced (jit,
        vmap over seeds or rates, grad w.r.t. the rate). Frame ``k = floor((t − t₀)/L)`` and
        ``k + 1`` are drawn from ``fold_in(key, k)`` and blended linearly.

    Raises:
        ConfigError: for an unknown model or a non-positive lifetime or patch width.
    """
    if int(model) not in (1, 2):
        raise ConfigError(
            f"sources.rfe.model must be 1 or 2 (HipFT's source_rfe_model), got {model!r}"
        )
    if not (float(lifetime_hours) > 0.0):
        raise ConfigError(f"sources.rfe.lifetime_hours must be > 0, got {lifetime_hours!r}")
    if sigma_deg is not None and not (float(sigma_deg) > 0.0):
        raise ConfigError(f"sources.rfe.sigma_deg must be > 0 (or omitted), got {sigma_deg!r}")
    scale = _model_scale(grid, int(model))
    smoother = None if sigma_deg is None else _PatchSmoother(grid, float(sigma_deg))
    lifetime = float(lifetime_hours)
    t0 = float(start_hours)

    def source(
        key: Array, t_hours: Float[ArrayLike, ""], rate: Float[ArrayLike, ""]
    ) -> Float[Array, "theta phi"]:
        s = (jnp.asarray(t_hours, dtype=dtype) - t0) / lifetime
        k = jnp.floor(s)
        alpha = s - k
        k = k.astype(jnp.int32)
        f0 = _frame(grid, jax.random.fold_in(key, k), scale, smoother, dtype)
        f1 = _frame(grid, jax.random.fold_in(key, k + 1), scale, smoother, dtype)
        return jnp.asarray(rate, dtype=dtype) * ((1.0 - alpha) * f0 + alpha * f1)

    return source


# ---------------------------------------------------------------------------------- static
def static_source(source_map: Float[ArrayLike, "theta phi"]) -> SourceFn:
    """A time-independent source map (HipFT's ``source_from_file``), in G/h.

    Args:
        source_map: S on the grid (n_theta, n_phi), G/h. Not balanced or pole-averaged, as in
            HipFT.

    Returns:
        ``fn(key, t_hours, rate) -> rate · source_map``; ``key`` and ``t_hours`` are ignored,
        ``rate`` is a (traced) multiplier, 1 for the map as given.
    """
    s = jnp.asarray(source_map)
    if s.ndim != 2:
        raise InputError(f"static source map must be 2-D (n_theta, n_phi), got shape {s.shape}")

    def source(
        key: Array, t_hours: Float[ArrayLike, ""], rate: Float[ArrayLike, ""] = 1.0
    ) -> Float[Array, "theta phi"]:
        del key, t_hours
        return jnp.asarray(rate, dtype=s.dtype) * s

    return source


def load_static_source(path: str | Path, grid: SftGrid) -> Float[Array, "theta phi"]:
    """Read a static source map (2-D HipFT/PSI HDF5, G/h) onto ``grid``.

    As HipFT's ``load_source`` does, the file is bilinearly interpolated from its own scales
    onto the grid's points, with zero outside the file's θ–φ range.

    Raises:
        FileFormatError: missing file, wrong layout, or non-increasing scales.
    """
    data, scales, _ = read_psi_h5(path, what="static source file")
    if data.ndim != 2:
        raise FileFormatError(
            f"static source file {str(path)!r} must hold a 2-D map, got shape {data.shape}"
        )
    phi_f, theta_f = scales
    if np.any(np.diff(phi_f) <= 0) or np.any(np.diff(theta_f) <= 0):
        raise FileFormatError(
            f"static source file {str(path)!r}: scales must be strictly increasing"
        )
    it, at, ot = _bracket(theta_f, grid.theta)
    ip, ap, op = _bracket(phi_f, grid.phi)
    d = data
    out = (1.0 - at)[:, None] * (
        (1.0 - ap)[None, :] * d[np.ix_(it, ip)] + ap[None, :] * d[np.ix_(it, ip + 1)]
    )
    out += at[:, None] * (
        (1.0 - ap)[None, :] * d[np.ix_(it + 1, ip)] + ap[None, :] * d[np.ix_(it + 1, ip + 1)]
    )
    out[~(ot[:, None] & op[None, :])] = 0.0
    return jnp.asarray(out)


def _bracket(x: np.ndarray, xv: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interval index, linear weight and inside-range mask of ``xv`` in the table ``x``."""
    inside = (xv >= x[0]) & (xv <= x[-1])
    i = np.clip(np.searchsorted(x, xv, side="right") - 1, 0, x.size - 2)
    a = np.clip((xv - x[i]) / (x[i + 1] - x[i]), 0.0, 1.0)
    return i, a, inside
