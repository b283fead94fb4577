"""DEM readers, the zarr layer, regions and patch sampling."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgeo.errors import ConfigError, FileFormatError, StoreExistsError
from jaxgeo.terrain.data import (
    Region,
    dihedral,
    load_dem,
    load_sample,
    read_dem_store,
    read_geotiff,
    sample_patches,
    split_regions,
    write_dem_store,
    write_geotiff,
)


def test_samples_load_with_metre_cells() -> None:
    j = load_sample("jacksboro")
    assert j.shape == (344, 403) and not j.has_sea
    dy, dx = j.cell_size_m
    # 3 arc-seconds: 92.6 m north-south, times cos(36.6°) east-west.
    assert dy == pytest.approx(92.6, abs=0.2) and dx == pytest.approx(74.4, abs=0.3)
    assert 200 < j.elevation.min() < j.elevation.max() < 1100
    t = load_sample("topobathy")
    assert t.shape == (91, 120) and t.has_sea
    with pytest.raises(ConfigError, match="jacksboro"):
        load_sample("everest")


def test_geotiff_round_trip_projected_and_geographic(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    z = (500 + 50 * rng.standard_normal((20, 30))).astype(np.float32)
    p = write_geotiff(tmp_path / "utm.tif", z, cell=(30.0, 25.0), origin=(500000.0, 4e6))
    dem = read_geotiff(p)
    assert np.array_equal(dem.elevation, z)
    assert dem.cell_size_m == (30.0, 25.0)
    assert dem.attrs["model_type"] == 1 and dem.attrs["x0"] == 500000.0
    g = write_geotiff(tmp_path / "geo.tif", z, cell=(1 / 1200, 1 / 1200), origin=(-84.0, 60.0),
                      geographic=True)  # fmt: skip
    gd = read_geotiff(g)
    assert gd.attrs["model_type"] == 2 and gd.attrs["epsg"] == 4326
    # 3 arc-seconds at ~60° N: 92.6 m north-south, half that east-west.
    lat = 60.0 - 10 / 1200
    assert gd.cell_size_m[0] == pytest.approx(92.66, abs=0.05)
    assert gd.cell_size_m[1] == pytest.approx(92.66 * np.cos(np.radians(lat)), abs=0.05)


def test_geotiff_refusals(tmp_path: Path) -> None:
    import tifffile

    tifffile.imwrite(tmp_path / "plain.tif", np.zeros((4, 4), np.float32))
    with pytest.raises(FileFormatError, match="ModelPixelScaleTag"):
        read_geotiff(tmp_path / "plain.tif")
    z = np.zeros((4, 4), np.float32)
    z[1, 1] = np.nan
    write_geotiff(tmp_path / "hole.tif", z, cell=(1.0, 1.0))
    with pytest.raises(FileFormatError, match="non-finite"):
        read_geotiff(tmp_path / "hole.tif")
    with pytest.raises(FileFormatError, match="not found"):
        read_geotiff(tmp_path / "missing.tif")


def test_dem_store_round_trip_and_refusal(tmp_path: Path) -> None:
    z = np.arange(12 * 10, dtype=np.float32).reshape(12, 10)
    write_geotiff(tmp_path / "a.tif", z, cell=(10.0, 20.0))
    dem = load_dem(tmp_path / "a.tif")
    store = write_dem_store(dem, tmp_path / "a.zarr")
    back = read_dem_store(store)
    assert np.array_equal(back.elevation, z) and back.cell_size_m == (10.0, 20.0)
    assert load_dem(store).name == "a"
    with pytest.raises(StoreExistsError):
        write_dem_store(dem, tmp_path / "a.zarr")
    write_dem_store(dem, tmp_path / "a.zarr", overwrite=True)


def test_split_regions_disjoint_and_refuses_small_regions() -> None:
    train, held = split_regions((344, 403), 0.3, 64)
    assert train.col1 == held.col0 and held.col1 == 403 and held.shape[1] == 121
    with pytest.raises(ConfigError, match="smaller than"):
        split_regions((91, 120), 0.3, 64)


def test_dihedral_is_the_group_of_the_square() -> None:
    a = jnp.arange(9.0).reshape(3, 3)
    outs = [np.asarray(dihedral(a, jnp.asarray(k))) for k in range(8)]
    assert len({o.tobytes() for o in outs}) == 8
    assert np.array_equal(outs[0], a) and np.array_equal(outs[4], a.T)
    assert np.array_equal(outs[1], np.rot90(a))


def test_patches_stay_in_their_region_and_are_deterministic() -> None:
    # A tile whose value is the column index: every patch's values are columns of the region.
    tile = jnp.tile(jnp.arange(100.0)[None, :], (50, 1))
    region = Region(0, 50, 60, 100)
    p = sample_patches(jax.random.key(0), tile, region, 32, 16)
    assert p.shape == (32, 16, 16)
    assert float(p.min()) >= 60 and float(p.max()) <= 99
    q = sample_patches(jax.random.key(0), tile, region, 32, 16)
    assert np.array_equal(np.asarray(p), np.asarray(q))
    # Augmentation turns some patches: their values vary along rows.
    assert bool((jnp.abs(jnp.diff(p, axis=1)) > 0).any())
