"""Tests of the HipFT-compatible grid metrics."""

from __future__ import annotations

import math

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgeo.errors import InputError
from jaxgeo.sft.diagnostics import read_hipft_history
from jaxgeo.sft.grid import (
    SftGrid,
    append_periodic_endpoint,
    drop_periodic_endpoint,
    impose_pole_average,
)
from jaxgeo.sft.units import GAUSS_SR_TO_MX


def _nonuniform(n_theta: int = 21, n_phi: int = 30) -> SftGrid:
    rng = np.random.default_rng(0)
    u = np.linspace(0.0, 1.0, n_theta)
    theta = math.pi * (u + 0.05 * np.sin(2 * math.pi * u))
    phi = np.sort(
        np.linspace(0.0, 2 * math.pi, n_phi, endpoint=False) + rng.uniform(-0.03, 0.03, n_phi)
    )
    return SftGrid(theta=theta, phi=phi - phi[0])


def test_uniform_matches_hipft_scales():
    g = SftGrid.uniform(19, 36)
    assert g.shape == (19, 36)
    np.testing.assert_allclose(g.theta, np.arange(19) * (math.pi / 18), rtol=0, atol=0)
    np.testing.assert_allclose(g.phi, np.arange(36) * (2 * math.pi / 36), rtol=0, atol=0)
    assert SftGrid.hipft_uniform(19, 37) == g
    hp = g.hipft_phi()
    assert hp.shape == (37,) and hp[-1] == pytest.approx(2 * math.pi, abs=1e-15)
    assert SftGrid.from_hipft_scales(hp, g.theta) == g


def test_metric_definitions_nonuniform():
    g = _nonuniform()
    t, p = g.theta, g.phi
    np.testing.assert_allclose(g.theta_face, 0.5 * (t[1:] + t[:-1]), rtol=1e-15)
    np.testing.assert_allclose(g.dtheta_face, np.diff(t), rtol=1e-15)
    np.testing.assert_allclose(g.dtheta[1:-1], 0.5 * (t[2:] - t[:-2]), rtol=1e-13)
    # HipFT's ghost faces make the pole rows as wide as the first/last spacing.
    assert g.dtheta[0] == pytest.approx(t[1] - t[0], rel=1e-14)
    assert g.dtheta[-1] == pytest.approx(t[-1] - t[-2], rel=1e-14)
    assert g.theta_half.shape == (g.n_theta + 1,)
    assert g.sin_theta[0] == 0.0 and g.sin_theta[-1] == 0.0
    assert g.inv_sin_theta[0] == 0.0 and g.inv_sin_theta[-1] == 0.0
    np.testing.assert_allclose(g.inv_sin_theta[1:-1] * np.sin(t[1:-1]), 1.0, rtol=1e-14)
    nxt = np.append(p[1:], p[0] + 2 * math.pi)
    prv = np.insert(p[:-1], 0, p[-1] - 2 * math.pi)
    np.testing.assert_allclose(g.phi_face, 0.5 * (p + nxt), rtol=1e-15)
    np.testing.assert_allclose(g.dphi_face, nxt - p, rtol=1e-14)
    np.testing.assert_allclose(g.dphi, 0.5 * (nxt - prv), rtol=1e-13)
    assert g.dphi.sum() == pytest.approx(2 * math.pi, rel=1e-15)
    np.testing.assert_allclose(g.lat_deg, 90.0 - np.degrees(t))
    np.testing.assert_allclose(g.lon_deg, np.degrees(p))


def test_exact_cell_area_sums_to_4pi_and_hipft_area_is_second_order():
    g = _nonuniform()
    assert g.cell_area_exact.sum() == pytest.approx(4 * math.pi, rel=1e-14)
    errs, hs = [], []
    for n in (17, 33, 65, 129):
        gu = SftGrid.uniform(n, 2 * (n - 1))
        assert gu.cell_area_exact.sum() == pytest.approx(4 * math.pi, rel=1e-14)
        assert np.all(gu.cell_area > 0)
        errs.append(abs(gu.cell_area.sum() / (4 * math.pi) - 1.0))
        hs.append(math.pi / (n - 1))
    slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
    assert 1.9 < slope < 2.1
    np.testing.assert_allclose(g.row_area, g.cell_area.sum(axis=1), rtol=1e-14)


def test_grid_is_hashable_value():
    a, b = SftGrid.uniform(9, 16), SftGrid.uniform(9, 16)
    assert a == b and hash(a) == hash(b)
    assert a != SftGrid.uniform(9, 17)
    with pytest.raises(dataclasses_frozen_error()):
        a.theta = np.zeros(3)


def dataclasses_frozen_error():
    import dataclasses

    return dataclasses.FrozenInstanceError


@pytest.mark.parametrize(
    "theta, phi",
    [
        (np.array([0.0, 1.0, 0.5, math.pi]), np.linspace(0, 6, 8)),  # not increasing
        (np.linspace(0.1, math.pi, 5), np.linspace(0, 6, 8)),  # misses the north pole
        (np.linspace(0, 3.0, 5), np.linspace(0, 6, 8)),  # misses the south pole
        (np.linspace(0, math.pi, 5), np.linspace(0, 2 * math.pi, 8)),  # periodic end point kept
        (np.linspace(0, math.pi, 5), np.array([0.0, 2.0, 1.0, 3.0])),  # phi not increasing
        (np.linspace(0, math.pi, 2), np.linspace(0, 6, 8)),  # too few rows
    ],
)
def test_invalid_grids_are_refused(theta, phi):
    with pytest.raises(InputError):
        SftGrid(theta=theta, phi=phi)


def test_from_hipft_scales_requires_endpoint():
    with pytest.raises(InputError, match="end point"):
        SftGrid.from_hipft_scales(np.linspace(0, 6.0, 10), np.linspace(0, math.pi, 5))


def test_impose_pole_average_and_endpoint_helpers():
    g = _nonuniform()
    rng = np.random.default_rng(1)
    br = rng.normal(size=(3, g.n_theta, g.n_phi))
    out = np.asarray(jax.jit(impose_pole_average, static_argnums=1)(jnp.asarray(br), g))
    np.testing.assert_array_equal(out[:, 1:-1], br[:, 1:-1])
    for row in (0, -1):
        mean = (br[:, row] * g.dphi).sum(axis=-1) / (2 * math.pi)
        np.testing.assert_allclose(out[:, row], mean[:, None] * np.ones(g.n_phi), rtol=1e-14)
    const = np.full(g.shape, 2.5)
    np.testing.assert_allclose(np.asarray(impose_pole_average(const, g)), const, rtol=1e-15)
    with_end = np.asarray(append_periodic_endpoint(jnp.asarray(br)))
    assert with_end.shape[-1] == g.n_phi + 1
    np.testing.assert_array_equal(with_end[..., -1], br[..., 0])
    np.testing.assert_array_equal(np.asarray(drop_periodic_endpoint(with_end)), br)
    seam = with_end.copy()
    seam[..., -1] += 2.0
    np.testing.assert_allclose(np.asarray(drop_periodic_endpoint(seam))[..., 0], br[..., 0] + 1.0)


@pytest.mark.reference
def test_polar_areas_match_hipft_history(hipft_data):
    case = hipft_data / "diffuse_soccer"
    with h5py.File(case / "reference_hipft_brmap_final.h5") as f:
        g = SftGrid.from_hipft_scales(f["dim1"][:], f["dim2"][:])
    assert g.shape == (180, 359)
    assert g == SftGrid.uniform(180, 359)
    hist = read_hipft_history(case / "hipft_history_sol_r000001.out")
    lim = 30.0 * 0.017453292519943295
    north = g.row_area[g.theta <= lim].sum() * GAUSS_SR_TO_MX
    south = g.row_area[g.theta >= math.pi - lim].sum() * GAUSS_SR_TO_MX
    assert north == pytest.approx(hist["npole_area"][0], rel=1e-14)
    assert south == pytest.approx(hist["spole_area"][0], rel=1e-14)
