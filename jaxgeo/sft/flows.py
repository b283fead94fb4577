"""Surface flows of the flux-transport model, on HipFT's staggered faces.

Everything here follows HipFT 1.x (``update_flow``, ``add_flow_*``, ``load_flows``,
``add_flow_from_files``, ``load_flow_from_files``); velocities are returned in R_sun/h on the
unit sphere, with the staggering of :mod:`jaxgeo.sft.grid`:

- ``vt`` (v_θ, positive toward the south pole) on θ faces between main rows, shape
  ``(n_theta - 1, n_phi)``. Functions that take ``ghosts=True`` return HipFT's full θ half
  mesh instead, shape ``(n_theta + 1, n_phi)``, whose first and last rows are the ghost faces
  beyond the poles. Only the CS-WENO3 stencil next to the pole-adjacent faces reads them;
  :func:`jaxgeo.sft.advection.advection_operator` accepts both shapes and, for the short one,
  copies the nearest interior face into the ghosts (exact for constant and AFT-north flows).
- ``vp`` (v_φ, positive eastward) on φ faces between columns ``c`` and ``c+1`` (periodic),
  shape ``(n_theta, n_phi)``; the pole rows carry a value, as in HipFT, but no φ flux is
  ever formed there.

All analytic profiles are pure functions of their (traceable) coefficients, so they can be
differentiated, vmapped over an ensemble of coefficients and jitted by the caller.

Flows from files (HipFT's ``use_flow_from_files``): :class:`FlowSeries` reads HipFT's flow
list and its v_θ/v_φ HDF5 pairs into stacked arrays (:class:`FlowSeriesArrays`) and
:func:`interpolate_flow` picks the flow HipFT holds at a time (piecewise constant, looping).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jaxgeo.errors import FileFormatError
from jaxgeo.io.hipft_h5 import read_psi_h5
from jaxgeo.sft.grid import SftGrid
from jaxgeo.sft.units import KM_S_TO_RS_HR, M_S_TO_RS_HR

__all__ = [
    "AFT_DR_DEFAULTS_M_S",
    "AFT_MF_DEFAULTS_M_S",
    "FlowSeries",
    "FlowSeriesArrays",
    "aft_differential_rotation",
    "aft_meridional_flow",
    "attenuate",
    "constant_vtheta",
    "interpolate_flow",
    "pole_flux_factors",
    "rigid_rotation",
    "rigid_rotation_through_poles",
    "strip_ghosts",
]

# HipFT's defaults (flow_dr_coef_p{0,2,4}_value and flow_mf_coef_p{1,3,5}_value), m/s.
AFT_DR_DEFAULTS_M_S = (46.0, -262.0, -379.0)
AFT_MF_DEFAULTS_M_S = (22.0, 11.0, -28.0)


def _dtype(*values: ArrayLike) -> jnp.dtype:
    # Python floats are weak: they follow a traced float32 coefficient, else default float.
    return jnp.result_type(*values, float)


def _const(a: np.ndarray, dtype: jnp.dtype) -> Array:
    return jnp.asarray(a, dtype=dtype)


def strip_ghosts(grid: SftGrid, vt: Float[ArrayLike, "*b face phi"]) -> Float[Array, "*b f phi"]:
    """v_θ on the interior faces only: drops HipFT's ghost rows when ``vt`` has them."""
    vt = jnp.asarray(vt)
    if vt.shape[-2] == grid.n_theta + 1:
        return vt[..., 1:-1, :]
    return vt


def pole_flux_factors(grid: SftGrid, *, hipft_exact: bool = False) -> tuple[float, float]:
    """Factors turning the net flux through a polar cap's face into the cap's rate of change.

    The net flux ``Σ_c F_θ dφ_c`` through the first (last) θ face, times the factor, is the
    rate of change of the polar-cap value. HipFT (``bc_flow_npole_fac``) divides by the exact
    cap area, ``sin(Δθ/2) / (2π (1 − cos(Δθ/2)))``; its diffusion operator and its flux
    diagnostics weight the cap by the quadrature ``¼ sin(θ_½) Δθ`` instead. The two differ by
    O(Δθ²) (1.3e-5 relative at 1°), enough that advection and diffusion together do not
    conserve the signed flux to round-off in either measure. By default the cap area here is
    the quadrature one (``grid.pole_cap_weight``), so every operator conserves
    ``Σ B · grid.cell_area`` exactly; ``hipft_exact=True`` gives HipFT's factor.
    """
    dt = grid.dtheta
    if hipft_exact:
        north = math.sin(0.5 * dt[0]) / (2.0 * math.pi * (1.0 - math.cos(0.5 * dt[0])))
        south = math.sin(0.5 * dt[-1]) / (2.0 * math.pi * (1.0 - math.cos(0.5 * dt[-1])))
        return north, south
    w_n, w_s = grid.pole_cap_weight
    north = math.sin(0.5 * dt[0]) / (2.0 * math.pi * w_n)
    south = math.sin(0.5 * dt[-1]) / (2.0 * math.pi * w_s)
    return north, south


def aft_differential_rotation(
    grid: SftGrid,
    p0: Float[ArrayLike, ""] = AFT_DR_DEFAULTS_M_S[0],
    p2: Float[ArrayLike, ""] = AFT_DR_DEFAULTS_M_S[1],
    p4: Float[ArrayLike, ""] = AFT_DR_DEFAULTS_M_S[2],
) -> Float[Array, "theta phi"]:
    """AFT differential rotation v_φ = sin θ (p0 + p2 cos²θ + p4 cos⁴θ) (HipFT's DR model 1).

    Args:
        grid: the grid.
        p0, p2, p4: coefficients in m/s (HipFT defaults 46, −262, −379), scalars; traced
            values are fine.

    Returns:
        v_φ on the φ faces, (n_theta, n_phi), R_sun/h; zero on the pole rows.
    """
    dtype = _dtype(p0, p2, p4)
    st = _const(grid.sin_theta, dtype)
    c2 = _const(grid.cos_theta**2, dtype)
    prof = M_S_TO_RS_HR * st * (p0 + p2 * c2 + p4 * c2 * c2)
    return jnp.broadcast_to(prof[:, None], grid.shape)


def aft_meridional_flow(
    grid: SftGrid,
    p1: Float[ArrayLike, ""] = AFT_MF_DEFAULTS_M_S[0],
    p3: Float[ArrayLike, ""] = AFT_MF_DEFAULTS_M_S[1],
    p5: Float[ArrayLike, ""] = AFT_MF_DEFAULTS_M_S[2],
    *,
    ghosts: bool = False,
) -> Float[Array, "face phi"]:
    """AFT meridional flow v_θ = −sin θ (p1 cos θ + p3 cos³θ + p5 cos⁵θ) (HipFT's MF model 1).

    With positive p1 the flow is poleward in both hemispheres (v_θ < 0 in the north).

    Args:
        grid: the grid.
        p1, p3, p5: coefficients in m/s (HipFT defaults 22, 11, −28); traced values are fine.
        ghosts: also return HipFT's ghost faces beyond the poles (it evaluates the formula
            at θ = −Δθ/2 and π + Δθ/2 with sin|θ|, so the south ghost has the opposite sign
            of its neighbour).

    Returns:
        v_θ on the θ faces, (n_theta - 1, n_phi) or (n_theta + 1, n_phi), R_sun/h.
    """
    dtype = _dtype(p1, p3, p5)
    sth = _const(grid.sin_theta_half, dtype)
    c = _const(grid.cos_theta_half, dtype)
    c2 = c * c
    prof = -M_S_TO_RS_HR * sth * c * (p1 + p3 * c2 + p5 * c2 * c2)
    if not ghosts:
        prof = prof[1:-1]
    return jnp.broadcast_to(prof[:, None], (prof.shape[0], grid.n_phi))


def rigid_rotation(grid: SftGrid, omega_km_s: Float[ArrayLike, ""]) -> Float[Array, "theta phi"]:
    """Rigid rotation about the polar axis, v_φ = ω sin θ (HipFT's ``flow_vp_rigid_omega``).

    Args:
        grid: the grid.
        omega_km_s: equatorial speed in km/s (so ω in rad/h is ``omega_km_s·KM_S_TO_RS_HR``).

    Returns:
        v_φ (n_theta, n_phi), R_sun/h.
    """
    dtype = _dtype(omega_km_s)
    st = _const(grid.sin_theta, dtype)
    return jnp.broadcast_to((KM_S_TO_RS_HR * omega_km_s * st)[:, None], grid.shape)


def constant_vtheta(
    grid: SftGrid, vt_km_s: Float[ArrayLike, ""], *, ghosts: bool = False
) -> Float[Array, "face phi"]:
    """Constant v_θ on every θ face (HipFT's ``flow_vt_const``), km/s in, R_sun/h out.

    Args:
        grid: the grid.
        vt_km_s: the speed in km/s, positive toward the south pole.
        ghosts: include HipFT's ghost faces (same constant).

    Returns:
        v_θ (n_theta - 1, n_phi) or (n_theta + 1, n_phi).
    """
    n = grid.n_theta + 1 if ghosts else grid.n_theta - 1
    value = jnp.asarray(KM_S_TO_RS_HR * vt_km_s, dtype=_dtype(vt_km_s))
    return jnp.broadcast_to(value, (n, grid.n_phi))


def rigid_rotation_through_poles(
    grid: SftGrid, omega_km_s: Float[ArrayLike, ""], *, ghosts: bool = False
) -> tuple[Float[Array, "face phi"], Float[Array, "theta phi"]]:
    """Solid-body rotation about the equatorial axis through φ = 0 (HipFT's ``flow_rigid_omega``).

    v = ω x̂ × r gives v_θ = −ω sin φ and v_φ = −ω cos θ cos φ: a point on the equator at
    φ = π/2 moves north for ω > 0. HipFT 1.x writes this flow as a long closed form marked
    "might not be right" in its source; evaluated on its own mesh that form takes the square
    root of a negative number over much of the sphere, so this module uses the exact
    velocity instead (no parity with HipFT is possible or intended for this flow).

    Args:
        grid: the grid.
        omega_km_s: equatorial speed of the rotation in km/s.
        ghosts: include HipFT's two ghost θ faces in ``vt`` (same formula there).

    Returns:
        ``(vt, vp)`` in R_sun/h: v_θ on θ faces × main φ points, v_φ on main θ rows × φ faces.
    """
    dtype = _dtype(omega_km_s)
    w = KM_S_TO_RS_HR * jnp.asarray(omega_km_s, dtype=dtype)
    rows = grid.n_theta + 1 if ghosts else grid.n_theta - 1
    vt = -w * jnp.broadcast_to(_const(np.sin(grid.phi), dtype)[None, :], (rows, grid.n_phi))
    shape_p = -np.cos(grid.theta)[:, None] * np.cos(grid.phi_face)[None, :]
    vp = w * _const(shape_p, dtype)
    return vt, vp


def attenuate(
    grid: SftGrid,
    vt: Float[ArrayLike, "*b face phi"],
    vp: Float[ArrayLike, "*b theta phi"],
    br: Float[ArrayLike, "*b theta phi"],
    b_att_gauss: Float[ArrayLike, ""],
) -> tuple[Float[Array, "*b face phi"], Float[Array, "*b theta phi"]]:
    """HipFT's flow attenuation v ← v (1 − tanh(|B|_face / B_att)).

    |B| at a face is the larger |Br| of the two cells it separates (HipFT ≥ 0.20). HipFT
    applies this at the start of every step from the current field and keeps it for all
    stages; its ghost θ faces (if ``vt`` has them) are left unattenuated, as in HipFT.

    Args:
        grid: the grid.
        vt: v_θ (..., n_theta ∓ 1, n_phi).
        vp: v_φ (..., n_theta, n_phi).
        br: field (..., n_theta, n_phi), Gauss.
        b_att_gauss: attenuation field strength (HipFT's ``flow_attenuate_value``, default
            500 G); traced values are fine.

    Returns:
        ``(vt, vp)`` attenuated, same shapes.
    """
    vt = jnp.asarray(vt)
    vp = jnp.asarray(vp)
    br = jnp.asarray(br)
    a = jnp.abs(br)
    inv_b = 1.0 / jnp.asarray(b_att_gauss, dtype=br.dtype)
    bt = jnp.maximum(a[..., :-1, :], a[..., 1:, :])
    bp = jnp.maximum(a, jnp.roll(a, -1, axis=-1))
    fac_t = 1.0 - jnp.tanh(bt * inv_b)
    fac_p = 1.0 - jnp.tanh(bp * inv_b)
    if vt.shape[-2] == grid.n_theta + 1:
        shape = jnp.broadcast_shapes(vt.shape[:-2], fac_t.shape[:-2]) + vt.shape[-2:]
        vt_out = jnp.broadcast_to(vt, shape).at[..., 1:-1, :].multiply(fac_t)
    else:
        vt_out = vt * fac_t
    return vt_out, vp * fac_p


# --------------------------------------------------------------------------- flows from files
@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FlowSeriesArrays:
    """Stacked flows from files, ready for :func:`interpolate_flow`.

    Attributes:
        times: start time of each flow, hours from the first (K,).
        vt: v_θ with HipFT's ghost faces (K, n_theta + 1, n_phi), R_sun/h.
        vp: v_φ (K, n_theta, n_phi), R_sun/h.
        period: loop period in hours: last time plus the last spacing (HipFT repeats the
            list, holding the last flow as long as the spacing of the last two).
    """

    times: Float[Array, " k"]
    vt: Float[Array, "k face phi"]
    vp: Float[Array, "k theta phi"]
    period: Float[Array, ""]


def interpolate_flow(
    series: FlowSeriesArrays, t_hours: Float[ArrayLike, ""]
) -> tuple[Float[Array, "face phi"], Float[Array, "theta phi"]]:
    """The flow HipFT uses for a step starting at ``t_hours`` (hours since the run start).

    HipFT holds each file's flow from its time until the next file's time (no blending in
    time) and loops over the list; this picks the latest flow whose time is ≤ t modulo the
    period. Differentiable w.r.t. the flow arrays; ``t_hours`` may be traced.
    """
    tm = jnp.mod(jnp.asarray(t_hours, dtype=series.times.dtype), series.period)
    idx = jnp.clip(jnp.searchsorted(series.times, tm, side="right") - 1, 0, series.times.size - 1)
    return series.vt[idx], series.vp[idx]


def _read_hipft_2d(path: Path) -> np.ndarray:
    """The 2-D ``Data`` of a HipFT flow file (as h5py reads it: (dim2, dim1))."""
    return read_psi_h5(path, what="flow file", scales=False, ranks=(2,))[0]


@dataclasses.dataclass(frozen=True)
class FlowSeries:
    """A list of HipFT flow files (HipFT's ``flow_list_filename``).

    Attributes:
        times_hours: time of each flow pair, hours from the first (K,), increasing.
        vt_files: v_θ files (HipFT's ``_vt`` maps: Data (n_theta + 1, n_phi + 1), m/s).
        vp_files: v_φ files (Data (n_theta, n_phi + 2), m/s, HipFT's two-point overlap).
    """

    times_hours: tuple[float, ...]
    vt_files: tuple[Path, ...]
    vp_files: tuple[Path, ...]

    def __post_init__(self) -> None:
        n = len(self.times_hours)
        if n < 2 or len(self.vt_files) != n or len(self.vp_files) != n:
            raise FileFormatError(
                "a flow series needs at least 2 entries and one vt and one vp file per time, "
                f"got {n} times, {len(self.vt_files)} vt and {len(self.vp_files)} vp files"
            )
        if any(b <= a for a, b in zip(self.times_hours, self.times_hours[1:], strict=False)):
            raise FileFormatError("flow series times must be strictly increasing")

    @classmethod
    def from_list(cls, list_path: str | Path, root_dir: str | Path | None = None) -> FlowSeries:
        """Read HipFT's flow list: a header row, then ``time_jd vt_file vp_file`` rows.

        Times are in days (HipFT multiplies by 24 and subtracts the first); file names are
        relative to ``root_dir`` (HipFT's ``flow_root_dir``, default the list's folder).
        """
        list_path = Path(list_path)
        if not list_path.is_file():
            raise FileFormatError(f"flow list {list_path} does not exist")
        root = Path(root_dir) if root_dir is not None else list_path.parent
        times: list[float] = []
        vts: list[Path] = []
        vps: list[Path] = []
        lines = list_path.read_text().splitlines()[1:]
        for lineno, line in enumerate(lines, start=2):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) < 3:
                raise FileFormatError(
                    f"flow list {list_path} line {lineno}: expected 'time vt_file vp_file', "
                    f"got {line!r}"
                )
            try:
                times.append(24.0 * float(parts[0]))
            except ValueError as exc:
                raise FileFormatError(
                    f"flow list {list_path} line {lineno}: time {parts[0]!r} is not a number"
                ) from exc
            vts.append(root / parts[1])
            vps.append(root / parts[2])
        t0 = times[0] if times else 0.0
        return cls(tuple(t - t0 for t in times), tuple(vts), tuple(vps))

    def load(self, grid: SftGrid, *, dtype: jnp.dtype | None = None) -> FlowSeriesArrays:
        """Read every flow pair into stacked arrays on ``grid`` (m/s -> R_sun/h)."""
        n, m = grid.n_theta, grid.n_phi
        vts, vps = [], []
        for ft, fp in zip(self.vt_files, self.vp_files, strict=True):
            vt = _read_hipft_2d(ft)
            if vt.shape != (n + 1, m + 1):
                raise FileFormatError(
                    f"v_theta file {ft} has shape {vt.shape}, expected {(n + 1, m + 1)} "
                    "(θ half mesh with ghosts × φ with the periodic end point)"
                )
            vp = _read_hipft_2d(fp)
            if vp.shape != (n, m + 2):
                raise FileFormatError(
                    f"v_phi file {fp} has shape {vp.shape}, expected {(n, m + 2)} "
                    "(θ main mesh × φ half mesh with HipFT's two-point overlap)"
                )
            # vt columns are HipFT's main φ points (column c = φ_c); vp column k holds the
            # face left of HipFT cell k, so our face c|c+1 is HipFT's k = c + 2 (1-based).
            vts.append(M_S_TO_RS_HR * vt[:, :m])
            vps.append(M_S_TO_RS_HR * vp[:, 1 : m + 1])
        times = np.asarray(self.times_hours, dtype=np.float64)
        period = times[-1] + (times[-1] - times[-2])
        dt = dtype or jnp.result_type(float)
        return FlowSeriesArrays(
            times=jnp.asarray(times, dtype=dt),
            vt=jnp.asarray(np.stack(vts), dtype=dt),
            vp=jnp.asarray(np.stack(vps), dtype=dt),
            period=jnp.asarray(period, dtype=dt),
        )
