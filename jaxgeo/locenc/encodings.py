"""Positional encodings of geographic locations (lon, lat in degrees) on the sphere.

Every encoding is a pure function of the coordinates, described by a frozen :class:`Encoding`
value (name and hyperparameters) whose :meth:`Encoding.__call__` maps ``(lon, lat)`` of any
shape to ``(*points, n_features)`` features, in the floating dtype of the inputs.

Families (Rußwurm et al. 2024, ICLR, and the works they compare with):

- ``sh``: all real orthonormal spherical harmonics with degree ``l <= degree`` from
  :func:`jaxgeo.sphere.real_sph_harm` ((degree + 1)² features). NB the PyTorch reference counts
  "legendre_polys" L = degree + 1 (its L = 10 is our degree 9). With ``precision="high"`` (the
  default) float32 inputs are converted to radians and the harmonics evaluated in float64,
  with only the last product (θ factor × φ factor, each rounded once) in float32: ~2e-7 from
  float64 at the same inputs (3e-7 at degree 100), where the float32 evaluation
  (``precision="default"``) is off by ~l·eps·|Y| (8e-5 at degree 100), because θ and φ
  themselves are then only float32 and Y_lm varies by ~l|Y| per radian.
- The "double Fourier sphere" family, multi-scale sinusoids of latitude φ and longitude λ
  (radians) at ``n_frequencies`` scales ``r_s = min_radius · (max_radius/min_radius)^(s/(S−1))``
  (geometric, Mai et al. 2020 "Space2Vec"), angular frequency ``ω_s = 1/r_s``, writing
  ``φ_s = ω_s φ`` and ``λ_s = ω_s λ``:

  ============  ==============================================================  ==========
  name          features per scale                                              per scale
  ============  ==============================================================  ==========
  ``grid``      sin φ_s, cos φ_s, sin λ_s, cos λ_s (Space2Vec-grid)             4
  ``theory``    sin, cos of ω_s ⟨(λ, φ), a_j⟩ for 3 unit vectors a_j 120° apart  6
  ``spherec``   sin φ_s, cos φ_s cos λ_s, cos φ_s sin λ_s (Sphere2Vec-sphereC)  3
  ``spherec+``  sphereC ∪ grid: + cos φ_s, sin λ_s, cos λ_s                     6
  ``spherem``   sin φ_s, cos φ_s cos λ, cos φ cos λ_s, cos φ_s sin λ,           5
                cos φ sin λ_s (Sphere2Vec-sphereM)
  ``spherem+``  sphereM ∪ grid: + cos φ_s, sin λ_s, cos λ_s                     8
  ============  ==============================================================  ==========

- Single-scale ones: ``wrap`` (sin λ, cos λ, sin φ, cos φ; Mac Aodha et al. 2019), ``direct``
  (λ/π, φ/(π/2), both in [−1, 1]) and ``cartesian3d`` (the unit vector x, y, z).
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jaxgeo.config import option
from jaxgeo.errors import ConfigError, InputError
from jaxgeo.sphere import real_sph_harm

__all__ = ["ENCODINGS", "PRECISIONS", "Encoding", "EncodingName", "lonlat_to_theta_phi"]

EncodingName = Literal[
    "sh",
    "wrap",
    "grid",
    "theory",
    "spherec",
    "spherec+",
    "spherem",
    "spherem+",
    "direct",
    "cartesian3d",
]
ENCODINGS: tuple[str, ...] = typing.get_args(EncodingName)
Precision = Literal["high", "default"]
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)
_MULTISCALE_WIDTH = {
    "grid": 4,
    "theory": 6,
    "spherec": 3,
    "spherec+": 6,
    "spherem": 5,
    "spherem+": 8,
}
_FIXED_WIDTH = {"wrap": 4, "direct": 2, "cartesian3d": 3}


def lonlat_to_theta_phi(
    lon: Float[Array, "*p"], lat: Float[Array, "*p"]
) -> tuple[Float[Array, "*p"], Float[Array, "*p"]]:
    """Degrees east/north -> (colatitude θ, longitude φ) in radians, the `jaxgeo.sphere` convention."""
    return jnp.deg2rad(90.0 - lat), jnp.deg2rad(lon)


@dataclasses.dataclass(frozen=True)
class Encoding:
    """A positional encoding and its hyperparameters (a value: hashable, usable as a static arg).

    Attributes:
        name: one of :data:`ENCODINGS`.
        degree: highest spherical-harmonic degree for ``sh``.
        n_frequencies: number of scales S for the multi-scale (double Fourier sphere) family.
        min_radius: smallest scale r_min in radians (finest wavelength / 2π).
        max_radius: largest scale r_max in radians; 1 makes the coarsest sphereC scale exactly
            the 3D unit vector.
        precision: ``sh`` only: ``"high"`` evaluates float32 inputs in float64 (degrees to
            radians included), the last product in float32, ~3e-7 accurate to degree 200
            (needs ``jax_enable_x64``); ``"default"`` evaluates in the inputs' dtype (8e-5 at
            degree 100 in float32, ~1.3-2x faster on CPU). No effect on float64 inputs.
    """

    name: EncodingName = option("sh", doc="positional encoding", choices=ENCODINGS)
    degree: int = option(10, doc="highest spherical-harmonic degree (sh)", ge=0, le=400)
    n_frequencies: int = option(16, doc="number of scales (multi-scale encodings)", ge=1)
    min_radius: float = option(0.01, doc="smallest scale", unit="rad", gt=0.0)
    max_radius: float = option(1.0, doc="largest scale", unit="rad", gt=0.0)
    precision: Precision = option(
        "high", doc="sh evaluation: float64 inside (high) or the input dtype", choices=PRECISIONS
    )

    def __post_init__(self) -> None:
        if self.name not in ENCODINGS:
            raise ConfigError(f"encoding must be one of {', '.join(ENCODINGS)}, got {self.name!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"encoding precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        if self.max_radius < self.min_radius:
            raise ConfigError(
                f"encoding max_radius ({self.max_radius}) must be >= min_radius ({self.min_radius})"
            )
        if self.degree < 0 or self.n_frequencies < 1:
            raise ConfigError(
                f"encoding needs degree >= 0 and n_frequencies >= 1, got {self.degree}, "
                f"{self.n_frequencies}"
            )

    @property
    def n_features(self) -> int:
        """Length of the feature vector."""
        if self.name == "sh":
            return (self.degree + 1) ** 2
        if self.name in _FIXED_WIDTH:
            return _FIXED_WIDTH[self.name]
        return _MULTISCALE_WIDTH[self.name] * self.n_frequencies

    def frequencies(self) -> np.ndarray:
        """Angular frequencies ω_s = 1/r_s (NumPy float64), finest scale first."""
        s = self.n_frequencies
        if s == 1:
            radii = np.array([self.min_radius])
        else:
            ratio = self.max_radius / self.min_radius
            radii = self.min_radius * ratio ** (np.arange(s) / (s - 1))
        return 1.0 / radii

    def __call__(
        self, lon: Float[ArrayLike, "*points"], lat: Float[ArrayLike, "*points"]
    ) -> Float[Array, "*points f"]:
        """Encode longitudes and latitudes (degrees).

        Args:
            lon: longitude in degrees east (any range; periodic encodings wrap it).
            lat: latitude in degrees north, in [−90, 90]; broadcast against ``lon``.

        Returns:
            Features of shape ``(*points, n_features)`` in the inputs' float dtype.
        """
        lon_a, lat_a = _as_float_pair(lon, lat)
        return _ENCODERS[self.name](self, lon_a, lat_a)


def _as_float_pair(lon: ArrayLike, lat: ArrayLike) -> tuple[Array, Array]:
    lon_a, lat_a = jnp.asarray(lon), jnp.asarray(lat)
    floats = [jnp.issubdtype(a.dtype, jnp.floating) for a in (lon_a, lat_a)]
    if all(floats) and lon_a.dtype != lat_a.dtype:
        raise InputError(f"lon and lat must share a float dtype, got {lon_a.dtype}, {lat_a.dtype}")
    dtype = lon_a.dtype if floats[0] else lat_a.dtype if floats[1] else jnp.result_type(float)
    return tuple(jnp.broadcast_arrays(lon_a.astype(dtype), lat_a.astype(dtype)))  # type: ignore[return-value]


def _scaled(enc: Encoding, x: Array) -> Array:
    """x ω_s for every scale: (*p) -> (*p, S)."""
    return x[..., None] * jnp.asarray(enc.frequencies(), x.dtype)


def _flatten_scales(parts: list[Array]) -> Array:
    # (*p, S) each -> (*p, S * k), the k features of one scale kept together.
    stacked = jnp.stack(parts, axis=-1)
    return stacked.reshape(*stacked.shape[:-2], -1)


def _sh(enc: Encoding, lon: Array, lat: Array) -> Array:
    dtype = lon.dtype
    if enc.precision == "high" and jnp.finfo(dtype).bits < 64:
        if not jax.config.read("jax_enable_x64"):
            raise ConfigError(
                "Encoding('sh', precision='high') evaluates float32 input in float64, which needs "
                "jax.config.update('jax_enable_x64', True); or pass precision='default'"
            )
        # The radians must be formed in float64 too: rounding θ, φ to float32 alone costs
        # ~l·eps·|Y| (θ's float32 ulp times dY/dθ ~ l Y), whatever the harmonics are computed in.
        theta, phi = lonlat_to_theta_phi(lon.astype(jnp.float64), lat.astype(jnp.float64))
        return real_sph_harm(enc.degree, theta, phi, dtype=dtype)
    theta, phi = lonlat_to_theta_phi(lon, lat)
    return real_sph_harm(enc.degree, theta, phi)


def _wrap(enc: Encoding, lon: Array, lat: Array) -> Array:
    lam, phi = jnp.deg2rad(lon), jnp.deg2rad(lat)
    return jnp.stack([jnp.sin(lam), jnp.cos(lam), jnp.sin(phi), jnp.cos(phi)], axis=-1)


def _direct(enc: Encoding, lon: Array, lat: Array) -> Array:
    # Longitudes wrapped to [-180, 180) so that the feature range is fixed.
    lon_w = jnp.mod(lon + 180.0, 360.0) - 180.0
    return jnp.stack([lon_w / 180.0, lat / 90.0], axis=-1)


def _cartesian3d(enc: Encoding, lon: Array, lat: Array) -> Array:
    lam, phi = jnp.deg2rad(lon), jnp.deg2rad(lat)
    cp = jnp.cos(phi)
    return jnp.stack([cp * jnp.cos(lam), cp * jnp.sin(lam), jnp.sin(phi)], axis=-1)


def _grid(enc: Encoding, lon: Array, lat: Array) -> Array:
    ls, ps = _scaled(enc, jnp.deg2rad(lon)), _scaled(enc, jnp.deg2rad(lat))
    return _flatten_scales([jnp.sin(ps), jnp.cos(ps), jnp.sin(ls), jnp.cos(ls)])


# Space2Vec-theory: three unit vectors 0°, 120°, 240° apart in the (λ, φ) plane.
_THEORY_DIRS = np.array(
    [[math.cos(a), math.sin(a)] for a in (0.0, 2 * math.pi / 3, 4 * math.pi / 3)]
)


def _theory(enc: Encoding, lon: Array, lat: Array) -> Array:
    lam, phi = jnp.deg2rad(lon), jnp.deg2rad(lat)
    parts = []
    for ax, ay in _THEORY_DIRS:
        proj = _scaled(enc, lam * float(ax) + phi * float(ay))
        parts += [jnp.sin(proj), jnp.cos(proj)]
    return _flatten_scales(parts)


def _spherec_parts(enc: Encoding, lon: Array, lat: Array) -> tuple[list[Array], Array, Array]:
    ls, ps = _scaled(enc, jnp.deg2rad(lon)), _scaled(enc, jnp.deg2rad(lat))
    cps = jnp.cos(ps)
    return [jnp.sin(ps), cps * jnp.cos(ls), cps * jnp.sin(ls)], ls, ps


def _spherec(enc: Encoding, lon: Array, lat: Array) -> Array:
    return _flatten_scales(_spherec_parts(enc, lon, lat)[0])


def _spherec_plus(enc: Encoding, lon: Array, lat: Array) -> Array:
    parts, ls, ps = _spherec_parts(enc, lon, lat)
    return _flatten_scales(parts + [jnp.cos(ps), jnp.sin(ls), jnp.cos(ls)])


def _spherem_parts(enc: Encoding, lon: Array, lat: Array) -> tuple[list[Array], Array, Array]:
    lam, phi = jnp.deg2rad(lon), jnp.deg2rad(lat)
    ls, ps = _scaled(enc, lam), _scaled(enc, phi)
    # Multi-scale in one angle at a time, the other at its true (single) scale.
    cps, cp = jnp.cos(ps), jnp.cos(phi)[..., None]
    cl, sl = jnp.cos(lam)[..., None], jnp.sin(lam)[..., None]
    parts = [jnp.sin(ps), cps * cl, cp * jnp.cos(ls), cps * sl, cp * jnp.sin(ls)]
    return parts, ls, ps


def _spherem(enc: Encoding, lon: Array, lat: Array) -> Array:
    return _flatten_scales(_spherem_parts(enc, lon, lat)[0])


def _spherem_plus(enc: Encoding, lon: Array, lat: Array) -> Array:
    parts, ls, ps = _spherem_parts(enc, lon, lat)
    return _flatten_scales(parts + [jnp.cos(ps), jnp.sin(ls), jnp.cos(ls)])


_ENCODERS = {
    "sh": _sh,
    "wrap": _wrap,
    "grid": _grid,
    "theory": _theory,
    "spherec": _spherec,
    "spherec+": _spherec_plus,
    "spherem": _spherem,
    "spherem+": _spherem_plus,
    "direct": _direct,
    "cartesian3d": _cartesian3d,
}
