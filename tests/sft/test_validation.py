"""Tests of HipFT's validation fields and exact solutions."""

from __future__ import annotations

import math

import h5py
import numpy as np
import pytest
from scipy.special import sph_harm_y

from jaxgeo.errors import InputError
from jaxgeo.sft.grid import SftGrid, drop_periodic_endpoint
from jaxgeo.sft.validation import (
    dipole,
    gaussian_pair,
    gaussian_pair_exact,
    harmonic,
    real_sph_harm,
    soccer_ball,
    soccer_ball_exact,
)

HIPFT_KM2_S_TO_RS2_HR = 7.43162901307967e-09
HIPFT_KM_S_TO_RS_HR = 0.005172413793103448


@pytest.mark.parametrize("l, m", [(0, 0), (1, 0), (1, 1), (3, -2), (6, 5), (12, 7), (20, -20)])
def test_real_harmonics_match_scipy(l, m):
    theta = np.linspace(0.0, math.pi, 23)
    phi = np.linspace(0.0, 2 * math.pi, 17, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    # scipy's complex Y_l^m includes the Condon–Shortley phase; the real ones are
    # √2 Re Y_l^|m| (m > 0), √2 Im Y_l^|m| (m < 0), Y_l^0.
    y = sph_harm_y(l, abs(m), t, p)
    want = y.real if m == 0 else math.sqrt(2) * (y.real if m > 0 else y.imag)
    np.testing.assert_allclose(real_sph_harm(l, m, theta, phi), want, rtol=1e-11, atol=1e-12)


def test_harmonic_errors_and_basic_fields():
    g = SftGrid.uniform(19, 36)
    with pytest.raises(InputError):
        harmonic(g, 2, 3)
    d = dipole(g, 1000.0)
    np.testing.assert_allclose(d[:, 0], 1000.0 * np.cos(g.theta), atol=1e-12)
    assert np.ptp(d[0]) == 0.0 and np.ptp(d[-1]) == 0.0
    s = soccer_ball(g)
    assert np.ptp(s[0]) == 0.0
    # Exact solution: decay exp(−42νt), a full turn of rotation returns the field.
    e = soccer_ball_exact(g, 10.0, 1e-3, omega=2 * math.pi / 10.0)
    np.testing.assert_allclose(e, soccer_ball_exact(g, 10.0, 1e-3), atol=1e-12)
    np.testing.assert_allclose(soccer_ball_exact(g, 10.0, 1e-3), s * math.exp(-0.42), atol=1e-12)
    # A shift of half the m = 5 period flips the m = 5 part only.
    half = soccer_ball_exact(g, 1.0, 0.0, omega=math.pi / 5.0)
    y60 = real_sph_harm(6, 0, g.theta, g.phi)
    np.testing.assert_allclose(half + s, 2 * y60, atol=1e-12)
    g2 = gaussian_pair(SftGrid.uniform(181, 360), over_sin_theta=False)
    assert g2.max() == pytest.approx(1.0, abs=0.02) and g2.min() == pytest.approx(-1.0, abs=0.02)
    gt = gaussian_pair(g)
    assert np.all(gt[0] == 0.0) and np.all(gt[-1] == 0.0)


def _read(path, index=None):
    with h5py.File(path) as f:
        g = SftGrid.from_hipft_scales(f["dim1"][:], f["dim2"][:])
        data = f["Data"][:] if index is None else f["Data"][index]
    return g, np.asarray(data)


@pytest.mark.reference
def test_soccer_ball_equals_hipft_initial_state(hipft_data):
    case = hipft_data / "diffuse_soccer"
    nus = np.array([100.0, 200.0, 400.0, 800.0]) * HIPFT_KM2_S_TO_RS2_HR
    for k in range(4):
        g, ana = _read(case / "reference_hipft_brmap_final_analytic.h5", k)
        initial = ana[:, :-1] * math.exp(42.0 * nus[k] * 672.0)
        ours = soccer_ball(g)
        assert np.max(np.abs(ours - initial)) < 1e-12 * np.max(np.abs(initial))
        exact = soccer_ball_exact(g, 672.0, nus[k])
        assert np.max(np.abs(exact - ana[:, :-1])) < 1e-13 * np.max(np.abs(ana))


@pytest.mark.reference
@pytest.mark.parametrize(
    "case, omega, vtheta",
    [
        ("advect_gaussians_phi", 2 * math.pi / 672.0, 0.0),
        ("advect_gaussians_theta", 0.0, 0.5 * math.pi / 672.0),
        ("advect_gaussians_phi_theta", 2 * math.pi / 672.0, 0.5 * math.pi / 672.0),
    ],
)
def test_gaussian_exact_solutions_equal_hipft_analytic(hipft_data, case, omega, vtheta):
    g, ana = _read(hipft_data / case / "reference_hipft_brmap_final_analytic.h5")
    ours = gaussian_pair_exact(g, 672.0, omega=omega, vtheta=vtheta)
    np.testing.assert_allclose(ours, np.asarray(drop_periodic_endpoint(ana)), rtol=0, atol=1e-13)
    # HipFT's velocities for these cases, in its own units, give the same motion.
    assert (2 * math.pi / 672.0) / HIPFT_KM_S_TO_RS_HR == pytest.approx(
        1.8076624395655556, rel=1e-12
    )
