"""Backbone registry: output shapes, strides, cross-sensor parameter sharing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from jaxgeo.hsi.backbones import BACKBONES, make_backbone
from jaxgeo.train import count_params, split_module


def _abstract(name, bands):
    return nnx.eval_shape(lambda: make_backbone(name, bands, rngs=nnx.Rngs(0)))


def _shapes(model, x):
    emb = nnx.eval_shape(lambda m, v: m(v), model, x)
    fmap = nnx.eval_shape(lambda m, v: m.feature_map(v), model, x)
    return emb.shape, fmap.shape


@pytest.mark.parametrize(
    ("name", "emb", "fmap"),
    [
        ("spec-resnet50", 2048, (8, 8, 2048)),  # bottleneck stem (/2) + 3 strided stages
        pytest.param("resnet50", 2048, (4, 4, 2048), marks=pytest.mark.long),  # ImageNet stem
        ("spec-vit-s", 384, (32, 32, 384)),  # patch 4 on 128 x 128
        pytest.param("vit-t", 192, (32, 32, 192), marks=pytest.mark.long),
    ],
)
def test_published_backbones_on_enmap_patches(name, emb, fmap):
    x = jax.ShapeDtypeStruct((2, 128, 128, 202), jnp.float32)
    model = _abstract(name, 202)
    assert _shapes(model, x) == ((2, emb), (2, *fmap))
    assert model.out_features == emb and model.stride == 128 // fmap[0]


@pytest.mark.parametrize("name", [n for n in BACKBONES if "tiny" in n])
def test_tiny_backbones_on_16px_patches(name):
    x = jax.ShapeDtypeStruct((3, 16, 16, 90), jnp.float32)
    model = _abstract(name, 90)
    (b, d), (b2, h, w, d2) = _shapes(model, x)
    assert b == b2 == 3 and d == d2 == model.out_features and h == w == 16 // model.stride


def test_spectral_backbones_share_parameters_across_sensors():
    # EnMAP (202) and DESIS (235): the same parameter shapes with the adapter ...
    shapes = [
        jax.tree_util.tree_map(lambda a: a.shape, split_module(_abstract("spec-vit-tiny", n))[1])
        for n in (202, 235)
    ]
    assert shapes[0] == shapes[1]
    # ... but not without it: the baseline's patch embedding takes every band.
    a, b = (count_params(split_module(_abstract("vit-tiny", n))[1]) for n in (202, 235))
    assert b - a == 33 * 4 * 4 * 32


def test_unknown_backbone_and_too_few_bands():
    with pytest.raises(ValueError, match="unknown backbone"):
        _abstract("spec-vit-xl", 202)
    with pytest.raises(ValueError, match="at least 75 bands"):
        _abstract("spec-vit-tiny", 50)
    assert _abstract("vit-tiny", 50).n_bands == 50  # baselines take any band count
