"""Rectified flow in the latent space, with mixed conditions, guidance and two stages.

Convention (Liu et al. 2023; Lipman et al. 2023): ``x_0 ~ N(0, I)`` is noise, ``x_1`` is data,
``x_t = (1 - t) x_0 + t x_1`` and the network regresses the velocity ``x_1 - x_0``
(:func:`flow_loss`). Sampling integrates ``dx/dt = v(x, t)`` from ``t = 0`` to 1 with Euler or
Heun steps (:func:`sample`, 25 steps by default).

Conditions (EarthCrafter's condition-aware training on mixed inputs): each training example
keeps the coarse heightmap and the class map independently with probability ``1 - drop``, so
one network learns every combination, including none; a missing condition is zeros plus a
presence flag of 0 (:func:`condition_channels`). Classifier-free guidance (Ho & Salimans 2022)
extrapolates from the unconditional velocity: ``v = v_u + s (v_c - v_u)`` (scale 3 by default).

Coarse to fine (EarthCrafter's structure model before its texture model): a small *prior* flow
generates the class map (one-hot, scaled to ±1) given the coarse heightmap or nothing; the fine
flow then generates the latents given that class map (:class:`FlowModel`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from jaxgeo.errors import ConfigError

__all__ = [
    "SAMPLERS",
    "FlowModel",
    "FlowSpec",
    "VelocityNet",
    "condition_channels",
    "flow_loss",
    "guided",
    "sample",
    "time_embedding",
]

SAMPLERS = ("euler", "heun")
Velocity = Callable[[Array, Array, Array], Array]


def time_embedding(t: Float[Array, " b"], dim: int) -> Float[Array, "b dim"]:
    """Sinusoidal embedding of ``t`` in [0, 1] (Vaswani et al. 2017; times scaled by 1000 as in
    DDPM so the frequencies cover the unit interval)."""
    half = dim // 2
    freqs = jnp.exp(-math.log(10_000.0) * jnp.arange(half, dtype=t.dtype) / half)
    arg = 1000.0 * t[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.sin(arg), jnp.cos(arg)], axis=-1)


class _TimeBlock(nnx.Module):
    """Group norm, SiLU, 3×3 conv, plus a time shift; twice; residual."""

    def __init__(self, width: int, temb: int, *, rngs: nnx.Rngs) -> None:
        groups = math.gcd(8, width)
        self.norm1 = nnx.GroupNorm(width, num_groups=groups, rngs=rngs)
        self.conv1 = nnx.Conv(width, width, (3, 3), rngs=rngs)
        self.time = nnx.Linear(temb, width, rngs=rngs)
        self.norm2 = nnx.GroupNorm(width, num_groups=groups, rngs=rngs)
        self.conv2 = nnx.Conv(width, width, (3, 3), rngs=rngs)

    def __call__(self, x: Array, emb: Array) -> Array:
        h = self.conv1(jax.nn.silu(self.norm1(x)))
        h = h + self.time(emb)[:, None, None, :]
        h = self.conv2(jax.nn.silu(self.norm2(h)))
        return x + h


class VelocityNet(nnx.Module):
    """Convolutional velocity field on ``(b, m, n, data_ch)`` grids with ``cond_ch`` condition
    channels and the time; the output layer starts at zero."""

    def __init__(
        self, data_ch: int, cond_ch: int, *, width: int = 96, depth: int = 4, temb: int = 64,
        rngs: nnx.Rngs,
    ) -> None:  # fmt: skip
        self.temb = temb
        self.t1 = nnx.Linear(temb, temb, rngs=rngs)
        self.t2 = nnx.Linear(temb, temb, rngs=rngs)
        self.conv_in = nnx.Conv(data_ch + cond_ch, width, (3, 3), rngs=rngs)
        self.blocks = nnx.List([_TimeBlock(width, temb, rngs=rngs) for _ in range(depth)])
        self.norm = nnx.GroupNorm(width, num_groups=math.gcd(8, width), rngs=rngs)
        self.conv_out = nnx.Conv(
            width, data_ch, (3, 3), kernel_init=nnx.initializers.zeros, rngs=rngs
        )

    def __call__(self, x: Array, t: Float[Array, " b"], cond: Array) -> Array:
        emb = self.t2(jax.nn.silu(self.t1(time_embedding(t, self.temb))))
        emb = jax.nn.silu(emb)
        h = self.conv_in(jnp.concatenate([x, cond], axis=-1))
        for block in self.blocks:
            h = block(h, emb)
        return self.conv_out(jax.nn.silu(self.norm(h)))


@dataclasses.dataclass(frozen=True)
class FlowSpec:
    """Architecture of the fine and prior flows.

    Attributes:
        latent_channels: Channels of the VAE latent.
        n_classes: Classes of the class map (:attr:`ClassSpec.n_classes`).
        width, depth: Fine velocity network.
        prior_width, prior_depth: Class-map prior network (the first stage).
    """

    latent_channels: int = 4
    n_classes: int = 5
    width: int = 96
    depth: int = 4
    prior_width: int = 48
    prior_depth: int = 3

    def __post_init__(self) -> None:
        for name in ("latent_channels", "n_classes", "width", "depth", "prior_width",
                     "prior_depth"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ConfigError(f"flow {name} must be >= 1, got {getattr(self, name)}")

    @property
    def cond_channels(self) -> int:
        """Coarse heightmap + its flag, class one-hot + its flag."""
        return self.n_classes + 3


class FlowModel(nnx.Module):
    """The fine flow (latents given conditions) and the prior flow (class map given the coarse
    heightmap)."""

    def __init__(self, spec: FlowSpec, *, rngs: nnx.Rngs) -> None:
        self.fine = VelocityNet(
            spec.latent_channels, spec.cond_channels, width=spec.width, depth=spec.depth,
            rngs=rngs,
        )  # fmt: skip
        self.prior = VelocityNet(
            spec.n_classes, 2, width=spec.prior_width, depth=spec.prior_depth, rngs=rngs
        )


def condition_channels(
    coarse: Float[Array, "b m n"] | None,
    classes: Float[Array, "b m n k"] | None,
    keep_coarse: Float[Array, " b"],
    keep_class: Float[Array, " b"],
    n_classes: int,
    shape: tuple[int, int, int],
) -> Float[Array, "b m n k3"]:
    """The fine flow's condition input: ``[coarse·keep, keep, onehot·keep, keep]``.

    Args:
        coarse: Normalised coarse heightmap, or None (absent for all).
        classes: One-hot class map, or None.
        keep_coarse, keep_class: 1 where the condition is given, 0 where dropped.
        n_classes: Classes of the one-hot map.
        shape: ``(b, m, n)`` of the latent grid.
    """
    b, m, n = shape
    dtype = keep_coarse.dtype
    c = jnp.zeros((b, m, n), dtype) if coarse is None else coarse
    k = jnp.zeros((b, m, n, n_classes), dtype) if classes is None else classes
    kc = keep_coarse[:, None, None]
    kk = keep_class[:, None, None]
    ones = jnp.ones((b, m, n), dtype)
    return jnp.concatenate(
        [(c * kc)[..., None], (ones * kc)[..., None], k * kk[..., None], (ones * kk)[..., None]],
        axis=-1,
    )


def flow_loss(
    velocity: Velocity, x1: Array, cond: Array, key: jax.Array, *, t_sampling: str = "uniform"
) -> Array:
    """Rectified-flow regression loss ``E |v(x_t, t, c) - (x_1 - x_0)|²``.

    Args:
        velocity: ``(x, t, cond) -> v``.
        x1: Data batch ``(b, ...)``.
        cond: Condition input for the batch.
        key: Noise and times.
        t_sampling: ``uniform`` or ``logit_normal`` (Esser et al. 2024: more weight mid-path).
    """
    k_noise, k_t = jax.random.split(key)
    x0 = jax.random.normal(k_noise, x1.shape, x1.dtype)
    b = x1.shape[0]
    if t_sampling == "logit_normal":
        t = jax.nn.sigmoid(jax.random.normal(k_t, (b,), x1.dtype))
    else:
        t = jax.random.uniform(k_t, (b,), x1.dtype)
    tb = t.reshape((b,) + (1,) * (x1.ndim - 1))
    xt = (1.0 - tb) * x0 + tb * x1
    return jnp.mean((velocity(xt, t, cond) - (x1 - x0)) ** 2)


def guided(velocity: Velocity, cond: Array, uncond: Array, scale: float) -> Callable:
    """``(x, t) -> v`` with classifier-free guidance at ``scale`` (1: plain conditional).

    The conditional and unconditional velocities come from one call on a doubled batch.
    """
    if scale == 1.0:
        return lambda x, t: velocity(x, t, cond)

    def v(x: Array, t: Array) -> Array:
        both = velocity(
            jnp.concatenate([x, x]), jnp.concatenate([t, t]), jnp.concatenate([cond, uncond])
        )
        vc, vu = jnp.split(both, 2)
        return vu + scale * (vc - vu)

    return v


def sample(
    v: Callable[[Array, Array], Array],
    x0: Array,
    *,
    steps: int = 25,
    method: str = "euler",
    known: Array | None = None,
    mask: Array | None = None,
) -> Array:
    """Integrate ``dx/dt = v(x, t)`` from the noise ``x0`` at ``t = 0`` to ``t = 1``.

    With ``known`` and ``mask`` (1 where known, broadcast against ``x0``), the known part is
    held on its own straight path ``(1 - t) x0 + t·known`` at every step, so the unknown part
    is generated consistently with it (inpainting; used by outpainting).

    Args:
        v: Velocity ``(x, t) -> v`` with ``t`` of shape ``(b,)``.
        x0: Noise ``(b, ...)``.
        steps: Number of steps (uniform in t).
        method: ``euler`` (one evaluation a step) or ``heun`` (two; second order).
        known, mask: Optional inpainting constraint.

    Returns:
        The sample at ``t = 1``.
    """
    b = x0.shape[0]
    dtype = x0.dtype

    def clamp(x: Array, t: Array) -> Array:
        if known is None or mask is None:
            return x
        return jnp.where(mask > 0, (1.0 - t) * x0 + t * known, x)

    def body(i: int, x: Array) -> Array:
        t0 = jnp.asarray(i, dtype) / steps
        t1 = jnp.asarray(i + 1, dtype) / steps
        dt = t1 - t0
        x = clamp(x, t0)
        d0 = v(x, jnp.full((b,), t0, dtype))
        if method == "heun":
            x_e = clamp(x + dt * d0, t1)
            d1 = v(x_e, jnp.full((b,), t1, dtype))
            return x + 0.5 * dt * (d0 + d1)
        return x + dt * d0

    if method not in SAMPLERS:
        raise ConfigError(f"sampler must be one of {', '.join(SAMPLERS)}, got {method!r}")
    x = jax.lax.fori_loop(0, steps, body, x0)
    return clamp(x, jnp.asarray(1.0, dtype))
