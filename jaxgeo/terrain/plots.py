"""Figures: hillshaded terrain, slope histograms, power spectra, loss curves."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from . import metrics

__all__ = ["hillshade", "plot_loss", "plot_samples", "plot_slope_spectra"]


def hillshade(
    z: np.ndarray,
    cell_size_m: tuple[float, float] = (1.0, 1.0),
    *,
    azimuth_deg: float = 315.0,
    altitude_deg: float = 45.0,
    exaggeration: float = 1.0,
) -> np.ndarray:
    """Lambertian shading in [0, 1] of a heightmap lit from ``azimuth_deg`` (clockwise from
    north) at ``altitude_deg`` above the horizon; row 0 is north.

    The cosine of the angle between the surface normal ``(-∂z/∂x, -∂z/∂y, 1)`` (x east,
    y north) and the direction to the sun, clipped at 0: a flat surface gets
    ``sin(altitude)``, a plane facing the sun square-on gets 1.
    """
    z = np.asarray(z, np.float64) * exaggeration
    dy, dx = cell_size_m
    dz_drow, dz_dx = np.gradient(z, dy, dx)
    dz_dy = -dz_drow  # rows run southwards
    az, alt = np.radians(azimuth_deg), np.radians(altitude_deg)
    sun = np.array([np.sin(az) * np.cos(alt), np.cos(az) * np.cos(alt), np.sin(alt)])
    norm = np.sqrt(dz_dx**2 + dz_dy**2 + 1.0)
    shade = (-dz_dx * sun[0] - dz_dy * sun[1] + sun[2]) / norm
    return np.clip(shade, 0.0, 1.0)


def _plt():  # noqa: ANN202
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _shaded(ax, z: np.ndarray, cell: tuple[float, float], vmin: float, vmax: float,
            title: str) -> None:  # fmt: skip
    from matplotlib.colors import LightSource  # noqa: F401  (colormap only)

    plt = _plt()
    rgb = plt.get_cmap("terrain")((z - vmin) / max(vmax - vmin, 1e-9))[..., :3]
    shade = hillshade(z, cell, exaggeration=3.0)[..., None]
    ax.imshow(np.clip(rgb * (0.35 + 0.65 * shade), 0, 1), interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_samples(
    path: Path,
    real: Sequence[np.ndarray],
    generated: Sequence[np.ndarray],
    cell_size_m: tuple[float, float],
    title: str,
    *,
    labels: tuple[str, str] = ("held-out terrain", "generated"),
) -> Path:
    """Hillshaded real patches (top row) above generated ones (bottom row), one colour scale
    per column."""
    plt = _plt()
    n = max(len(real), len(generated))
    fig, axes = plt.subplots(2, n, figsize=(2.4 * n, 5.0), squeeze=False)
    for j in range(n):
        pair = [a for a in (real[j] if j < len(real) else None,
                            generated[j] if j < len(generated) else None) if a is not None]  # fmt: skip
        vmin = min(float(a.min()) for a in pair)
        vmax = max(float(a.max()) for a in pair)
        for i, seq in enumerate((real, generated)):
            if j < len(seq):
                z = np.asarray(seq[j])
                _shaded(axes[i, j], z, cell_size_m, vmin, vmax,
                        f"{labels[i]}\n{z.min():.0f}–{z.max():.0f} m")  # fmt: skip
            else:
                axes[i, j].axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_slope_spectra(path: Path, series: dict[str, np.ndarray], title: str) -> Path:
    """Slope histograms (m per cell) and radially averaged power spectra of several sets of
    square heightmaps (``name -> (b, n, n)`` metres)."""
    plt = _plt()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    hi = max(float(np.percentile(metrics.slope(z), 99.5)) for z in series.values())
    bins = np.linspace(0.0, hi, 60)
    for i, (name, z) in enumerate(series.items()):
        s = metrics.slope(z).ravel()
        ax1.hist(s, bins=bins, density=True, histtype="step", lw=1.5, color=f"C{i}",
                 label=f"{name} (mean {s.mean():.1f})")  # fmt: skip
        k, p = metrics.radial_spectrum(z)
        ax2.loglog(k, p, "-", color=f"C{i}",
                   label=f"{name} (slope {metrics.spectrum_slope(z):.2f})")  # fmt: skip
    ax1.set_xlabel("slope (m per cell)")
    ax1.set_ylabel("density")
    ax1.legend(fontsize=7)
    ax1.grid(alpha=0.3)
    ax2.set_xlabel("wavenumber (cycles per patch)")
    ax2.set_ylabel("radially averaged power (m² · cells²)")
    ax2.legend(fontsize=7)
    ax2.grid(alpha=0.3, which="both")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_loss(path: Path, history: dict[str, list[float]], title: str) -> Path:
    """Training loss (and any other logged series sharing its steps) against step."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for key, values in history.items():
        if key != "step" and len(values) == len(history["step"]):
            ax.semilogy(history["step"], values, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
