"""Vision transformer pieces (Dosovitskiy et al. 2021), channels-last, Flax NNX.

Images are ``(batch, H, W, C)``; a :class:`PatchEmbed` cuts them into ``p x p`` patches and
projects each to ``width`` features; position embeddings are fixed 2-D sin-cos (MAE, He et al.
2022, appendix A.1) computed for the grid size of each call, so the same model takes global
and local crops of different sizes (DINO's multi-crop) without interpolating a table; a learned
table is available too (``pos_embed="learned"``) and is then resized bilinearly.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

__all__ = [
    "VIT_SIZES",
    "Block",
    "PatchEmbed",
    "ViT",
    "ViTSize",
    "sincos_pos_embed_2d",
]


@dataclasses.dataclass(frozen=True)
class ViTSize:
    """Width, depth and heads of a ViT."""

    width: int
    depth: int
    heads: int
    mlp_ratio: float = 4.0


# ViT-T/S/B as in DeiT (Touvron et al. 2021) and ViT; "tiny" and "micro" are for tests and CI.
VIT_SIZES: dict[str, ViTSize] = {
    "t": ViTSize(192, 12, 3),
    "s": ViTSize(384, 12, 6),
    "b": ViTSize(768, 12, 12),
    "tiny": ViTSize(32, 2, 2),
}


def sincos_pos_embed_2d(grid_h: int, grid_w: int, width: int) -> np.ndarray:
    """Fixed 2-D sin-cos position embedding, ``(grid_h * grid_w, width)`` float32.

    Half of the features encode the row, half the column, each as sines and cosines of
    ``pos / 10000**(2i/d)`` (Vaswani et al. 2017, as MAE uses it). ``width`` must be a
    multiple of 4.
    """
    if width % 4:
        raise ValueError(f"sin-cos position embedding width must be a multiple of 4, got {width}")
    quarter = width // 4
    omega = 1.0 / 10000.0 ** (np.arange(quarter, dtype=np.float64) / quarter)
    rows, cols = np.meshgrid(np.arange(grid_h), np.arange(grid_w), indexing="ij")

    def embed(pos: np.ndarray) -> np.ndarray:
        angles = pos.reshape(-1)[:, None] * omega[None, :]
        return np.concatenate([np.sin(angles), np.cos(angles)], axis=1)

    return np.concatenate([embed(rows), embed(cols)], axis=1).astype(np.float32)


class PatchEmbed(nnx.Module):
    """Non-overlapping ``patch x patch`` patches projected to ``width`` (a strided conv)."""

    def __init__(self, in_channels: int, width: int, patch: int, *, rngs: nnx.Rngs) -> None:
        self.patch = patch
        self.proj = nnx.Conv(
            in_channels, width, (patch, patch), strides=(patch, patch), padding="VALID", rngs=rngs
        )

    def __call__(self, x: Float[Array, "b h w c"]) -> Float[Array, "b gh gw d"]:
        h, w = x.shape[1:3]
        if h % self.patch or w % self.patch:
            raise ValueError(
                f"image size {h}x{w} must be a multiple of the patch size {self.patch}"
            )
        return self.proj(x)


class Mlp(nnx.Module):
    def __init__(self, width: int, hidden: int, *, rngs: nnx.Rngs) -> None:
        self.fc1 = nnx.Linear(width, hidden, rngs=rngs)
        self.fc2 = nnx.Linear(hidden, width, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        return self.fc2(jax.nn.gelu(self.fc1(x), approximate=False))


class Block(nnx.Module):
    """Pre-norm transformer block: ``x + MHA(LN(x))``, then ``x + MLP(LN(x))``."""

    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0, *, rngs: nnx.Rngs) -> None:
        self.norm1 = nnx.LayerNorm(width, epsilon=1e-6, rngs=rngs)
        self.attn = nnx.MultiHeadAttention(
            heads, width, decode=False, deterministic=True, keep_rngs=False, rngs=rngs
        )
        self.norm2 = nnx.LayerNorm(width, epsilon=1e-6, rngs=rngs)
        self.mlp = Mlp(width, int(width * mlp_ratio), rngs=rngs)

    def __call__(self, x: Float[Array, "b n d"]) -> Float[Array, "b n d"]:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViT(nnx.Module):
    """Vision transformer encoder with a class token.

    Args:
        in_channels: Input channels C.
        size: Width, depth, heads.
        patch: Patch size p; H and W must be multiples of it.
        pos_embed: ``"sincos"`` (fixed, any grid) or ``"learned"`` (a table for
            ``grid x grid`` patches, resized bilinearly for other grids).
        grid: Patches per side the learned table is made for.
        rngs: Initialisation randomness.

    Call ``vit(x)`` for the class-token embedding ``(b, width)``, :meth:`feature_map` for the
    patch tokens as a map ``(b, H/p, W/p, width)``, :meth:`tokens` for everything.
    """

    def __init__(
        self,
        in_channels: int,
        size: ViTSize,
        patch: int = 4,
        *,
        pos_embed: str = "sincos",
        grid: int = 32,
        rngs: nnx.Rngs,
    ) -> None:
        if pos_embed not in ("sincos", "learned"):
            raise ValueError(f"pos_embed must be 'sincos' or 'learned', got {pos_embed!r}")
        self.size = size
        self.patch = patch
        self.width = size.width
        self.out_features = size.width
        self.stride = patch
        self.pos_kind = pos_embed
        self.patch_embed = PatchEmbed(in_channels, size.width, patch, rngs=rngs)
        self.cls_token = nnx.Param(
            0.02 * jax.random.normal(rngs.params(), (1, 1, size.width), jnp.float32)
        )
        if pos_embed == "learned":
            self.pos_table = nnx.Param(
                0.02 * jax.random.normal(rngs.params(), (grid, grid, size.width), jnp.float32)
            )
        self.blocks = nnx.List(
            [Block(size.width, size.heads, size.mlp_ratio, rngs=rngs) for _ in range(size.depth)]
        )
        self.norm = nnx.LayerNorm(size.width, epsilon=1e-6, rngs=rngs)

    def pos_embed(self, gh: int, gw: int, dtype) -> Float[Array, "n d"]:
        """Position embedding of a ``gh x gw`` patch grid, ``(gh * gw, width)``."""
        if self.pos_kind == "sincos":
            return jnp.asarray(sincos_pos_embed_2d(gh, gw, self.width), dtype)
        table = self.pos_table[...]
        if table.shape[:2] != (gh, gw):
            table = jax.image.resize(table, (gh, gw, self.width), "bilinear")
        return table.reshape(gh * gw, self.width).astype(dtype)

    def embed_patches(self, x: Float[Array, "b h w c"]) -> tuple[Float[Array, "b n d"], int, int]:
        """Patch tokens with position embeddings added, and the grid size ``(gh, gw)``."""
        t = self.patch_embed(x)
        b, gh, gw, d = t.shape
        t = t.reshape(b, gh * gw, d)
        return t + self.pos_embed(gh, gw, t.dtype)[None], gh, gw

    def encode(self, tokens: Float[Array, "b n d"]) -> Float[Array, "b n+1 d"]:
        """Prepend the class token, run the blocks and the final norm."""
        cls = jnp.broadcast_to(
            self.cls_token[...].astype(tokens.dtype), (tokens.shape[0], 1, self.width)
        )
        x = jnp.concatenate([cls, tokens], axis=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def tokens(self, x: Float[Array, "b h w c"], *, train: bool = False) -> Float[Array, "b n d"]:
        """All output tokens, class token first."""
        del train  # no dropout or batch statistics in this model
        t, _, _ = self.embed_patches(x)
        return self.encode(t)

    def feature_map(
        self, x: Float[Array, "b h w c"], *, train: bool = False
    ) -> Float[Array, "b gh gw d"]:
        """Patch tokens arranged on their grid, for dense heads."""
        t, gh, gw = self.embed_patches(x)
        out = self.encode(t)
        return out[:, 1:].reshape(x.shape[0], gh, gw, self.width)

    def __call__(self, x: Float[Array, "b h w c"], *, train: bool = False) -> Float[Array, "b d"]:
        return self.tokens(x, train=train)[:, 0]
