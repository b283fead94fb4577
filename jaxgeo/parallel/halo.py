"""Halo exchange for a periodic axis split into blocks over a mesh axis (inside ``shard_map``).

A field periodic along one axis (longitude) is split into equal contiguous blocks, block i on
device i of a ring. A stencil of radius h needs the h columns of each neighbour; they are sent
with ``jax.lax.ppermute`` (one send to the right neighbour, one to the left), so that every
block computes on ``[left halo | own columns | right halo]`` exactly what a single device
computes on the periodic whole.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jaxtyping import Array

__all__ = ["crop_halo", "exchange_halo", "global_sum"]


def exchange_halo(x: Array, width: int, axis_name: str, *, axis: int = -1) -> Array:
    """``x`` padded with ``width`` entries of each ring neighbour along ``axis``.

    Call inside ``jax.shard_map`` with ``axis`` split over the mesh axis ``axis_name``. Block i
    gets the last ``width`` entries of block i−1 on its left and the first ``width`` of block
    i+1 on its right (periodic: block 0's left neighbour is the last block). ``width`` must not
    exceed the block length (only nearest neighbours are exchanged).

    Args:
        x: the local block.
        width: halo width (static, >= 0).
        axis_name: the mesh axis the blocks are spread over.
        axis: the array axis that is split.

    Returns:
        The block with ``2 * width`` more entries along ``axis``.
    """
    if width == 0:
        return x
    axis = axis % x.ndim
    n_local = x.shape[axis]
    if width > n_local:
        raise ValueError(
            f"halo width {width} exceeds the local block length {n_local}; use fewer devices"
        )
    n = jax.lax.axis_size(axis_name)
    left_edge = jax.lax.slice_in_dim(x, 0, width, axis=axis)
    right_edge = jax.lax.slice_in_dim(x, n_local - width, n_local, axis=axis)
    if n == 1:
        from_left, from_right = right_edge, left_edge
    else:
        # My right edge is the right neighbour's left halo, and vice versa.
        from_left = jax.lax.ppermute(right_edge, axis_name, [(i, (i + 1) % n) for i in range(n)])
        from_right = jax.lax.ppermute(left_edge, axis_name, [(i, (i - 1) % n) for i in range(n)])
    return jnp.concatenate([from_left, x, from_right], axis=axis)


def crop_halo(x: Array, width: int, *, axis: int = -1) -> Array:
    """Drop ``width`` entries from both ends of ``axis`` (the inverse of the padding)."""
    if width == 0:
        return x
    axis = axis % x.ndim
    return jax.lax.slice_in_dim(x, width, x.shape[axis] - width, axis=axis)


def global_sum(x: Array, axis_name: str, *, axis: int = -1, keepdims: bool = True) -> Array:
    """Sum over ``axis`` of the whole (split) array: local sum, then ``psum`` over the blocks."""
    return jax.lax.psum(jnp.sum(x, axis=axis, keepdims=keepdims), axis_name)
