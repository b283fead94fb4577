"""Tests of jaxgeo.io.store: create, append along two dimensions, crash safety, errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

import jaxgeo
from jaxgeo.errors import FileFormatError, InputError, StoreExistsError
from jaxgeo.io.store import (
    COMMITTED_ATTR,
    append,
    check_finite,
    committed_sizes,
    create_store,
    open_store,
    read_attrs,
)

N_REAL, N_LAT, N_LON = 2, 5, 8
REPO = Path(__file__).resolve().parents[2]


def _map_slice(i: int) -> np.ndarray:
    """Map entry i: distinct per entry and per point, exact in float32."""
    r, la, lo = np.meshgrid(np.arange(N_REAL), np.arange(N_LAT), np.arange(N_LON), indexing="ij")
    return (1000.0 * i + 100.0 * r + 10.0 * la + lo).astype(np.float32)


def _maps(start: int, count: int) -> xr.Dataset:
    br = np.zeros((N_REAL, count, N_LAT, N_LON), np.float32)
    for k in range(count):
        br[:, k] = _map_slice(start + k)
    return xr.Dataset(
        {"br": (("realization", "time", "lat", "lon"), br)},
        coords={"time": ("time", np.arange(start, start + count, dtype=np.float64) * 24.0)},
    )


def _history(start: int, count: int) -> xr.Dataset:
    idx = np.arange(start, start + count, dtype=np.float64)
    rr = np.arange(N_REAL, dtype=np.float64)[:, None]
    return xr.Dataset(
        {
            "br_min": (("realization", "history_time"), -idx[None, :] - rr),
            "flux_positive": (("realization", "history_time"), 1e21 * idx[None, :] + rr),
        },
        coords={"history_time": ("history_time", idx)},
    )


def _initial(n_time: int = 0, n_hist: int = 0) -> xr.Dataset:
    ds = xr.merge([_maps(0, n_time), _history(0, n_hist)])
    ds = ds.assign_coords(
        lat=("lat", np.linspace(-90.0, 90.0, N_LAT)),
        lon=("lon", np.arange(N_LON) * 360.0 / N_LON),
        realization=("realization", np.arange(N_REAL)),
    )
    ds["diffusion_nu_km2_s"] = ("realization", np.array([100.0, 200.0]))
    ds["br"].attrs = {"units": "G", "long_name": "radial magnetic field"}
    ds["time"].attrs = {"units": "hours", "long_name": "time since start"}
    ds["lat"].attrs = {"units": "degrees_north", "long_name": "latitude"}
    ds["br_min"].attrs = {"units": "G", "long_name": "minimum of Br"}
    return ds


def _expect_contents(ds: xr.Dataset, n_time: int, n_hist: int) -> None:
    """Every visible entry is complete and equal to what was written."""
    assert ds.sizes["time"] == n_time and ds.sizes["history_time"] == n_hist
    np.testing.assert_array_equal(ds["time"].values, np.arange(n_time) * 24.0)
    br = ds["br"].values
    for i in range(n_time):
        np.testing.assert_array_equal(br[:, i], _map_slice(i))
    expected = _history(0, n_hist)
    for name in ("br_min", "flux_positive", "history_time"):
        np.testing.assert_array_equal(ds[name].values, expected[name].values)


def _snapshot(path: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()
    }


# --------------------------------------------------------------------------------------------


def test_create_open_round_trip_keeps_values_attrs_and_chunking(tmp_path: Path) -> None:
    path = tmp_path / "run.zarr"
    ds = _initial(n_time=2, n_hist=3)
    create_store(
        path, ds, append_dim=("time", "history_time"), attrs={"config": "[grid]\nn_phi = 8\n"}
    )

    out = open_store(path)
    _expect_contents(out, 2, 3)
    assert out["br"].dtype == np.float32
    np.testing.assert_array_equal(out["diffusion_nu_km2_s"].values, [100.0, 200.0])
    assert out["br"].attrs["units"] == "G"
    assert out["br"].attrs["long_name"] == "radial magnetic field"
    assert out["time"].attrs == {"units": "hours", "long_name": "time since start"}
    assert out["lat"].attrs["units"] == "degrees_north"
    assert out.attrs["config"] == "[grid]\nn_phi = 8\n"
    assert out.attrs["jaxgeo_version"] == jaxgeo.__version__
    assert COMMITTED_ATTR not in out.attrs
    assert read_attrs(path) == {
        "config": "[grid]\nn_phi = 8\n",
        "jaxgeo_version": jaxgeo.__version__,
    }

    root = zarr.open_group(path, mode="r", zarr_format=3, use_consolidated=False)
    assert root["br"].chunks == (N_REAL, 1, N_LAT, N_LON)  # one time slice a chunk
    assert root["br_min"].chunks[1] > 1  # histories in long chunks
    assert not (path / "zarr.json").read_text().count('consolidated_metadata": {')
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.zarr"]  # no temporaries left


def test_append_along_two_independent_dimensions(tmp_path: Path) -> None:
    path = tmp_path / "run.zarr"
    create_store(path, _initial(0, 0), append_dim=("time", "history_time"))
    _expect_contents(open_store(path), 0, 0)

    n_time = n_hist = 0
    for count_t, count_h in [(1, 4), (2, 0), (0, 5), (1, 1)]:
        if count_t:
            assert append(path, _maps(n_time, count_t), "time") == n_time + count_t
            n_time += count_t
        assert append(path, _history(n_hist, count_h), "history_time") == n_hist + count_h
        n_hist += count_h
        _expect_contents(open_store(path), n_time, n_hist)
    assert committed_sizes(path)["time"] == 4 and committed_sizes(path)["history_time"] == 10
    # the variables appended with the Dataset in another dimension order land right
    append(path, _maps(n_time, 2).transpose("lon", "time", "lat", "realization"), "time")
    _expect_contents(open_store(path), n_time + 2, n_hist)


def test_create_refuses_existing_path_and_leaves_it_untouched(tmp_path: Path) -> None:
    path = tmp_path / "run.zarr"
    create_store(path, _initial(1, 1))
    before = _snapshot(path)
    with pytest.raises(StoreExistsError, match=r"run\.zarr.*--overwrite"):
        create_store(path, _initial(3, 3))
    assert _snapshot(path) == before

    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("precious")
    with pytest.raises(StoreExistsError, match="not a zarr store"):
        create_store(other, _initial(1, 1), overwrite=True)
    assert (other / "keep.txt").read_text() == "precious"


def test_overwrite_swaps_in_only_a_complete_store(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "run.zarr"
    create_store(path, _initial(1, 1), attrs={"config": "old"})
    before = _snapshot(path)

    original = xr.Dataset.to_zarr

    def write_then_fail(self, store, *args, **kwargs):
        original(self, store, *args, **kwargs)  # the new store is fully written ...
        raise OSError("disk full")  # ... and then the write fails

    monkeypatch.setattr(xr.Dataset, "to_zarr", write_then_fail)
    with pytest.raises(OSError, match="disk full"):
        create_store(path, _initial(3, 3), overwrite=True, attrs={"config": "new"})
    assert _snapshot(path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.zarr"]

    monkeypatch.undo()
    create_store(path, _initial(3, 2), overwrite=True, attrs={"config": "new"})
    _expect_contents(open_store(path), 3, 2)
    assert read_attrs(path)["config"] == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.zarr"]


def test_open_store_errors_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "missing.zarr"
    with pytest.raises(FileFormatError, match=r"missing\.zarr does not exist.*zarr v3 store"):
        open_store(missing)
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(FileFormatError, match=r"plain is a directory without zarr\.json"):
        open_store(plain)
    afile = tmp_path / "file.zarr"
    afile.write_text("x")
    with pytest.raises(FileFormatError, match=r"file\.zarr is a file"):
        read_attrs(afile)
    with pytest.raises(FileFormatError, match="does not exist"):
        append(missing, _maps(0, 1), "time")


def test_append_refuses_inconsistent_datasets_without_changing_the_store(tmp_path: Path) -> None:
    path = tmp_path / "run.zarr"
    create_store(path, _initial(1, 1))
    before = _snapshot(path)
    bad_lat = _maps(1, 1).assign_coords(lat=("lat", np.linspace(-80.0, 80.0, N_LAT)))
    wrong_shape = xr.Dataset(
        {
            "br": (
                ("realization", "time", "lat", "lon"),
                np.zeros((N_REAL, 1, N_LAT, N_LON + 1), np.float32),
            )
        },
        coords={"time": ("time", [24.0])},
    )
    cases = [
        (_maps(1, 1), "lon", r"missing: \['lon'\]"),
        (_maps(1, 1).drop_vars("time"), "time", r"missing: \['time'\]"),
        (
            _maps(1, 1).assign(extra=("lat", np.ones(N_LAT))),
            "time",
            r"not in the store: \['extra'\]",
        ),
        (xr.merge([_maps(1, 1), _history(1, 1)]), "time", "coordinate 'history_time'"),
        (_history(1, 1), "depth", "not a dimension of the store"),
        (bad_lat, "time", "coordinate 'lat'"),
        (wrong_shape, "time", "has 9 entries along 'lon'"),
        (_maps(1, 1).assign(br=lambda d: d.br.astype(np.complex64)), "time", "cannot be stored"),
    ]
    for ds, dim, message in cases:
        with pytest.raises(InputError, match=message):
            append(path, ds, dim)
    assert _snapshot(path) == before


def test_interrupted_append_is_invisible_and_repaired_by_the_next(tmp_path: Path) -> None:
    """Recreate, by hand, the states a kill can leave between writing data and committing."""
    path = tmp_path / "run.zarr"
    create_store(path, _initial(2, 2), append_dim=("time", "history_time"))
    root = zarr.open_group(path, mode="r+", zarr_format=3, use_consolidated=False)

    # Killed after growing and writing `br` (with garbage) but before `time`: sizes conflict.
    root["br"].resize((N_REAL, 4, N_LAT, N_LON))
    root["br"][:, 2:4] = np.full((N_REAL, 2, N_LAT, N_LON), -7.0, np.float32)
    _expect_contents(open_store(path), 2, 2)
    # Killed after growing everything on history_time, before the commit.
    for name in ("br_min", "flux_positive", "history_time"):
        arr = root[name]
        arr.resize(arr.shape[:-1] + (5,))
    _expect_contents(open_store(path), 2, 2)
    assert committed_sizes(path) == {
        "realization": 2,
        "time": 2,
        "lat": 5,
        "lon": 8,
        "history_time": 2,
    }

    append(path, _maps(2, 1), "time")  # shorter than the leftover: shrinks it
    append(path, _history(2, 1), "history_time")
    _expect_contents(open_store(path), 3, 3)
    append(path, _maps(3, 2), "time")
    _expect_contents(open_store(path), 5, 3)


_CHILD = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from test_store import _history, _maps
    from jaxgeo.io.store import append, committed_sizes

    path, target = sys.argv[1], int(sys.argv[2])
    while True:
        sizes = committed_sizes(path)
        n_time, n_hist = sizes["time"], sizes["history_time"]
        if n_hist < 3 * n_time:  # three history entries per map entry
            append(path, _history(n_hist, 3 * n_time - n_hist), "history_time")
        elif n_time >= target:
            break
        else:
            append(path, _maps(n_time, 1), "time")
    """
)


@pytest.mark.slow
def test_sigkill_during_appends_leaves_a_readable_store_of_complete_slices(tmp_path: Path) -> None:
    path = tmp_path / "run.zarr"
    create_store(path, _initial(0, 0), append_dim=("time", "history_time"))
    script = tmp_path / "child.py"
    script.write_text(_CHILD.format(tests=str(Path(__file__).parent)))
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    rng = np.random.default_rng(0)
    target = 400  # more than the child can reach before it is killed
    kills = 0
    for _ in range(4):
        start = committed_sizes(path)["time"]
        child = subprocess.Popen(
            [sys.executable, str(script), str(path), str(target)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        # Let it commit a few entries, then kill it at a random moment of an append.
        goal = start + int(rng.integers(1, 4))
        deadline = time.monotonic() + 60.0
        while committed_sizes(path)["time"] < goal and child.poll() is None:
            assert time.monotonic() < deadline, "the appending child made no progress"
            time.sleep(0.005)
        time.sleep(float(rng.uniform(0.0, 0.03)))
        if child.poll() is not None:
            pytest.fail(
                f"child exited by itself ({child.returncode}): {child.stderr.read().decode()}"
            )
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stderr.close()
        kills += 1

        ds = open_store(path)
        n_time, n_hist = ds.sizes["time"], ds.sizes["history_time"]
        assert n_time >= goal
        assert n_hist in (3 * n_time - 3, 3 * n_time)  # killed before or after the history append
        _expect_contents(ds, n_time, n_hist)
        assert not np.isnan(ds["br"].values).any()
    assert kills == 4

    # The store takes appends after the kills, and everything is still in order.
    append(path, _maps(n_time, 1), "time")
    append(path, _history(n_hist, 2), "history_time")
    _expect_contents(open_store(path), n_time + 1, n_hist + 2)


def test_check_finite_names_the_array() -> None:
    import jax.numpy as jnp  # here, so that the appending child process does not import JAX

    check_finite(np.ones(3), "x")
    check_finite(np.arange(4), "integers are always finite")
    check_finite(jnp.zeros((2, 2)), "jax array")
    bad = np.zeros((2, 3))
    bad[1, 2] = np.inf
    bad[0, 1] = np.nan
    with pytest.raises(
        InputError, match=r"initial map br\.h5 has 2 non-finite value\(s\).*\(0, 1\)"
    ):
        check_finite(bad, "initial map br.h5")
    with pytest.raises(InputError, match="flow v_phi"):
        check_finite(jnp.array([1.0, jnp.nan]), "flow v_phi")


def test_unstorable_attribute_is_refused_before_writing(tmp_path: Path) -> None:
    path = tmp_path / "run.zarr"
    with pytest.raises(InputError, match="attribute 'config'"):
        create_store(path, _initial(1, 1), attrs={"config": object()})
    assert not path.exists()
    with pytest.raises(InputError, match="append dimension"):
        create_store(path, _initial(1, 1), append_dim="step")
