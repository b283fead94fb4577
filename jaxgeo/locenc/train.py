"""Training and evaluation of location encoders: optax, early stopping, checkpoints, metrics.

The functional core is two factories, :func:`make_train_epoch` and :func:`make_evaluate`, that
return pure functions of a plain parameter dict (the form :func:`jaxgeo.locenc.params_dict`
gives; the NNX module is rebuilt inside with ``nnx.merge``); :func:`fit` is the shell that jits
them once, loops over epochs, keeps the best parameters on the validation loss, stops after
``patience`` epochs without improvement, and checkpoints everything a resume needs (parameters,
optimiser state, best parameters, counters, history) through :class:`jaxgeo.io.Checkpointer`.
Every epoch's randomness (shuffling, dropout) is ``fold_in(key(seed), epoch)``, so a run resumed
from a checkpoint is bit for bit the uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jaxtyping import Array, Float

from jaxgeo.config import from_dict, option
from jaxgeo.errors import ConfigError, FileFormatError, StoreExistsError
from jaxgeo.train.state import path_keys

from .datasets import Dataset, Split
from .model import LocationEncoder, ModelConfig, abstract_model, params_dict, set_params

__all__ = [
    "FitResult",
    "TrainConfig",
    "classification_metrics",
    "fit",
    "make_evaluate",
    "make_train_epoch",
    "regression_metrics",
]

log = logging.getLogger("jaxgeo.locenc")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (Adam with decoupled weight decay, early stopping)."""

    epochs: int = option(200, doc="maximum number of epochs", ge=1)
    batch_size: int = option(1024, doc="mini-batch size", ge=1)
    learning_rate: float = option(1e-3, doc="Adam learning rate", gt=0.0)
    weight_decay: float = option(0.0, doc="decoupled weight decay (AdamW)", ge=0.0)
    patience: int = option(20, doc="epochs without validation improvement before stopping", ge=1)
    seed: int = option(0, doc="seed of initialisation, shuffling and dropout", ge=0)
    checkpoint_every: int = option(10, doc="epochs between checkpoints", ge=1)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        return from_dict(cls, data)


# ----------------------------------------------------------------------------------------------
# Parameters as plain dicts <-> NNX state
# ----------------------------------------------------------------------------------------------


def _make_merge(model: LocationEncoder) -> Callable[[dict], LocationEncoder]:
    """A pure function ``params dict -> module`` for this model's structure."""
    graphdef, state = nnx.split(model, nnx.Param)
    paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
    paths = [path_keys(p) for p, _ in paths_leaves]

    def lookup(tree: dict, keys: tuple[str, ...]) -> Any:
        for k in keys:
            tree = tree[k]
        return tree

    def merge(params: dict) -> LocationEncoder:
        leaves = [lookup(params, keys) for keys in paths]
        return nnx.merge(graphdef, jax.tree_util.tree_unflatten(treedef, leaves))

    return merge


# ----------------------------------------------------------------------------------------------
# Losses and metrics
# ----------------------------------------------------------------------------------------------


def _loss(task: str, out: Float[Array, "b o"], y: Array) -> Float[Array, ""]:
    if task == "classification":
        return optax.softmax_cross_entropy_with_integer_labels(out, y).mean()
    return jnp.mean((out[..., 0] - y) ** 2)


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> dict:
    """Accuracy and mean intersection-over-union over the classes present in truth or prediction."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    ious = []
    for c in range(n_classes):
        t, p = y_true == c, y_pred == c
        union = np.sum(t | p)
        if union:
            ious.append(np.sum(t & p) / union)
    return {"accuracy": float(np.mean(y_true == y_pred)), "iou": float(np.mean(ious))}


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """Mean absolute and root-mean-square errors, in the target's units."""
    err = np.asarray(y_pred, np.float64) - np.asarray(y_true, np.float64)
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2)))}


# ----------------------------------------------------------------------------------------------
# Factories (pure functions; the caller jits)
# ----------------------------------------------------------------------------------------------


def make_train_epoch(
    model: LocationEncoder, tx: optax.GradientTransformation, task: str, batch_size: int
) -> Callable:
    """One epoch of mini-batch training as a pure function.

    Returns:
        ``epoch(params, opt_state, lon, lat, y, key) -> (params, opt_state, mean_loss)``:
        shuffles the n training points with ``key``, runs ``n // batch_size`` steps (the
        remainder, different every epoch, is left out; one step on everything when n is
        smaller than a batch) in a ``lax.scan``, with dropout keys split from ``key``.
    """
    merge = _make_merge(model)

    def loss_fn(params, lon, lat, y, key):
        return _loss(task, merge(params)(lon, lat, key), y)

    grad_fn = jax.value_and_grad(loss_fn)

    def epoch(params, opt_state, lon, lat, y, key):
        n = lon.shape[0]
        bs = min(batch_size, n)
        n_steps = n // bs
        perm_key, drop_key = jax.random.split(key)
        idx = jax.random.permutation(perm_key, n)[: n_steps * bs].reshape(n_steps, bs)
        step_keys = jax.random.split(drop_key, n_steps)

        def step(carry, xs):
            p, s = carry
            b, k = xs
            loss, grads = grad_fn(p, lon[b], lat[b], y[b], k)
            # optax's Adam bias correction raises a float to an int32 count, which strict
            # promotion refuses; the update is all float32 (or all float64) otherwise.
            with jax.numpy_dtype_promotion("standard"):
                updates, s = tx.update(grads, s, p)
            return (optax.apply_updates(p, updates), s), loss

        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), (idx, step_keys))
        return params, opt_state, losses.mean()

    return epoch


def make_evaluate(model: LocationEncoder, task: str) -> Callable:
    """``evaluate(params, lon, lat, y) -> (loss, outputs)``, deterministic (no dropout)."""
    merge = _make_merge(model)

    def evaluate(params, lon, lat, y):
        out = merge(params)(lon, lat)
        return _loss(task, out, y), out

    return evaluate


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
    if config.weight_decay > 0.0:
        return optax.adamw(config.learning_rate, weight_decay=config.weight_decay)
    return optax.adam(config.learning_rate)


# ----------------------------------------------------------------------------------------------
# The shell: fit with early stopping, checkpoints and resume
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class FitResult:
    """What :func:`fit` returns."""

    model: LocationEncoder  # with the best (lowest validation loss) parameters
    history: dict[str, list[float]]  # epoch, train_loss, val_loss per epoch
    metrics: dict[str, float]  # on the test split
    train_seconds: float
    n_params: int
    epochs_run: int
    best_epoch: int


def _targets(dataset: Dataset, split: Split, dtype) -> Array:
    if dataset.task == "classification":
        return jnp.asarray(split.y, jnp.int32)
    return jnp.asarray((split.y - dataset.target_mean) / dataset.target_std, dtype)


@functools.lru_cache(maxsize=256)
def _jitted_apply(config: ModelConfig) -> Callable:
    merge = _make_merge(abstract_model(config))
    return jax.jit(lambda params, lon, lat: merge(params)(lon, lat))


@functools.lru_cache(maxsize=256)
def _jitted_training(config: ModelConfig, task: str, train: TrainConfig) -> tuple:
    # Compiled once per (model, task, optimiser, batch size): repeated fits (seeds, resumes,
    # experiment tables) reuse the executables instead of retracing new closures.
    model = abstract_model(config)
    tx = make_optimizer(train)
    epoch = jax.jit(make_train_epoch(model, tx, task, train.batch_size))
    return tx, epoch, jax.jit(make_evaluate(model, task))


def predict(
    model: LocationEncoder, dataset: Dataset, lon: np.ndarray, lat: np.ndarray
) -> np.ndarray:
    """Class indices (classification) or target values in the dataset's units (regression)."""
    fn = _jitted_apply(model.config)
    params = params_dict(model)
    flat_lon = np.asarray(np.ravel(lon), model.dtype)
    flat_lat = np.asarray(np.ravel(lat), model.dtype)
    out = np.concatenate(
        [
            np.asarray(fn(params, flat_lon[i : i + 65536], flat_lat[i : i + 65536]))
            for i in range(0, flat_lon.size, 65536)
        ]
    )
    if dataset.task == "classification":
        return out.argmax(-1).reshape(np.shape(lon))
    return (out[..., 0] * dataset.target_std + dataset.target_mean).reshape(np.shape(lon))


def evaluate_metrics(model: LocationEncoder, dataset: Dataset, split: Split) -> dict[str, float]:
    pred = predict(model, dataset, split.lon, split.lat)
    if dataset.task == "classification":
        return classification_metrics(split.y, pred, dataset.n_classes)
    return regression_metrics(split.y, pred)


def _check_model_for(dataset: Dataset, config: ModelConfig) -> None:
    if config.n_out != dataset.n_out:
        raise ConfigError(
            f"model n_out must be {dataset.n_out} for dataset {dataset.name}, got {config.n_out}"
        )


RUN_JSON = "run.json"


def _comparable(run_info: dict) -> dict:
    info = json.loads(json.dumps(run_info))
    for key in ("epochs", "checkpoint_every"):
        info.get("train_config", {}).pop(key, None)
    return info


def fit(
    dataset: Dataset,
    model_config: ModelConfig,
    train_config: TrainConfig,
    *,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    stop_after_epochs: int | None = None,
) -> FitResult:
    """Train on ``dataset.train``, early-stop on ``dataset.val``, report metrics on ``dataset.test``.

    Args:
        dataset: the data (see :mod:`jaxgeo.locenc.datasets`).
        model_config: encoder to build (``n_out`` must match the dataset).
        train_config: optimisation settings.
        checkpoint_dir: where to checkpoint every ``checkpoint_every`` epochs and at the end
            (None: no checkpoints). A ``run.json`` there records both configs.
        resume: continue from the latest checkpoint in ``checkpoint_dir`` (configs must match).
        stop_after_epochs: stop (and checkpoint) after this many epochs in total, as if
            interrupted; for tests of resume.

    Returns:
        A :class:`FitResult` whose model holds the best parameters.

    Raises:
        ConfigError: the model does not fit the dataset, or a resumed run's configs differ.
        StoreExistsError: checkpoints exist and ``resume`` is False.
        FileFormatError: ``resume`` without a checkpoint to resume from.
    """
    _check_model_for(dataset, model_config)
    run_info = {
        "model_config": model_config.to_dict(),
        "train_config": train_config.to_dict(),
        "dataset": dataset.name,
    }
    ckpt = None
    if checkpoint_dir is not None:
        checkpoint_dir = Path(checkpoint_dir)
        run_json = checkpoint_dir / RUN_JSON
        if resume:
            if not run_json.is_file():
                raise FileFormatError(f"cannot resume: {run_json} not found")
            saved = json.loads(run_json.read_text())
            # A resumed run may be given more epochs (or another checkpoint cadence); anything
            # else changes what the checkpoint means.
            if _comparable(saved) != _comparable(json.loads(json.dumps(run_info))):
                raise ConfigError(
                    f"cannot resume from {checkpoint_dir}: its run used other settings ({saved})"
                )
        elif run_json.exists():
            raise StoreExistsError(
                f"{checkpoint_dir} already holds a run; use --resume or another directory"
            )
        # Imported only here: runs without checkpoints (experiment tables on a bare GPU
        # machine) need neither orbax nor jaxgeo.io's zarr.
        from jaxgeo.io import Checkpointer

        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        run_json.write_text(json.dumps(run_info, indent=2) + "\n")
        ckpt = Checkpointer(checkpoint_dir / "checkpoints", max_to_keep=2)

    model = LocationEncoder(model_config, rngs=nnx.Rngs(train_config.seed))
    dtype = model.dtype
    # Settings that do not change the compiled step are normalised out of the cache key.
    key_config = dataclasses.replace(train_config, epochs=1, patience=1, seed=0, checkpoint_every=1)
    tx, epoch_fn, eval_fn = _jitted_training(model_config, dataset.task, key_config)
    params = params_dict(model)
    state = {
        "params": params,
        "opt_state": tx.init(params),
        "best_params": params,
        "epoch": 0,
        "best_val": math.inf,
        "bad_epochs": 0,
    }
    history: dict[str, list[float]] = {"epoch": [], "train_loss": [], "val_loss": []}
    if resume and ckpt is not None:
        state, meta = ckpt.restore(target=state)
        history = meta["history"]
        log.info("resumed from epoch %d", state["epoch"])

    tr, va = dataset.train, dataset.val
    tr_lon, tr_lat = jnp.asarray(tr.lon, dtype), jnp.asarray(tr.lat, dtype)
    tr_y = _targets(dataset, tr, dtype)
    va_lon, va_lat = jnp.asarray(va.lon, dtype), jnp.asarray(va.lat, dtype)
    va_y = _targets(dataset, va, dtype)
    base_key = jax.random.key(train_config.seed)
    last = train_config.epochs if stop_after_epochs is None else stop_after_epochs

    def save() -> None:
        if ckpt is not None and state["epoch"] not in ckpt.all_steps():
            ckpt.save(state["epoch"], state, {"history": history})

    start = time.perf_counter()
    try:
        while (
            state["epoch"] < min(last, train_config.epochs)
            and state["bad_epochs"] < train_config.patience
        ):
            epoch = state["epoch"] + 1
            key = jax.random.fold_in(base_key, epoch)
            params, opt_state, train_loss = epoch_fn(
                state["params"], state["opt_state"], tr_lon, tr_lat, tr_y, key
            )
            val_loss = float(eval_fn(params, va_lon, va_lat, va_y)[0])
            improved = val_loss < state["best_val"]
            state = {
                "params": params,
                "opt_state": opt_state,
                "best_params": params if improved else state["best_params"],
                "epoch": epoch,
                "best_val": val_loss if improved else state["best_val"],
                "bad_epochs": 0 if improved else state["bad_epochs"] + 1,
            }
            history["epoch"].append(epoch)
            history["train_loss"].append(float(train_loss))
            history["val_loss"].append(val_loss)
            log.info("epoch %d train %.4g val %.4g", epoch, float(train_loss), val_loss)
            if epoch % train_config.checkpoint_every == 0:
                save()
        save()
    finally:
        if ckpt is not None:
            ckpt.close()
    train_seconds = time.perf_counter() - start

    set_params(model, state["best_params"])
    metrics = evaluate_metrics(model, dataset, dataset.test)
    n_params = int(sum(np.size(x) for x in jax.tree_util.tree_leaves(state["params"])))
    val_losses = history["val_loss"]
    best_epoch = int(history["epoch"][int(np.argmin(val_losses))]) if val_losses else 0
    return FitResult(model, history, metrics, train_seconds, n_params, state["epoch"], best_epoch)
