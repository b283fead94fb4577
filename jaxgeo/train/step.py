"""A generic training step, and the data-parallel version of it.

:func:`make_train_step` turns a loss ``loss_fn(params, state, batch, key) -> (loss, (state,
metrics))`` into ``step(ts, batch, key) -> (ts, metrics)`` on a :data:`TrainState` dict:

- ``params``: what the optimiser updates;
- ``state``: everything else the loss carries (batch statistics, momentum encoders, queues,
  centres), returned updated by the loss and then by ``after_update`` (which sees the new
  parameters: the place for exponential moving averages);
- ``opt_state``, ``step`` (an int32 scalar).

:func:`data_parallel` jits a step with the batch split along its first axis over every device
of a one-axis mesh and everything else replicated. Under ``jit`` the compiler inserts the
cross-device reductions, so a mean over the batch (of a loss, or batch-norm statistics) is the
mean over the global batch: the sharded step computes the same function as the unsharded one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

__all__ = [
    "DATA_AXIS",
    "TrainState",
    "data_mesh",
    "data_parallel",
    "init_train_state",
    "make_train_step",
    "shard_batch",
]

TrainState = dict[str, Any]
LossFn = Callable[..., tuple[jax.Array, tuple[Any, dict[str, jax.Array]]]]
DATA_AXIS = "data"


def init_train_state(params: Any, state: Any, tx: optax.GradientTransformation) -> TrainState:
    """A train state at step 0."""
    return {
        "params": params,
        "state": state,
        "opt_state": tx.init(params),
        "step": jnp.zeros((), jnp.int32),
    }


def make_train_step(
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    after_update: Callable[[Any, Any, jax.Array], Any] | None = None,
) -> Callable[[TrainState, Any, jax.Array], tuple[TrainState, dict[str, jax.Array]]]:
    """``step(ts, batch, key) -> (ts, metrics)``: one gradient step, pure.

    Args:
        loss_fn: ``(params, state, batch, key) -> (loss, (state, metrics))``.
        tx: The optimiser.
        after_update: ``(params, state, step) -> state`` run after the update with the new
            parameters and the step just taken (0-based), e.g. a momentum-encoder update.

    Returns:
        The step function; ``metrics`` holds ``loss`` and what the loss returned.
    """
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(ts: TrainState, batch: Any, key: jax.Array) -> tuple[TrainState, dict]:
        (loss, (state, metrics)), grads = grad_fn(ts["params"], ts["state"], batch, key)
        # optax's Adam bias correction raises a float to an int32 count, which strict dtype
        # promotion refuses; everything else in the update has one float dtype.
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = tx.update(grads, ts["opt_state"], ts["params"])
            params = optax.apply_updates(ts["params"], updates)
        if after_update is not None:
            state = after_update(params, state, ts["step"])
        new = {"params": params, "state": state, "opt_state": opt_state, "step": ts["step"] + 1}
        return new, {"loss": loss, **metrics}

    return step


def data_mesh(devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
    """A one-axis mesh (``"data"``) over ``devices`` (default: all)."""
    devs = list(jax.devices() if devices is None else devices)
    return jax.sharding.Mesh(np.asarray(devs), (DATA_AXIS,))


def shard_batch(batch: Any, mesh: jax.sharding.Mesh) -> Any:
    """Place a batch pytree with its leading axis split over the mesh's ``"data"`` axis.

    Raises:
        ValueError: A leaf's leading size is not a multiple of the number of devices.
    """
    n = mesh.shape[DATA_AXIS]
    for leaf in jax.tree_util.tree_leaves(batch):
        if np.shape(leaf)[0] % n:
            raise ValueError(
                f"batch size {np.shape(leaf)[0]} must be a multiple of the {n} devices of the mesh"
            )
    return jax.device_put(batch, NamedSharding(mesh, P(DATA_AXIS)))


def data_parallel(step: Callable, mesh: jax.sharding.Mesh, *, donate: bool = False) -> Callable:
    """Jit ``step(ts, batch, key)`` with ``batch`` sharded over ``mesh`` and the rest replicated."""
    rep = NamedSharding(mesh, P())
    data = NamedSharding(mesh, P(DATA_AXIS))
    return jax.jit(
        step,
        in_shardings=(rep, data, rep),
        out_shardings=(rep, rep),
        donate_argnums=(0,) if donate else (),
    )
