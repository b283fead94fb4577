"""Band metadata of spaceborne imaging spectrometers, Gaussian spectral response, resampling.

Sources of the numbers (band centres λ and full widths at half maximum, FWHM):

- **EnMAP** (224 bands, VNIR 1–91 and SWIR 92–224, the two detectors overlapping near 900–1000
  nm): centres are torchgeo's ``torchgeo/datasets/enmap.py`` (MIT; from DLR's
  ``EnMAP_Spectral_Bands_update.xlsx``, typical values, exact ones vary per scene). FWHM is
  *derived from the band spacing*: 1.25 × the local centre spacing within each detector, the ratio
  of the mission's published mean spectral resolution to its sampling (VNIR 8.1 nm / 6.5 nm, SWIR
  12.5 nm / 10 nm; Guanter et al. 2015, Remote Sens. 7, 8830). The 202-band subset drops bands
  127–141 and 161–167 (water-vapour absorption near 1400 and 1900 nm, mostly no-data in L2A),
  as torchgeo's ``DEFAULT_BANDS`` and SpectralEarth do.
- **DESIS** (235 bands, 402–1000 nm): evenly spaced centres 402 + 2.55 k nm, *derived* from the
  published range and 2.55 nm sampling distance (DLR instrument page; per-scene metadata differs
  by fractions of a nanometre); FWHM 3.5 nm for every band, published (Alonso et al. 2019,
  Sensors 19, 4471).
- **EO-1 Hyperion** (the 198 calibrated bands: VNIR 8–57 and SWIR 77–224 of 242; they overlap
  near 900–930 nm): centres interpolated linearly per detector between the published band
  centres of bands 8 (426.82 nm) and 57 (925.41 nm), and 77 (912.45 nm) and 224 (2395.53 nm) of
  the USGS EO-1 band table (the dispersion is close to linear, 10.18 nm VNIR and 10.09 nm SWIR);
  FWHM *derived* as the band spacing (the instrument's quoted resolution is about 10 nm).

Spectral response functions (SRF) are Gaussian in wavelength with σ = FWHM / (2 √(2 ln 2)).
:func:`resample` integrates a high-resolution spectrum (taken as piecewise linear between its
samples) against each band's SRF, so a flat spectrum keeps its value and a linear one returns its
value at the band centre, exactly.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Literal

import numpy as np
from jaxtyping import Float

from jaxgeo.errors import ConfigError, InputError

__all__ = [
    "SENSORS",
    "Sensor",
    "get_sensor",
    "resample",
    "resampling_matrix",
    "srf",
]

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))

# Integration nodes of one SRF, in units of σ: ±4σ holds all but 6e-5 of a Gaussian, and 161
# symmetric nodes keep the quadrature exact for linear spectra (the odd moments cancel).
_SRF_NODES = np.linspace(-4.0, 4.0, 161)


@dataclass(frozen=True)
class Sensor:
    """Band set of one sensor (a value: hashable, immutable).

    Attributes:
        name: Sensor name (``"enmap"``, ``"enmap-224"``, ``"desis"``, ``"hyperion"``).
        wavelength_nm: Band centres, nm, in the product's band order.
        fwhm_nm: Band full widths at half maximum, nm.
        band_numbers: 1-based band numbers in the full product (e.g. EnMAP 1–224).
        detector: ``"vnir"`` or ``"swir"`` per band; centres rise within each detector.
    """

    name: str
    wavelength_nm: tuple[float, ...]
    fwhm_nm: tuple[float, ...]
    band_numbers: tuple[int, ...]
    detector: tuple[str, ...]

    def __post_init__(self) -> None:
        n = len(self.wavelength_nm)
        if not (len(self.fwhm_nm) == len(self.band_numbers) == len(self.detector) == n):
            raise ConfigError(f"sensor {self.name!r}: band metadata of unequal lengths")
        if any(f <= 0 for f in self.fwhm_nm):
            raise ConfigError(f"sensor {self.name!r}: every FWHM must be > 0")

    @property
    def n_bands(self) -> int:
        return len(self.wavelength_nm)

    @property
    def centres(self) -> np.ndarray:
        """Band centres as a float64 array, nm."""
        return np.asarray(self.wavelength_nm, np.float64)

    @property
    def fwhm(self) -> np.ndarray:
        """Band FWHM as a float64 array, nm."""
        return np.asarray(self.fwhm_nm, np.float64)

    @property
    def sigma_nm(self) -> np.ndarray:
        """Gaussian SRF standard deviations, nm."""
        return self.fwhm * FWHM_TO_SIGMA

    def nearest_band(self, wavelength_nm: float) -> int:
        """Index of the band whose centre is nearest ``wavelength_nm``."""
        return int(np.argmin(np.abs(self.centres - wavelength_nm)))

    def rgb_bands(self) -> tuple[int, int, int]:
        """Band indices nearest 650, 560 and 470 nm, for true-colour composites."""
        return (self.nearest_band(650.0), self.nearest_band(560.0), self.nearest_band(470.0))

    def subset(self, bands: np.ndarray | list[int], name: str | None = None) -> Sensor:
        """A sensor made of some of this sensor's bands (0-based indices, in the given order)."""
        idx = [int(b) for b in bands]
        return Sensor(
            name=name or f"{self.name}-subset",
            wavelength_nm=tuple(self.wavelength_nm[i] for i in idx),
            fwhm_nm=tuple(self.fwhm_nm[i] for i in idx),
            band_numbers=tuple(self.band_numbers[i] for i in idx),
            detector=tuple(self.detector[i] for i in idx),
        )


# --------------------------------------------------------------------------------------------
# The sensors
# --------------------------------------------------------------------------------------------

# EnMAP band centres in µm, bands 1–224: torchgeo/datasets/enmap.py (MIT License, Copyright (c)
# TorchGeo Contributors), from DLR's EnMAP_Spectral_Bands_update.xlsx.
_ENMAP_UM = (
    # VNIR, bands 1–91
    0.418416, 0.424043, 0.429457, 0.434686, 0.439758, 0.444699, 0.449539, 0.454306, 0.459031,
    0.463730, 0.468411, 0.473080, 0.477744, 0.482411, 0.487087, 0.491780, 0.496497, 0.501243,
    0.506020, 0.510829, 0.515672, 0.520551, 0.525467, 0.530424, 0.535422, 0.540463, 0.545551,
    0.550687, 0.555873, 0.561112, 0.566405, 0.571756, 0.577166, 0.582636, 0.588171, 0.593773,
    0.599446, 0.605193, 0.611017, 0.616923, 0.622921, 0.628987, 0.635112, 0.641294, 0.647537,
    0.653841, 0.660207, 0.666637, 0.673131, 0.679691, 0.686319, 0.693014, 0.699780, 0.706617,
    0.713524, 0.720501, 0.727545, 0.734654, 0.741826, 0.749060, 0.756353, 0.763703, 0.771108,
    0.778567, 0.786078, 0.793639, 0.801249, 0.808905, 0.816608, 0.824355, 0.832145, 0.839976,
    0.847847, 0.855757, 0.863703, 0.871683, 0.879693, 0.887729, 0.895789, 0.903870, 0.911968,
    0.920081, 0.928204, 0.936335, 0.944470, 0.952608, 0.960748, 0.968892, 0.977037, 0.985186,
    0.993338,
    # SWIR, bands 92–224
    0.901961, 0.911571, 0.921320, 0.931203, 0.941218, 0.951360, 0.961628, 0.972016, 0.982523,
    0.993144, 1.00388, 1.01472, 1.02566, 1.03670, 1.04784, 1.05907, 1.07039, 1.08178, 1.09326,
    1.10481, 1.11643, 1.12810, 1.13984, 1.15162, 1.16344, 1.17530, 1.18720, 1.19911, 1.21105,
    1.22300, 1.23497, 1.24694, 1.25893, 1.27092, 1.28292, 1.29491, 1.30690, 1.31888, 1.33085,
    1.34282, 1.35476, 1.36669, 1.37860, 1.39048, 1.46110, 1.47274, 1.48434, 1.49589, 1.50740,
    1.51887, 1.53029, 1.54167, 1.55301, 1.56430, 1.57555, 1.58676, 1.59791, 1.60902, 1.62009,
    1.63111, 1.64207, 1.65300, 1.66387, 1.67470, 1.68547, 1.69620, 1.70687, 1.71750, 1.72808,
    1.73860, 1.74908, 1.75951, 1.93914, 1.94869, 1.95820, 1.96766, 1.97708, 1.98645, 1.99579,
    2.00508, 2.01433, 2.02354, 2.03270, 2.04183, 2.05092, 2.05996, 2.06897, 2.07793, 2.08686,
    2.09574, 2.10459, 2.11340, 2.12217, 2.13090, 2.13960, 2.14826, 2.15688, 2.16547, 2.17402,
    2.18253, 2.19101, 2.19945, 2.20786, 2.21624, 2.22458, 2.23289, 2.24116, 2.24940, 2.25761,
    2.26579, 2.27393, 2.28204, 2.29012, 2.29817, 2.30619, 2.31417, 2.32213, 2.33005, 2.33794,
    2.34581, 2.35364, 2.36144, 2.36921, 2.37695, 2.38466, 2.39234, 2.40000, 2.40762, 2.41521,
    2.42278, 2.43032, 2.43782, 2.44530,
)  # fmt: skip
_ENMAP_VNIR_LAST = 91
# Bands kept in the 202-band set: 1–126, 142–160, 168–224 (1-based, inclusive).
_ENMAP_202 = (*range(1, 127), *range(142, 161), *range(168, 225))
# Published mean FWHM / sampling of EnMAP (VNIR 8.1/6.5, SWIR 12.5/10; Guanter et al. 2015).
_ENMAP_FWHM_PER_SPACING = 1.25


def _spacing_per_detector(centres: np.ndarray, detector: np.ndarray) -> np.ndarray:
    """Local centre spacing within each detector (centres rise within one).

    The smaller of the gaps to the two neighbours, so that the bands beside a dropped
    water-vapour region (a gap of 70–180 nm in EnMAP's table) keep their own sampling.
    """
    out = np.empty_like(centres)
    for det in np.unique(detector):
        sel = detector == det
        gaps = np.diff(centres[sel])
        out[sel] = np.minimum(np.r_[gaps[0], gaps], np.r_[gaps, gaps[-1]])
    return out


def _make(
    name: str, centres: np.ndarray, fwhm: np.ndarray, numbers: np.ndarray, det: np.ndarray
) -> Sensor:
    return Sensor(
        name=name,
        wavelength_nm=tuple(float(round(v, 4)) for v in centres),
        fwhm_nm=tuple(float(round(v, 4)) for v in fwhm),
        band_numbers=tuple(int(v) for v in numbers),
        detector=tuple(str(v) for v in det),
    )


def _enmap_224() -> Sensor:
    centres = np.asarray(_ENMAP_UM) * 1000.0
    numbers = np.arange(1, 225)
    det = np.where(numbers <= _ENMAP_VNIR_LAST, "vnir", "swir")
    fwhm = _ENMAP_FWHM_PER_SPACING * _spacing_per_detector(centres, det)
    return _make("enmap-224", centres, fwhm, numbers, det)


def _desis() -> Sensor:
    k = np.arange(235)
    centres = 402.0 + 2.55 * k
    return _make("desis", centres, np.full(235, 3.5), k + 1, np.full(235, "vnir", dtype=object))


def _hyperion() -> Sensor:
    vnir = np.arange(8, 58)
    swir = np.arange(77, 225)
    c_vnir = 426.82 + (vnir - 8) * (925.41 - 426.82) / (57 - 8)
    c_swir = 912.45 + (swir - 77) * (2395.53 - 912.45) / (224 - 77)
    centres = np.concatenate([c_vnir, c_swir])
    numbers = np.concatenate([vnir, swir])
    det = np.where(numbers <= 70, "vnir", "swir")
    return _make("hyperion", centres, _spacing_per_detector(centres, det), numbers, det)


_FULL_ENMAP = _enmap_224()

SENSORS: dict[str, Sensor] = {
    "enmap": _FULL_ENMAP.subset([b - 1 for b in _ENMAP_202], name="enmap"),
    "enmap-224": _FULL_ENMAP,
    "desis": _desis(),
    "hyperion": _hyperion(),
}
"""Known sensors by name; ``"enmap"`` is the 202-band set without water-vapour bands."""

SensorName = Literal["enmap", "enmap-224", "desis", "hyperion"]


def get_sensor(sensor: str | Sensor) -> Sensor:
    """The :class:`Sensor` of a name (or the sensor itself).

    Raises:
        ConfigError: Unknown name; the message lists the known ones.
    """
    if isinstance(sensor, Sensor):
        return sensor
    try:
        return SENSORS[sensor]
    except KeyError:
        raise ConfigError(
            f"sensor {sensor!r} is unknown; expected one of {list(SENSORS)}"
        ) from None


# --------------------------------------------------------------------------------------------
# Spectral response and resampling
# --------------------------------------------------------------------------------------------


def srf(
    sensor: str | Sensor, wavelength_nm: Float[np.ndarray, " n"]
) -> Float[np.ndarray, "bands n"]:
    """Gaussian spectral response of every band on a wavelength grid, peak 1 (for plots).

    Args:
        sensor: Sensor or its name.
        wavelength_nm: Grid, nm.

    Returns:
        (B, n) responses exp(−(λ − λ_b)² / (2 σ_b²)).
    """
    s = get_sensor(sensor)
    wl = np.asarray(wavelength_nm, np.float64)
    z = (wl[None, :] - s.centres[:, None]) / s.sigma_nm[:, None]
    return np.exp(-0.5 * z**2)


@functools.lru_cache(maxsize=32)
def _resampling_matrix_cached(wl_key: bytes, n: int, sensor: Sensor) -> np.ndarray:
    wl = np.frombuffer(wl_key, np.float64, count=n)
    nodes = sensor.centres[:, None] + sensor.sigma_nm[:, None] * _SRF_NODES[None, :]  # (B, K)
    w = np.exp(-0.5 * _SRF_NODES**2)
    w = w / w.sum()  # equal node spacing: the quadrature weights are the SRF values, normalised
    # Linear interpolation of the source at each node: weight (1 - f) on sample i, f on i + 1;
    # outside the source range the end value is held (as np.interp does).
    x = np.clip(nodes, wl[0], wl[-1])
    i = np.clip(np.searchsorted(wl, x, side="right") - 1, 0, n - 2)
    f = (x - wl[i]) / (wl[i + 1] - wl[i])
    mat = np.zeros((sensor.n_bands, n), np.float64)
    rows = np.broadcast_to(np.arange(sensor.n_bands)[:, None], i.shape)
    np.add.at(mat, (rows, i), w[None, :] * (1.0 - f))
    np.add.at(mat, (rows, i + 1), w[None, :] * f)
    mat.setflags(write=False)
    return mat


def resampling_matrix(
    wl_src_nm: Float[np.ndarray, " n"], sensor: str | Sensor
) -> Float[np.ndarray, "bands n"]:
    """Linear map from a spectrum sampled at ``wl_src_nm`` to the sensor's bands.

    Row b holds the weights of the source samples in band b: the SRF-weighted integral of the
    piecewise-linear interpolant of the source (held constant beyond its ends). Rows sum to 1.

    Raises:
        InputError: The source grid is not strictly increasing or has fewer than 2 samples.
    """
    wl = np.ascontiguousarray(wl_src_nm, np.float64).reshape(-1)
    if wl.size < 2 or not np.all(np.diff(wl) > 0):
        raise InputError(
            f"source wavelengths ({wl.size} values) must be strictly increasing with at least 2 "
            "samples"
        )
    return _resampling_matrix_cached(wl.tobytes(), wl.size, get_sensor(sensor))


def resample(
    spectra: Float[np.ndarray, "*batch n"],
    wl_src_nm: Float[np.ndarray, " n"],
    sensor: str | Sensor,
) -> Float[np.ndarray, "*batch bands"]:
    """Resample high-resolution spectra to a sensor's bands through Gaussian SRFs.

    Args:
        spectra: (..., n) spectra sampled at ``wl_src_nm`` (any unit; the map is linear).
        wl_src_nm: (n,) strictly increasing wavelengths, nm. Sample at least ~3 points per FWHM
            of the narrowest band for the band values to reflect the SRF shape.
        sensor: Sensor or its name.

    Returns:
        (..., B) band values, in the dtype of ``spectra`` if floating, else float64.

    Raises:
        InputError: The last axis of ``spectra`` does not match ``wl_src_nm``.
    """
    x = np.asarray(spectra)
    wl = np.asarray(wl_src_nm)
    if x.shape[-1:] != wl.shape:
        raise InputError(
            f"spectra have {x.shape[-1] if x.ndim else 0} samples on their last axis; expected "
            f"{wl.shape[0]} to match wl_src_nm"
        )
    mat = resampling_matrix(wl, sensor)
    dtype = x.dtype if np.issubdtype(x.dtype, np.floating) else np.float64
    return (x.astype(np.float64) @ mat.T).astype(dtype)
