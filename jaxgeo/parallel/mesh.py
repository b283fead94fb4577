"""Device meshes for a realization axis, and padding a batch to fill them.

Ensembles are ``jax.vmap`` over a leading realization axis; placing them on devices is a
``NamedSharding`` of that axis over a 1-D mesh. A batch whose size is not a multiple of the
device count is padded (with copies of its last member, so padded members compute finite
values at the same cost) and the padding is dropped again on output.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeVar

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from jaxgeo.errors import InputError

__all__ = [
    "REALIZATION_AXIS",
    "mesh_for",
    "pad_leading",
    "padded_size",
    "select_devices",
    "shard_leading",
    "unpad_leading",
]

REALIZATION_AXIS = "r"
"""Name of the mesh axis a realization batch is sharded over."""

T = TypeVar("T")


def select_devices(n: int | None = None, devices: Sequence[Any] | None = None) -> list[Any]:
    """The first ``n`` of ``devices`` (default: all of ``jax.devices()``, every process's).

    Raises:
        InputError: ``n`` is below 1 or above the number of devices available.
    """
    pool = list(jax.devices() if devices is None else devices)
    if n is None:
        return pool
    if int(n) < 1 or int(n) > len(pool):
        raise InputError(f"--devices must be between 1 and {len(pool)} (devices present), got {n}")
    return pool[: int(n)]


def mesh_for(
    n_realizations: int,
    devices: Sequence[Any] | None = None,
    *,
    axis_name: str = REALIZATION_AXIS,
) -> Mesh:
    """A 1-D mesh over the realization axis.

    Uses ``min(n_realizations, len(devices))`` devices: more devices than members would only
    hold padding. The batch is then padded to :func:`padded_size` members.

    Args:
        n_realizations: the ensemble size (>= 1).
        devices: devices to use (default: all of ``jax.devices()``).
        axis_name: the mesh axis name.

    Returns:
        A mesh with one axis ``axis_name`` of ``AxisType.Auto`` (the compiler propagates the
        sharding through the vmapped kernels; no collectives are needed between members).

    Raises:
        InputError: ``n_realizations`` < 1 or no devices.
    """
    if int(n_realizations) < 1:
        raise InputError(f"an ensemble needs at least 1 realization, got {n_realizations}")
    pool = select_devices(None, devices)
    if not pool:
        raise InputError("no devices to build a mesh on")
    n_dev = min(int(n_realizations), len(pool))
    return jax.make_mesh(
        (n_dev,), (axis_name,), axis_types=(jax.sharding.AxisType.Auto,), devices=pool[:n_dev]
    )


def padded_size(n: int, mesh: Mesh, axis_name: str = REALIZATION_AXIS) -> int:
    """``n`` rounded up to a multiple of the mesh axis size."""
    k = int(mesh.shape[axis_name])
    return int(math.ceil(int(n) / k) * k)


def pad_leading(tree: T, n_to: int) -> T:
    """Pad every leaf's leading axis to ``n_to`` with copies of its last entry."""

    def pad(x: Any) -> Any:
        n = x.shape[0]
        if n == n_to:
            return x
        if n > n_to or n == 0:
            raise InputError(f"cannot pad a leading axis of {n} entries to {n_to}")
        rest = jnp.repeat(x[-1:], n_to - n, axis=0)
        return jnp.concatenate([x, rest], axis=0)

    return jax.tree.map(pad, tree)


def unpad_leading(tree: T, n: int) -> T:
    """The first ``n`` entries along every leaf's leading axis (drops padded members)."""
    return jax.tree.map(lambda x: x if x.shape[0] == n else x[:n], tree)


def shard_leading(tree: T, mesh: Mesh, axis_name: str = REALIZATION_AXIS) -> T:
    """Place every leaf with its leading axis sharded over ``axis_name`` of ``mesh``."""
    return jax.device_put(tree, NamedSharding(mesh, P(axis_name)))
