"""Readers: EnMAP L2A GeoTIFF patches and the napari-hippo Fenix cube (jaxgeo.hsi.readers)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from jaxgeo.errors import FileFormatError
from jaxgeo.hsi.readers import geotiffs_to_store, load_hippo_cube, read_envi, read_geotiff
from jaxgeo.hsi.sensors import SENSORS, resample
from jaxgeo.hsi.store import NODATA, PatchStore

tifffile = pytest.importorskip("tifffile")


def _write_geotiff(path: Path, data: np.ndarray, *, origin=(500000.0, 5300000.0), planar=True):
    """A GeoTIFF like GDAL writes for EnMAP L2A: int16, 30 m pixels, nodata -32768."""
    extratags = [
        (33550, "d", 3, (30.0, 30.0, 0.0), True),  # ModelPixelScale
        (33922, "d", 6, (0.0, 0.0, 0.0, origin[0], origin[1], 0.0), True),  # ModelTiepoint
        (42113, "s", 0, "-32768", True),  # GDAL_NODATA
    ]
    if planar:
        tifffile.imwrite(path, np.moveaxis(data, -1, 0), planarconfig="separate",
                         photometric="minisblack", extratags=extratags)  # fmt: skip
    else:
        tifffile.imwrite(path, data, planarconfig="contig", photometric="minisblack",
                         extratags=extratags)  # fmt: skip


def _cube(seed: int, n_bands: int, size: int = 8) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 6000, (size, size, n_bands)).astype(np.int16)
    data[0, 0, :] = NODATA
    return data


@pytest.mark.parametrize("planar", [True, False])
def test_geotiff_reader_round_trip(tmp_path: Path, planar: bool) -> None:
    data = _cube(0, 202)
    path = tmp_path / "patch.tif"
    _write_geotiff(path, data, planar=planar)
    patch = read_geotiff(path)
    np.testing.assert_array_equal(patch.data, data)
    assert patch.nodata == -32768.0
    assert patch.origin == (500000.0, 5300000.0) and patch.pixel_size == (30.0, 30.0)


def test_geotiffs_into_patch_store(tmp_path: Path) -> None:
    cubes = [_cube(i, 202) for i in range(4)]
    paths = []
    for i, cube in enumerate(cubes):  # four patches 40 km apart: four split blocks
        paths.append(tmp_path / f"p{i}.tif")
        _write_geotiff(paths[-1], cube, origin=(500000.0 + 40000.0 * i, 5300000.0))
    full = _cube(9, 224)  # a full 224-band product is reduced to the 202-band set
    paths.append(tmp_path / "full.tif")
    _write_geotiff(paths[-1], full, origin=(500000.0, 5000000.0))
    summary = geotiffs_to_store(paths, tmp_path / "s.zarr", seed=0)
    assert summary["patches"] == 5 and summary["bands"] == 202
    store = PatchStore.open(tmp_path / "s.zarr")
    raw = store.read_raw(np.arange(5))
    for i, cube in enumerate(cubes):
        np.testing.assert_array_equal(raw[i], cube)
    np.testing.assert_array_equal(raw[4], full[..., np.asarray(SENSORS["enmap"].band_numbers) - 1])
    x = store.read([0], normalize=False)
    assert np.isnan(x[0, 0, 0]).all()
    np.testing.assert_allclose(x[0, 1:], cubes[0][1:] * 1e-4, rtol=1e-6)
    np.testing.assert_array_equal(store.wavelength_nm, SENSORS["enmap"].centres.astype(np.float32))
    assert (store.labels(np.arange(5), "landcover") == -1).all()
    assert (store.split == 0).any()


def test_geotiff_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.tif"
    _write_geotiff(path, _cube(0, 50))
    with pytest.raises(FileFormatError, match="50 bands does not match sensor 'enmap'"):
        geotiffs_to_store([path], tmp_path / "s.zarr")
    with pytest.raises(FileFormatError, match="not found"):
        read_geotiff(tmp_path / "missing.tif")
    assert not (tmp_path / "s.zarr").exists()


def test_envi_reader_round_trip(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    cube = rng.integers(1, 65535, (4, 3, 5)).astype("<u2")  # lines, samples, bands
    cube.transpose(2, 0, 1).tofile(tmp_path / "c.dat")  # bsq
    (tmp_path / "c.hdr").write_text(
        "ENVI\nsamples = 3\nlines = 4\nbands = 5\nheader offset = 0\ndata type = 12\n"
        "interleave = bsq\nbyte order = 0\nreflectance scale factor = 65535.0\n"
        "wavelength = {400, 500,\n 600, 700, 800}\nfwhm = {5, 5, 5, 5, 5}\n"
    )
    out = read_envi(tmp_path / "c.hdr")
    np.testing.assert_allclose(out.data, cube / 65535.0, rtol=1e-6)
    np.testing.assert_array_equal(out.wavelength_nm, [400, 500, 600, 700, 800])


@pytest.mark.skipif(
    importlib.util.find_spec("napari_hippo") is None,
    reason="napari-hippo is not installed (pip install --no-deps napari-hippo)",
)
def test_hippo_cube_loads_with_450_bands() -> None:
    cube = load_hippo_cube()
    assert cube.data.shape == (38, 23, 450)
    assert np.all(np.diff(cube.wavelength_nm) > 0)
    assert 370 < cube.wavelength_nm[0] < 400 and 2450 < cube.wavelength_nm[-1] < 2550
    valid = cube.data[np.isfinite(cube.data)]
    assert 0.0 < valid.min() and valid.max() < 1.5
    # Smoke test of cross-sensor use: the real cube resampled to EnMAP's 202 bands.
    spectra = np.nan_to_num(cube.data.reshape(-1, 450).astype(np.float64))
    enmap = resample(spectra, cube.wavelength_nm, "enmap")
    assert enmap.shape == (38 * 23, 202) and np.isfinite(enmap).all()
