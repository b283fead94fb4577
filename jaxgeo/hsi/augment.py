"""Spatial augmentations of hyperspectral patches, pure JAX (no colour jitter on spectra).

SpectralEarth keeps spectra as they are measured: only the geometry changes (random resized
crop, flips, rotations by 90 degrees); every band of a pixel moves together.

A crop resized bilinearly is separable: ``out = Wy @ image @ Wx^T`` with interpolation
matrices of two non-zeros per row, so one augmentation is two small matrix products (cheap to
compile and to run, unlike a gather per output pixel). Flips reverse the rows of ``Wy`` or
``Wx``; a random transpose together with the two random flips draws uniformly from the eight
symmetries of the square (the dihedral group D4: the four rotations by 90° and their mirror
images).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float

__all__ = ["augment_batch", "crop_matrix", "random_resized_crop"]


def crop_matrix(start: Array, length: Array, n_in: int, n_out: int, dtype) -> Array:
    """``(n_out, n_in)`` bilinear interpolation matrix sampling ``[start, start + length)``.

    Output pixel ``o`` samples the input at ``start + (o + 0.5) * length / n_out - 0.5``
    (pixel centres map onto pixel centres), clamped to the image.
    """
    pos = start + (jnp.arange(n_out, dtype=jnp.float32) + 0.5) * (length / n_out) - 0.5
    pos = jnp.clip(pos, 0.0, float(n_in - 1))
    lo = jnp.floor(pos)
    frac = pos - lo
    hi = jnp.minimum(lo + 1.0, float(n_in - 1))
    grid = jnp.arange(n_in, dtype=jnp.float32)[None, :]
    w = jnp.where(grid == lo[:, None], 1.0 - frac[:, None], 0.0)
    w = w + jnp.where(grid == hi[:, None], frac[:, None], 0.0)
    return w.astype(dtype)


def _crop_box(
    key: jax.Array, h: int, w: int, scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[Array, Array, Array, Array]:
    k_area, k_ratio, k_y, k_x = jax.random.split(key, 4)
    area = jax.random.uniform(k_area, (), jnp.float32, scale[0], scale[1]) * (h * w)
    r = jnp.exp(
        jax.random.uniform(k_ratio, (), jnp.float32, math.log(ratio[0]), math.log(ratio[1]))
    )
    # Clipped to the image (torchvision retries instead; clipping is branch-free under jit).
    ch = jnp.clip(jnp.sqrt(area / r), 1.0, float(h))
    cw = jnp.clip(jnp.sqrt(area * r), 1.0, float(w))
    y0 = jax.random.uniform(k_y, (), jnp.float32) * (h - ch)
    x0 = jax.random.uniform(k_x, (), jnp.float32) * (w - cw)
    return y0, x0, ch, cw


def random_resized_crop(
    key: jax.Array,
    x: Float[Array, "h w c"],
    size: int,
    scale: tuple[float, float] = (0.2, 1.0),
    ratio: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0),
    *,
    flips: bool = True,
) -> Float[Array, "size size c"]:
    """A random crop of area fraction in ``scale`` and aspect ratio in ``ratio`` (log-uniform),
    resampled bilinearly to ``size x size``; with ``flips``, then a random symmetry of the
    square (flips and rotations by 90°)."""
    h, w = x.shape[:2]
    k_box, k_h, k_v, k_t = jax.random.split(key, 4)
    y0, x0, ch, cw = _crop_box(k_box, h, w, scale, ratio)
    wy = crop_matrix(y0, ch, h, size, x.dtype)
    wx = crop_matrix(x0, cw, w, size, x.dtype)
    if flips:
        wy = jnp.where(jax.random.bernoulli(k_v), wy[::-1], wy)
        wx = jnp.where(jax.random.bernoulli(k_h), wx[::-1], wx)
    out = jnp.einsum("oh,hwc,pw->opc", wy, x, wx)
    if flips:
        out = jnp.where(jax.random.bernoulli(k_t), out.transpose(1, 0, 2), out)
    return out


def augment_batch(
    key: jax.Array,
    x: Float[Array, "b h w c"],
    size: int,
    scale: tuple[float, float] = (0.2, 1.0),
) -> Float[Array, "b size size c"]:
    """Random resized crop to ``size``, flips and rotation, independently per sample."""
    keys = jax.random.split(key, x.shape[0])
    return jax.vmap(lambda k, img: random_resized_crop(k, img, size, scale))(keys, x)
