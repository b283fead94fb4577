"""The hyperspectral patch store: a zarr v3 group of fixed-size patches, one chunk per patch.

Layout (the contract between the data and the model halves of :mod:`jaxgeo.hsi`)::

    reflectance      int16   (N, H, W, B)  chunks (1, H, W, B); reflectance = value * scale_factor
    reflectance_t2   int16   (N, H, W, B)  optional: the same location on a second date
    landcover        int16   (N, H, W)     class index per pixel, -1 unlabeled
    landcover_label  int16   (N,)          patch-level (majority) class, -1 if no labeled pixel
    croptype         int16   (N, H, W)     crop index, -1 where not cropland / unlabeled
    split            int8    (N,)          0 train, 1 validation, 2 test
    location         int64   (N, 2)        top-left (row, col) on the source mosaic, -1 unknown
    wavelength_nm    float32 (B,)          band centres
    fwhm_nm          float32 (B,)          band full widths at half maximum
    band_mean        float32 (B,)          mean reflectance of the train split (normalisation)
    band_std         float32 (B,)          standard deviation of the same

Group attributes: ``sensor``, ``scale_factor`` (1e-4, as in EnMAP L2A), ``nodata`` (-32768),
``landcover_classes``, ``croptype_classes``, ``seed``, ``generator`` (dict of settings),
``jaxgeo_version``. Arrays carry ``dimension_names`` (``patch, y, x, band``) and CF ``units`` /
``long_name``, so ``xarray.open_zarr(path, consolidated=False)`` reads the store too.

Writing is streamed (:class:`PatchStoreWriter`): patches go in blocks into a hidden sibling
folder, the per-band statistics of the train split are accumulated on the way (Chan et al.'s
pairwise update, so a thousand 128×128 patches never sit in memory at once), and the finished
store is renamed into place, so an existing store is never half-overwritten.
:func:`write_patch_store` writes whole arrays in one call.

Reading (:class:`PatchStore`) returns channels-last float32 batches, normalised per band with the
stored train statistics, and :meth:`PatchStore.batches` reads the next batches in a background
thread while the caller trains on the current one.
"""

from __future__ import annotations

import concurrent.futures
import os
import shutil
import uuid
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np
import zarr
from zarr.codecs import BloscCodec, BytesCodec

from jaxgeo._version import __version__
from jaxgeo.errors import FileFormatError, InputError, StoreExistsError
from jaxgeo.io.store import swap_in

__all__ = [
    "NODATA",
    "SCALE_FACTOR",
    "SPLITS",
    "PatchStore",
    "PatchStoreWriter",
    "normalize_raw",
    "write_patch_store",
]

SCALE_FACTOR = 1e-4
"""Reflectance per stored integer, as in EnMAP L2A products."""

NODATA = -32768
"""Stored integer of a missing reflectance value (EnMAP L2A's no-data value)."""

SPLITS: dict[str, int] = {"train": 0, "val": 1, "test": 2}
"""Split names and their codes in the ``split`` array."""

Task = Literal["landcover", "landcover_patch", "croptype"]
TASKS: tuple[str, ...] = ("landcover", "landcover_patch", "croptype")

# Arrays every store must hold (reflectance_t2 is optional), with their rank.
_REQUIRED: dict[str, int] = {
    "reflectance": 4,
    "landcover": 3,
    "landcover_label": 1,
    "croptype": 3,
    "split": 1,
    "wavelength_nm": 1,
    "fwhm_nm": 1,
    "band_mean": 1,
    "band_std": 1,
}
_REQUIRED_ATTRS = ("sensor", "scale_factor", "landcover_classes", "croptype_classes")
_CUBE_DIMS = ("patch", "y", "x", "band")


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _quantize(values: np.ndarray, scale_factor: float, what: str) -> np.ndarray:
    """Reflectance as stored integers: int16 passes through, floats are divided and rounded.

    NaN becomes :data:`NODATA`; values beyond the int16 range are clipped (reflectance above
    3.27 at 1e-4 does not occur in L2A products, so clipping only guards against garbage).
    """
    if values.dtype == np.int16:
        return values
    if not np.issubdtype(values.dtype, np.floating):
        raise InputError(
            f"{what} has dtype {values.dtype}; expected float reflectance or int16 values "
            f"already scaled by scale_factor={scale_factor}"
        )
    # In place on one float32 copy: this runs on every patch written.
    scaled = values.astype(np.float32) * np.float32(1.0 / scale_factor)
    np.rint(scaled, out=scaled)
    missing = ~np.isfinite(scaled)
    any_missing = bool(missing.any())
    if any_missing:
        scaled[missing] = 0.0
    np.clip(scaled, -32767, 32767, out=scaled)
    out = scaled.astype(np.int16)
    if any_missing:
        out[missing] = NODATA
    return out


class _BandMoments:
    """Running per-band count, mean and sum of squared deviations (Chan et al. 1979)."""

    def __init__(self, n_bands: int) -> None:
        self.count = np.zeros(n_bands, np.float64)
        self.mean = np.zeros(n_bands, np.float64)
        self.m2 = np.zeros(n_bands, np.float64)

    def update(self, stored: np.ndarray, scale_factor: float) -> None:
        pixels = stored.reshape(-1, stored.shape[-1])
        valid = pixels != NODATA
        # Moments of the stored integers (exact in float32 up to 2^24 and summed in float64),
        # scaled to reflectance at the end of each block.
        x = pixels.astype(np.float32)
        if valid.all():
            n_b = np.full(pixels.shape[1], float(pixels.shape[0]))
            mean_b = x.mean(axis=0, dtype=np.float64)
            dev = x - mean_b.astype(np.float32)
        else:
            n_b = valid.sum(axis=0).astype(np.float64)
            x[~valid] = 0.0
            mean_b = x.sum(axis=0, dtype=np.float64) / np.maximum(n_b, 1.0)
            dev = np.where(valid, x - mean_b.astype(np.float32), np.float32(0.0))
        if not n_b.any():
            return
        m2_b = np.einsum("ij,ij->j", dev, dev, dtype=np.float64)
        # The float32 mean leaves a small bias in the deviations; remove it (exact formula).
        bias = dev.sum(axis=0, dtype=np.float64) / np.maximum(n_b, 1.0)
        m2_b = np.maximum(m2_b - n_b * bias**2, 0.0) * scale_factor**2
        mean_b = (mean_b + bias) * scale_factor
        n = self.count + n_b
        delta = mean_b - self.mean
        safe_n = np.maximum(n, 1.0)
        self.mean = self.mean + delta * n_b / safe_n
        self.m2 = self.m2 + m2_b + delta**2 * self.count * n_b / safe_n
        self.count = n

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        std = np.sqrt(self.m2 / np.maximum(self.count, 1.0))
        # A constant band (or one never observed) would divide by zero when normalising.
        std = np.where(std > 0.0, std, 1.0)
        return self.mean.astype(np.float32), std.astype(np.float32)


def _check_labels(values: np.ndarray, name: str, n_classes: int, shape: tuple[int, ...]) -> None:
    if values.shape != shape:
        raise InputError(f"{name} has shape {values.shape}; expected {shape}")
    if not np.issubdtype(values.dtype, np.integer):
        raise InputError(f"{name} has dtype {values.dtype}; expected integer class indices")
    if values.size and (values.min() < -1 or values.max() >= n_classes):
        raise InputError(
            f"{name} holds values in [{values.min()}, {values.max()}]; expected class indices "
            f"in [-1, {n_classes - 1}] (-1 = unlabeled) for {n_classes} classes"
        )


def _majority(landcover: np.ndarray, n_classes: int) -> np.ndarray:
    """Most frequent labeled class of each patch (-1 if a patch has no labeled pixel)."""
    flat = landcover.reshape(landcover.shape[0], -1).astype(np.int64)
    counts = np.zeros((flat.shape[0], n_classes + 1), np.int64)
    rows = np.repeat(np.arange(flat.shape[0]), flat.shape[1])
    np.add.at(counts, (rows, flat.ravel() + 1), 1)
    label = counts[:, 1:].argmax(axis=1)
    return np.where(counts[:, 1:].sum(axis=1) > 0, label, -1).astype(np.int16)


def _is_zarr_group(path: Path) -> bool:
    return path.is_dir() and (path / "zarr.json").is_file()


class PatchStoreWriter:
    """Stream patches into a new patch store; the store appears at ``path`` only on close.

    Use as a context manager; an exception inside the block deletes the partial store and leaves
    whatever was at ``path`` untouched::

        with PatchStoreWriter(path, n_patches=N, patch_size=S, wavelength_nm=wl, fwhm_nm=fw,
                              sensor="enmap", landcover_classes=lc, croptype_classes=ct,
                              two_dates=True) as w:
            for start in range(0, N, 16):
                w.write(start, reflectance=r, landcover=l, croptype=c, split=s, reflectance_t2=r2)

    Args:
        path: Store folder to create (parents are created).
        n_patches: Number of patches N.
        patch_size: Patch side H = W, pixels.
        wavelength_nm: Band centres, shape (B,).
        fwhm_nm: Band full widths at half maximum, shape (B,).
        sensor: Sensor name stored in the attributes (``"enmap"``, ``"desis"``, ...).
        landcover_classes: Names of the land-cover classes (index order).
        croptype_classes: Names of the crop types (index order).
        two_dates: Whether ``reflectance_t2`` is written.
        scale_factor: Reflectance per stored integer.
        attrs: Extra group attributes (JSON values): ``seed``, ``generator``, provenance.
        overwrite: Replace an existing store at ``path``.

    Raises:
        StoreExistsError: ``path`` exists and ``overwrite`` is False, or it exists and is not a
            zarr store (never replaced, to protect unrelated data).
        InputError: Inconsistent sizes or names.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        n_patches: int,
        patch_size: int,
        wavelength_nm: np.ndarray | Sequence[float],
        fwhm_nm: np.ndarray | Sequence[float],
        sensor: str,
        landcover_classes: Sequence[str],
        croptype_classes: Sequence[str],
        two_dates: bool = False,
        scale_factor: float = SCALE_FACTOR,
        attrs: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        if os.path.lexists(self.path):
            if not overwrite:
                raise StoreExistsError(
                    f"patch store {self.path} already exists; pass --overwrite "
                    "(overwrite=True) to replace it"
                )
            if not _is_zarr_group(self.path):
                raise StoreExistsError(
                    f"{self.path} exists and is not a zarr store (no zarr.json); refusing to "
                    "replace it even with --overwrite, choose another output path"
                )
        wl = np.asarray(wavelength_nm, np.float32)
        fw = np.asarray(fwhm_nm, np.float32)
        if wl.ndim != 1 or wl.shape != fw.shape or wl.size == 0:
            raise InputError(
                f"wavelength_nm {wl.shape} and fwhm_nm {fw.shape} must be equal non-empty 1-D "
                "arrays (one entry per band)"
            )
        if n_patches < 1 or patch_size < 1:
            raise InputError(
                f"n_patches={n_patches} and patch_size={patch_size}; expected both >= 1"
            )
        if scale_factor <= 0:
            raise InputError(f"scale_factor={scale_factor}; expected > 0")
        self.n_patches = int(n_patches)
        self.patch_size = int(patch_size)
        self.n_bands = int(wl.size)
        self.two_dates = bool(two_dates)
        self.scale_factor = float(scale_factor)
        self.landcover_classes = tuple(str(c) for c in landcover_classes)
        self.croptype_classes = tuple(str(c) for c in croptype_classes)
        if not self.landcover_classes:
            raise InputError("landcover_classes is empty; expected at least one class name")
        self._moments = _BandMoments(self.n_bands)
        self._written = np.zeros(self.n_patches, bool)
        self._split = np.full(self.n_patches, -1, np.int8)
        self._closed = False

        group_attrs: dict[str, Any] = {"seed": None, "generator": {}}
        group_attrs.update(dict(attrs or {}))
        group_attrs.update(
            sensor=str(sensor),
            scale_factor=self.scale_factor,
            nodata=NODATA,
            landcover_classes=list(self.landcover_classes),
            croptype_classes=list(self.croptype_classes),
            jaxgeo_version=__version__,
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.parent / f".{self.path.name}.tmp-{uuid.uuid4().hex}"
        try:
            self._root = zarr.open_group(self._tmp, mode="w-", zarr_format=3)
            self._root.attrs.update(group_attrs)
        except TypeError as err:  # attributes that JSON cannot hold
            shutil.rmtree(self._tmp, ignore_errors=True)
            raise InputError(f"attributes of patch store {self.path}: {err}") from err
        n, s, b = self.n_patches, self.patch_size, self.n_bands
        cube: dict[str, Any] = {
            "shape": (n, s, s, b),
            "chunks": (1, s, s, b),
            "dtype": "int16",
            "fill_value": NODATA,
            "dimension_names": _CUBE_DIMS,
            # LZ4 with byte shuffle: twice as fast as zarr's default zstd to write and read
            # (the training input pipeline reads these chunks), 8 % larger.
            "compressors": BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"),
        }
        refl_attrs: dict[str, Any] = {
            "units": "1",
            "scale_factor": self.scale_factor,
            "long_name": "surface reflectance",
        }
        self._refl = self._root.create_array("reflectance", **cube, attributes=refl_attrs)
        self._refl_t2 = None
        if self.two_dates:
            self._refl_t2 = self._root.create_array(
                "reflectance_t2",
                **cube,
                attributes=refl_attrs | {"long_name": "surface reflectance, second date"},
            )
        label_map: dict[str, Any] = {
            "shape": (n, s, s),
            "chunks": (min(n, 64), s, s),
            "dtype": "int16",
            "fill_value": -1,
            "dimension_names": _CUBE_DIMS[:3],
        }
        self._landcover = self._root.create_array(
            "landcover", **label_map, attributes={"long_name": "land-cover class, -1 unlabeled"}
        )
        self._croptype = self._root.create_array(
            "croptype",
            **label_map,
            attributes={"long_name": "crop type, -1 not cropland or unlabeled"},
        )
        self._location = self._root.create_array(
            "location",
            shape=(n, 2),
            dtype="int64",
            fill_value=-1,
            dimension_names=("patch", "corner"),
            attributes={
                "units": "pixel",
                "long_name": "top-left (row, column) of the patch on its mosaic, -1 unknown",
            },
        )
        for name, values, long_name in (
            ("wavelength_nm", wl, "band centre wavelength"),
            ("fwhm_nm", fw, "band full width at half maximum"),
        ):
            arr = self._root.create_array(
                name,
                shape=(b,),
                dtype="float32",
                dimension_names=("band",),
                attributes={"units": "nm", "long_name": long_name},
            )
            arr[:] = values

    # -- writing ----------------------------------------------------------------------------

    def write(
        self,
        start: int,
        *,
        reflectance: np.ndarray,
        landcover: np.ndarray,
        croptype: np.ndarray,
        split: np.ndarray | Sequence[int],
        reflectance_t2: np.ndarray | None = None,
        location: np.ndarray | None = None,
    ) -> None:
        """Write patches ``start, start + 1, ...`` (a block of n).

        Args:
            start: Index of the first patch of the block.
            reflectance: (n, H, W, B) float reflectance (NaN = missing) or int16 stored values.
            landcover: (n, H, W) integer class indices, -1 unlabeled.
            croptype: (n, H, W) integer crop indices, -1 not cropland.
            split: (n,) split codes (0 train, 1 val, 2 test).
            reflectance_t2: Second date, like ``reflectance``; required iff ``two_dates``.
            location: (n, 2) top-left (row, column) pixel of each patch on its mosaic or
                scene (optional; -1 when not given).

        Raises:
            InputError: A shape, dtype or value range does not match the store, or the block
                runs past ``n_patches``.
        """
        if self._closed:
            raise InputError(f"patch store writer for {self.path} is already closed")
        refl = np.asarray(reflectance)
        n = refl.shape[0] if refl.ndim == 4 else -1
        cube_shape = (n, self.patch_size, self.patch_size, self.n_bands)
        if refl.shape != cube_shape:
            raise InputError(
                f"reflectance has shape {refl.shape}; expected (n, H, W, B) = "
                f"(n, {self.patch_size}, {self.patch_size}, {self.n_bands})"
            )
        if start < 0 or start + n > self.n_patches:
            raise InputError(
                f"patches [{start}, {start + n}) fall outside the store's {self.n_patches} patches"
            )
        map_shape = cube_shape[:3]
        lc = np.asarray(landcover)
        ct = np.asarray(croptype)
        sp = np.asarray(split)
        _check_labels(lc, "landcover", len(self.landcover_classes), map_shape)
        _check_labels(ct, "croptype", len(self.croptype_classes), map_shape)
        if sp.shape != (n,) or not np.isin(sp, list(SPLITS.values())).all():
            raise InputError(
                f"split has shape {sp.shape} and values {np.unique(sp).tolist()}; expected "
                f"shape ({n},) with values 0 (train), 1 (val), 2 (test)"
            )
        if (reflectance_t2 is not None) != self.two_dates:
            raise InputError(
                f"reflectance_t2 {'given' if reflectance_t2 is not None else 'missing'} but the "
                f"store was created with two_dates={self.two_dates}"
            )
        stored = _quantize(refl, self.scale_factor, "reflectance")
        stored_t2 = None
        if reflectance_t2 is not None:
            refl_t2 = np.asarray(reflectance_t2)
            if refl_t2.shape != refl.shape:
                raise InputError(
                    f"reflectance_t2 has shape {refl_t2.shape}; expected {refl.shape} like "
                    "reflectance"
                )
            stored_t2 = _quantize(refl_t2, self.scale_factor, "reflectance_t2")

        loc = None
        if location is not None:
            loc = np.asarray(location)
            if loc.shape != (n, 2) or not np.issubdtype(loc.dtype, np.integer):
                raise InputError(
                    f"location has shape {loc.shape} and dtype {loc.dtype}; expected integer "
                    f"({n}, 2)"
                )

        sl = slice(start, start + n)
        if loc is not None:
            self._location[sl] = loc.astype(np.int64)
        self._refl[sl] = stored
        if stored_t2 is not None and self._refl_t2 is not None:
            self._refl_t2[sl] = stored_t2
        self._landcover[sl] = lc.astype(np.int16)
        self._croptype[sl] = ct.astype(np.int16)
        self._split[sl] = sp.astype(np.int8)
        self._written[sl] = True
        train = sp == SPLITS["train"]
        if train.any():
            self._moments.update(stored[train], self.scale_factor)

    def close(self) -> Path:
        """Finish the store (split, patch labels, band statistics) and move it into place.

        Returns:
            The store path.

        Raises:
            InputError: Some patches were never written, or no patch is in the train split
                (the band statistics are defined on it).
        """
        if self._closed:
            return self.path
        try:
            missing = np.flatnonzero(~self._written)
            if missing.size:
                raise InputError(
                    f"patch store {self.path}: {missing.size} of {self.n_patches} patches were "
                    f"never written (first: {int(missing[0])})"
                )
            if not (self._split == SPLITS["train"]).any():
                raise InputError(
                    f"patch store {self.path} has no patch in the train split; the per-band "
                    "mean and standard deviation are computed on it"
                )
            n = self.n_patches
            split = self._root.create_array(
                "split",
                shape=(n,),
                dtype="int8",
                dimension_names=("patch",),
                attributes={"long_name": "split", "flag_meanings": "train val test"},
            )
            split[:] = self._split
            label = _majority(np.asarray(self._landcover[:]), len(self.landcover_classes))
            lab = self._root.create_array(
                "landcover_label",
                shape=(n,),
                dtype="int16",
                dimension_names=("patch",),
                attributes={"long_name": "patch-level (majority) land-cover class"},
            )
            lab[:] = label
            mean, std = self._moments.result()
            for name, values, long_name in (
                ("band_mean", mean, "mean reflectance of the train split"),
                ("band_std", std, "standard deviation of reflectance over the train split"),
            ):
                arr = self._root.create_array(
                    name,
                    shape=(self.n_bands,),
                    dtype="float32",
                    dimension_names=("band",),
                    attributes={"units": "1", "long_name": long_name},
                )
                arr[:] = values
            swap_in(self._tmp, self.path)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.path

    def abort(self) -> None:
        """Delete the partial store; whatever was at ``path`` stays as it was."""
        self._closed = True
        shutil.rmtree(self._tmp, ignore_errors=True)

    def __enter__(self) -> PatchStoreWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_patch_store(
    path: str | os.PathLike[str],
    *,
    reflectance: np.ndarray,
    landcover: np.ndarray,
    croptype: np.ndarray,
    split: np.ndarray | Sequence[int],
    wavelength_nm: np.ndarray | Sequence[float],
    fwhm_nm: np.ndarray | Sequence[float],
    sensor: str,
    landcover_classes: Sequence[str],
    croptype_classes: Sequence[str],
    reflectance_t2: np.ndarray | None = None,
    attrs: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    scale_factor: float = SCALE_FACTOR,
    location: np.ndarray | None = None,
) -> Path:
    """Write a whole patch store in one call (see :class:`PatchStoreWriter` for streaming).

    Args:
        path: Store folder.
        reflectance: (N, H, W, B) float reflectance (NaN = missing) or int16 stored values.
        landcover: (N, H, W) land-cover class indices, -1 unlabeled.
        croptype: (N, H, W) crop-type indices, -1 not cropland.
        split: (N,) split codes: 0 train, 1 val, 2 test.
        wavelength_nm: (B,) band centres.
        fwhm_nm: (B,) band widths.
        sensor: Sensor name.
        landcover_classes: Land-cover class names.
        croptype_classes: Crop-type names.
        reflectance_t2: Optional second date, shape of ``reflectance``.
        attrs: Extra group attributes (``seed``, ``generator``, ...).
        overwrite: Replace an existing store.
        scale_factor: Reflectance per stored integer.
        location: Optional (N, 2) top-left pixel of each patch on its source mosaic.

    Returns:
        The store path.

    Raises:
        StoreExistsError: ``path`` exists and ``overwrite`` is False.
        InputError: Shapes, dtypes or label ranges do not fit.
    """
    refl = np.asarray(reflectance)
    if refl.ndim != 4 or refl.shape[1] != refl.shape[2]:
        raise InputError(
            f"reflectance has shape {refl.shape}; expected (N, H, W, B) with square patches H = W"
        )
    writer = PatchStoreWriter(
        path,
        n_patches=refl.shape[0],
        patch_size=refl.shape[1],
        wavelength_nm=wavelength_nm,
        fwhm_nm=fwhm_nm,
        sensor=sensor,
        landcover_classes=landcover_classes,
        croptype_classes=croptype_classes,
        two_dates=reflectance_t2 is not None,
        scale_factor=scale_factor,
        attrs=attrs,
        overwrite=overwrite,
    )
    with writer:
        writer.write(
            0,
            reflectance=refl,
            landcover=np.asarray(landcover),
            croptype=np.asarray(croptype),
            split=np.asarray(split),
            reflectance_t2=reflectance_t2,
            location=location,
        )
    return writer.path


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _array(root: zarr.Group, name: str) -> zarr.Array:
    arr = root[name]
    assert isinstance(arr, zarr.Array)
    return arr


class PatchStore:
    """Read-only view of a patch store (open with :meth:`PatchStore.open`).

    Attributes:
        path: Store folder.
        n_patches: Number of patches N.
        patch_size: Patch side H = W, pixels.
        n_bands: Number of bands B.
        sensor: Sensor name.
        scale_factor: Reflectance per stored integer.
        wavelength_nm: (B,) float32 band centres.
        fwhm_nm: (B,) float32 band widths.
        band_mean: (B,) float32 train-split mean reflectance.
        band_std: (B,) float32 train-split standard deviation.
        landcover_classes: Land-cover class names.
        croptype_classes: Crop-type names.
        attrs: All group attributes.
    """

    def __init__(self, path: Path, root: zarr.Group) -> None:
        self.path = path
        self._root = root
        self.attrs: dict[str, Any] = dict(root.attrs)
        refl = root["reflectance"]
        assert isinstance(refl, zarr.Array)
        self._refl = refl
        self._refl_t2: zarr.Array | None = None
        self._reader_pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._readers: dict[str, Any] = {}
        if "reflectance_t2" in root:
            t2 = root["reflectance_t2"]
            assert isinstance(t2, zarr.Array)
            self._refl_t2 = t2
        self.n_patches, self.patch_size, _, self.n_bands = (int(v) for v in refl.shape)
        self.sensor = str(self.attrs["sensor"])
        self.scale_factor = float(self.attrs["scale_factor"])
        self.landcover_classes = tuple(str(c) for c in self.attrs["landcover_classes"])
        self.croptype_classes = tuple(str(c) for c in self.attrs["croptype_classes"])
        self.wavelength_nm = np.asarray(_array(root, "wavelength_nm")[:], np.float32)
        self.fwhm_nm = np.asarray(_array(root, "fwhm_nm")[:], np.float32)
        self.band_mean = np.asarray(_array(root, "band_mean")[:], np.float32)
        self.band_std = np.asarray(_array(root, "band_std")[:], np.float32)
        self.split = np.asarray(_array(root, "split")[:], np.int8)
        # Normalisation as one multiply-add on the stored integers: x = v * a + b.
        self._norm_a = (self.scale_factor / self.band_std).astype(np.float32)
        self._norm_b = (-self.band_mean / self.band_std).astype(np.float32)

    @property
    def normalization(self) -> tuple[np.ndarray, np.ndarray]:
        """``(a, b)``, float32 per band: the normalised value of a stored integer ``v`` is
        ``v * a + b`` (0 where ``v`` is the no-data value); see :func:`normalize_raw`."""
        return self._norm_a, self._norm_b

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> PatchStore:
        """Open and validate a patch store.

        Raises:
            FileFormatError: The folder is missing or not a zarr group, or an array or
                attribute is missing or has a shape that does not fit the others (the message
                names it).
        """
        path = Path(path)
        if not _is_zarr_group(path):
            raise FileFormatError(
                f"patch store {path} {'is not a zarr store' if path.exists() else 'not found'}; "
                "expected a folder written by `jaxgeo hsi make-dataset` or write_patch_store"
            )
        try:
            root = zarr.open_group(path, mode="r", zarr_format=3)
        except Exception as err:  # zarr raises several kinds for a damaged group
            raise FileFormatError(f"patch store {path} cannot be opened as zarr v3: {err}") from err
        for name, rank in _REQUIRED.items():
            if name not in root:
                raise FileFormatError(
                    f"patch store {path} has no array {name!r}; expected the arrays "
                    f"{sorted(_REQUIRED)} (see jaxgeo.hsi.store)"
                )
            arr = root[name]
            if not isinstance(arr, zarr.Array) or arr.ndim != rank:
                raise FileFormatError(
                    f"patch store {path}: {name!r} should be an array of rank {rank}"
                )
        for key in _REQUIRED_ATTRS:
            if key not in root.attrs:
                raise FileFormatError(
                    f"patch store {path} has no attribute {key!r}; expected {list(_REQUIRED_ATTRS)}"
                )
        n, h, w, b = root["reflectance"].shape  # type: ignore[union-attr]
        expected = {
            "reflectance_t2": (n, h, w, b),
            "landcover": (n, h, w),
            "croptype": (n, h, w),
            "landcover_label": (n,),
            "split": (n,),
            "wavelength_nm": (b,),
            "fwhm_nm": (b,),
            "band_mean": (b,),
            "band_std": (b,),
        }
        for name, shape in expected.items():
            if name in root and tuple(root[name].shape) != shape:  # type: ignore[union-attr]
                raise FileFormatError(
                    f"patch store {path}: {name!r} has shape {tuple(root[name].shape)}; "  # type: ignore[union-attr]
                    f"expected {shape} to match reflectance {(n, h, w, b)}"
                )
        if h != w:
            raise FileFormatError(f"patch store {path}: patches are {h}×{w}; expected square")
        return cls(path, root)

    def __len__(self) -> int:
        return self.n_patches

    def __repr__(self) -> str:
        return (
            f"PatchStore({str(self.path)!r}, sensor={self.sensor!r}, patches={self.n_patches}, "
            f"size={self.patch_size}, bands={self.n_bands}, two_dates={self.has_second_date})"
        )

    @property
    def has_second_date(self) -> bool:
        """Whether the store holds ``reflectance_t2``."""
        return self._refl_t2 is not None

    def indices(self, split: str) -> np.ndarray:
        """Patch indices (ascending int64) of ``"train"``, ``"val"`` or ``"test"``."""
        if split not in SPLITS:
            raise InputError(f"split {split!r} is unknown; expected one of {list(SPLITS)}")
        return np.flatnonzero(self.split == SPLITS[split]).astype(np.int64)

    def read_raw(self, idx: np.ndarray | Sequence[int], *, date: int = 1) -> np.ndarray:
        """Stored int16 values of patches ``idx``, shape (n, H, W, B)."""
        arr = self._date_array(date)
        order = self._idx(idx)
        out = np.empty((order.size, *arr.shape[1:]), np.int16)
        # One basic selection per patch (one chunk each): zarr's orthogonal indexing is ~4×
        # slower here. Chunks of a batch are read concurrently (decompression drops the GIL).
        read_chunk = self._chunk_reader(arr)
        if order.size <= 1:
            for k, i in enumerate(order):
                out[k] = read_chunk(int(i))
            return out

        def fetch(k: int) -> None:
            out[k] = read_chunk(int(order[k]))

        list(self._pool().map(fetch, range(order.size)))
        return out

    def read(
        self, idx: np.ndarray | Sequence[int], *, normalize: bool = True, date: int = 1
    ) -> np.ndarray:
        """Patches as float32 (n, H, W, B), channels-last.

        Args:
            idx: Patch indices.
            normalize: Subtract the train-split band mean and divide by its standard
                deviation; missing values become 0 (the mean). Without it, reflectance
                (value × scale_factor) with missing values as NaN.
            date: 1 for ``reflectance``, 2 for ``reflectance_t2``.
        """
        raw = self.read_raw(idx, date=date)
        x = raw.astype(np.float32)
        if normalize:
            x *= self._norm_a
            x += self._norm_b
            fill = np.float32(0.0)
        else:
            x *= np.float32(self.scale_factor)
            fill = np.float32(np.nan)
        missing = raw == NODATA
        if missing.any():
            x[missing] = fill
        return x

    def _chunk_reader(self, arr: zarr.Array) -> Any:
        """``read(i) -> patch i`` (int16 ``(H, W, B)``).

        For this module's own layout on a local disk (one chunk per patch, bytes + Blosc, no
        sharding) the chunk file is read and decompressed here: zarr's per-chunk path goes
        through its event loop, which tops out at ~500 patches/s on a 16-core GPU host,
        against ~1,700 for this (benchmarks/hsi_pipeline_variants.py). Any other layout, a remote
        store or a chunk never written (the fill value) is read by zarr.
        """
        cached = self._readers.get(arr.path)
        if cached is not None:
            return cached

        def by_zarr(i: int) -> np.ndarray:
            return np.asarray(arr[i])

        reader: Any = by_zarr
        meta = arr.metadata
        codecs: tuple[Any, ...] = tuple(getattr(meta, "codecs", ()))
        root = getattr(arr.store, "root", None)
        if (
            isinstance(arr.store, zarr.storage.LocalStore)
            and root is not None
            and arr.dtype == np.dtype(np.int16)
            and tuple(arr.chunks) == (1, *arr.shape[1:])
            and len(codecs) == 2
            and isinstance(codecs[0], BytesCodec)
            and codecs[0].endian is not None
            and codecs[0].endian.value == "little"
            and isinstance(codecs[1], BloscCodec)
        ):
            from numcodecs import blosc

            base = Path(root) / arr.path
            encode = meta.chunk_key_encoding.encode_chunk_key  # type: ignore[union-attr]
            tail = (0,) * (len(arr.shape) - 1)
            shape = tuple(arr.shape[1:])

            def direct(i: int) -> np.ndarray:
                try:
                    data = (base / encode((i, *tail))).read_bytes()
                except FileNotFoundError:
                    return by_zarr(i)
                return np.frombuffer(blosc.decompress(data), "<i2").reshape(shape)

            reader = direct
        self._readers[arr.path] = reader
        return reader

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._reader_pool is None:
            # Chunk decompression drops the GIL: one reader per core, so a GPU host's cores
            # keep up with its training step.
            self._reader_pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=min(32, os.cpu_count() or 4), thread_name_prefix="hsi-chunk"
            )
        return self._reader_pool

    def labels(self, idx: np.ndarray | Sequence[int], task: str) -> np.ndarray:
        """Labels of patches ``idx`` as int32.

        Args:
            idx: Patch indices.
            task: ``"landcover"`` (n, H, W), ``"landcover_patch"`` (n,) majority class, or
                ``"croptype"`` (n, H, W); -1 marks unlabeled pixels or patches.
        """
        name = {
            "landcover": "landcover",
            "landcover_patch": "landcover_label",
            "croptype": "croptype",
        }.get(task)
        if name is None:
            raise InputError(f"task {task!r} is unknown; expected one of {list(TASKS)}")
        arr = self._root[name]
        assert isinstance(arr, zarr.Array)
        return np.asarray(arr.oindex[self._idx(idx)]).astype(np.int32)

    def n_classes(self, task: str) -> int:
        """Number of classes of a task (``landcover*`` or ``croptype``)."""
        if task not in TASKS:
            raise InputError(f"task {task!r} is unknown; expected one of {list(TASKS)}")
        return len(self.croptype_classes if task == "croptype" else self.landcover_classes)

    def batches(
        self,
        split: str,
        batch_size: int,
        *,
        seed: int,
        epoch: int,
        drop_last: bool = True,
        with_t2: bool = False,
        task: str | None = None,
        shuffle: bool | None = None,
        normalize: bool = True,
        raw: bool = False,
        prefetch: int = 2,
    ) -> Iterator[dict[str, np.ndarray]]:
        """Batches of one epoch, read ahead in a background thread.

        Args:
            split: ``"train"``, ``"val"`` or ``"test"``.
            batch_size: Patches per batch.
            seed: Shuffling seed; the order is a function of (seed, epoch) only, so a resumed
                run sees the same batches.
            epoch: Epoch number.
            drop_last: Drop the last incomplete batch.
            with_t2: Add ``"x2"``, the second date of the same patches (the store must have it).
            task: Add ``"y"``, the labels of this task (see :meth:`labels`).
            shuffle: Shuffle the order; by default only the train split is shuffled.
            normalize: Normalise with the stored band statistics (see :meth:`read`).
            raw: Yield the stored int16 values instead (``normalize`` is then ignored): the
                consumer normalises them on its device with :func:`normalize_raw` and
                :attr:`normalization`, which halves the bytes sent there and leaves the host
                only the decompression (what a GPU's input pipeline needs).
            prefetch: Batches read ahead.

        Yields:
            ``{"x": float32 (n, H, W, B), "idx": int64 (n,)}`` plus ``"x2"`` and ``"y"`` as asked
            (``"x"``, ``"x2"`` int16 with ``raw``).
        """
        if batch_size < 1:
            raise InputError(f"batch_size={batch_size}; expected >= 1")
        if with_t2 and not self.has_second_date:
            raise InputError(
                f"patch store {self.path} has no second date (reflectance_t2); make it with "
                "--two-dates or do not ask for multi-temporal pairs"
            )
        if task is not None and task not in TASKS:
            raise InputError(f"task {task!r} is unknown; expected one of {list(TASKS)}")
        order = self.indices(split)
        if split == "train" if shuffle is None else shuffle:
            order = np.random.default_rng([seed, epoch]).permutation(order)
        n_full, rest = divmod(order.size, batch_size)
        starts = range(
            0, (n_full if drop_last or rest == 0 else n_full + 1) * batch_size, batch_size
        )

        def load(start: int) -> dict[str, np.ndarray]:
            idx = order[start : start + batch_size]
            if raw:
                batch = {"x": self.read_raw(idx), "idx": idx}
                if with_t2:
                    batch["x2"] = self.read_raw(idx, date=2)
            else:
                batch = {"x": self.read(idx, normalize=normalize), "idx": idx}
                if with_t2:
                    batch["x2"] = self.read(idx, normalize=normalize, date=2)
            if task is not None:
                batch["y"] = self.labels(idx, task)
            return batch

        # Two batches in flight keep the chunk readers busy across batch boundaries.
        pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(1, min(2, prefetch)), thread_name_prefix="hsi-read"
        )
        pending: deque[concurrent.futures.Future[dict[str, np.ndarray]]] = deque()
        it = iter(starts)
        try:
            for start in it:
                pending.append(pool.submit(load, start))
                if len(pending) > max(prefetch, 0):
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for fut in pending:
                fut.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    # -- helpers ------------------------------------------------------------------------------

    def _date_array(self, date: int) -> zarr.Array:
        if date == 1:
            return self._refl
        if date == 2:
            if self._refl_t2 is None:
                raise InputError(
                    f"patch store {self.path} has no second date (reflectance_t2); date=2 "
                    "needs a store made with --two-dates"
                )
            return self._refl_t2
        raise InputError(f"date={date}; expected 1 or 2")

    def _idx(self, idx: np.ndarray | Sequence[int]) -> np.ndarray:
        out = np.asarray(idx, np.int64).reshape(-1)
        if out.size and (out.min() < 0 or out.max() >= self.n_patches):
            raise InputError(
                f"patch indices in [{out.min()}, {out.max()}] fall outside the store's "
                f"{self.n_patches} patches"
            )
        return out


def normalize_raw(raw: Any, a: Any, b: Any) -> Any:
    """Stored int16 patches to normalised float32, as :meth:`PatchStore.read` does, in JAX
    (inside a jitted step, on the device): ``raw * a + b``, 0 at the no-data value.

    Args:
        raw: int16 ``(..., B)``.
        a, b: :attr:`PatchStore.normalization`, ``(B,)``.
    """
    import jax.numpy as jnp

    x = raw.astype(jnp.float32) * jnp.asarray(a, jnp.float32) + jnp.asarray(b, jnp.float32)
    return jnp.where(raw == NODATA, jnp.float32(0.0), x)


# Colours of the label classes in every plot (index = class index); the dataset and the
# fine-tuning plots share them so a class keeps its colour across figures.
LANDCOVER_COLORS: tuple[str, ...] = (
    "#1f5fbf", "#1b6e2a", "#9acd32", "#e3c64b", "#9a9a9a", "#a0522d", "#6a3d9a",
)  # fmt: skip
CROPTYPE_COLORS: tuple[str, ...] = (
    "#f0c419",
    "#d95f02",
    "#1b9e77",
    "#7570b3",
    "#e7298a",
    "#66a61e",
)
