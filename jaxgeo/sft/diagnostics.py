"""HipFT's history quantities (``analysis_step``), as pure JAX reductions.

All sums use HipFT's flux-integral weights: ``grid.theta_weight`` in θ (sin θ dθ inside, the
polar-cap weight ¼ sin θ_½ Δθ on the pole rows, which also take cos/sin of θ_½ in the dipole
moments) and dφ in φ, except that HipFT weights the first column by the width of the seam
interval (its trapezoid over the duplicated end point); on uniform grids this is dφ too.
Fluxes are ``R_sun² Σ B dA`` in Mx with R_sun = 6.96e10 cm, split by the sign of each term.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jaxgeo.errors import FileFormatError
from jaxgeo.sft.grid import SftGrid
from jaxgeo.sft.units import GAUSS_SR_TO_MX

__all__ = [
    "HISTORY_LONG_NAMES",
    "HISTORY_NAMES",
    "HISTORY_UNITS",
    "history",
    "history_weights",
    "read_hipft_history",
]

HISTORY_UNITS: dict[str, str] = {
    "br_min": "G",
    "br_max": "G",
    "br_abs_min": "G",
    "flux_positive": "Mx",
    "flux_negative": "Mx",
    "npole_flux_positive": "Mx",
    "npole_flux_negative": "Mx",
    "spole_flux_positive": "Mx",
    "spole_flux_negative": "Mx",
    "npole_area": "cm2",
    "spole_area": "cm2",
    "eq_dipole": "G",
    "ax_dipole": "G",
    "polar_field_north": "G",
    "polar_field_south": "G",
    "validation_err_hhabs": "1",
}

HISTORY_LONG_NAMES: dict[str, str] = {
    "br_min": "minimum of Br",
    "br_max": "maximum of Br",
    "br_abs_min": "minimum of |Br|",
    "flux_positive": "total positive flux",
    "flux_negative": "total negative flux",
    "npole_flux_positive": "positive flux poleward of the north polar latitude limit",
    "npole_flux_negative": "negative flux poleward of the north polar latitude limit",
    "spole_flux_positive": "positive flux poleward of the south polar latitude limit",
    "spole_flux_negative": "negative flux poleward of the south polar latitude limit",
    "npole_area": "area poleward of the north polar latitude limit",
    "spole_area": "area poleward of the south polar latitude limit",
    "eq_dipole": "equatorial dipole strength",
    "ax_dipole": "axial dipole strength",
    "polar_field_north": "area-weighted mean Br poleward of 60 degrees north",
    "polar_field_south": "area-weighted mean Br poleward of 60 degrees south",
    "validation_err_hhabs": "validation error sqrt(sum (B - B_exact)^2 / sum |B| |B_exact|)",
}

HISTORY_NAMES: tuple[str, ...] = tuple(HISTORY_UNITS)

# HipFT's degree-to-radian constant and max initial value (tiny(1.0)).
_D2R = 0.017453292519943295
_TINY = float(np.finfo(np.float64).tiny)
_POLAR_FIELD_LAT_DEG = 60.0


@functools.lru_cache(maxsize=32)
def history_weights(grid: SftGrid) -> dict[str, np.ndarray]:
    """HipFT's analysis weights: ``area`` (n_theta, n_phi) sr, ``sin_t``/``cos_t`` (n_theta,).

    ``area`` is ``grid.cell_area`` (see the comment below for the one place it departs from HipFT).
    """
    t = grid.theta
    sin_t = np.sin(t)
    cos_t = np.cos(t)
    tav_n = 0.5 * (t[0] + t[1])
    tav_s = 0.5 * (t[-1] + t[-2])
    sin_t[0], cos_t[0] = math.sin(tav_n), math.cos(tav_n)
    sin_t[-1], cos_t[-1] = math.sin(tav_s), math.cos(tav_s)
    # The measure every operator conserves. HipFT's analysis weighs the seam column (φ₀ and its
    # periodic duplicate) by the seam spacing instead of dφ₀; that differs only where the φ
    # spacing is not uniform at the seam (maps with float32 scales: ~1e-7 of that column) but
    # makes the history's net flux drift by ~1e-9 while the field's is conserved to round-off.
    area = grid.cell_area
    return {
        "area": area,
        "sin_t": sin_t,
        "cos_t": cos_t,
        "cos_p": np.cos(grid.phi),
        "sin_p": np.sin(grid.phi),
    }


def history(
    grid: SftGrid,
    br: Float[ArrayLike, "*b theta phi"],
    *,
    exact: Float[ArrayLike, "*b theta phi"] | None = None,
    pole_lat_limit_deg: float = 30.0,
) -> dict[str, Float[Array, "*b"]]:
    """HipFT's history quantities of ``br`` (Gauss), as HipFT's ``analysis_step`` computes them.

    Args:
        grid: the grid.
        br: field(s) (..., n_theta, n_phi) in Gauss.
        exact: exact solution of the same shape; adds ``validation_err_hhabs``.
        pole_lat_limit_deg: HipFT's ``pole_flux_lat_limit`` (degrees from each pole).

    Returns:
        Dict of arrays of shape ``br.shape[:-2]`` (names in ``HISTORY_UNITS``). Pure; can be
        jitted and vmapped.
    """
    f = jnp.asarray(br)
    w = history_weights(grid)
    dt = f.dtype
    area = jnp.asarray(w["area"], dtype=dt)
    axes = (-2, -1)
    out: dict[str, Array] = {}
    out["br_min"] = jnp.min(f, axis=axes)
    out["br_max"] = jnp.maximum(jnp.max(f, axis=axes), _TINY)
    out["br_abs_min"] = jnp.min(jnp.abs(f), axis=axes)
    fv = f * area
    pos = fv > 0.0

    def split(mask_rows: np.ndarray | None):
        if mask_rows is None:
            sel = fv
        else:
            sel = jnp.where(jnp.asarray(mask_rows)[:, None], fv, 0.0)
        p = jnp.sum(jnp.where(pos, sel, 0.0), axis=axes) * GAUSS_SR_TO_MX
        m = jnp.sum(jnp.where(pos, 0.0, sel), axis=axes) * GAUSS_SR_TO_MX
        return p, m

    out["flux_positive"], out["flux_negative"] = split(None)
    lim = float(pole_lat_limit_deg) * _D2R
    north = grid.theta <= lim
    south = grid.theta >= math.pi - lim
    out["npole_flux_positive"], out["npole_flux_negative"] = split(north)
    out["spole_flux_positive"], out["spole_flux_negative"] = split(south)
    out["npole_area"] = jnp.full(
        f.shape[:-2], float(np.sum(w["area"][north])) * GAUSS_SR_TO_MX, dtype=dt
    )
    out["spole_area"] = jnp.full(
        f.shape[:-2], float(np.sum(w["area"][south])) * GAUSS_SR_TO_MX, dtype=dt
    )
    fac = 0.75 / math.pi
    sin_t = jnp.asarray(w["sin_t"], dtype=dt)[:, None]
    cos_t = jnp.asarray(w["cos_t"], dtype=dt)[:, None]
    eqd1 = fac * jnp.sum(fv * sin_t * jnp.asarray(w["cos_p"], dtype=dt), axis=axes)
    eqd2 = fac * jnp.sum(fv * sin_t * jnp.asarray(w["sin_p"], dtype=dt), axis=axes)
    out["eq_dipole"] = jnp.sqrt(eqd1**2 + eqd2**2)
    out["ax_dipole"] = fac * jnp.sum(fv * cos_t, axis=axes)
    plim = (90.0 - _POLAR_FIELD_LAT_DEG) * _D2R
    for name, rows in (
        ("polar_field_north", grid.theta <= plim),
        ("polar_field_south", grid.theta >= math.pi - plim),
    ):
        a = np.where(rows[:, None], w["area"], 0.0)
        out[name] = jnp.sum(f * jnp.asarray(a, dtype=dt), axis=axes) / float(np.sum(a))
    if exact is not None:
        e = jnp.asarray(exact, dtype=dt)
        num = jnp.sum((f - e) ** 2, axis=axes)
        den = jnp.sum(jnp.abs(f) * jnp.abs(e), axis=axes)
        out["validation_err_hhabs"] = jnp.sqrt(num / den)
    return out


def read_hipft_history(path: str | Path) -> dict[str, np.ndarray]:
    """Read a HipFT ``hipft_history_sol_r*.out`` table.

    Returns:
        Columns by lower-case name (``step`` as int64, ``time`` in hours, and the history names,
        e.g. ``validation_err_hhabs``).

    Raises:
        FileFormatError: when the file is missing or not a HipFT history table.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise FileFormatError(f"cannot read HipFT history file {path}: {err}") from err
    if not lines or "STEP" not in lines[0].split():
        raise FileFormatError(f"{path} is not a HipFT history file (no STEP header)")
    names = [n.lower() for n in lines[0].split()]
    rows = [ln.split() for ln in lines[1:] if ln.strip()]
    if any(len(r) != len(names) for r in rows):
        raise FileFormatError(f"{path}: rows do not match the {len(names)} header columns")
    data = np.array(rows, dtype=np.float64).reshape(len(rows), len(names))
    out = {n: data[:, i] for i, n in enumerate(names)}
    if "step" in out:
        out["step"] = out["step"].astype(np.int64)
    return out
