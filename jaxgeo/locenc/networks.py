"""Networks that turn positional encodings into predictions (Flax NNX modules).

All networks map ``(*batch, n_in) -> (*batch, n_out)`` and expose ``features(x)``, the last
hidden layer (what :meth:`jaxgeo.locenc.LocationEncoder.embed` returns). Dropout is explicit:
``__call__(x, key=None)`` is deterministic without a key, so a training step passes a fresh key
and evaluation passes none (no hidden RNG state to checkpoint).

- ``linear``: one affine layer (logistic / linear regression on the encoding).
- ``fcnet``: ReLU MLP with dropout (the reference's "FCNet").
- ``siren``: sinusoidal representation network (Sitzmann et al. 2020): hidden layers
  ``sin(w0 (W x + b))``, the first with ``w0_initial``; weights and biases uniform in
  ``±1/n_in`` for the first layer and ``±sqrt(6/n_in)/w0`` after it, which keeps the
  pre-activations ~ N(0, 1) and the activations arcsine-distributed at every depth (their §3.2).
  The output layer is affine with the same initialisation.
- ``fcnet-res`` / ``siren-res``: the same with residual connections ``h + f(h)`` around every
  hidden layer after the first (widths equal there).
"""

from __future__ import annotations

import math
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float, PRNGKeyArray

from jaxgeo._trig import sin as fast_sin

__all__ = [
    "NETWORKS",
    "FCNet",
    "LinearNet",
    "NetworkName",
    "Siren",
    "make_network",
    "siren_uniform",
]

NetworkName = Literal["linear", "fcnet", "fcnet-res", "siren", "siren-res"]
NETWORKS: tuple[str, ...] = ("linear", "fcnet", "fcnet-res", "siren", "siren-res")


def siren_uniform(bound: float):
    """Initializer drawing uniformly in ``[-bound, bound]`` (SIREN weights and biases)."""

    def init(key: PRNGKeyArray, shape, dtype=jnp.float32) -> Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def _siren_bound(n_in: int, w0: float, is_first: bool) -> float:
    # Sitzmann et al. 2020, §3.2 and supplement 1.5: first layer ±1/n, later ±sqrt(6/n)/w0.
    return 1.0 / n_in if is_first else math.sqrt(6.0 / n_in) / w0


def _siren_linear(n_in: int, n_out: int, w0: float, is_first: bool, rngs: nnx.Rngs, dtype):
    bound = _siren_bound(n_in, w0, is_first)
    return nnx.Linear(
        n_in,
        n_out,
        kernel_init=siren_uniform(bound),
        bias_init=siren_uniform(bound),
        param_dtype=dtype,
        dtype=dtype,
        rngs=rngs,
    )


class LinearNet(nnx.Module):
    """One affine layer; ``features`` is the input itself."""

    def __init__(self, n_in: int, n_out: int, *, rngs: nnx.Rngs, dtype=jnp.float32) -> None:
        self.out = nnx.Linear(n_in, n_out, param_dtype=dtype, dtype=dtype, rngs=rngs)

    def features(self, x: Float[Array, "*b i"], key: PRNGKeyArray | None = None) -> Array:
        return x

    def __call__(self, x: Float[Array, "*b i"], key: PRNGKeyArray | None = None) -> Array:
        return self.out(x)


def _dropout(x: Array, rate: float, key: PRNGKeyArray | None) -> Array:
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), jnp.zeros_like(x))


class FCNet(nnx.Module):
    """ReLU MLP: ``n_layers`` hidden layers of width ``hidden``, dropout after each."""

    def __init__(
        self,
        n_in: int,
        n_out: int,
        *,
        hidden: int = 256,
        n_layers: int = 2,
        dropout: float = 0.0,
        residual: bool = False,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
    ) -> None:
        widths = [n_in] + [hidden] * n_layers
        self.layers = nnx.List(
            [
                nnx.Linear(a, b, param_dtype=dtype, dtype=dtype, rngs=rngs)
                for a, b in zip(widths[:-1], widths[1:], strict=True)
            ]
        )
        self.out = nnx.Linear(widths[-1], n_out, param_dtype=dtype, dtype=dtype, rngs=rngs)
        self.dropout = dropout
        self.residual = residual

    def features(self, x: Float[Array, "*b i"], key: PRNGKeyArray | None = None) -> Array:
        keys = (
            [None] * len(self.layers)
            if key is None
            else list(jax.random.split(key, len(self.layers)))
        )
        for i, (layer, k) in enumerate(zip(self.layers, keys, strict=True)):
            h = _dropout(jax.nn.relu(layer(x)), self.dropout, k)
            x = x + h if (self.residual and i > 0) else h
        return x

    def __call__(self, x: Float[Array, "*b i"], key: PRNGKeyArray | None = None) -> Array:
        return self.out(self.features(x, key))


class Siren(nnx.Module):
    """SIREN: ``n_layers`` sine layers of width ``hidden`` and an affine output layer."""

    def __init__(
        self,
        n_in: int,
        n_out: int,
        *,
        hidden: int = 256,
        n_layers: int = 2,
        w0: float = 1.0,
        w0_initial: float = 30.0,
        dropout: float = 0.0,
        residual: bool = False,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
    ) -> None:
        widths = [n_in] + [hidden] * n_layers
        self.layers = nnx.List(
            [
                _siren_linear(a, b, w0_initial if i == 0 else w0, i == 0, rngs, dtype)
                for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True))
            ]
        )
        self.out = _siren_linear(widths[-1], n_out, w0, n_layers == 0, rngs, dtype)
        self.w0s = tuple(w0_initial if i == 0 else w0 for i in range(n_layers))
        self.dropout = dropout
        self.residual = residual

    def preactivations(self, x: Float[Array, "*b i"]) -> list[Array]:
        """``w0 (W h + b)`` of every hidden layer (no dropout): for initialisation checks."""
        out = []
        for i, (layer, w0) in enumerate(zip(self.layers, self.w0s, strict=True)):
            z = w0 * layer(x)
            out.append(z)
            h = fast_sin(z)
            x = x + h if (self.residual and i > 0) else h
        return out

    def features(self, x: Float[Array, "*b i"], key: PRNGKeyArray | None = None) -> Array:
        keys = (
            [None] * len(self.layers)
            if key is None
            else list(jax.random.split(key, len(self.layers)))
        )
        for i, (layer, w0, k) in enumerate(zip(self.layers, self.w0s, keys, strict=True)):
            h = _dropout(fast_sin(w0 * layer(x)), self.dropout, k)
            x = x + h if (self.residual and i > 0) else h
        return x

    def __call__(self, x: Float[Array, "*b i"], key: PRNGKeyArray | None = None) -> Array:
        return self.out(self.features(x, key))


def make_network(
    name: str,
    n_in: int,
    n_out: int,
    *,
    hidden: int = 256,
    n_layers: int = 2,
    dropout: float = 0.0,
    w0: float = 1.0,
    w0_initial: float = 30.0,
    rngs: nnx.Rngs,
    dtype=jnp.float32,
) -> nnx.Module:
    """Build the network ``name`` (one of :data:`NETWORKS`)."""
    if name == "linear":
        return LinearNet(n_in, n_out, rngs=rngs, dtype=dtype)
    if name in ("fcnet", "fcnet-res"):
        return FCNet(
            n_in,
            n_out,
            hidden=hidden,
            n_layers=n_layers,
            dropout=dropout,
            residual=name.endswith("-res"),
            rngs=rngs,
            dtype=dtype,
        )
    if name in ("siren", "siren-res"):
        return Siren(
            n_in,
            n_out,
            hidden=hidden,
            n_layers=n_layers,
            w0=w0,
            w0_initial=w0_initial,
            dropout=dropout,
            residual=name.endswith("-res"),
            rngs=rngs,
            dtype=dtype,
        )
    from jaxgeo.errors import ConfigError

    raise ConfigError(f"network must be one of {', '.join(NETWORKS)}, got {name!r}")
