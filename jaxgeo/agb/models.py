"""Biomass regression models: a (pretrained) encoder with a light decoder, and a U-Net.

Assemblies (``kind``):

- ``frozen``: encoder weights fixed (no gradient reaches them), only the decoder trains;
- ``finetune``: encoder and decoder train;
- ``unet``: a U-Net from scratch (:class:`jaxgeo.nn.UNet`).

Decoders for the encoder models:

- ``conv`` (the study's): a single ``3x3`` convolution from the encoder's last feature map to
  ``r**2`` channels, rearranged by pixel shuffle (Shi et al. 2016) into an ``r``-times finer
  one-channel map, then bilinear upsampling to the image size. For Swin-B (1024 channels,
  ``r = 8``) this is 1024 * 9 * 64 + 64 = 589,888 parameters: the study's "0.6 M trainable".
- ``upernet``: UPerNet (Xiao et al. 2018) over all stages (pyramid pooling on the last, a
  top-down feature pyramid, fusion at stride 4) with a pixel-shuffle output head, as the
  released model's heavier head.

Outputs are biomass in Mg/ha: the network's raw output ``z`` is mapped to ``100 z + 100``
(a fixed affine map that puts an untrained network's outputs near the middle of the label
range, so training does not spend its first steps learning an offset of 100).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

from jaxgeo.errors import ConfigError
from jaxgeo.nn import VIT_SIZES, ViT
from jaxgeo.nn.swin import SWIN_SIZES, Swin
from jaxgeo.nn.unet import UNet

__all__ = [
    "DECODERS",
    "ENCODERS",
    "KINDS",
    "AGBModel",
    "ConvDecoder",
    "ModelConfig",
    "UPerNetDecoder",
    "adaptive_avg_pool",
    "make_encoder",
    "make_model",
    "pixel_shuffle",
]

KINDS: tuple[str, ...] = ("frozen", "finetune", "unet")
DECODERS: tuple[str, ...] = ("conv", "upernet")
ENCODERS: tuple[str, ...] = tuple(f"swin-{k}" for k in SWIN_SIZES) + tuple(
    f"vit-{k}" for k in VIT_SIZES
)
OUT_SCALE_MG_HA = 100.0
OUT_SHIFT_MG_HA = 100.0


def pixel_shuffle(x: Float[Array, "b h w rrc"], r: int) -> Float[Array, "b hr wr c"]:
    """Depth to space: ``(b, h, w, r*r*c)`` -> ``(b, h*r, w*r, c)`` (channel order ``(i, j, c)``)."""
    b, h, w, d = x.shape
    c = d // (r * r)
    x = x.reshape(b, h, w, r, r, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h * r, w * r, c)


@functools.lru_cache(maxsize=64)
def _pool_matrix(n: int, s: int) -> np.ndarray:
    """``(s, n)`` averaging matrix of adaptive average pooling (PyTorch's bin edges)."""
    m = np.zeros((s, n), np.float32)
    for i in range(s):
        lo, hi = (i * n) // s, -(-((i + 1) * n) // s)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def adaptive_avg_pool(x: Float[Array, "b h w c"], s: int) -> Float[Array, "b s s c"]:
    """Average over ``s x s`` bins covering the map (bins overlap when ``s`` does not divide)."""
    ph = jnp.asarray(_pool_matrix(x.shape[1], s), x.dtype)
    pw = jnp.asarray(_pool_matrix(x.shape[2], s), x.dtype)
    return jnp.einsum("ih,bhwc,jw->bijc", ph, x, pw)


def _resize(x: Array, h: int, w: int) -> Array:
    if x.shape[1:3] == (h, w):
        return x
    return jax.image.resize(x, (x.shape[0], h, w, x.shape[3]), "bilinear")


class ConvDecoder(nnx.Module):
    """One ``3x3`` conv to ``r*r`` channels, pixel shuffle by ``r``, bilinear to the image size."""

    def __init__(self, cin: int, r: int = 8, *, rngs: nnx.Rngs) -> None:
        self.r = r
        self.conv = nnx.Conv(cin, r * r, (3, 3), padding="SAME", rngs=rngs)

    def __call__(
        self, feats: list[Array], height: int, width: int, *, train: bool = False
    ) -> Float[Array, "b H W"]:
        del train
        y = pixel_shuffle(self.conv(feats[-1]), self.r)
        return _resize(y, height, width)[..., 0]


class _ConvBNReLU(nnx.Module):
    def __init__(self, cin: int, cout: int, k: int, *, rngs: nnx.Rngs) -> None:
        self.conv = nnx.Conv(cin, cout, (k, k), padding="SAME", use_bias=False, rngs=rngs)
        self.bn = nnx.BatchNorm(cout, momentum=0.9, rngs=rngs)

    def __call__(self, x: Array, *, train: bool = False) -> Array:
        return jax.nn.relu(self.bn(self.conv(x), use_running_average=not train))


class UPerNetDecoder(nnx.Module):
    """UPerNet over multi-scale features with a pixel-shuffle head.

    Pyramid pooling (bins 1, 2, 3, 6) on the last map; lateral ``1x1`` convs and a top-down
    pathway (upsample and add); a ``3x3`` conv per level; all levels upsampled to the finest
    and fused by a ``3x3`` conv; a ``3x3`` conv to ``r*r`` channels, pixel shuffle by ``r``,
    bilinear to the image size.
    """

    def __init__(
        self,
        in_channels: tuple[int, ...],
        width: int = 128,
        r: int = 4,
        pool_scales: tuple[int, ...] = (1, 2, 3, 6),
        *,
        rngs: nnx.Rngs,
    ) -> None:
        self.r = r
        self.pool_scales = pool_scales
        top = in_channels[-1]
        self.ppm = nnx.List([_ConvBNReLU(top, width, 1, rngs=rngs) for _ in pool_scales])
        self.bottleneck = _ConvBNReLU(top + len(pool_scales) * width, width, 3, rngs=rngs)
        self.laterals = nnx.List([_ConvBNReLU(c, width, 1, rngs=rngs) for c in in_channels[:-1]])
        self.fpn = nnx.List([_ConvBNReLU(width, width, 3, rngs=rngs) for _ in in_channels[:-1]])
        self.fuse = _ConvBNReLU(len(in_channels) * width, width, 3, rngs=rngs)
        self.head = nnx.Conv(width, r * r, (3, 3), padding="SAME", rngs=rngs)

    def __call__(
        self, feats: list[Array], height: int, width: int, *, train: bool = False
    ) -> Float[Array, "b H W"]:
        top = feats[-1]
        th, tw = top.shape[1:3]
        pooled = [
            _resize(m(adaptive_avg_pool(top, s), train=train), th, tw)
            for m, s in zip(self.ppm, self.pool_scales, strict=True)
        ]
        levels = [lat(f, train=train) for lat, f in zip(self.laterals, feats[:-1], strict=True)]
        levels.append(self.bottleneck(jnp.concatenate([top, *pooled], axis=-1), train=train))
        for i in range(len(levels) - 1, 0, -1):
            h, w = levels[i - 1].shape[1:3]
            levels[i - 1] = levels[i - 1] + _resize(levels[i], h, w)
        outs = [conv(lv, train=train) for conv, lv in zip(self.fpn, levels[:-1], strict=True)]
        outs.append(levels[-1])
        h, w = outs[0].shape[1:3]
        fused = self.fuse(jnp.concatenate([_resize(o, h, w) for o in outs], axis=-1), train=train)
        y = pixel_shuffle(self.head(fused), self.r)
        return _resize(y, height, width)[..., 0]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What to build.

    Attributes:
        kind: ``frozen``, ``finetune`` or ``unet``.
        encoder: A name of :data:`ENCODERS` (``swin-micro`` for CPU; the study's ``swin-b``).
        decoder: ``conv`` (the study's single conv) or ``upernet``.
        patch: Encoder patch size.
        shuffle: Pixel-shuffle factor of the conv decoder (8: stride 32 -> 4).
        upernet_width: Channels of the UPerNet decoder.
        unet_base: U-Net first-level width (16 for CPU runs; 32 is the study's 7.8 M
            parameters).
        unet_levels: U-Net down-sampling steps.
        in_channels: Input bands (6 HLS bands).
    """

    kind: str = "frozen"
    encoder: str = "swin-micro"
    decoder: str = "conv"
    patch: int = 4
    shuffle: int = 8
    upernet_width: int = 128
    unet_base: int = 16
    unet_levels: int = 4
    in_channels: int = 6

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"model.kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.encoder not in ENCODERS:
            raise ConfigError(
                f"model.encoder must be one of {', '.join(ENCODERS)}, got {self.encoder!r}"
            )
        if self.decoder not in DECODERS:
            raise ConfigError(
                f"model.decoder must be one of {', '.join(DECODERS)}, got {self.decoder!r}"
            )
        for name in (
            "patch",
            "shuffle",
            "upernet_width",
            "unet_base",
            "unet_levels",
            "in_channels",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"model.{name} must be >= 1, got {getattr(self, name)}")

    @property
    def multiple(self) -> int:
        """Image sides must be multiples of this."""
        if self.kind == "unet":
            return 2**self.unet_levels
        return self.patch


def make_encoder(name: str, in_channels: int, patch: int, *, rngs: nnx.Rngs) -> Swin | ViT:
    """Swin (``swin-<size>``) or ViT (``vit-<size>``) encoder.

    Raises:
        ConfigError: Unknown name.
    """
    family, _, size = name.partition("-")
    if family == "swin" and size in SWIN_SIZES:
        return Swin(in_channels, SWIN_SIZES[size], patch, rngs=rngs)
    if family == "vit" and size in VIT_SIZES:
        return ViT(in_channels, VIT_SIZES[size], patch, rngs=rngs)
    raise ConfigError(f"encoder must be one of {', '.join(ENCODERS)}, got {name!r}")


def encoder_features(encoder: Swin | ViT, x: Array) -> list[Array]:
    """Multi-scale maps of a Swin; the single patch-token map of a ViT."""
    if isinstance(encoder, Swin):
        return encoder.features(x)
    return [encoder.feature_map(x)]


def _channels(encoder: Swin | ViT) -> tuple[int, ...]:
    return encoder.out_channels if isinstance(encoder, Swin) else (encoder.width,)


class AGBModel(nnx.Module):
    """Image ``(b, H, W, 6)`` -> biomass ``(b, H, W)`` Mg/ha.

    ``encoder`` and ``decoder`` attributes for the encoder kinds, ``unet`` for the U-Net; the
    trainable part is chosen by :func:`jaxgeo.agb.run.split_trainable` (the ``encoder``
    subtree is fixed in ``frozen`` mode).
    """

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs) -> None:
        self.kind = config.kind
        # Only the parts of this kind exist as attributes (NNX wants submodules assigned once).
        self.encoder: Swin | ViT
        self.decoder: ConvDecoder | UPerNetDecoder
        self.unet: UNet
        if config.kind == "unet":
            self.unet = UNet(config.in_channels, 1, config.unet_base, config.unet_levels, rngs=rngs)
            return
        self.encoder = make_encoder(config.encoder, config.in_channels, config.patch, rngs=rngs)
        chans = _channels(self.encoder)
        if config.decoder == "conv":
            self.decoder = ConvDecoder(chans[-1], config.shuffle, rngs=rngs)
        else:
            self.decoder = UPerNetDecoder(chans, config.upernet_width, rngs=rngs)

    def __call__(self, x: Float[Array, "b h w c"], *, train: bool = False) -> Float[Array, "b h w"]:
        h, w = x.shape[1:3]
        if self.kind == "unet":
            z = self.unet(x, train=train)[..., 0]
        else:
            feats = encoder_features(self.encoder, x)
            if self.kind == "frozen":
                # No gradient into the encoder (and no backward pass through it).
                feats = [jax.lax.stop_gradient(f) for f in feats]
            z = self.decoder(feats, h, w, train=train)
        return OUT_SCALE_MG_HA * z + OUT_SHIFT_MG_HA


def make_model(config: ModelConfig, *, rngs: nnx.Rngs) -> AGBModel:
    """The model ``config`` describes."""
    return AGBModel(config, rngs=rngs)
