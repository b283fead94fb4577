"""jaxgeo.train: data-parallel step equals the one-device step, schedules, module round trip,
run folders."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from jaxgeo.errors import ConfigError, FileFormatError, StoreExistsError
from jaxgeo.hsi.adapter import SpectralAdapter
from jaxgeo.train import (
    RunDir,
    data_mesh,
    data_parallel,
    init_train_state,
    make_train_step,
    shard_batch,
    split_module,
    warmup_cosine,
)


class _Net(nnx.Module):
    """Adapter (batch norm: statistics over the whole batch) + linear regression head."""

    def __init__(self, rngs):
        self.adapter = SpectralAdapter(rngs=rngs)
        self.head = nnx.Linear(128, 1, rngs=rngs)

    def __call__(self, x, *, train=False):
        return self.head(self.adapter(x, train=train).mean(axis=(1, 2)))[:, 0]


def test_data_parallel_step_equals_single_device():
    assert jax.device_count() == 8
    mdef, params, rest = split_module(_Net(nnx.Rngs(0)))

    def loss_fn(p, state, batch, key):
        del key
        m = mdef.merge(p, state)
        loss = jnp.mean((m(batch["x"], train=True) - batch["y"]) ** 2)
        return loss, (mdef.rest(m), {})

    # Plain SGD: Adam would divide the round-off-sized gradients of the conv biases that
    # batch norm cancels (exactly zero in exact arithmetic) by their own size.
    tx = optax.sgd(0.1, momentum=0.9)
    step = make_train_step(loss_fn, tx)
    rng = np.random.default_rng(0)
    batches = [
        {
            "x": rng.normal(size=(16, 2, 2, 80)).astype(np.float32),
            "y": rng.normal(size=16).astype(np.float32),
        }
        for _ in range(2)
    ]
    key = jax.random.key(0)
    one = jax.jit(step)
    mesh = data_mesh()
    many = data_parallel(step, mesh)
    ts1 = ts8 = init_train_state(params, rest, tx)
    for b in batches:
        ts1, m1 = one(ts1, b, key)
        ts8, m8 = many(ts8, shard_batch(b, mesh), key)
        np.testing.assert_allclose(float(m8["loss"]), float(m1["loss"]), rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(ts1), jax.tree_util.tree_leaves(ts8), strict=True):
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=2e-5, atol=2e-6)
    # The batch statistics were updated (train mode), identically.
    assert not np.allclose(np.asarray(ts8["state"]["adapter"]["norms"]["0"]["mean"]), 0.0)
    assert int(ts8["step"]) == 2


def test_shard_batch_refuses_uneven_split():
    with pytest.raises(ValueError, match="multiple of the 8 devices"):
        shard_batch({"x": np.zeros((6, 2), np.float32)}, data_mesh())


def test_warmup_cosine_schedule_values():
    s = warmup_cosine(1.0, total_steps=110, warmup_steps=10, end=0.0)
    assert float(s(0)) == 0.0
    assert float(s(5)) == pytest.approx(0.5)
    assert float(s(10)) == pytest.approx(1.0)
    assert float(s(60)) == pytest.approx(0.5, abs=1e-6)  # half-way down the cosine
    assert float(s(110)) == pytest.approx(0.0, abs=1e-7)
    s0 = warmup_cosine(2.0, total_steps=4)
    assert float(s0(0)) == pytest.approx(2.0) and float(s0(2)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_cosine(1.0, 5, 6)


def test_module_def_round_trip():
    model = _Net(nnx.Rngs(3))
    mdef, params, rest = split_module(model)
    assert set(params) == {"adapter", "head"}
    assert set(rest["adapter"]["norms"]["0"]) == {"mean", "var"}
    rebuilt = mdef.merge(params, rest)
    x = jnp.ones((1, 1, 1, 80), jnp.float32)
    np.testing.assert_array_equal(np.asarray(rebuilt(x)), np.asarray(model(x)))


def test_run_dir_refuses_existing_and_mismatched(tmp_path):
    with RunDir(tmp_path / "r", {"a": 1, "epochs": 2}) as run:
        run.save(1, {"w": np.ones(2)}, {"note": "x"})
    with pytest.raises(StoreExistsError):
        RunDir(tmp_path / "r", {"a": 1, "epochs": 2})
    with pytest.raises(ConfigError, match="other settings"):
        RunDir(tmp_path / "r", {"a": 2, "epochs": 2}, resume=True)
    with RunDir(tmp_path / "r", {"a": 1, "epochs": 5}, resume=True) as run:  # epochs are free
        state, meta = run.restore({"w": np.zeros(2)})
    np.testing.assert_array_equal(state["w"], np.ones(2))
    assert meta == {"note": "x"}
    with pytest.raises(FileFormatError):
        RunDir(tmp_path / "other", {}, resume=True)
    with RunDir(tmp_path / "r", {"a": 3}, overwrite=True) as run:
        assert run.checkpointer.all_steps() == []
