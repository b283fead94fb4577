"""jaxgeo.parallel: meshes and padding, halo exchange == periodic roll, multi-process spec,
and two writer processes filling one shared store by regions."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import xarray as xr
from jax.sharding import PartitionSpec as P

from jaxgeo.errors import InputError
from jaxgeo.io import open_store
from jaxgeo.parallel import (
    DistributedSpec,
    crop_halo,
    exchange_halo,
    global_sum,
    mesh_for,
    pad_leading,
    padded_size,
    shard_leading,
    unpad_leading,
)


def test_mesh_for_and_padding():
    mesh = mesh_for(5)
    assert mesh.shape["r"] == 5 and padded_size(5, mesh) == 5
    mesh = mesh_for(10)
    assert mesh.shape["r"] == 8 and padded_size(10, mesh) == 16
    assert mesh_for(3, jax.devices()[:2]).shape["r"] == 2
    x = {"a": jnp.arange(10.0), "b": jnp.arange(20.0).reshape(10, 2)}
    padded = pad_leading(x, 16)
    assert padded["a"].shape == (16,) and float(padded["a"][-1]) == 9.0
    placed = shard_leading(padded, mesh)
    assert len(placed["b"].sharding.device_set) == 8
    back = unpad_leading(placed, 10)
    np.testing.assert_array_equal(np.asarray(back["b"]), np.asarray(x["b"]))
    with pytest.raises(InputError):
        mesh_for(0)


@pytest.mark.parametrize("width", [1, 3, 4])
def test_halo_exchange_equals_periodic_padding(width):
    x = jnp.arange(3 * 32, dtype=jnp.float64).reshape(3, 32)
    mesh = jax.make_mesh((8,), ("lon",), axis_types=(jax.sharding.AxisType.Auto,))

    def local(b):
        padded = exchange_halo(b, width, "lon")
        total = global_sum(b, "lon")
        return crop_halo(padded, width) - b + total, padded

    f = jax.jit(jax.shard_map(local, mesh=mesh, in_specs=P(None, "lon"), out_specs=P(None, "lon")))
    same, padded = f(x)
    np.testing.assert_array_equal(
        np.asarray(same), np.broadcast_to(x.sum(-1, keepdims=True), x.shape)
    )
    # Block i of the result holds columns 4i - width ... 4i + 3 + width of x, periodically.
    padded = np.asarray(padded).reshape(3, 8, 4 + 2 * width)
    for i in range(8):
        cols = np.arange(4 * i - width, 4 * i + 4 + width) % 32
        np.testing.assert_array_equal(padded[:, i], np.asarray(x)[:, cols])


def test_distributed_spec_checks(monkeypatch):
    for k in ("JAXGEO_COORDINATOR", "JAXGEO_NUM_PROCESSES", "JAXGEO_PROCESS_ID"):
        monkeypatch.delenv(k, raising=False)
    assert not DistributedSpec.from_env().requested
    monkeypatch.setenv("JAXGEO_NUM_PROCESSES", "2")
    monkeypatch.setenv("JAXGEO_PROCESS_ID", "1")
    spec = DistributedSpec.from_env(coordinator="localhost:1234")
    assert spec.requested and spec.num_processes == 2 and spec.process_id == 1
    spec.check()
    with pytest.raises(InputError, match="--coordinator"):
        DistributedSpec(num_processes=2).check()
    with pytest.raises(InputError, match="process-id"):
        DistributedSpec("h:1", 2, 2).check()


_WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np, xarray as xr
    from jaxgeo.sft.ensemble import write_region
    path, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    for t in range(3):
        for r in range(first, first + count):
            values = np.full((1, 1, 4, 6), 100.0 * r + t)
            ds = xr.Dataset({"br": (("realization", "time", "lat", "lon"), values)})
            write_region(path, ds, {"realization": slice(r, r + 1), "time": slice(t, t + 1)})
    """
)


def test_two_processes_write_their_realizations(tmp_path):
    from jaxgeo.sft.ensemble import commit_sizes, create_region_store

    template = xr.Dataset(
        {"br": (("realization", "time", "lat", "lon"), np.zeros((4, 1, 4, 6)), {"units": "G"})},
        coords={
            "realization": np.arange(4),
            "time": [0.0],
            "lat": np.linspace(-90, 90, 4),
            "lon": np.arange(6.0) * 60,
        },
    ).reindex(time=[0.0, 1.0, 2.0])
    store = tmp_path / "shared.zarr"
    create_region_store(store, template, {}, attrs={"config": "x"}, committed={"time": 0})
    assert open_store(store).sizes["time"] == 0  # nothing committed yet
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(store), str(first), "2"])
        for first in (0, 2)
    ]
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    commit_sizes(store, {"time": 3})
    ds = open_store(store)
    assert ds.attrs["config"] == "x" and ds["br"].attrs["units"] == "G"
    np.testing.assert_array_equal(ds["time"].values, [0.0, 1.0, 2.0])
    want = 100.0 * np.arange(4)[:, None] + np.arange(3)[None, :]
    np.testing.assert_array_equal(ds["br"].values[:, :, 2, 3], want)
    # One realization per chunk: the writers never shared a chunk file.
    assert len(list((store / "br" / "c").rglob("*"))) >= 4
