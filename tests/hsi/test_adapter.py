"""The spectral adapter: parameter count, spectral lengths, shapes, per-pixel sharing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxgeo.hsi.adapter import MIN_BANDS, SpectralAdapter, adapter_lengths
from jaxgeo.train import count_params, split_module


@pytest.fixture(scope="module")
def abstract_adapter():
    return nnx.eval_shape(lambda: SpectralAdapter(rngs=nnx.Rngs(0)))


def test_parameter_count_is_56192(abstract_adapter):
    _, params, rest = split_module(abstract_adapter)
    assert count_params(params) == 56_192
    # The convention: conv weights + biases, and batch-norm scale + bias; the running mean
    # and variance are statistics, not parameters.
    conv = sum(count_params(params["convs"][str(i)]) for i in range(3))
    norm = sum(count_params(params["norms"][str(i)]) for i in range(3))
    assert conv == (7 * 1 * 32 + 32) + (7 * 32 * 64 + 64) + (5 * 64 * 128 + 128) == 55_744
    assert norm == 2 * (32 + 64 + 128) == 448
    assert count_params(rest) == 448  # running means and variances


@pytest.mark.parametrize(
    ("bands", "lengths"), [(202, (40, 8, 2)), (235, (47, 9, 3)), (198, (39, 7, 2))]
)
def test_spectral_lengths_and_output_shape(abstract_adapter, bands, lengths):
    assert adapter_lengths(bands) == lengths
    x = jax.ShapeDtypeStruct((2, 5, 3, bands), jnp.float32)

    shapes = []  # the lengths the convolutions really produce, recorded while tracing

    def inner(m, v):
        y = v.reshape(-1, bands, 1)
        for conv in m.convs:
            y = conv(y)
            shapes.append(y.shape[1])
        return y

    nnx.eval_shape(inner, abstract_adapter, x)
    assert tuple(shapes) == lengths
    assert nnx.eval_shape(lambda m, v: m(v), abstract_adapter, x).shape == (2, 5, 3, 128)


def test_enmap_reaches_one_after_pooling():
    # 202 -> 40 -> 8 -> 2, averaged to 1: the chain.
    assert adapter_lengths(202) == (40, 8, 2)
    assert MIN_BANDS == 75 and adapter_lengths(74)[-1] == 0 and adapter_lengths(75)[-1] == 1


def test_too_few_bands_refused(abstract_adapter):
    x = jax.ShapeDtypeStruct((1, 1, 1, 74), jnp.float32)
    with pytest.raises(ValueError, match="at least 75 bands"):
        nnx.eval_shape(lambda m, v: m(v), abstract_adapter, x)


def test_weights_shared_across_pixels_and_spectral_only():
    adapter = SpectralAdapter(rngs=nnx.Rngs(1))
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2, 3, 4, 90)).astype(np.float32))
    f = nnx.jit(lambda m, v: m(v))
    y = np.asarray(f(adapter, x))
    # A pixel's output depends on its own spectrum only: moving pixels moves outputs.
    perm = jnp.asarray(rng.permutation(2 * 3 * 4))
    xp = x.reshape(24, 90)[perm].reshape(2, 3, 4, 90)
    yp = np.asarray(f(adapter, xp))
    np.testing.assert_allclose(yp.reshape(24, 128), y.reshape(24, 128)[np.asarray(perm)], rtol=1e-6)
    assert (y >= 0).all()  # ReLU before the pooling
