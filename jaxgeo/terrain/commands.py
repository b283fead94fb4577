"""Command-line registration for ``jaxgeo terrain`` (thin: parse, call, print, write).

- ``import-dem``: a sample DEM or a GeoTIFF into a jaxgeo DEM store;
- ``train-vae``: the heightmap VAE;
- ``train-flow``: the latent flows (fine and class-map prior) on a VAE run;
- ``sample``: a large heightmap by sliding-window outpainting, written as a zarr store.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..cli import add_run_folder_options
from ..errors import ConfigError

log = logging.getLogger("jaxgeo.terrain")


def _add_run_options(p: argparse.ArgumentParser) -> None:
    add_run_folder_options(p)
    p.add_argument("--seed", type=int, default=0)


def _ints(text: str, name: str = "--widths") -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(
            f"{name} must be comma-separated integers such as 32,64,96, got {text!r}"
        ) from None


# --------------------------------------------------------------------------------------------
# import-dem
# --------------------------------------------------------------------------------------------


def _cmd_import(args: argparse.Namespace) -> int:
    from ..cli import print_summary
    from .data import load_dem, write_dem_store

    dem = load_dem(args.dem)
    write_dem_store(dem, args.out, overwrite=args.overwrite)
    print_summary({
        "command": "terrain import-dem", "dem": dem.name, "shape": list(dem.shape),
        "cell_size_m": list(dem.cell_size_m), "min_m": float(dem.elevation.min()),
        "max_m": float(dem.elevation.max()), "out": str(args.out),
    })  # fmt: skip
    return 0


# --------------------------------------------------------------------------------------------
# train-vae / train-flow
# --------------------------------------------------------------------------------------------


def _cmd_train_vae(args: argparse.Namespace) -> int:
    from ..cli import print_summary
    from .run import VaeConfig, train_vae

    config = VaeConfig(
        dem=args.dem, patch=args.patch, latent_channels=args.latent_channels,
        widths=_ints(args.widths), steps=args.steps, batch_size=args.batch_size, lr=args.lr,
        warmup_steps=args.warmup_steps, beta=args.beta, grad_weight=args.grad_weight,
        heldout_fraction=args.heldout_fraction, n_relief=args.n_relief,
        checkpoint_every=args.checkpoint_every, seed=args.seed,
    )  # fmt: skip
    print_summary(train_vae(config, args.out, resume=args.resume, overwrite=args.overwrite,
                            plots=args.plots))  # fmt: skip
    return 0


def _cmd_train_flow(args: argparse.Namespace) -> int:
    from ..cli import print_summary
    from .run import FlowConfig, train_flow

    config = FlowConfig(
        steps=args.steps, batch_size=args.batch_size, lr=args.lr, warmup_steps=args.warmup_steps,
        width=args.width, depth=args.depth, prior_width=args.prior_width,
        prior_depth=args.prior_depth, cond_drop=args.cond_drop, t_sampling=args.t_sampling,
        bank_size=args.bank_size, checkpoint_every=args.checkpoint_every, seed=args.seed,
    )  # fmt: skip
    print_summary(train_flow(args.vae, config, args.out, resume=args.resume,
                             overwrite=args.overwrite, plots=args.plots,
                             eval_samples=args.eval_samples))  # fmt: skip
    return 0


# --------------------------------------------------------------------------------------------
# sample
# --------------------------------------------------------------------------------------------


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as err:
        raise ConfigError(f"--size must be HxW (e.g. 512x512), got {text!r}") from err
    return h, w


def plot_canvas(path: Path, result: dict[str, Any], cell_size_m: tuple[float, float]) -> Path:
    """Hillshaded outpainted canvas beside the source terrain (and the independent-tile
    baseline when present); where windows begin is marked by ticks on the sample's edges, so
    the terrain itself is shown as generated (lines across it would hide any seam)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .plots import hillshade

    panels = [("source terrain (condition)", result["reference"]),
              ("outpainted sample", result["elevation"])]  # fmt: skip
    if "tiled" in result:
        panels.append(("independent tiles (baseline)", result["tiled"]))
    vmin = min(float(z.min()) for _, z in panels)
    vmax = max(float(z.max()) for _, z in panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 5.0), squeeze=False)
    cmap = plt.get_cmap("terrain")
    for ax, (title, z) in zip(axes[0], panels, strict=True):
        rgb = cmap((z - vmin) / max(vmax - vmin, 1e-9))[..., :3]
        shade = hillshade(z, cell_size_m, exaggeration=3.0)[..., None]
        ax.imshow(np.clip(rgb * (0.35 + 0.65 * shade), 0, 1), interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    seams = axes[0, 1]
    seams.set_xticks([c - 0.5 for c in result["seam_cols"]])
    seams.set_yticks([r - 0.5 for r in result["seam_rows"]])
    seams.tick_params(length=4, width=0.6, labelbottom=False, labelleft=False, top=True,
                      right=True)  # fmt: skip
    seams.set_xlabel("ticks: where windows begin", fontsize=8)
    m = result["metrics"]
    fig.suptitle(
        f"{result['elevation'].shape[0]}×{result['elevation'].shape[1]} cells; seam "
        f"discontinuity {m['seam_rms_m']:.2f} m (between seams {m['between_seams_rms_m']:.2f} m)"
        + (f"; tiles {result['tiled_metrics']['seam_rms_m']:.2f} m" if "tiled" in result else ""),
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _cmd_sample(args: argparse.Namespace) -> int:
    import xarray as xr

    from ..cli import print_summary
    from ..io.store import create_store
    from .data import load_dem
    from .run import load_models, sample_large, with_detail

    models = load_models(args.run)
    if args.detail:
        models = with_detail(models)
    size = _parse_size(args.size)
    source = load_dem(args.condition_from) if args.condition_from else None
    result = sample_large(
        models, size=size, condition=args.condition, source=source, guidance=args.guidance,
        steps=args.steps, sampler=args.sampler, two_stage=args.two_stage, stride=args.stride,
        seed=args.seed, tiled_baseline=args.plots is not None, detail=args.detail,
    )  # fmt: skip
    dy, dx = models.dem.cell_size_m
    h, w = size
    f = models.factor
    data = {
        "elevation": (("y", "x"), result["elevation"].astype(np.float32),
                      {"units": "m", "long_name": "generated elevation"}),
        "coarse_condition": (("yc", "xc"), result["coarse_m"].astype(np.float32),
                             {"units": "m", "long_name": f"{f}x{f}-cell block means of the source",
                              "used": int(args.condition in ("coarse", "both"))}),
    }  # fmt: skip
    if result["classes"] is not None:
        data["class_map"] = (("yc", "xc"), np.asarray(result["classes"], np.int16),
                             {"units": "1", "long_name": "relief/sea class (0 gentlest)"})  # fmt: skip
    ds = xr.Dataset(
        data,
        coords={"y": ("y", (np.arange(h) + 0.5) * dy, {"units": "m"}),
                "x": ("x", (np.arange(w) + 0.5) * dx, {"units": "m"}),
                "yc": ("yc", (np.arange(h // f) + 0.5) * f * dy, {"units": "m"}),
                "xc": ("xc", (np.arange(w // f) + 0.5) * f * dx, {"units": "m"})},
    )  # fmt: skip
    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                if k not in ("func", "_group_parser")}  # fmt: skip
    create_store(args.out, ds, append_dim="y", overwrite=args.overwrite,
                 attrs={"config": settings, "cell_size_m": [dy, dx], "name": "generated",
                        "source": f"jaxgeo terrain sample from {args.run}"})  # fmt: skip
    summary: dict[str, Any] = {
        "command": "terrain sample",
        "size": [h, w],
        "condition": args.condition,
        "guidance": args.guidance,
        "two_stage": args.two_stage,
        "metrics": result["metrics"],
        "seconds": round(result["seconds"], 3),
        "out": str(args.out),
    }
    if args.plots is not None:
        from .metrics import radial_spectrum  # noqa: F401  (figure below uses plots')
        from .plots import plot_slope_spectra

        folder = Path(args.plots)
        folder.mkdir(parents=True, exist_ok=True)
        summary["tiled_metrics"] = result["tiled_metrics"]
        p = models.vae_spec.patch
        crop = (min(h, w) // p) * p

        def tiles(z: np.ndarray) -> np.ndarray:
            z = z[:crop, :crop]
            return z.reshape(crop // p, p, crop // p, p).transpose(0, 2, 1, 3).reshape(-1, p, p)

        summary["plots"] = [
            str(plot_canvas(folder / "sample_canvas.png", result, models.dem.cell_size_m)),
            str(plot_slope_spectra(folder / "sample_slopes_spectra.png",
                                   {"source": tiles(result["reference"]),
                                    "outpainted": tiles(result["elevation"])},
                                   "slope distributions and power spectra (per patch)")),
        ]  # fmt: skip
    print_summary(summary)
    return 0


# --------------------------------------------------------------------------------------------
# Registration
# --------------------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``import-dem``, ``train-vae``, ``train-flow`` and ``sample``."""
    p = subparsers.add_parser(
        "import-dem", help="a sample DEM or GeoTIFF into a DEM zarr store",
        description="Read a DEM (jacksboro, topobathy, a GeoTIFF) and write elevation(y, x) "
        "in metres to a zarr v3 store; print one JSON line.",
    )  # fmt: skip
    p.add_argument("dem", help="jacksboro | topobathy | FILE.tif")
    p.add_argument("--out", type=Path, required=True, help="output store (DEM.zarr)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.set_defaults(func=_cmd_import)

    p = subparsers.add_parser(
        "train-vae", help="train the heightmap VAE",
        description="Train a convolutional VAE (patch -> 8x8xc latents) on the western part "
        "of a DEM; report held-out reconstruction RMSE in metres; checkpoints, --resume, "
        "JSON summary.",
    )  # fmt: skip
    p.add_argument("--dem", default="jacksboro", help="jacksboro | topobathy | FILE.tif | DEM.zarr")
    p.add_argument("--patch", type=int, default=64, help="patch side in cells (64; 32)")
    p.add_argument("--latent-channels", type=int, default=4)
    p.add_argument("--widths", default="32,64,96", help="encoder channels per level")
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--beta", type=float, default=1e-3, help="KL weight")
    p.add_argument("--grad-weight", type=float, default=1.0, help="slope reconstruction weight")
    p.add_argument("--heldout-fraction", type=float, default=0.3, help="eastern share held out")
    p.add_argument("--n-relief", type=int, default=3, help="relief classes of the class map")
    p.add_argument("--checkpoint-every", type=int, default=500)
    _add_run_options(p)
    p.set_defaults(func=_cmd_train_vae)

    p = subparsers.add_parser(
        "train-flow", help="train the latent flows (fine + class-map prior)",
        description="Rectified-flow matching in the latent space of a train-vae run, with "
        "mixed conditions (coarse heightmap, class map, none) and condition dropout.",
    )  # fmt: skip
    p.add_argument("--vae", type=Path, required=True, help="train-vae run folder")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--width", type=int, default=96)
    p.add_argument("--depth", type=int, default=4)
    p.add_argument("--prior-width", type=int, default=48)
    p.add_argument("--prior-depth", type=int, default=3)
    p.add_argument("--cond-drop", type=float, default=0.3, help="per-condition dropout")
    p.add_argument("--t-sampling", default="uniform", choices=("uniform", "logit_normal"))
    p.add_argument("--bank-size", type=int, default=4096, help="encoded training patches")
    p.add_argument("--checkpoint-every", type=int, default=500)
    p.add_argument("--eval-samples", type=int, default=32, help="held-out patches to score")
    _add_run_options(p)
    p.set_defaults(func=_cmd_train_flow)

    p = subparsers.add_parser(
        "sample", help="generate a large heightmap by sliding-window outpainting",
        description="Generate terrain of any size from a train-flow run, conditioned on a "
        "DEM's coarse heightmap and/or class map (cropped or mirror-extended to --size), or "
        "unconditioned; write elevation(y, x) to a zarr store; print one JSON line.",
    )  # fmt: skip
    p.add_argument("--run", type=Path, required=True, help="train-flow run folder")
    p.add_argument("--condition", default="coarse", choices=("none", "coarse", "class", "both"))
    p.add_argument("--condition-from", help="DEM for the conditions (default: the run's)")
    p.add_argument("--size", default="512x512", help="HxW cells")
    p.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale")
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--sampler", default="euler", choices=("euler", "heun"))
    p.add_argument("--two-stage", action="store_true", help="generate the class map first")
    p.add_argument("--stride", type=int, default=4, help="window stride in latent cells (1-8)")
    p.add_argument("--detail", action="store_true",
                   help="add the VAE's missing fine relief (residual-spectrum Gaussian field)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="output store (SAMPLE.zarr)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--plots", type=Path, metavar="DIR", help="write PNG figures to DIR")
    p.set_defaults(func=_cmd_sample)
