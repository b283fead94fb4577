"""Sparse-label aboveground-biomass regression with (pretrained) Swin encoders and a U-Net
baseline. See ``docs/agb.md``. Names are imported on first use, so ``jaxgeo --help`` (which
loads this package for its commands) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # losses and metrics
    "masked_rmse": "losses",
    "masked_mse": "losses",
    "binned_rmse": "losses",
    "BINS_MG_HA": "losses",
    # data
    "Allometry": "data",
    "Gedi": "data",
    "Region": "data",
    "REGIONS": "data",
    "Scene": "data",
    "TileSet": "data",
    "HLS_BANDS": "data",
    "biomass": "data",
    "gedi_footprints": "data",
    "make_region": "data",
    "open_region_store": "data",
    "read_bigearthnet": "data",
    "read_landsat8": "data",
    "read_sentinel2": "data",
    "sparse_labels": "data",
    "tile_region": "data",
    "write_region_store": "data",
    # models
    "AGBModel": "models",
    "ModelConfig": "models",
    "ConvDecoder": "models",
    "UPerNetDecoder": "models",
    "make_model": "models",
    "SimMIM": "simmim",
    # runs
    "PretrainConfig": "run",
    "TrainConfig": "run",
    "pretrain": "run",
    "train": "run",
    "load_encoder": "run",
    "load_model": "run",
    "evaluate": "run",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jaxgeo.agb' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
