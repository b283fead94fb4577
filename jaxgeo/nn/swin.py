"""Swin Transformer (Liu et al. 2021), channels-last, Flax NNX.

A hierarchical vision transformer: ``patch x patch`` patch embedding, then stages of blocks
that attend within non-overlapping ``window x window`` windows, every second block on windows
shifted by ``window // 2`` (with an attention mask so that tokens wrapped around by the cyclic
shift do not see each other), a learned relative position bias per head, and a patch merging
(2x2 neighbours concatenated, normalised, projected from 4C to 2C) between stages. Stage ``i``
works at stride ``patch * 2**i`` with ``embed_dim * 2**i`` channels; :meth:`Swin.features`
returns every stage's map (the multi-scale outputs dense decoders use).

Images of any size that is a multiple of the patch size are accepted: a stage whose map is no
larger than one window attends over the whole map without shifting (the original's rule), and
otherwise the map is zero-padded to a multiple of the window (as Swin's detection and
segmentation backbones do). The relative position table is made for the configured window and
serves any smaller window.

Sizes Swin-T/S/B follow the paper (Table 1 of Liu et al. 2021); ``micro`` and ``nano`` are CPU
sizes for smoke runs and tests. No dropout or stochastic depth (deterministic training on CPU).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float

__all__ = [
    "SWIN_SIZES",
    "PatchMerging",
    "Swin",
    "SwinBlock",
    "SwinSize",
    "WindowAttention",
    "relative_position_index",
    "shift_window_mask",
]

_init = nnx.initializers.truncated_normal(0.02)


@dataclasses.dataclass(frozen=True)
class SwinSize:
    """Widths and depths of a Swin Transformer.

    Attributes:
        embed_dim: Channels C of stage 0 (stage i has ``C * 2**i``).
        depths: Blocks per stage.
        heads: Attention heads per stage (each stage's channels must divide by them).
        window: Window side in tokens.
        mlp_ratio: Hidden width of the MLP over the channels.
    """

    embed_dim: int
    depths: tuple[int, ...]
    heads: tuple[int, ...]
    window: int = 7
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        if len(self.depths) != len(self.heads) or not self.depths:
            raise ValueError(
                f"Swin depths {self.depths} and heads {self.heads} must be of one length >= 1"
            )
        for i, h in enumerate(self.heads):
            if (self.embed_dim * 2**i) % h:
                raise ValueError(
                    f"Swin stage {i} width {self.embed_dim * 2**i} must divide by its {h} heads"
                )
        if self.window < 1:
            raise ValueError(f"Swin window must be >= 1, got {self.window}")

    @property
    def dims(self) -> tuple[int, ...]:
        """Channels of each stage's output."""
        return tuple(self.embed_dim * 2**i for i in range(len(self.depths)))


# Swin-T/S/B of Liu et al. 2021 (window 7, patch 4); micro/nano for CPU runs and tests.
SWIN_SIZES: dict[str, SwinSize] = {
    "t": SwinSize(96, (2, 2, 6, 2), (3, 6, 12, 24)),
    "s": SwinSize(96, (2, 2, 18, 2), (3, 6, 12, 24)),
    "b": SwinSize(128, (2, 2, 18, 2), (4, 8, 16, 32)),
    "micro": SwinSize(32, (2, 2, 2, 2), (1, 2, 4, 8), window=4),
    "nano": SwinSize(16, (2, 2), (1, 2), window=4),
}


@functools.lru_cache(maxsize=64)
def relative_position_index(window: int, wh: int, ww: int) -> np.ndarray:
    """Row of the ``(2*window - 1)**2`` bias table for each token pair of a ``wh x ww`` window.

    Token ``(y, x)`` seen from ``(y', x')`` has offset ``(y - y', x - x')`` in
    ``[-(window-1), window-1]**2``; the table is laid out row-major over the offsets, so a
    window smaller than ``window`` reads a sub-block of the same table.

    Returns:
        ``(wh*ww, wh*ww)`` int32.
    """
    if wh > window or ww > window:
        raise ValueError(f"window {wh}x{ww} larger than the table's {window}")
    grid_y, grid_x = np.meshgrid(np.arange(wh), np.arange(ww), indexing="ij")
    ys, xs = grid_y.reshape(-1), grid_x.reshape(-1)
    dy = ys[:, None] - ys[None, :] + window - 1
    dx = xs[:, None] - xs[None, :] + window - 1
    return (dy * (2 * window - 1) + dx).astype(np.int32)


@functools.lru_cache(maxsize=64)
def shift_window_mask(hp: int, wp: int, window: int, shift: int) -> np.ndarray:
    """Attention mask of the shifted windows of a padded ``hp x wp`` map (Liu et al. 2021, 3.2).

    After the cyclic shift by ``-shift``, a window at the bottom or right edge holds tokens
    from up to four regions of the unshifted map that are not neighbours; pairs from
    different regions get ``-100`` (a large negative logit), pairs from one region 0.

    Returns:
        ``(n_windows, window**2, window**2)`` float32, windows in row-major order.
    """
    labels = np.zeros((hp, wp), np.int32)
    cut = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    n = 0
    for hs in cut:
        for ws in cut:
            labels[hs, ws] = n
            n += 1
    blocks = labels.reshape(hp // window, window, wp // window, window).transpose(0, 2, 1, 3)
    lw = blocks.reshape(-1, window * window)
    return np.where(lw[:, :, None] != lw[:, None, :], -100.0, 0.0).astype(np.float32)


def _partition(x: Array, wh: int, ww: int) -> Array:
    """``(b, H, W, C)`` -> ``(b * nW, wh * ww, C)``, windows row-major."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // wh, wh, w // ww, ww, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, wh * ww, c)


def _merge(windows: Array, b: int, h: int, w: int, wh: int, ww: int) -> Array:
    """Inverse of :func:`_partition`."""
    c = windows.shape[-1]
    x = windows.reshape(b, h // wh, w // ww, wh, ww, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


class WindowAttention(nnx.Module):
    """Multi-head self-attention within a window, with a learned relative position bias."""

    def __init__(self, dim: int, heads: int, window: int, *, rngs: nnx.Rngs) -> None:
        self.heads = heads
        self.window = window
        self.scale = (dim // heads) ** -0.5
        self.qkv = nnx.Linear(dim, 3 * dim, kernel_init=_init, rngs=rngs)
        self.proj = nnx.Linear(dim, dim, kernel_init=_init, rngs=rngs)
        self.bias_table = nnx.Param(_init(rngs.params(), ((2 * window - 1) ** 2, heads)))

    def __call__(
        self, x: Float[Array, "bw n c"], wh: int, ww: int, mask: np.ndarray | None = None
    ) -> Float[Array, "bw n c"]:
        """Attention within each window of ``wh x ww`` tokens; ``mask`` ``(nW, n, n)`` is added
        to the logits of windows taken in order, repeated over the batch."""
        bw, n, c = x.shape
        hd = c // self.heads
        qkv = self.qkv(x).reshape(bw, n, 3, self.heads, hd).transpose(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        logits = jnp.einsum("bhnd,bhmd->bhnm", q * self.scale, k)
        index = relative_position_index(self.window, wh, ww)
        bias = self.bias_table[...][index.reshape(-1)].reshape(n, n, self.heads)
        logits = logits + bias.transpose(2, 0, 1)[None].astype(logits.dtype)
        if mask is not None:
            nw = mask.shape[0]
            logits = logits.reshape(bw // nw, nw, self.heads, n, n)
            logits = logits + jnp.asarray(mask, logits.dtype)[None, :, None]
            logits = logits.reshape(bw, self.heads, n, n)
        attn = jax.nn.softmax(logits, axis=-1)
        out = jnp.einsum("bhnm,bhmd->bhnd", attn, v).transpose(0, 2, 1, 3).reshape(bw, n, c)
        return self.proj(out)


class _Mlp(nnx.Module):
    def __init__(self, dim: int, hidden: int, *, rngs: nnx.Rngs) -> None:
        self.fc1 = nnx.Linear(dim, hidden, kernel_init=_init, rngs=rngs)
        self.fc2 = nnx.Linear(hidden, dim, kernel_init=_init, rngs=rngs)

    def __call__(self, x: Array) -> Array:
        return self.fc2(jax.nn.gelu(self.fc1(x), approximate=False))


class SwinBlock(nnx.Module):
    """Pre-norm block: ``x + W-MSA(LN(x))`` (shifted windows when ``shifted``), ``x + MLP(LN(x))``."""

    def __init__(
        self,
        dim: int,
        heads: int,
        window: int,
        shifted: bool,
        mlp_ratio: float = 4.0,
        *,
        rngs: nnx.Rngs,
    ) -> None:
        self.window = window
        self.shifted = shifted
        self.norm1 = nnx.LayerNorm(dim, epsilon=1e-5, rngs=rngs)
        self.attn = WindowAttention(dim, heads, window, rngs=rngs)
        self.norm2 = nnx.LayerNorm(dim, epsilon=1e-5, rngs=rngs)
        self.mlp = _Mlp(dim, int(dim * mlp_ratio), rngs=rngs)

    def __call__(self, x: Float[Array, "b h w c"]) -> Float[Array, "b h w c"]:
        b, h, w, c = x.shape
        win = self.window
        y = self.norm1(x)
        if h <= win and w <= win:
            # The whole map fits in one window: attend over all of it, nothing to shift.
            out = self.attn(y.reshape(b, h * w, c), h, w).reshape(b, h, w, c)
        else:
            hp, wp = -(-h // win) * win, -(-w // win) * win
            y = jnp.pad(y, ((0, 0), (0, hp - h), (0, wp - w), (0, 0)))
            shift = win // 2 if self.shifted else 0
            mask = None
            if shift:
                y = jnp.roll(y, (-shift, -shift), axis=(1, 2))
                mask = shift_window_mask(hp, wp, win, shift)
            out = self.attn(_partition(y, win, win), win, win, mask)
            out = _merge(out, b, hp, wp, win, win)
            if shift:
                out = jnp.roll(out, (shift, shift), axis=(1, 2))
            out = out[:, :h, :w]
        x = x + out
        return x + self.mlp(self.norm2(x))


class PatchMerging(nnx.Module):
    """Halve the resolution: concatenate each 2x2 neighbourhood (4C), normalise, project to 2C."""

    def __init__(self, dim: int, *, rngs: nnx.Rngs) -> None:
        self.norm = nnx.LayerNorm(4 * dim, epsilon=1e-5, rngs=rngs)
        self.reduction = nnx.Linear(4 * dim, 2 * dim, use_bias=False, kernel_init=_init, rngs=rngs)

    def __call__(self, x: Float[Array, "b h w c"]) -> Float[Array, "b h/2 w/2 2c"]:
        h, w = x.shape[1:3]
        if h % 2 or w % 2:
            x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
        # Order (0,0), (1,0), (0,1), (1,1) as the reference implementation concatenates them.
        x = jnp.concatenate(
            [x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], axis=-1
        )
        return self.reduction(self.norm(x))


class _Stage(nnx.Module):
    def __init__(
        self, dim: int, depth: int, heads: int, window: int, mlp_ratio: float, *, rngs: nnx.Rngs
    ) -> None:
        self.blocks = nnx.List(
            [
                SwinBlock(dim, heads, window, shifted=i % 2 == 1, mlp_ratio=mlp_ratio, rngs=rngs)
                for i in range(depth)
            ]
        )

    def __call__(self, x: Array) -> Array:
        for block in self.blocks:
            x = block(x)
        return x


class Swin(nnx.Module):
    """Swin Transformer encoder.

    Args:
        in_channels: Input bands.
        size: Widths, depths, heads and window.
        patch: Patch side (4 in the paper); image sides must be multiples of it.
        rngs: Initialisation randomness.

    :meth:`embed` gives the normalised patch embedding ``(b, H/p, W/p, C)``;
    :meth:`encode` runs the stages on it and returns every stage's map (the last one
    normalised); :meth:`features` is both; calling the model gives the pooled last map.
    """

    def __init__(self, in_channels: int, size: SwinSize, patch: int = 4, *, rngs: nnx.Rngs) -> None:
        self.size = size
        self.patch = patch
        self.in_channels = in_channels
        self.out_channels = size.dims
        self.out_features = size.dims[-1]
        self.strides = tuple(patch * 2**i for i in range(len(size.depths)))
        c = size.embed_dim
        self.patch_embed = nnx.Conv(
            in_channels, c, (patch, patch), strides=(patch, patch), padding="VALID", rngs=rngs
        )
        self.embed_norm = nnx.LayerNorm(c, epsilon=1e-5, rngs=rngs)
        self.stages = nnx.List(
            [
                _Stage(dim, depth, heads, size.window, size.mlp_ratio, rngs=rngs)
                for dim, depth, heads in zip(size.dims, size.depths, size.heads, strict=True)
            ]
        )
        self.merges = nnx.List([PatchMerging(dim, rngs=rngs) for dim in size.dims[:-1]])
        self.norm = nnx.LayerNorm(size.dims[-1], epsilon=1e-5, rngs=rngs)

    def embed(self, x: Float[Array, "b h w c"]) -> Float[Array, "b gh gw d"]:
        """Normalised patch embedding."""
        h, w = x.shape[1:3]
        if h % self.patch or w % self.patch:
            raise ValueError(
                f"image size {h}x{w} must be a multiple of the Swin patch size {self.patch}"
            )
        return self.embed_norm(self.patch_embed(x))

    def encode(self, t: Float[Array, "b gh gw d"]) -> list[Array]:
        """Every stage's output map, from stride ``patch`` to the last (normalised) one."""
        outs = []
        for i, stage in enumerate(self.stages):
            t = stage(t)
            outs.append(t)
            if i < len(self.merges):
                t = self.merges[i](t)
        outs[-1] = self.norm(outs[-1])
        return outs

    def features(self, x: Float[Array, "b h w c"], *, train: bool = False) -> list[Array]:
        """Multi-scale feature maps ``(b, H/s_i, W/s_i, C_i)`` with ``s_i`` in :attr:`strides`."""
        del train  # no dropout or batch statistics
        return self.encode(self.embed(x))

    def feature_map(self, x: Float[Array, "b h w c"], *, train: bool = False) -> Array:
        """The last stage's map."""
        return self.features(x, train=train)[-1]

    def __call__(self, x: Float[Array, "b h w c"], *, train: bool = False) -> Float[Array, "b d"]:
        return jnp.mean(self.feature_map(x, train=train), axis=(1, 2))
