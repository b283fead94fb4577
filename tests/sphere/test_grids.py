"""Sphere grids: exact areas, quadrature of constants, convergence order, validation."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import linregress

from jaxgeo.errors import InputError
from jaxgeo.sphere import (
    GaussLegendreGrid,
    LatLonGrid,
    PoleGrid,
    SphereGrid,
    gauss_legendre_grid,
    integrate,
)

FOUR_PI = 4.0 * math.pi
DIRECTION = np.array([0.3, -0.5, 0.7])


def _stretched_pole_grid(n_theta: int, n_phi: int) -> PoleGrid:
    """Smoothly non-uniform in both directions: θ = ξ − 0.2 sin 2ξ, φ = η + 0.4 sin η."""
    xi = np.linspace(0.0, math.pi, n_theta)
    eta = 2.0 * math.pi * np.arange(n_phi) / n_phi
    return PoleGrid(xi - 0.2 * np.sin(2.0 * xi), eta + 0.4 * np.sin(eta))


def _exp_field(grid: SphereGrid) -> tuple[np.ndarray, float]:
    """exp(n·x) on the grid and its exact integral 4π sinh|n| / |n|."""
    theta, phi = np.meshgrid(grid.theta, grid.phi, indexing="ij")
    x = np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], -1)
    norm = float(np.linalg.norm(DIRECTION))
    return np.exp(x @ DIRECTION), FOUR_PI * math.sinh(norm) / norm


def _y20_squared(grid: SphereGrid) -> tuple[np.ndarray, float]:
    """Y_20² (∫ = 1 by orthonormality), a zonal field peaked at the poles."""
    y20 = math.sqrt(5.0 / (16.0 * math.pi)) * (3.0 * np.cos(grid.theta) ** 2 - 1.0)
    return np.repeat((y20**2)[:, None], len(grid.phi), axis=1), 1.0


@pytest.mark.parametrize(
    "grid",
    [
        LatLonGrid(1, 1),
        LatLonGrid(90, 180),
        LatLonGrid(37, 11),
        PoleGrid.uniform(2, 1),
        PoleGrid.uniform(181, 360),
        _stretched_pole_grid(53, 17),
        PoleGrid(np.array([0.0, 0.1, 0.15, 2.0, math.pi]), np.array([0.0, 0.5, 3.0, 6.1])),
        gauss_legendre_grid(1),
        gauss_legendre_grid(64),
    ],
    ids=lambda g: f"{type(g).__name__}{g.shape}",
)
def test_constants_integrate_to_four_pi(grid):
    assert isinstance(grid, SphereGrid)
    assert grid.weights.shape == grid.shape
    assert np.all(grid.weights > 0.0)
    assert abs(grid.weights.sum() / FOUR_PI - 1.0) < 1e-13
    total = float(integrate(jnp.full(grid.shape, 2.5), grid))
    assert abs(total / (2.5 * FOUR_PI) - 1.0) < 1e-13


def test_latlon_cell_areas_exact():
    grid = LatLonGrid(18, 36)
    lat_edges = np.linspace(-90.0, 90.0, 19)
    band = 2.0 * math.pi * np.diff(np.sin(np.radians(lat_edges)))  # exact band areas
    np.testing.assert_allclose(grid.cell_area.sum(axis=1), band, rtol=1e-13)
    np.testing.assert_allclose(grid.lat_deg, 0.5 * (lat_edges[:-1] + lat_edges[1:]), atol=1e-12)
    np.testing.assert_allclose(grid.lon_deg, 5.0 + 10.0 * np.arange(36), atol=1e-12)


def test_pole_grid_caps_and_faces():
    grid = PoleGrid(np.array([0.0, 0.2, 0.6, 1.4, math.pi]), np.array([0.0, 1.0, 4.0]))
    np.testing.assert_allclose(
        grid.theta_faces, [0.0, 0.1, 0.4, 1.0, 0.5 * (1.4 + math.pi), math.pi]
    )
    # North cap: area 2π (1 − cos 0.1), shared by the three pole points.
    np.testing.assert_allclose(grid.weights[0].sum(), 2.0 * math.pi * (1.0 - math.cos(0.1)))
    # φ faces halfway between points, wrapping through 2π.
    expected_phi = 0.5 * np.array([1.0 - (4.0 - 2 * math.pi), 4.0 - 0.0, 2 * math.pi + 0.0 - 1.0])
    np.testing.assert_allclose(grid.phi_weights, expected_phi, rtol=1e-15)


def _fitted_order(make_grid, field_fn, sizes) -> tuple[float, list[float]]:
    errors = []
    for n in sizes:
        grid = make_grid(n)
        field, exact = field_fn(grid)
        errors.append(abs(float(integrate(field, grid)) - exact))
    slope = linregress(np.log(1.0 / np.asarray(sizes, float)), np.log(errors)).slope
    return slope, errors


@pytest.mark.parametrize("field_fn", [_exp_field, _y20_squared], ids=["exp", "Y20sq"])
@pytest.mark.parametrize(
    "make_grid",
    [
        lambda n: PoleGrid.uniform(n + 1, 2 * n),
        lambda n: _stretched_pole_grid(n + 1, 2 * n),
    ],
    ids=["uniform", "stretched"],
)
def test_pole_grid_second_order(make_grid, field_fn):
    order, errors = _fitted_order(make_grid, field_fn, [16, 32, 64, 128])
    assert order >= 1.9, errors
    assert errors[-1] < 1e-3


def test_latlon_second_order():
    order, errors = _fitted_order(lambda n: LatLonGrid(n, 2 * n), _exp_field, [16, 32, 64, 128])
    assert order >= 1.9, errors


def test_gauss_legendre_exact():
    grid = gauss_legendre_grid(6, 9)
    x, w = np.polynomial.legendre.leggauss(6)
    np.testing.assert_allclose(np.sort(grid.nodes), x, rtol=0, atol=1e-15)
    np.testing.assert_allclose(grid.node_weights.sum(), 2.0, rtol=1e-15)
    assert np.all(np.diff(grid.theta) > 0)
    # ∫ cos^k θ sin^2 θ cos^2(4φ) dΩ for every k up to 2 n − 3 (degree 2n − 1 in cos θ).
    theta, phi = np.meshgrid(grid.theta, grid.phi, indexing="ij")
    for k in range(0, 10):
        field = np.cos(theta) ** k * np.sin(theta) ** 2 * np.cos(4 * phi) ** 2
        exact = 0.0 if k % 2 else math.pi * (2.0 / (k + 1) - 2.0 / (k + 3))
        assert abs(float(integrate(field, grid)) - exact) < 1e-14, k
    # Smooth non-polynomial fields converge spectrally.
    big = GaussLegendreGrid(24, 48)
    field, exact = _exp_field(big)
    assert abs(float(integrate(field, big)) / exact - 1.0) < 1e-14


def test_integrate_batches_and_float32():
    grid = LatLonGrid(8, 16)
    fields = jnp.stack([jnp.ones(grid.shape), 3.0 * jnp.ones(grid.shape)]).astype(jnp.float32)
    out = integrate(fields, grid)
    assert out.shape == (2,) and out.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(out), [FOUR_PI, 3 * FOUR_PI], rtol=1e-6)
    with pytest.raises(InputError, match="grid shape"):
        integrate(jnp.ones((8, 15)), grid)


def test_grids_are_values():
    a = PoleGrid.uniform(10, 12)
    b = PoleGrid(np.linspace(0.0, math.pi, 10), 2 * math.pi * np.arange(12) / 12)
    assert a == b and hash(a) == hash(b)
    assert a != PoleGrid.uniform(10, 13)
    assert LatLonGrid(4, 8) == LatLonGrid(4, 8)
    assert not a.theta.flags.writeable
    with pytest.raises(AttributeError):
        a.theta = np.zeros(3)  # type: ignore[misc]


def test_from_periodic_drops_end_point():
    theta = np.linspace(0.0, math.pi, 7)
    phi = np.linspace(0.0, 2 * math.pi, 13)  # HipFT layout: periodic copy included
    grid = PoleGrid.from_periodic(theta, phi)
    assert grid.shape == (7, 12)
    np.testing.assert_allclose(grid.phi, PoleGrid.uniform(7, 12).phi, rtol=1e-15)
    with pytest.raises(InputError, match="from_periodic"):
        PoleGrid(theta, phi)
    with pytest.raises(InputError, match="periodic copy"):
        PoleGrid.from_periodic(theta, phi[:-1])


@pytest.mark.parametrize(
    ("theta", "phi", "match"),
    [
        ([0.1, 1.0, math.pi], [0.0], "north pole"),
        ([0.0, 1.0, 3.0], [0.0], "south pole"),
        ([0.0, 2.0, 1.0, math.pi], [0.0], "strictly increasing"),
        ([0.0, math.pi], [0.0, 0.0], "strictly increasing"),
        ([0.0, math.pi], [-0.1, 1.0], r"\[0, 2π\)"),
        ([0.0, math.pi], [[0.0, 1.0]], "1-D"),
        ([0.0], [0.0], "at least 2"),
        ([0.0, np.nan, math.pi], [0.0], "finite"),
    ],
)
def test_pole_grid_rejects_bad_points(theta, phi, match):
    with pytest.raises(InputError, match=match):
        PoleGrid(np.asarray(theta), np.asarray(phi))


@pytest.mark.parametrize(
    ("factory", "match"),
    [
        (lambda: LatLonGrid(0, 4), "n_lat must be >= 1"),
        (lambda: LatLonGrid(4, 2.0), "n_lon must be an integer"),
        (lambda: GaussLegendreGrid(True, 4), "n_lat must be an integer"),
        (lambda: PoleGrid.uniform(1, 4), "n_theta must be >= 2"),
    ],
)
def test_counts_validated(factory, match):
    with pytest.raises(InputError, match=match):
        factory()
