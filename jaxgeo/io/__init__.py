"""The data layer: zarr output stores, HipFT HDF5 maps, orbax checkpoints.

``Checkpointer`` is imported on first use, so that reading and writing stores and maps does not
pay for importing JAX and orbax (the crash-safety tests start many short processes).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .hipft_h5 import HipftMap as HipftMap
from .hipft_h5 import read_hipft_map as read_hipft_map
from .hipft_h5 import write_hipft_map as write_hipft_map
from .store import append as append
from .store import check_finite as check_finite
from .store import committed_sizes as committed_sizes
from .store import create_store as create_store
from .store import open_store as open_store
from .store import read_attrs as read_attrs

if TYPE_CHECKING:
    from .checkpoint import Checkpointer as Checkpointer
    from .checkpoint import save_snapshot as save_snapshot

__all__ = [
    "Checkpointer",
    "HipftMap",
    "append",
    "check_finite",
    "committed_sizes",
    "create_store",
    "open_store",
    "read_attrs",
    "read_hipft_map",
    "save_snapshot",
    "write_hipft_map",
]


def __getattr__(name: str) -> Any:
    if name == "Checkpointer":
        from .checkpoint import Checkpointer

        return Checkpointer
    if name == "save_snapshot":
        from .checkpoint import save_snapshot

        return save_snapshot
    raise AttributeError(f"module 'jaxgeo.io' has no attribute {name!r}")
