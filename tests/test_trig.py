"""jaxgeo._trig: vectorised sines and cosines (spherical harmonics, SIREN)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxgeo._trig import sin, sincos_reduced


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_sincos_of_reduced_angles_within_an_ulp_with_exact_derivative(dtype) -> None:
    """The polynomial sin/cos used for reduced angles: within ~1 ulp of the exact values on
    [−3.5, 3.5] (every quadrant and its edges) and differentiable with the exact pair."""
    x = np.linspace(-3.5, 3.5, 20001).astype(dtype)
    x = np.concatenate([x, np.asarray([0.0, np.pi / 4, np.pi / 2, -np.pi / 2, np.pi], dtype)])
    s, c = jax.jit(sincos_reduced)(jnp.asarray(x))
    ulp = float(jnp.finfo(dtype).eps)
    exact = x.astype(np.float64)
    assert np.abs(np.asarray(s, np.float64) - np.sin(exact)).max() < 0.75 * ulp
    assert np.abs(np.asarray(c, np.float64) - np.cos(exact)).max() < 0.75 * ulp
    assert np.asarray(s)[-5] == 0.0 and np.asarray(c)[-5] == 1.0
    if dtype == jnp.float64:

        def f(v):
            s, c = sincos_reduced(v)
            return s * c**2

        check_grads(f, (jnp.asarray(x[::500]),), order=2, modes=("fwd", "rev"))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_vectorised_sin_any_argument_within_an_ulp_with_exact_derivative(dtype) -> None:
    """jaxgeo._trig.sin (SIREN's activation): within ~1 ulp of sin at small and large
    arguments, XLA's own sin past the fast range (|x| >= 1,608 in float32), and exact
    derivatives."""
    rng = np.random.default_rng(7)
    for scale in (1.0, 300.0, 1e5):
        x = (rng.standard_normal(5000) * scale).astype(dtype)
        got = np.asarray(jax.jit(sin)(jnp.asarray(x)), np.float64)
        exact = np.sin(x.astype(np.float64))
        tol = 1.0 * float(jnp.finfo(dtype).eps)
        assert np.abs(got - exact).max() < tol, scale
    if dtype == jnp.float64:
        check_grads(sin, (jnp.asarray(rng.standard_normal(40) * 5),), order=2, modes=("fwd", "rev"))
