"""Band metadata and SRF resampling (jaxgeo.hsi.sensors)."""

from __future__ import annotations

import numpy as np
import pytest

from jaxgeo.errors import ConfigError, InputError
from jaxgeo.hsi.sensors import SENSORS, get_sensor, resample, resampling_matrix, srf

# A source grid wider than every sensor's SRFs (±4σ), at 1 nm.
WL = np.arange(300.0, 2601.0)


@pytest.mark.parametrize(
    ("name", "n_bands"), [("enmap", 202), ("enmap-224", 224), ("desis", 235), ("hyperion", 198)]
)
def test_band_counts_and_monotone_centres(name: str, n_bands: int) -> None:
    s = get_sensor(name)
    assert s.n_bands == n_bands
    det = np.asarray(s.detector)
    for d in np.unique(det):  # EnMAP and Hyperion detectors overlap near 900-1000 nm
        assert np.all(np.diff(s.centres[det == d]) > 0)
    assert np.all(s.fwhm > 0) and np.all(s.fwhm < 20)
    assert 400 < s.centres.min() and s.centres.max() < 2500


def test_enmap_202_is_the_torchgeo_default_band_set() -> None:
    full, sub = SENSORS["enmap-224"], SENSORS["enmap"]
    kept = set(sub.band_numbers)
    assert kept == set(range(1, 127)) | set(range(142, 161)) | set(range(168, 225))
    # No band left near the 1400 and 1900 nm water-vapour absorptions.
    assert not np.any((sub.centres > 1360) & (sub.centres < 1450))
    assert not np.any((sub.centres > 1800) & (sub.centres < 1930))
    np.testing.assert_allclose(full.centres[np.asarray(sub.band_numbers) - 1], sub.centres)
    # FWHM / spacing ratio: the published means (VNIR ~8.1 nm, SWIR ~12.5 nm).
    det = np.asarray(full.detector)
    assert 7.0 < np.median(full.fwhm[det == "vnir"]) < 9.0
    assert 11.0 < np.median(full.fwhm[det == "swir"]) < 14.0


@pytest.mark.parametrize("name", sorted(SENSORS))
def test_flat_spectrum_keeps_its_value(name: str) -> None:
    out = resample(np.full((3, WL.size), 0.37), WL, name)
    np.testing.assert_allclose(out, 0.37, rtol=0, atol=1e-14)
    np.testing.assert_allclose(resampling_matrix(WL, name).sum(axis=1), 1.0, atol=1e-14)


@pytest.mark.parametrize("name", sorted(SENSORS))
def test_linear_spectrum_returns_value_at_band_centre(name: str) -> None:
    s = get_sensor(name)
    a, b = 0.05, 1.7e-4
    out = resample(a + b * WL, WL, s)
    np.testing.assert_allclose(out, a + b * s.centres, rtol=0, atol=1e-12)


def test_narrow_absorption_is_smoothed_by_the_srf() -> None:
    # A Gaussian line of width w through a Gaussian SRF of width σ: depth scales by
    # w / sqrt(w² + σ²) at the line centre (convolution of Gaussians), exact on a fine grid.
    s = get_sensor("desis")
    b = 100
    c, w = s.centres[b], 2.0
    wl = np.arange(350.0, 1050.0, 0.05)
    spectrum = 1.0 - 0.5 * np.exp(-0.5 * ((wl - c) / w) ** 2)
    out = resample(spectrum, wl, s)[b]
    sigma = s.sigma_nm[b]
    expected = 1.0 - 0.5 * w / np.hypot(w, sigma)
    assert out == pytest.approx(expected, abs=2e-4)


def test_srf_peaks_at_centre_with_half_maximum_at_fwhm() -> None:
    s = get_sensor("hyperion")
    b = 20
    grid = np.array([s.centres[b], s.centres[b] + s.fwhm[b] / 2])
    np.testing.assert_allclose(srf(s, grid)[b], [1.0, 0.5], atol=1e-12)


def test_errors() -> None:
    with pytest.raises(ConfigError, match="unknown"):
        get_sensor("landsat")
    with pytest.raises(InputError, match="strictly increasing"):
        resample(np.zeros(3), np.array([3.0, 2.0, 1.0]), "enmap")
    with pytest.raises(InputError, match="samples"):
        resample(np.zeros(4), WL, "enmap")
