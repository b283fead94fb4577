"""PNG plots of a trained location encoder: predicted map over the globe, learning curves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .datasets import Dataset, map_grid
from .model import LocationEncoder
from .train import predict

__all__ = ["plot_learning_curve", "plot_prediction_map"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_prediction_map(
    model: LocationEncoder,
    dataset: Dataset,
    path: str | Path,
    *,
    n_lat: int = 180,
    n_lon: int = 360,
    title: str = "",
) -> Path:
    """Predicted classes (or values) on a regular lon/lat grid beside the truth, as a PNG."""
    plt = _pyplot()
    lon, lat = map_grid(n_lat, n_lon)
    pred = predict(model, dataset, lon, lat)
    truth = dataset.truth(lon, lat)
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6), constrained_layout=True)
    extent = (-180.0, 180.0, -90.0, 90.0)
    if dataset.task == "classification":
        kw = {
            "cmap": "tab20" if dataset.n_classes > 2 else "cividis",
            "vmin": 0,
            "vmax": max(dataset.n_classes - 1, 1),
            "interpolation": "nearest",
        }
    else:
        lo, hi = np.percentile(truth, [1, 99])
        kw = {"cmap": "viridis", "vmin": lo, "vmax": hi}
    for ax, field, name in ((axes[0], pred, "prediction"), (axes[1], truth, "truth")):
        im = ax.imshow(field, extent=extent, origin="upper", aspect="auto", **kw)
        ax.set_title(f"{name}" + (f": {title}" if title and name == "prediction" else ""))
        ax.set_xlabel("longitude (°E)")
        ax.set_ylabel("latitude (°N)")
    fig.colorbar(im, ax=axes, label=dataset.units or "class", shrink=0.9)
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_learning_curve(
    history: dict[str, list[float]], path: str | Path, *, title: str = ""
) -> Path:
    """Training and validation loss per epoch (log scale) as a PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4), constrained_layout=True)
    ax.plot(history["epoch"], history["train_loss"], label="train")
    ax.plot(history["epoch"], history["val_loss"], label="validation")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
