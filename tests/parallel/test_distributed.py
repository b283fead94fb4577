"""jaxgeo.parallel.distributed: device order over processes, placing host values on a mesh,
and native stdout kept off the JSON line (single process; two real processes are in
tests/sft/test_multiprocess.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jaxgeo.parallel.distributed import interleave_processes, put_global


def test_interleave_processes_round_robin():
    devs = [SimpleNamespace(id=i, process_index=i // 4) for i in range(8)]  # 2 x 4 devices
    order = [d.id for d in interleave_processes(devs)]
    assert order == [0, 4, 1, 5, 2, 6, 3, 7]
    # The first n devices span every process as soon as n >= the process count.
    three = [SimpleNamespace(id=i, process_index=i % 3) for i in range(6)]
    assert {d.process_index for d in interleave_processes(three)[:3]} == {0, 1, 2}
    assert interleave_processes(jax.devices()) == jax.devices()  # one process: unchanged


def test_put_global_equals_device_put():
    mesh = jax.make_mesh((8,), ("r",), axis_types=(jax.sharding.AxisType.Auto,))
    sharding = NamedSharding(mesh, P("r"))
    tree = {
        "x": np.arange(16 * 3, dtype=np.float64).reshape(16, 3),
        "y": jnp.arange(16, dtype=jnp.int32),
        "keys": jnp.stack([jax.random.key(s) for s in range(16)]),
    }
    placed = put_global(tree, sharding)
    for name in ("x", "y"):
        assert placed[name].sharding == sharding
        np.testing.assert_array_equal(np.asarray(placed[name]), np.asarray(tree[name]))
        assert [s.data.shape[0] for s in placed[name].addressable_shards] == [2] * 8
    # Typed keys keep their implementation and draw the same numbers.
    assert placed["keys"].dtype == tree["keys"].dtype
    draw = jax.vmap(lambda k: jax.random.normal(k, (2,)))
    np.testing.assert_array_equal(np.asarray(draw(placed["keys"])), np.asarray(draw(tree["keys"])))
    rep = put_global(np.ones((4, 2)), NamedSharding(mesh, P()))
    assert rep.sharding.is_fully_replicated and float(rep.sum()) == 8.0


_NATIVE = textwrap.dedent(
    """
    import os, sys
    from jaxgeo.parallel.distributed import native_stdout_to_stderr
    print("before", flush=True)
    with native_stdout_to_stderr():
        os.write(1, b"native\\n")
        print("python inside")
    print("after")
    """
)


def test_native_stdout_goes_to_stderr():
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", _NATIVE], capture_output=True, text=True, env=env, check=True
    )
    assert proc.stdout.split() == ["before", "after"]
    assert proc.stderr.split("\n")[:2] == ["native", "python inside"]
