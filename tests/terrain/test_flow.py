"""Rectified flow: samplers' orders, guidance, inpainting, conditions, the loss."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxgeo.errors import ConfigError
from jaxgeo.terrain.flow import (
    FlowModel,
    FlowSpec,
    condition_channels,
    flow_loss,
    guided,
    sample,
)


def test_constant_velocity_is_exact_for_both_samplers() -> None:
    x0 = jnp.arange(6.0).reshape(2, 3)
    for method in ("euler", "heun"):
        x1 = sample(lambda x, t: jnp.full_like(x, 2.0), x0, steps=7, method=method)
        assert np.allclose(x1, x0 + 2.0, atol=1e-12)


def test_convergence_orders_euler_1_heun_2() -> None:
    # dx/dt = a x + t: x(1) in closed form.
    a = -1.5
    x0 = jnp.ones((1, 1))
    exact = (1.0 + 1.0 / a**2) * np.exp(a) - 1.0 / a - 1.0 / a**2

    def v(x: jax.Array, t: jax.Array) -> jax.Array:
        return a * x + t[:, None]

    for method, order in (("euler", 1.0), ("heun", 2.0)):
        steps = np.array([8, 16, 32, 64])
        errs = [abs(float(sample(v, x0, steps=int(s), method=method)[0, 0]) - exact) for s in steps]
        fitted = -np.polyfit(np.log(steps), np.log(errs), 1)[0]
        assert fitted == pytest.approx(order, abs=0.1)


def test_guidance_extrapolates_from_unconditional() -> None:
    def vel(x: jax.Array, t: jax.Array, c: jax.Array) -> jax.Array:
        return x * 0.0 + c

    cond, uncond = jnp.full((2, 3), 1.0), jnp.full((2, 3), 0.25)
    x = jnp.zeros((2, 3))
    t = jnp.zeros((2,))
    assert np.allclose(guided(vel, cond, uncond, 3.0)(x, t), 0.25 + 3.0 * 0.75)
    assert np.allclose(guided(vel, cond, uncond, 1.0)(x, t), 1.0)


def test_inpainting_keeps_the_known_part_exactly() -> None:
    key = jax.random.key(0)
    x0 = jax.random.normal(key, (1, 4, 4, 2))
    known = jnp.full((1, 4, 4, 2), 5.0)
    mask = jnp.zeros((1, 4, 4, 1)).at[:, :, :2].set(1.0)
    out = sample(lambda x, t: -x, x0, steps=5, method="heun", known=known, mask=mask)
    assert np.allclose(out[:, :, :2], 5.0)
    assert not np.allclose(out[:, :, 2:], 5.0)
    with pytest.raises(ConfigError, match="sampler"):
        sample(lambda x, t: x, x0, method="rk4")


def test_condition_channels_zero_when_dropped() -> None:
    coarse = jnp.ones((2, 8, 8))
    cls = jax.nn.one_hot(jnp.zeros((2, 8, 8), jnp.int32), 5)
    keep_c, keep_k = jnp.array([1.0, 0.0]), jnp.array([0.0, 1.0])
    c = condition_channels(coarse, cls, keep_c, keep_k, 5, (2, 8, 8))
    assert c.shape == (2, 8, 8, 8)
    assert np.allclose(c[0, ..., :2], 1.0) and np.allclose(c[0, ..., 2:], 0.0)
    assert np.allclose(c[1, ..., :2], 0.0) and np.allclose(c[1, ..., 2], 1.0)
    assert np.allclose(c[1, ..., -1], 1.0)


def test_flow_loss_of_the_oracle_velocity_for_a_point_mass_is_zero() -> None:
    # Data = one point c: with x_0 known, the velocity x_1 - x_0 = (c - x_t) / (1 - t).
    c = jnp.full((4, 3), 2.0)

    def oracle(x: jax.Array, t: jax.Array, _: jax.Array) -> jax.Array:
        return (c - x) / (1.0 - t)[:, None]

    loss = flow_loss(oracle, c, jnp.zeros((4, 0)), jax.random.key(1))
    assert float(loss) == pytest.approx(0.0, abs=1e-8)


def test_flow_model_starts_at_zero_velocity() -> None:
    spec = FlowSpec(latent_channels=3, n_classes=5, width=16, depth=1, prior_width=8,
                    prior_depth=1)  # fmt: skip

    @jax.jit
    def run(key: jax.Array) -> jax.Array:
        m = FlowModel(spec, rngs=nnx.Rngs(key))
        x = jnp.ones((2, 8, 8, 3), jnp.float32)
        cond = jnp.ones((2, 8, 8, spec.cond_channels), jnp.float32)
        return m.fine(x, jnp.full((2,), 0.5, jnp.float32), cond)

    v = run(jax.random.key(0))
    assert v.shape == (2, 8, 8, 3) and float(jnp.abs(v).max()) == 0.0
    with pytest.raises(ConfigError, match="width"):
        FlowSpec(width=0)
