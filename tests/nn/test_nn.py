"""jaxgeo.nn: parameter counts against the reference implementations, shapes, embeddings."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxgeo.nn import VIT_SIZES, FCNHead, LinearSegHead, ResNet, ViT, sincos_pos_embed_2d
from jaxgeo.train import count_params, split_module


def _abstract(factory):
    return nnx.eval_shape(factory)


def test_resnet50_parameter_count_matches_torchvision():
    # torchvision's resnet50 has 25,557,032 parameters; its 2048 x 1000 fc layer has 2,049,000.
    model = _abstract(lambda: ResNet(3, rngs=nnx.Rngs(0)))
    assert count_params(split_module(model)[1]) == 25_557_032 - 2_049_000


def test_vit_small_parameter_count_matches_timm():
    # timm's vit_small_patch16_224: 22,050,664 parameters, of which the 1000-class head has
    # 385,000 and the learned position table (197 x 384) 75,648; ours uses fixed sin-cos.
    model = _abstract(lambda: ViT(3, VIT_SIZES["s"], 16, rngs=nnx.Rngs(0)))
    assert count_params(split_module(model)[1]) == 22_050_664 - 385_000 - 75_648


def test_resnet_and_vit_output_shapes():
    x = jax.ShapeDtypeStruct((2, 64, 64, 5), jnp.float32)
    resnet = _abstract(lambda: ResNet(5, rngs=nnx.Rngs(0)))
    assert resnet.stride == 32 and resnet.out_features == 2048
    assert nnx.eval_shape(lambda m, v: m.feature_map(v), resnet, x).shape == (2, 2, 2, 2048)
    vit = _abstract(lambda: ViT(5, VIT_SIZES["tiny"], 4, rngs=nnx.Rngs(0)))
    assert nnx.eval_shape(lambda m, v: m(v), vit, x).shape == (2, 32)
    assert nnx.eval_shape(lambda m, v: m.feature_map(v), vit, x).shape == (2, 16, 16, 32)
    assert nnx.eval_shape(lambda m, v: m.tokens(v), vit, x).shape == (2, 257, 32)


def test_vit_refuses_image_not_multiple_of_patch():
    vit = _abstract(lambda: ViT(3, VIT_SIZES["tiny"], 4, rngs=nnx.Rngs(0)))
    x = jax.ShapeDtypeStruct((1, 10, 12, 3), jnp.float32)
    with pytest.raises(ValueError, match="multiple of the patch size 4"):
        nnx.eval_shape(lambda m, v: m(v), vit, x)


def test_sincos_embedding_values():
    e = sincos_pos_embed_2d(3, 5, 16)
    assert e.shape == (15, 16) and e.dtype == np.float32
    # Position (0, 0): sines 0, cosines 1 in both halves.
    np.testing.assert_array_equal(e[0], np.r_[np.zeros(4), np.ones(4), np.zeros(4), np.ones(4)])
    # Row embedding depends on the row only; column embedding on the column only.
    grid = e.reshape(3, 5, 16)
    np.testing.assert_array_equal(grid[:, 0, :8], grid[:, 4, :8])
    np.testing.assert_array_equal(grid[0, :, 8:], grid[2, :, 8:])
    # Lowest frequency is 1: sin(row) exactly.
    np.testing.assert_allclose(grid[:, 0, 0], np.sin(np.arange(3.0)), rtol=1e-6)
    with pytest.raises(ValueError, match="multiple of 4"):
        sincos_pos_embed_2d(2, 2, 6)


def test_segmentation_heads_upsample_to_image_size():
    f = jax.ShapeDtypeStruct((2, 4, 4, 8), jnp.float32)
    for head in (
        _abstract(lambda: LinearSegHead(8, 3, rngs=nnx.Rngs(0))),
        _abstract(lambda: FCNHead(8, 3, hidden=4, rngs=nnx.Rngs(0))),
    ):
        assert nnx.eval_shape(lambda m, v: m(v, 16, 16), head, f).shape == (2, 16, 16, 3)
