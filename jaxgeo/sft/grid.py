"""HipFT-compatible θ–φ grid of the flux-transport kernels.

The grid reproduces the mesh of HipFT's ``set_mesh`` and ``load_initial_condition`` for a
layout that keeps only the *unique* longitudes (HipFT stores a two-point periodic overlap;
here columns are periodic and kernels use ``jnp.roll``).

Layout
------
``br`` has shape ``(..., n_theta, n_phi)``. Row 0 is the north pole (θ = 0), row -1 the south
pole (θ = π); the pole rows are polar-cap control volumes holding one value repeated across φ.
Column ``c`` sits at ``phi[c]``; ``phi`` is ascending in ``[phi[0], phi[0] + 2π)``.

Metric names (NumPy float64 arrays, cached; HipFT name in brackets, HipFT index j/k is
1-based, ours is 0-based)
---------------------------------------------------------------------------------------
Main θ points, shape ``(n_theta,)``:

- ``theta`` [t], ``lat_deg`` (90° − θ, north positive), ``sin_theta`` [st] (exactly 0 at both
  poles), ``inv_sin_theta`` [st_i] (0 at the poles), ``cos_theta`` (true cosine; HipFT's ct
  sets +1 at both poles but only ever multiplies it by st = 0 there).
- ``dtheta`` [dt]: control-volume width θ_{j+½} − θ_{j−½}; at the pole rows it is the full
  first/last spacing (HipFT's ghost half points), ``inv_dtheta`` [dt_i].

θ faces between main rows ``j`` and ``j+1``, shape ``(n_theta - 1,)`` (where v_θ lives):

- ``theta_face`` [th(2:ntm)], ``dtheta_face`` [dth(2:ntm)] = θ_{j+1} − θ_j,
  ``inv_dtheta_face`` [dth_i], ``sin_theta_face`` [sth], ``inv_sin_theta_face`` [sth_i],
  ``cos_theta_face`` [cth].

HipFT's full θ half mesh with its two ghost faces beyond the poles, shape ``(n_theta + 1,)``:
``theta_half`` [th], ``dtheta_half`` [dth], ``sin_theta_half`` [sth = sin|th|],
``cos_theta_half`` [cth] (index ``j`` is the face *above* main row ``j``).

φ, shape ``(n_phi,)``:

- ``phi``, ``lon_deg``.
- ``phi_face`` [ph(c+2)]: face between columns ``c`` and ``c+1`` (periodic; the last face is
  between column ``n_phi-1`` and column 0 + 2π), where v_φ lives.
- ``dphi_face`` [dph(c+2)] = φ_{c+1} − φ_c (periodic), ``inv_dphi_face`` [dph_i].
- ``dphi`` [dp(c+1)]: control-volume width φ_{c+½} − φ_{c−½} (sums to 2π), ``inv_dphi`` [dp_i].

Areas, shape ``(n_theta, n_phi)``, steradians on the unit sphere:

- ``cell_area``: HipFT's flux-integral weights (``analysis_step``, ``get_flux``), the measure
  that HipFT's diffusion and advection operators conserve exactly:
  ``sin θ_j · dθ_j · dφ_c`` for interior rows and the polar cap
  ``¼ sin(θ_{½}) · Δθ · dφ_c`` for the pole rows (θ_{½} the first face, Δθ the first spacing).
  Its total is 4π + O(Δθ²) (HipFT's quadrature is second order, e.g. 4π·(1 + 1.3e-5) for
  180 rows), not 4π to round-off.
- ``cell_area_exact``: exact spherical areas of the same control volumes
  (``(cos θ_{j−½} − cos θ_{j+½}) · dφ_c`` with the caps bounded by θ = 0 and π); sums to 4π
  to round-off.
- ``row_area`` (n_theta,): ``cell_area`` summed over φ (HipFT's per-row weight × 2π).

Periodicity: the φ period is exactly 2π. HipFT keeps the file's end-point value in a few
seam metrics; for maps with float32 scales (end point 2π + 1.7e-7) that moves HipFT's areas
and seam spacings by ~4e-8 relative, which is below float32 map precision.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jaxgeo.errors import InputError

__all__ = [
    "SftGrid",
    "append_periodic_endpoint",
    "drop_periodic_endpoint",
    "impose_pole_average",
]

TWO_PI = 2.0 * math.pi
# HipFT's set_mesh tolerance on the θ range (its ``eps``).
_RANGE_TOL = 1e-6


def _readonly(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a, dtype=np.float64)
    a.setflags(write=False)
    return a


@dataclasses.dataclass(frozen=True, eq=False)
class SftGrid:
    """Logically rectangular θ–φ grid with both pole rows and unique periodic longitudes.

    Attributes:
        theta: colatitudes (n_theta,), radians, strictly increasing from 0 to π (both poles).
        phi: unique longitudes (n_phi,), radians, strictly increasing, spanning less than 2π.

    The grid is a static value: hashable and comparable by content, so it can be closed over
    by kernel factories or passed as a static argument to ``jax.jit``. All metrics are NumPy
    arrays computed once (see the module docstring for their names and HipFT equivalents).
    """

    theta: np.ndarray
    phi: np.ndarray

    def __post_init__(self) -> None:
        theta = np.asarray(self.theta, dtype=np.float64)
        phi = np.asarray(self.phi, dtype=np.float64)
        if theta.ndim != 1 or theta.size < 3:
            raise InputError(
                f"grid theta must be a 1-D array of at least 3 colatitudes, got shape {theta.shape}"
            )
        if phi.ndim != 1 or phi.size < 3:
            raise InputError(
                f"grid phi must be a 1-D array of at least 3 unique longitudes, got shape {phi.shape}"
            )
        if not (np.all(np.isfinite(theta)) and np.all(np.isfinite(phi))):
            raise InputError("grid theta and phi must be finite")
        if np.any(np.diff(theta) <= 0.0):
            raise InputError("grid theta must be strictly increasing (north pole first)")
        if abs(theta[0]) > _RANGE_TOL or abs(theta[-1] - math.pi) > _RANGE_TOL:
            raise InputError(
                "grid theta must run from 0 to pi (both poles included), "
                f"got [{theta[0]!r}, {theta[-1]!r}]"
            )
        if np.any(np.diff(phi) <= 0.0):
            raise InputError("grid phi must be strictly increasing")
        if phi[-1] - phi[0] >= TWO_PI - 1e-12:
            raise InputError(
                "grid phi must hold unique longitudes spanning less than 2*pi "
                f"(drop the periodic end point), got span {phi[-1] - phi[0]!r}"
            )
        object.__setattr__(self, "theta", _readonly(theta))
        object.__setattr__(self, "phi", _readonly(phi))

    # ------------------------------------------------------------------ construction
    @classmethod
    def uniform(cls, n_theta: int, n_phi: int) -> SftGrid:
        """Uniform grid as HipFT builds it when no map is given.

        Args:
            n_theta: colatitude points, both poles included (HipFT's ``res_nt``).
            n_phi: UNIQUE longitudes (HipFT's ``res_np`` minus the periodic end point; HipFT's
                "360×180" grid has ``n_phi = 359``).

        Returns:
            The grid with θ_j = j·π/(n_theta−1) and φ_c = c·2π/n_phi, computed as HipFT does.
        """
        if int(n_theta) < 3 or int(n_phi) < 3:
            raise InputError(f"grid needs n_theta >= 3 and n_phi >= 3, got {n_theta}, {n_phi}")
        d_theta = math.pi / (int(n_theta) - 1)
        d_phi = TWO_PI / int(n_phi)
        theta = np.arange(int(n_theta), dtype=np.float64) * d_theta
        phi = np.arange(int(n_phi), dtype=np.float64) * d_phi
        return cls(theta=theta, phi=phi)

    @classmethod
    def hipft_uniform(cls, res_nt: int, res_np: int) -> SftGrid:
        """Uniform grid from HipFT's ``res_nt``/``res_np`` (φ count with the end point)."""
        return cls.uniform(int(res_nt), int(res_np) - 1)

    @classmethod
    def from_hipft_scales(cls, phi_with_endpoint: ArrayLike, theta: ArrayLike) -> SftGrid:
        """Grid from the scales of a HipFT/PSI map (``dim1`` = φ, ``dim2`` = θ).

        Args:
            phi_with_endpoint: φ scale including the periodic end point φ_0 + 2π.
            theta: θ scale, both poles included.

        Raises:
            InputError: when the last φ is not the first plus 2π, or the scales are invalid.
        """
        p = np.asarray(phi_with_endpoint, dtype=np.float64)
        if p.ndim != 1 or p.size < 4:
            raise InputError(
                f"HipFT phi scale must be 1-D with the periodic end point, got shape {p.shape}"
            )
        if abs((p[-1] - p[0]) - TWO_PI) > _RANGE_TOL:
            raise InputError(
                "HipFT phi scale must end with the periodic end point phi[0] + 2*pi, "
                f"got phi[0] = {p[0]!r}, phi[-1] = {p[-1]!r}"
            )
        return cls(theta=np.asarray(theta, dtype=np.float64), phi=p[:-1])

    @classmethod
    def from_store_coords(cls, lat_deg: ArrayLike, lon_deg: ArrayLike) -> SftGrid:
        """Grid of a run store's ``lat`` (ascending, both poles) and ``lon`` (degrees east)."""
        lat = np.asarray(lat_deg, dtype=np.float64)
        return cls(
            theta=np.radians(90.0 - lat[::-1]),
            phi=np.radians(np.asarray(lon_deg, dtype=np.float64)),
        )

    def hipft_phi(self) -> np.ndarray:
        """φ with the periodic end point appended, for writing HipFT/PSI maps."""
        return np.append(self.phi, self.phi[0] + TWO_PI)

    # ------------------------------------------------------------------ identity
    @functools.cached_property
    def _key(self) -> tuple[bytes, bytes]:
        return (self.theta.tobytes(), self.phi.tobytes())

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SftGrid):
            return NotImplemented
        return self._key == other._key

    def __repr__(self) -> str:
        return f"SftGrid(n_theta={self.n_theta}, n_phi={self.n_phi})"

    @property
    def n_theta(self) -> int:
        return int(self.theta.size)

    @property
    def n_phi(self) -> int:
        return int(self.phi.size)

    @property
    def shape(self) -> tuple[int, int]:
        """Field shape ``(n_theta, n_phi)``."""
        return (self.n_theta, self.n_phi)

    # ------------------------------------------------------------------ θ half mesh
    @functools.cached_property
    def theta_half(self) -> np.ndarray:
        """HipFT's ``th`` (n_theta+1,): faces between rows plus one ghost face beyond each pole."""
        t = self.theta
        inner = 0.5 * (t[1:] + t[:-1])
        dth = t[1:] - t[:-1]
        first = inner[0] - dth[0]
        last = inner[-1] + dth[-1]
        return _readonly(np.concatenate([[first], inner, [last]]))

    @functools.cached_property
    def dtheta_half(self) -> np.ndarray:
        """HipFT's ``dth`` (n_theta+1,): spacing of main points across each face (ghosts copy)."""
        dth = self.theta[1:] - self.theta[:-1]
        return _readonly(np.concatenate([[dth[0]], dth, [dth[-1]]]))

    @functools.cached_property
    def sin_theta_half(self) -> np.ndarray:
        """HipFT's ``sth`` = sin|th| (n_theta+1,)."""
        return _readonly(np.sin(np.abs(self.theta_half)))

    @functools.cached_property
    def cos_theta_half(self) -> np.ndarray:
        """HipFT's ``cth`` = cos(th) (n_theta+1,)."""
        return _readonly(np.cos(self.theta_half))

    @functools.cached_property
    def theta_face(self) -> np.ndarray:
        """θ faces between main rows (n_theta-1,) [th(2:ntm)]."""
        return _readonly(self.theta_half[1:-1])

    @functools.cached_property
    def dtheta_face(self) -> np.ndarray:
        """θ_{j+1} − θ_j at each face (n_theta-1,) [dth(2:ntm)]."""
        return _readonly(self.dtheta_half[1:-1])

    @functools.cached_property
    def inv_dtheta_face(self) -> np.ndarray:
        return _readonly(1.0 / self.dtheta_face)

    @functools.cached_property
    def sin_theta_face(self) -> np.ndarray:
        """sin θ at the faces (n_theta-1,) [sth(2:ntm)]."""
        return _readonly(self.sin_theta_half[1:-1])

    @functools.cached_property
    def inv_sin_theta_face(self) -> np.ndarray:
        return _readonly(1.0 / self.sin_theta_face)

    @functools.cached_property
    def cos_theta_face(self) -> np.ndarray:
        return _readonly(self.cos_theta_half[1:-1])

    # ------------------------------------------------------------------ θ main mesh
    @functools.cached_property
    def dtheta(self) -> np.ndarray:
        """Control-volume widths θ_{j+½} − θ_{j−½} (n_theta,) [dt]; pole rows use ghost faces."""
        return _readonly(np.diff(self.theta_half))

    @functools.cached_property
    def inv_dtheta(self) -> np.ndarray:
        return _readonly(1.0 / self.dtheta)

    @functools.cached_property
    def sin_theta(self) -> np.ndarray:
        """sin θ (n_theta,) [st], exactly 0 at both poles."""
        s = np.sin(self.theta)
        s[0] = 0.0
        s[-1] = 0.0
        return _readonly(s)

    @functools.cached_property
    def inv_sin_theta(self) -> np.ndarray:
        """1/sin θ (n_theta,) [st_i], 0 at both poles."""
        s = np.zeros(self.n_theta)
        s[1:-1] = 1.0 / self.sin_theta[1:-1]
        return _readonly(s)

    @functools.cached_property
    def cos_theta(self) -> np.ndarray:
        """cos θ (n_theta,), exactly ±1 at the poles."""
        c = np.cos(self.theta)
        c[0] = 1.0
        c[-1] = -1.0
        return _readonly(c)

    @functools.cached_property
    def lat_deg(self) -> np.ndarray:
        """Latitude of the main θ points in degrees, north positive (90 … −90)."""
        return _readonly(90.0 - np.degrees(self.theta))

    # ------------------------------------------------------------------ φ mesh
    @functools.cached_property
    def phi_face(self) -> np.ndarray:
        """Face between columns c and c+1 (n_phi,), periodic [ph(c+2)]."""
        nxt = np.append(self.phi[1:], self.phi[0] + TWO_PI)
        return _readonly(0.5 * (self.phi + nxt))

    @functools.cached_property
    def dphi_face(self) -> np.ndarray:
        """φ_{c+1} − φ_c (n_phi,), periodic [dph(c+2)]."""
        nxt = np.append(self.phi[1:], self.phi[0] + TWO_PI)
        return _readonly(nxt - self.phi)

    @functools.cached_property
    def inv_dphi_face(self) -> np.ndarray:
        return _readonly(1.0 / self.dphi_face)

    @functools.cached_property
    def dphi(self) -> np.ndarray:
        """Control-volume widths φ_{c+½} − φ_{c−½} (n_phi,) [dp(c+1)]; they sum to 2π."""
        prev = np.roll(self.phi_face, 1)
        prev[0] -= TWO_PI
        return _readonly(self.phi_face - prev)

    @functools.cached_property
    def inv_dphi(self) -> np.ndarray:
        return _readonly(1.0 / self.dphi)

    @functools.cached_property
    def lon_deg(self) -> np.ndarray:
        """Longitude of the columns in degrees east."""
        return _readonly(np.degrees(self.phi))

    # ------------------------------------------------------------------ areas
    @functools.cached_property
    def pole_cap_weight(self) -> tuple[float, float]:
        """HipFT's polar-cap θ weights ¼ sin(θ_{½}) Δθ for the north and south pole rows."""
        t = self.theta
        north = 0.25 * math.sin(0.5 * (t[0] + t[1])) * (t[1] - t[0])
        south = 0.25 * math.sin(0.5 * (t[-1] + t[-2])) * (t[-1] - t[-2])
        return (north, south)

    @functools.cached_property
    def theta_weight(self) -> np.ndarray:
        """HipFT's per-row θ weight (n_theta,): sin θ dθ inside, the cap weight at the poles."""
        w = self.sin_theta * self.dtheta
        w[0], w[-1] = self.pole_cap_weight
        return _readonly(w)

    @functools.cached_property
    def cell_area(self) -> np.ndarray:
        """HipFT's flux-integral cell areas (n_theta, n_phi), steradians (see module doc)."""
        return _readonly(np.outer(self.theta_weight, self.dphi))

    @functools.cached_property
    def row_area(self) -> np.ndarray:
        """``cell_area`` summed over φ (n_theta,)."""
        return _readonly(self.theta_weight * TWO_PI)

    @functools.cached_property
    def cell_area_exact(self) -> np.ndarray:
        """Exact spherical areas of the control volumes (n_theta, n_phi); sum 4π to round-off."""
        edges = np.concatenate([[0.0], self.theta_face, [math.pi]])
        band = np.cos(edges[:-1]) - np.cos(edges[1:])
        return _readonly(np.outer(band, self.dphi))


def impose_pole_average(
    br: Float[ArrayLike, "*b theta phi"], grid: SftGrid
) -> Float[Array, "*b theta phi"]:
    """Set each pole row to its φ-average (its m = 0 part), weighted by ``dphi`` as HipFT does.

    HipFT's ``load_initial_condition`` sums ``f(pole, k)·dp(k)`` over the unique columns and
    divides by 2π; a loaded map must pass through this so the pole rows are single-valued.

    Args:
        br: field (..., n_theta, n_phi).
        grid: the grid of ``br``.

    Returns:
        ``br`` with rows 0 and -1 replaced by their weighted φ-averages.
    """
    br = jnp.asarray(br)
    w = jnp.asarray(grid.dphi, dtype=br.dtype)
    north = jnp.sum(br[..., 0, :] * w, axis=-1, keepdims=True) * (1.0 / TWO_PI)
    south = jnp.sum(br[..., -1, :] * w, axis=-1, keepdims=True) * (1.0 / TWO_PI)
    br = br.at[..., 0, :].set(jnp.broadcast_to(north, br[..., 0, :].shape))
    return br.at[..., -1, :].set(jnp.broadcast_to(south, br[..., -1, :].shape))


def drop_periodic_endpoint(
    data: Float[ArrayLike, "*b theta phi_p1"],
) -> Float[Array, "*b theta phi"]:
    """Map with HipFT's periodic end-point column -> unique columns.

    As HipFT's loader does, the first column becomes the mean of the first and last (the
    duplicated seam) before the last is dropped.
    """
    data = jnp.asarray(data)
    seam = 0.5 * (data[..., :1] + data[..., -1:])
    return jnp.concatenate([seam, data[..., 1:-1]], axis=-1)


def append_periodic_endpoint(
    br: Float[ArrayLike, "*b theta phi"],
) -> Float[Array, "*b theta phi_p1"]:
    """Unique columns -> map with the periodic end-point column (for writing HipFT maps)."""
    br = jnp.asarray(br)
    return jnp.concatenate([br, br[..., :1]], axis=-1)
