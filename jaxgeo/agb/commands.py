"""Command-line registration for ``jaxgeo agb`` (thin: parse, call, print, write).

- ``jaxgeo agb make-dataset``: write a region (imagery, dense biomass, footprint labels) to a
  zarr store;
- ``jaxgeo agb pretrain``: SimMIM pretraining of a Swin encoder on the imagery;
- ``jaxgeo agb train --model frozen|finetune|unet``: sparse-label biomass regression.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ..cli import add_run_folder_options

log = logging.getLogger("jaxgeo.agb")

_REGIONS = ("s2", "l8")
_KINDS = ("frozen", "finetune", "unet")


# --------------------------------------------------------------------------------------------
# make-dataset
# --------------------------------------------------------------------------------------------


def _cmd_make_dataset(args: argparse.Namespace) -> int:
    import time

    import numpy as np

    from ..cli import print_summary
    from .data import IGNORE, Gedi, make_region, write_region_store

    t0 = time.perf_counter()
    region = make_region(
        args.region, seed=args.seed, gedi=Gedi(n_tracks=args.n_tracks), pixel_m=args.pixel_m
    )
    write_region_store(region, args.out, overwrite=args.overwrite)
    labels = region.labels[region.labels != IGNORE]
    print_summary(
        {
            "command": "agb make-dataset",
            "region": region.name,
            "scene": region.scene.name,
            "shape": list(region.agb.shape),
            "pixel_m": region.scene.pixel_m,
            "labels": int(labels.size),
            "label_mean_mg_ha": float(labels.mean()) if labels.size else None,
            "label_bins": np.histogram(labels, [0, 100, 200, 300.001])[0].tolist(),
            "seconds": round(time.perf_counter() - t0, 3),
            "out": str(args.out),
        }
    )
    return 0


def _register_make_dataset(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "make-dataset",
        help="write an eco-region (imagery, synthetic biomass, GEDI-like labels) to zarr",
        description=(
            "Map the packaged Sentinel-2 (region s2) or Landsat-8 (region l8) crop to the six "
            "HLS bands on a common grid, synthesise biomass with the region's allometric model, "
            "sample it along GEDI-like tracks (-1 elsewhere) and write a zarr store."
        ),
    )
    p.add_argument("--region", default="s2", choices=_REGIONS)
    p.add_argument("--seed", type=int, default=0, help="seed of the residual field and tracks")
    p.add_argument("--n-tracks", type=int, default=4, help="GEDI tracks over the scene")
    p.add_argument("--pixel-m", type=float, default=30.0, help="grid spacing, metres")
    p.add_argument("--out", type=Path, required=True, help="output store (REGION.zarr)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.set_defaults(func=_cmd_make_dataset)


# --------------------------------------------------------------------------------------------
# pretrain
# --------------------------------------------------------------------------------------------


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from ..cli import print_summary
    from .run import PretrainConfig, pretrain

    config = PretrainConfig(
        encoder=args.encoder,
        crop=args.crop,
        crops_per_epoch=args.crops_per_epoch,
        bigearthnet=not args.no_bigearthnet,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        mask_ratio=args.mask_ratio,
        mask_patch=args.mask_patch,
        pixel_m=args.pixel_m,
        seed=args.seed,
    )
    summary = pretrain(
        config, args.out, resume=args.resume, overwrite=args.overwrite, plots=args.plots
    )
    print_summary(summary)
    return 0


def _register_pretrain(subparsers: argparse._SubParsersAction) -> None:
    from .models import ENCODERS

    p = subparsers.add_parser(
        "pretrain",
        help="SimMIM pretraining of a Swin encoder on the regions' imagery",
        description=(
            "Masked image modelling (SimMIM) on random crops of both scenes and the "
            "BigEarthNet-S2 example patches (imagery only, no labels); checkpoints every epoch; "
            "writes OUT/encoder for `jaxgeo agb train --checkpoint OUT`. The study's setting: "
            "--encoder swin-b --crop 192 --mask-patch 32."
        ),
    )
    p.add_argument("--encoder", default="swin-micro",
                   choices=[e for e in ENCODERS if e.startswith("swin-")])  # fmt: skip
    p.add_argument("--crop", type=int, default=64, help="crop side, pixels")
    p.add_argument("--crops-per-epoch", type=int, default=128)
    p.add_argument("--no-bigearthnet", action="store_true",
                   help="use the two scenes only")  # fmt: skip
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-epochs", type=int, default=1)
    p.add_argument("--mask-ratio", type=float, default=0.6)
    p.add_argument("--mask-patch", type=int, default=16, help="mask block side, pixels")
    p.add_argument("--pixel-m", type=float, default=30.0, help="grid spacing, metres")
    p.add_argument("--seed", type=int, default=0)
    add_run_folder_options(p)
    p.set_defaults(func=_cmd_pretrain)


# --------------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------------


def _cmd_train(args: argparse.Namespace) -> int:
    from ..cli import print_summary
    from .models import ModelConfig
    from .run import TrainConfig, train

    checkpoint = None
    if args.checkpoint is not None and str(args.checkpoint).lower() != "none":
        checkpoint = Path(args.checkpoint)
    encoder = args.encoder
    if encoder is None:
        # The pretraining run's encoder when there is one, so --checkpoint alone is enough.
        run_json = checkpoint / "run.json" if checkpoint is not None else None
        if run_json is not None and run_json.is_file():
            encoder = json.loads(run_json.read_text())["config"]["encoder"]
        else:
            encoder = "swin-micro"
    model = ModelConfig(
        kind=args.model,
        encoder=encoder,
        decoder=args.decoder,
        upernet_width=args.upernet_width,
        unet_base=args.unet_base,
    )
    config = TrainConfig(
        model=model,
        region=args.region,
        tile=args.tile,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        warmup_epochs=args.warmup_epochs,
        seed=args.seed,
        data_seed=args.data_seed,
        n_tracks=args.n_tracks,
        pixel_m=args.pixel_m,
        eval_regions=tuple(args.eval_region or ()),
    )
    if checkpoint is None and args.model != "unet" and args.init is None:
        log.warning("no --checkpoint: the %s encoder starts from random weights", encoder)
    summary = train(
        config,
        args.out,
        checkpoint=checkpoint,
        init_from=args.init,
        resume=args.resume,
        overwrite=args.overwrite,
        plots=args.plots,
    )
    print_summary(summary)
    return 0


def _register_train(subparsers: argparse._SubParsersAction) -> None:
    from .models import DECODERS, ENCODERS

    p = subparsers.add_parser(
        "train",
        help="sparse-label biomass regression: frozen / fine-tuned encoder or U-Net",
        description=(
            "Train on a region's training tiles with the masked RMSE (labels only at GEDI-like "
            "footprints, -1 elsewhere), evaluate RMSE overall and in the 0-100, 100-200, "
            "200-300 Mg/ha bins on its test tiles (and on --eval-region's), print one JSON "
            "line. --model frozen trains only the decoder (a single conv + pixel shuffle) on a "
            "pretrained encoder (--checkpoint from `jaxgeo agb pretrain`); finetune trains "
            "both; unet trains a U-Net from scratch. Defaults are CPU-sized; the study's: "
            "--encoder swin-b --unet-base 32 --tile 224 (see docs/agb.md)."
        ),
    )
    p.add_argument("--model", default="frozen", choices=_KINDS)
    p.add_argument("--region", default="s2", choices=_REGIONS, help="region to train and test on")
    p.add_argument("--eval-region", action="append", choices=_REGIONS,
                   help="also evaluate on this region's test tiles (zero-shot transfer)")  # fmt: skip
    p.add_argument("--checkpoint", help="pretraining run folder (encoder weights) or 'none'")
    p.add_argument("--init", type=Path, metavar="RUN",
                   help="start from a finished `agb train` run's model (cross-region fine-tuning)")  # fmt: skip
    p.add_argument("--encoder", default=None, choices=ENCODERS,
                   help="encoder (default: the --checkpoint run's, else swin-micro)")  # fmt: skip
    p.add_argument("--decoder", default="conv", choices=DECODERS)
    p.add_argument("--upernet-width", type=int, default=128)
    p.add_argument("--unet-base", type=int, default=16, help="U-Net first-level width")
    p.add_argument("--tile", type=int, default=64, help="tile side, pixels")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate")
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--warmup-epochs", type=int, default=2)
    p.add_argument("--seed", type=int, default=0, help="initialisation and batch-order seed")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic labels")
    p.add_argument("--n-tracks", type=int, default=4, help="GEDI tracks over the scene")
    p.add_argument("--pixel-m", type=float, default=30.0, help="grid spacing, metres")
    add_run_folder_options(p)
    p.set_defaults(func=_cmd_train)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``jaxgeo agb`` subcommands."""
    _register_make_dataset(subparsers)
    _register_pretrain(subparsers)
    _register_train(subparsers)
