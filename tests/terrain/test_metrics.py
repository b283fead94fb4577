"""Metrics and hillshade against analytic answers."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from jaxgeo.terrain import metrics
from jaxgeo.terrain.plots import hillshade


def test_w1_of_shifted_distribution_is_the_shift() -> None:
    rng = np.random.default_rng(0)
    a = rng.standard_normal(1000)
    assert metrics.wasserstein1(a, a + 2.5) == pytest.approx(2.5, abs=1e-12)
    assert metrics.wasserstein1(a, a) == 0.0


def test_w1_matches_scipy_for_unequal_sizes() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.gamma(2.0, size=317), 0.5 + rng.standard_normal(1203)
    assert metrics.wasserstein1(a, b) == pytest.approx(
        scipy.stats.wasserstein_distance(a, b), rel=1e-12
    )


@pytest.mark.parametrize("beta", [2.0, 3.0, 4.0])
def test_spectrum_slope_of_synthetic_fractal_surface(beta: float) -> None:
    # Random phases with |Z(k)|² = k^-beta: the radially averaged spectrum has slope -beta.
    n = 128
    rng = np.random.default_rng(2)
    k = np.fft.fftfreq(n) * n
    kr = np.hypot(*np.meshgrid(k, k, indexing="ij"))
    kr[0, 0] = 1.0
    fields = []
    for _ in range(8):
        spec = kr ** (-beta / 2) * np.exp(2j * np.pi * rng.random((n, n)))
        spec[0, 0] = 0.0
        fields.append(np.real(np.fft.ifft2(spec)))
    assert metrics.spectrum_slope(np.stack(fields), (3.0, 24.0)) == pytest.approx(-beta, abs=0.2)


def test_slope_and_curvature_of_polynomials() -> None:
    y, x = np.mgrid[0:20, 0:30].astype(np.float64)
    assert np.allclose(metrics.slope(3.0 * x + 4.0 * y), 5.0)
    assert np.allclose(metrics.curvature(x**2 + 2.0 * y**2), 6.0)


def test_seam_metric_zero_for_continuous_field_and_step_height_for_a_step() -> None:
    y, x = np.mgrid[0:16, 0:40].astype(np.float64)
    smooth = 0.3 * x**2 - 2.0 * x * y + 5.0 * y + 1.0
    assert metrics.seam_discontinuity(smooth, [8, 16, 24], axis=1) == pytest.approx(0.0, abs=1e-9)
    assert metrics.seam_discontinuity(smooth, [4, 9], axis=0) == pytest.approx(0.0, abs=1e-9)
    step = smooth + 7.0 * (x >= 16)
    assert metrics.seam_discontinuity(step, [16], axis=1) == pytest.approx(7.0, abs=1e-9)


def test_condition_consistency_zero_for_own_block_means() -> None:
    rng = np.random.default_rng(3)
    z = rng.standard_normal((2, 16, 16))
    blocks = z.reshape(2, 4, 4, 4, 4).mean(axis=(2, 4))
    assert metrics.condition_consistency(z, blocks, 4) == pytest.approx(0.0, abs=1e-12)
    assert metrics.condition_consistency(z + 3.0, blocks, 4) == pytest.approx(3.0, abs=1e-12)


def test_hillshade_flat_and_sun_facing_plane() -> None:
    flat = np.zeros((8, 8))
    assert np.allclose(hillshade(flat, altitude_deg=30.0), np.sin(np.radians(30.0)))
    # A plane rising to the south-east tilted by 90° - altitude faces a sun in the north-west
    # square-on. Rows run south, so z grows with -row for "rising to the north".
    y, x = np.mgrid[0:8, 0:8].astype(np.float64)
    alt, az = np.radians(40.0), np.radians(315.0)
    grad = np.tan(np.pi / 2 - alt)  # |∇z| of the plane
    gx, gy = -grad * np.sin(az), -grad * np.cos(az)  # downhill towards the sun
    z = gx * x + gy * (-y)
    assert np.allclose(hillshade(z, azimuth_deg=315.0, altitude_deg=40.0), 1.0)
