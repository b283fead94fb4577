"""Hyperspectral foundation models (SpectralEarth in Flax): data layer, models, training.

See ``docs/hsi.md``. Names are imported on first use, so ``jaxgeo --help`` (which loads this
package for its commands) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    # data layer
    "geotiffs_to_store": "readers",
    "load_hippo_cube": "readers",
    "read_envi": "readers",
    "read_geotiff": "readers",
    "SENSORS": "sensors",
    "Sensor": "sensors",
    "get_sensor": "sensors",
    "resample": "sensors",
    "resampling_matrix": "sensors",
    "srf": "sensors",
    "CROPS": "spectra",
    "MATERIALS": "spectra",
    "endmembers": "spectra",
    "load_library": "spectra",
    "PatchStore": "store",
    "PatchStoreWriter": "store",
    "write_patch_store": "store",
    "SPLITS": "store",
    "CROPTYPE_CLASSES": "synth",
    "LANDCOVER_CLASSES": "synth",
    "SynthConfig": "synth",
    "generate_tile": "synth",
    "synthesize": "synth",
    "write_dataset": "synth",
    # models and training
    "SpectralAdapter": "adapter",
    "make_backbone": "backbones",
    "BACKBONES": "backbones",
    "MoCo": "ssl",
    "DINO": "ssl",
    "MAE": "ssl",
    "make_method": "ssl",
    "TaskModel": "finetune",
    "PretrainConfig": "run",
    "FinetuneConfig": "run",
    "pretrain": "run",
    "finetune": "run",
    "load_backbone": "run",
    "embed": "run",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'jaxgeo.hsi' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
