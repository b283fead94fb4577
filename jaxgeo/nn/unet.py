"""U-Net (Ronneberger et al. 2015), channels-last, Flax NNX: the from-scratch baseline of dense
regression and segmentation.

Layout as the widely used PyTorch implementation (milesial/Pytorch-UNet, ``bilinear=False``):
each level is two ``3x3 conv (no bias) -> batch norm -> ReLU``; down by 2x2 max pooling; up by
a 2x2 transposed convolution halving the channels, concatenated with the skip connection, then
two convolutions; a ``1x1`` convolution to the outputs. Widths ``base * 2**level``; with
``base=64`` and 4 levels it is the paper's 31 M-parameter network, with ``base=32`` the 7.8 M one
the biomass study trains. Image sides must be multiples of ``2**levels``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

__all__ = ["DoubleConv", "UNet"]


class DoubleConv(nnx.Module):
    """Two ``3x3 conv -> BN -> ReLU``."""

    def __init__(self, cin: int, cout: int, *, rngs: nnx.Rngs) -> None:
        self.conv1 = nnx.Conv(cin, cout, (3, 3), padding="SAME", use_bias=False, rngs=rngs)
        self.bn1 = nnx.BatchNorm(cout, momentum=0.9, rngs=rngs)
        self.conv2 = nnx.Conv(cout, cout, (3, 3), padding="SAME", use_bias=False, rngs=rngs)
        self.bn2 = nnx.BatchNorm(cout, momentum=0.9, rngs=rngs)

    def __call__(self, x: Array, *, train: bool = False) -> Array:
        x = jax.nn.relu(self.bn1(self.conv1(x), use_running_average=not train))
        return jax.nn.relu(self.bn2(self.conv2(x), use_running_average=not train))


def _max_pool2(x: Array) -> Array:
    b, h, w, c = x.shape
    return jnp.max(x.reshape(b, h // 2, 2, w // 2, 2, c), axis=(2, 4))


class UNet(nnx.Module):
    """U-Net for dense outputs.

    Args:
        in_channels: Input bands.
        out_channels: Output channels (1 for biomass regression).
        base: Channels of the first level.
        levels: Down-sampling steps (4 in the paper).
        rngs: Initialisation randomness.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int = 1,
        base: int = 32,
        levels: int = 4,
        *,
        rngs: nnx.Rngs,
    ) -> None:
        if levels < 1 or base < 1:
            raise ValueError(f"UNet needs levels >= 1 and base >= 1, got {levels}, {base}")
        self.levels = levels
        widths = [base * 2**i for i in range(levels + 1)]
        self.inc = DoubleConv(in_channels, widths[0], rngs=rngs)
        self.downs = nnx.List(
            [DoubleConv(widths[i], widths[i + 1], rngs=rngs) for i in range(levels)]
        )
        self.ups = nnx.List(
            [
                nnx.ConvTranspose(
                    widths[i + 1], widths[i], (2, 2), strides=(2, 2), padding="VALID", rngs=rngs
                )
                for i in reversed(range(levels))
            ]
        )
        self.up_convs = nnx.List(
            [DoubleConv(2 * widths[i], widths[i], rngs=rngs) for i in reversed(range(levels))]
        )
        self.outc = nnx.Conv(widths[0], out_channels, (1, 1), rngs=rngs)

    def __call__(
        self, x: Float[Array, "b h w c"], *, train: bool = False
    ) -> Float[Array, "b h w k"]:
        h, w = x.shape[1:3]
        m = 2**self.levels
        if h % m or w % m:
            raise ValueError(f"UNet input {h}x{w} must be a multiple of 2**levels = {m}")
        skips = [self.inc(x, train=train)]
        for down in self.downs:
            skips.append(down(_max_pool2(skips[-1]), train=train))
        y = skips.pop()
        for up, conv in zip(self.ups, self.up_convs, strict=True):
            y = conv(jnp.concatenate([skips.pop(), up(y)], axis=-1), train=train)
        return self.outc(y)
