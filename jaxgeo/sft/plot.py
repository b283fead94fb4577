"""Figures of a flux-transport run store: map snapshots, butterfly diagram, histories.

Everything reads the xarray Dataset of a run store (``jaxgeo sft run ... --out RUN.zarr``) and
writes PNG files; nothing here touches the simulation code.
"""

from __future__ import annotations

import logging
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import xarray as xr  # noqa: E402

log = logging.getLogger(__name__)

_DPI = 130


def _realization_labels(ds: xr.Dataset) -> list[str]:
    """Short per-realization labels from the parameter variables that vary."""
    n = ds.sizes.get("realization", 1)
    varying = []
    for name, var in ds.data_vars.items():
        if var.dims == ("realization",) and n > 1:
            vals = np.asarray(var.values)
            if np.issubdtype(vals.dtype, np.number) and np.ptp(vals) > 0:
                varying.append((name, vals))
    labels = []
    for r in range(n):
        if varying:
            labels.append(", ".join(f"{name}={vals[r]:g}" for name, vals in varying[:2]))
        else:
            labels.append(f"realization {r}")
    return labels


def _symmetric_limit(values: np.ndarray, percentile: float = 99.5) -> float:
    finite = np.abs(values[np.isfinite(values)])
    if finite.size == 0:
        return 1.0
    lim = float(np.percentile(finite, percentile))
    return lim if lim > 0 else float(finite.max() or 1.0)


def plot_maps(
    ds: xr.Dataset, out_dir: Path, *, realization: int = 0, n_snapshots: int = 3
) -> list[Path]:
    """Br maps at the first, middle and last stored times (symmetric colour scale)."""
    br = ds["br"].isel(realization=realization)
    n_t = br.sizes["time"]
    idx = sorted(set(np.linspace(0, n_t - 1, min(n_snapshots, n_t)).round().astype(int).tolist()))
    lim = _symmetric_limit(np.asarray(br.isel(time=idx[0]).values), 99.0)
    fig, axes = plt.subplots(
        len(idx), 1, figsize=(8.0, 2.9 * len(idx)), squeeze=False, constrained_layout=True
    )
    lon = ds["lon"].values
    lat = ds["lat"].values
    mesh = None
    for ax, i in zip(axes[:, 0], idx, strict=True):
        field = np.asarray(br.isel(time=i).values)
        mesh = ax.pcolormesh(
            lon, lat, field, cmap="RdBu_r", vmin=-lim, vmax=lim, shading="nearest", rasterized=True
        )
        ax.set_title(f"t = {float(ds['time'].values[i]):.1f} h")
        ax.set_ylabel("latitude [deg]")
        ax.set_xlim(0, 360)
        ax.set_ylim(-90, 90)
        ax.set_yticks([-90, -45, 0, 45, 90])
    axes[-1, 0].set_xlabel("Carrington longitude [deg]")
    assert mesh is not None
    fig.colorbar(mesh, ax=axes[:, 0], label="Br [G]", shrink=0.9, extend="both")
    label = _realization_labels(ds)[realization]
    fig.suptitle(f"Radial field snapshots ({label})")
    path = out_dir / f"maps_r{realization}.png"
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return [path]


def plot_butterfly(ds: xr.Dataset, out_dir: Path) -> list[Path]:
    """Longitude-averaged Br against time and latitude, one panel per realization (max 4)."""
    n_r = min(ds.sizes.get("realization", 1), 4)
    labels = _realization_labels(ds)
    zonal = ds["br"].isel(realization=slice(0, n_r)).mean("lon")
    values = np.asarray(zonal.values)
    lim = _symmetric_limit(values, 99.0)
    time = ds["time"].values
    lat = ds["lat"].values
    fig, axes = plt.subplots(
        n_r, 1, figsize=(8.0, 2.6 * n_r + 0.6), squeeze=False, constrained_layout=True
    )
    mesh = None
    for r in range(n_r):
        ax = axes[r, 0]
        mesh = ax.pcolormesh(
            time, lat, values[r].T, cmap="RdBu_r", vmin=-lim, vmax=lim, shading="nearest"
        )
        ax.set_ylabel("latitude [deg]")
        ax.set_ylim(-90, 90)
        ax.set_yticks([-90, -45, 0, 45, 90])
        ax.set_title(labels[r], fontsize=9)
    axes[-1, 0].set_xlabel("time [h]")
    assert mesh is not None
    fig.colorbar(mesh, ax=axes[:, 0], label="longitude-averaged Br [G]", extend="both")
    fig.suptitle("Butterfly diagram")
    path = out_dir / "butterfly.png"
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return [path]


def plot_histories(ds: xr.Dataset, out_dir: Path) -> list[Path]:
    """Unsigned flux, polar fields and dipoles against time for every realization."""
    t = ds["history_time"].values
    labels = _realization_labels(ds)
    n_r = ds.sizes.get("realization", 1)
    panels = [
        (
            "Unsigned flux [Mx]",
            lambda r: ds["flux_positive"].values[r] - ds["flux_negative"].values[r],
            None,
        ),
        (
            "Net flux [Mx]",
            lambda r: ds["flux_positive"].values[r] + ds["flux_negative"].values[r],
            None,
        ),
        ("Polar field north (lat > 60) [G]", lambda r: ds["polar_field_north"].values[r], None),
        ("Polar field south (lat < -60) [G]", lambda r: ds["polar_field_south"].values[r], None),
        ("Axial dipole [G]", lambda r: ds["ax_dipole"].values[r], None),
        ("Equatorial dipole [G]", lambda r: ds["eq_dipole"].values[r], None),
        (
            "Br max (solid) / min (dashed) [G]",
            lambda r: ds["br_max"].values[r],
            lambda r: ds["br_min"].values[r],
        ),
    ]
    if "validation_err_hhabs" in ds and np.any(np.asarray(ds["validation_err_hhabs"].values) > 0):
        panels.append(
            ("Validation error HHabs", lambda r: ds["validation_err_hhabs"].values[r], None)
        )
    ncols = 2
    nrows = (len(panels) + 1) // 2
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(11, 2.8 * nrows), squeeze=False, constrained_layout=True
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, (title, first, second) in enumerate(panels):
        ax = axes[k // ncols, k % ncols]
        for r in range(n_r):
            c = colors[r % len(colors)]
            ax.plot(t, first(r), color=c, lw=1.2, label=labels[r] if k == 0 else None)
            if second is not None:
                ax.plot(t, second(r), color=c, lw=1.2, ls="--")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("time [h]")
        ax.grid(alpha=0.3)
        if title.startswith("Validation"):
            ax.set_yscale("log")
    for k in range(len(panels), nrows * ncols):
        axes[k // ncols, k % ncols].axis("off")
    if n_r > 1:
        axes[0, 0].legend(fontsize=7)
    fig.suptitle("History")
    path = out_dir / "history.png"
    fig.savefig(path, dpi=_DPI)
    plt.close(fig)
    return [path]


def plot_spread(ds: xr.Dataset, out_dir: Path) -> list[Path]:
    """Ensemble spread: polar-field bands and a butterfly diagram of the standard deviation.

    Needs the statistics an ensemble run stores (``polar_field_*_mean/_std/_quantile``,
    ``br_std``); returns [] when they are absent (single realization).
    """
    paths: list[Path] = []
    if "polar_field_north_mean" in ds and ds.sizes.get("history_time", 0) > 1:
        t = ds["history_time"].values
        q = [float(v) for v in ds["quantile"].values]
        fig, axes = plt.subplots(2, 1, figsize=(9, 6), sharex=True, constrained_layout=True)
        for ax, pole in zip(axes, ("north", "south"), strict=True):
            name = f"polar_field_{pole}"
            mean = ds[f"{name}_mean"].values
            std = ds[f"{name}_std"].values
            quant = ds[f"{name}_quantile"].values
            lo, hi = quant[0], quant[-1]
            ax.fill_between(
                t,
                lo,
                hi,
                color="tab:blue",
                alpha=0.2,
                lw=0,
                label=f"{100 * q[0]:g}-{100 * q[-1]:g} %",
            )
            ax.fill_between(
                t, mean - std, mean + std, color="tab:blue", alpha=0.35, lw=0, label="mean ± std"
            )
            ax.plot(t, mean, color="tab:blue", lw=1.5, label="mean")
            if 0.5 in q:
                ax.plot(t, quant[q.index(0.5)], color="k", lw=0.8, ls="--", label="median")
            ax.set_ylabel(f"polar field {pole} [G]")
            ax.grid(alpha=0.3)
        axes[0].legend(fontsize=8)
        axes[-1].set_xlabel("time [h]")
        n_r = ds.sizes.get("realization", 0)
        fig.suptitle(f"Polar fields over {n_r} realizations")
        path = out_dir / "spread_polar_fields.png"
        fig.savefig(path, dpi=_DPI)
        plt.close(fig)
        paths.append(path)
    if "br_std" in ds and ds.sizes.get("time", 0) > 1:
        zonal_std = ds["br_std"].mean("lon")  # (time, lat)
        time, lat = ds["time"].values, ds["lat"].values
        values = np.asarray(zonal_std.values)
        fig, ax = plt.subplots(figsize=(9, 3.2), constrained_layout=True)
        vmax = float(np.nanpercentile(values, 99.5)) if np.isfinite(values).any() else 1.0
        mesh = ax.pcolormesh(
            time, lat, values.T, cmap="magma", vmin=0.0, vmax=vmax or 1.0, shading="nearest"
        )
        ax.set_ylabel("latitude [deg]")
        ax.set_xlabel("time [h]")
        ax.set_ylim(-90, 90)
        ax.set_yticks([-90, -45, 0, 45, 90])
        fig.colorbar(mesh, ax=ax, label="longitude-averaged ensemble std of Br [G]")
        fig.suptitle("Butterfly diagram of the ensemble standard deviation")
        path = out_dir / "spread_butterfly.png"
        fig.savefig(path, dpi=_DPI)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_run(ds: xr.Dataset, out_dir: str | Path) -> list[Path]:
    """All standard figures of a run; returns the written paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    if "br" in ds and ds.sizes.get("time", 0) > 0:
        paths += plot_maps(ds, out)
        if ds.sizes["time"] > 1:
            paths += plot_butterfly(ds, out)
    if "history_time" in ds.dims and ds.sizes["history_time"] > 1:
        paths += plot_histories(ds, out)
    paths += plot_spread(ds, out)
    for p in paths:
        log.info("wrote %s", p)
    return paths
