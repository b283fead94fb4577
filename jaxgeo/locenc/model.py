"""The location encoder: a positional encoding followed by a network, and its saved form.

``LocationEncoder(config, rngs=...)`` is an NNX module; ``model(lon, lat)`` gives logits (or
regression outputs) and ``model.embed(lon, lat)`` the last hidden layer, for use as a frozen
feature extractor elsewhere in jaxgeo. :func:`save_encoder` / :func:`load_encoder` store the
parameters with orbax (through :class:`jaxgeo.io.Checkpointer`) and the config as JSON beside
them, so a saved encoder loads without knowing how it was built.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import jax.numpy as jnp
from flax import nnx
from jaxtyping import Array, ArrayLike, Float, PRNGKeyArray

from jaxgeo.config import from_dict, option, section
from jaxgeo.errors import ConfigError, FileFormatError

from .encodings import Encoding
from .networks import NETWORKS, NetworkName, make_network

__all__ = [
    "LocationEncoder",
    "ModelConfig",
    "abstract_model",
    "load_encoder",
    "params_dict",
    "save_encoder",
    "set_params",
]


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Encoding × network, and the output size.

    Defaults follow the reference's SH × SIREN setting (two hidden layers of 256, w0 = 1 with
    w0_initial = 30 in the first layer).
    """

    encoding: Encoding = section(Encoding, doc="positional encoding")
    network: NetworkName = option("siren", doc="network", choices=NETWORKS)
    hidden: int = option(256, doc="hidden width", ge=1)
    n_layers: int = option(2, doc="hidden layers", ge=0)
    dropout: float = option(0.0, doc="dropout rate (fcnet, siren)", ge=0.0, lt=1.0)
    w0: float = option(1.0, doc="SIREN frequency factor of hidden layers", gt=0.0)
    w0_initial: float = option(30.0, doc="SIREN frequency factor of the first layer", gt=0.0)
    n_out: int = option(1, doc="outputs (classes, or 1 for regression)", ge=1)
    dtype: str = option(
        "float32", doc="parameter and compute dtype", choices=("float32", "float64")
    )

    def __post_init__(self) -> None:
        if self.network not in NETWORKS:
            raise ConfigError(f"network must be one of {', '.join(NETWORKS)}, got {self.network!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        return from_dict(cls, data)


class LocationEncoder(nnx.Module):
    """Positional encoding + network (an NNX module).

    Args:
        config: what to build.
        rngs: parameter initialisation randomness.
    """

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs) -> None:
        self.config = config
        self.dtype = jnp.dtype(config.dtype)
        self.net = make_network(
            config.network,
            config.encoding.n_features,
            config.n_out,
            hidden=config.hidden,
            n_layers=config.n_layers,
            dropout=config.dropout,
            w0=config.w0,
            w0_initial=config.w0_initial,
            rngs=rngs,
            dtype=self.dtype,
        )

    def encode(self, lon: Float[ArrayLike, "*p"], lat: Float[ArrayLike, "*p"]) -> Array:
        """Positional encoding in the model dtype, ``(*p, n_features)``."""
        lon_a = jnp.asarray(lon, self.dtype)
        lat_a = jnp.asarray(lat, self.dtype)
        return self.config.encoding(lon_a, lat_a)

    def __call__(
        self,
        lon: Float[ArrayLike, "*p"],
        lat: Float[ArrayLike, "*p"],
        key: PRNGKeyArray | None = None,
    ) -> Float[Array, "*p out"]:
        """Outputs (logits or regression values) at (lon, lat) in degrees; dropout iff ``key``."""
        return self.net(self.encode(lon, lat), key)

    def embed(
        self, lon: Float[ArrayLike, "*p"], lat: Float[ArrayLike, "*p"]
    ) -> Float[Array, "*p h"]:
        """Features of the last hidden layer at (lon, lat) in degrees (deterministic).

        For ``linear`` networks this is the positional encoding itself.
        """
        return self.net.features(self.encode(lon, lat))  # type: ignore[attr-defined]


def _params(model: LocationEncoder) -> nnx.State:
    return nnx.state(model, nnx.Param)


ENCODER_JSON = "encoder.json"
PARAMS_DIR = "params"


def save_encoder(
    model: LocationEncoder, directory: str | os.PathLike[str], *, metadata: dict | None = None
) -> None:
    """Save an encoder: config and metadata as ``encoder.json``, parameters with orbax.

    Args:
        model: the encoder.
        directory: folder to write (created); must not hold a saved encoder already.
        metadata: extra JSON-serialisable information kept beside it (e.g. metrics).

    Raises:
        StoreExistsError: the folder already holds a saved encoder.
    """
    from jaxgeo.errors import StoreExistsError
    from jaxgeo.io import Checkpointer

    path = Path(directory)
    if (path / ENCODER_JSON).exists():
        raise StoreExistsError(f"{path} already holds a saved encoder; choose a new folder")
    path.mkdir(parents=True, exist_ok=True)
    info = {"model_config": model.config.to_dict(), "extra": dict(metadata or {})}
    with Checkpointer(path / PARAMS_DIR, max_to_keep=1) as ckpt:
        ckpt.save(0, params_dict(model), info)
    (path / ENCODER_JSON).write_text(json.dumps(info, indent=2, default=str) + "\n")


def load_encoder(directory: str | os.PathLike[str]) -> tuple[LocationEncoder, dict[str, Any]]:
    """Load an encoder written by :func:`save_encoder` (``jaxgeo locenc train`` writes one too).

    Returns:
        ``(model, metadata)``, the parameters restored bit for bit.

    Raises:
        FileFormatError: the folder is missing or holds no saved encoder.
    """
    from jaxgeo.io import Checkpointer

    path = Path(directory)
    if not (path / ENCODER_JSON).is_file():
        raise FileFormatError(f"{path} holds no saved encoder (expected {ENCODER_JSON} there)")
    info = json.loads((path / ENCODER_JSON).read_text())
    config = ModelConfig.from_dict(info["model_config"])
    model = abstract_model(config)
    with Checkpointer(path / PARAMS_DIR, create=False) as ckpt:
        params, _ = ckpt.restore(target=params_dict(model))
    set_params(model, params)
    return model, info.get("extra", {})


def abstract_model(config: ModelConfig) -> LocationEncoder:
    """An encoder of this config with abstract (shape-only) parameters, to restore into."""
    return nnx.eval_shape(lambda: LocationEncoder(config, rngs=nnx.Rngs(0)))


def _str_keys(tree: Any) -> Any:
    # orbax stores dict keys as path names; NNX lists use int keys, so make them strings.
    if isinstance(tree, dict):
        return {str(k): _str_keys(v) for k, v in tree.items()}
    return tree


def params_dict(model: LocationEncoder) -> dict[str, Any]:
    """The model's parameters as a plain nested dict (string keys), the checkpointed form."""
    return _str_keys(nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def set_params(model: LocationEncoder, params: dict[str, Any]) -> None:
    """Put a :func:`params_dict` back into ``model`` (in place)."""
    state = nnx.state(model, nnx.Param)

    def restore_keys(template: Any, values: Any) -> Any:
        if isinstance(template, dict):
            return {k: restore_keys(v, values[str(k)]) for k, v in template.items()}
        return values

    nnx.replace_by_pure_dict(state, restore_keys(nnx.to_pure_dict(state), params))
    nnx.update(model, state)
