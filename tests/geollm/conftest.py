"""Shared fixtures of the geollm tests: one small dataset per session (the gazetteers load
once, ~4 s)."""

from __future__ import annotations

import pytest

from jaxgeo.geollm.dataset import DatasetConfig, GeoDataset, make_dataset


@pytest.fixture(scope="session")
def small_pop() -> GeoDataset:
    """60 population-density samples (20 test)."""
    cfg = DatasetConfig(n_samples=60, n_test=20, seed=3)
    return GeoDataset.from_xarray(make_dataset(cfg))
