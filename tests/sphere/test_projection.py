"""Projection onto spherical harmonics, synthesis and power spectra."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy.stats import linregress

from jaxgeo.errors import InputError
from jaxgeo.sphere import (
    LatLonGrid,
    PoleGrid,
    gauss_legendre_grid,
    integrate,
    lm_index,
    n_coeffs,
    power_spectrum,
    project,
    synthesize,
    synthesize_grid,
)

project_jit = jax.jit(project, static_argnums=(1, 2))
synthesize_grid_jit = jax.jit(synthesize_grid, static_argnums=1)


def _random_coeffs(l_max: int, batch: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((*batch, n_coeffs(l_max)))


def test_round_trip_on_gauss_grid_l20():
    l_max = 20
    grid = gauss_legendre_grid(l_max + 1)  # 21 × 42: exact for degree 20 × degree 20
    coeffs = _random_coeffs(l_max, (3,), seed=0)
    field = synthesize_grid_jit(coeffs, grid)
    assert field.shape == (3, *grid.shape)
    recovered = project_jit(field, grid, l_max)
    assert np.abs(np.asarray(recovered) - coeffs).max() < 1e-12
    # Projecting onto a lower degree keeps exactly the leading coefficients.
    low = project_jit(field, grid, 7)
    assert np.abs(np.asarray(low) - coeffs[:, : n_coeffs(7)]).max() < 1e-12


def test_synthesize_points_equals_grid_synthesis():
    grid = LatLonGrid(9, 14)
    coeffs = _random_coeffs(6, (2,), seed=1)
    on_grid = synthesize_grid_jit(coeffs, grid)
    at_points = jax.jit(synthesize)(coeffs, grid.theta[:, None], grid.phi[None, :])
    assert at_points.shape == (2, *grid.shape)
    np.testing.assert_allclose(np.asarray(at_points), np.asarray(on_grid), atol=1e-13)
    # A single harmonic synthesises to itself: coefficient e_k gives Y_k.
    e = np.zeros(n_coeffs(6))
    e[lm_index(5, -3)] = 1.0
    theta, phi = 0.7, 1.9
    expect = (
        -math.sqrt(385.0 / (512.0 * math.pi))
        * math.sin(theta) ** 3
        * (9.0 * math.cos(theta) ** 2 - 1.0)
        * math.sin(3.0 * phi)
    )
    np.testing.assert_allclose(float(synthesize(e, theta, phi)), expect, rtol=1e-13)


def test_parseval_and_power_spectrum():
    l_max = 12
    grid = gauss_legendre_grid(l_max + 1)
    coeffs = _random_coeffs(l_max, (), seed=2)
    spectrum = np.asarray(power_spectrum(coeffs))
    assert spectrum.shape == (l_max + 1,)
    for l in (0, 5, 12):
        block = coeffs[l * l : (l + 1) * (l + 1)]
        np.testing.assert_allclose(spectrum[l], np.sum(block**2), rtol=1e-14)
    field = synthesize_grid_jit(coeffs, grid)
    np.testing.assert_allclose(float(integrate(field**2, grid)), spectrum.sum(), rtol=1e-12)
    assert power_spectrum(np.zeros((4, 2, 9))).shape == (4, 2, 3)


def _closed_form_field(grid) -> tuple[np.ndarray, dict[int, float]]:
    """1 Y_00 + 2 Y_11 − 3 Y_2,−1 + 0.5 Y_30 from their closed forms (phase included)."""
    theta, phi = np.meshgrid(grid.theta, grid.phi, indexing="ij")
    st_, ct = np.sin(theta), np.cos(theta)
    y00 = np.full(theta.shape, 0.5 / math.sqrt(math.pi))
    y11 = -math.sqrt(3.0 / (4.0 * math.pi)) * st_ * np.cos(phi)
    y2m1 = -math.sqrt(15.0 / (4.0 * math.pi)) * st_ * ct * np.sin(phi)
    y30 = math.sqrt(7.0 / (16.0 * math.pi)) * (5.0 * ct**3 - 3.0 * ct)
    coeffs = {lm_index(0, 0): 1.0, lm_index(1, 1): 2.0, lm_index(2, -1): -3.0, lm_index(3, 0): 0.5}
    field = 1.0 * y00 + 2.0 * y11 - 3.0 * y2m1 + 0.5 * y30
    return field, coeffs


@pytest.mark.parametrize(
    "make_grid",
    [lambda n: PoleGrid.uniform(n + 1, 2 * n), lambda n: LatLonGrid(n, 2 * n)],
    ids=["pole", "latlon"],
)
def test_projection_converges_second_order_on_finite_volume_grids(make_grid):
    sizes = [16, 32, 64]
    errors = []
    for n in sizes:
        grid = make_grid(n)
        field, exact = _closed_form_field(grid)
        expect = np.zeros(n_coeffs(4))
        expect[list(exact)] = list(exact.values())
        errors.append(np.abs(np.asarray(project_jit(field, grid, 4)) - expect).max())
    order = linregress(np.log(1.0 / np.asarray(sizes, float)), np.log(errors)).slope
    assert order >= 1.9, errors
    assert errors[-1] < 1e-3


def test_project_is_differentiable_and_batched():
    grid = gauss_legendre_grid(5)
    field = jnp.asarray(np.random.default_rng(4).standard_normal((2, *grid.shape)))
    proj = jax.jit(functools.partial(project, grid=grid, l_max=3))
    check_grads(proj, (field,), order=1, modes=("rev",))
    synth = jax.jit(lambda t, p: synthesize(jnp.arange(16.0) / 16.0, t, p))
    check_grads(
        synth,
        (jnp.asarray([0.0, 0.4, math.pi]), jnp.asarray([0.1, 2.0, 4.0])),
        order=1,
        modes=("fwd", "rev"),
    )
    batched = jax.jit(jax.vmap(proj))(field)
    np.testing.assert_allclose(np.asarray(batched), np.asarray(proj(field)), atol=1e-14)


def test_float32_round_trip():
    grid = gauss_legendre_grid(9)
    coeffs = jnp.asarray(_random_coeffs(8, (), seed=5), jnp.float32)
    field = synthesize_grid_jit(coeffs, grid)
    assert field.dtype == jnp.float32
    recovered = project_jit(field, grid, 8)
    assert recovered.dtype == jnp.float32
    assert np.abs(np.asarray(recovered) - np.asarray(coeffs)).max() < 1e-5


def test_bad_inputs_raise():
    grid = LatLonGrid(4, 8)
    with pytest.raises(InputError, match="grid shape"):
        project(jnp.ones((4, 7)), grid, 2)
    with pytest.raises(InputError, match="l_max"):
        project(jnp.ones((4, 8)), grid, -2)
    with pytest.raises(InputError, match=r"\(l_max \+ 1\)\*\*2"):
        synthesize(jnp.ones(5), 0.1, 0.2)
    with pytest.raises(InputError, match=r"\(l_max \+ 1\)\*\*2"):
        power_spectrum(jnp.ones(0))


@pytest.mark.reference
def test_project_hipft_soccer_map_on_pole_grid(hipft_data):
    """HipFT's analytic soccer-ball map on its own θ–φ grid (both poles, periodic end point):
    the pole-grid quadrature recovers Y_60 + √(14/11) Y_65 to second order in 1° spacing."""
    h5py = pytest.importorskip("h5py")
    path = hipft_data / "diffuse_soccer" / "reference_hipft_brmap_final_analytic.h5"
    with h5py.File(path) as f:
        data = np.asarray(f["Data"][0], dtype=np.float64)
        phi = np.asarray(f["dim1"][...], dtype=np.float64)
        theta = np.asarray(f["dim2"][...], dtype=np.float64)
    grid = PoleGrid.from_periodic(theta, phi)
    coeffs = np.asarray(project_jit(data[:, :-1], grid, 8))
    c60 = coeffs[lm_index(6, 0)]
    np.testing.assert_allclose(coeffs[lm_index(6, 5)] / c60, math.sqrt(14.0 / 11.0), rtol=1e-3)
    rest = np.delete(coeffs, [lm_index(6, 0), lm_index(6, 5)])
    assert np.abs(rest).max() < 1e-3 * abs(c60)
