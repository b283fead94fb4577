"""Conditions derived from a heightmap, at the latent grid's resolution.

EarthCrafter conditions its structure model on a depth-like signal and on semantics. Their
2.5-D counterparts here:

- the *coarse heightmap* (:func:`coarse_heightmap`): block means over ``factor × factor``
  cells, the depth-like condition;
- the *class map* (:func:`class_map`): each block's mean slope binned into relief classes
  (thresholds from the training region, :func:`fit_classes`), and a sea class where the
  block's mean elevation is below sea level (topo-bathymetry), the semantic condition.

All functions are pure and work on any leading batch axes.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float, Int

__all__ = ["ClassSpec", "class_map", "coarse_heightmap", "fit_classes", "one_hot", "slope"]


def coarse_heightmap(z: Float[ArrayLike, "*b h w"], factor: int) -> Float[Array, "*b hc wc"]:
    """Block means over ``factor × factor`` cells (``h``, ``w`` multiples of ``factor``)."""
    z = jnp.asarray(z)
    *lead, h, w = z.shape
    blocks = z.reshape(*lead, h // factor, factor, w // factor, factor)
    return blocks.mean(axis=(-3, -1))


def slope(z: Float[ArrayLike, "*b h w"]) -> Float[Array, "*b h w"]:
    """Gradient magnitude in elevation units per cell (central differences inside, one-sided
    at the edges, as ``numpy.gradient``)."""
    z = jnp.asarray(z)
    gy, gx = jnp.gradient(z, axis=(-2, -1))
    return jnp.sqrt(gx * gx + gy * gy)


@dataclasses.dataclass(frozen=True)
class ClassSpec:
    """How a class map is made.

    Attributes:
        slope_edges: Increasing block-mean slope thresholds in m per cell; ``len + 1`` relief
            classes (0: gentlest).
        factor: Block size in cells.
        sea: Whether the sea class (block mean elevation below 0 m) is used.
    """

    slope_edges: tuple[float, ...]
    factor: int
    sea: bool = False

    @property
    def n_classes(self) -> int:
        """Relief classes plus the sea class (always counted, so that land-only and
        topo-bathymetric tiles share one layout)."""
        return len(self.slope_edges) + 2


def class_map(z_m: Float[ArrayLike, "*b h w"], spec: ClassSpec) -> Int[Array, "*b hc wc"]:
    """Class of every ``factor``-block: relief class from its mean slope, or the sea class
    (``n_classes - 1``) where ``spec.sea`` and its mean elevation is below 0 m."""
    z_m = jnp.asarray(z_m)
    s = coarse_heightmap(slope(z_m), spec.factor)
    edges = jnp.asarray(spec.slope_edges, z_m.dtype)
    cls = jnp.searchsorted(edges, s, side="right").astype(jnp.int32)
    if spec.sea:
        cls = jnp.where(coarse_heightmap(z_m, spec.factor) < 0.0, spec.n_classes - 1, cls)
    return cls


def one_hot(cls: Int[ArrayLike, "*b hc wc"], n: int, dtype: jnp.dtype = jnp.float32) -> Array:
    """``(*b, hc, wc, n)`` one-hot encoding."""
    return jax.nn.one_hot(jnp.asarray(cls), n, dtype=dtype)


def fit_classes(
    tile_m: np.ndarray, factor: int, *, n_relief: int = 3, sea: bool | None = None
) -> ClassSpec:
    """Relief thresholds at the quantiles of the block-mean slope of ``tile_m`` (so the relief
    classes are about equally frequent on land there).

    Args:
        tile_m: Elevation (metres) of the training region.
        factor: Block size in cells.
        n_relief: Number of relief classes.
        sea: Use the sea class; default: when part of ``tile_m`` is below 0 m.
    """
    tile_m = np.asarray(tile_m, np.float64)
    h, w = (tile_m.shape[0] // factor) * factor, (tile_m.shape[1] // factor) * factor
    z = tile_m[:h, :w]
    s = np.asarray(coarse_heightmap(slope(jnp.asarray(z)), factor))
    land = np.asarray(coarse_heightmap(jnp.asarray(z), factor)) >= 0.0
    values = s[land] if land.any() else s.ravel()
    qs = np.quantile(values, np.arange(1, n_relief) / n_relief)
    use_sea = bool((tile_m < 0).any()) if sea is None else sea
    return ClassSpec(tuple(float(q) for q in qs), factor, use_sea)
