"""Heightmap VAE: shapes, any-size decoding, KL, refusals."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest
from flax import nnx

from jaxgeo.errors import ConfigError
from jaxgeo.terrain.vae import HeightmapVAE, VaeSpec, kl_divergence, vae_loss


@pytest.mark.parametrize("patch", [64, 32])
def test_shapes_and_any_size_decoding(patch: int) -> None:
    spec = VaeSpec(patch, 3, (4, 8))

    def run(key: jax.Array) -> tuple[jax.Array, ...]:
        vae = HeightmapVAE(spec, rngs=nnx.Rngs(key))
        x = jnp.zeros((2, patch, patch), jnp.float32)
        mean, logvar = vae.encode(x)
        recon, _, _ = vae(x, key)
        return mean, logvar, recon, vae.decode(jnp.zeros((5, 7, 3), jnp.float32))

    # Shapes by abstract evaluation (no compute: eager convolutions would compile op by op).
    mean, logvar, recon, big = jax.eval_shape(run, jax.random.key(0))
    assert mean.shape == logvar.shape == (2, 8, 8, 3)
    assert recon.shape == (2, patch, patch) and recon.dtype == jnp.float32
    # Fully convolutional decoder: a 5x7 latent grid decodes to 5x7 patches' worth of cells.
    f = patch // 8
    assert big.shape == (5 * f, 7 * f)


def test_kl_zero_at_standard_normal_and_positive_elsewhere() -> None:
    z = jnp.zeros((4, 4), jnp.float32)
    assert float(kl_divergence(z, z)) == 0.0
    assert float(kl_divergence(z + 1.0, z)) == pytest.approx(0.5)
    x = jnp.ones((1, 8, 8), jnp.float32)
    loss, parts = vae_loss(x, x, z, z, beta=1.0, grad_weight=1.0)
    assert float(loss) == 0.0 and float(parts["mse"]) == 0.0


def test_spec_refuses_sizes_not_8_times_a_power_of_two() -> None:
    with pytest.raises(ConfigError, match="power of two"):
        VaeSpec(48)
    with pytest.raises(ConfigError, match="power of two"):
        VaeSpec(8)
    assert VaeSpec(64).levels == 3 and VaeSpec(32).levels == 2
