"""xarray Datasets in zarr v3 stores, with crash-safe appends.

Every jaxgeo output is an ``xarray.Dataset`` in a zarr v3 directory store (no consolidated
metadata). A store grows along one or more *append dimensions* (``time`` for maps,
``history_time`` for history variables), each independently.

Crash safety. zarr writes every file atomically (temporary file, then rename), but an append
touches many files: the metadata (shape) and chunks of every variable along the dimension. A
process killed half way would leave some variables longer than others, which xarray refuses to
open, or a slice whose chunks are missing, which reads as the fill value. So the store keeps,
in its group attributes, the *committed* length of every dimension (``jaxgeo_committed``).
:func:`append` grows and writes each variable first and commits the new length last, by
replacing the group's ``zarr.json`` in one ``os.replace``. Readers (:func:`open_store`) trim
every variable to the committed lengths, so whatever an interrupted append wrote is invisible;
the next append overwrites it.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
import xarray as xr
import zarr

from jaxgeo._version import __version__
from jaxgeo.errors import FileFormatError, InputError, StoreExistsError

__all__ = [
    "COMMITTED_ATTR",
    "append",
    "check_finite",
    "committed_sizes",
    "create_store",
    "open_store",
    "read_attrs",
    "swap_in",
]

COMMITTED_ATTR = "jaxgeo_committed"
"""Group attribute holding ``{dimension: committed length}``; readers trim to it."""

_VERSION_ATTR = "jaxgeo_version"
# Along an append dimension, a map (two or more other dimensions, e.g. realization, lat, lon)
# gets one slice a chunk, so an append writes whole new chunks; a series (history variables,
# coordinates) gets long chunks so that an hourly history does not become thousands of files.
_SERIES_CHUNK = 1024


# --------------------------------------------------------------------------------------------
# Checks shared by the writers
# --------------------------------------------------------------------------------------------


def check_finite(array: Any, what: str) -> None:
    """Refuse an array holding NaN or infinity.

    Args:
        array: Anything ``numpy.asarray`` accepts (NumPy or JAX arrays, lists).
        what: What the array is, for the message (``"initial map br_input.h5"``).

    Raises:
        InputError: If any value is NaN or ±inf; names ``what``, the count and the first index.
    """
    values = np.asarray(array)
    if not (
        np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.complexfloating)
    ):
        return  # integers and booleans are always finite
    bad = ~np.isfinite(values)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputError(
            f"{what} has {int(bad.sum())} non-finite value(s) (NaN or inf) among {values.size}, "
            f"the first at index {first}; expected all values finite"
        )


def _jsonable_attrs(attrs: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Attributes as JSON values (zarr stores them as JSON), NumPy scalars unwrapped."""
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if isinstance(value, np.generic):
            value = value.item()
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        try:
            json.dumps(value)
        except (TypeError, ValueError) as err:
            raise InputError(
                f"{where} attribute {key!r} of type {type(value).__name__} cannot be stored; "
                "expected a string, number, boolean, list or dict of those"
            ) from err
        out[str(key)] = value
    return out


# --------------------------------------------------------------------------------------------
# Creating a store
# --------------------------------------------------------------------------------------------


def _chunks_for(var: xr.Variable, append_dims: Sequence[str]) -> tuple[int, ...] | None:
    """Chunk shape of one variable: see the comment on ``_SERIES_CHUNK``."""
    if not any(d in append_dims for d in var.dims):
        return None  # let zarr choose; such variables never grow
    is_map = sum(d not in append_dims for d in var.dims) >= 2
    chunks = []
    for dim, size in zip(var.dims, var.shape, strict=True):
        if dim in append_dims:
            chunks.append(1 if is_map else _SERIES_CHUNK)
        else:
            chunks.append(max(int(size), 1))
    return tuple(chunks)


def _is_zarr_store(path: Path) -> bool:
    return path.is_dir() and (path / "zarr.json").is_file()


def create_store(
    path: str | os.PathLike[str],
    ds: xr.Dataset,
    *,
    append_dim: str | Sequence[str] = "time",
    overwrite: bool = False,
    attrs: Mapping[str, Any] | None = None,
) -> Path:
    """Write the first part of an output store.

    The Dataset may hold zero or more entries along its append dimensions; later entries come
    through :func:`append`. Variable attributes (CF ``units``, ``long_name``) are kept. The
    global attributes are ``ds.attrs``, then ``attrs`` (the caller puts ``config``, the TOML
    text as run, there), then ``jaxgeo_version``.

    The store is written to a hidden sibling directory and renamed into place only once
    complete, so an interrupted or failed write never leaves a partial store at ``path`` and,
    with ``overwrite=True``, never loses the old store.

    Args:
        path: Store directory to create (parents are created).
        ds: Initial contents.
        append_dim: The dimension(s) the store will grow along; sets the chunking (one slice a
            chunk for maps). Any dimension can be appended to later.
        overwrite: Replace an existing store at ``path``.
        attrs: Extra global attributes (JSON values).

    Returns:
        The store path.

    Raises:
        StoreExistsError: ``path`` exists and ``overwrite`` is False, or it exists and is not a
            zarr store (refused even with ``overwrite``, to never delete unrelated data).
        InputError: An attribute cannot be stored as JSON, or an append dimension is unknown.
    """
    path = Path(path)
    append_dims = (append_dim,) if isinstance(append_dim, str) else tuple(append_dim)
    unknown = [d for d in append_dims if d not in ds.dims]
    if unknown:
        raise InputError(
            f"append dimension(s) {unknown} not in the Dataset for store {path}; "
            f"its dimensions are {list(ds.dims)}"
        )
    if os.path.lexists(path):
        if not overwrite:
            raise StoreExistsError(
                f"output store {path} already exists; pass --overwrite (overwrite=True) to "
                "replace it"
            )
        if not _is_zarr_store(path):
            raise StoreExistsError(
                f"{path} exists and is not a zarr store (no zarr.json); refusing to replace it "
                "even with --overwrite, choose another output path"
            )

    global_attrs = _jsonable_attrs(ds.attrs, f"Dataset for store {path}:")
    global_attrs.update(_jsonable_attrs(attrs or {}, f"store {path}:"))
    global_attrs[_VERSION_ATTR] = __version__
    global_attrs[COMMITTED_ATTR] = {str(d): int(n) for d, n in ds.sizes.items()}

    # Encodings carried over from a store the Dataset was read from (chunks sized for that
    # store) would clash with the chunking chosen here, so start from a clean slate.
    out = ds.copy(deep=False)
    out.attrs = global_attrs
    encoding: dict[str, dict[str, Any]] = {}
    for name, var in out.variables.items():
        var.encoding = {}
        chunks = _chunks_for(var, append_dims)
        if chunks is not None:
            encoding[str(name)] = {"chunks": chunks}
        _jsonable_attrs(var.attrs, f"variable {name!r} of store {path}:")

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
    try:
        out.to_zarr(tmp, mode="w-", zarr_format=3, consolidated=False, encoding=encoding)
        swap_in(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def swap_in(tmp: Path, path: Path) -> None:
    """Move the finished store ``tmp`` to ``path``, replacing a store that is there.

    The old store is set aside by a rename and deleted only once the new one is in place, so a
    failure at any point leaves either the old or the new store at ``path``, never neither.
    """
    if not os.path.lexists(path):
        os.rename(tmp, path)
        return
    # Two renames: the old store is set aside, then deleted only once the new one is in place.
    old = path.parent / f".{path.name}.old-{uuid.uuid4().hex}"
    os.rename(path, old)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(old, path)
        raise
    shutil.rmtree(old, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _require_store(path: Path) -> None:
    if not path.exists():
        raise FileFormatError(
            f"store {path} does not exist; expected a zarr v3 store directory written by jaxgeo"
        )
    if not _is_zarr_store(path):
        what = "a directory" if path.is_dir() else "a file"
        raise FileFormatError(
            f"{path} is {what} without zarr.json, not a zarr v3 store; expected a store "
            "directory written by jaxgeo (e.g. by `jaxgeo sft run --out RUN.zarr`)"
        )


def _open_group(path: Path, mode: Literal["r", "r+"]) -> zarr.Group:
    _require_store(path)
    try:
        return zarr.open_group(path, mode=mode, zarr_format=3, use_consolidated=False)
    except Exception as err:  # zarr raises several kinds for unreadable metadata
        raise FileFormatError(
            f"cannot open {path} as a zarr v3 store ({type(err).__name__}: {err}); expected a "
            "store directory written by jaxgeo"
        ) from err


def _committed(root: zarr.Group) -> dict[str, int]:
    raw = root.attrs.get(COMMITTED_ATTR)
    if not isinstance(raw, Mapping):
        return {}
    return {str(k): int(cast(int, v)) for k, v in raw.items()}


def committed_sizes(path: str | os.PathLike[str]) -> dict[str, int]:
    """Committed length of every dimension of a store (what :func:`open_store` shows).

    Args:
        path: Store directory.

    Returns:
        ``{dimension: length}``; empty for a zarr store not written by jaxgeo.

    Raises:
        FileFormatError: ``path`` is missing or not a zarr v3 store.
    """
    return _committed(_open_group(Path(path), "r"))


def _dims_of(arr: zarr.Array) -> tuple[str, ...]:
    names = getattr(arr.metadata, "dimension_names", None)
    return tuple(str(n) for n in names) if names else ()


def _open_xr(path: Path, drop: Iterable[str] = ()) -> xr.Dataset:
    # Times are plain numbers in jaxgeo stores ("hours since start"): decoding them would turn
    # them into datetimes or timedeltas the rest of the code does not expect.
    return xr.open_dataset(
        path,
        engine="zarr",
        chunks=None,
        consolidated=False,
        zarr_format=3,
        decode_times=False,
        decode_timedelta=False,
        drop_variables=list(drop),
    )


def open_store(path: str | os.PathLike[str]) -> xr.Dataset:
    """Open a store lazily, showing only committed entries.

    Args:
        path: Store directory.

    Returns:
        The Dataset (lazy: values are read on access), every variable trimmed to the committed
        length of its dimensions, global attributes without the internal ``jaxgeo_committed``.

    Raises:
        FileFormatError: ``path`` is missing, not a zarr v3 store, or unreadable.
    """
    path = Path(path)
    root = _open_group(path, "r")
    committed = _committed(root)
    # Variables an interrupted append left longer than committed cannot be opened together
    # with the rest (xarray refuses conflicting sizes), so each is opened on its own.
    longer = []
    for name, arr in root.arrays():
        dims = _dims_of(arr)
        if any(d in committed and n > committed[d] for d, n in zip(dims, arr.shape, strict=False)):
            longer.append(str(name))
    names = [str(k) for k in root.array_keys()]
    try:
        parts = [_open_xr(path, drop=longer)]
        for name in longer:
            parts.append(_open_xr(path, drop=[k for k in names if k != name]))
    except Exception as err:
        raise FileFormatError(
            f"cannot read store {path} ({type(err).__name__}: {err}); expected a zarr v3 store "
            "written by jaxgeo"
        ) from err
    trimmed = [
        part.isel({d: slice(0, n) for d, n in committed.items() if d in part.dims})
        for part in parts
    ]
    ds = (
        trimmed[0]
        if len(trimmed) == 1
        else xr.merge(trimmed, compat="override", join="exact", combine_attrs="override")
    )
    ds.attrs.pop(COMMITTED_ATTR, None)
    return ds


def read_attrs(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Global attributes of a store (``config``, ``jaxgeo_version``, ...), without opening data.

    Raises:
        FileFormatError: ``path`` is missing or not a zarr v3 store.
    """
    attrs = dict(_open_group(Path(path), "r").attrs)
    attrs.pop(COMMITTED_ATTR, None)
    return attrs


# --------------------------------------------------------------------------------------------
# Appending
# --------------------------------------------------------------------------------------------


def _commit(path: Path, committed: Mapping[str, int]) -> None:
    """Record new committed lengths by replacing the group's zarr.json in one rename.

    The temporary file lives beside the store, not in it: a stray file inside the store's root
    (left by a kill at the wrong moment) would make zarr warn on every later open.
    """
    meta_path = path / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta.setdefault("attributes", {})[COMMITTED_ATTR] = {
        str(k): int(v) for k, v in committed.items()
    }
    tmp = path.parent / f".{path.name}.commit-{uuid.uuid4().hex}"
    try:
        tmp.write_text(json.dumps(meta, indent=2))
        os.replace(tmp, meta_path)
    finally:
        tmp.unlink(missing_ok=True)


def _remove_stale_commit_files(path: Path) -> None:
    for stale in path.parent.glob(f".{path.name}.commit-*"):
        stale.unlink(missing_ok=True)


def append(path: str | os.PathLike[str], ds: xr.Dataset, dim: str) -> int:
    """Append entries along one dimension of a store, crash-safely.

    ``ds`` holds the new entries of every store variable that has ``dim`` (data variables and
    the ``dim`` coordinate), and nothing else is needed: a store with maps on ``time`` and
    histories on ``history_time`` takes appends of either group alone. Variables of ``ds``
    without ``dim`` (e.g. ``lat``) are checked against the store where they are dimension
    coordinates, and otherwise ignored.

    A process killed during the call leaves the store as it was before (the new entries are
    committed last, in one atomic rename); the next append overwrites the leftovers.

    Args:
        path: Store directory written by :func:`create_store`.
        ds: New entries.
        dim: Dimension to grow.

    Returns:
        The new committed length of ``dim``.

    Raises:
        FileFormatError: ``path`` is missing or not a zarr v3 store.
        InputError: ``dim`` is not a dimension of the store or of ``ds``; a variable along
            ``dim`` is missing from ``ds`` or from the store; shapes, dimension order or
            coordinates of other dimensions disagree; a value cannot be cast to the stored type.
    """
    path = Path(path)
    root = _open_group(path, "r+")
    committed = _committed(root)
    if dim not in committed:
        raise InputError(
            f"cannot append to store {path} along {dim!r}: not a dimension of the store "
            f"(its dimensions are {sorted(committed)})"
        )
    if dim not in ds.dims:
        raise InputError(
            f"cannot append to store {path} along {dim!r}: the Dataset to append has no such "
            f"dimension (it has {list(ds.dims)})"
        )
    arrays = {str(name): arr for name, arr in root.arrays()}
    in_store = {name for name, arr in arrays.items() if dim in _dims_of(arr)}
    given = {str(name) for name, var in ds.variables.items() if dim in var.dims}
    unknown = {str(name) for name in ds.data_vars} - set(arrays)
    if given != in_store or unknown:
        missing, extra = sorted(in_store - given), sorted((given - in_store) | unknown)
        raise InputError(
            f"appending along {dim!r} to store {path} needs exactly the store's variables on "
            f"{dim!r}, {sorted(in_store)}; missing: {missing}, not in the store: {extra}"
        )
    _check_other_coords(path, root, ds, dim, committed)

    start, count = committed[dim], int(ds.sizes[dim])
    writes = []
    for name in sorted(in_store):
        arr, var = arrays[name], ds.variables[name]
        dims = _dims_of(arr)
        if set(var.dims) != set(dims):
            raise InputError(
                f"variable {name!r} to append to store {path} has dimensions {var.dims}; "
                f"the store has {dims}"
            )
        var = var.transpose(*dims)
        axis = dims.index(dim)
        expected = tuple(n if d != dim else count for d, n in zip(dims, arr.shape, strict=True))
        for d, n, want in zip(dims, var.shape, expected, strict=True):
            if d != dim and n != want:
                raise InputError(
                    f"variable {name!r} to append to store {path} has {n} entries along "
                    f"{d!r}; the store has {want}"
                )
        values = np.asarray(var.values)
        if not np.can_cast(values.dtype, arr.dtype, casting="same_kind"):
            raise InputError(
                f"variable {name!r} to append to store {path} has dtype {values.dtype}, which "
                f"cannot be stored as {arr.dtype} (times must be numbers, e.g. hours)"
            )
        writes.append((arr, axis, values.astype(arr.dtype, copy=False)))

    if count == 0:
        return start
    _remove_stale_commit_files(path)
    # Grow and write every variable, then commit; see the module docstring.
    for arr, axis, values in writes:
        shape = list(arr.shape)
        shape[axis] = start + count
        arr.resize(tuple(shape))
        index = [slice(None)] * arr.ndim
        index[axis] = slice(start, start + count)
        arr[tuple(index)] = values
    committed[dim] = start + count
    _commit(path, committed)
    return start + count


def _check_other_coords(
    path: Path, root: zarr.Group, ds: xr.Dataset, dim: str, committed: Mapping[str, int]
) -> None:
    """Dimension coordinates other than ``dim`` must match the store's (e.g. ``lat``)."""
    names = {str(k) for k in root.array_keys()}
    for name in ds.dims:
        if name == dim or name not in ds.coords or str(name) not in names:
            continue
        stored = np.asarray(cast(zarr.Array, root[str(name)])[: committed.get(str(name), None)])
        given = np.asarray(ds[name].values)
        floats = np.issubdtype(stored.dtype, np.inexact) and np.issubdtype(given.dtype, np.inexact)
        if stored.shape != given.shape or not np.array_equal(stored, given, equal_nan=floats):
            raise InputError(
                f"coordinate {name!r} of the Dataset to append differs from store {path}'s "
                f"({given.shape} vs {stored.shape} values); appends must keep other coordinates"
            )
