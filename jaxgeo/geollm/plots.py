"""PNG plots of GeoLLM predictions: predicted vs true labels, a map of residuals (on a light
backdrop of GeoNames places, which outlines where people live), and a loss curve."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .labels import pearson_r2

__all__ = ["plot_predictions"]


def _plt():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_predictions(
    out_dir: str | Path,
    lat: np.ndarray,
    lon: np.ndarray,
    true: np.ndarray,
    pred: np.ndarray,
    *,
    title: str,
    stem: str,
    history: dict | None = None,
) -> list[Path]:
    """Write ``{stem}_scatter.png``, ``{stem}_residual_map.png`` and (with ``history``)
    ``{stem}_loss.png`` to ``out_dir``; returns the files."""
    from .gazetteer import load_cities500

    plt = _plt()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []

    fig, ax = plt.subplots(figsize=(5.2, 5))
    ax.scatter(true, pred, s=6, alpha=0.5, lw=0)
    ax.plot([0, 9.9], [0, 9.9], "k--", lw=0.8, label="prediction = truth")
    ax.set_xlabel("true rank label")
    ax.set_ylabel("predicted rank label")
    ax.set_xlim(-0.3, 10.2)
    ax.set_title(f"{title}\nPearson r² = {pearson_r2(pred, true):.3f}, n = {len(true)}", fontsize=9)
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / f"{stem}_scatter.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    resid = np.asarray(pred) - np.asarray(true)
    span_lon = (float(np.min(lon)) - 3, float(np.max(lon)) + 3)
    span_lat = (float(np.min(lat)) - 3, float(np.max(lat)) + 3)
    gaz = load_cities500()
    inside = (
        (gaz.lon_deg > span_lon[0]) & (gaz.lon_deg < span_lon[1])
        & (gaz.lat_deg > span_lat[0]) & (gaz.lat_deg < span_lat[1])
    )  # fmt: skip
    back = np.flatnonzero(inside)[:: max(1, int(inside.sum()) // 40_000)]
    fig, ax = plt.subplots(figsize=(10, 5.2))
    ax.scatter(gaz.lon_deg[back], gaz.lat_deg[back], s=0.3, c="0.85", lw=0, rasterized=True)
    lim = float(np.quantile(np.abs(resid), 0.98)) or 1.0
    sc = ax.scatter(lon, lat, c=resid, s=8, cmap="RdBu_r", vmin=-lim, vmax=lim, lw=0)
    fig.colorbar(sc, ax=ax, label="predicted − true rank label", shrink=0.85)
    ax.set_xlim(*span_lon)
    ax.set_ylim(max(-90, span_lat[0]), min(90, span_lat[1]))
    ax.set_xlabel("longitude (°E)")
    ax.set_ylabel("latitude (°N)")
    ax.set_title(f"{title}: residuals on the test set (grey: GeoNames places)", fontsize=9)
    fig.tight_layout()
    path = out / f"{stem}_residual_map.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    if history and history.get("loss"):
        fig, ax = plt.subplots(figsize=(5, 3.2))
        ax.plot(history["epoch"], history["loss"], "o-")
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel("mean training loss (standardised MSE)")
        ax.set_title(title, fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / f"{stem}_loss.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written
