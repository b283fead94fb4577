"""The shell of ``jaxgeo hsi pretrain`` and ``jaxgeo hsi finetune``: read a patch store, build
the pieces, loop over epochs with checkpoints, write plots and a summary.

Every step's randomness is ``fold_in(fold_in(key(seed), epoch), batch)`` and the batch order
is a function of ``(seed, epoch)`` (:meth:`PatchStore.batches`), and a checkpoint is written
after every epoch, so a run resumed with ``--resume`` is bit for bit the uninterrupted one.
When the batch size is a multiple of the number of devices, steps run data-parallel over all of
them (:func:`jaxgeo.train.data_parallel`).

Pretraining writes ``OUT/run.json``, ``OUT/checkpoints/`` (the whole training state, for
resuming), ``OUT/backbone/`` (the backbone's parameters and batch statistics: what
``finetune --checkpoint OUT`` loads) and ``OUT/history.json``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from jaxgeo.errors import ConfigError, FileFormatError
from jaxgeo.train import (
    ModuleDef,
    RunDir,
    count_params,
    data_mesh,
    data_parallel,
    init_train_state,
    make_train_step,
    progress,
    shard_batch,
    split_module,
    warmup_cosine,
)

from .backbones import BACKBONES, make_backbone
from .finetune import (
    MODES,
    TASKS,
    TaskModel,
    confusion_matrix,
    is_segmentation,
    make_finetune_loss,
    make_predict,
    metrics_from_confusion,
    split_trainable,
)
from .ssl import METHODS, make_method
from .store import CROPTYPE_COLORS, LANDCOVER_COLORS, PatchStore, normalize_raw

__all__ = [
    "FinetuneConfig",
    "PretrainConfig",
    "embed",
    "finetune",
    "load_backbone",
    "pca_2d",
    "pretrain",
]

log = logging.getLogger("jaxgeo.hsi")

# Published recipes of the original methods (linear scaling lr = base * batch / 256), which
# SpectralEarth's pretraining follows: MoCo-v2 SGD 0.03, wd 1e-4 (Chen et al. 2020); DINO AdamW
# 5e-4, wd 0.04 (Caron et al. 2021); MAE AdamW(0.9, 0.95) 1.5e-4, wd 0.05 (He et al. 2022).
_RECIPES: dict[str, dict[str, Any]] = {
    "moco": {"optimizer": "sgd", "base_lr": 0.03, "weight_decay": 1e-4},
    "dino": {"optimizer": "adamw", "base_lr": 5e-4, "weight_decay": 0.04},
    "mae": {"optimizer": "adamw", "base_lr": 1.5e-4, "weight_decay": 0.05, "b2": 0.95},
}


def _check_training(cfg: Any) -> None:
    """The checks :class:`PretrainConfig` and :class:`FinetuneConfig` share."""
    if cfg.backbone not in BACKBONES:
        raise ConfigError(f"backbone must be one of {', '.join(BACKBONES)}, got {cfg.backbone!r}")
    for name in ("epochs", "batch_size"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.warmup_epochs < 0:
        raise ConfigError(f"warmup_epochs must be >= 0, got {cfg.warmup_epochs}")
    if cfg.lr is not None and cfg.lr <= 0:
        raise ConfigError(f"lr must be > 0, got {cfg.lr}")


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """Settings of a pretraining run (defaults: the published setting).

    Attributes:
        method: ``moco``, ``dino`` or ``mae``.
        backbone: A name of :data:`jaxgeo.hsi.backbones.BACKBONES`.
        epochs, batch_size: Schedule (100 epochs, 256 patches).
        lr: Peak learning rate; None: the method's base rate times ``batch_size / 256``.
        weight_decay: None: the method's.
        warmup_epochs: Linear warm-up before the cosine decay.
        seed: Initialisation, batch order and augmentation seed.
        multi_temporal: MoCo takes positives across dates when the store has two.
        method_settings: Overrides of the method's settings (e.g. ``queue_size``).
    """

    method: str = "moco"
    backbone: str = "spec-resnet50"
    epochs: int = 100
    batch_size: int = 256
    lr: float | None = None
    weight_decay: float | None = None
    warmup_epochs: int = 10
    seed: int = 0
    multi_temporal: bool = True
    method_settings: dict[str, Any] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        _check_training(self)
        if self.method == "mae" and "vit" not in self.backbone:
            raise ConfigError(f"method mae needs a ViT backbone, got {self.backbone}")
        try:
            make_method(self.method, **self.method_settings)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"method settings: {err}") from err

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _wd_mask(params: Any) -> Any:
    # Decay weights, not biases and normalisation scales (the usual practice of all three).
    return jax.tree_util.tree_map(lambda x: x.ndim >= 2, params)


def make_optimizer(
    kind: str,
    lr: float,
    weight_decay: float,
    total_steps: int,
    warmup_steps: int,
    b2: float = 0.999,
) -> optax.GradientTransformation:
    """SGD with momentum 0.9 or AdamW, on a warm-up + cosine schedule."""
    schedule = warmup_cosine(lr, total_steps, min(warmup_steps, total_steps))
    if kind == "sgd":
        return optax.chain(
            optax.add_decayed_weights(weight_decay, mask=_wd_mask),
            optax.sgd(schedule, momentum=0.9),
        )
    return optax.adamw(schedule, b2=b2, weight_decay=weight_decay, mask=_wd_mask)


def _stepper(step: Callable, batch_size: int) -> tuple[Callable, Callable[[dict], Any]]:
    """Jit ``step``: data-parallel over all devices when the batch splits evenly.

    The returned step places the train state on the devices as the compiled step expects it
    (replicated), so the first call and every later one hit the same executable.
    """
    n_dev = jax.device_count()
    if n_dev > 1 and batch_size % n_dev == 0:
        mesh = data_mesh()
        replicated = NamedSharding(mesh, PartitionSpec())
        compiled = data_parallel(step, mesh)

        def run(ts: Any, batch: Any, key: jax.Array) -> Any:
            return compiled(jax.device_put(ts, replicated), batch, key)

        return run, lambda b: shard_batch(b, mesh)
    return jax.jit(step), lambda b: jax.device_put(b)


def _model_batch(batch: dict[str, np.ndarray], keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    return {k: batch[k] for k in keys if k in batch}


def _store(path: str | Path) -> PatchStore:
    return PatchStore.open(path)


def _steps_per_epoch(store: PatchStore, batch_size: int) -> int:
    n = store.indices("train").size
    if n < batch_size:
        raise ConfigError(
            f"batch_size {batch_size} is larger than the {n} training patches of {store.path}"
        )
    return n // batch_size


@functools.lru_cache(maxsize=8)
def _pretrain_step(
    config_json: str, n_bands: int, steps_per_epoch: int, lr: float, wd: float
) -> tuple[Callable, Callable, Callable]:
    """``(init(key) -> train state, step, put)`` of a pretraining setting, jitted and cached so
    that repeated runs (seeds, resumes, experiment tables, other stores) reuse the executables.
    The step takes the store's int16 patches and normalises them itself, on the device, with
    ``batch["norm"]``: the store's :attr:`~PatchStore.normalization` ``(a, b)`` repeated along
    the batch axis (``(batch, 2, bands)``, so it is split over devices like the data)."""
    config = PretrainConfig(**json.loads(config_json))
    method = make_method(config.method, **config.method_settings)
    recipe = _RECIPES[config.method]
    net = nnx.eval_shape(
        lambda: method.build(make_backbone(config.backbone, n_bands, rngs=nnx.Rngs(0)), nnx.Rngs(0))
    )
    mdef = ModuleDef(net)
    total = steps_per_epoch * config.epochs
    tx = make_optimizer(
        recipe["optimizer"], lr, wd, total, config.warmup_epochs * steps_per_epoch,
        recipe.get("b2", 0.999),
    )  # fmt: skip
    base_step = make_train_step(method.make_loss(mdef), tx, method.make_after_update(total))

    def step_fn(ts: Any, batch: dict, key: jax.Array) -> Any:
        a, b = batch["norm"][0, 0], batch["norm"][0, 1]
        data = {k: normalize_raw(v, a, b) for k, v in batch.items() if k != "norm"}
        return base_step(ts, data, key)

    step, put = _stepper(step_fn, config.batch_size)

    @jax.jit
    def init(key: jax.Array) -> dict:
        k_init, k_state = jax.random.split(key)
        rngs = nnx.Rngs(k_init)
        module = method.build(make_backbone(config.backbone, n_bands, rngs=rngs), rngs)
        params, rest = ModuleDef.params(module), ModuleDef.rest(module)
        return init_train_state(params, method.init_state(params, rest, k_state, total), tx)

    return init, step, put


def pretrain(
    data: str | Path,
    config: PretrainConfig,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    plots: str | Path | None = None,
    stop_after_epochs: int | None = None,
) -> dict[str, Any]:
    """Self-supervised pretraining on the train split of a patch store.

    Args:
        data: Patch store.
        config: Settings.
        out: Run folder.
        resume: Continue from the latest checkpoint in ``out``.
        overwrite: Replace a run in ``out``.
        plots: Folder for PNG figures (loss curve, PCA of embeddings), or None.
        stop_after_epochs: Stop after this many epochs in total, as if interrupted (tests).

    Returns:
        The JSON summary (also written to ``out/summary.json``).

    Raises:
        ConfigError, FileFormatError, StoreExistsError: Bad settings, store or run folder.
    """
    store = _store(data)
    method = make_method(config.method, **config.method_settings)
    recipe = _RECIPES[config.method]
    lr = config.lr if config.lr is not None else recipe["base_lr"] * config.batch_size / 256
    wd = config.weight_decay if config.weight_decay is not None else recipe["weight_decay"]
    steps_per_epoch = _steps_per_epoch(store, config.batch_size)
    if config.method == "moco" and method.queue_size % config.batch_size:  # type: ignore[union-attr]
        raise ConfigError(
            f"moco queue_size {method.queue_size} must be a multiple of "  # type: ignore[union-attr]
            f"batch_size {config.batch_size}"
        )
    if config.method == "moco":
        try:
            method.groups(config.batch_size)  # type: ignore[union-attr]
        except ValueError as err:
            raise ConfigError(str(err)) from None
    with_t2 = config.method == "moco" and config.multi_temporal and store.has_second_date
    info = {
        "kind": "pretrain",
        "config": config.to_dict(),
        "store": str(Path(data).absolute()),
        "n_bands": store.n_bands,
        "sensor": store.sensor,
    }
    run = RunDir(out, info, resume=resume, overwrite=overwrite, free=())
    try:
        k_model, key = jax.random.split(jax.random.key(config.seed))
        init, step, put = _pretrain_step(
            json.dumps({**config.to_dict(), "seed": 0}, sort_keys=True),
            store.n_bands,
            steps_per_epoch,
            lr,
            wd,
        )
        norm = np.ascontiguousarray(
            np.broadcast_to(
                np.stack(store.normalization)[None], (config.batch_size, 2, store.n_bands)
            )
        )
        ts = init(k_model)
        history: dict[str, list[float]] = {"epoch": [], "loss": [], "seconds": []}
        restored = run.restore(ts)
        if restored is not None:
            ts, meta = restored
            history = meta["history"]
        last = config.epochs if stop_after_epochs is None else min(stop_after_epochs, config.epochs)
        start_epoch = len(history["epoch"])
        t0 = time.perf_counter()
        n_seen = 0
        for epoch in range(start_epoch, last):
            t_epoch = time.perf_counter()
            losses = []
            batches = store.batches(
                "train", config.batch_size, seed=config.seed, epoch=epoch, with_t2=with_t2,
                raw=True,
            )  # fmt: skip
            for i, batch in enumerate(
                progress(batches, total=steps_per_epoch, desc=f"epoch {epoch + 1}")
            ):
                k = jax.random.fold_in(jax.random.fold_in(key, epoch), i)
                ts, metrics = step(ts, put({**_model_batch(batch, ("x", "x2")), "norm": norm}), k)
                losses.append(metrics["loss"])
                n_seen += batch["x"].shape[0]
            loss = float(np.mean([float(v) for v in losses]))
            if not np.isfinite(loss):
                raise FloatingPointError(f"pretraining loss is {loss} at epoch {epoch + 1}")
            history["epoch"].append(epoch + 1)
            history["loss"].append(loss)
            history["seconds"].append(time.perf_counter() - t_epoch)
            log.info("epoch %d loss %.4f", epoch + 1, loss)
            # Host copies: orbax writes NumPy arrays faster than replicated device arrays.
            run.save(epoch + 1, jax.device_get(ts), {"history": history})
        seconds = time.perf_counter() - t0
    finally:
        run.close()
    bb_params, bb_rest = ts["params"]["backbone"], ts["state"]["rest"].get("backbone", {})
    out = Path(out)
    finished = len(history["epoch"]) >= config.epochs
    if finished:
        _save_backbone(out / "backbone", config.backbone, bb_params, bb_rest, len(history["epoch"]))
    (out / "history.json").write_text(json.dumps(history) + "\n")
    summary: dict[str, Any] = {
        "command": "hsi pretrain",
        "method": config.method,
        "backbone": config.backbone,
        "sensor": store.sensor,
        "n_bands": store.n_bands,
        "epochs": len(history["epoch"]),
        "finished": finished,
        "final_loss": history["loss"][-1] if history["loss"] else None,
        "seconds": round(seconds, 3),
        "patches_per_second": round(n_seen / seconds, 3) if n_seen and seconds > 0 else None,
        "parameters": count_params(ts["params"]),
        "trainable_parameters": count_params(ts["params"]),
        "backbone_parameters": count_params(bb_params),
        "out": str(out),
    }
    if plots is not None and finished:
        summary["plots"] = [
            str(p)
            for p in _pretrain_plots(
                Path(plots), store, config.backbone, bb_params, bb_rest, history
            )
        ]
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _save_backbone(path: Path, name: str, params: Any, rest: Any, step: int) -> None:
    from jaxgeo.io import save_snapshot

    save_snapshot(path, step, {"params": params, "rest": rest}, {"backbone": name})


def load_backbone(checkpoint: str | Path, n_bands: int) -> tuple[dict, dict, str]:
    """The backbone a pretraining run saved, rebuilt for ``n_bands`` bands.

    Spectral backbones load for any band count (cross-sensor transfer); the no-adapter
    baselines only for the band count they were pretrained on.

    Returns:
        ``(params, rest, name)`` of the backbone (build it with :func:`make_backbone`).

    Raises:
        FileFormatError: No finished pretraining run in ``checkpoint``, or its parameters do
            not fit (a baseline on another band count).
    """
    from jaxgeo.io import Checkpointer

    ckpt_dir = Path(checkpoint)
    run_json = ckpt_dir / "run.json"
    if not run_json.is_file() or not (ckpt_dir / "backbone").is_dir():
        raise FileFormatError(
            f"{ckpt_dir} holds no finished pretraining run (run.json and backbone/ expected); "
            "run `jaxgeo hsi pretrain --out DIR` to the end first"
        )
    info = json.loads(run_json.read_text())
    name = info["config"]["backbone"]
    abstract = nnx.eval_shape(lambda: make_backbone(name, n_bands, rngs=nnx.Rngs(0)))
    _, params, rest = split_module(abstract)
    with Checkpointer(ckpt_dir / "backbone", create=False) as ckpt:
        try:
            state, _ = ckpt.restore(target={"params": params, "rest": rest})
        except FileFormatError as err:
            raise FileFormatError(
                f"backbone {name} of {ckpt_dir} (pretrained on {info.get('n_bands')} bands) "
                f"does not fit {n_bands} bands: {err}"
            ) from err
    return state["params"], state["rest"], name


# ----------------------------------------------------------------------------------------------
# Fine-tuning
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Settings of a downstream run (defaults: the published linear-probe / fine-tune setting).

    Attributes:
        task: ``landcover``, ``croptype`` or ``landcover_patch``.
        mode: ``linear``, ``frozen`` or ``full``.
        backbone: Backbone for random initialisation (``checkpoint=None``); ignored otherwise.
        epochs, batch_size, lr, weight_decay, warmup_epochs, seed: AdamW on a warm-up +
            cosine schedule.
    """

    task: str = "landcover"
    mode: str = "frozen"
    backbone: str = "spec-resnet50"
    epochs: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup_epochs: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {', '.join(TASKS)}, got {self.task!r}")
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        _check_training(self)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _eval_batches(store: PatchStore, split: str, task: str, batch_size: int) -> Iterator[dict]:
    return store.batches(split, batch_size, seed=0, epoch=0, drop_last=False, task=task)


def _evaluate(
    predict: Callable, params: Any, rest: Any, store: PatchStore, split: str, task: str,
    batch_size: int, n_classes: int,
) -> tuple[dict[str, Any], np.ndarray]:  # fmt: skip
    conf = np.zeros((n_classes, n_classes), np.int64)
    for batch in _eval_batches(store, split, task, batch_size):
        pred = np.asarray(predict(params, rest, jnp.asarray(batch["x"])))
        conf += confusion_matrix(batch["y"], pred, n_classes)
    return metrics_from_confusion(conf), conf


@functools.lru_cache(maxsize=16)
def _finetune_parts(
    config_json: str, n_bands: int, n_classes: int, steps_per_epoch: int
) -> tuple[ModuleDef, optax.GradientTransformation, Callable, Callable, Callable, Callable]:
    """``(mdef, tx, init, step, put, predict)`` of a downstream setting, jitted and cached."""
    config = FinetuneConfig(**json.loads(config_json))

    def factory(rngs: nnx.Rngs) -> TaskModel:
        backbone = make_backbone(config.backbone, n_bands, rngs=rngs)
        return TaskModel(backbone, config.task, config.mode, n_classes, rngs=rngs)

    mdef = ModuleDef(nnx.eval_shape(lambda: factory(nnx.Rngs(0))))

    @jax.jit
    def init(key: jax.Array) -> tuple[dict, dict]:
        module = factory(nnx.Rngs(key))
        return ModuleDef.params(module), ModuleDef.rest(module)

    total = steps_per_epoch * config.epochs
    tx = make_optimizer(
        "adamw", config.lr, config.weight_decay, total, config.warmup_epochs * steps_per_epoch
    )
    step, put = _stepper(
        make_train_step(make_finetune_loss(mdef, config.mode), tx), config.batch_size
    )
    return mdef, tx, init, step, put, jax.jit(make_predict(mdef))


def finetune(
    data: str | Path,
    config: FinetuneConfig,
    out: str | Path,
    *,
    checkpoint: str | Path | None = None,
    resume: bool = False,
    overwrite: bool = False,
    plots: str | Path | None = None,
    stop_after_epochs: int | None = None,
) -> dict[str, Any]:
    """Train a task head (and, in ``full`` mode, the backbone) and evaluate on the test split.

    Args:
        data: Patch store (may be of another sensor than the pretraining store).
        config: Settings.
        out: Run folder.
        checkpoint: A pretraining run folder, or None for a randomly initialised backbone.
        resume, overwrite, plots, stop_after_epochs: As for :func:`pretrain`.

    Returns:
        The JSON summary (``metrics`` on the test split; also in ``out/summary.json``).
    """
    store = _store(data)
    n_classes = store.n_classes(config.task)
    steps_per_epoch = _steps_per_epoch(store, config.batch_size)
    if checkpoint is None:
        backbone_name = config.backbone
        loaded = None
    else:
        bb_params, bb_rest, backbone_name = load_backbone(checkpoint, store.n_bands)
        loaded = (bb_params, bb_rest)

    mdef, tx, init, step, put, predict = _finetune_parts(
        json.dumps({**config.to_dict(), "seed": 0, "backbone": backbone_name}, sort_keys=True),
        store.n_bands,
        n_classes,
        steps_per_epoch,
    )
    params, rest = init(jax.random.key(config.seed))
    if loaded is not None:
        params = {**params, "backbone": loaded[0]}
        rest = {**rest, "backbone": loaded[1]}
    trained, fixed = split_trainable(params, config.mode)
    info = {
        "kind": "finetune",
        "config": {**config.to_dict(), "backbone": backbone_name},
        "store": str(Path(data).absolute()),
        "checkpoint": None if checkpoint is None else str(Path(checkpoint).absolute()),
        "n_bands": store.n_bands,
    }
    run = RunDir(out, info, resume=resume, overwrite=overwrite, free=())
    ts = init_train_state(trained, {"fixed": fixed, "rest": rest}, tx)
    history: dict[str, list[float]] = {"epoch": [], "loss": [], "val_accuracy": []}
    try:
        restored = run.restore(ts)
        if restored is not None:
            ts, meta = restored
            history = meta["history"]
        key = jax.random.key(config.seed)
        last = config.epochs if stop_after_epochs is None else min(stop_after_epochs, config.epochs)
        t0 = time.perf_counter()
        for epoch in range(len(history["epoch"]), last):
            losses = []
            batches = store.batches(
                "train", config.batch_size, seed=config.seed, epoch=epoch, task=config.task
            )
            for i, batch in enumerate(
                progress(batches, total=steps_per_epoch, desc=f"epoch {epoch + 1}")
            ):
                k = jax.random.fold_in(jax.random.fold_in(key, epoch), i)
                ts, metrics = step(ts, put(_model_batch(batch, ("x", "y"))), k)
                losses.append(metrics["loss"])
            full = {**ts["state"]["fixed"], **ts["params"]}
            val, _ = _evaluate(
                predict,
                full,
                ts["state"]["rest"],
                store,
                "val",
                config.task,
                config.batch_size,
                n_classes,
            )
            history["epoch"].append(epoch + 1)
            history["loss"].append(float(np.mean([float(v) for v in losses])))
            history["val_accuracy"].append(val["accuracy"])
            log.info(
                "epoch %d loss %.4f val acc %.4f", epoch + 1, history["loss"][-1], val["accuracy"]
            )
            # Host copies: orbax writes NumPy arrays faster than replicated device arrays.
            run.save(epoch + 1, jax.device_get(ts), {"history": history})
        seconds = time.perf_counter() - t0
    finally:
        run.close()
    full = {**ts["state"]["fixed"], **ts["params"]}
    metrics, conf = _evaluate(
        predict, full, ts["state"]["rest"], store, "test", config.task, config.batch_size, n_classes
    )
    out = Path(out)
    (out / "history.json").write_text(json.dumps(history) + "\n")
    summary: dict[str, Any] = {
        "command": "hsi finetune",
        "task": config.task,
        "mode": config.mode,
        "backbone": backbone_name,
        "checkpoint": info["checkpoint"],
        "sensor": store.sensor,
        "n_bands": store.n_bands,
        "epochs": len(history["epoch"]),
        "metrics": metrics,
        "confusion": conf.tolist(),
        "seconds": round(seconds, 3),
        "parameters": count_params(full),
        "trainable_parameters": count_params(ts["params"]),
        "out": str(out),
    }
    if plots is not None:
        summary["plots"] = [
            str(p)
            for p in _finetune_plots(
                Path(plots), store, config, mdef, predict, full, ts["state"]["rest"], history
            )
        ]
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# ----------------------------------------------------------------------------------------------
# Embeddings and plots
# ----------------------------------------------------------------------------------------------


def embed(
    backbone_name: str, params: Any, rest: Any, x: np.ndarray, *, batch_size: int = 64
) -> np.ndarray:
    """Pooled embeddings ``(n, d)`` of patches ``x`` (eval mode)."""
    module = make_backbone(backbone_name, x.shape[-1], rngs=nnx.Rngs(0))
    mdef = ModuleDef(module)
    f = jax.jit(lambda p, r, xb: mdef.merge(p, r)(xb))
    return np.concatenate(
        [
            np.asarray(f(params, rest, jnp.asarray(x[i : i + batch_size])))
            for i in range(0, len(x), batch_size)
        ]
    )


def pca_2d(z: np.ndarray) -> np.ndarray:
    """Projection of the rows of ``z`` on their first two principal components."""
    z = np.asarray(z, np.float64)
    z = z - z.mean(axis=0)
    _, _, vt = np.linalg.svd(z, full_matrices=False)
    return z @ vt[:2].T


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_loss(
    path: Path, history: dict[str, list[float]], title: str, extra: str | None = None
) -> Path:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(history["epoch"], history["loss"], "o-", label="train loss")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if extra and history.get(extra):
        ax2 = ax.twinx()
        ax2.plot(history["epoch"], history[extra], "s--", color="C1", label=extra.replace("_", " "))
        ax2.set_ylabel(extra.replace("_", " "))
        ax2.legend(loc="center right", fontsize=8)
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _plot_pca(
    path: Path, z: np.ndarray, labels: np.ndarray, classes: tuple[str, ...], title: str
) -> Path:
    plt = _plt()
    p = pca_2d(z)
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for c, name in enumerate(classes):
        sel = labels == c
        if sel.any():
            ax.scatter(p[sel, 0], p[sel, 1], s=12, label=name, color=f"C{c % 10}")
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _sample(store: PatchStore, n: int = 256) -> np.ndarray:
    idx = store.indices("test")
    if idx.size == 0:
        idx = np.arange(store.n_patches)
    return idx[:n]


def _pretrain_plots(
    folder: Path, store: PatchStore, name: str, params: Any, rest: Any, history: dict
) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    idx = _sample(store)
    z = embed(name, params, rest, store.read(idx))
    labels = store.labels(idx, "landcover_patch")
    return [
        _plot_loss(folder / "pretrain_loss.png", history, f"pretraining loss ({name})"),
        _plot_pca(
            folder / "embeddings_pca.png", z, labels, store.landcover_classes,
            f"PCA of {name} embeddings (test patches), by land cover",
        ),
    ]  # fmt: skip


def _finetune_plots(
    folder: Path, store: PatchStore, config: FinetuneConfig, mdef: ModuleDef, predict: Callable,
    params: Any, rest: Any, history: dict,
) -> list[Path]:  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    written = [
        _plot_loss(
            folder / "finetune_loss.png", history,
            f"{config.task} / {config.mode}: training loss", "val_accuracy",
        )
    ]  # fmt: skip
    idx = _sample(store, 4 if is_segmentation(config.task) else 256)
    x = store.read(idx)
    if is_segmentation(config.task):
        plt = _plt()
        classes = store.croptype_classes if config.task == "croptype" else store.landcover_classes
        y = store.labels(idx, config.task)
        pred = np.asarray(predict(params, rest, jnp.asarray(x)))
        k = len(classes)
        # The dataset plot's class colours when the store has the generator's classes.
        from matplotlib.colors import ListedColormap

        palette = CROPTYPE_COLORS if config.task == "croptype" else LANDCOVER_COLORS
        colors = [
            palette[c] if c < len(palette) else plt.get_cmap("tab10")(c % 10) for c in range(k)
        ]
        cmap = ListedColormap(colors)
        fig, axes = plt.subplots(len(idx), 2, figsize=(6, 3 * len(idx)), squeeze=False)
        for i in range(len(idx)):
            axes[i, 0].imshow(
                np.ma.masked_less(y[i], 0), cmap=cmap, vmin=-0.5, vmax=k - 0.5,
                interpolation="nearest",
            )  # fmt: skip
            axes[i, 0].set_title("label (blank: unlabeled)", fontsize=8)
            axes[i, 1].imshow(pred[i], cmap=cmap, vmin=-0.5, vmax=k - 0.5, interpolation="nearest")
            axes[i, 1].set_title("prediction", fontsize=8)
            for ax in axes[i]:
                ax.set_xticks([])
                ax.set_yticks([])
        handles = [plt.Rectangle((0, 0), 1, 1, color=colors[c]) for c in range(k)]
        fig.legend(handles, list(classes), loc="lower center", ncol=4, fontsize=7, frameon=False)
        fig.tight_layout(rect=(0, 0.06, 1, 1))
        path = folder / "predicted_maps.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    bb = mdef.merge(params, rest).backbone
    bdef = ModuleDef(bb)
    f = jax.jit(lambda p, r, xb: bdef.merge(p, r)(xb))
    xs = store.read(_sample(store))
    z = np.concatenate(
        [
            np.asarray(f(params["backbone"], rest.get("backbone", {}), jnp.asarray(xs[i : i + 64])))
            for i in range(0, len(xs), 64)
        ]
    )
    written.append(
        _plot_pca(
            folder / "embeddings_pca.png", z, store.labels(_sample(store), "landcover_patch"),
            store.landcover_classes, f"PCA of {bb.name} embeddings after {config.mode}",
        )
    )  # fmt: skip
    return written
