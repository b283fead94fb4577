"""Surface diffusion ∇·(ν∇B) on the sphere, HipFT's discretisation and time integrators.

Space (HipFT ``load_diffusion_matrix`` / ``diffusion_operator_cd``): the 5-point
finite-volume operator on the staggered grid of :mod:`jaxgeo.sft.grid`. For an interior row j
and column c (HipFT's coefficients 1–5)::

    y = c_w B[j,c-1] + c_n B[j-1,c] + c_c B[j,c] + c_s B[j+1,c] + c_e B[j,c+1]
    c_w = ν_w /(dφ_face[c-1] dφ[c] sin²θ_j)      c_e = ν_e /(dφ_face[c] dφ[c] sin²θ_j)
    c_n = ν_n sinθ_{j-½}/(dθ_face[j-1] dθ_j sinθ_j)   c_s = ν_s sinθ_{j+½}/(dθ_face[j] dθ_j sinθ_j)
    c_c = -(c_w + c_n + c_s + c_e)

and the polar caps take the net diffusive flux through their one face::

    y_N = (ν_N,ghost + ν_N,face) Σ_c (B[1,c] − B[0,c]) dφ[c] / (π dθ_0²)   (south alike)

It is a divergence: Σ y · ``grid.cell_area`` = 0 to round-off (HipFT's polar-cap weight
¼ sin θ_½ Δθ makes the cap term exactly the face flux), so signed flux is conserved.

ν is in R_sun²/h (``units.KM2_S_TO_RS2_HR`` converts HipFT's km²/s), time in hours. ν is a
traced argument: a scalar, a per-member array broadcast over the leading axes of ``br``, or an
array on HipFT's half–half mesh ("corners", shape ``(..., n_theta+1, n_phi)``: corner row i is
the θ face above main row i, with HipFT's ghost faces beyond the poles as rows 0 and n_theta;
corner column c is ``grid.phi_face[c]``), from which face values are averaged as HipFT does.

Time (HipFT ``diffusion_step``): the step is split into sub-cycles; each cycle is explicit
Euler (sub-stepped at the stable Euler step), or one RKL2 (Meyer et al. 2014) or RKG2
(Skaras et al. 2021) super step of s stages. Stage numbers are static and planned at Python
level from the maximum ν (``plan_diffusion``), as HipFT takes its Euler step as the minimum
over all realizations. HipFT's automatic sub-cycling (``diffusion_subcycles = 0``) picks each
cycle's length from the "practical time-step limit" (PTL) of the current field; that is data
dependent, so it is done on the host by ``diffuse_auto`` (exactly HipFT's loop) which returns
the static plan it used, or approximated data-free by ``plan_diffusion(..., "auto")`` as one
cycle (what HipFT does whenever its PTL exceeds the step, e.g. for smooth fields).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jaxgeo.errors import ConfigError
from jaxgeo.sft.grid import SftGrid

__all__ = [
    "SCHEMES",
    "DiffusionPlan",
    "StsCoefficients",
    "diffuse_auto",
    "diffusion_operator",
    "dtime_diffusion_euler",
    "make_diffusion_step",
    "plan_diffusion",
    "ptl_timestep",
    "sts_init",
    "sts_stages",
]

Scheme = Literal["euler", "rkl2", "rkg2"]
SCHEMES: tuple[str, ...] = ("euler", "rkl2", "rkg2")
Field = Float[Array, "*b theta phi"]
NuLike = Float[ArrayLike, "..."]

# HipFT constants: Euler safety factor, PTL safety, PTL field floor, max auto cycles.
_SAFETY = 0.95
_PTL_SAFE = 0.95
_PTL_FMIN = 1e-16
_MAX_AUTO_CYCLES = 60


# ----------------------------------------------------------------------------- geometry
@dataclasses.dataclass(frozen=True, eq=False)
class _Geometry:
    """Geometric parts of HipFT's coefficients (ν factored out), NumPy float64.

    Kept factored into row and column vectors so that, for a scalar ν, XLA fuses the
    coefficients into the stencil instead of streaming five full coefficient arrays.
    """

    st_i2: np.ndarray  # (n_theta-2, 1): 1/sin²θ_j
    col_w: np.ndarray  # (1, n_phi): 1/(dφ_face[c-1] dφ[c])
    col_e: np.ndarray  # (1, n_phi): 1/(dφ_face[c] dφ[c])
    g_n: np.ndarray  # (n_theta-2, 1): sinθ_{j-½}/(dθ_face[j-1] dθ_j sinθ_j)
    g_s: np.ndarray  # (n_theta-2, 1): sinθ_{j+½}/(dθ_face[j] dθ_j sinθ_j)
    w_phi: np.ndarray  # dφ (n_phi,) for the polar sums
    pole_n: float  # 1/(π dθ_0²)
    pole_s: float

    @property
    def g_w(self) -> np.ndarray:
        return self.st_i2 * self.col_w

    @property
    def g_e(self) -> np.ndarray:
        return self.st_i2 * self.col_e


@functools.lru_cache(maxsize=32)
def _geometry(grid: SftGrid) -> _Geometry:
    dt_i = grid.inv_dtheta[1:-1, None]
    st_i = grid.inv_sin_theta[1:-1, None]
    return _Geometry(
        st_i2=st_i * st_i,
        col_w=(np.roll(grid.inv_dphi_face, 1) * grid.inv_dphi)[None, :],
        col_e=(grid.inv_dphi_face * grid.inv_dphi)[None, :],
        g_n=grid.inv_dtheta_face[:-1, None] * dt_i * st_i * grid.sin_theta_face[:-1, None],
        g_s=grid.inv_dtheta_face[1:, None] * dt_i * st_i * grid.sin_theta_face[1:, None],
        w_phi=np.asarray(grid.dphi),
        pole_n=float(grid.inv_dtheta[0] ** 2 / math.pi),
        pole_s=float(grid.inv_dtheta[-1] ** 2 / math.pi),
    )


def _is_corner_array(nu: Array, grid: SftGrid) -> bool:
    return nu.ndim >= 2 and tuple(nu.shape[-2:]) == (grid.n_theta + 1, grid.n_phi)


def _face_nu(nu: Array, grid: SftGrid):
    """ν on the west/east/north/south faces of interior cells and the two polar sums, from
    HipFT's corner array (..., n_theta+1, n_phi).

    Returns arrays broadcastable against (..., n_theta-2, n_phi) and (..., n_phi).
    """
    # HipFT averages the half-half-mesh ν onto each face it uses.
    nu_pf = 0.5 * (nu[..., 1:-2, :] + nu[..., 2:-1, :])
    nu_e = nu_pf
    nu_w = jnp.roll(nu_pf, 1, axis=-1)
    nu_tf = 0.5 * (jnp.roll(nu, 1, axis=-1) + nu)
    nu_n = nu_tf[..., 1 : grid.n_theta - 1, :]
    nu_s = nu_tf[..., 2 : grid.n_theta, :]
    pole_n = jnp.roll(nu[..., 0, :] + nu[..., 1, :], 1, axis=-1)
    pole_s = jnp.roll(nu[..., -2, :] + nu[..., -1, :], 1, axis=-1)
    return nu_w, nu_e, nu_n, nu_s, pole_n, pole_s


def _coefficients(nu: Array, grid: SftGrid, dtype):
    """ν in the form ``_apply`` takes: ``("scalar", ν[..., None, None])`` for a scalar or
    per-member ν, or ``("faces", c_w, c_e, c_n, c_s, p_n, p_s)`` for a corner array."""
    geo = _geometry(grid)
    nu = jnp.asarray(nu, dtype=dtype)
    if not _is_corner_array(nu, grid):
        return ("scalar", nu[..., None, None])
    nu_w, nu_e, nu_n, nu_s, pn, ps = _face_nu(nu, grid)
    return (
        "faces",
        nu_w * geo.col_w,
        nu_e * geo.col_e,
        nu_n * geo.g_n,
        nu_s * geo.g_s,
        pn * geo.pole_n,
        ps * geo.pole_s,
    )


def _shift_columns(x: Array, shift: int) -> Array:
    """``jnp.roll(x, shift, axis=-1)`` for shift ±1, written so that XLA CPU fuses it.

    ``jnp.roll`` is a concatenate along the last axis, which XLA CPU keeps as a separate op
    that materialises its operand: the whole stage update (five full-size reads) would be
    written to memory twice per stage just to be shifted. A zero pad of the slice plus a
    select of the wrapped column is elementwise and fuses into the stencil.
    """
    n = x.shape[-1]
    col = jax.lax.broadcasted_iota(jnp.int32, (1,) * (x.ndim - 1) + (n,), x.ndim - 1)
    keep = [(0, 0, 0)] * (x.ndim - 1)
    if shift == 1:
        body = jax.lax.pad(x[..., :-1], jnp.zeros((), x.dtype), [*keep, (1, 0, 0)])
        return jnp.where(col == 0, x[..., -1:], body)
    body = jax.lax.pad(x[..., 1:], jnp.zeros((), x.dtype), [*keep, (0, 1, 0)])
    return jnp.where(col == n - 1, x[..., :1], body)


def _with_halo(x: Array) -> Array:
    """``x`` with one periodic column on each side. XLA CPU keeps a concatenate along the
    last axis as its own op, so this also makes XLA keep ``x`` in memory (instead of
    re-evaluating it at every stencil offset of its consumers)."""
    return jnp.concatenate([x[..., -1:], x, x[..., :1]], axis=-1)


def _apply(x: Array, coefs, geo: _Geometry, *, halo: bool = False) -> Array:
    """A(ν) x, all in one XLA fusion (no full-size array besides ``x`` is read).

    The stencil is written in flux-difference form, Σ c_k (x_k − x_c) = Σ c_k x_k + c_c x_c
    up to round-off, with ν and the geometric factors applied to the differences: every
    full-size intermediate then depends on ``x``, so XLA neither hoists full coefficient
    arrays out of the stage loop nor streams them from memory at every stage.

    With ``halo``, ``x`` is ``_with_halo(B)`` and the φ neighbours are plain slices.
    """
    dtype = x.dtype
    if halo:
        xe = x[..., 1:-1, :]
        x = x[..., 1:-1]
        xi = x[..., 1:-1, :]
        d_w = xe[..., :-2] - xi
        d_e = xe[..., 2:] - xi
    else:
        xi = x[..., 1:-1, :]
        d_w = _shift_columns(xi, 1) - xi
        d_e = _shift_columns(xi, -1) - xi
    d_n = x[..., :-2, :] - xi
    d_s = x[..., 2:, :] - xi
    w = jnp.asarray(geo.w_phi, dtype=dtype)
    # Polar caps: net flux through their single face (HipFT's fn2_fn1, fs2_fs1).
    if coefs[0] == "scalar":
        sum_n = jnp.sum((x[..., 1, :] - x[..., 0, :]) * w, axis=-1, keepdims=True)
        sum_s = jnp.sum((x[..., -2, :] - x[..., -1, :]) * w, axis=-1, keepdims=True)
        nu = coefs[1]
        st_i2 = jnp.asarray(geo.st_i2, dtype=dtype)
        col_w = jnp.asarray(geo.col_w, dtype=dtype)
        col_e = jnp.asarray(geo.col_e, dtype=dtype)
        g_n = jnp.asarray(geo.g_n, dtype=dtype)
        g_s = jnp.asarray(geo.g_s, dtype=dtype)
        y_int = nu * ((d_w * col_w + d_e * col_e) * st_i2 + (d_n * g_n + d_s * g_s))
        y_n = (2.0 * geo.pole_n) * nu[..., 0, :] * sum_n
        y_s = (2.0 * geo.pole_s) * nu[..., 0, :] * sum_s
    else:
        _, c_w, c_e, c_n, c_s, pn, ps = coefs
        st_i2 = jnp.asarray(geo.st_i2, dtype=dtype)
        y_int = (d_w * c_w + d_e * c_e) * st_i2 + (d_n * c_n + d_s * c_s)
        y_n = jnp.sum(pn * ((x[..., 1, :] - x[..., 0, :]) * w), axis=-1, keepdims=True)
        y_s = jnp.sum(ps * ((x[..., -2, :] - x[..., -1, :]) * w), axis=-1, keepdims=True)
    shape = jnp.broadcast_shapes(y_int.shape, x.shape[:-2] + y_int.shape[-2:])
    y_int = jnp.broadcast_to(y_int, shape)
    row = shape[:-2] + (1, shape[-1])
    y_n = jnp.broadcast_to(y_n[..., None, :], row)
    y_s = jnp.broadcast_to(y_s[..., None, :], row)
    # A concatenate along θ (not the last axis) fuses into the consumer.
    return jnp.concatenate([y_n, y_int, y_s], axis=-2)


def diffusion_operator(grid: SftGrid) -> Callable[[Field, NuLike], Field]:
    """Build HipFT's diffusion operator A(ν) B = ∇·(ν∇B) on the unit sphere.

    Args:
        grid: the grid.

    Returns:
        ``fn(br, nu) -> y``: ``br`` (..., n_theta, n_phi) in any unit, ``nu`` in R_sun²/h
        (scalar, per-member array of shape ``br.shape[:-2]``, or HipFT corner array
        (..., n_theta+1, n_phi)); ``y`` has the unit of ``br`` per hour. Pole rows of ``y``
        are single-valued.
    """
    geo = _geometry(grid)

    def apply(br: Field, nu: NuLike) -> Field:
        x = jnp.asarray(br)
        return _apply(x, _coefficients(jnp.asarray(nu), grid, x.dtype), geo)

    return apply


# ----------------------------------------------------------------------------- stable step
def dtime_diffusion_euler(grid: SftGrid, nu: float | np.ndarray) -> float:
    """HipFT's stable explicit-Euler step (hours) from the operator's Gershgorin bound.

    ``0.95 · 2 / max_j,c Σ|coef|`` over interior cells (HipFT ``get_dtime_diffusion_euler``),
    the maximum taken over all members when ``nu`` holds several.

    Args:
        grid: the grid.
        nu: ν in R_sun²/h — scalar, per-member values, or a corner array (..., n_theta+1, n_phi).

    Raises:
        ConfigError: if ν is not positive somewhere.
    """
    nu_np = np.asarray(nu, dtype=np.float64)
    if not np.all(np.isfinite(nu_np)) or np.max(nu_np) <= 0.0:
        raise ConfigError(
            f"diffusion nu must be finite and > 0 for a stable step, got max {nu_np.max()!r}"
        )
    geo = _geometry(grid)
    if nu_np.ndim >= 2 and nu_np.shape[-2:] == (grid.n_theta + 1, grid.n_phi):
        nu_w, nu_e, nu_n, nu_s, _, _ = (np.asarray(a) for a in _face_nu(jnp.asarray(nu_np), grid))
        rad = 2.0 * (
            np.abs(nu_w * geo.g_w)
            + np.abs(nu_e * geo.g_e)
            + np.abs(nu_n * geo.g_n)
            + np.abs(nu_s * geo.g_s)
        )
        max_eig = float(np.max(rad))
    else:
        g = geo.g_w + geo.g_e + geo.g_n + geo.g_s
        max_eig = float(np.max(np.abs(nu_np))) * 2.0 * float(np.max(g))
    return _SAFETY * (2.0 / max_eig)


# ----------------------------------------------------------------------------- STS coefficients
@dataclasses.dataclass(frozen=True)
class StsCoefficients:
    """Super-time-stepping coefficients for stages j = 1..s (index j-1).

    ``u``, ``v``, ``ub``, ``g`` are μ_j, ν_j, μ̃_j and γ̃_j of Meyer et al. (2014, RKL2) or
    Skaras et al. (2021, RKG2); ``one_minus_uv`` = 1 − μ_j − ν_j as HipFT rounds it.
    """

    scheme: str
    s: int
    u: np.ndarray
    v: np.ndarray
    ub: np.ndarray
    g: np.ndarray
    one_minus_uv: np.ndarray


def sts_stages(scheme: str, dt_hours: float, dt_euler_hours: float) -> int:
    """HipFT's stage count s for a super step of ``dt_hours`` (odd, at least 3).

    RKL2: s = ⌈(√(9 + 16 Δt/Δt_E) − 1)/2⌉ (Meyer et al. 2014 eq. 19);
    RKG2: s = ⌈(√(25 + 24 Δt/Δt_E) − 3)/2⌉ (Skaras et al. 2021).
    """
    ratio = float(dt_hours) / float(dt_euler_hours)
    if scheme == "rkl2":
        s_real = 0.5 * (math.sqrt(9.0 + 16.0 * ratio) - 1.0)
    elif scheme == "rkg2":
        s_real = 0.5 * (math.sqrt(25.0 + 24.0 * ratio) - 3.0)
    else:
        raise ConfigError(
            f"diffusion.scheme must be 'rkl2' or 'rkg2' for super time stepping, got {scheme!r}"
        )
    s = max(math.ceil(s_real), 3)
    if s % 2 == 0:
        s += 1
    return s


def sts_init(scheme: str, s: int) -> StsCoefficients:
    """RKL2 / RKG2 coefficients for ``s`` stages (HipFT ``load_sts_rkl2``/``load_sts_rkg2``)."""
    s = int(s)
    if s < 2:
        raise ConfigError(f"super time stepping needs at least 2 stages, got {s}")
    b = np.zeros(s + 1)
    u = np.zeros(s + 1)
    v = np.zeros(s + 1)
    ub = np.zeros(s + 1)
    g = np.zeros(s + 1)
    if scheme == "rkl2":
        # Meyer, Balsara & Aslam (2014) RKL2, b_j = (j² + j − 2)/(2 j (j+1)), b_0 = b_1 = b_2 = 1/3.
        w = 4.0 / float(s * s + s - 2)
        b[1] = b[2] = 1.0 / 3.0
        ub[1] = 4.0 / (3.0 * float(s * s + s - 2))
        u[2], v[2] = 1.5, -0.5
        ub[2] = u[2] * w
        g[2] = -w
        for j in range(3, s + 1):
            b[j] = float(j * j + j - 2) / (2.0 * j * (j + 1))
            u[j] = (b[j] / b[j - 1]) * (2.0 - 1.0 / j)
            v[j] = (b[j] / b[j - 2]) * (1.0 / j - 1.0)
            ub[j] = u[j] * w
            g[j] = (b[j - 1] - 1.0) * ub[j]
    elif scheme == "rkg2":
        # Skaras, Gaitonde & Kurzen (2021) RKG2, b_j = 4(j−1)(j+4)/(3 j (j+1)(j+2)(j+3)).
        w = 6.0 / float((s + 4) * (s - 1))
        b[1], b[2] = 1.0 / 3.0, 1.0 / 15.0
        u[1] = 1.0
        ub[1] = w
        u[2], v[2] = 0.5, -1.0 / 10.0
        ub[2] = u[2] * w
        g[2] = 0.0
        for j in range(3, s + 1):
            b[j] = (4.0 * (j - 1) * (j + 4)) / (3.0 * j * (j + 1) * (j + 2) * (j + 3))
            u[j] = (b[j] / b[j - 1]) * (2.0 + 1.0 / j)
            v[j] = -(b[j] / b[j - 2]) * (1.0 / j + 1.0)
            ub[j] = u[j] * w
            g[j] = (0.5 * j * (j + 1.0) * b[j - 1] - 1.0) * ub[j]
    else:
        raise ConfigError(
            f"diffusion.scheme must be 'rkl2' or 'rkg2' for super time stepping, got {scheme!r}"
        )
    one_minus_uv = (1.0 - u) - v
    return StsCoefficients(
        scheme=scheme,
        s=s,
        u=u[1:].copy(),
        v=v[1:].copy(),
        ub=ub[1:].copy(),
        g=g[1:].copy(),
        one_minus_uv=one_minus_uv[1:].copy(),
    )


# ----------------------------------------------------------------------------- plan
@dataclasses.dataclass(frozen=True)
class DiffusionPlan:
    """Static schedule of one diffusion step.

    Attributes:
        scheme: "euler", "rkl2" or "rkg2".
        dt_hours: the step length the plan was made for (an upper bound for the calls).
        cycle_fractions: length of each sub-cycle as a fraction of the step (sum 1).
        stages: per cycle, the STS stage count s (RKL2/RKG2) or the number of Euler
            sub-steps (Euler).
        dt_euler_hours: HipFT's stable Euler step at the planned ν.
        nu_max: the largest ν (R_sun²/h) the plan is stable for.
    """

    scheme: str
    dt_hours: float
    cycle_fractions: tuple[float, ...]
    stages: tuple[int, ...]
    dt_euler_hours: float
    nu_max: float

    @property
    def n_subcycles(self) -> int:
        return len(self.cycle_fractions)

    @property
    def n_stages(self) -> int:
        """Largest stage count of the cycles (the s of the first cycle when all are equal)."""
        return max(self.stages)

    @property
    def operator_evaluations(self) -> int:
        return int(sum(self.stages))


def _check_scheme(scheme: str) -> str:
    if scheme not in SCHEMES:
        raise ConfigError(f"diffusion.scheme must be one of {SCHEMES}, got {scheme!r}")
    return scheme


def _cycle_stages(scheme: str, dt_cycle: float, dt_euler: float) -> int:
    if scheme == "euler":
        # HipFT diffusion_step_fe_cd: n = ⌈Δt/Δt_E⌉ equal sub-steps.
        return max(1, math.ceil(dt_cycle / dt_euler))
    return sts_stages(scheme, dt_cycle, dt_euler)


def plan_diffusion(
    grid: SftGrid,
    nu_max: float | np.ndarray,
    dt_hours: float,
    scheme: str = "rkg2",
    subcycles: int | str = "auto",
    *,
    cycle_dts: tuple[float, ...] | None = None,
) -> DiffusionPlan:
    """Plan sub-cycles and stages of a diffusion step, as HipFT does, from the largest ν.

    Args:
        grid: the grid.
        nu_max: largest ν in R_sun²/h over the ensemble (scalar or a corner array).
        dt_hours: step length in hours (calls may use shorter steps).
        scheme: "euler", "rkl2" (Meyer et al. 2014) or "rkg2" (Skaras et al. 2021).
        subcycles: a positive int for that many equal cycles (HipFT ``diffusion_subcycles``),
            or "auto" (HipFT's 0). HipFT's automatic cycles follow the field's PTL; without a
            field this plans ONE cycle, which is what HipFT does whenever its PTL exceeds the
            step. Use :func:`diffuse_auto` for HipFT's exact field-dependent cycles.
        cycle_dts: explicit cycle lengths in hours (summing to ``dt_hours``); overrides
            ``subcycles`` (used to replay an automatic schedule).

    Returns:
        The static :class:`DiffusionPlan`.

    Raises:
        ConfigError: for an unknown scheme, a bad sub-cycle count, or a non-positive step.
    """
    _check_scheme(scheme)
    dt_hours = float(dt_hours)
    if not dt_hours > 0.0:
        raise ConfigError(f"diffusion step must be > 0 hours, got {dt_hours!r}")
    dt_e = dtime_diffusion_euler(grid, nu_max)
    if cycle_dts is not None:
        dts = tuple(float(d) for d in cycle_dts)
        if not dts or min(dts) <= 0.0 or abs(sum(dts) - dt_hours) > 1e-9 * dt_hours:
            raise ConfigError(
                f"cycle_dts must be positive and sum to dt_hours={dt_hours}, got {dts}"
            )
        fractions = tuple(d / dt_hours for d in dts)
    elif subcycles == "auto" or subcycles == 0:
        dts = (dt_hours,)
        fractions = (1.0,)
    elif isinstance(subcycles, int | np.integer) and int(subcycles) > 0:
        n = int(subcycles)
        dts = (dt_hours / n,) * n
        fractions = (1.0 / n,) * n
    else:
        raise ConfigError(
            f"diffusion.subcycles must be 'auto' or an integer >= 1, got {subcycles!r}"
        )
    stages = tuple(_cycle_stages(scheme, d, dt_e) for d in dts)
    return DiffusionPlan(
        scheme=scheme,
        dt_hours=dt_hours,
        cycle_fractions=fractions,
        stages=stages,
        dt_euler_hours=dt_e,
        nu_max=float(np.max(np.asarray(nu_max))),
    )


# ----------------------------------------------------------------------------- steps
def _pin_poles(x: Array) -> Array:
    """Pole rows set to their first column's value, in place.

    XLA CPU may contract multiply-adds into FMAs differently in the vectorised body and in
    the scalar tail of a fused loop, so a stage update can leave a pole row 1 ulp apart
    across φ; HipFT's pole rows hold one value.
    """
    row = x.shape[:-2] + (1, x.shape[-1])
    zeros = (0,) * (x.ndim - 2)
    x = jax.lax.dynamic_update_slice(x, jnp.broadcast_to(x[..., :1, :1], row), (*zeros, 0, 0))
    last = x.shape[-2] - 1
    return jax.lax.dynamic_update_slice(
        x, jnp.broadcast_to(x[..., -1:, :1], row), (*zeros, last, 0)
    )


def _euler_cycle(grid: SftGrid, n: int):
    geo = _geometry(grid)

    def cycle(br, nu, dt_cycle):
        h = dt_cycle / n
        coefs = _coefficients(nu, grid, br.dtype)

        def body(x, _):
            return x + h * _apply(x, coefs, geo), None

        out, _ = jax.lax.scan(body, br, None, length=n)
        return _pin_poles(out)

    return cycle


# Grids up to this many cells run every STS stage through a periodic halo (see _sts_cycle).
_HALO_STAGE_MAX_CELLS = 1 << 18


def _sts_cycle(grid: SftGrid, coef: StsCoefficients):
    # Stage j >= 2 coefficients as scan inputs (HipFT diffusion_step_sts_cd).
    xs = np.stack([coef.u[1:], coef.v[1:], coef.one_minus_uv[1:], coef.ub[1:], coef.g[1:]], axis=1)
    ub1 = float(coef.ub[0])
    n_pairs, odd = divmod(xs.shape[0], 2)
    geo = _geometry(grid)
    # Small grids are compute-bound: every stage goes through a halo, so XLA keeps the stage
    # value in memory instead of re-evaluating its update formula at the five stencil
    # offsets. Large grids are bound by memory traffic, and the extra write of the halo costs
    # more than the re-evaluation. Measured (one pinned core, full 1° step with AFT flows and
    # RKG2 x3): 1° 5.09 -> 4.29 ms, 1° with 5 realizations 29.1 -> 26.0 ms; 1024x512 with
    # RKG2 x19: 85.7 -> 103 ms with the halo, hence the threshold. Measured on CPU only, so
    # other backends keep the fused form (same arithmetic: results differ at round-off).
    halo_stages = (
        grid.n_theta * grid.n_phi <= _HALO_STAGE_MAX_CELLS and jax.default_backend() == "cpu"
    )

    def cycle(br, nu, dt_cycle):
        coefs = _coefficients(nu, grid, br.dtype)
        u0 = br
        # Through a halo: the concatenate makes XLA keep ``br`` in memory, rather than
        # re-evaluating its producer (e.g. an advection stage) at the five stencil offsets.
        dty0 = dt_cycle * _apply(_with_halo(br), coefs, geo, halo=True)
        u1 = u0 + ub1 * dty0

        def stage(c, ukm1, ukm2):
            uj, vj, omuv, ubj, gj = c[0], c[1], c[2], c[3], c[4]
            if halo_stages:
                y = _apply(_with_halo(ukm1), coefs, geo, halo=True)
            else:
                y = _apply(ukm1, coefs, geo)
            return uj * ukm1 + vj * ukm2 + omuv * u0 + (ubj * dt_cycle) * y + gj * dty0

        # Two stages per scan step: the carry (u_j, u_{j-1}) then comes out as two new
        # arrays. With one stage per step, u_j would pass from one carry slot to the other,
        # and XLA copies the carry buffers (three full-size copies per stage, more memory
        # traffic than the stage itself).
        def body(carry, c2):
            ukm1, ukm2 = carry
            mid = stage(c2[0], ukm1, ukm2)
            return (stage(c2[1], mid, ukm1), mid), None

        carry = (u1, u0)
        if n_pairs:
            pairs = jnp.asarray(xs[: 2 * n_pairs].reshape(n_pairs, 2, 5), dtype=u0.dtype)
            carry, _ = jax.lax.scan(body, carry, pairs)
        if odd:
            carry = (stage(jnp.asarray(xs[-1], dtype=u0.dtype), *carry), carry[0])
        return _pin_poles(carry[0])

    return cycle


def _make_cycle(grid: SftGrid, scheme: str, stages: int):
    if scheme == "euler":
        return _euler_cycle(grid, int(stages))
    return _sts_cycle(grid, sts_init(scheme, int(stages)))


def make_diffusion_step(
    grid: SftGrid, plan: DiffusionPlan, scheme: str | None = None
) -> Callable[[Field, NuLike, Float[ArrayLike, ""]], Field]:
    """Build a pure diffusion step following ``plan`` (HipFT ``diffusion_step``).

    Args:
        grid: the grid.
        plan: from :func:`plan_diffusion` (or :func:`diffuse_auto`).
        scheme: optional; must equal ``plan.scheme`` when given.

    Returns:
        ``fn(br, nu, dt_hours) -> br``. ``nu`` (R_sun²/h) and ``dt_hours`` are traced; they must
        not exceed ``plan.nu_max`` and ``plan.dt_hours`` for the planned stages to be stable.
        Differentiable in ``br`` and ``nu``; ``jax.vmap`` over ν gives an ensemble.
    """
    if scheme is not None and scheme != plan.scheme:
        raise ConfigError(f"diffusion scheme {scheme!r} does not match the plan's {plan.scheme!r}")
    cycles = [
        (frac, _make_cycle(grid, plan.scheme, s))
        for frac, s in zip(plan.cycle_fractions, plan.stages, strict=True)
    ]

    def step(br: Field, nu: NuLike, dt_hours: Float[ArrayLike, ""]) -> Field:
        x = jnp.asarray(br)
        dt = jnp.asarray(dt_hours, dtype=x.dtype)
        for frac, cycle in cycles:
            x = cycle(x, nu, dt * frac if frac != 1.0 else dt)
        return x

    return step


# ----------------------------------------------------------------------------- HipFT auto cycles
def ptl_timestep(grid: SftGrid, br: ArrayLike, nu: NuLike, dtime_in: float = 0.0) -> float:
    """HipFT's practical time-step limit (``get_dtime_diffusion_ptl``), evaluated on the host.

    At the interior point(s) where |A B| is largest over all members (among points with
    |B| > 1e-16), each neighbour whose difference in B and in A B have opposite signs bounds
    the step by −ΔB/Δ(AB); the smallest bound times 0.95 is the PTL, never below ``dtime_in``.
    Returns ``inf`` when nothing limits the step (HipFT's HUGE).
    """
    x = np.asarray(br, dtype=np.float64)
    af = np.asarray(jax.jit(diffusion_operator(grid))(jnp.asarray(x), jnp.asarray(nu)))
    mask = np.abs(x) > _PTL_FMIN
    if not np.any(mask):
        return math.inf
    axabsmax = float(np.max(np.abs(af)[mask]))
    if not axabsmax > 0.0:
        return math.inf
    ptl = math.inf
    xi, ai = x[..., 1:-1, :], af[..., 1:-1, :]
    hit = (np.abs(ai) == axabsmax) & (np.abs(xi) > _PTL_FMIN)
    if np.any(hit):
        neighbours = (
            (x[..., :-2, :], af[..., :-2, :]),
            (x[..., 2:, :], af[..., 2:, :]),
            (np.roll(xi, 1, axis=-1), np.roll(ai, 1, axis=-1)),
            (np.roll(xi, -1, axis=-1), np.roll(ai, -1, axis=-1)),
        )
        for xn, an in neighbours:
            du = xi - xn
            df = ai - an
            ok = hit & (du * df < 0.0)
            if np.any(ok):
                ptl = min(ptl, float(np.min(-du[ok] / df[ok])))
    ptl = _PTL_SAFE * ptl
    return max(ptl, float(dtime_in))


def diffuse_auto(
    grid: SftGrid,
    br: ArrayLike,
    nu: NuLike,
    dt_hours: float,
    scheme: str = "rkg2",
    *,
    nu_max: float | np.ndarray | None = None,
) -> tuple[Array, DiffusionPlan]:
    """One diffusion step with HipFT's automatic sub-cycles (``diffusion_subcycles = 0``).

    A host-side loop (not traceable): each cycle takes the PTL of the current field as its
    length (never shorter than the previous cycle), the last one ends the step exactly, and
    cycle 59 takes all the rest, as HipFT's ``diffusion_step`` does. Each cycle is a jitted
    static-stage step.

    Args:
        grid: the grid.
        br: field(s) (..., n_theta, n_phi); the PTL is taken over all members, as HipFT does
            over its realizations.
        nu: ν in R_sun²/h (scalar, per member, or corners).
        dt_hours: the step.
        scheme: "euler", "rkl2" or "rkg2".
        nu_max: ν used for the Euler step bound (default: ``nu``).

    Returns:
        ``(br_new, plan)``; ``make_diffusion_step(grid, plan)`` replays the same cycles
        (traceable and differentiable).
    """
    _check_scheme(scheme)
    nu_plan = np.asarray(nu if nu_max is None else nu_max, dtype=np.float64)
    dt_e = dtime_diffusion_euler(grid, nu_plan)
    x = jnp.asarray(br, dtype=jnp.float64)
    nu_j = jnp.asarray(nu, dtype=x.dtype)
    stepped = 0.0
    dt2 = 0.0
    dts: list[float] = []
    for i in range(1, _MAX_AUTO_CYCLES + 1):
        dt2 = ptl_timestep(grid, x, nu_j, dt2)
        done = False
        if stepped + dt2 >= dt_hours:
            dt2 = dt_hours - stepped
            done = True
        if i == _MAX_AUTO_CYCLES - 1:
            dt2 = dt_hours - stepped
            done = True
        s = _cycle_stages(scheme, dt2, dt_e)
        x = _jitted_cycle(grid, scheme, s)(x, nu_j, jnp.asarray(dt2, dtype=x.dtype))
        dts.append(dt2)
        stepped += dt2
        if done:
            break
    plan = plan_diffusion(grid, nu_plan, dt_hours, scheme, cycle_dts=tuple(dts))
    return x, plan


@functools.lru_cache(maxsize=64)
def _jitted_cycle(grid: SftGrid, scheme: str, stages: int):
    return jax.jit(_make_cycle(grid, scheme, stages))
