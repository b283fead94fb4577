"""Tests of jaxgeo.io.checkpoint: exact round trips, pruning, abstract targets, errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxgeo.errors import FileFormatError, InputError
from jaxgeo.io.checkpoint import Checkpointer


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Flow:
    v_phi: jax.Array
    n_sub: jax.Array


def _state(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    br = rng.normal(size=(3, 5)) * 1e3
    br[0, 0], br[0, 1], br[0, 2] = -0.0, np.nan, 5e-324  # signed zero, NaN, subnormal: bits matter
    return {
        "br": jnp.asarray(br),  # float64
        "counts": jnp.asarray(rng.integers(-(2**31), 2**31 - 1, size=4), dtype=jnp.int32),
        "flow": Flow(
            v_phi=jnp.asarray(rng.normal(size=(2, 3))), n_sub=jnp.asarray(7, dtype=jnp.int32)
        ),
        "host": {"mask": rng.integers(0, 2, size=6).astype(np.int8), "w": rng.normal(size=2)},
        "key_data": jax.random.key_data(jax.random.key(seed)),
        "key": jax.random.split(jax.random.key(seed + 1), 3),
        "t_hours": np.float64(rng.normal()),
        "step": np.int32(41 + seed),
        "lr": 1e-3,
        "epoch": 3,
        "items": [jnp.arange(3.0), (jnp.ones(2, dtype=jnp.float32),)],
    }


def _assert_identical(a, b) -> None:
    """Same structure, leaf types, dtypes and bits."""
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            assert x.dtype == y.dtype and jax.random.key_impl(x) == jax.random.key_impl(y)
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        assert type(x) is type(y) or (isinstance(x, jax.Array) and isinstance(y, jax.Array)), (
            type(x),
            type(y),
        )
        assert np.asarray(x).dtype == np.asarray(y).dtype
        assert np.asarray(x).shape == np.asarray(y).shape
        assert np.asarray(x).tobytes() == np.asarray(y).tobytes()


def test_round_trip_is_exact_into_concrete_and_abstract_targets(tmp_path: Path) -> None:
    state = _state()
    meta = {"time_hours": 12.5, "config": "[time]\nend_hours = 24.0\n", "nested": {"a": [1, 2]}}
    with Checkpointer(tmp_path / "ckpt") as ckpt:
        ckpt.save(10, state, meta)
        restored, got_meta = ckpt.restore(target=_state(seed=5))  # other values, same structure
        _assert_identical(restored, state)
        assert got_meta == meta

        abstract = jax.eval_shape(lambda: _state())
        restored, _ = ckpt.restore(10, target=abstract)
        # Abstract leaves come back as JAX arrays; everything else as in the state.
        as_jax = jax.tree.map(
            lambda x: x if isinstance(x, jax.Array) else jnp.asarray(x),
            state,
        )
        _assert_identical(restored, as_jax)
    assert isinstance(restored["flow"], Flow)


def test_restore_honours_target_sharding(tmp_path: Path) -> None:
    mesh = jax.make_mesh((8,), ("x",), axis_types=(jax.sharding.AxisType.Explicit,))
    sharding = NamedSharding(mesh, P("x"))
    value = jax.device_put(jnp.arange(16.0) ** 0.5, sharding)
    with Checkpointer(tmp_path) as ckpt:
        ckpt.save(0, {"u": value})
        target = {"u": jax.ShapeDtypeStruct((16,), jnp.float64, sharding=sharding)}
        restored, meta = ckpt.restore(target=target)
    assert meta == {}
    assert restored["u"].sharding == sharding
    np.testing.assert_array_equal(np.asarray(restored["u"]), np.asarray(value))


def test_keeps_the_last_n_and_reports_latest_step(tmp_path: Path) -> None:
    directory = tmp_path / "ckpt"
    with Checkpointer(directory, max_to_keep=2) as ckpt:
        assert ckpt.latest_step() is None
        for step in (0, 5, 10, 15, 20):
            ckpt.save(step, _state(step), {"step": step})
            assert ckpt.latest_step() == step
        assert ckpt.all_steps() == [15, 20]
    assert sorted(p.name for p in directory.iterdir() if not p.name.startswith(".")) == ["15", "20"]

    # A save is on disk when it returns: a fresh instance sees and restores it.
    with Checkpointer(directory, max_to_keep=2, create=False) as again:
        assert again.latest_step() == 20
        state, meta = again.restore(15, target=_state())
        _assert_identical(state, _state(15))
        assert meta == {"step": 15}


def test_errors_are_clear(tmp_path: Path) -> None:
    missing = tmp_path / "no_such_dir"
    with pytest.raises(FileFormatError, match=r"no_such_dir does not exist"):
        Checkpointer(missing, create=False)
    assert not missing.exists()
    afile = tmp_path / "file"
    afile.write_text("x")
    with pytest.raises(FileFormatError, match="is a file"):
        Checkpointer(afile)
    with pytest.raises(InputError, match="max_to_keep"):
        Checkpointer(tmp_path / "c", max_to_keep=0)

    with Checkpointer(tmp_path / "empty") as ckpt:
        with pytest.raises(FileFormatError, match=r"no checkpoint found in .*empty"):
            ckpt.restore(target={"a": jnp.zeros(2)})
        ckpt.save(3, {"a": jnp.zeros(2)})
        with pytest.raises(FileFormatError, match=r"step 4 not found .*available steps: \[3\]"):
            ckpt.restore(4, target={"a": jnp.zeros(2)})
        with pytest.raises(InputError, match="step 3 already exists"):
            ckpt.save(3, {"a": jnp.ones(2)})
        with pytest.raises(InputError, match="JSON-serialisable"):
            ckpt.save(4, {"a": jnp.ones(2)}, {"bad": object()})
        with pytest.raises(FileFormatError, match="does not match the target"):
            ckpt.restore(3, target={"b": jnp.zeros(2)})
        assert ckpt.all_steps() == [3]
