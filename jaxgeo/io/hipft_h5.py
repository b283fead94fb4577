"""HipFT / PSI HDF5 maps: read and write in exactly the layout HipFT uses.

Layout (HipFT's ``rdh5``/``wrh5``, written through the Fortran HDF5 API, seen here as h5py sees
it, i.e. with the Fortran dimension order reversed):

- dataset ``Data`` of shape ``(n_theta, n_phi)``, or ``(n_realization, n_theta, n_phi)`` for an
  ensemble, float32 or float64, contiguous;
- dimension-scale datasets ``dim1`` = φ (n_phi,) in [0, 2π] with the periodic end point,
  ``dim2`` = θ colatitude (n_theta,) in [0, π] with both poles, ``dim3`` = realization index
  (1, 2, ...) for 3-D maps, in the data's precision;
- scale ``dimK`` attached to h5py dimension ``K-1`` of ``Data``, labelled ``dimK``. (The Fortran
  API does not reverse the attachment index, so as h5py sees it ``dim1``, of length n_phi, sits
  on the axis of length n_theta. HipFT's reader does not look at attachments: it takes the
  root's members in name order, ``Data`` then ``dim1``, ``dim2``, ``dim3``, and requires exactly
  one scale per dimension and nothing else, which is why the writer puts nothing else there.)
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from jaxtyping import Float

from jaxgeo.errors import FileFormatError, InputError, StoreExistsError

__all__ = ["HipftMap", "read_hipft_map", "read_psi_h5", "write_hipft_map"]

# Scales in float32 files carry float32 rounding of 2π and π (6.2831855 > 2π); allow that and
# a little more, but nothing that could be a different grid.
_ENDPOINT_TOL = 1e-5
_DATA = "Data"
_SCALES = ("dim1", "dim2", "dim3")  # φ, θ, realization


@dataclasses.dataclass(frozen=True, eq=False)
class HipftMap:
    """A HipFT map: Br (or any field) on HipFT's θ–φ grid, one or more realizations.

    Attributes:
        data: Values, float64, shape ``(n_realization, n_theta, n_phi)`` (a 2-D file gives
            ``n_realization = 1``).
        phi: Longitudes in radians, ascending over [0, 2π] with the periodic end point.
        theta: Colatitudes in radians, ascending over [0, π], both poles included.
        realization: Realization indices as stored in ``dim3`` (``[1.]`` for a 2-D file).
        ndim: Rank of ``Data`` in the file, 2 or 3.
        file_dtype: Precision of ``Data`` in the file (float32 or float64).
    """

    data: Float[np.ndarray, "realization theta phi"]
    phi: Float[np.ndarray, " phi"]
    theta: Float[np.ndarray, " theta"]
    realization: Float[np.ndarray, " realization"]
    ndim: int
    file_dtype: np.dtype = dataclasses.field(default_factory=lambda: np.dtype(np.float64))

    def __post_init__(self) -> None:
        n_r, n_t, n_p = np.shape(self.data) if np.ndim(self.data) == 3 else (None, None, None)
        if n_r is None:
            raise InputError(
                f"HipftMap.data must have shape (realization, theta, phi), got {np.shape(self.data)}"
            )
        for name, arr, n in (
            ("phi", self.phi, n_p),
            ("theta", self.theta, n_t),
            ("realization", self.realization, n_r),
        ):
            if np.shape(arr) != (n,):
                raise InputError(
                    f"HipftMap.{name} must have shape ({n},) to match data {np.shape(self.data)}, got {np.shape(arr)}"
                )
        if self.ndim not in (2, 3) or (self.ndim == 2 and n_r != 1):
            raise InputError(
                f"HipftMap.ndim must be 3, or 2 with one realization; got ndim={self.ndim} with {n_r} realizations"
            )

    @property
    def n_theta(self) -> int:
        return int(self.theta.shape[0])

    @property
    def n_phi(self) -> int:
        return int(self.phi.shape[0])

    @property
    def n_realization(self) -> int:
        return int(self.realization.shape[0])


def _check_axis(values: np.ndarray, name: str, upper: float, upper_text: str) -> str | None:
    """Why an axis is not ascending over [0, upper] with both end points, or None if it is."""
    if values.ndim != 1 or values.size < 2:
        return f"{name} must be a 1-D axis of at least 2 points, got shape {values.shape}"
    if not np.all(np.isfinite(values)):
        return f"{name} holds NaN or inf"
    if not np.all(np.diff(values) > 0):
        return f"{name} must be strictly ascending"
    if abs(values[0]) > _ENDPOINT_TOL or abs(values[-1] - upper) > _ENDPOINT_TOL:
        return (
            f"{name} must span [0, {upper_text}] with both end points, got "
            f"[{values[0]:.9g}, {values[-1]:.9g}]"
        )
    return None


def read_psi_h5(
    path: str | os.PathLike[str],
    *,
    what: str = "HipFT map",
    scales: bool = True,
    ranks: tuple[int, ...] = (2, 3),
) -> tuple[np.ndarray, list[np.ndarray], np.dtype]:
    """The ``Data`` set (float64) and its scales of a PSI/HipFT HDF5 file, layout-checked only.

    The one HDF5 reader of every HipFT file kind (maps, source maps, assimilation maps, flow
    files); callers check the grid they need (this checks no axis range).

    Args:
        path: the file.
        what: what the file is, for the error messages (e.g. ``"flow file"``).
        scales: require a scale ``dimK`` (of matching length) for every axis of ``Data``;
            ``False`` returns an empty list (flow files are checked by shape alone).
        ranks: the ranks of ``Data`` accepted.

    Returns:
        ``(data, [dim1, dim2, (dim3)], file_dtype)``: ``data`` as h5py shows it (the Fortran
        axes reversed, so dim1 = φ is the last axis), float64.

    Raises:
        FileFormatError: naming the file, when it is missing, not HDF5 or unreadable, has no
            float ``Data`` dataset of an accepted rank, or (with ``scales``) lacks a scale or
            has one of the wrong length.
    """
    path = Path(path)
    expected = "an HDF5 file with dataset 'Data'" + (
        " and scales 'dim1' (phi), 'dim2' (theta)" if scales else ""
    )
    if not path.is_file():
        raise FileFormatError(
            f"{what} {path} does not exist (or is not a file); expected {expected}"
        )
    if not h5py.is_hdf5(path):
        raise FileFormatError(f"{what} {path} is not an HDF5 file; expected {expected}")
    try:
        with h5py.File(path, "r") as f:
            if _DATA not in f or not isinstance(f[_DATA], h5py.Dataset):
                raise FileFormatError(
                    f"{what} {path} has no dataset 'Data' (members: {sorted(f.keys())}); expected {expected}"
                )
            dset = f[_DATA]
            if dset.ndim not in ranks:
                shapes = " or ".join(f"{r}" for r in ranks)
                raise FileFormatError(
                    f"{what} {path}: 'Data' has rank {dset.ndim} (shape {dset.shape}); expected "
                    f"rank {shapes} ((realization,) theta, phi)"
                )
            if not np.issubdtype(dset.dtype, np.floating):
                raise FileFormatError(
                    f"{what} {path}: 'Data' has dtype {dset.dtype}; expected float32 or float64"
                )
            file_dtype = np.dtype(dset.dtype)
            data = np.asarray(dset[()], dtype=np.float64)
            found: list[np.ndarray] = []
            # Data's h5py axes, last first: dim1 = phi is the fastest (Fortran first) axis.
            for name, length in zip(_SCALES, reversed(dset.shape), strict=False) if scales else ():
                if name not in f or not isinstance(f[name], h5py.Dataset):
                    raise FileFormatError(
                        f"{what} {path} has no scale dataset {name!r} for its {dset.ndim}-D 'Data'; expected {expected}"
                    )
                scale = np.asarray(f[name][()], dtype=np.float64)
                if scale.shape != (length,):
                    raise FileFormatError(
                        f"{what} {path}: scale {name!r} has shape {scale.shape} but 'Data' {dset.shape} needs ({length},)"
                    )
                found.append(scale)
    except OSError as err:  # h5py's error for unreadable or corrupt files
        raise FileFormatError(f"{what} {path} cannot be read ({err}); expected {expected}") from err
    return data, found, file_dtype


def read_hipft_map(path: str | os.PathLike[str], *, require_finite: bool = True) -> HipftMap:
    """Read a HipFT/PSI HDF5 map (2-D or 3-D) without interpolation.

    Args:
        path: HDF5 file with ``Data`` and scales ``dim1`` (φ), ``dim2`` (θ), ``dim3``.
        require_finite: Refuse NaN or infinite values in ``Data``.

    Returns:
        The map, values and axes converted to float64 (the scales exactly as stored).

    Raises:
        FileFormatError: Naming the file, when it is missing, not HDF5, has no ``Data`` or a
            ``Data`` of rank other than 2 or 3, lacks a scale, has scale lengths not matching
            ``Data``, has θ not ascending over [0, π] with both poles or φ not ascending over
            [0, 2π] with the end point, or (with ``require_finite``) NaN/inf values.
    """
    path = Path(path)
    data, scales, file_dtype = read_psi_h5(path)
    phi, theta = scales[0], scales[1]
    for axis, name, upper, text in (
        (theta, "theta (dim2)", np.pi, "pi"),
        (phi, "phi (dim1)", 2 * np.pi, "2*pi"),
    ):
        problem = _check_axis(axis, name, upper, text)
        if problem:
            raise FileFormatError(f"HipFT map {path}: {problem}")
    if require_finite:
        bad = ~np.isfinite(data)
        if bad.any():
            raise FileFormatError(
                f"HipFT map {path}: 'Data' has {int(bad.sum())} NaN/inf value(s), the first at "
                f"index {tuple(int(i) for i in np.argwhere(bad)[0])}; expected all finite"
            )
    if data.ndim == 2:
        return HipftMap(data[None], phi, theta, np.array([1.0]), 2, file_dtype)
    return HipftMap(data, phi, theta, scales[2], 3, file_dtype)


def write_hipft_map(
    path: str | os.PathLike[str],
    data: Any,
    phi: Any,
    theta: Any,
    *,
    realization: Any = None,
    dtype: Any = np.float32,
    overwrite: bool = False,
) -> Path:
    """Write a map in HipFT's layout, atomically.

    One realization with ``realization=None`` gives a 2-D file (what HipFT reads as an initial
    map); otherwise a 3-D file with ``dim3`` = ``realization`` (default 1, 2, ..., n).

    Args:
        path: Output ``.h5`` file.
        data: Values, ``(n_theta, n_phi)`` or ``(n_realization, n_theta, n_phi)``, finite.
        phi: ``(n_phi,)`` radians, ascending over [0, 2π] with the periodic end point.
        theta: ``(n_theta,)`` colatitudes, ascending over [0, π] with both poles.
        realization: ``(n_realization,)`` indices for ``dim3``, or None.
        dtype: Storage precision of ``Data`` and scales, float32 (HipFT's input maps) or float64.
        overwrite: Replace an existing file.

    Returns:
        The path written.

    Raises:
        StoreExistsError: The file exists and ``overwrite`` is False (the file is untouched).
        InputError: Shapes, axes, dtype or values are not as above (nothing is written).
    """
    path = Path(path)
    dtype = np.dtype(dtype)
    if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise InputError(f"HipFT map {path}: dtype must be float32 or float64, got {dtype}")
    values = np.asarray(data, dtype=np.float64)
    phi = np.asarray(phi, dtype=np.float64)
    theta = np.asarray(theta, dtype=np.float64)
    if values.ndim == 2:
        values = values[None]
    if values.ndim != 3:
        raise InputError(
            f"HipFT map {path}: data must have shape (n_theta, n_phi) or (n_realization, n_theta, n_phi), got {np.shape(data)}"
        )
    n_r, n_t, n_p = values.shape
    for axis, name, upper, text in ((theta, "theta", np.pi, "pi"), (phi, "phi", 2 * np.pi, "2*pi")):
        problem = _check_axis(axis, name, upper, text)
        if problem:
            raise InputError(f"HipFT map {path}: {problem}")
    if phi.shape != (n_p,) or theta.shape != (n_t,):
        raise InputError(
            f"HipFT map {path}: data {values.shape} needs phi ({n_p},) and theta ({n_t},), got {phi.shape} and {theta.shape}"
        )
    three_d = realization is not None or n_r > 1
    if three_d:
        real = (
            np.arange(1.0, n_r + 1.0)
            if realization is None
            else np.asarray(realization, dtype=np.float64)
        )
        if real.shape != (n_r,):
            raise InputError(
                f"HipFT map {path}: realization must have shape ({n_r},), got {real.shape}"
            )
    bad = ~np.isfinite(values)
    if bad.any():
        raise InputError(
            f"HipFT map {path}: data has {int(bad.sum())} NaN/inf value(s); expected all finite"
        )
    if os.path.lexists(path):
        if not overwrite:
            raise StoreExistsError(
                f"HipFT map {path} already exists; pass --overwrite (overwrite=True) to replace it"
            )
        if not path.is_file():
            raise StoreExistsError(f"{path} exists and is not a file; refusing to replace it")

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
    try:
        with h5py.File(tmp, "w") as f:
            dset = f.create_dataset(_DATA, data=(values if three_d else values[0]).astype(dtype))
            axes = [phi, theta] + ([real] if three_d else [])
            for k, (name, axis) in enumerate(zip(_SCALES, axes, strict=False)):
                scale = f.create_dataset(name, data=axis.astype(dtype))
                scale.make_scale(name)
                # Index k, not ndim-1-k: what HipFT's Fortran writer produces (module docstring).
                dset.dims[k].attach_scale(scale)
                dset.dims[k].label = name
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
