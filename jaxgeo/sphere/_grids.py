"""Grids on the unit sphere with exact-area quadrature weights.

Every grid is a frozen dataclass (a value: hashable, comparable, usable as a static argument)
whose NumPy precomputations are cached. All grids share one interface, :class:`SphereGrid`:

- ``theta`` (n_theta,), ``phi`` (n_phi,): colatitude and longitude of the points, radians;
  a field on the grid has shape ``(..., n_theta, n_phi)`` in that row/column order;
- ``theta_weights`` (n_theta,) and ``phi_weights`` (n_phi,): separable quadrature weights, so
  ``∫ f dΩ ≈ Σ_ij f_ij theta_weights_i phi_weights_j``; ``weights`` is their outer product and
  sums to 4π to round-off.

Grids: :class:`LatLonGrid` (regular cell-centred, as in ML data sets), :class:`PoleGrid` (points
on both poles, possibly non-uniform, with control volumes, HipFT style) and
:class:`GaussLegendreGrid` (Gauss–Legendre in cos θ, exact for band-limited fields).
"""

from __future__ import annotations

import dataclasses
import math
from functools import cached_property
from typing import Protocol, runtime_checkable

import jax.numpy as jnp
import numpy as np
from jax import lax
from jaxtyping import Array, ArrayLike, Float

from jaxgeo.errors import InputError

__all__ = [
    "GaussLegendreGrid",
    "LatLonGrid",
    "PoleGrid",
    "SphereGrid",
    "gauss_legendre_grid",
    "integrate",
]

_TWO_PI = 2.0 * math.pi
# Slack allowed when checking that the end rows of a PoleGrid sit on the poles.
_POLE_TOL = 1e-12


@runtime_checkable
class SphereGrid(Protocol):
    """What :func:`integrate` and :func:`jaxgeo.sphere.project` need from a grid."""

    @property
    def theta(self) -> np.ndarray: ...

    @property
    def phi(self) -> np.ndarray: ...

    @property
    def theta_weights(self) -> np.ndarray: ...

    @property
    def phi_weights(self) -> np.ndarray: ...

    @property
    def shape(self) -> tuple[int, int]: ...


def _frozen(arr: np.ndarray) -> np.ndarray:
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    arr.setflags(write=False)
    return arr


def _check_count(value: object, name: str, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise InputError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise InputError(f"{name} must be >= {minimum}, got {value}")


def _periodic_phi_widths(phi: np.ndarray) -> np.ndarray:
    """Widths of φ control volumes with faces halfway between neighbours (periodic)."""
    right = np.append(phi[1:], phi[0] + _TWO_PI)
    left = np.insert(phi[:-1], 0, phi[-1] - _TWO_PI)
    widths = 0.5 * (right - left)
    # Rescale the round-off so the widths add up to 2π as closely as floats allow.
    return widths * (_TWO_PI / widths.sum())


class _Points(Protocol):
    @property
    def theta(self) -> np.ndarray: ...

    @property
    def phi(self) -> np.ndarray: ...

    @property
    def theta_weights(self) -> np.ndarray: ...

    @property
    def phi_weights(self) -> np.ndarray: ...


class _GridMixin:
    """What every grid derives from its points and separable weights."""

    @property
    def shape(self: _Points) -> tuple[int, int]:
        """(n_theta, n_phi): the trailing shape of a field on this grid."""
        return (len(self.theta), len(self.phi))

    @cached_property
    def weights(self: _Points) -> np.ndarray:
        """Quadrature weights (n_theta, n_phi), sr; they sum to 4π."""
        return _frozen(np.outer(self.theta_weights, self.phi_weights))

    @cached_property
    def lat_deg(self: _Points) -> np.ndarray:
        """Latitude of the rows in degrees north (90 − θ)."""
        return _frozen(90.0 - np.degrees(self.theta))

    @cached_property
    def lon_deg(self: _Points) -> np.ndarray:
        """Longitude of the columns in degrees east."""
        return _frozen(np.degrees(self.phi))


@dataclasses.dataclass(frozen=True)
class LatLonGrid(_GridMixin):
    """Regular cell-centred latitude–longitude grid (the layout of most ML data sets).

    Rows are latitude bands of equal height, ordered from south to north (latitude ascending,
    so θ descending); columns are equal longitude sectors with centres at
    ``(j + ½) 360/n_lon`` degrees east. Weights are the exact cell areas
    ``Δφ (cos θ_top − cos θ_bottom)``.

    Attributes:
        n_lat: number of latitude bands (>= 1).
        n_lon: number of longitude sectors (>= 1).
    """

    n_lat: int
    n_lon: int

    def __post_init__(self) -> None:
        _check_count(self.n_lat, "LatLonGrid.n_lat", 1)
        _check_count(self.n_lon, "LatLonGrid.n_lon", 1)

    @cached_property
    def theta_edges(self) -> np.ndarray:
        """Colatitude of the n_lat + 1 band edges, radians, from π (south) to 0 (north)."""
        edges = math.pi * (1.0 - np.arange(self.n_lat + 1) / self.n_lat)
        edges[0], edges[-1] = math.pi, 0.0
        return _frozen(edges)

    @cached_property
    def theta(self) -> np.ndarray:
        """Colatitude of the band centres, radians (descending)."""
        e = self.theta_edges
        return _frozen(0.5 * (e[:-1] + e[1:]))

    @cached_property
    def phi(self) -> np.ndarray:
        """Longitude of the sector centres, radians."""
        return _frozen(_TWO_PI * (np.arange(self.n_lon) + 0.5) / self.n_lon)

    @cached_property
    def theta_weights(self) -> np.ndarray:
        """cos θ_north_edge − cos θ_south_edge of each band (they sum to 2)."""
        c = np.cos(self.theta_edges)
        return _frozen(c[1:] - c[:-1])

    @cached_property
    def phi_weights(self) -> np.ndarray:
        return _frozen(np.full(self.n_lon, _TWO_PI / self.n_lon))

    @property
    def cell_area(self) -> np.ndarray:
        """Exact cell areas on the unit sphere (n_lat, n_lon), sr."""
        return self.weights


@dataclasses.dataclass(frozen=True, eq=False)
class PoleGrid(_GridMixin):
    """θ–φ grid with points on both poles, possibly non-uniform (HipFT's logical layout).

    θ points run from 0 (north pole) to π (south pole), strictly increasing; φ points are
    periodic over [0, 2π), strictly increasing, without the duplicate end point. Each point owns
    a control volume whose faces lie halfway between neighbouring points; the first and last
    rows own the polar caps from the pole to the first face. Quadrature weights are the exact
    control-volume areas, so constants integrate to 4π to round-off and smooth fields to second
    order in the spacing (on smoothly stretched grids).

    Attributes:
        theta: colatitudes, radians, shape (n_theta,), n_theta >= 2.
        phi: longitudes, radians, shape (n_phi,), n_phi >= 1.
    """

    theta: np.ndarray
    phi: np.ndarray

    def __post_init__(self) -> None:
        theta = np.asarray(self.theta, dtype=np.float64)
        phi = np.asarray(self.phi, dtype=np.float64)
        for name, arr, minimum in (("theta", theta, 2), ("phi", phi, 1)):
            if arr.ndim != 1 or arr.size < minimum:
                raise InputError(
                    f"PoleGrid.{name} must be 1-D with at least {minimum} points, "
                    f"got shape {arr.shape}"
                )
            if not np.all(np.isfinite(arr)):
                raise InputError(f"PoleGrid.{name} must be finite")
            if np.any(np.diff(arr) <= 0):
                i = int(np.argmax(np.diff(arr) <= 0))
                raise InputError(
                    f"PoleGrid.{name} must be strictly increasing, but point {i + 1} "
                    f"({arr[i + 1]!r}) does not exceed point {i} ({arr[i]!r})"
                )
        if abs(theta[0]) > _POLE_TOL:
            raise InputError(f"PoleGrid.theta must start at the north pole 0, got {theta[0]!r}")
        if abs(theta[-1] - math.pi) > _POLE_TOL:
            raise InputError(f"PoleGrid.theta must end at the south pole π, got {theta[-1]!r}")
        theta = theta.copy()
        theta[0], theta[-1] = 0.0, math.pi
        if phi[0] < 0.0 or phi[-1] >= _TWO_PI:
            hint = ""
            if abs(phi[-1] - phi[0] - _TWO_PI) < 1e-9:
                hint = (
                    "; phi looks like it includes the periodic end point: drop it, or use "
                    "PoleGrid.from_periodic(theta, phi)"
                )
            raise InputError(
                f"PoleGrid.phi must lie in [0, 2π), got [{phi[0]!r}, {phi[-1]!r}]{hint}"
            )
        object.__setattr__(self, "theta", _frozen(theta))
        object.__setattr__(self, "phi", _frozen(phi))

    # Value semantics over the array contents (a grid is a value).
    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PoleGrid):
            return NotImplemented
        return np.array_equal(self.theta, other.theta) and np.array_equal(self.phi, other.phi)

    def __hash__(self) -> int:
        return hash((self.theta.tobytes(), self.phi.tobytes()))

    @classmethod
    def uniform(cls, n_theta: int, n_phi: int) -> PoleGrid:
        """Uniform grid: θ_i = iπ/(n_theta − 1) (both poles), φ_j = 2πj/n_phi."""
        _check_count(n_theta, "n_theta", 2)
        _check_count(n_phi, "n_phi", 1)
        theta = np.linspace(0.0, math.pi, n_theta)
        phi = _TWO_PI * np.arange(n_phi) / n_phi
        return cls(theta, phi)

    @classmethod
    def from_periodic(cls, theta: ArrayLike, phi: ArrayLike) -> PoleGrid:
        """Grid from scales that include the periodic end point φ = φ_0 + 2π, as in HipFT/PSI
        maps (``dim2`` = θ, ``dim1`` = φ); the end point is dropped, so a map ``Data`` of shape
        (n_theta, n_phi + 1) matches this grid after ``Data[..., :-1]``.

        Raises:
            InputError: if the last φ is not the first plus 2π.
        """
        phi = np.asarray(phi, dtype=np.float64)
        if phi.ndim != 1 or phi.size < 2 or abs(phi[-1] - phi[0] - _TWO_PI) > 1e-9:
            raise InputError(
                "PoleGrid.from_periodic: phi must end with its periodic copy phi[0] + 2π, "
                f"got first {phi[:1]!r}, last {phi[-1:]!r}"
            )
        return cls(np.asarray(theta, dtype=np.float64), phi[:-1])

    @cached_property
    def theta_faces(self) -> np.ndarray:
        """Control-volume faces in θ (n_theta + 1,): 0, midpoints, π."""
        t = self.theta
        return _frozen(np.concatenate([[0.0], 0.5 * (t[:-1] + t[1:]), [math.pi]]))

    @cached_property
    def theta_weights(self) -> np.ndarray:
        """cos θ_face_north − cos θ_face_south per row (polar caps on the end rows); sum 2."""
        c = np.cos(self.theta_faces)
        return _frozen(c[:-1] - c[1:])

    @cached_property
    def phi_weights(self) -> np.ndarray:
        """φ extent of each control volume, faces halfway between points (periodic); sum 2π."""
        return _frozen(_periodic_phi_widths(self.phi))

    @property
    def cell_area(self) -> np.ndarray:
        """Control-volume areas on the unit sphere (n_theta, n_phi), sr."""
        return self.weights


@dataclasses.dataclass(frozen=True)
class GaussLegendreGrid(_GridMixin):
    """Gauss–Legendre nodes in cos θ times a uniform φ grid.

    With n_lat nodes and n_lon points, ``∫ f dΩ`` is exact for f a product of a polynomial of
    degree <= 2 n_lat − 1 in cos θ and a trigonometric polynomial of degree < n_lon in φ; in
    particular the projection of a field band-limited to degree L_f onto degree L is exact when
    ``n_lat >= (L + L_f)/2 + 1`` and ``n_lon > L + L_f``.

    Attributes:
        n_lat: number of Gauss nodes (>= 1). Rows run from north to south (θ ascending).
        n_lon: number of longitudes φ_j = 2πj/n_lon (>= 1).
    """

    n_lat: int
    n_lon: int

    def __post_init__(self) -> None:
        _check_count(self.n_lat, "GaussLegendreGrid.n_lat", 1)
        _check_count(self.n_lon, "GaussLegendreGrid.n_lon", 1)

    @cached_property
    def _leggauss(self) -> tuple[np.ndarray, np.ndarray]:
        x, w = np.polynomial.legendre.leggauss(self.n_lat)
        # Descending cos θ = ascending θ (north to south).
        return _frozen(x[::-1]), _frozen(w[::-1])

    @property
    def nodes(self) -> np.ndarray:
        """Gauss–Legendre nodes x_i = cos θ_i in (−1, 1), descending."""
        return self._leggauss[0]

    @property
    def node_weights(self) -> np.ndarray:
        """Gauss–Legendre weights of the nodes (sum 2)."""
        return self._leggauss[1]

    @cached_property
    def theta(self) -> np.ndarray:
        return _frozen(np.arccos(self.nodes))

    @cached_property
    def phi(self) -> np.ndarray:
        return _frozen(_TWO_PI * np.arange(self.n_lon) / self.n_lon)

    @property
    def theta_weights(self) -> np.ndarray:
        return self.node_weights

    @cached_property
    def phi_weights(self) -> np.ndarray:
        return _frozen(np.full(self.n_lon, _TWO_PI / self.n_lon))


def gauss_legendre_grid(n: int, n_lon: int | None = None) -> GaussLegendreGrid:
    """Gauss–Legendre grid with ``n`` nodes in cos θ (``numpy.polynomial.legendre.leggauss``).

    Args:
        n: number of nodes; exact for spectral quadrature of degree up to 2n − 1 in cos θ.
        n_lon: number of longitudes; default 2n, which makes the grid exact for projecting
            fields band-limited to degree n − 1 onto degree n − 1.

    Returns:
        The grid; ``grid.nodes`` and ``grid.node_weights`` are the 1-D rule.
    """
    return GaussLegendreGrid(n, 2 * n if n_lon is None else n_lon)


def integrate(
    field: Float[ArrayLike, "*batch n_theta n_phi"], grid: SphereGrid
) -> Float[Array, "*batch"]:
    """Quadrature ``∫ f dΩ`` over the unit sphere of a field on ``grid``.

    Args:
        field: values at the grid points, shape (..., n_theta, n_phi).
        grid: any :class:`SphereGrid`.

    Returns:
        The integrals, shape (...), in the dtype of ``field``.

    Raises:
        InputError: if the trailing shape of ``field`` is not ``grid.shape``.
    """
    field = jnp.asarray(field)
    if tuple(field.shape[-2:]) != tuple(grid.shape):
        raise InputError(
            f"field must end with the grid shape {tuple(grid.shape)}, got {field.shape}"
        )
    if not jnp.issubdtype(field.dtype, jnp.floating):
        field = field.astype(jnp.result_type(float))
    w_t = jnp.asarray(grid.theta_weights, field.dtype)
    w_p = jnp.asarray(grid.phi_weights, field.dtype)
    return jnp.einsum("...ij,i,j->...", field, w_t, w_p, precision=lax.Precision.HIGHEST)
