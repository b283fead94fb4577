"""Task heads on top of encoders: linear, MLP, and light segmentation heads (channels-last)."""

from __future__ import annotations

import jax
from flax import nnx
from jaxtyping import Array, Float

__all__ = ["FCNHead", "LinearHead", "LinearSegHead", "MLPHead", "upsample_to"]


def upsample_to(x: Float[Array, "b h w c"], height: int, width: int) -> Float[Array, "b H W c"]:
    """Bilinear resize of a feature or logit map to ``height x width``."""
    if x.shape[1:3] == (height, width):
        return x
    return jax.image.resize(x, (x.shape[0], height, width, x.shape[3]), "bilinear")


class LinearHead(nnx.Module):
    """Linear classifier on an embedding (linear probing)."""

    def __init__(self, cin: int, n_classes: int, *, rngs: nnx.Rngs) -> None:
        self.fc = nnx.Linear(cin, n_classes, rngs=rngs)

    def __call__(self, z: Float[Array, "b d"], *, train: bool = False) -> Float[Array, "b k"]:
        del train
        return self.fc(z)


class MLPHead(nnx.Module):
    """Two-layer MLP classifier (hidden ReLU layer)."""

    def __init__(self, cin: int, n_classes: int, hidden: int = 512, *, rngs: nnx.Rngs) -> None:
        self.fc1 = nnx.Linear(cin, hidden, rngs=rngs)
        self.fc2 = nnx.Linear(hidden, n_classes, rngs=rngs)

    def __call__(self, z: Float[Array, "b d"], *, train: bool = False) -> Float[Array, "b k"]:
        del train
        return self.fc2(jax.nn.relu(self.fc1(z)))


class LinearSegHead(nnx.Module):
    """Per-location linear classifier (a 1x1 conv) upsampled bilinearly to the image size."""

    def __init__(self, cin: int, n_classes: int, *, rngs: nnx.Rngs) -> None:
        self.conv = nnx.Conv(cin, n_classes, (1, 1), rngs=rngs)

    def __call__(
        self, f: Float[Array, "b h w d"], height: int, width: int, *, train: bool = False
    ) -> Float[Array, "b H W k"]:
        del train
        return upsample_to(self.conv(f), height, width)


class FCNHead(nnx.Module):
    """Light FCN head (Long et al. 2015, as torchvision's ``FCNHead``): 3x3 conv to ``hidden``,
    batch norm, ReLU, 1x1 conv to the classes, bilinear upsampling to the image size."""

    def __init__(self, cin: int, n_classes: int, hidden: int = 256, *, rngs: nnx.Rngs) -> None:
        self.conv = nnx.Conv(cin, hidden, (3, 3), padding="SAME", use_bias=False, rngs=rngs)
        self.bn = nnx.BatchNorm(hidden, momentum=0.9, rngs=rngs)
        self.cls = nnx.Conv(hidden, n_classes, (1, 1), rngs=rngs)

    def __call__(
        self, f: Float[Array, "b h w d"], height: int, width: int, *, train: bool = False
    ) -> Float[Array, "b H W k"]:
        y = jax.nn.relu(self.bn(self.conv(f), use_running_average=not train))
        return upsample_to(self.cls(y), height, width)
