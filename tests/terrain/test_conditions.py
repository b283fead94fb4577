"""Conditions: coarse heightmaps, slopes, class maps."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from jaxgeo.terrain.conditions import (
    ClassSpec,
    class_map,
    coarse_heightmap,
    fit_classes,
    one_hot,
    slope,
)
from jaxgeo.terrain.data import load_sample


def test_coarse_heightmap_is_block_mean() -> None:
    z = np.arange(2 * 8 * 8, dtype=np.float64).reshape(2, 8, 8)
    c = np.asarray(coarse_heightmap(jnp.asarray(z), 4))
    assert c.shape == (2, 2, 2)
    assert c[1, 0, 1] == pytest.approx(z[1, :4, 4:].mean())


def test_slope_of_plane() -> None:
    y, x = np.mgrid[0:9, 0:9].astype(np.float64)
    assert np.allclose(slope(jnp.asarray(6.0 * x - 8.0 * y)), 10.0)


def test_class_map_of_planes_and_sea() -> None:
    spec = ClassSpec((1.0, 3.0), factor=4, sea=True)
    y, x = np.mgrid[0:8, 0:16].astype(np.float64)
    # Four blocks side by side: slopes 0.5, 2, 5 and a flat block below sea level.
    z = np.where(x < 4, 100 + 0.5 * x, np.where(x < 8, 100 + 2.0 * x,
                 np.where(x < 12, 100 + 5.0 * x, -50.0)))  # fmt: skip
    # Keep the blocks' own slopes by computing them one block at a time.
    cls = np.concatenate(
        [np.asarray(class_map(jnp.asarray(z[:, 4 * b : 4 * b + 4]), spec)) for b in range(4)],
        axis=1,
    )
    assert cls[0].tolist() == [0, 1, 2, spec.n_classes - 1]
    assert one_hot(jnp.asarray(cls), spec.n_classes).shape == (2, 4, spec.n_classes)


def test_fit_classes_splits_jacksboro_into_thirds_and_finds_sea_in_topobathy() -> None:
    dem = load_sample("jacksboro")
    spec = fit_classes(dem.elevation[:, :256], 8)
    assert not spec.sea and len(spec.slope_edges) == 2
    counts = np.bincount(np.asarray(class_map(jnp.asarray(dem.elevation[:, :256]), spec)).ravel(),
                         minlength=spec.n_classes)  # fmt: skip
    assert counts[:3].min() > 0.25 * counts.sum() and counts[-1] == 0
    topo = load_sample("topobathy")
    tspec = fit_classes(topo.elevation, 4)
    assert tspec.sea
    cls = np.asarray(class_map(jnp.asarray(topo.elevation[:88, :120]), tspec))
    assert (cls == tspec.n_classes - 1).any() and (cls < tspec.n_classes - 1).any()
