"""Conservative advection ∂B/∂t = −∇·(v B) on the sphere, as HipFT discretises it.

Finite volumes on the grid of :mod:`jaxgeo.sft.grid` (HipFT 1.x ``advection_operator_*``,
``load_weno``, ``set_lf_alpha``, ``get_flow_dtmax`` and the ``advection_step_*`` drivers):

- Face fluxes F = v·B̂ on the θ faces (between rows) and φ faces (between columns); the
  interior cells get ``(sin θ_{j+½} F_{j+½} − sin θ_{j−½} F_{j−½}) / (sin θ_j Δθ_j) +
  (F_{c+½} − F_{c−½}) / (sin θ_j Δφ_c)``; the pole rows (polar caps) get the net flux through
  their single boundary face times HipFT's cap factor (:func:`jaxgeo.sft.flows.pole_flux_factors`).
  Signed flux is conserved to round-off in HipFT's area measure (``grid.cell_area``).
- Space: first-order upwind, or HipFT's CS-WENO3 ("central-stencil" WENO3 with non-uniform
  mesh weights ``D_*`` and the cell width as the smoothness epsilon, Cravero & Semplice 2016)
  with local Lax–Friedrichs splitting (α = max |v| over the six faces around the cell); the θ
  faces next to the pole rows fall back to upwind, as in HipFT.
- Time: forward Euler, SSPRK(3,3) and SSPRK(4,3) (HipFT's low-storage forms; CFL factor 2
  for SSPRK(4,3)).

- Derivatives: by default JAX differentiates the stencil (forward and reverse mode). With
  ``adjoint="hand"`` the operator is a ``jax.custom_vjp`` whose backward pass is written
  out: face-flux cotangents from the difference and polar-cap adjoints, the CS-WENO3 face
  partials ∂F/∂(six split fluxes) (recomputed, not stored), shifted sums back to the cells
  as windows joined by concatenates (JAX's transposes are pads, which XLA CPU fuses into
  scalar loops that re-evaluate the WENO arithmetic at every shift), in the field's halo
  layout. Reverse mode only (``jax.jvp``/``jacfwd`` raise), hence not the default; inference
  picks it for its reverse-mode gradients (``Physics.adjoint``) and keeps JAX's for its
  Jacobians. Measured at 1° on a loaded 2-core machine (CPU time): value-and-gradient of one
  SSPRK(4,3) step 60–69 → 40–45 ms, forward 3 ms.

The flow is frozen over a step (HipFT sets it, and the Lax–Friedrichs α, once per step).
Kernels are pure: the factories close over the (static) grid and return functions of
``(br, vt, vp[, dt_hours])`` that the caller jits, vmaps and differentiates.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jaxgeo.errors import ConfigError
from jaxgeo.sft.flows import pole_flux_factors
from jaxgeo.sft.grid import SftGrid

__all__ = [
    "ADVECTION_SCHEMES",
    "advection_operator",
    "make_advection_step",
    "max_stable_dt",
]

Scheme = Literal["weno3-ssprk43", "weno3-ssprk33", "upwind-ssprk33", "upwind-euler"]
ADVECTION_SCHEMES: dict[str, tuple[str, str]] = {
    "weno3-ssprk43": ("weno3", "ssprk43"),
    "weno3-ssprk33": ("weno3", "ssprk33"),
    "upwind-ssprk33": ("upwind", "ssprk33"),
    "upwind-euler": ("upwind", "euler"),
}
# HipFT's constants.safety and the CFL multiplier of each time integrator (get_flow_dtmax).
_SAFETY = 0.95
_CFL = {"euler": 1.0, "ssprk33": 1.0, "ssprk43": 2.0}
# Stage coefficients (a, b, c) of f1 <- a f + b f1 - c dt A(f1), HipFT's advection_step_*.
_STAGES = {
    "euler": ((0.0,), (1.0,), (1.0,)),
    "ssprk33": ((0.0, 0.75, 1.0 / 3.0), (1.0, 0.25, 2.0 / 3.0), (1.0, 0.25, 2.0 / 3.0)),
    "ssprk43": ((0.0, 0.0, 2.0 / 3.0, 0.0), (1.0, 1.0, 1.0 / 3.0, 1.0), (0.5, 0.5, 1.0 / 6.0, 0.5)),
}


def _scheme_parts(scheme: str) -> tuple[str, str]:
    try:
        return ADVECTION_SCHEMES[scheme]
    except KeyError:
        raise ConfigError(
            f"flow.scheme must be one of {sorted(ADVECTION_SCHEMES)}, got {scheme!r}"
        ) from None


class _Mesh:
    """NumPy constants of the stencils (built once per factory call)."""

    def __init__(self, grid: SftGrid) -> None:
        n = grid.n_theta
        if n < 6:
            raise ConfigError(f"advection needs n_theta >= 6 (both poles included), got {n}")
        self.n = n
        self.sth = grid.sin_theta_face[:, None]  # (n-1, 1)
        inv_st = grid.inv_sin_theta
        self.inv_stdt = (inv_st * grid.inv_dtheta)[1:-1, None]  # (n-2, 1)
        self.inv_stdp = inv_st[1:-1, None] * grid.inv_dphi[None, :]  # (n-2, N)
        self.dphi = grid.dphi
        self.fac_n, self.fac_s = pole_flux_factors(grid)
        # θ control-volume widths (HipFT dt) and φ widths (HipFT dp).
        self.dt = grid.dtheta
        self.dp = grid.dphi
        # HipFT's load_weno grid weights, per cell (dimensionless).
        self.wt = _weno_weights(self.dt, periodic=False)
        self.wp = _weno_weights(self.dp, periodic=True)


def _weno_weights(d: np.ndarray, *, periodic: bool) -> dict[str, np.ndarray]:
    """HipFT's D_C_CP, D_C_MC, D_M_T, D_CP_T, D_P_T, D_MC_T for cell widths ``d``."""
    if periodic:
        dm, dc, dpl = np.roll(d, 1), d, np.roll(d, -1)
    else:
        # Only cells 1 .. n-2 are ever read; the ends are padded with their own width.
        dm = np.concatenate([d[:1], d[:-1]])
        dc = d
        dpl = np.concatenate([d[1:], d[-1:]])
    tot = dm + dc + dpl
    return {
        "c_cp": dc / (dc + dpl),
        "c_mc": dc / (dm + dc),
        "m_t": dm / tot,
        "cp_t": (dc + dpl) / tot,
        "p_t": dpl / tot,
        "mc_t": (dm + dc) / tot,
        "d": d,
        # The forms _weno_face takes: 4c² and the ratios of the linear weights.
        "k_mc": 4.0 * (dc / (dm + dc)) ** 2,
        "k_cp": 4.0 * (dc / (dc + dpl)) ** 2,
        "r_m": (dm + dc) / dpl,  # mc_t / p_t
        "r_p": (dc + dpl) / dm,  # cp_t / m_t
    }


def _weno_face(ln_m2, ln_m1, ln_0, lp_m1, lp_0, lp_p1, w_m1, w_0):
    """CS-WENO3 flux at the face between cells c−1 and c (HipFT's advection_operator_weno3).

    ``ln_*``/``lp_*`` are the split fluxes ½B(v_left + α) and ½B(v_right − α) at cells c−2 …
    c+1; ``w_m1``/``w_0`` the grid weights of cells c−1 and c.
    """
    cmc_m1, ccp_m1 = w_m1["c_mc"], w_m1["c_cp"]
    cmc_0, ccp_0 = w_0["c_mc"], w_0["c_cp"]
    dn = ln_m1 - ln_m2
    dn1 = ln_0 - ln_m1
    dpp = lp_p1 - lp_0
    dp1 = lp_0 - lp_m1
    # Candidate (two-point) reconstructions.
    p0m = ln_m1 + cmc_m1 * dn
    p1m = cmc_0 * ln_m1 + ccp_m1 * ln_0
    p0p = lp_0 - ccp_0 * dpp
    p1p = ccp_m1 * lp_0 + cmc_0 * lp_m1
    # Smoothness indicators plus the cell width as epsilon (HipFT >= 1.1), squared:
    # w_i = D_i / (d + 4 (c Δ)²)², and each side's weights normalised by their sum, so the
    # side may be scaled by 1/D_0: a0 = (d + k Δ1²)², a1 = (D_1/D_0)(d + k Δ0²)² with the
    # per-cell constants k = 4c² and D_1/D_0 precomputed (fewer operations per face).
    a0m = jnp.square(w_m1["d"] + w_m1["k_cp"] * jnp.square(dn1))
    a1m = w_m1["r_m"] * jnp.square(w_m1["d"] + w_m1["k_mc"] * jnp.square(dn))
    a0p = jnp.square(w_0["d"] + w_0["k_mc"] * jnp.square(dp1))
    a1p = w_0["r_p"] * jnp.square(w_0["d"] + w_0["k_cp"] * jnp.square(dpp))
    # um + up = (a0m p0m + a1m p1m)/(a0m + a1m) + (a0p p0p + a1p p1p)/(a0p + a1p) over one
    # common denominator: one division instead of two, and the division is the last
    # operation, which XLA does not duplicate into consumers that read the face at two
    # offsets (the face flux is kept in memory without a copy).
    sm = a0m + a1m
    sp = a0p + a1p
    return ((a0m * p0m + a1m * p1m) * sp + (a0p * p0p + a1p * p1p) * sm) / (sm * sp)


def _stencil_windows(
    ln: Array, lp: Array, size: int, axis: int
) -> tuple[Array, Array, Array, Array, Array, Array]:
    """The six windows (ln at c−2, c−1, c; lp at c−1, c, c+1) of ``size`` faces along ``axis``
    that :func:`_weno_face` and :func:`_weno_face_partials` take, face c between cells c−1
    and c, cell index = window start + face index."""

    def w(x: Array, start: int) -> Array:
        return jax.lax.slice_in_dim(x, start, start + size, axis=axis)

    return w(ln, 0), w(ln, 1), w(ln, 2), w(lp, 1), w(lp, 2), w(lp, 3)


def _weno_face_partials(ln_m2, ln_m1, ln_0, lp_m1, lp_0, lp_p1, w_m1, w_0):
    """∂(face flux)/∂(ln_m2, ln_m1, ln_0, lp_m1, lp_0, lp_p1) of :func:`_weno_face`."""
    cmc_m1, ccp_m1 = w_m1["c_mc"], w_m1["c_cp"]
    cmc_0, ccp_0 = w_0["c_mc"], w_0["c_cp"]
    dn = ln_m1 - ln_m2
    dn1 = ln_0 - ln_m1
    dpp = lp_p1 - lp_0
    dp1 = lp_0 - lp_m1
    p0m = ln_m1 + cmc_m1 * dn
    p1m = cmc_0 * ln_m1 + ccp_m1 * ln_0
    p0p = lp_0 - ccp_0 * dpp
    p1p = ccp_m1 * lp_0 + cmc_0 * lp_m1
    s0m = w_m1["d"] + 4.0 * jnp.square(cmc_m1 * dn)
    s1m = w_m1["d"] + 4.0 * jnp.square(ccp_m1 * dn1)
    s0p = w_0["d"] + 4.0 * jnp.square(ccp_0 * dpp)
    s1p = w_0["d"] + 4.0 * jnp.square(cmc_0 * dp1)
    a0m = w_m1["p_t"] * jnp.square(s1m)
    a1m = w_m1["mc_t"] * jnp.square(s0m)
    a0p = w_0["m_t"] * jnp.square(s1p)
    a1p = w_0["cp_t"] * jnp.square(s0p)
    inv_m = 1.0 / (a0m + a1m)
    inv_p = 1.0 / (a0p + a1p)
    w0m, w1m = a0m * inv_m, a1m * inv_m
    w0p, w1p = a0p * inv_p, a1p * inv_p
    # um = w0 p0 + w1 p1 with w_i = a_i / (a0 + a1): ∂um/∂a0 = w1 D, ∂um/∂a1 = −w0 D with
    # D = (p0 − p1)/(a0 + a1); ∂a/∂(difference) = 16 · (weight) · c² · difference · s.
    dm = (p0m - p1m) * inv_m
    dp = (p0p - p1p) * inv_p
    g_dn = w0m * (cmc_m1 - dm * 16.0 * w_m1["mc_t"] * jnp.square(cmc_m1) * dn * s0m)
    g_dn1 = w1m * dm * 16.0 * w_m1["p_t"] * jnp.square(ccp_m1) * dn1 * s1m
    g_dpp = -w0p * (ccp_0 + dp * 16.0 * w_0["cp_t"] * jnp.square(ccp_0) * dpp * s0p)
    g_dp1 = w1p * dp * 16.0 * w_0["m_t"] * jnp.square(cmc_0) * dp1 * s1p
    return (
        -g_dn,
        w0m + w1m * cmc_0 + g_dn - g_dn1,
        w1m * ccp_m1 + g_dn1,
        w1p * cmc_0 - g_dp1,
        w0p + w1p * ccp_m1 - g_dpp + g_dp1,
        g_dpp,
    )


Adjoint = Literal["autodiff", "hand"]
# The reverse-mode derivative of the operator when a factory is not told: "autodiff" (JAX
# differentiates the stencil; forward mode works too) or "hand" (custom_vjp with the
# hand-written adjoint; reverse mode only). Module level so that benchmarks and tests can
# compare the two through callers that do not pass it.
_DEFAULT_ADJOINT: Adjoint = "autodiff"


def _zero_halo(x: Array, r: int) -> Array:
    """``x`` with ``r`` zero columns on each side (a concatenate: XLA CPU fuses a pad into
    its consumers as a scalar loop with a bounds test per point)."""
    z = jnp.zeros_like(x[..., :r])
    return jnp.concatenate([z, x, z], axis=-1)


def _adjoint_of_pair(a: Array, b: Array, axis: int) -> Array:
    """Cotangent of ``x`` from those ``a`` of ``x[:-1]`` and ``b`` of ``x[1:]`` along ``axis``."""

    def w(y, lo, hi):
        return jax.lax.slice_in_dim(y, lo, hi, axis=axis)

    m = a.shape[axis]
    return jnp.concatenate([w(a, 0, 1), w(a, 1, m) + w(b, 0, m - 1), w(b, m - 1, m)], axis=axis)


def _stencil_adjoint(parts, ct_face: Array, axis: int, size: int) -> tuple[Array, Array]:
    """Cotangents of ``ln``/``lp`` (length ``size`` along ``axis``) from the face cotangents.

    Face i reads ``ln`` at i … i+2 and ``lp`` at i+1 … i+3 (:func:`_weno_face`'s six inputs,
    whose partial derivatives are ``parts``): each product goes back shifted by its offset.
    """
    m = ct_face.shape[axis]

    def win(x, lo, hi):
        return jax.lax.slice_in_dim(x, lo, hi, axis=axis)

    def shifted_sum(prods, offsets):
        # out[e] = sum_j prods[j][e - o_j]: plain windows where every term exists, single
        # edge lines where only some do, joined by one concatenate. (Written as a sum of
        # pads, XLA CPU fuses it into scalar loops with a bounds test per term per point.)
        lo, hi = max(offsets), min(offsets) + m
        pieces = []
        for e in [*range(lo), "mid", *range(hi, size)]:
            if e == "mid":
                terms = [win(p, lo - o, hi - o) for p, o in zip(prods, offsets, strict=True)]
            else:
                terms = [
                    win(p, e - o, e - o + 1)
                    for p, o in zip(prods, offsets, strict=True)
                    if 0 <= e - o < m
                ]
            if not terms:
                zshape = list(ct_face.shape)
                zshape[axis] = 1
                terms = [jnp.zeros(zshape, ct_face.dtype)]
            pieces.append(sum(terms[1:], terms[0]))
        return jnp.concatenate(pieces, axis=axis)

    prods = [p * ct_face for p in parts]
    return shifted_sum(prods[:3], (0, 1, 2)), shifted_sum(prods[3:], (1, 2, 3))


def _same_vma(args):
    """``args`` with every array varying over the same ``shard_map`` axes.

    A ``custom_vjp`` must return cotangents of its inputs' types; inside ``shard_map`` a flow
    replicated over a longitude block axis meets a field that varies over it, and the flow's
    cotangent would vary. Marking it varying here (outside the ``custom_vjp``) lets JAX's own
    transpose of that cast sum the cotangent over the axis, as plain autodiff does.
    """

    def varying(x) -> frozenset:
        aval = jax.typeof(x)
        mat = getattr(aval, "manual_axis_type", None)  # jax 0.10; older: aval.vma
        return frozenset(mat.varying if mat is not None else getattr(aval, "vma", ()))

    vma = frozenset().union(*(varying(x) for x in jax.tree.leaves(args)))
    if not vma:
        return args

    def cast(x):
        missing = vma - varying(x)
        return jax.lax.pcast(x, tuple(sorted(missing)), to="varying") if missing else x

    return jax.tree.map(cast, args)


def _unbroadcast(x: Array, shape: tuple[int, ...]) -> Array:
    """Sum ``x`` over the leading axes that broadcasting added to an array of ``shape``."""
    extra = x.ndim - len(shape)
    if extra:
        x = jnp.sum(x, axis=tuple(range(extra)))
    axes = tuple(
        i for i, (a, b) in enumerate(zip(x.shape, shape, strict=True)) if b == 1 and a != 1
    )
    if axes:
        x = jnp.sum(x, axis=axes, keepdims=True)
    return x


def _with_ghosts(m: _Mesh, vt: Array) -> Array:
    if vt.shape[-2] == m.n + 1:
        return vt
    if vt.shape[-2] != m.n - 1:
        raise ConfigError(
            f"vt must have n_theta - 1 = {m.n - 1} (or n_theta + 1 = {m.n + 1}) rows, "
            f"got shape {vt.shape}"
        )
    return jnp.concatenate([vt[..., :1, :], vt, vt[..., -1:, :]], axis=-2)


def _ext(x, h: int, right: int | None = None):
    """``x`` with a periodic halo of ``h`` columns on the left and ``right`` (default ``h``)
    on the right."""
    right = h if right is None else right
    return jnp.concatenate([x[..., x.shape[-1] - h :], x, x[..., :right]], axis=-1)


def _window_max(x: Array, size: int, axis: int) -> Array:
    """max over ``size`` consecutive entries along ``axis`` ('valid' windows)."""
    dims = [1] * x.ndim
    dims[axis] = size
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, tuple(dims), (1,) * x.ndim, "VALID")


class _Operator:
    """HipFT's ``aop`` = ∇·(v B) for one space scheme on one grid.

    ``apply`` takes the field with a periodic halo of ``r`` columns on each side (r = 2 for
    WENO3, 1 for upwind), built once per stage by :func:`_ext`: every stencil shift is then
    a plain slice, and the concatenate makes XLA keep the stage's field in memory (its
    elementwise stage update would otherwise be re-evaluated at every stencil offset).
    ``adjoint="hand"`` routes ``apply`` through a ``custom_vjp`` whose backward pass is
    :meth:`_adjoint`; :meth:`_apply_plain` (the forward arithmetic, the same either way) stays
    reachable for tests and A/B benchmarks.
    """

    def __init__(self, grid: SftGrid, space: str, adjoint: Adjoint | None = None) -> None:
        if space not in ("weno3", "upwind"):
            raise ConfigError(f"advection space scheme must be 'weno3' or 'upwind', got {space!r}")
        adjoint = _DEFAULT_ADJOINT if adjoint is None else adjoint
        if adjoint not in ("autodiff", "hand"):
            raise ConfigError(f"advection adjoint must be 'autodiff' or 'hand', got {adjoint!r}")
        self.adjoint = adjoint
        self.m = _Mesh(grid)
        self.space = space
        self.r = 2 if space == "weno3" else 1
        self.nph = grid.n_phi
        self._consts: dict[str, dict] = {}

        @jax.custom_vjp
        def apply_vjp(fe, k):
            return self._apply_plain(fe, k)

        # Residuals: the inputs only. The face partials are recomputed in the backward pass
        # (measured as fast as saving them from the forward, 1° SSPRK(4,3) step, and no
        # extra memory per stage).
        def fwd(fe, k):
            return self._apply_plain(fe, k), (fe, k)

        def bwd(res, ct):
            return self._adjoint(*res, ct)

        apply_vjp.defvjp(fwd, bwd)
        self._apply_vjp = apply_vjp

    def consts(self, dtype) -> dict:
        """Grid constants of the stencils in ``dtype``, converted once per dtype."""
        key = jnp.dtype(dtype).name
        if key not in self._consts:
            m, n, nph = self.m, self.m.n, self.nph

            def c(x):
                return np.asarray(x, dtype=dtype)

            def face_weights(w, lo):
                # Weights of cell lo + i (periodic) for the φ faces i = 0 … N.
                idx = (lo + np.arange(nph + 1)) % nph
                return {name: c(v[idx]) for name, v in w.items()}

            self._consts[key] = {
                "sth": c(m.sth),
                "inv_stdt": c(m.inv_stdt),
                "inv_stdp": c(m.inv_stdp),
                # The south cap's face flux points out of the cap, hence the sign.
                "dphi_n": c(m.fac_n * m.dphi),
                "dphi_s": c(-m.fac_s * m.dphi),
                "wt_m1": {name: c(v[1 : n - 2, None]) for name, v in m.wt.items()},
                "wt_0": {name: c(v[2 : n - 1, None]) for name, v in m.wt.items()},
                # Face i is the left face of column i (cells i-1 and i), for the N + 1
                # faces 0 … N (face N is face 0 again).
                "wp_m1": face_weights(m.wp, -1),
                "wp_0": face_weights(m.wp, 0),
            }
        return self._consts[key]

    def prepare(self, vt, vp, dtype) -> dict[str, Array]:
        """Per-step flow factors (HipFT's set_lf_alpha): the θ factors on the grid, the φ
        factors on the halo layout of ``apply``."""
        m, r = self.m, self.r
        vtg = _with_ghosts(m, jnp.asarray(vt, dtype=dtype))
        vp = jnp.asarray(vp, dtype=dtype)
        vpi = vp[..., 1:-1, :]
        k = {"vt": vtg[..., 1:-1, :]}
        if self.space == "upwind":
            k["vleft"] = _ext(vpi, 1, 0)  # faces left of columns 0 … N (N is 0 again)
            return k
        nph = self.nph
        # Both α are reduce-windows, which XLA keeps in memory (a chain of maxima would be
        # fused into, and re-evaluated at, every stencil offset of every stage); ½(v ∓ α)
        # is then cheap enough to fuse into the stages. Measured in one process, pinned,
        # 1° AFT flows + attenuation + RKG2, with the fused flux below: 17.3 -> 19.7 M
        # cell-steps per CPU-second against the halo-concatenated factors.
        # α_θ: max |v_θ| over the six θ faces j-2 … j+3 of row j (zero beyond the ghosts);
        # the rows are padded by one (contiguous) concatenate.
        at = jnp.abs(vtg)
        pad = jnp.zeros(at.shape[:-2] + (2, at.shape[-1]), at.dtype)
        ap = jnp.concatenate([pad, at, pad], axis=-2)  # ap[j + 2] = |v_θ face j|
        alpha_t = _window_max(ap, 6, -2)
        k["hp_t"] = 0.5 * (vtg[..., 1:, :] - alpha_t)  # ½(v_south − α)
        k["hn_t"] = 0.5 * (vtg[..., :-1, :] + alpha_t)  # ½(v_north + α)
        # α_φ of the halo columns c = -r … N-1+r: max |v_φ| over the faces c-3 … c+2 (vp[c]
        # is the face right of column c). One periodic extension of v_φ by r+3 columns on
        # the left and r+2 on the right, then every factor is a fusion of plain windows,
        # written straight into the halo layout.
        w = nph + 2 * r
        ve = _ext(vpi, r + 3, r + 2)  # ve[i] = vp at column i - r - 3
        ave = jnp.abs(ve)
        alpha_p = _window_max(ave, 6, -1)
        k["hp_p"] = 0.5 * (ve[..., 3 : 3 + w] - alpha_p)  # ½(v_east − α)
        k["hn_p"] = 0.5 * (ve[..., 2 : 2 + w] + alpha_p)  # ½(v_west + α)
        return k

    def apply(self, fe: Array, k: dict[str, Array]) -> Array:
        """∇·(v B) (..., n_theta, n_phi) from ``fe = _ext(B, r)`` and ``k = prepare(...)``."""
        if self.adjoint == "hand":
            return self._apply_vjp(*_same_vma((fe, k)))
        return self._apply_plain(fe, k)

    def _apply_plain(self, fe: Array, k: dict[str, Array]) -> Array:
        n, r, nph = self.m.n, self.r, self.nph
        cs = self.consts(fe.dtype)
        f = fe[..., r : r + nph]
        vt = k["vt"]

        def upwind_t(f_n, f_s, v):
            return v * jnp.where(v >= 0.0, f_n, f_s)

        # ---------------- θ fluxes on the n-1 interior faces.
        if self.space == "upwind":
            ft = upwind_t(f[..., :-1, :], f[..., 1:, :], vt)
        else:
            lp = f * k["hp_t"]  # ½B(v_south − α)
            ln = f * k["hn_t"]  # ½B(v_north + α)
            # Faces between rows r-1 and r for r = 2 … n-2; the two faces next to the
            # poles are upwind, as in HipFT.
            fw = _weno_face(
                *_stencil_windows(ln, lp, n - 3, -2),
                cs["wt_m1"],
                cs["wt_0"],
            )
            f_first = upwind_t(f[..., 0:1, :], f[..., 1:2, :], vt[..., 0:1, :])
            f_last = upwind_t(f[..., n - 2 : n - 1, :], f[..., n - 1 :, :], vt[..., -1:, :])
            ft = jnp.concatenate([f_first, fw, f_last], axis=-2)
        g = cs["sth"] * ft
        div = (g[..., 1:, :] - g[..., :-1, :]) * cs["inv_stdt"]
        # ---------------- φ fluxes on interior rows: fl[c] is the face left of column c.
        fi = fe[..., 1:-1, :]  # columns -r … N-1+r
        if self.space == "upwind":
            vl = k["vleft"]
            fl = vl * jnp.where(vl >= 0.0, fi[..., 0 : nph + 1], fi[..., 1 : nph + 2])
        else:
            lp = fi * k["hp_p"]
            ln = fi * k["hn_p"]
            # All N + 1 faces of columns 0 … N from the halo (face N is face 0 again, the
            # same numbers): no concatenate to append it.
            fl = _weno_face(
                *_stencil_windows(ln, lp, nph + 1, -1),
                cs["wp_m1"],
                cs["wp_0"],
            )
        div = div + (fl[..., 1:] - fl[..., :-1]) * cs["inv_stdp"]
        # ---------------- polar caps: net flux through their one face.
        fn = jnp.sum(ft[..., 0, :] * cs["dphi_n"], axis=-1, keepdims=True)
        fs = jnp.sum(ft[..., -1, :] * cs["dphi_s"], axis=-1, keepdims=True)
        shape = f.shape[:-2] + (1, nph)
        north = jnp.broadcast_to(fn[..., None, :], shape)
        south = jnp.broadcast_to(fs[..., None, :], shape)
        return jnp.concatenate([north, div, south], axis=-2)

    def _face_partials(self, fe: Array, k: dict[str, Array]) -> tuple[tuple, tuple]:
        """The WENO face partials of the θ and φ faces (see :meth:`_adjoint`)."""
        n, r, nph = self.m.n, self.r, self.nph
        cs = self.consts(fe.dtype)
        f = fe[..., r : r + nph]
        lp = f * k["hp_t"]
        ln = f * k["hn_t"]
        pt = _weno_face_partials(
            *_stencil_windows(ln, lp, n - 3, -2),
            cs["wt_m1"],
            cs["wt_0"],
        )
        fi = fe[..., 1:-1, :]
        lp = fi * k["hp_p"]
        ln = fi * k["hn_p"]
        pp = _weno_face_partials(
            *_stencil_windows(ln, lp, nph + 1, -1),
            cs["wp_m1"],
            cs["wp_0"],
        )
        return pt, pp

    def _adjoint(self, fe: Array, k: dict[str, Array], ct: Array) -> tuple[Array, dict]:
        """Hand-written VJP of :meth:`_apply_plain`: ``(∂/∂fe, ∂/∂k)`` of ``<ct, apply(fe, k)>``."""
        n, r, nph, space = self.m.n, self.r, self.nph, self.space
        cs = self.consts(fe.dtype)
        f = fe[..., r : r + nph]
        vt = k["vt"]
        # ---------------- polar caps and the θ difference: cotangents of the θ face fluxes.
        ct_n = jnp.sum(ct[..., 0:1, :], axis=-1, keepdims=True)
        ct_s = jnp.sum(ct[..., -1:, :], axis=-1, keepdims=True)
        cd = ct[..., 1:-1, :]
        d = cd * cs["inv_stdt"]
        sth = cs["sth"]
        ct_ft = jnp.concatenate(
            [
                -d[..., :1, :] * sth[:1] + ct_n * cs["dphi_n"],
                (d[..., :-1, :] - d[..., 1:, :]) * sth[1:-1],
                d[..., -1:, :] * sth[-1:] + ct_s * cs["dphi_s"],
            ],
            axis=-2,
        )

        def upwind_t_adj(f_n, f_s, v, c):
            # v * where(v >= 0, f_n, f_s): no derivative through the selection.
            pos = v >= 0.0
            u = c * v
            return jnp.where(pos, u, 0.0), jnp.where(pos, 0.0, u), c * jnp.where(pos, f_n, f_s)

        ck: dict[str, Array] = {}
        if space == "upwind":
            a_n, a_s, ck["vt"] = upwind_t_adj(f[..., :-1, :], f[..., 1:, :], vt, ct_ft)
            ct_f = _adjoint_of_pair(a_n, a_s, -2)
        else:
            hn = k["hn_t"]
            hp = k["hp_t"]
            # Face q (between rows q+1 and q+2) reads ln at rows q … q+2 and lp at q+1 … q+3.
            pt, pp = self._face_partials(fe, k)
            ct_ln, ct_lp = _stencil_adjoint(pt, ct_ft[..., 1:-1, :], -2, n)
            # The two upwind faces next to the poles.
            n0, s0, v0 = upwind_t_adj(
                f[..., 0:1, :], f[..., 1:2, :], vt[..., 0:1, :], ct_ft[..., :1, :]
            )
            n1, s1, v1 = upwind_t_adj(
                f[..., n - 2 : n - 1, :], f[..., n - 1 :, :], vt[..., -1:, :], ct_ft[..., -1:, :]
            )
            x = ct_ln * hn + ct_lp * hp
            ct_f = jnp.concatenate(
                [
                    x[..., 0:1, :] + n0,
                    x[..., 1:2, :] + s0,
                    x[..., 2 : n - 2, :],
                    x[..., n - 2 : n - 1, :] + n1,
                    x[..., n - 1 :, :] + s1,
                ],
                axis=-2,
            )
            zero = jnp.zeros_like(ct_ft[..., 1:-1, :])
            ck["vt"] = jnp.concatenate([v0, zero, v1], axis=-2)
            ck["hn_t"] = ct_ln * f
            ck["hp_t"] = ct_lp * f
        # ---------------- φ fluxes.
        e = cd * cs["inv_stdp"]
        fi = fe[..., 1:-1, :]
        if space == "upwind":
            # fl has the N + 1 faces of columns 0 … N; div[c] = fl[c+1] − fl[c].
            c_fl = jnp.concatenate([-e[..., :1], e[..., :-1] - e[..., 1:], e[..., -1:]], axis=-1)
            vl = k["vleft"]
            a_w, a_e, ck["vleft"] = upwind_t_adj(
                fi[..., 0 : nph + 1], fi[..., 1 : nph + 2], vl, c_fl
            )
            ct_fi = _adjoint_of_pair(a_w, a_e, -1)
        else:
            # fl has the N + 1 faces of columns 0 … N (from the halo); div[c] = fl[c+1] − fl[c].
            c_fl = jnp.concatenate([-e[..., :1], e[..., :-1] - e[..., 1:], e[..., -1:]], axis=-1)
            hn = k["hn_p"]
            hp = k["hp_p"]
            ct_ln, ct_lp = _stencil_adjoint(pp, c_fl, -1, nph + 4)
            ct_fi = ct_ln * hn + ct_lp * hp
            ck["hn_p"] = ct_ln * fi
            ck["hp_p"] = ct_lp * fi
        # fe's halo layout (the caller's _ext transpose folds it); the pole rows only feed
        # the θ fluxes.
        mid = jnp.concatenate(
            [ct_fi[..., :r], ct_fi[..., r : r + nph] + ct_f[..., 1:-1, :], ct_fi[..., r + nph :]],
            axis=-1,
        )
        ct_fe = jnp.concatenate(
            [_zero_halo(ct_f[..., :1, :], r), mid, _zero_halo(ct_f[..., -1:, :], r)], axis=-2
        )
        ct_fe = _unbroadcast(ct_fe, fe.shape)
        ck = {name: _unbroadcast(ck[name], v.shape) for name, v in k.items()}
        return ct_fe, ck

    def __call__(self, br: Array, k: dict[str, Array]) -> Array:
        return self.apply(_ext(br, self.r), k)


def advection_operator(
    grid: SftGrid,
    space: Literal["weno3", "upwind"] = "weno3",
    *,
    adjoint: Adjoint | None = None,
) -> Callable[..., Float[Array, "*b theta phi"]]:
    """Factory of the advection tendency ``dB/dt = −∇·(v B)``.

    Args:
        grid: the grid (static).
        space: ``"weno3"`` (HipFT's CS-WENO3 with Lax–Friedrichs splitting) or ``"upwind"``.
        adjoint: reverse-mode derivative of the stencil: ``"autodiff"`` (JAX's; forward
            mode works too) or ``"hand"`` (a ``custom_vjp`` with the hand-written adjoint,
            fewer and cheaper kernels; ``jax.jvp``/``jacfwd`` then raise). ``None``: the
            module default (``"autodiff"``). Same values either way.

    Returns:
        ``fn(br, vt, vp) -> dB/dt`` with ``br`` (..., n_theta, n_phi) in G, ``vt``
        (..., n_theta ∓ 1, n_phi) and ``vp`` (..., n_theta, n_phi) in R_sun/h; result in G/h.
    """
    op = _Operator(grid, space, adjoint)

    def tendency(br, vt, vp):
        br = jnp.asarray(br)
        return -op(br, op.prepare(vt, vp, br.dtype))

    return tendency


def make_advection_step(
    grid: SftGrid,
    scheme: Scheme = "weno3-ssprk43",
    *,
    unroll_stages: bool = True,
    adjoint: Adjoint | None = None,
) -> Callable[..., Float[Array, "*b theta phi"]]:
    """Factory of one HipFT advection step.

    Args:
        grid: the grid (static).
        scheme: ``"weno3-ssprk43"`` (HipFT's default ``flow_num_method = 4``),
            ``"weno3-ssprk33"`` (3), ``"upwind-ssprk33"`` (2) or ``"upwind-euler"`` (1).
        unroll_stages: unroll the Runge–Kutta stages (fastest code on CPU); ``False`` keeps
            them in a ``lax.scan`` so the operator is compiled once (several times less
            compile time, for short runs and tests). Same arithmetic either way.
        adjoint: the operator's reverse-mode derivative, as in :func:`advection_operator`.

    Returns:
        ``step(br, vt, vp, dt_hours) -> br`` advancing by ``dt_hours`` (traced scalar) with
        the flow held fixed. Stable for ``dt_hours <= max_stable_dt(grid, vt, vp, scheme)``.

    Raises:
        ConfigError: for an unknown scheme.
    """
    space, time = _scheme_parts(scheme)
    op = _Operator(grid, space, adjoint)

    # Every stage of HipFT's low-storage SSPRK drivers has the form
    #   f1 <- a f + b f1 - c dt A(f1)   (f1 starting as f).
    a_s, b_s, c_s = _STAGES[time]

    def step(br, vt, vp, dt_hours):
        f = jnp.asarray(br)
        dt = jnp.asarray(dt_hours, dtype=f.dtype)
        k = op.prepare(vt, vp, f.dtype)
        if unroll_stages:
            f1 = f
            for a, b, c in zip(a_s, b_s, c_s, strict=True):
                # Terms with a = 0 or b = 1 dropped: the same numbers, fewer passes.
                new = f1 if b == 1.0 else b * f1
                if a != 0.0:
                    new = a * f + new
                f1 = new - (c * dt) * op(f1, k)
            return f1

        coefs = tuple(jnp.asarray(x, dtype=f.dtype) for x in (a_s, b_s, c_s))

        def stage(f1, abc):
            a, b, c = abc
            return a * f + b * f1 - (c * dt) * op(f1, k), None

        return jax.lax.scan(stage, f, coefs)[0]

    return step


def max_stable_dt(
    grid: SftGrid,
    vt: Float[ArrayLike, "*b face phi"],
    vp: Float[ArrayLike, "*b theta phi"],
    scheme: Scheme = "weno3-ssprk43",
) -> Float[Array, ""]:
    """HipFT's ``get_flow_dtmax``: the largest stable advection step, hours.

    ``0.95 · ½ / max_cells(max|v_θ| / Δθ + max|v_φ| / (sin θ Δφ))`` over the interior cells
    (each term takes the larger of the cell's two faces), doubled for SSPRK(4,3). Batched
    flows give the minimum over the batch (HipFT's minimum over realizations).

    Args:
        grid: the grid.
        vt: v_θ (..., n_theta ∓ 1, n_phi), R_sun/h.
        vp: v_φ (..., n_theta, n_phi), R_sun/h.
        scheme: the advection scheme (sets the CFL multiplier).

    Returns:
        A scalar (jnp), usable on concrete arrays at Python level to plan steps.
    """
    _, time = _scheme_parts(scheme)
    vt = jnp.abs(jnp.asarray(vt))
    vp = jnp.abs(jnp.asarray(vp))
    if vt.shape[-2] == grid.n_theta + 1:
        vt = vt[..., 1:-1, :]
    dtype = jnp.result_type(vt, vp)
    inv_dt = jnp.asarray(grid.inv_dtheta[1:-1, None], dtype=dtype)
    inv_stdp = jnp.asarray(grid.inv_sin_theta[1:-1, None] * grid.inv_dphi[None, :], dtype=dtype)
    kt = jnp.maximum(vt[..., :-1, :], vt[..., 1:, :]) * inv_dt
    vpi = vp[..., 1:-1, :]
    kp = jnp.maximum(vpi, jnp.roll(vpi, 1, axis=-1)) * inv_stdp
    kmax = jnp.max(kt + kp)
    tiny = jnp.finfo(dtype).tiny
    return _SAFETY * _CFL[time] * 0.5 / jnp.maximum(kmax, tiny)
