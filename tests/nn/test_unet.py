"""jaxgeo.nn.unet: parameter counts against the reference implementation, shapes,
determinism, skip connections."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxgeo.nn.unet import UNet
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


def test_unet_parameter_counts():
    # milesial/Pytorch-UNet UNet(n_channels=3, n_classes=1, bilinear=False): 31,037,633.
    m = nnx.eval_shape(lambda: UNet(3, 1, 64, rngs=nnx.Rngs(0)))
    assert count_params(split_module(m)[1]) == 31_037_633
    # The biomass study's 7.8 M U-Net: width 32 on the 6 HLS bands.
    m = nnx.eval_shape(lambda: UNet(6, 1, 32, rngs=nnx.Rngs(0)))
    assert count_params(split_module(m)[1]) == 7_763_905


def test_unet_shapes_determinism_and_batch_statistics():
    mdef, params, rest = host_init(lambda r: UNet(2, 3, 4, 2, rngs=r), 0)
    _, params2, _ = host_init(lambda r: UNet(2, 3, 4, 2, rngs=r), 0)
    apply = jax.jit(mdef.apply(), static_argnames="train")
    x = jax.random.normal(jax.random.key(0), (2, 16, 12, 2), jnp.float32)
    y, _ = apply(params, rest, x)
    assert y.shape == (2, 16, 12, 3)
    y2, _ = apply(params2, rest, x)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(y2))
    # Train mode normalises with the batch's statistics and updates the running ones.
    _, new_rest = apply(params, rest, x, train=True)
    before = np.asarray(rest["inc"]["bn1"]["mean"])
    assert not np.array_equal(before, np.asarray(new_rest["inc"]["bn1"]["mean"]))
    model = nnx.eval_shape(lambda: UNet(2, 3, 4, 2, rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="multiple of 2\\*\\*levels"):
        nnx.eval_shape(lambda m, v: m(v), model, jax.ShapeDtypeStruct((1, 10, 12, 2), jnp.float32))
