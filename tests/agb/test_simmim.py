"""jaxgeo.agb.simmim: the L1 loss sees masked blocks only; the encoder never sees masked
pixels (mask token); mask counts as MAE's."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from jaxgeo.agb.simmim import SimMIMNet, block_mask, masked_l1
from jaxgeo.nn.swin import SWIN_SIZES, Swin
from jaxgeo.train import split_module


def test_block_mask_masks_the_same_count_per_sample():
    m = np.asarray(block_mask(jax.random.key(0), 5, 4, 4, 0.6))
    assert m.shape == (5, 4, 4)
    assert np.all(m.sum(axis=(1, 2)) == 16 - int(16 * 0.4))
    assert len({m[i].tobytes() for i in range(5)}) > 1  # per-sample draws


def test_masked_l1_ignores_visible_blocks_exactly():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 8, 8, 3)))
    recon = jnp.asarray(rng.standard_normal((2, 8, 8, 3)))
    mask = jnp.asarray([[[1.0, 0.0], [0.0, 1.0]], [[0.0, 0.0], [1.0, 0.0]]])
    mpx = np.repeat(np.repeat(np.asarray(mask), 4, 1), 4, 2)[..., None] > 0
    expected = np.abs(np.asarray(recon) - np.asarray(x))[np.broadcast_to(mpx, x.shape)].mean()
    np.testing.assert_allclose(float(masked_l1(recon, x, mask)), expected, rtol=1e-12)
    wild = jnp.where(jnp.asarray(mpx), recon, 1e6)
    assert float(masked_l1(wild, x, mask)) == float(masked_l1(recon, x, mask))


def test_masked_pixels_do_not_reach_the_reconstruction():
    abstract = nnx.eval_shape(
        lambda: SimMIMNet(Swin(6, SWIN_SIZES["nano"], 4, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(0))
    )
    mdef, params, rest = split_module(abstract)
    rng = np.random.default_rng(1)
    params = jax.tree.map(
        lambda s: jnp.asarray(0.1 * rng.standard_normal(s.shape), s.dtype), params
    )
    x = jnp.asarray(rng.standard_normal((1, 16, 16, 6)), jnp.float32)
    mask = jnp.asarray([[[1.0, 0.0], [0.0, 0.0]]], jnp.float32)  # top-left 8x8 block
    other = x.at[:, :8, :8].add(3.0)
    apply = jax.jit(mdef.apply())
    out, _ = apply(params, rest, jnp.concatenate([x, other]), jnp.concatenate([mask, mask]))
    assert out.shape == (2, 16, 16, 6)
    np.testing.assert_array_equal(np.asarray(out[0]), np.asarray(out[1]))
    # Without the mask the change is seen.
    free = jnp.zeros_like(mask)
    out2, _ = apply(params, rest, jnp.concatenate([x, other]), jnp.concatenate([free, free]))
    assert not np.array_equal(np.asarray(out2[0]), np.asarray(out2[1]))
