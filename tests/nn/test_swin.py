"""jaxgeo.nn.swin: parameter counts against the reference, shifted-window masking, shapes,
determinism."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxgeo.nn.swin import (
    SWIN_SIZES,
    PatchMerging,
    Swin,
    SwinBlock,
    SwinSize,
    relative_position_index,
    shift_window_mask,
)
from jaxgeo.train import count_params, split_module


def host_init(factory, seed: int):
    """``(ModuleDef, params, rest)`` with values drawn on the host: the structure from
    ``nnx.eval_shape``, no compiled initialiser (whose compile costs more than these tests)."""
    mdef, params, rest = split_module(nnx.eval_shape(lambda: factory(nnx.Rngs(0))))
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        name = str(getattr(path[-1], "key", ""))
        shape = leaf.shape
        if name in ("scale", "var"):
            return jnp.ones(shape, leaf.dtype)
        if name in ("bias", "mean"):
            return jnp.zeros(shape, leaf.dtype)
        fan_in = max(int(np.prod(shape[:-1])), 1)
        return jnp.asarray(rng.standard_normal(shape) / np.sqrt(fan_in), leaf.dtype)

    return (
        mdef,
        jax.tree_util.tree_map_with_path(fill, params),
        jax.tree_util.tree_map_with_path(fill, rest),
    )


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        # timm's swin_tiny_patch4_window7_224: 28,288,354 parameters, of which the 768 x 1000
        # head has 769,000; swin_base_patch4_window7_224: 87,768,224, head 1024 x 1000 + 1000.
        ("t", 28_288_354 - 769_000),
        ("b", 87_768_224 - 1_025_000),
    ],
)
def test_swin_parameter_count_matches_timm(size, expected):
    model = nnx.eval_shape(lambda: Swin(3, SWIN_SIZES[size], 4, rngs=nnx.Rngs(0)))
    assert count_params(split_module(model)[1]) == expected


def test_multiscale_feature_shapes_on_odd_sizes():
    model = nnx.eval_shape(lambda: Swin(6, SWIN_SIZES["micro"], 4, rngs=nnx.Rngs(0)))
    x = jax.ShapeDtypeStruct((2, 40, 24, 6), jnp.float32)
    shapes = [f.shape for f in nnx.eval_shape(lambda m, v: m.features(v), model, x)]
    # 10x6 tokens, then ceil-halved by each patch merging (odd sides are zero-padded).
    assert shapes == [(2, 10, 6, 32), (2, 5, 3, 64), (2, 3, 2, 128), (2, 2, 1, 256)]
    assert model.strides == (4, 8, 16, 32)
    with pytest.raises(ValueError, match="multiple of the Swin patch"):
        nnx.eval_shape(
            lambda m, v: m.features(v), model, jax.ShapeDtypeStruct((1, 30, 24, 6), jnp.float32)
        )


def test_relative_position_index_reads_sub_blocks_of_one_table():
    idx = relative_position_index(4, 4, 4)
    assert idx.shape == (16, 16) and idx.min() == 0 and idx.max() == 7 * 7 - 1
    # Zero offset is the table's centre; the relation is antisymmetric in the offset.
    assert np.all(np.diag(idx) == 3 * 7 + 3)
    assert np.all(idx + idx.T == 2 * (3 * 7 + 3))
    # A 2x3 window reads the same rows for the same offsets.
    small = relative_position_index(4, 2, 3)
    full_pos = [r * 4 + c for r in range(2) for c in range(3)]
    np.testing.assert_array_equal(small, idx[np.ix_(full_pos, full_pos)])


def test_shift_mask_separates_regions_only_at_the_wrapped_edges():
    m = shift_window_mask(8, 8, 4, 2)
    assert m.shape == (4, 16, 16)
    assert np.all(m[0] == 0)  # the top-left window holds one region
    assert np.all(m == np.transpose(m, (0, 2, 1)))
    # Bottom-right window: four regions of 2x2 tokens; token (0,0) and (3,3) are apart.
    assert m[3, 0, 15] == -100.0 and m[3, 0, 1] == 0.0 and m[3, 0, 2] == -100.0


def _block(shifted: bool):
    """A block's jitted ``f(x)`` on a batch of two (the input and a perturbed copy)."""
    mdef, params, rest = host_init(lambda r: SwinBlock(8, 2, 4, shifted=shifted, rngs=r), 3)
    apply = jax.jit(mdef.apply())

    def diff(x, bump):
        out, _ = apply(params, rest, jnp.concatenate([x, bump]))
        return jnp.abs(out[1] - out[0]).sum(-1)

    return diff


def test_window_attention_is_local_and_the_shift_mask_blocks_wrapped_tokens():
    x = jax.random.normal(jax.random.key(0), (1, 8, 8, 8), jnp.float32)
    bump = x.at[0, 0, 0].add(5.0)
    d = _block(False)(x, bump)
    # Without the shift, a change in window (0, 0) stays in that window.
    assert float(d[:4, :4].max()) > 0 and float(d[4:].max()) == 0 and float(d[:, 4:].max()) == 0
    d = _block(True)(x, bump)
    # After the cyclic shift, token (0, 0) sits in the bottom-right window together with
    # tokens (6:8, 6:8) of the other corner, which the mask must keep it from seeing; it
    # still reaches its own region (0:2, 0:2).
    assert float(d[6:, 6:].max()) == 0
    assert float(d[:2, :2].max()) > 0
    assert float(d[2:6].max()) == 0 and float(d[:, 2:6].max()) == 0


def test_patch_merging_halves_and_doubles():
    pm = nnx.eval_shape(lambda: PatchMerging(8, rngs=nnx.Rngs(0)))
    x = jax.ShapeDtypeStruct((2, 6, 5, 8), jnp.float32)
    assert nnx.eval_shape(lambda m, v: m(v), pm, x).shape == (2, 3, 3, 16)


def test_swin_forward_is_deterministic_and_batch_independent():
    size = SwinSize(8, (2, 2), (1, 2), window=2)
    mdef, p1, r1 = host_init(lambda r: Swin(3, size, 2, rngs=r), 7)
    _, p2, _ = host_init(lambda r: Swin(3, size, 2, rngs=r), 7)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    apply = jax.jit(mdef.apply())
    x = jax.random.normal(jax.random.key(1), (2, 12, 8, 3), jnp.float32)
    out, _ = apply(p1, r1, x)
    again, _ = apply(p2, r1, x)
    assert out.shape == (2, 16) and bool(jnp.isfinite(out).all())
    np.testing.assert_array_equal(np.asarray(out), np.asarray(again))
    # Samples do not interact (no batch statistics in a Swin).
    first, _ = apply(p1, r1, jnp.concatenate([x[:1], x[:1]]))
    np.testing.assert_allclose(np.asarray(first[0]), np.asarray(out[0]), rtol=1e-5, atol=1e-6)


def test_swin_size_validation():
    with pytest.raises(ValueError, match="divide by its"):
        SwinSize(10, (2,), (3,))
    with pytest.raises(ValueError, match="one length"):
        SwinSize(8, (2, 2), (1,))
