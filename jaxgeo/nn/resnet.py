"""ResNet with bottleneck blocks (He et al. 2016), channels-last, Flax NNX.

Batch normalisation runs on batch statistics when called with ``train=True`` (and updates its
running averages in place, as NNX modules do) and on the running averages otherwise. The
residual branch's last batch norm starts at zero scale (Goyal et al. 2017), so every block
starts as the identity.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

__all__ = ["Bottleneck", "ResNet", "resnet_stem"]


def _bn(features: int, rngs: nnx.Rngs, *, zero: bool = False) -> nnx.BatchNorm:
    return nnx.BatchNorm(
        features,
        momentum=0.9,
        epsilon=1e-5,
        scale_init=nnx.initializers.zeros if zero else nnx.initializers.ones,
        rngs=rngs,
    )


def _conv(cin: int, cout: int, k: int, stride: int, rngs: nnx.Rngs) -> nnx.Conv:
    return nnx.Conv(
        cin,
        cout,
        (k, k),
        strides=(stride, stride),
        padding=((k // 2, k // 2), (k // 2, k // 2)),
        use_bias=False,
        kernel_init=nnx.initializers.variance_scaling(2.0, "fan_out", "normal"),
        rngs=rngs,
    )


class Bottleneck(nnx.Module):
    """1x1 reduce, 3x3 (carrying the stride, as torchvision's ResNet v1.5), 1x1 expand by 4."""

    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1, *, rngs: nnx.Rngs) -> None:
        cout = width * self.expansion
        self.conv1 = _conv(cin, width, 1, 1, rngs)
        self.bn1 = _bn(width, rngs)
        self.conv2 = _conv(width, width, 3, stride, rngs)
        self.bn2 = _bn(width, rngs)
        self.conv3 = _conv(width, cout, 1, 1, rngs)
        self.bn3 = _bn(cout, rngs, zero=True)
        self.has_proj = stride != 1 or cin != cout
        if self.has_proj:
            self.proj = _conv(cin, cout, 1, stride, rngs)
            self.proj_bn = _bn(cout, rngs)

    def __call__(self, x: Float[Array, "b h w c"], *, train: bool = False) -> Array:
        ura = not train
        y = jax.nn.relu(self.bn1(self.conv1(x), use_running_average=ura))
        y = jax.nn.relu(self.bn2(self.conv2(y), use_running_average=ura))
        y = self.bn3(self.conv3(y), use_running_average=ura)
        if self.has_proj:
            x = self.proj_bn(self.proj(x), use_running_average=ura)
        return jax.nn.relu(x + y)


class _ImageStem(nnx.Module):
    """The ImageNet stem: 7x7 stride-2 conv, batch norm, ReLU, 3x3 stride-2 max pool."""

    def __init__(self, cin: int, cout: int, *, rngs: nnx.Rngs) -> None:
        self.conv = _conv(cin, cout, 7, 2, rngs)
        self.bn = _bn(cout, rngs)
        self.out_features = cout
        self.stride = 4

    def __call__(self, x: Array, *, train: bool = False) -> Array:
        y = jax.nn.relu(self.bn(self.conv(x), use_running_average=not train))
        return nnx.max_pool(y, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))


class _BottleneckStem(nnx.Module):
    """One stride-2 bottleneck ``cin -> 4 * width`` (SpectralEarth's stem after the adapter)."""

    def __init__(self, cin: int, width: int, *, rngs: nnx.Rngs) -> None:
        self.block = Bottleneck(cin, width, 2, rngs=rngs)
        self.out_features = width * Bottleneck.expansion
        self.stride = 2

    def __call__(self, x: Array, *, train: bool = False) -> Array:
        return self.block(x, train=train)


def resnet_stem(kind: str, cin: int, width: int, *, rngs: nnx.Rngs) -> _ImageStem | _BottleneckStem:
    """``"image"``: 7x7 conv + max pool to ``width`` channels (stride 4); ``"bottleneck"``: a
    stride-2 bottleneck to ``4 * width`` channels."""
    if kind == "image":
        return _ImageStem(cin, width, rngs=rngs)
    if kind == "bottleneck":
        return _BottleneckStem(cin, width, rngs=rngs)
    raise ValueError(f"ResNet stem must be 'image' or 'bottleneck', got {kind!r}")


class ResNet(nnx.Module):
    """Bottleneck ResNet: a stem, four stages, global average pooling.

    Args:
        in_channels: Input channels.
        blocks: Blocks per stage (ResNet-50: ``(3, 4, 6, 3)``).
        width: Width of the first stage (64 for ResNet-50); stage i has ``width * 2**i``,
            and outputs ``4 * width * 2**i`` channels.
        stem: ``"image"`` or ``"bottleneck"`` (see :func:`resnet_stem`).
        rngs: Initialisation randomness.

    ``resnet(x)`` gives the pooled embedding ``(b, 32 * width)``; :meth:`feature_map` the last
    stage ``(b, H/s, W/s, 32 * width)`` with ``s = stem stride * 8``.
    """

    def __init__(
        self,
        in_channels: int,
        blocks: Sequence[int] = (3, 4, 6, 3),
        width: int = 64,
        *,
        stem: str = "image",
        rngs: nnx.Rngs,
    ) -> None:
        self.stem: _ImageStem | _BottleneckStem = resnet_stem(stem, in_channels, width, rngs=rngs)
        cin = self.stem.out_features
        layers = []
        for i, n in enumerate(blocks):
            w = width * 2**i
            for j in range(n):
                layers.append(Bottleneck(cin, w, 2 if (j == 0 and i > 0) else 1, rngs=rngs))
                cin = w * Bottleneck.expansion
        self.layers = nnx.List(layers)
        self.out_features = cin
        self.stride = self.stem.stride * 2 ** (len(blocks) - 1)

    def feature_map(self, x: Float[Array, "b h w c"], *, train: bool = False) -> Array:
        y = self.stem(x, train=train)
        for layer in self.layers:
            y = layer(y, train=train)
        return y

    def __call__(self, x: Float[Array, "b h w c"], *, train: bool = False) -> Float[Array, "b d"]:
        return jnp.mean(self.feature_map(x, train=train), axis=(1, 2))
