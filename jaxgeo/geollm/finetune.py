"""Fine-tuning the pretrained encoder with a regression head on rank labels (the paper's
RoBERTa arm, Manvi et al. 2024, §4.2), and the shell of ``jaxgeo geollm finetune``.

Optimiser: AdamW with linear warm-up and cosine decay (:func:`jaxgeo.train.warmup_cosine`),
weight decay on matrices only. ``mode="full"`` trains every parameter; ``mode="lora"`` adds
rank-``r`` LoRA factors to the query and value projections and trains only those and the head.
The head regresses standardised labels ``(label - 4.95) / 2.87`` (a uniform label on
[0, 9.9] has that mean and standard deviation) with a squared error.

Every epoch visits the training set in an order that is a function of ``(seed, epoch)``, the
step function is deterministic (no dropout) and a checkpoint is written after every epoch, so
a run resumed with ``--resume`` is bit for bit the uninterrupted one.
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

from jaxgeo.errors import ConfigError
from jaxgeo.train import (
    ModuleDef,
    RunDir,
    count_params,
    init_train_state,
    make_train_step,
    progress,
    warmup_cosine,
)

from .bert import load_pretrained_regressor
from .dataset import GeoDataset
from .labels import pearson_r2
from .prompts import VARIANTS
from .tokenizer import tokenize

__all__ = [
    "LABEL_MEAN",
    "LABEL_STD",
    "MODES",
    "FinetuneConfig",
    "finetune",
    "make_loss",
    "make_optimizer",
    "make_predict",
    "merge_params",
    "split_trainable",
]

log = logging.getLogger("jaxgeo.geollm")
MODES = ("full", "lora")
LABEL_MEAN, LABEL_STD = 4.95, 2.87


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Settings of a fine-tuning run.

    Attributes:
        train_size: Training prompts (the first of the dataset's training pool).
        variant: Prompt variant (:data:`jaxgeo.geollm.prompts.VARIANTS`).
        mode: ``full`` or ``lora``.
        lora_rank: Rank of the LoRA factors (``mode="lora"``).
        epochs, batch_size: Schedule (8 epochs of 16 prompts: about 5,000 steps at 10,000).
        lr: Peak learning rate (5e-5 full, as for BERT-family regressors; use ~1e-3 for LoRA).
        weight_decay: AdamW decay of matrices.
        warmup_fraction: Share of the steps spent warming up.
        max_length: Longest prompt kept, in tokens (each batch is padded to its longest
            prompt rounded up to 32 tokens).
        seed: Head initialisation and batch order.
    """

    train_size: int = 10_000
    variant: str = "full"
    mode: str = "full"
    lora_rank: int = 8
    epochs: int = 8
    batch_size: int = 16
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_fraction: float = 0.1
    max_length: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.variant not in VARIANTS:
            raise ConfigError(f"variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
        for name in ("train_size", "epochs", "batch_size", "lora_rank"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise ConfigError(
                f"need lr > 0 and weight_decay >= 0, got {self.lr}, {self.weight_decay}"
            )
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ConfigError(f"warmup_fraction must be in [0, 1), got {self.warmup_fraction}")
        if not 8 <= self.max_length <= 512:
            raise ConfigError(f"max_length must be in [8, 512], got {self.max_length}")
        if self.batch_size > self.train_size:
            raise ConfigError(
                f"batch_size {self.batch_size} is larger than train_size {self.train_size}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def split_trainable(params: dict, mode: str) -> tuple[dict, dict]:
    """``(trained, fixed)`` nested dicts: everything is trained in ``full`` mode; only the
    LoRA factors and the head in ``lora`` mode."""

    def split(tree: dict, path: tuple[str, ...]) -> tuple[dict, dict]:
        trained: dict = {}
        fixed: dict = {}
        for k, v in tree.items():
            if isinstance(v, dict):
                t, f = split(v, (*path, k))
                if t:
                    trained[k] = t
                if f:
                    fixed[k] = f
            elif mode == "full" or path[:1] == ("head",) or k.startswith("lora_"):
                trained[k] = v
            else:
                fixed[k] = v
        return trained, fixed

    return split(params, ())


def merge_params(a: dict, b: dict) -> dict:
    """Deep union of two nested dicts with disjoint leaves (the inverse of
    :func:`split_trainable`)."""
    out = dict(a)
    for k, v in b.items():
        out[k] = merge_params(out[k], v) if k in out and isinstance(v, dict) else v
    return out


def make_loss(mdef: ModuleDef) -> Callable:
    """``loss(trained, state, batch, key) -> (mse, (state, {}))`` on standardised labels.

    The parameters that are not trained come in ``batch["fixed"]``: they are inputs of the
    step like the data, so checkpoints (of the train state) hold only what training changes,
    and a LoRA checkpoint is a fraction of a megabyte instead of the whole encoder.
    """

    def loss_fn(trained: dict, state: dict, batch: dict, key: jax.Array) -> Any:
        del key  # deterministic model
        model = mdef.merge(merge_params(batch["fixed"], trained), {})
        pred = model(batch["input_ids"], batch["attention_mask"])
        return jnp.mean((pred - batch["y"]) ** 2), (state, {})

    return loss_fn


def make_predict(mdef: ModuleDef) -> Callable:
    """``predict(params, input_ids, attention_mask) -> labels`` (back on the 0-9.9 scale)."""

    def predict(params: dict, input_ids: jax.Array, attention_mask: jax.Array) -> jax.Array:
        return mdef.merge(params, {})(input_ids, attention_mask) * LABEL_STD + LABEL_MEAN

    return predict


def _wd_mask(params: Any) -> Any:
    return jax.tree_util.tree_map(lambda x: x.ndim >= 2, params)


def make_optimizer(cfg: FinetuneConfig, total_steps: int) -> optax.GradientTransformation:
    """AdamW on a linear warm-up + cosine schedule."""
    warm = min(int(cfg.warmup_fraction * total_steps), total_steps)
    schedule = warmup_cosine(cfg.lr, total_steps, warm)
    return optax.adamw(schedule, weight_decay=cfg.weight_decay, mask=_wd_mask)


# The settings the compiled step depends on: runs that differ only in data, variant, size
# of the training set (at equal step counts) or seed share one compiled program.
_PROGRAM_KEYS = ("mode", "lora_rank", "lr", "weight_decay", "warmup_fraction")


def _program_key(cfg: FinetuneConfig) -> str:
    return json.dumps({k: getattr(cfg, k) for k in _PROGRAM_KEYS}, sort_keys=True)


@functools.lru_cache(maxsize=8)
def _parts(program_json: str, total_steps: int) -> tuple[ModuleDef, optax.GradientTransformation,
                                                         Callable, Callable]:  # fmt: skip
    """``(mdef, tx, step, predict)`` of a setting, jitted once per process."""
    cfg = FinetuneConfig(**json.loads(program_json))
    mdef, _, _ = load_pretrained_regressor(cfg.lora_rank if cfg.mode == "lora" else 0, 0)
    tx = make_optimizer(cfg, total_steps)
    step = jax.jit(make_train_step(make_loss(mdef), tx))
    return mdef, tx, step, jax.jit(make_predict(mdef))


def _width(mask_rows: np.ndarray, cap: int, bucket: int | None = 32) -> int:
    """Columns a batch needs: its longest prompt rounded up to ``bucket`` tokens (at most
    ``cap``; ``bucket=None``: always ``cap``). Prompts run ~100-250 tokens: on a CPU, padding
    each batch to its own bucket instead of the dataset's longest prompt saves a fifth of the
    compute for a handful of compiled shapes; on an accelerator one shape is cheaper."""
    if bucket is None:
        return cap
    longest = int(mask_rows.sum(axis=1).max())
    return min(cap, -(-longest // bucket) * bucket)


def _predict_all(
    predict: Callable,
    params: dict,
    ids: np.ndarray,
    mask: np.ndarray,
    batch_size: int,
    bucket: int | None = 32,
) -> np.ndarray:
    out = []
    for s in range(0, len(ids), batch_size):
        w = _width(mask[s : s + batch_size], ids.shape[1], bucket)
        i, m = ids[s : s + batch_size, :w], mask[s : s + batch_size, :w]
        pad = batch_size - len(i)
        if pad:  # one compiled shape: pad the last batch with empty rows
            i = np.concatenate([i, np.zeros((pad, i.shape[1]), i.dtype)])
            m = np.concatenate([m, np.zeros((pad, m.shape[1]), m.dtype)])
        out.append(np.asarray(predict(params, i, m))[: batch_size - pad])
    return np.concatenate(out).astype(np.float64)


def finetune(
    data: str | Path | GeoDataset,
    config: FinetuneConfig,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    plots: str | Path | None = None,
    stop_after_epochs: int | None = None,
    test_limit: int | None = None,
    token_bucket: int | None = 32,
) -> dict[str, Any]:
    """Fine-tune on ``config.train_size`` prompts and evaluate r² on the test split.

    Args:
        data: A dataset store (or a loaded :class:`GeoDataset`).
        config: Settings.
        out: Run folder (``run.json``, ``checkpoints/``, ``history.json``,
            ``predictions.npz``, ``summary.json``).
        resume: Continue the run in ``out`` from its last checkpoint.
        overwrite: Start afresh in a folder that holds a run.
        plots: Folder for PNG plots (None: none).
        stop_after_epochs: Stop after this many epochs (to test resuming).
        test_limit: Evaluate on the first this many test samples only (smoke tests).
        token_bucket: Each batch is padded to its longest prompt rounded up to this many
            tokens (a few compiled shapes, the least compute: for CPUs); None pads every
            batch to ``config.max_length`` (one compiled shape shared by every run of the
            same optimiser settings and step count: for accelerators). Results do not depend
            on it beyond round-off (padding is masked).

    Returns:
        The JSON summary (also in ``out/summary.json``).
    """
    if token_bucket is not None and (isinstance(token_bucket, bool) or token_bucket < 1):
        raise ConfigError(
            f"token_bucket must be a positive number of tokens (or None: pad to max_length; "
            f"0 on the command line), got {token_bucket!r}"
        )
    ds = data if isinstance(data, GeoDataset) else GeoDataset.open(data)
    train_idx = ds.train_indices(config.train_size)
    test_idx = ds.test_indices if test_limit is None else ds.test_indices[:test_limit]
    texts = ds.prompts(np.concatenate([train_idx, test_idx]), config.variant)
    tok = tokenize(texts, max_length=config.max_length)
    if token_bucket is None:
        width = config.max_length
    else:  # a multiple of the batch buckets
        width = int(-(-tok.input_ids.shape[1] // token_bucket) * token_bucket)
    ids = np.zeros((len(texts), width), np.int32)
    mask = np.zeros((len(texts), width), np.int32)
    ids[:, : tok.input_ids.shape[1]] = tok.input_ids
    mask[:, : tok.input_ids.shape[1]] = tok.attention_mask
    n_train = len(train_idx)
    y = ((ds.label[train_idx] - LABEL_MEAN) / LABEL_STD).astype(np.float32)

    steps_per_epoch = n_train // config.batch_size
    total = steps_per_epoch * config.epochs
    mdef, tx, step, predict = _parts(_program_key(config), total)
    _, params, _ = load_pretrained_regressor(
        config.lora_rank if config.mode == "lora" else 0, config.seed
    )
    trained, fixed = split_trainable(params, config.mode)
    info = {
        "kind": "geollm finetune",
        "config": config.to_dict(),
        "data": str(Path(data).absolute()) if not isinstance(data, GeoDataset) else "<memory>",
        "target": ds.config.target,
        "tokens": width,
    }
    run = RunDir(out, info, resume=resume, overwrite=overwrite, free=())
    ts = init_train_state(trained, {}, tx)
    history: dict[str, list[float]] = {"epoch": [], "loss": [], "seconds": []}
    key = jax.random.key(config.seed)
    try:
        restored = run.restore(ts)
        if restored is not None:
            ts, meta = restored
            history = meta["history"]
        last = config.epochs if stop_after_epochs is None else min(stop_after_epochs, config.epochs)
        for epoch in range(len(history["epoch"]), last):
            t0 = time.perf_counter()
            order = np.random.default_rng([config.seed, epoch]).permutation(n_train)
            losses = []
            for i in progress(range(steps_per_epoch), total=steps_per_epoch,
                              desc=f"epoch {epoch + 1}/{config.epochs}"):  # fmt: skip
                rows = order[i * config.batch_size : (i + 1) * config.batch_size]
                w = _width(mask[rows], width, token_bucket)
                batch = {
                    "input_ids": ids[rows, :w],
                    "attention_mask": mask[rows, :w],
                    "y": y[rows],
                    "fixed": fixed,
                }
                ts, metrics = step(ts, batch, jax.random.fold_in(key, epoch * 100_003 + i))
                losses.append(metrics["loss"])
            history["epoch"].append(epoch + 1)
            history["loss"].append(float(np.mean([float(v) for v in losses])))
            history["seconds"].append(round(time.perf_counter() - t0, 3))
            log.info("epoch %d loss %.4f (%.1f s)", epoch + 1, history["loss"][-1],
                     history["seconds"][-1])  # fmt: skip
            run.save(epoch + 1, jax.device_get(ts), {"history": history})
    finally:
        run.close()
    full = merge_params(fixed, ts["params"])
    pred = _predict_all(
        predict, full, ids[n_train:], mask[n_train:], config.batch_size, token_bucket
    )
    true = ds.label[test_idx]
    r2 = pearson_r2(pred, true)
    out = Path(out)
    np.savez(
        out / "predictions.npz", lat=ds.lat[test_idx], lon=ds.lon[test_idx], true=true, pred=pred
    )
    (out / "history.json").write_text(json.dumps(history) + "\n")
    summary: dict[str, Any] = {
        "command": "geollm finetune",
        "target": ds.config.target,
        "config": config.to_dict(),
        "epochs": len(history["epoch"]),
        "steps": int(ts["step"]),
        "final_loss": history["loss"][-1] if history["loss"] else None,
        "r2": r2,
        "n_train": n_train,
        "n_test": len(test_idx),
        "tokens": width,
        "truncated_prompts": int(tok.truncated.sum()),
        "seconds_per_step": (
            round(sum(history["seconds"]) / max(1, int(ts["step"])), 4)
            if history["seconds"]
            else None
        ),
        "parameters": count_params(full),
        "trainable_parameters": count_params(ts["params"]),
        "out": str(out),
    }
    if plots is not None:
        from .plots import plot_predictions

        summary["plots"] = [
            str(p)
            for p in plot_predictions(
                Path(plots), ds.lat[test_idx], ds.lon[test_idx], true, pred,
                title=f"LM fine-tuned ({config.mode}), {ds.task}, n={n_train}",
                stem="finetune", history=history,
            )
        ]  # fmt: skip
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
