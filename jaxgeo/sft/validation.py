"""HipFT's validation fields and their exact solutions.

- Soccer ball (HipFT ``validation_run = 1``): B₀ = Y₆⁰ + √(14/11) Y₆⁵, an eigenfunction of the
  surface Laplacian (l(l+1) = 42), so under constant ν and rigid rotation at Ω
  B(θ, φ, t) = B₀(θ, φ − Ωt) · exp(−42 ν t) on the unit sphere.
- Gaussian pair (``validation_run = 2``): a negative blob at φ = π/2 and a positive one at
  φ = 3π/2, both at θ = π/4, ``exp(−(Δθ² + Δφ²)/w)`` with w = 0.03, divided by sin θ (0 on the
  pole rows; HipFT 1.19.3's reference maps show this for all three Gaussian cases). Rigid
  rotation translates it in φ; a constant v_θ moves sin θ·B in θ, so it stays a translated
  pair divided by sin θ.
- ``dipole`` (B = A cos θ) and ``harmonic`` (one real Y_l^m).

Real spherical harmonics follow HipFT's ``tesseral_spherical_harmonic``: orthonormal on the unit
sphere (1/√(4π) times the 4π-normalised associated Legendre function), with the (−1)^m
Condon–Shortley phase, cos(mφ) for m ≥ 0 and sin(|m|φ) for m < 0. The Legendre part uses the
same modified forward column recursion (Holmes & Featherstone 2002) as HipFT, so the fields
agree with HipFT's to round-off. All functions return NumPy float64 arrays (n_theta, n_phi)
in Gauss, pole rows single-valued.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from jaxgeo.errors import InputError
from jaxgeo.sft.grid import TWO_PI, SftGrid, impose_pole_average

__all__ = [
    "SOCCER_DECAY_L",
    "dipole",
    "gaussian_pair",
    "gaussian_pair_exact",
    "harmonic",
    "legendre_normalized",
    "real_sph_harm",
    "soccer_ball",
    "soccer_ball_exact",
]

# Soccer ball: degree 6, so ∇² eigenvalue −l(l+1) = −42.
SOCCER_DECAY_L = 6
_SOCCER_M5_WEIGHT = math.sqrt(14.0 / 11.0)
GAUSSIAN_WIDTH = 0.03


def legendre_normalized(l: int, m: int, theta: np.ndarray) -> np.ndarray:
    """4π-normalised associated Legendre P̄_l^{|m|}(cos θ) / sin^{|m|} θ, HipFT's recursion.

    Returns the column-recursion value before the sin^{|m|} θ factor (Holmes & Featherstone
    2002, "first modified forward column" method), stable near the poles.
    """
    am = abs(int(m))
    l = int(l)
    if l < 0 or am > l:
        raise InputError(f"spherical harmonic needs 0 <= |m| <= l, got l={l}, m={m}")
    ct = np.cos(np.asarray(theta, dtype=np.float64))
    p_old = np.ones_like(ct)
    p_oldold = np.zeros_like(ct)
    if am > 0:
        p_old = np.full_like(ct, math.sqrt(3.0))
        for im in range(2, am + 1):
            p_old = math.sqrt((2.0 * im + 1.0) / (2.0 * im)) * p_old
    for il in range(am + 1, l + 1):
        a = math.sqrt(((2.0 * il - 1.0) * (2.0 * il + 1.0)) / float((il - am) * (il + am)))
        b2 = ((2.0 * il + 1.0) * (il + am - 1.0) * (il - am - 1.0)) / float(
            (il - am) * (il + am) * (2 * il - 3)
        )
        b = math.sqrt(abs(b2))
        p_new = a * ct * p_old - b * p_oldold
        p_oldold = p_old
        p_old = p_new
    return p_old


def real_sph_harm(l: int, m: int, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Orthonormal real Y_l^m on the outer product of ``theta`` (rows) and ``phi`` (columns)."""
    am = abs(int(m))
    theta = np.asarray(theta, dtype=np.float64)
    phi = np.asarray(phi, dtype=np.float64)
    p = legendre_normalized(l, m, theta)
    radial = ((-1.0) ** am) * (np.sin(theta) ** am) * (1.0 / math.sqrt(4.0 * math.pi)) * p
    ang = np.cos(m * phi) if m >= 0 else np.sin(am * phi)
    return radial[:, None] * ang[None, :]


def _finish(grid: SftGrid, field: np.ndarray) -> np.ndarray:
    # Pole rows hold their φ-average, as HipFT imposes when it loads the initial state.
    return np.asarray(impose_pole_average(jnp.asarray(field), grid))


def harmonic(grid: SftGrid, l: int, m: int, amplitude_gauss: float = 1.0) -> np.ndarray:
    """``amplitude_gauss · Y_l^m`` on the grid (orthonormal real harmonic)."""
    return _finish(grid, float(amplitude_gauss) * real_sph_harm(l, m, grid.theta, grid.phi))


def dipole(grid: SftGrid, amplitude_gauss: float = 1000.0) -> np.ndarray:
    """Axial dipole ``A cos θ`` (A in Gauss at the north pole); decays as exp(−2νt)."""
    field = float(amplitude_gauss) * np.cos(grid.theta)[:, None] * np.ones((1, grid.n_phi))
    return _finish(grid, field)


def _soccer(grid: SftGrid, phi_shift: float) -> np.ndarray:
    phi = grid.phi - phi_shift
    y60 = real_sph_harm(6, 0, grid.theta, phi)
    y65 = real_sph_harm(6, 5, grid.theta, phi)
    return y60 + _SOCCER_M5_WEIGHT * y65


def soccer_ball(grid: SftGrid) -> np.ndarray:
    """HipFT's soccer-ball initial state Y₆⁰ + √(14/11) Y₆⁵ (Gauss)."""
    return _finish(grid, _soccer(grid, 0.0))


def soccer_ball_exact(grid: SftGrid, t_hours: float, nu: float, omega: float = 0.0) -> np.ndarray:
    """Exact soccer ball after ``t_hours`` of diffusion and rigid rotation.

    Args:
        grid: the grid.
        t_hours: elapsed time (hours).
        nu: diffusivity in R_sun²/h (``units.KM2_S_TO_RS2_HR`` × km²/s).
        omega: rigid-rotation angular velocity in rad/h (HipFT's ``flow_vp_rigid_omega`` in
            km/s times ``units.KM_S_TO_RS_HR``).

    Returns:
        B₀(θ, φ − Ωt) exp(−42 ν t), (n_theta, n_phi).
    """
    decay = math.exp(-float(SOCCER_DECAY_L * (SOCCER_DECAY_L + 1)) * float(nu) * float(t_hours))
    # Not pole-averaged: HipFT's exact solution (analysis and *_final_analytic.h5) is pointwise.
    return _soccer(grid, float(omega) * float(t_hours)) * decay


def _wrap(dphi: np.ndarray) -> np.ndarray:
    return (dphi + math.pi) % TWO_PI - math.pi


def _pair(
    grid: SftGrid, theta_c: float, phi_shift: float, width: float, over_sin: bool
) -> np.ndarray:
    t = grid.theta[:, None]
    p = grid.phi[None, :]
    lat = (t - theta_c) ** 2 / width
    neg = np.exp(-lat - _wrap(p - (0.5 * math.pi + phi_shift)) ** 2 / width)
    pos = np.exp(-lat - _wrap(p - (1.5 * math.pi + phi_shift)) ** 2 / width)
    field = pos - neg
    if over_sin:
        field = grid.inv_sin_theta[:, None] * field
    return field


def gaussian_pair(
    grid: SftGrid, *, width: float = GAUSSIAN_WIDTH, over_sin_theta: bool = True
) -> np.ndarray:
    """HipFT's Gaussian pair at θ = π/4 (−1 at φ = π/2, +1 at φ = 3π/2).

    Args:
        grid: the grid.
        width: ``w`` in exp(−(Δθ² + Δφ²)/w) (HipFT ``validation_run_width``).
        over_sin_theta: divide by sin θ (0 on the pole rows). HipFT 1.19.3 does so in all
            its Gaussian cases (its reference maps show it); ``False`` gives the plain pair.
    """
    return _finish(grid, _pair(grid, 0.25 * math.pi, 0.0, float(width), over_sin_theta))


def gaussian_pair_exact(
    grid: SftGrid,
    t_hours: float,
    *,
    omega: float = 0.0,
    vtheta: float = 0.0,
    width: float = GAUSSIAN_WIDTH,
    over_sin_theta: bool = True,
) -> np.ndarray:
    """Exact Gaussian pair after rigid rotation ``omega`` (rad/h) and constant ``vtheta`` (rad/h).

    The pair moves to θ = π/4 + v_θ t and φ centres shifted by Ωt (periodic distance). With
    ``over_sin_theta`` (HipFT's initial state) the field is the translated pair divided by
    sin θ, which is exact for a constant v_θ (sin θ·B is what v_θ translates) and for rigid
    rotation.
    """
    theta_c = 0.25 * math.pi + float(vtheta) * float(t_hours)
    shift = float(omega) * float(t_hours)
    # Pole rows hold their φ-average (~0 for the antisymmetric pair), as in HipFT's
    # *_final_analytic.h5 maps.
    return _finish(grid, _pair(grid, theta_c, shift, float(width), over_sin_theta))
