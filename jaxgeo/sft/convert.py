"""HipFT/PSI HDF5 maps <-> jaxgeo zarr stores (``jaxgeo sft convert``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from ..errors import InputError
from ..io import create_store, open_store, read_hipft_map, write_hipft_map
from .grid import SftGrid


def _is_h5(path: Path) -> bool:
    return path.suffix.lower() in (".h5", ".hdf", ".hdf5")


def h5_to_store(src: Path, dst: Path, *, overwrite: bool = False) -> dict[str, Any]:
    """A HipFT map (2-D or 3-D) as a one-time store in the run-store layout.

    The map is stored as it is in the file (no pole averaging); the periodic end-point column
    is dropped (it duplicates the first).
    """
    m = read_hipft_map(src)
    grid = SftGrid.from_hipft_scales(m.phi, m.theta)
    data = m.data[:, ::-1, :-1]  # north-first -> lat ascending; drop the periodic column
    ds = xr.Dataset(
        {
            "br": (
                ("realization", "time", "lat", "lon"),
                data[:, None],
                {"units": "G", "long_name": "radial magnetic field"},
            )
        },
        coords={
            "realization": np.arange(m.n_realization),
            "time": ("time", np.zeros(1), {"units": "hours", "long_name": "time since start"}),
            "lat": ("lat", grid.lat_deg[::-1].copy(), {"units": "degrees_north"}),
            "lon": ("lon", grid.lon_deg.copy(), {"units": "degrees_east"}),
        },
    )
    create_store(dst, ds, append_dim="time", overwrite=overwrite, attrs={"source": str(src)})
    return {"src": str(src), "dst": str(dst), "shape": list(data.shape)}


def store_to_h5(
    src: Path, dst: Path, *, time_index: int = -1, overwrite: bool = False
) -> dict[str, Any]:
    """One stored time of a run store as a HipFT map (3-D when several realizations)."""
    ds = open_store(src)
    if "br" not in ds:
        raise InputError(f"store {src} has no 'br' variable to convert")
    n_t = ds.sizes["time"]
    if not -n_t <= time_index < n_t:
        raise InputError(
            f"--time-index {time_index} is out of range for store {src} with {n_t} stored times"
        )
    br = np.asarray(ds["br"].isel(time=time_index).values, dtype=np.float64)  # (R, lat, lon)
    grid = SftGrid.from_store_coords(ds["lat"].values, ds["lon"].values)
    data = br[:, ::-1, :]
    data = np.concatenate([data, data[..., :1]], axis=-1)
    n_r = data.shape[0]
    write_hipft_map(
        dst,
        data[0] if n_r == 1 else data,
        grid.hipft_phi(),
        grid.theta,
        realization=None if n_r == 1 else np.arange(1, n_r + 1, dtype=np.float64),
        dtype=np.float32 if ds["br"].dtype == np.float32 else np.float64,
        overwrite=overwrite,
    )
    return {
        "src": str(src),
        "dst": str(dst),
        "time_hours": float(ds["time"].values[time_index]),
        "realizations": n_r,
    }


def convert(
    src: Path, dst: Path, *, overwrite: bool = False, time_index: int = -1
) -> dict[str, Any]:
    """Convert between the two formats, choosing the direction from the paths."""
    if not src.exists():
        raise InputError(f"input {src} does not exist")
    if _is_h5(src) and not _is_h5(dst):
        return h5_to_store(src, dst, overwrite=overwrite)
    if src.is_dir() and _is_h5(dst):
        return store_to_h5(src, dst, time_index=time_index, overwrite=overwrite)
    raise InputError(
        f"cannot convert {src} -> {dst}: give a HipFT .h5 map and a .zarr store path, or a store and an .h5 path"
    )
