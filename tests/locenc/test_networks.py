"""Networks: SIREN initialisation statistics (Sitzmann et al. 2020), shapes, dropout, residuals."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxgeo.locenc import NETWORKS, Siren, make_network


def test_siren_weights_follow_the_siren_initialisation():
    n_in, hidden, w0, w0_initial = 7, 400, 1.0, 30.0
    net = Siren(
        n_in,
        3,
        hidden=hidden,
        n_layers=3,
        w0=w0,
        w0_initial=w0_initial,
        rngs=nnx.Rngs(0),
        dtype=jnp.float64,
    )
    first = np.asarray(net.layers[0].kernel[...])
    assert np.abs(first).max() <= 1.0 / n_in
    # Uniform on ±b has variance b²/3.
    assert np.var(first) == pytest.approx(
        (1.0 / n_in) ** 2 / 3, rel=4 * math.sqrt(0.8 / first.size)
    )
    for layer in list(net.layers[1:]) + [net.out]:
        k = np.asarray(layer.kernel[...])
        bound = math.sqrt(6.0 / hidden) / w0
        assert np.abs(k).max() <= bound
        # Sample variance of n uniform draws: relative std sqrt(0.8 / n); allow 4 of them.
        assert np.var(k) == pytest.approx(bound**2 / 3, rel=4 * math.sqrt(0.8 / k.size))


def test_siren_preactivations_follow_the_variance_recursion():
    # Sitzmann et al. §3.2: with weights uniform in ±sqrt(6/n)/w0, the pre-activation
    # z = w0 (W h + b) of a hidden layer has Var z = 2 Var h + 2/n (bias), and for z ~ N(0, s²)
    # Var sin z = (1 − exp(−2 s²))/2. So the standard deviation starts near 1 and settles at
    # the fixed point of s² = 1 − exp(−2 s²) + 2/n (≈ 0.89), independent of depth.
    hidden = 512
    net = Siren(3, 1, hidden=hidden, n_layers=6, rngs=nnx.Rngs(1), dtype=jnp.float64)
    x = jax.random.uniform(jax.random.key(2), (2000, 3), jnp.float64, -1.0, 1.0)
    pre = net.preactivations(x)
    var = 2.0 * float(jnp.var(jnp.sin(pre[0]))) + 2.0 / hidden
    for z in pre[1:]:
        assert float(jnp.std(z)) == pytest.approx(math.sqrt(var), rel=0.03)
        var = 1.0 - math.exp(-2.0 * var) + 2.0 / hidden
    assert float(jnp.std(pre[1])) == pytest.approx(1.0, abs=0.05)
    # Deep pre-activations are Gaussian (kurtosis 3; the arcsine activations would give 1.5).
    z = np.asarray(pre[-1]).ravel()
    kurt = np.mean((z - z.mean()) ** 4) / np.var(z) ** 2
    assert kurt == pytest.approx(3.0, abs=0.3)


@pytest.mark.parametrize("name", NETWORKS)
def test_shapes_features_and_dropout(name):
    net = make_network(name, 6, 4, hidden=16, n_layers=3, dropout=0.5, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (5, 6), jnp.float32)
    out = net(x)
    assert out.shape == (5, 4) and out.dtype == jnp.float32
    width = 6 if name == "linear" else 16
    assert net.features(x).shape == (5, width)
    np.testing.assert_array_equal(net(x), net(x))  # deterministic without a key
    if name != "linear":
        a, b = net(x, jax.random.key(1)), net(x, jax.random.key(2))
        assert not np.allclose(a, b)  # dropout active with a key


def test_residual_variant_adds_the_skip():
    plain = make_network("siren", 4, 2, hidden=8, n_layers=2, rngs=nnx.Rngs(3))
    res = make_network("siren-res", 4, 2, hidden=8, n_layers=2, rngs=nnx.Rngs(3))
    x = jnp.ones((1, 4), jnp.float32)
    h1 = jnp.sin(30.0 * res.layers[0](x))
    np.testing.assert_allclose(res.features(x), h1 + jnp.sin(res.layers[1](h1)), rtol=1e-6)
    assert not np.allclose(plain.features(x), res.features(x))
