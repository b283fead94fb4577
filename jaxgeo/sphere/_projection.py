"""Spherical-harmonic analysis (projection by quadrature), synthesis and power spectra.

Coefficients are flat vectors in the layout of :func:`jaxgeo.sphere.real_sph_harm`
(``Y_lm`` at index ``l² + l + m``, Condon–Shortley phase, orthonormal), so for a field
``f = Σ c_lm Y_lm`` the projection ``c_lm = ∫ f Y_lm dΩ`` recovers c exactly on a
Gauss–Legendre grid that resolves the product (see :class:`GaussLegendreGrid`) and to the
grid's quadrature order on the other grids.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, ArrayLike, Float

from jaxgeo.errors import InputError

from ._grids import SphereGrid
from ._harmonics import (
    _check_l_max,
    _l_max_of,
    _legendre_table,
    _merge_coeffs,
    _phase_norm,
    _split_coeffs,
    _trig,
    real_sph_harm,
)

__all__ = ["power_spectrum", "project", "synthesize", "synthesize_grid"]

_HI = lax.Precision.HIGHEST


def _float_array(x: ArrayLike) -> Array:
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


def _grid_basis(grid: SphereGrid, l_max: int, dtype: jnp.dtype) -> tuple[Array, Array, Array]:
    """Legendre table with phase/normalisation folded in (n_theta, l, m) and cos/sin (n_phi, m)."""
    theta = jnp.asarray(grid.theta, dtype)
    phi = jnp.asarray(grid.phi, dtype)
    legendre = _legendre_table(l_max, theta)
    legendre = legendre * jnp.asarray(_phase_norm(np.arange(l_max + 1)), dtype)
    cos_m, sin_m = _trig(phi, l_max)
    return legendre, cos_m, sin_m


def project(
    field: Float[ArrayLike, "*batch n_theta n_phi"], grid: SphereGrid, l_max: int
) -> Float[Array, "*batch k"]:
    """Spherical-harmonic coefficients ``c_lm = ∫ f Y_lm dΩ`` by the grid's quadrature.

    Done separably (a weighted Fourier sum in φ, then a Legendre sum in θ), so the cost is
    O(n_theta n_phi l_max + n_theta l_max²) per field rather than one dense matrix.

    Args:
        field: values on ``grid``, shape (..., n_theta, n_phi).
        grid: any :class:`SphereGrid` (Gauss–Legendre for exact projection of band-limited
            fields; lat–lon and pole grids to their quadrature order).
        l_max: highest degree of the result (static int).

    Returns:
        Coefficients of shape (..., (l_max + 1)**2).

    Raises:
        InputError: if the field does not end with ``grid.shape`` or l_max is invalid.
    """
    l_max = _check_l_max(l_max)
    field = _float_array(field)
    if tuple(field.shape[-2:]) != tuple(grid.shape):
        raise InputError(
            f"field must end with the grid shape {tuple(grid.shape)}, got {field.shape}"
        )
    dtype = field.dtype
    legendre, cos_m, sin_m = _grid_basis(grid, l_max, dtype)
    w_theta = jnp.asarray(grid.theta_weights, dtype)
    w_phi = jnp.asarray(grid.phi_weights, dtype)[:, None]
    f_cos = jnp.einsum("...ij,jm->...im", field, w_phi * cos_m, precision=_HI)
    f_sin = jnp.einsum("...ij,jm->...im", field, w_phi * sin_m, precision=_HI)
    weighted = legendre * w_theta[:, None, None]
    c_cos = jnp.einsum("...im,ilm->...lm", f_cos, weighted, precision=_HI)
    c_sin = jnp.einsum("...im,ilm->...lm", f_sin, weighted, precision=_HI)
    return _merge_coeffs(c_cos, c_sin, l_max)


def synthesize(
    coeffs: Float[ArrayLike, "*batch k"],
    theta: Float[ArrayLike, "*points"],
    phi: Float[ArrayLike, "*points"],
) -> Float[Array, "*batch *points"]:
    """Evaluate ``f(θ, φ) = Σ c_lm Y_lm(θ, φ)`` at arbitrary points.

    Args:
        coeffs: coefficients (..., (l_max + 1)**2); l_max is read from the length.
        theta: colatitudes, radians, broadcast against ``phi``.
        phi: longitudes, radians.

    Returns:
        Field values of shape ``(*batch, *points)``: every coefficient set is evaluated at
        every point.

    Raises:
        InputError: if the last axis of ``coeffs`` is not a square number.
    """
    coeffs = _float_array(coeffs)
    l_max = _l_max_of(coeffs.shape[-1], "coeffs")
    theta = jnp.asarray(theta, coeffs.dtype)
    phi = jnp.asarray(phi, coeffs.dtype)
    y = real_sph_harm(l_max, theta, phi)
    points = y.shape[:-1]
    y = y.reshape(-1, y.shape[-1])
    out = jnp.einsum("...k,pk->...p", coeffs, y, precision=_HI)
    return out.reshape(*coeffs.shape[:-1], *points)


def synthesize_grid(
    coeffs: Float[ArrayLike, "*batch k"], grid: SphereGrid
) -> Float[Array, "*batch n_theta n_phi"]:
    """Evaluate ``Σ c_lm Y_lm`` on all points of a grid, separably (cheaper than
    :func:`synthesize` on the outer product of the grid's θ and φ).

    Args:
        coeffs: coefficients (..., (l_max + 1)**2).
        grid: any :class:`SphereGrid`.

    Returns:
        Field of shape (..., n_theta, n_phi).

    Raises:
        InputError: if the last axis of ``coeffs`` is not a square number.
    """
    coeffs = _float_array(coeffs)
    l_max = _l_max_of(coeffs.shape[-1], "coeffs")
    legendre, cos_m, sin_m = _grid_basis(grid, l_max, coeffs.dtype)
    c_cos, c_sin = _split_coeffs(coeffs, l_max)
    g_cos = jnp.einsum("...lm,ilm->...im", c_cos, legendre, precision=_HI)
    g_sin = jnp.einsum("...lm,ilm->...im", c_sin, legendre, precision=_HI)
    return jnp.einsum("...im,jm->...ij", g_cos, cos_m, precision=_HI) + jnp.einsum(
        "...im,jm->...ij", g_sin, sin_m, precision=_HI
    )


def power_spectrum(coeffs: Float[ArrayLike, "*batch k"]) -> Float[Array, "*batch l"]:
    """Power per degree, ``S_l = Σ_m c_lm²`` (total, not divided by 2l + 1).

    With orthonormal harmonics, ``Σ_l S_l = ∫ f² dΩ`` (Parseval).

    Args:
        coeffs: coefficients (..., (l_max + 1)**2).

    Returns:
        Array (..., l_max + 1).

    Raises:
        InputError: if the last axis of ``coeffs`` is not a square number.
    """
    coeffs = _float_array(coeffs)
    l_max = _l_max_of(coeffs.shape[-1], "coeffs")
    degree = np.repeat(np.arange(l_max + 1), 2 * np.arange(l_max + 1) + 1)
    return (
        jnp.zeros((*coeffs.shape[:-1], l_max + 1), coeffs.dtype)
        .at[..., degree]
        .add(coeffs * coeffs)
    )
