"""Digital elevation models: readers, the zarr layer, the region split, patch sampling.

A DEM is a :class:`Dem`: a 2-D elevation grid in metres (row 0 north), its cell size in metres
and where it came from. Sources that ship offline:

- ``jacksboro``: matplotlib's ``sample_data/jacksboro_fault_dem.npz`` (344×403, 3 arc-second
  SRTM-style, Jacksboro fault, Tennessee; about 93 m × 74 m cells);
- ``topobathy``: matplotlib's ``sample_data/topobathy.npz`` (91×120 topography and bathymetry
  off Vancouver Island; about 2.4 km × 2.5 km cells, sea floor below 0 m);
- a GeoTIFF a user has (:func:`read_geotiff`, cell size from ``ModelPixelScaleTag`` and the
  GeoKeys' model type);
- a jaxgeo DEM store (:func:`write_dem_store` / :func:`read_dem_store`): an
  ``xarray.Dataset`` with ``elevation(y, x)`` in a zarr v3 store.

Training sees one part of a tile and evaluation another (:func:`split_regions`: the eastern
columns are held out), with patches cut at random positions inside a region and turned by one
of the eight rotations/flips of the square (:func:`sample_patches`, pure and jit-able).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from jaxgeo.errors import ConfigError, FileFormatError

__all__ = [
    "SAMPLES",
    "Dem",
    "Region",
    "dihedral",
    "load_dem",
    "load_sample",
    "read_dem_store",
    "read_geotiff",
    "sample_patches",
    "split_regions",
    "write_dem_store",
    "write_geotiff",
]

SAMPLES = ("jacksboro", "topobathy")
_EARTH_RADIUS_M = 6_371_008.8  # mean radius (IUGG)
_DEG_M = math.pi * _EARTH_RADIUS_M / 180.0


@dataclasses.dataclass(frozen=True)
class Dem:
    """An elevation grid.

    Attributes:
        elevation: ``(ny, nx)`` float32, metres above sea level; row 0 is the northern edge.
        cell_size_m: ``(dy, dx)`` cell size in metres (geographic grids converted at the centre
            latitude).
        name: Short name (``jacksboro``, a file stem).
        source: Where the data came from (file, package).
        attrs: Further metadata (geographic bounds, CRS keys), JSON values.
    """

    elevation: np.ndarray
    cell_size_m: tuple[float, float]
    name: str
    source: str
    attrs: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        e = np.asarray(self.elevation)
        if e.ndim != 2 or min(e.shape) < 2:
            raise FileFormatError(f"DEM {self.name}: expected a 2-D grid, got shape {e.shape}")
        if not np.isfinite(e).all():
            raise FileFormatError(
                f"DEM {self.name}: {int((~np.isfinite(e)).sum())} missing/non-finite cells; "
                "expected a complete grid (fill no-data cells first)"
            )
        if not all(c > 0 for c in self.cell_size_m):
            raise FileFormatError(f"DEM {self.name}: cell size must be > 0, got {self.cell_size_m}")

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.elevation.shape[0]), int(self.elevation.shape[1]))

    @property
    def has_sea(self) -> bool:
        """Whether part of the tile lies below sea level (topo-bathymetry)."""
        return bool((self.elevation < 0).any())


def _geographic_cell(lat_centre: float, dlat: float, dlon: float) -> tuple[float, float]:
    return (abs(dlat) * _DEG_M, abs(dlon) * _DEG_M * math.cos(math.radians(lat_centre)))


def load_sample(name: str) -> Dem:
    """A DEM that ships with matplotlib (``jacksboro`` or ``topobathy``).

    Raises:
        ConfigError: Unknown name.
    """
    from matplotlib import cbook

    if name == "jacksboro":
        with cast(Any, cbook.get_sample_data("jacksboro_fault_dem.npz")) as d:
            z = np.asarray(d["elevation"], np.float32)
            dx, dy = float(d["dx"]), float(d["dy"])
            xmin, xmax = float(d["xmin"]), float(d["xmax"])
            # The file's ymin/ymax are swapped (ymin > ymax); the tile spans both.
            lat0, lat1 = sorted((float(d["ymin"]), float(d["ymax"])))
        return Dem(
            z,
            _geographic_cell(0.5 * (lat0 + lat1), dy, dx),
            "jacksboro",
            "matplotlib sample_data/jacksboro_fault_dem.npz (3 arc-second SRTM, Tennessee)",
            {"lon_min": xmin, "lon_max": xmax, "lat_min": lat0, "lat_max": lat1},
        )
    if name == "topobathy":
        with cast(Any, cbook.get_sample_data("topobathy.npz")) as d:
            z = np.asarray(d["topo"], np.float32)
            lon = np.asarray(d["longitude"], np.float64)
            lat = np.asarray(d["latitude"], np.float64)
        if lat[0] < lat[-1]:  # stored south to north: flip so that row 0 is north
            z, lat = z[::-1].copy(), lat[::-1]
        return Dem(
            z,
            _geographic_cell(
                float(lat.mean()), float(np.diff(lat).mean()), float(np.diff(lon).mean())
            ),  # fmt: skip
            "topobathy",
            "matplotlib sample_data/topobathy.npz (topography and bathymetry, British Columbia)",
            {
                "lon_min": float(lon.min()),
                "lon_max": float(lon.max()),
                "lat_min": float(lat.min()),
                "lat_max": float(lat.max()),
            },  # fmt: skip
        )
    raise ConfigError(f"DEM sample must be one of {', '.join(SAMPLES)}, got {name!r}")


# --------------------------------------------------------------------------------------------
# GeoTIFF
# --------------------------------------------------------------------------------------------

_TAG_PIXEL_SCALE = 33550
_TAG_TIEPOINT = 33922
_TAG_GEOKEYS = 34735
_TAG_GDAL_NODATA = 42113
_KEY_MODEL_TYPE = 1024  # GTModelTypeGeoKey: 1 projected, 2 geographic
_KEY_PROJECTED_CRS = 3072
_KEY_GEOGRAPHIC_CRS = 2048


def _geokeys(directory: tuple[int, ...] | None) -> dict[int, int]:
    """Short (in-directory) GeoKeys of a GeoKeyDirectoryTag (GeoTIFF 1.1, section 7.1.2)."""
    if not directory or len(directory) < 4:
        return {}
    n = int(directory[3])
    keys: dict[int, int] = {}
    for i in range(n):
        key_id, location, _count, value = directory[4 + 4 * i : 8 + 4 * i]
        if location == 0:  # the value is in the directory itself
            keys[int(key_id)] = int(value)
    return keys


def read_geotiff(path: str | Path, *, name: str | None = None) -> Dem:
    """A single-band GeoTIFF DEM (metres), cell size from its GeoTIFF tags.

    The cell size is ``ModelPixelScaleTag``; when the GeoKeys say the model is geographic
    (degrees), it is converted to metres at the tile's centre latitude (from the tie point).
    A ``GDAL_NODATA`` value, or NaN, marks missing cells, which are refused.

    Raises:
        FileFormatError: Missing file, not a single-band raster, no pixel scale, missing cells.
    """
    import tifffile

    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"GeoTIFF {path} not found")
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            z = np.asarray(page.asarray(), np.float64)
            tags = {t.code: t.value for t in page.tags.values()}  # type: ignore[union-attr]
    except (tifffile.TiffFileError, ValueError) as err:
        raise FileFormatError(f"{path} is not a readable TIFF: {err}") from err
    if z.ndim == 3 and 1 in (z.shape[0], z.shape[-1]):
        z = z.reshape(z.shape[0], -1) if z.shape[-1] == 1 else z[0]
    if z.ndim != 2:
        raise FileFormatError(f"GeoTIFF {path}: expected one band, got an array of shape {z.shape}")
    scale = tags.get(_TAG_PIXEL_SCALE)
    if scale is None:
        raise FileFormatError(
            f"GeoTIFF {path} has no ModelPixelScaleTag (33550); expected a georeferenced DEM"
        )
    sx, sy = float(scale[0]), float(scale[1])
    tie = tags.get(_TAG_TIEPOINT)
    keys = _geokeys(tags.get(_TAG_GEOKEYS))
    nodata = tags.get(_TAG_GDAL_NODATA)
    if nodata is not None:
        z[z == float(str(nodata).strip("\x00 "))] = np.nan
    attrs: dict[str, Any] = {"model_type": keys.get(_KEY_MODEL_TYPE)}
    if tie is not None:
        attrs["x0"], attrs["y0"] = float(tie[3]), float(tie[4])
    if keys.get(_KEY_MODEL_TYPE) == 2:
        lat_top = float(tie[4]) if tie is not None else 0.0
        cell = _geographic_cell(lat_top - 0.5 * sy * z.shape[0], sy, sx)
        attrs["epsg"] = keys.get(_KEY_GEOGRAPHIC_CRS)
    else:
        cell = (sy, sx)
        attrs["epsg"] = keys.get(_KEY_PROJECTED_CRS)
    return Dem(z.astype(np.float32), cell, name or path.stem, str(path.absolute()), attrs)


def write_geotiff(
    path: str | Path,
    elevation: np.ndarray,
    *,
    cell: tuple[float, float],
    origin: tuple[float, float] = (0.0, 0.0),
    geographic: bool = False,
    epsg: int | None = None,
) -> Path:
    """Write a float32 single-band GeoTIFF with pixel scale, tie point and GeoKeys.

    Args:
        path: Output file.
        elevation: ``(ny, nx)`` metres, row 0 north.
        cell: ``(dy, dx)`` in metres (projected) or degrees (``geographic``).
        origin: ``(x, y)`` of the north-west corner.
        geographic: Degrees (GTModelTypeGeoKey 2) rather than a projected CRS (1).
        epsg: CRS code for the GeoKeys (default 4326 or none).
    """
    import tifffile

    model = 2 if geographic else 1
    crs_key = _KEY_GEOGRAPHIC_CRS if geographic else _KEY_PROJECTED_CRS
    code = epsg if epsg is not None else (4326 if geographic else 32767)  # 32767: user-defined
    # Header (version 1.1.0, 3 keys), then model type, raster type (1: PixelIsArea), CRS.
    geokeys = (1, 1, 0, 3, _KEY_MODEL_TYPE, 0, 1, model, 1025, 0, 1, 1, crs_key, 0, 1, code)
    extratags = [
        (_TAG_PIXEL_SCALE, 12, 3, (float(cell[1]), float(cell[0]), 0.0), False),
        (_TAG_TIEPOINT, 12, 6, (0.0, 0.0, 0.0, float(origin[0]), float(origin[1]), 0.0), False),
        (_TAG_GEOKEYS, 3, len(geokeys), geokeys, False),
    ]
    path = Path(path)
    tifffile.imwrite(path, np.asarray(elevation, np.float32), extratags=extratags)
    return path


# --------------------------------------------------------------------------------------------
# The zarr layer
# --------------------------------------------------------------------------------------------


def write_dem_store(dem: Dem, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a DEM as ``elevation(y, x)`` (metres) in a jaxgeo zarr v3 store.

    Coordinates ``y``/``x`` are cell-centre distances in metres from the north-west corner
    (``y`` growing southwards, as the rows do). Written to a hidden sibling and swapped in, so an
    interrupted write never leaves a partial store (:func:`jaxgeo.io.store.create_store`).

    Raises:
        StoreExistsError: ``path`` exists and not ``overwrite``.
    """
    import xarray as xr

    from jaxgeo.io.store import create_store

    ny, nx = dem.shape
    dy, dx = dem.cell_size_m
    ds = xr.Dataset(
        {
            "elevation": (
                ("y", "x"),
                np.asarray(dem.elevation, np.float32),
                {"units": "m", "long_name": "elevation above sea level"},
            )
        },
        coords={
            "y": ("y", (np.arange(ny) + 0.5) * dy, {"units": "m", "long_name": "distance south"}),
            "x": ("x", (np.arange(nx) + 0.5) * dx, {"units": "m", "long_name": "distance east"}),
        },
    )
    attrs = {
        "name": dem.name,
        "source": dem.source,
        "cell_size_m": [float(dy), float(dx)],
        "dem_attrs": dem.attrs,
    }
    return create_store(path, ds, append_dim="y", overwrite=overwrite, attrs=attrs)


def read_dem_store(path: str | Path) -> Dem:
    """Read a DEM store written by :func:`write_dem_store`.

    Raises:
        FileFormatError: Not such a store.
    """
    from jaxgeo.io.store import open_store

    ds = open_store(path)
    if "elevation" not in ds or "cell_size_m" not in ds.attrs:
        raise FileFormatError(
            f"{path} is not a DEM store: expected variable 'elevation' and attribute cell_size_m"
        )
    dy, dx = ds.attrs["cell_size_m"]
    return Dem(
        np.asarray(ds["elevation"].values, np.float32),
        (float(dy), float(dx)),
        str(ds.attrs.get("name", Path(path).stem)),
        str(ds.attrs.get("source", path)),
        dict(ds.attrs.get("dem_attrs", {})),
    )


def load_dem(spec: str | Path) -> Dem:
    """A DEM from a sample name, a GeoTIFF (``.tif``/``.tiff``) or a DEM store (``.zarr``).

    Raises:
        ConfigError, FileFormatError: Unknown name or unreadable file.
    """
    s = str(spec)
    if s in SAMPLES:
        return load_sample(s)
    p = Path(s)
    if p.suffix.lower() in (".tif", ".tiff"):
        return read_geotiff(p)
    if p.is_dir():
        return read_dem_store(p)
    raise ConfigError(
        f"DEM {s!r}: expected one of {', '.join(SAMPLES)}, a GeoTIFF (.tif) or a DEM store (.zarr)"
    )


# --------------------------------------------------------------------------------------------
# Regions and patches
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Region:
    """A rectangle of a tile: rows ``[row0, row1)``, columns ``[col0, col1)``."""

    row0: int
    row1: int
    col0: int
    col1: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.row1 - self.row0, self.col1 - self.col0)

    def fits(self, size: int) -> bool:
        return min(self.shape) >= size


def split_regions(
    shape: tuple[int, int], heldout_fraction: float, patch: int
) -> tuple[Region, Region]:
    """Train and held-out regions: the eastern ``heldout_fraction`` of the columns is held out.

    A region split (rather than a random split of patches) keeps overlapping patches out of
    the evaluation, so the held-out scores measure generalisation to unseen terrain.

    Raises:
        ConfigError: A region narrower than one patch.
    """
    ny, nx = shape
    if not 0.0 < heldout_fraction < 1.0:
        raise ConfigError(f"heldout_fraction must be in (0, 1), got {heldout_fraction}")
    n_held = int(math.ceil(heldout_fraction * nx))
    train = Region(0, ny, 0, nx - n_held)
    held = Region(0, ny, nx - n_held, nx)
    for what, r in (("train", train), ("held-out", held)):
        if not r.fits(patch):
            raise ConfigError(
                f"{what} region {r.shape} of the {shape} tile is smaller than a {patch}-cell "
                "patch; use a smaller patch or another heldout_fraction"
            )
    return train, held


def dihedral(x: Float[Array, "n n *c"], k: jax.Array) -> Float[Array, "n n *c"]:
    """One of the eight symmetries of the square (``k`` in 0..7: ``k % 4`` quarter turns, then a
    transpose when ``k >= 4``); jit-able with a traced ``k``."""
    branches = [
        (lambda a, r=r, t=t: (jnp.swapaxes(a, 0, 1) if t else a) if r == 0
         else (jnp.swapaxes(jnp.rot90(a, r), 0, 1) if t else jnp.rot90(a, r)))
        for t in (False, True) for r in range(4)
    ]  # fmt: skip
    return jax.lax.switch(k, branches, x)


def sample_patches(
    key: jax.Array,
    tile: Float[Array, "ny nx"],
    region: Region,
    n: int,
    size: int,
    *,
    augment: bool = True,
) -> Float[Array, "n size size"]:
    """``n`` random ``size``-cell patches from ``region`` of ``tile``, each rotated/flipped by
    one of the eight symmetries of the square when ``augment``. Pure (jit-able)."""
    k_r, k_c, k_d = jax.random.split(key, 3)
    rows = jax.random.randint(k_r, (n,), region.row0, region.row1 - size + 1)
    cols = jax.random.randint(k_c, (n,), region.col0, region.col1 - size + 1)
    turns = jax.random.randint(k_d, (n,), 0, 8 if augment else 1)

    def one(r: jax.Array, c: jax.Array, t: jax.Array) -> jax.Array:
        return dihedral(jax.lax.dynamic_slice(tile, (r, c), (size, size)), t)

    return jax.vmap(one)(rows, cols, turns)
