"""NNX modules as pure functions of plain parameter dicts.

Training code here works on pytrees of arrays: ``params`` (the :class:`flax.nnx.Param`
variables) and ``rest`` (everything else a module holds: batch-norm running averages). Both
are nested dicts with string keys, so optax, ``jax.jit`` shardings and orbax checkpoints see
them as they are. :class:`ModuleDef` rebuilds the module from them (``nnx.merge``) inside a
pure function and reads back what a training-mode call updated in place.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from flax import nnx

__all__ = ["ModuleDef", "count_params", "init_module", "path_keys", "split_module"]

PyTree = Any


def path_keys(path: tuple) -> tuple[str, ...]:
    """The dict keys and sequence indices of a pytree path, as strings (an NNX state's
    parameter names)."""
    keys = []
    for entry in path:
        if isinstance(entry, jax.tree_util.DictKey):
            keys.append(str(entry.key))
        elif isinstance(entry, jax.tree_util.SequenceKey):
            keys.append(str(entry.idx))
        # GetAttrKey("value") of an NNX variable carries no name of its own.
    return tuple(keys)


def _to_dict(state: nnx.State) -> dict:
    out: dict = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        node = out
        keys = path_keys(path)
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        node[keys[-1]] = leaf
    return out


class _Layout:
    """Where each leaf of an NNX state lives in the plain dict."""

    def __init__(self, state: nnx.State) -> None:
        leaves, self.treedef = jax.tree_util.tree_flatten_with_path(state)
        self.paths = [path_keys(p) for p, _ in leaves]

    def state(self, tree: dict) -> nnx.State:
        def lookup(keys: tuple[str, ...]) -> Any:
            node = tree
            for k in keys:
                node = node[k]
            return node

        return jax.tree_util.tree_unflatten(self.treedef, [lookup(k) for k in self.paths])


class ModuleDef:
    """The structure of an NNX module, to rebuild it from ``(params, rest)`` dicts.

    Example::

        mdef, params, rest = split_module(model)
        def loss(params, rest, x):
            m = mdef.merge(params, rest)
            y = m(x, train=True)
            return y.mean(), mdef.rest(m)   # updated batch statistics
    """

    def __init__(self, module: nnx.Module) -> None:
        parts: tuple[Any, ...] = nnx.split(module, nnx.Param, ...)
        self.graphdef: nnx.GraphDef = parts[0]
        params, rest = parts[1], parts[2]
        self._params = _Layout(params)
        self._rest = _Layout(rest)

    def merge(self, params: PyTree, rest: PyTree) -> Any:
        """A fresh module holding ``params`` and ``rest``."""
        return nnx.merge(self.graphdef, self._params.state(params), self._rest.state(rest))

    @staticmethod
    def params(module: nnx.Module) -> dict:
        """The module's parameters as a plain dict."""
        return _to_dict(nnx.state(module, nnx.Param))

    @staticmethod
    def rest(module: nnx.Module) -> dict:
        """Everything but the parameters (batch statistics), as a plain dict."""
        return _to_dict(nnx.state(module, nnx.Not(nnx.Param)))

    def apply(self, method: str | None = None) -> Callable[..., Any]:
        """``f(params, rest, *args, **kw) -> (out, rest)`` calling the module (or ``method``)."""

        def f(params: PyTree, rest: PyTree, *args: Any, **kw: Any) -> tuple[Any, dict]:
            m = self.merge(params, rest)
            out = (m if method is None else getattr(m, method))(*args, **kw)
            return out, self.rest(m)

        return f


def split_module(module: nnx.Module) -> tuple[ModuleDef, dict, dict]:
    """``(ModuleDef, params, rest)`` of ``module``."""
    return ModuleDef(module), ModuleDef.params(module), ModuleDef.rest(module)


def init_module(
    factory: Callable[[nnx.Rngs], nnx.Module], key: jax.Array
) -> tuple[ModuleDef, dict, dict]:
    """Build ``factory(rngs)`` as ``(ModuleDef, params, rest)`` with one compiled call.

    The structure comes from ``nnx.eval_shape`` (no computation), the values from one jitted
    initialisation: eager initialisation would dispatch (and compile) every initialiser op
    one by one, which costs far more than the model for small models.
    """
    mdef = ModuleDef(nnx.eval_shape(lambda: factory(nnx.Rngs(0))))

    def init(k: jax.Array) -> tuple[dict, dict]:
        module = factory(nnx.Rngs(k))
        return ModuleDef.params(module), ModuleDef.rest(module)

    params, rest = jax.jit(init)(key)
    return mdef, params, rest


def count_params(tree: PyTree) -> int:
    """Number of scalars in a pytree of arrays (or of ``jax.ShapeDtypeStruct``)."""
    return int(sum(math.prod(np.shape(x)) for x in jax.tree_util.tree_leaves(tree)))
