"""One training run, end to end: dataset, fit, saved encoder, plots, JSON summary.

Output folder layout::

    OUT/run.json              both configs and the dataset name
    OUT/checkpoints/          orbax checkpoints for --resume
    OUT/encoder/              the best model (load with jaxgeo.locenc.load_encoder)
    OUT/map.png               prediction beside the truth over the globe
    OUT/learning_curve.png    training and validation loss per epoch
    OUT/summary.json          the summary line printed on stdout
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

from jaxgeo.errors import StoreExistsError

from .datasets import load_dataset
from .model import ModelConfig, save_encoder
from .train import TrainConfig, fit

log = logging.getLogger("jaxgeo.locenc")

__all__ = ["train_run"]


def train_run(
    dataset_name: str,
    model_config: ModelConfig,
    train_config: TrainConfig,
    out: str | Path,
    *,
    n_points: int = 10_000,
    overwrite: bool = False,
    resume: bool = False,
    plots: bool = True,
) -> dict[str, Any]:
    """Train and evaluate one encoding × network on a dataset; write everything under ``out``.

    Returns:
        The summary dict (dataset, encoding, network, L, test metrics, train seconds,
        parameter count, epochs, best epoch, output folder).

    Raises:
        StoreExistsError: ``out`` holds a run and neither ``overwrite`` nor ``resume`` is set.
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not resume:
        if not overwrite:
            raise StoreExistsError(f"{out} exists; pass --overwrite to replace it or --resume")
        shutil.rmtree(out)
    dataset = load_dataset(dataset_name, n_points=n_points, seed=train_config.seed)
    if model_config.n_out != dataset.n_out:
        import dataclasses

        model_config = dataclasses.replace(model_config, n_out=dataset.n_out)
    result = fit(dataset, model_config, train_config, checkpoint_dir=out, resume=resume)
    encoder_dir = out / "encoder"
    if encoder_dir.exists():
        shutil.rmtree(encoder_dir)
    enc = model_config.encoding
    summary: dict[str, Any] = {
        "ok": True,
        "command": "locenc train",
        "dataset": dataset.name,
        "encoding": enc.name,
        "network": model_config.network,
        "L": enc.degree if enc.name == "sh" else None,
        "n_features": enc.n_features,
        "seed": train_config.seed,
        **{f"test_{k}": v for k, v in result.metrics.items()},
        "train_seconds": round(result.train_seconds, 3),
        "parameters": result.n_params,
        "epochs": result.epochs_run,
        "best_epoch": result.best_epoch,
        "out": str(out),
    }
    save_encoder(result.model, encoder_dir, metadata={"summary": summary})
    if plots:
        from .plots import plot_learning_curve, plot_prediction_map

        label = f"{enc.name}" + (f" L={enc.degree}" if enc.name == "sh" else "")
        label += f" × {model_config.network}"
        plot_prediction_map(result.model, dataset, out / "map.png", title=label)
        plot_learning_curve(result.history, out / "learning_curve.png", title=label)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
