"""jaxgeo.agb.losses: the masked RMSE sees labeled pixels only, exactly, and so does its
gradient; binned RMSE by hand."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax.test_util import check_grads

from jaxgeo.agb import binned_rmse, masked_rmse


def _case(seed: int, shape=(2, 6, 5), frac=0.2):
    rng = np.random.default_rng(seed)
    target = rng.uniform(0.0, 300.0, shape)
    labeled = rng.uniform(size=shape) < frac
    labeled.flat[0] = True
    target = np.where(labeled, target, -1.0)
    pred = rng.uniform(0.0, 300.0, shape)
    return pred, target, labeled


@given(st.integers(0, 10_000))
def test_masked_rmse_equals_rmse_of_the_labeled_pixels(seed):
    pred, target, labeled = _case(seed)
    expected = np.sqrt(np.mean((pred[labeled] - target[labeled]) ** 2))
    got = float(masked_rmse(jnp.asarray(pred), jnp.asarray(target)))
    np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_unlabeled_pixels_do_not_change_the_loss_at_all():
    pred, target, labeled = _case(1)
    base = masked_rmse(jnp.asarray(pred), jnp.asarray(target))
    wild = np.where(labeled, pred, 1e30)
    wild[~labeled & (np.arange(pred.size).reshape(pred.shape) % 2 == 0)] = np.nan
    other = masked_rmse(jnp.asarray(wild), jnp.asarray(target))
    assert float(other) == float(base)  # bit for bit, NaN and 1e30 included


def test_gradient_is_exactly_zero_at_unlabeled_pixels():
    pred, target, labeled = _case(2)
    pred = np.where(labeled, pred, np.nan)  # even NaN predictions there
    g = np.asarray(jax.grad(masked_rmse)(jnp.asarray(pred), jnp.asarray(target)))
    assert np.all(g[~labeled] == 0.0)
    # d RMSE / d p_i = (p_i - y_i) / (n * RMSE) at labeled pixels.
    p, y = pred[labeled], target[labeled]
    rmse = np.sqrt(np.mean((p - y) ** 2))
    np.testing.assert_allclose(g[labeled], (p - y) / (p.size * rmse), rtol=1e-12)


def test_masked_rmse_gradients_against_finite_differences():
    pred, target, _ = _case(3, shape=(3, 4))
    check_grads(
        lambda p: masked_rmse(p, jnp.asarray(target)),
        (jnp.asarray(pred),),
        order=2,
        modes=("fwd", "rev"),
    )


def test_no_labels_and_perfect_fit_give_zero_with_finite_gradient():
    y = jnp.full((4, 4), -1.0)
    p = jnp.ones((4, 4))
    assert float(masked_rmse(p, y)) == 0.0
    assert np.all(np.asarray(jax.grad(masked_rmse)(p, y)) == 0.0)
    y2 = jnp.where(jnp.arange(16).reshape(4, 4) < 5, 2.0, -1.0)
    p2 = jnp.full((4, 4), 2.0)
    assert float(masked_rmse(p2, y2)) == 0.0
    assert np.all(np.isfinite(np.asarray(jax.grad(masked_rmse)(p2, y2))))
    # Another ignore value.
    assert float(masked_rmse(p, jnp.full((4, 4), 9.0), ignore_value=9.0)) == 0.0
    with pytest.raises(ValueError, match="shape"):
        masked_rmse(jnp.ones((2, 2)), jnp.ones((2, 3)))


def test_binned_rmse_by_hand():
    target = np.array([50.0, 150.0, 250.0, 300.0, -1.0, 99.9])
    pred = np.array([60.0, 140.0, 250.0, 280.0, 1e9, 99.9])
    m = binned_rmse(pred, target)
    assert m["n"] == 5 and m["n_0_100"] == 2 and m["n_100_200"] == 1 and m["n_200_300"] == 2
    np.testing.assert_allclose(m["rmse"], np.sqrt((100 + 100 + 0 + 400 + 0) / 5))
    np.testing.assert_allclose(m["rmse_0_100"], np.sqrt(100 / 2))
    np.testing.assert_allclose(m["rmse_100_200"], 10.0)
    np.testing.assert_allclose(m["rmse_200_300"], np.sqrt(400 / 2))  # 300 is in the last bin
    empty = binned_rmse(pred[:1], np.array([-1.0]))
    assert empty["rmse"] is None and empty["rmse_0_100"] is None and empty["n"] == 0
