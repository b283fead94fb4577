"""jaxgeo.agb.data: the packaged scenes as HLS bands, the allometric model, GEDI geometry,
tiles and the region store."""

from __future__ import annotations

import math

import numpy as np
import pytest

from jaxgeo.agb.data import (
    IGNORE,
    Allometry,
    Gedi,
    Scene,
    biomass,
    gaussian_random_field,
    gedi_footprints,
    make_region,
    open_region_store,
    read_bigearthnet,
    read_landsat8,
    read_sentinel2,
    tile_region,
    vegetation_indices,
    write_region_store,
)
from jaxgeo.errors import ConfigError, StoreExistsError


def test_scenes_are_six_band_reflectance_on_a_30m_grid():
    s2 = read_sentinel2()
    # B02 is 1947 x 1933 at 10 m: 649 x 644 at 30 m.
    assert s2.reflectance.shape == (649, 644, 6) and s2.reflectance.dtype == np.float32
    l8 = read_landsat8()
    assert l8.reflectance.shape == (603, 627, 6)
    for scene in (s2, l8):
        r = scene.reflectance[scene.valid]
        assert 0.0 < r.min() and r.max() < 1.2
        # Vegetated land: NIR above red.
        assert np.median(r[:, 3]) > np.median(r[:, 2])
    # The Landsat crop is cloudy: some pixels are masked out, most are clear.
    assert 0.5 < l8.valid.mean() < 0.99
    ben = read_bigearthnet(32)
    assert ben.shape == (6, 32, 32, 6) and np.all(ben > -0.2)


def test_gaussian_random_field_has_unit_variance_and_its_correlation_length():
    corr = 6.0
    f = gaussian_random_field((256, 256), corr, np.random.default_rng(0))
    assert abs(f.mean()) < 1e-12 and abs(f.std() - 1.0) < 1e-12
    # A Gaussian kernel of width l gives the covariance exp(-r^2 / (4 l^2)).
    for lag in (3, 6, 12):
        rho = np.mean(f * np.roll(f, lag, axis=1))
        assert abs(rho - math.exp(-(lag**2) / (4 * corr**2))) < 0.08


def test_allometry_saturates_and_is_zero_off_land():
    scene = read_sentinel2()
    no_noise = Allometry(sigma=0.0)
    agb = biomass(scene, no_noise, seed=0)
    assert agb.min() >= 0 and agb.max() <= 300
    assert np.all(agb[~scene.valid] == 0)
    vi = vegetation_indices(scene.reflectance)
    v = 0.6 * vi["ndvi"] + 0.4 * vi["ndmi"]
    order = np.argsort(v[scene.valid])
    a = agb[scene.valid][order].astype(np.float64)
    assert np.all(np.diff(a) >= -1e-3)  # monotone in the index without residual noise
    # Saturation: on a ramp of NIR (red, SWIR fixed) the biomass gain per step shrinks.
    nir = np.linspace(0.15, 0.6, 64, dtype=np.float32)
    refl = np.tile(np.array([0.04, 0.06, 0.05, 0.0, 0.12, 0.06], np.float32), (1, 64, 1))
    refl[0, :, 3] = nir
    ramp = Scene("ramp", "test", refl, np.ones((1, 64), bool), 30.0)
    a = biomass(ramp, no_noise)[0].astype(np.float64)
    gain = np.diff(a[a > 0])
    assert np.all(gain > 0) and gain[-1] < 0.5 * gain[0]
    region = make_region("s2")
    hist = np.histogram(region.agb[region.scene.valid], [0, 100, 200, 300.1])[0]
    assert np.all(hist > 0.1 * hist.sum())  # all three study bins are populated


def test_gedi_geometry_beams_600m_apart_footprints_60m_along_track():
    g = Gedi(n_tracks=1, beam_spacing_m=600.0, footprint_spacing_m=60.0)
    assert abs(Gedi(latitude_deg=0.0).azimuth_deg - 38.4) < 0.1  # ISS orbit at the equator
    rows, cols = gedi_footprints((400, 400), 30.0, g, seed=1)
    a = math.radians(g.azimuth_deg)
    east = (cols + 0.5) * 30.0
    north = (400 - rows - 0.5) * 30.0
    across = east * math.cos(a) - north * math.sin(a)
    along = east * math.sin(a) + north * math.cos(a)
    # Across-track positions cluster on 8 lines 600 m apart (within a pixel's diagonal).
    rel = across - across.min()
    k = np.round(rel / 600.0)
    assert set(k.astype(int)) == set(range(8))
    assert np.abs(rel - 600.0 * k).max() < 30.0 * math.sqrt(2)
    # Along track: consecutive footprints of one beam 60 m apart.
    beam = k == 3
    steps = np.diff(np.sort(along[beam]))
    assert abs(np.median(steps) - 60.0) < 15.0
    with pytest.raises(ConfigError, match="latitude"):
        Gedi(latitude_deg=60.0)


def test_region_labels_are_sparse_and_minus_one_elsewhere():
    region = make_region("l8", seed=3)
    lab = region.labels
    has = lab != IGNORE
    assert 0.005 < has.mean() < 0.05
    assert lab[has].min() >= 0 and lab[has].max() <= 300
    assert np.all(region.scene.valid[has])  # no footprint kept under cloud or on water
    # Footprint noise around the dense truth: unbiased-ish, ~10 % + 5 Mg/ha spread.
    err = lab[has] - region.agb[has]
    assert abs(err.mean()) < 3.0 and 5.0 < err.std() < 25.0


def test_tiles_split_spatially_and_deterministically():
    region = make_region("s2")
    a = tile_region(region, 64)
    b = tile_region(region, 64)
    seen = set()
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(a[split].origin, b[split].origin)
        origins = {tuple(o) for o in a[split].origin}
        assert not origins & seen
        seen |= origins
    assert all((t != IGNORE).any() for t in a["train"].y)
    r, c = a["test"].origin[0]
    np.testing.assert_array_equal(a["test"].y[0], region.labels[r : r + 64, c : c + 64])
    with pytest.raises(ConfigError, match="tile"):
        tile_region(region, 4)


def test_region_store_round_trip(tmp_path):
    region = make_region("s2")
    path = tmp_path / "s2.zarr"
    write_region_store(region, path)
    back = open_region_store(path)
    np.testing.assert_array_equal(back.labels, region.labels)
    np.testing.assert_array_equal(back.agb, region.agb)
    np.testing.assert_array_equal(back.scene.reflectance, region.scene.reflectance)
    assert back.allometry == region.allometry and back.gedi == region.gedi
    with pytest.raises(StoreExistsError):
        write_region_store(region, path)
