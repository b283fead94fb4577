"""Checkpoints of model and simulation state: a thin wrapper over orbax's CheckpointManager.

Each step is saved as two orbax items: ``state`` (the pytree, through ``StandardSave``) and
``metadata`` (a JSON dict: the caller's metadata, and what this module needs to rebuild leaves
orbax does not store as such). Saves are synchronous: when :meth:`Checkpointer.save` returns,
the step is on disk (orbax writes to a temporary directory and renames it when complete, so a
killed save leaves no half checkpoint behind).

Restores are exact: every leaf comes back bit for bit, with the type of the template's leaf.
Leaves orbax does not handle directly are converted on the way in and back:

- NumPy scalars (``np.float64(1.0)``) are stored as 0-d arrays and restored as NumPy scalars;
- typed PRNG keys (``jax.random.key``) are stored as their key data (``jax.random.key_data``)
  with the implementation name in the metadata, and rewrapped on restore;
- Python ``int``/``float``/``bool`` leaves come back as the same Python type.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxgeo.errors import FileFormatError, InputError

# orbax reports every save through absl logging at INFO; unless the application configured
# that logger itself, keep only warnings and errors.
if logging.getLogger("absl").level == logging.NOTSET:
    logging.getLogger("absl").setLevel(logging.WARNING)

import orbax.checkpoint as ocp  # noqa: E402

__all__ = ["Checkpointer", "save_snapshot"]

_STATE, _META = "state", "metadata"
_USER, _KEYS = "user", "prng_key_impls"


def _is_prng_key(x: Any) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _encode_leaf(x: Any) -> Any:
    if _is_prng_key(x):
        return jax.random.key_data(x)
    if isinstance(x, np.generic):
        return np.asarray(x)
    return x


def _target_leaf(x: Any) -> Any:
    """What orbax restores a template leaf into."""
    if _is_prng_key(x):
        if isinstance(x, jax.ShapeDtypeStruct):
            return jax.eval_shape(jax.random.key_data, x)
        return jax.random.key_data(x)
    if isinstance(x, np.generic):
        return np.asarray(x)
    return x


def _decode_leaf(template: Any, value: Any, key_impl: str | None) -> Any:
    """Restored ``value`` as the kind of thing ``template`` is."""
    if _is_prng_key(template):
        return jax.random.wrap_key_data(jax.numpy.asarray(value), impl=key_impl)
    if isinstance(template, np.generic):
        return template.dtype.type(np.asarray(value).item())
    if isinstance(template, bool | int | float | complex):
        return type(template)(np.asarray(value).item())
    if isinstance(template, np.ndarray):
        return np.asarray(value)
    if isinstance(template, jax.Array | jax.ShapeDtypeStruct):
        sharding = getattr(template, "sharding", None)
        if isinstance(value, jax.Array) and (sharding is None or value.sharding == sharding):
            return value
        return jax.device_put(np.asarray(value), sharding)
    return value


class Checkpointer:
    """Numbered checkpoints of a state pytree plus a JSON metadata dict, the last N kept.

    Example::

        with Checkpointer(run_dir / "checkpoints", max_to_keep=3) as ckpt:
            ckpt.save(step, state, {"time_hours": t})
            ...
            state, meta = ckpt.restore(target=jax.eval_shape(init_state))

    Args:
        directory: Folder holding one subfolder per step.
        max_to_keep: How many of the most recent steps to keep; older ones are deleted.
        create: Create ``directory`` when missing; with False a missing directory is an error
            (use it to resume, so that a mistyped path is reported, not silently created).

    Raises:
        FileFormatError: ``directory`` is missing and ``create`` is False, or it is a file.
        InputError: ``max_to_keep`` is not a positive integer.
    """

    def __init__(
        self, directory: str | os.PathLike[str], *, max_to_keep: int = 3, create: bool = True
    ) -> None:
        self.directory = Path(directory).absolute()
        if not isinstance(max_to_keep, int) or max_to_keep < 1:
            raise InputError(
                f"checkpoint max_to_keep must be a positive integer, got {max_to_keep!r}"
            )
        if self.directory.exists() and not self.directory.is_dir():
            raise FileFormatError(
                f"checkpoint directory {self.directory} is a file; expected a directory"
            )
        if not self.directory.exists():
            if not create:
                raise FileFormatError(
                    f"checkpoint directory {self.directory} does not exist; expected a directory "
                    "of checkpoints written by an earlier run"
                )
            self.directory.mkdir(parents=True)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep, enable_async_checkpointing=False, create=False
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=(_STATE, _META)
        )

    # -- context manager ----------------------------------------------------------------------
    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Finish pending work and release orbax's resources."""
        self._manager.wait_until_finished()
        self._manager.close()

    # -- queries ------------------------------------------------------------------------------
    def all_steps(self) -> list[int]:
        """Steps on disk, ascending."""
        return sorted(int(s) for s in self._manager.all_steps())

    def latest_step(self) -> int | None:
        """The most recent step on disk, or None when there is none."""
        step = self._manager.latest_step()
        return None if step is None else int(step)

    # -- save / restore -----------------------------------------------------------------------
    def save(self, step: int, state: Any, metadata: Mapping[str, Any] | None = None) -> None:
        """Save ``state`` and ``metadata`` as ``step``; on return it is on disk.

        Args:
            step: Non-negative step number, larger than the latest saved one.
            state: Pytree of arrays (JAX or NumPy), NumPy or Python scalars, typed PRNG keys,
                in dicts, lists, tuples or registered dataclasses.
            metadata: JSON-serialisable dict stored beside the state.

        Raises:
            InputError: ``step`` is negative or already saved, or ``metadata`` is not JSON.
        """
        step = int(step)
        if step < 0:
            raise InputError(f"checkpoint step must be >= 0, got {step}")
        if step in self._manager.all_steps():
            raise InputError(f"checkpoint step {step} already exists in {self.directory}")
        leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
        key_impls = {
            jax.tree_util.keystr(p): str(jax.random.key_impl(x))
            for p, x in leaves
            if _is_prng_key(x)
        }
        encoded = jax.tree_util.tree_unflatten(treedef, [_encode_leaf(x) for _, x in leaves])
        meta = {_USER: dict(metadata or {}), _KEYS: key_impls}
        try:
            json.dumps(meta)
        except (TypeError, ValueError) as err:
            raise InputError(
                f"checkpoint metadata for step {step} must be JSON-serialisable: {err}"
            ) from err
        self._manager.save(
            step,
            args=ocp.args.Composite(
                **{_STATE: ocp.args.StandardSave(encoded), _META: ocp.args.JsonSave(meta)}
            ),
        )
        self._manager.wait_until_finished()

    def restore(self, step: int | None = None, *, target: Any) -> tuple[Any, dict[str, Any]]:
        """Restore a step into the structure, dtypes and leaf types of ``target``.

        Args:
            step: Step to restore; None for the latest.
            target: Template pytree: concrete values or abstract ones
                (``jax.eval_shape(init_fn)``, ``jax.ShapeDtypeStruct``), with the saved
                structure. Shardings of JAX leaves are honoured.

        Returns:
            ``(state, metadata)``: the state with ``target``'s structure, the metadata dict
            given to :meth:`save`.

        Raises:
            FileFormatError: There is no checkpoint (or not that step) in the directory, or the
                checkpoint does not match ``target``'s structure.
        """
        steps = self.all_steps()
        if step is None:
            if not steps:
                raise FileFormatError(
                    f"no checkpoint found in {self.directory}; nothing to restore"
                )
            step = steps[-1]
        elif int(step) not in steps:
            raise FileFormatError(
                f"checkpoint step {step} not found in {self.directory}; available steps: {steps}"
            )
        leaves, treedef = jax.tree_util.tree_flatten_with_path(target)
        orbax_target = jax.tree_util.tree_unflatten(treedef, [_target_leaf(x) for _, x in leaves])
        try:
            restored = self._manager.restore(
                int(step),
                args=ocp.args.Composite(
                    **{
                        _STATE: ocp.args.StandardRestore(orbax_target),
                        _META: ocp.args.JsonRestore(),
                    }
                ),
            )
        except (ValueError, KeyError, TypeError) as err:
            raise FileFormatError(
                f"checkpoint step {step} in {self.directory} does not match the target "
                f"structure ({type(err).__name__}: {err})"
            ) from err
        meta = dict(restored[_META] or {})
        key_impls = meta.get(_KEYS, {})
        values = treedef.flatten_up_to(restored[_STATE])  # type: ignore[attr-defined]
        state = jax.tree_util.tree_unflatten(
            treedef,
            [
                _decode_leaf(x, v, key_impls.get(jax.tree_util.keystr(p)))
                for (p, x), v in zip(leaves, values, strict=True)
            ],
        )
        return state, dict(meta.get(_USER, {}))


def save_snapshot(
    path: str | os.PathLike[str], step: int, state: Any, metadata: Mapping[str, Any] | None = None
) -> None:
    """Write ``state`` as the only checkpoint in ``path``, replacing whatever was there.

    The final weights of a training run (a backbone, an encoder, a model) that later commands
    restore with ``Checkpointer(path, create=False).restore(target=...)``.
    """
    shutil.rmtree(path, ignore_errors=True)
    with Checkpointer(path, max_to_keep=1) as ckpt:
        ckpt.save(step, state, metadata)
