"""The shell of ``jaxgeo agb pretrain`` and ``jaxgeo agb train``: build regions and models, loop
over epochs with checkpoints, evaluate (RMSE overall and per biomass bin), write a summary and
plots.

Every step's randomness is ``fold_in(fold_in(key(seed), epoch), step)``, the batch order and the
augmentation (the eight symmetries of the square, applied to image and labels together) are
drawn from ``(seed, epoch)``, and a checkpoint is written after every epoch, so a run resumed
with ``--resume`` is bit for bit the uninterrupted one.

A training run folder holds ``run.json``, ``checkpoints/`` (the whole training state),
``model/`` (the trained model's parameters: what ``--init RUN`` loads to fine-tune on another
region), ``history.json`` and ``summary.json``. A pretraining run folder holds ``encoder/``
(what ``train --checkpoint RUN`` loads).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxgeo.errors import ConfigError, FileFormatError
from jaxgeo.nn.swin import Swin
from jaxgeo.train import (
    ModuleDef,
    RunDir,
    count_params,
    init_train_state,
    make_train_step,
    progress,
    split_module,
    warmup_cosine,
)

from .data import (
    HLS_MEAN,
    HLS_STD,
    IGNORE,
    REGIONS,
    Gedi,
    Region,
    TileSet,
    make_region,
    normalize,
    read_bigearthnet,
    tile_region,
)
from .losses import bias, binned_rmse, masked_rmse
from .models import ENCODERS, ModelConfig, make_encoder, make_model
from .simmim import SimMIM

__all__ = [
    "PretrainConfig",
    "TrainConfig",
    "evaluate",
    "init_model",
    "load_encoder",
    "load_model",
    "predict_scene",
    "pretrain",
    "split_trainable",
    "train",
]

log = logging.getLogger("jaxgeo.agb")
PyTree = Any


# ----------------------------------------------------------------------------------------------
# Shared pieces
# ----------------------------------------------------------------------------------------------


def _wd_mask(params: PyTree) -> PyTree:
    # Decay weights, not biases and normalisation scales.
    return jax.tree_util.tree_map(lambda x: x.ndim >= 2, params)


def make_optimizer(
    lr: float, weight_decay: float, total_steps: int, warmup_steps: int
) -> optax.GradientTransformation:
    """AdamW on a linear warm-up + cosine schedule."""
    schedule = warmup_cosine(lr, total_steps, min(warmup_steps, total_steps))
    return optax.adamw(schedule, weight_decay=weight_decay, mask=_wd_mask)


def _init_key(seed: int) -> jax.Array:
    # Initialisation draws with XLA's RngBitGenerator: a model's many initialisers compile
    # several times faster than with threefry (minutes on a loaded 2-core CPU otherwise).
    return jax.random.key(seed, impl="rbg")


def _d4(rng: np.random.Generator, *arrays: np.ndarray) -> list[np.ndarray]:
    """The same random symmetry of the square (rotation by k*90 degrees, optional mirror) on
    every array's first two axes."""
    k = int(rng.integers(8))
    out = []
    for a in arrays:
        a = np.rot90(a, k % 4, axes=(0, 1))
        if k >= 4:
            a = a[:, ::-1]
        out.append(np.ascontiguousarray(a))
    return out


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ----------------------------------------------------------------------------------------------
# SimMIM pretraining
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """Settings of SimMIM pretraining (defaults: a CPU-sized run).

    Attributes:
        encoder: A Swin name of :data:`jaxgeo.agb.models.ENCODERS` (the study: ``swin-b``).
        patch: Encoder patch size.
        crop: Crop side in pixels (SimMIM: 192).
        crops_per_epoch: Random scene crops drawn per epoch.
        regions: Regions whose imagery (never their labels) is used.
        bigearthnet: Also use the BigEarthNet-S2 example patches (resized to ``crop``).
        epochs, batch_size, lr, weight_decay, warmup_epochs: Schedule (AdamW, warm-up + cosine).
        mask_ratio, mask_patch: SimMIM masking (the study: 0.6 of 32-pixel blocks).
        pixel_m: Grid of the imagery, metres.
        seed: Initialisation, crop, augmentation and mask seed.
    """

    encoder: str = "swin-micro"
    patch: int = 4
    crop: int = 64
    crops_per_epoch: int = 128
    regions: tuple[str, ...] = ("s2", "l8")
    bigearthnet: bool = True
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 1
    mask_ratio: float = 0.6
    mask_patch: int = 16
    pixel_m: float = 30.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.encoder.startswith("swin-") or self.encoder not in ENCODERS:
            raise ConfigError(f"pretrain encoder must be a swin-* encoder, got {self.encoder!r}")
        for name in ("epochs", "batch_size", "crops_per_epoch", "crop", "patch"):
            if getattr(self, name) < 1:
                raise ConfigError(f"pretrain {name} must be >= 1, got {getattr(self, name)}")
        if self.crops_per_epoch < self.batch_size:
            raise ConfigError(
                f"crops_per_epoch {self.crops_per_epoch} must be >= batch_size {self.batch_size}"
            )
        if self.lr <= 0:
            raise ConfigError(f"pretrain lr must be > 0, got {self.lr}")
        for r in self.regions:
            if r not in REGIONS:
                raise ConfigError(f"pretrain regions must be among {list(REGIONS)}, got {r!r}")
        try:
            SimMIM(self.mask_ratio, self.mask_patch).check(self.patch, self.crop)
        except ValueError as err:
            raise ConfigError(str(err)) from err

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "regions": list(self.regions)}


def _pretrain_images(config: PretrainConfig) -> list[np.ndarray]:
    images = [
        normalize(make_region(r, pixel_m=config.pixel_m).scene.reflectance) for r in config.regions
    ]
    if config.bigearthnet:
        images.extend(normalize(p) for p in read_bigearthnet(config.crop))
    for img in images:
        if min(img.shape[:2]) < config.crop:
            raise ConfigError(f"pretrain crop {config.crop} larger than an image {img.shape[:2]}")
    return images


def _pretrain_epoch(images: list[np.ndarray], config: PretrainConfig, epoch: int) -> np.ndarray:
    """The epoch's crops, ``(crops_per_epoch, crop, crop, 6)``, drawn from ``(seed, epoch)``:
    an image uniformly at random (scenes and patches alike), then a position in it."""
    rng = np.random.default_rng([config.seed, epoch, 17])
    c = config.crop
    out = np.empty((config.crops_per_epoch, c, c, images[0].shape[-1]), np.float32)
    for i in range(config.crops_per_epoch):
        img = images[int(rng.integers(len(images)))]
        r = int(rng.integers(img.shape[0] - c + 1))
        q = int(rng.integers(img.shape[1] - c + 1))
        out[i] = img[r : r + c, q : q + c]
    return out


@functools.lru_cache(maxsize=4)
def _pretrain_parts(config_json: str, steps_per_epoch: int) -> tuple[ModuleDef, Callable, Callable]:
    config = PretrainConfig(**json.loads(config_json))
    method = SimMIM(config.mask_ratio, config.mask_patch)

    def factory(rngs: nnx.Rngs) -> nnx.Module:
        enc = make_encoder(config.encoder, 6, config.patch, rngs=rngs)
        if not isinstance(enc, Swin):  # PretrainConfig allows only Swin encoders
            raise ConfigError(f"SimMIM needs a Swin encoder, got {config.encoder}")
        return method.build(enc, rngs)

    mdef = ModuleDef(nnx.eval_shape(lambda: factory(nnx.Rngs(0))))
    total = steps_per_epoch * config.epochs
    tx = make_optimizer(
        config.lr, config.weight_decay, total, config.warmup_epochs * steps_per_epoch
    )
    step = jax.jit(make_train_step(method.make_loss(mdef), tx))

    @jax.jit
    def init(key: jax.Array) -> dict:
        module = factory(nnx.Rngs(key))
        params, rest = ModuleDef.params(module), ModuleDef.rest(module)
        return init_train_state(params, {"rest": rest}, tx)

    return mdef, init, step


def pretrain(
    config: PretrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    plots: str | Path | None = None,
    stop_after_epochs: int | None = None,
) -> dict[str, Any]:
    """SimMIM-pretrain a Swin encoder on the regions' imagery (and BigEarthNet patches).

    Args:
        config: Settings.
        out: Run folder (``encoder/`` is what ``train --checkpoint OUT`` loads).
        resume: Continue from the last checkpoint.
        overwrite: Replace a run in ``out``.
        plots: Folder for a loss curve and reconstructions (PNG).
        stop_after_epochs: Stop early after this many epochs (to test resuming).

    Returns:
        The JSON summary.
    """
    images = _pretrain_images(config)
    steps_per_epoch = config.crops_per_epoch // config.batch_size
    mdef, init, step = _pretrain_parts(
        json.dumps({**config.to_dict(), "seed": 0}, sort_keys=True), steps_per_epoch
    )
    info = {"kind": "agb-pretrain", "config": config.to_dict()}
    run = RunDir(out, info, resume=resume, overwrite=overwrite, free=())
    ts = init(_init_key(config.seed))
    history: dict[str, list[float]] = {"epoch": [], "loss": []}
    key = jax.random.key(config.seed)
    last = config.epochs if stop_after_epochs is None else min(stop_after_epochs, config.epochs)
    t0 = time.perf_counter()
    try:
        restored = run.restore(ts)
        if restored is not None:
            ts, meta = restored
            history = meta["history"]
        for epoch in range(len(history["epoch"]), last):
            crops = _pretrain_epoch(images, config, epoch)
            losses = []
            for i in progress(range(steps_per_epoch), desc=f"epoch {epoch + 1}"):
                batch = {"x": crops[i * config.batch_size : (i + 1) * config.batch_size]}
                k = jax.random.fold_in(jax.random.fold_in(key, epoch), i)
                ts, metrics = step(ts, batch, k)
                losses.append(float(metrics["loss"]))
            history["epoch"].append(epoch + 1)
            history["loss"].append(float(np.mean(losses)))
            log.info("epoch %d SimMIM L1 %.4f", epoch + 1, history["loss"][-1])
            run.save(epoch + 1, jax.device_get(ts), {"history": history})
    finally:
        run.close()
    seconds = time.perf_counter() - t0
    out = Path(out)
    done = len(history["epoch"]) == config.epochs
    if done:
        from jaxgeo.io import save_snapshot

        save_snapshot(
            out / "encoder",
            len(history["epoch"]),
            {"params": jax.device_get(ts["params"]["encoder"])},
            {"encoder": config.encoder, "patch": config.patch},
        )
    (out / "history.json").write_text(json.dumps(history) + "\n")
    summary: dict[str, Any] = {
        "command": "agb pretrain",
        "method": "simmim",
        "encoder": config.encoder,
        "epochs": len(history["epoch"]),
        "finished": done,
        "final_loss": history["loss"][-1] if history["loss"] else None,
        "parameters": count_params(ts["params"]["encoder"]),
        "seconds": round(seconds, 3),
        "out": str(out),
    }
    if plots is not None:
        summary["plots"] = [
            str(p) for p in _pretrain_plots(Path(plots), config, mdef, ts, images, history)
        ]
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def load_encoder(checkpoint: str | Path) -> tuple[dict, str, int]:
    """The encoder a finished pretraining run saved: ``(params, name, patch)``.

    Raises:
        FileFormatError: No finished pretraining run in ``checkpoint``.
    """
    from jaxgeo.io import Checkpointer

    folder = Path(checkpoint)
    run_json = folder / "run.json"
    if not run_json.is_file() or not (folder / "encoder").is_dir():
        raise FileFormatError(
            f"{folder} holds no finished pretraining run (run.json and encoder/ expected); "
            "run `jaxgeo agb pretrain --out DIR` to the end first"
        )
    cfg = json.loads(run_json.read_text())["config"]
    name, patch = cfg["encoder"], int(cfg["patch"])
    abstract = nnx.eval_shape(lambda: make_encoder(name, 6, patch, rngs=nnx.Rngs(0)))
    _, params, _ = split_module(abstract)
    with Checkpointer(folder / "encoder", create=False) as ckpt:
        state, _ = ckpt.restore(target={"params": params})
    return state["params"], name, patch


# ----------------------------------------------------------------------------------------------
# Training and evaluation
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Settings of a biomass training run (defaults: CPU-sized; see docs/agb.md for the
    study's sizes).

    Attributes:
        model: What to build (kind, encoder, decoder, sizes).
        region: Region to train and test on (``s2`` or ``l8``).
        tile: Tile side, pixels (the study: 224).
        epochs, batch_size, lr, weight_decay, warmup_epochs: AdamW schedule.
        seed: Initialisation, batch order and augmentation seed.
        data_seed: Seed of the region's residual field, tracks and footprint noise.
        n_tracks: GEDI tracks over the scene.
        pixel_m: Grid of the imagery, metres.
        eval_regions: Further regions whose test split is evaluated (zero-shot transfer).
    """

    model: ModelConfig = ModelConfig()
    region: str = "s2"
    tile: int = 64
    epochs: int = 30
    batch_size: int = 8
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 2
    seed: int = 0
    data_seed: int = 0
    n_tracks: int = 4
    pixel_m: float = 30.0
    eval_regions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for r in (self.region, *self.eval_regions):
            if r not in REGIONS:
                raise ConfigError(f"region must be one of {', '.join(REGIONS)}, got {r!r}")
        for name in ("epochs", "batch_size", "n_tracks"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup_epochs < 0:
            raise ConfigError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if self.tile % self.model.multiple:
            raise ConfigError(
                f"tile {self.tile} must be a multiple of {self.model.multiple} for model "
                f"{self.model.kind}"
            )

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["eval_regions"] = list(self.eval_regions)
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> TrainConfig:
        d = dict(d)
        d["model"] = ModelConfig(**d["model"])
        d["eval_regions"] = tuple(d.get("eval_regions", ()))
        return TrainConfig(**d)


def split_trainable(params: dict, kind: str) -> tuple[dict, dict]:
    """``(trained, fixed)`` parameters: the encoder is fixed in ``frozen`` mode."""
    if kind == "frozen":
        return {k: v for k, v in params.items() if k != "encoder"}, {
            k: v for k, v in params.items() if k == "encoder"
        }
    return dict(params), {}


def _region(name: str, config: TrainConfig) -> Region:
    return make_region(
        name, seed=config.data_seed, gedi=Gedi(n_tracks=config.n_tracks), pixel_m=config.pixel_m
    )


def make_loss(mdef: ModuleDef) -> Callable:
    """``loss(params, state, batch, key)``: masked RMSE of the model's biomass on ``batch["y"]``
    (state: ``fixed`` parameters and ``rest`` batch statistics)."""

    def loss_fn(params, state, batch, key):
        del key
        model = mdef.merge({**state["fixed"], **params}, state["rest"])
        pred = model(batch["x"], train=True)
        loss = masked_rmse(pred, batch["y"], IGNORE)
        return loss, ({**state, "rest": mdef.rest(model)}, {})

    return loss_fn


@functools.lru_cache(maxsize=8)
def _init_fn(model_json: str) -> Callable[[jax.Array], tuple[dict, dict]]:
    mcfg = ModelConfig(**json.loads(model_json))

    @jax.jit
    def init(key: jax.Array) -> tuple[dict, dict]:
        module = make_model(mcfg, rngs=nnx.Rngs(key))
        return ModuleDef.params(module), ModuleDef.rest(module)

    return init


def init_model(model: ModelConfig, seed: int) -> tuple[dict, dict]:
    """The freshly initialised ``(params, rest)`` a training run with ``seed`` starts from
    (before a ``--checkpoint`` encoder or an ``--init`` model replaces them)."""
    return _init_fn(json.dumps(dataclasses.asdict(model), sort_keys=True))(_init_key(seed))


@functools.lru_cache(maxsize=8)
def _train_parts(
    model_json: str, lr: float, wd: float, total: int, warmup: int
) -> tuple[ModuleDef, Callable, Callable, Callable, Callable]:
    """``(mdef, init, step, predict, init_state)`` of a model and schedule, jitted and cached so repeated
    runs (seeds, resumes, tables) reuse the executables."""
    mcfg = ModelConfig(**json.loads(model_json))
    mdef = ModuleDef(nnx.eval_shape(lambda: make_model(mcfg, rngs=nnx.Rngs(0))))
    tx = make_optimizer(lr, wd, total, warmup)
    step = jax.jit(make_train_step(make_loss(mdef), tx))
    init = _init_fn(model_json)

    @jax.jit
    def predict(params: dict, rest: dict, x: jax.Array) -> jax.Array:
        return mdef.merge(params, rest)(x, train=False)

    def init_state(trained: dict, fixed: dict, rest: dict) -> dict:
        return init_train_state(trained, {"fixed": fixed, "rest": rest}, tx)

    return mdef, init, step, predict, init_state


def _predict_tiles(
    predict: Callable, params: dict, rest: dict, x: np.ndarray, bs: int
) -> np.ndarray:
    out = []
    for i in range(0, len(x), bs):
        chunk = x[i : i + bs]
        n = len(chunk)
        if n < bs:  # pad to one compiled batch shape
            chunk = np.concatenate([chunk, np.zeros((bs - n, *chunk.shape[1:]), chunk.dtype)])
        out.append(np.asarray(predict(params, rest, chunk))[:n])
    if not out:
        return np.zeros(x.shape[:3], np.float32)
    return np.concatenate(out)


def evaluate(
    predict: Callable, params: dict, rest: dict, tiles: TileSet, batch_size: int
) -> dict[str, Any]:
    """Footprint RMSE overall and per biomass bin, bias, and the RMSE against the dense
    biomass over labeled-or-valid pixels (``dense_rmse``, a check the study cannot make)."""
    pred = _predict_tiles(predict, params, rest, tiles.x, batch_size)
    m = binned_rmse(pred, tiles.y)
    m["bias"] = bias(pred, tiles.y)
    valid = tiles.agb > 0
    m["dense_rmse"] = (
        float(np.sqrt(np.mean((pred[valid] - tiles.agb[valid]) ** 2))) if valid.any() else None
    )
    return m


def _save_model(path: Path, params: dict, rest: dict, config: TrainConfig, step: int) -> None:
    from jaxgeo.io import save_snapshot

    meta = {"model": dataclasses.asdict(config.model)}
    save_snapshot(path, step, {"params": params, "rest": rest}, meta)


def load_model(run: str | Path) -> tuple[dict, dict, TrainConfig]:
    """The trained model of a finished ``agb train`` run: ``(params, rest, config)``.

    Raises:
        FileFormatError: No finished training run in ``run``.
    """
    from jaxgeo.io import Checkpointer

    folder = Path(run)
    if not (folder / "run.json").is_file() or not (folder / "model").is_dir():
        raise FileFormatError(
            f"{folder} holds no finished training run (run.json and model/ expected)"
        )
    config = TrainConfig.from_dict(json.loads((folder / "run.json").read_text())["config"])
    abstract = nnx.eval_shape(lambda: make_model(config.model, rngs=nnx.Rngs(0)))
    _, params, rest = split_module(abstract)
    with Checkpointer(folder / "model", create=False) as ckpt:
        state, _ = ckpt.restore(target={"params": params, "rest": rest})
    return state["params"], state["rest"], config


def train(
    config: TrainConfig,
    out: str | Path,
    *,
    checkpoint: str | Path | None = None,
    init_from: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    plots: str | Path | None = None,
    stop_after_epochs: int | None = None,
) -> dict[str, Any]:
    """Train a biomass model on a region's train tiles; evaluate on its test tiles.

    Args:
        config: Settings.
        out: Run folder.
        checkpoint: A pretraining run whose encoder initialises the model's (kinds
            ``frozen``/``finetune``); None: a randomly initialised encoder.
        init_from: A finished training run whose whole model initialises this one (same
            model settings): fine-tuning on another region after training on one.
        resume, overwrite: Run-folder handling (see :class:`jaxgeo.train.RunDir`).
        plots: Folder for PNG figures (map, scatter, loss).
        stop_after_epochs: Stop early after this many epochs (to test resuming).

    Returns:
        The JSON summary (also in ``out/summary.json``).

    Raises:
        ConfigError: Settings that do not fit (a checkpoint of another encoder, a batch larger
            than the training set).
    """
    mcfg = config.model
    region = _region(config.region, config)
    splits = tile_region(region, config.tile)
    train_set = splits["train"]
    if len(train_set) < config.batch_size:
        raise ConfigError(
            f"batch_size {config.batch_size} is larger than the {len(train_set)} labeled "
            f"training tiles of region {config.region} at tile {config.tile}"
        )
    steps_per_epoch = len(train_set) // config.batch_size
    total = steps_per_epoch * config.epochs
    mdef, init, step, predict, init_state = _train_parts(
        json.dumps(dataclasses.asdict(mcfg), sort_keys=True),
        config.lr,
        config.weight_decay,
        total,
        config.warmup_epochs * steps_per_epoch,
    )
    params, rest = init(_init_key(config.seed))
    if checkpoint is not None:
        if mcfg.kind == "unet":
            raise ConfigError("--checkpoint is for the encoder models, not the U-Net")
        enc, name, patch = load_encoder(checkpoint)
        if (name, patch) != (mcfg.encoder, mcfg.patch):
            raise ConfigError(
                f"checkpoint {checkpoint} holds encoder {name} (patch {patch}); the model asks "
                f"for {mcfg.encoder} (patch {mcfg.patch})"
            )
        params = {**params, "encoder": enc}
    if init_from is not None:
        p0, r0, c0 = load_model(init_from)
        if dataclasses.replace(c0.model, kind=mcfg.kind) != mcfg:
            raise ConfigError(
                f"--init run {init_from} has model {c0.model}, which differs from {mcfg}"
            )
        params, rest = p0, r0
    trained, fixed = split_trainable(params, mcfg.kind)
    info = {
        "kind": "agb-train",
        "config": config.to_dict(),
        "checkpoint": None if checkpoint is None else str(Path(checkpoint).absolute()),
        "init_from": None if init_from is None else str(Path(init_from).absolute()),
    }
    run = RunDir(out, info, resume=resume, overwrite=overwrite, free=())
    ts = init_state(trained, fixed, rest)
    history: dict[str, list[Any]] = {"epoch": [], "loss": [], "val_rmse": []}
    key = jax.random.key(config.seed)
    last = config.epochs if stop_after_epochs is None else min(stop_after_epochs, config.epochs)
    t0 = time.perf_counter()
    try:
        restored = run.restore(ts)
        if restored is not None:
            ts, meta = restored
            history = meta["history"]
        for epoch in range(len(history["epoch"]), last):
            rng = np.random.default_rng([config.seed, epoch, 29])
            order = rng.permutation(len(train_set))
            losses = []
            for i in progress(range(steps_per_epoch), desc=f"epoch {epoch + 1}"):
                idx = order[i * config.batch_size : (i + 1) * config.batch_size]
                pairs = [_d4(rng, train_set.x[j], train_set.y[j]) for j in idx]
                batch = {
                    "x": np.stack([p[0] for p in pairs]),
                    "y": np.stack([p[1] for p in pairs]),
                }
                k = jax.random.fold_in(jax.random.fold_in(key, epoch), i)
                ts, metrics = step(ts, batch, k)
                losses.append(float(metrics["loss"]))
            full = {**ts["state"]["fixed"], **ts["params"]}
            val = evaluate(predict, full, ts["state"]["rest"], splits["val"], config.batch_size)
            history["epoch"].append(epoch + 1)
            history["loss"].append(float(np.mean(losses)))
            history["val_rmse"].append(val["rmse"])
            log.info(
                "epoch %d train RMSE %.2f val RMSE %s Mg/ha",
                epoch + 1,
                history["loss"][-1],
                "n/a" if val["rmse"] is None else f"{val['rmse']:.2f}",
            )
            run.save(epoch + 1, jax.device_get(ts), {"history": history})
    finally:
        run.close()
    seconds = time.perf_counter() - t0
    full = {**ts["state"]["fixed"], **ts["params"]}
    rest = ts["state"]["rest"]
    out = Path(out)
    done = len(history["epoch"]) == config.epochs
    if done:
        _save_model(out / "model", jax.device_get(full), jax.device_get(rest), config, total)
    metrics = evaluate(predict, full, rest, splits["test"], config.batch_size)
    transfer = {}
    for r in config.eval_regions:
        other = tile_region(_region(r, config), config.tile)["test"]
        transfer[r] = evaluate(predict, full, rest, other, config.batch_size)
    (out / "history.json").write_text(json.dumps(history) + "\n")
    summary: dict[str, Any] = {
        "command": "agb train",
        "model": mcfg.kind,
        "encoder": None if mcfg.kind == "unet" else mcfg.encoder,
        "decoder": None if mcfg.kind == "unet" else mcfg.decoder,
        "region": config.region,
        "epochs": len(history["epoch"]),
        "finished": done,
        "metrics": metrics,
        "transfer": transfer,
        "train_labels": train_set.n_labels(),
        "train_tiles": len(train_set),
        "parameters": count_params(full),
        "trainable_parameters": count_params(ts["params"]),
        "seconds": round(seconds, 3),
        "checkpoint": info["checkpoint"],
        "init_from": info["init_from"],
        "out": str(out),
    }
    if plots is not None:
        summary["plots"] = [
            str(p)
            for p in _train_plots(Path(plots), region, splits, config, predict, full, rest, history)
        ]
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def predict_scene(
    predict: Callable, params: dict, rest: dict, region: Region, tile: int, batch_size: int
) -> np.ndarray:
    """Biomass over the whole scene, tile by tile (pixels past the last whole tile: NaN)."""
    x = normalize(region.scene.reflectance)
    h, w = region.agb.shape
    origins = [(r, c) for r in range(0, h - tile + 1, tile) for c in range(0, w - tile + 1, tile)]
    tiles = np.stack([x[r : r + tile, c : c + tile] for r, c in origins])
    pred = _predict_tiles(predict, params, rest, tiles, batch_size)
    out = np.full((h, w), np.nan, np.float32)
    for (r, c), p in zip(origins, pred, strict=True):
        out[r : r + tile, c : c + tile] = p
    return out


# ----------------------------------------------------------------------------------------------
# Plots
# ----------------------------------------------------------------------------------------------


def _rgb(refl: np.ndarray, like: np.ndarray | None = None) -> np.ndarray:
    """True-colour image with a per-channel 2-98 % stretch (TOA haze lifts blue more than
    red), the stretch taken from ``like`` when given (a reconstruction shown as its input)."""
    img = np.nan_to_num(refl[..., [2, 1, 0]]).astype(np.float64)
    ref = img if like is None else np.nan_to_num(like[..., [2, 1, 0]]).astype(np.float64)
    lo = np.percentile(ref, 2, axis=(0, 1))
    hi = np.percentile(ref, 98, axis=(0, 1))
    return np.clip((img - lo) / (hi - lo + 1e-6), 0.0, 1.0) ** (1 / 1.5)


def _train_plots(
    folder: Path,
    region: Region,
    splits: dict[str, TileSet],
    config: TrainConfig,
    predict: Callable,
    params: dict,
    rest: dict,
    history: dict,
) -> list[Path]:
    from matplotlib.patches import Rectangle

    plt = _plt()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    name = f"{config.model.kind}_{config.region}"

    # 1. Image, sparse labels, predicted map and the (synthetic) truth, test tiles outlined.
    pred = predict_scene(predict, params, rest, region, config.tile, config.batch_size)
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.6))
    axes[0].imshow(_rgb(region.scene.reflectance))
    axes[0].set_title(f"{region.scene.name}: RGB", fontsize=9)
    rows, cols = np.nonzero(region.labels != IGNORE)
    axes[1].imshow(_rgb(region.scene.reflectance) * 0.35 + 0.65)
    sc = axes[1].scatter(
        cols, rows, c=region.labels[rows, cols], s=1.5, cmap="viridis", vmin=0, vmax=300
    )
    axes[1].set_xlim(0, region.agb.shape[1])
    axes[1].set_ylim(region.agb.shape[0], 0)
    axes[1].set_title(f"GEDI-like footprints ({rows.size} labels)", fontsize=9)
    axes[2].imshow(pred, cmap="viridis", vmin=0, vmax=300)
    axes[2].set_title(f"predicted ({config.model.kind})", fontsize=9)
    axes[3].imshow(
        np.where(region.scene.valid, region.agb, np.nan), cmap="viridis", vmin=0, vmax=300
    )
    axes[3].set_title("synthetic truth (valid land)", fontsize=9)
    for r, c in splits["test"].origin:
        for ax in axes[2:]:
            ax.add_patch(
                Rectangle(
                    (c - 0.5, r - 0.5), config.tile, config.tile, fill=False, ec="red", lw=0.6
                )
            )
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(sc, ax=axes, fraction=0.015, pad=0.01, label="AGB (Mg/ha)")
    fig.suptitle("biomass, red boxes: test tiles", fontsize=10)
    path = folder / f"map_{name}.png"
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    written.append(path)

    # 2. Predicted vs label at the test footprints, with the 1:1 line.
    test = splits["test"]
    p = _predict_tiles(predict, params, rest, test.x, config.batch_size)
    m = test.y != IGNORE
    stats = binned_rmse(p, test.y)
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(test.y[m], p[m], s=4, alpha=0.35, lw=0)
    ax.plot([0, 300], [0, 300], "k--", lw=1, label="1:1")
    ax.set_xlim(0, 300)
    ax.set_ylim(0, max(300.0, float(np.nanmax(p[m])) if m.any() else 300.0))
    ax.set_xlabel("label (Mg/ha)")
    ax.set_ylabel("predicted (Mg/ha)")
    rmse = stats["rmse"]
    ax.set_title(
        f"test footprints: n={stats['n']}, RMSE "
        + ("n/a" if rmse is None else f"{rmse:.1f}")
        + " Mg/ha",
        fontsize=10,
    )
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = folder / f"scatter_{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)

    # 3. Loss curve.
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(history["epoch"], history["loss"], "o-", ms=3, label="train masked RMSE")
    vals = [np.nan if v is None else v for v in history["val_rmse"]]
    ax.plot(history["epoch"], vals, "s--", ms=3, label="val RMSE")
    ax.set_xlabel("epoch")
    ax.set_ylabel("RMSE (Mg/ha)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = folder / f"loss_{name}.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)
    return written


def _pretrain_plots(
    folder: Path,
    config: PretrainConfig,
    mdef: ModuleDef,
    ts: dict,
    images: list[np.ndarray],
    history: dict,
) -> list[Path]:
    from .simmim import block_mask

    plt = _plt()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(history["epoch"], history["loss"], "o-", ms=3)
    ax.set_xlabel("epoch")
    ax.set_ylabel("SimMIM L1 (masked pixels)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = folder / "pretrain_loss.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)

    crops = _pretrain_epoch(images, config, 0)[:4]
    g = config.crop // config.mask_patch
    mask = block_mask(jax.random.key(1), len(crops), g, g, config.mask_ratio)
    model = mdef.merge(ts["params"], ts["state"]["rest"])
    recon = np.asarray(model(jnp.asarray(crops), mask))
    mpx = np.repeat(np.repeat(np.asarray(mask), config.mask_patch, 1), config.mask_patch, 2)

    def rgb(z: np.ndarray, like: np.ndarray) -> np.ndarray:
        def refl(a: np.ndarray) -> np.ndarray:
            return a * np.asarray(HLS_STD) + np.asarray(HLS_MEAN)

        return _rgb(refl(z), refl(like))

    fig, axes = plt.subplots(len(crops), 3, figsize=(7.5, 2.5 * len(crops)), squeeze=False)
    for i in range(len(crops)):
        shown = rgb(crops[i], crops[i])
        axes[i, 0].imshow(shown)
        axes[i, 1].imshow(np.where(mpx[i][..., None] > 0, 0.5, shown))
        axes[i, 2].imshow(np.where(mpx[i][..., None] > 0, rgb(recon[i], crops[i]), shown))
        for ax, t in zip(axes[i], ("crop", "masked", "reconstruction"), strict=True):
            ax.set_title(t, fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    path = folder / "pretrain_reconstruction.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    written.append(path)
    return written


def rmse_table_row(summary: dict[str, Any]) -> dict[str, Any]:
    """The numbers of a training summary that the experiment tables print."""
    m = summary["metrics"]
    return {
        "rmse": m["rmse"],
        "rmse_0_100": m["rmse_0_100"],
        "rmse_100_200": m["rmse_100_200"],
        "rmse_200_300": m["rmse_200_300"],
        "dense_rmse": m["dense_rmse"],
        "trainable_parameters": summary["trainable_parameters"],
        "seconds": summary["seconds"],
    }
