"""Heightmap VAE (Flax NNX): ``size × size`` normalised elevation patches to ``8 × 8 × c``
latents and back.

The encoder halves the grid ``log2(size / 8)`` times (three times for 64-cell patches, twice for
32) with residual blocks between; the decoder mirrors it with nearest-neighbour upsampling. Both
are fully convolutional, so the decoder turns a latent grid of any size into a heightmap: that
is what lets sliding-window outpainting decode a whole large latent canvas at once, without
seams from the decoder (:mod:`jaxgeo.terrain.outpaint`).

The loss (:func:`vae_loss`) is the mean squared reconstruction error, plus the same error on
the finite differences (slopes carry the terrain's texture, which a plain MSE blurs), plus
``beta`` times the KL divergence to N(0, I) per latent element (Kingma & Welling 2014).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from jaxgeo.errors import ConfigError

__all__ = ["LATENT_GRID", "HeightmapVAE", "VaeSpec", "kl_divergence", "vae_loss"]

LATENT_GRID = 8
"""Side of the latent grid of one patch."""


@dataclasses.dataclass(frozen=True)
class VaeSpec:
    """Architecture of the VAE.

    Attributes:
        patch: Patch side in cells (a power-of-two multiple of 8: 16, 32, 64, 128).
        latent_channels: Channels ``c`` of the ``8 × 8 × c`` latent.
        widths: Channels of the encoder's levels, finest first (one per halving; the last is
            reused when there are more halvings than widths).
    """

    patch: int = 64
    latent_channels: int = 4
    widths: tuple[int, ...] = (32, 64, 96)

    def __post_init__(self) -> None:
        levels = math.log2(self.patch / LATENT_GRID) if self.patch >= LATENT_GRID else -1
        if levels < 1 or levels != int(levels):
            raise ConfigError(
                f"VAE patch must be 8 times a power of two (16, 32, 64, ...), got {self.patch}"
            )
        if self.latent_channels < 1 or not self.widths or min(self.widths) < 1:
            raise ConfigError(
                f"VAE latent_channels and widths must be >= 1, got {self.latent_channels}, "
                f"{self.widths}"
            )

    @property
    def levels(self) -> int:
        return int(math.log2(self.patch // LATENT_GRID))

    def width(self, level: int) -> int:
        return self.widths[min(level, len(self.widths) - 1)]


class ResBlock(nnx.Module):
    """Two 3×3 convolutions with SiLU, plus the (projected) input."""

    def __init__(self, cin: int, cout: int, *, rngs: nnx.Rngs) -> None:
        self.conv1 = nnx.Conv(cin, cout, (3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(cout, cout, (3, 3), rngs=rngs)
        self.proj = nnx.Conv(cin, cout, (1, 1), rngs=rngs) if cin != cout else None

    def __call__(self, x: Float[Array, "*b h w c"]) -> Array:
        h = self.conv2(jax.nn.silu(self.conv1(jax.nn.silu(x))))
        return h + (x if self.proj is None else self.proj(x))


class HeightmapVAE(nnx.Module):
    """Convolutional VAE on ``(*b, size, size)`` patches (normalised elevation).

    Args:
        spec: Architecture.
        rngs: Initialisation.
    """

    def __init__(self, spec: VaeSpec, *, rngs: nnx.Rngs) -> None:
        self.spec = spec
        w = [spec.width(i) for i in range(spec.levels)]
        self.enc_in = nnx.Conv(1, w[0], (3, 3), rngs=rngs)
        self.enc_blocks = nnx.List(
            [ResBlock(w[max(i - 1, 0)], w[i], rngs=rngs) for i in range(spec.levels)]
        )
        self.enc_down = nnx.List(
            [nnx.Conv(w[i], w[i], (3, 3), strides=(2, 2), rngs=rngs) for i in range(spec.levels)]
        )
        self.enc_mid = ResBlock(w[-1], w[-1], rngs=rngs)
        self.enc_out = nnx.Conv(w[-1], 2 * spec.latent_channels, (1, 1), rngs=rngs)
        self.dec_in = nnx.Conv(spec.latent_channels, w[-1], (3, 3), rngs=rngs)
        self.dec_mid = ResBlock(w[-1], w[-1], rngs=rngs)
        rev = w[::-1]
        self.dec_up = nnx.List(
            [nnx.Conv(rev[max(i - 1, 0)], rev[i], (3, 3), rngs=rngs) for i in range(spec.levels)]
        )
        self.dec_blocks = nnx.List(
            [ResBlock(rev[i], rev[i], rngs=rngs) for i in range(spec.levels)]
        )
        self.dec_out = nnx.Conv(rev[-1], 1, (3, 3), rngs=rngs)

    def encode(self, x: Float[Array, "*b size size"]) -> tuple[Array, Array]:
        """Posterior mean and log-variance, each ``(*b, size/2^L, size/2^L, c)``."""
        h = self.enc_in(x[..., None])
        for block, down in zip(self.enc_blocks, self.enc_down, strict=True):
            h = down(block(h))
        h = self.enc_out(jax.nn.silu(self.enc_mid(h)))
        mean, logvar = jnp.split(h, 2, axis=-1)
        return mean, jnp.clip(logvar, -20.0, 10.0)

    def decode(self, z: Float[Array, "*b m n c"]) -> Float[Array, "*b M N"]:
        """Heightmap of a latent grid of any size (``M = m · 2^L``)."""
        h = self.dec_mid(self.dec_in(z))
        for up, block in zip(self.dec_up, self.dec_blocks, strict=True):
            h = jnp.repeat(jnp.repeat(h, 2, axis=-3), 2, axis=-2)
            h = block(up(h))
        return self.dec_out(jax.nn.silu(h))[..., 0]

    def __call__(
        self, x: Float[Array, "*b size size"], key: jax.Array
    ) -> tuple[Array, Array, Array]:
        """``(reconstruction, mean, logvar)`` with a reparameterised posterior sample."""
        mean, logvar = self.encode(x)
        eps = jax.random.normal(key, mean.shape, mean.dtype)
        return self.decode(mean + jnp.exp(0.5 * logvar) * eps), mean, logvar


def kl_divergence(mean: Array, logvar: Array) -> Array:
    """KL(N(mean, exp(logvar)) ‖ N(0, 1)) per element, averaged."""
    return 0.5 * jnp.mean(mean * mean + jnp.exp(logvar) - 1.0 - logvar)


def _diffs(x: Array) -> tuple[Array, Array]:
    return x[..., 1:, :] - x[..., :-1, :], x[..., :, 1:] - x[..., :, :-1]


def vae_loss(
    x: Float[Array, "*b n n"], recon: Array, mean: Array, logvar: Array, *, beta: float,
    grad_weight: float,
) -> tuple[Array, dict[str, Array]]:  # fmt: skip
    """Total loss and its parts (``mse``, ``grad_mse``, ``kl``); see the module docstring."""
    mse = jnp.mean((recon - x) ** 2)
    (ry, rx), (xy, xx) = _diffs(recon), _diffs(x)
    grad_mse = 0.5 * (jnp.mean((ry - xy) ** 2) + jnp.mean((rx - xx) ** 2))
    kl = kl_divergence(mean, logvar)
    return mse + grad_weight * grad_mse + beta * kl, {"mse": mse, "grad_mse": grad_mse, "kl": kl}
