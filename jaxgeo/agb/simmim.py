"""SimMIM masked image modelling (Xie et al. 2022) for Swin encoders on multispectral images.

The study's foundation model is a Swin-B pretrained with SimMIM on HLS imagery. SimMIM:

1. masks a random ``mask_ratio`` of ``mask_patch x mask_patch`` pixel blocks (SimMIM: 60 % of
   32 x 32 blocks);
2. replaces the patch embeddings under the mask by a learned mask token and runs the whole
   encoder on the full token grid (unlike MAE, which drops the masked tokens);
3. predicts the raw pixels of every band from the last stage with a one-layer head (a ``1x1``
   convolution to ``stride**2 * bands`` channels and a pixel shuffle by the total stride);
4. takes the L1 loss over the masked pixels only.

The mask draw and the block layout reuse :mod:`jaxgeo.hsi.ssl`'s MAE pieces
(:func:`~jaxgeo.hsi.ssl.random_masking`, :func:`~jaxgeo.hsi.ssl.patchify`) and the spatial
augmentation :func:`jaxgeo.hsi.augment.augment_batch` (random resized crop, flips, rotations),
so there is one implementation of each. The object follows :mod:`jaxgeo.hsi.ssl`'s method
interface (``build``, ``init_state``, ``make_loss``, ``make_after_update``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, Float

from jaxgeo.hsi.augment import augment_batch
from jaxgeo.hsi.ssl import patchify, random_masking
from jaxgeo.nn.swin import Swin
from jaxgeo.train import ModuleDef

from .models import pixel_shuffle

__all__ = ["SimMIM", "SimMIMNet", "block_mask", "masked_l1"]

PyTree = Any


def block_mask(
    key: jax.Array, b: int, grid_h: int, grid_w: int, mask_ratio: float
) -> Float[Array, "b gh gw"]:
    """Random block mask on a ``grid_h x grid_w`` grid of mask blocks (1 = masked).

    Each sample masks ``n - int(n * (1 - mask_ratio))`` of its ``n`` blocks, drawn by
    :func:`jaxgeo.hsi.ssl.random_masking` (MAE's per-sample shuffle).
    """
    _, _, mask = random_masking(key, b, grid_h * grid_w, mask_ratio)
    return mask.reshape(b, grid_h, grid_w)


def _upsample_mask(mask: Array, factor: int) -> Array:
    return jnp.repeat(jnp.repeat(mask, factor, axis=1), factor, axis=2)


def masked_l1(
    recon: Float[Array, "b h w c"], x: Float[Array, "b h w c"], mask: Float[Array, "b gh gw"]
) -> Float[Array, ""]:
    """Mean absolute error over the pixels (and bands) of masked blocks.

    ``mask`` is on the block grid; block ``(i, j)`` covers pixels
    ``[i*p, (i+1)*p) x [j*p, (j+1)*p)`` with ``p = h / gh``. Blocks are compared in
    :func:`~jaxgeo.hsi.ssl.patchify` order (row-major), each block's error the mean over its
    pixels and bands, then averaged over the masked blocks.
    """
    p = x.shape[1] // mask.shape[1]
    per_block = jnp.mean(jnp.abs(patchify(recon, p) - patchify(x, p)), axis=-1)
    m = mask.reshape(mask.shape[0], -1).astype(per_block.dtype)
    return jnp.sum(per_block * m) / jnp.maximum(jnp.sum(m), 1.0)


class SimMIMNet(nnx.Module):
    """A Swin encoder with a mask token and SimMIM's one-layer pixel head."""

    def __init__(self, encoder: Swin, *, rngs: nnx.Rngs) -> None:
        if not isinstance(encoder, Swin):
            raise ValueError(f"SimMIM here needs a Swin encoder, got {type(encoder).__name__}")
        self.encoder = encoder
        c = encoder.size.embed_dim
        self.mask_token = nnx.Param(jnp.zeros((1, 1, 1, c), jnp.float32))
        self.stride = encoder.strides[-1]
        self.head = nnx.Conv(
            encoder.out_features,
            self.stride * self.stride * encoder.in_channels,
            (1, 1),
            rngs=rngs,
        )

    def __call__(
        self, x: Float[Array, "b h w c"], mask: Float[Array, "b gh gw"]
    ) -> Float[Array, "b h w c"]:
        """Reconstruction of ``x`` from the image with the blocks of ``mask`` hidden."""
        t = self.encoder.embed(x)
        factor = t.shape[1] // mask.shape[1]
        m = _upsample_mask(mask, factor)[..., None].astype(t.dtype)
        t = t * (1.0 - m) + self.mask_token[...].astype(t.dtype) * m
        z = self.encoder.encode(t)[-1]
        y = pixel_shuffle(self.head(z), self.stride)
        return y[:, : x.shape[1], : x.shape[2]]


@dataclasses.dataclass(frozen=True)
class SimMIM:
    """SimMIM settings.

    Attributes:
        mask_ratio: Fraction of blocks masked (0.6).
        mask_patch: Block side in pixels (32); a multiple of the encoder patch that divides
            the crop size.
        crop_scale: Area range of the random resized crop (SimMIM: 0.67-1).
    """

    mask_ratio: float = 0.6
    mask_patch: int = 32
    crop_scale: tuple[float, float] = (0.67, 1.0)

    name = "simmim"

    def __post_init__(self) -> None:
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"simmim mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if self.mask_patch < 1:
            raise ValueError(f"simmim mask_patch must be >= 1, got {self.mask_patch}")

    def check(self, encoder_patch: int, crop: int) -> None:
        """Raise ValueError when the block size does not fit the encoder patch and the crop."""
        if self.mask_patch % encoder_patch or crop % self.mask_patch:
            raise ValueError(
                f"simmim mask_patch {self.mask_patch} must be a multiple of the encoder patch "
                f"{encoder_patch} and divide the crop size {crop}"
            )

    def build(self, encoder: Swin, rngs: nnx.Rngs) -> SimMIMNet:
        return SimMIMNet(encoder, rngs=rngs)

    def init_state(self, params: PyTree, rest: PyTree, key: jax.Array) -> dict:
        del params, key
        return {"rest": rest}

    def make_loss(self, mdef: ModuleDef) -> Callable:
        """``loss(params, state, batch, key) -> (loss, (state, metrics))`` on ``batch["x"]``."""

        def loss_fn(params, state, batch, key):
            x = batch["x"]
            k_aug, k_mask = jax.random.split(key)
            view = augment_batch(k_aug, x, x.shape[1], self.crop_scale)
            g = view.shape[1] // self.mask_patch
            mask = block_mask(
                k_mask, x.shape[0], g, view.shape[2] // self.mask_patch, self.mask_ratio
            )
            model = mdef.merge(params, state["rest"])
            recon = model(view, mask)
            loss = masked_l1(recon, view, mask)
            return loss, ({**state, "rest": mdef.rest(model)}, {})

        return loss_fn

    def make_after_update(self, total_steps: int = 0) -> None:
        del total_steps
        return None
