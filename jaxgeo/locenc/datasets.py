"""Datasets on the sphere, built offline: checkerboard, land–ocean, geomagnetic field intensity.

Each builder returns a :class:`Dataset` of NumPy arrays (lon, lat in degrees; labels or
targets) split into train / validation / test, plus a ``truth(lon, lat)`` function for maps.

- ``checkerboard`` (Rußwurm et al. 2024, §4.1): points on a Fibonacci lattice, labelled by a
  checkerboard of ``cell_deg`` cells whose 16 classes repeat every 4 cells in longitude and in
  latitude, ``class = (i_lon mod 4) + 4 (i_lat mod 4)``. The lattice is shuffled (by seed) and
  split.
- ``landocean``: points uniform on the sphere, labelled land (1) / ocean (0) by the 1 km global
  land mask shipped in the PyPI package ``global-land-mask`` (1.0.0; GLOBE elevation data).
- ``magfield``: regression of the total intensity |B| (nT) of the geomagnetic main field at the
  surface, epoch 2020-01-01, from the IGRF-14 model (Alken et al. 2025) whose Gauss coefficients
  ship in the PyPI package ``ppigrf`` (2.1.0); points uniform on the sphere. Trained on the
  standardised target; metrics are in nT.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import numpy as np

from jaxgeo.errors import ConfigError, InputError

__all__ = [
    "DATASETS",
    "Dataset",
    "Split",
    "checkerboard",
    "fibonacci_lattice",
    "landocean",
    "load_dataset",
    "magfield",
    "map_grid",
    "uniform_sphere",
]

DATASETS: tuple[str, ...] = ("checkerboard", "landocean", "magfield")


class Split(NamedTuple):
    """One split: longitudes, latitudes (degrees) and labels (int) or targets (float)."""

    lon: np.ndarray
    lat: np.ndarray
    y: np.ndarray


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A dataset on the sphere.

    Attributes:
        name: dataset name.
        task: ``classification`` (y are int class indices) or ``regression`` (y float).
        n_classes: number of classes (1 for regression).
        train, val, test: the splits.
        truth: labels/targets at arbitrary (lon, lat) arrays, for maps.
        target_mean, target_std: standardisation of regression targets (0, 1 otherwise).
        units: units of the regression target ("" for classes).
    """

    name: str
    task: Literal["classification", "regression"]
    n_classes: int
    train: Split
    val: Split
    test: Split
    truth: Callable[[np.ndarray, np.ndarray], np.ndarray]
    target_mean: float = 0.0
    target_std: float = 1.0
    units: str = ""

    @property
    def n_out(self) -> int:
        return self.n_classes if self.task == "classification" else 1


def fibonacci_lattice(n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` near-uniform points on the sphere (golden-angle spiral), lon in [−180, 180), lat.

    Point i sits at z = 1 − (2i + 1)/n (equal-area bands) and longitude i·golden angle.
    """
    if n < 1:
        raise InputError(f"fibonacci_lattice needs n >= 1, got {n}")
    i = np.arange(n, dtype=np.float64)
    z = 1.0 - (2.0 * i + 1.0) / n
    golden = math.pi * (3.0 - math.sqrt(5.0))
    lon = np.mod(np.degrees(i * golden) + 180.0, 360.0) - 180.0
    return lon, np.degrees(np.arcsin(z))


def uniform_sphere(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points uniform on the sphere: lon uniform in [−180, 180), sin(lat) uniform."""
    lon = rng.uniform(-180.0, 180.0, n)
    lat = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    return lon, lat


def map_grid(n_lat: int = 90, n_lon: int = 180) -> tuple[np.ndarray, np.ndarray]:
    """Cell-centre lon/lat mesh of a regular grid, shape (n_lat, n_lon), lat descending."""
    lat = 90.0 - (np.arange(n_lat) + 0.5) * 180.0 / n_lat
    lon = -180.0 + (np.arange(n_lon) + 0.5) * 360.0 / n_lon
    lon2, lat2 = np.meshgrid(lon, lat)
    return lon2, lat2


def _split_sizes(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    n_val = int(round(n * fractions[1]))
    n_test = int(round(n * fractions[2]))
    return n - n_val - n_test, n_val, n_test


def _partition(lon, lat, y, rng, fractions) -> tuple[Split, Split, Split]:
    order = rng.permutation(lon.size)
    n_train, n_val, _ = _split_sizes(lon.size, fractions)
    parts = np.split(order, [n_train, n_train + n_val])
    return tuple(Split(lon[p], lat[p], y[p]) for p in parts)  # type: ignore[return-value]


def checkerboard_labels(lon: np.ndarray, lat: np.ndarray, cell_deg: float = 30.0) -> np.ndarray:
    """16-class checkerboard: ``(i_lon mod 4) + 4 (i_lat mod 4)`` on ``cell_deg`` cells."""
    i_lon = np.floor((np.mod(lon + 180.0, 360.0)) / cell_deg).astype(np.int64)
    i_lat = np.floor((np.clip(lat, -90.0, 90.0 - 1e-9) + 90.0) / cell_deg).astype(np.int64)
    return (i_lon % 4 + 4 * (i_lat % 4)).astype(np.int32)


def checkerboard(
    n_points: int = 10_000,
    *,
    seed: int = 0,
    cell_deg: float = 30.0,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
) -> Dataset:
    """The 16-class checkerboard on a Fibonacci lattice of ``n_points``, split by ``seed``."""
    lon, lat = fibonacci_lattice(n_points)
    y = checkerboard_labels(lon, lat, cell_deg)
    train, val, test = _partition(lon, lat, y, np.random.default_rng(seed), fractions)
    return Dataset(
        "checkerboard",
        "classification",
        16,
        train,
        val,
        test,
        truth=lambda lo, la: checkerboard_labels(lo, la, cell_deg),
    )


def land_mask(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """1 on land, 0 on the ocean (``global-land-mask``'s 1 km GLOBE mask)."""
    try:
        from global_land_mask import globe
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ConfigError(
            "dataset landocean needs the package global-land-mask (pip install global-land-mask)"
        ) from err
    lon_w = np.mod(np.asarray(lon, np.float64) + 180.0, 360.0) - 180.0
    lat_c = np.clip(np.asarray(lat, np.float64), -90.0, 90.0)
    return globe.is_land(lat_c, lon_w).astype(np.int32)


def landocean(
    n_points: int = 10_000,
    *,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
) -> Dataset:
    """Land (1) / ocean (0) at ``n_points`` uniform random points, split by ``seed``."""
    rng = np.random.default_rng(seed)
    lon, lat = uniform_sphere(n_points, rng)
    y = land_mask(lon, lat)
    train, val, test = _partition(lon, lat, y, rng, fractions)
    return Dataset("landocean", "classification", 2, train, val, test, truth=land_mask)


_IGRF_DATE = datetime.datetime(2020, 1, 1)


def field_intensity(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """|B| in nT at the surface (h = 0), IGRF-14 at 2020-01-01 (``ppigrf``)."""
    try:
        import ppigrf
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ConfigError("dataset magfield needs the package ppigrf (pip install ppigrf)") from err
    shape = np.shape(lon)
    lon_f = np.asarray(lon, np.float64).ravel()
    lat_f = np.asarray(lat, np.float64).ravel()
    be, bn, bu = ppigrf.igrf(lon_f, lat_f, 0.0, _IGRF_DATE)
    return np.sqrt(be**2 + bn**2 + bu**2).reshape(shape)


def magfield(
    n_points: int = 10_000,
    *,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
) -> Dataset:
    """Geomagnetic total intensity (nT) at ``n_points`` uniform random points."""
    rng = np.random.default_rng(seed)
    lon, lat = uniform_sphere(n_points, rng)
    y = field_intensity(lon, lat)
    train, val, test = _partition(lon, lat, y, rng, fractions)
    return Dataset(
        "magfield",
        "regression",
        1,
        train,
        val,
        test,
        truth=field_intensity,
        target_mean=float(train.y.mean()),
        target_std=float(train.y.std()),
        units="nT",
    )


def load_dataset(name: str, *, n_points: int = 10_000, seed: int = 0) -> Dataset:
    """Build dataset ``name`` (one of :data:`DATASETS`) with ``n_points`` points in all."""
    if name not in DATASETS:
        raise ConfigError(f"dataset must be one of {', '.join(DATASETS)}, got {name!r}")
    if n_points < 20:
        raise ConfigError(f"dataset n_points must be >= 20, got {n_points}")
    builder = {"checkerboard": checkerboard, "landocean": landocean, "magfield": magfield}[name]
    return builder(n_points, seed=seed)
