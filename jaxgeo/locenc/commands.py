"""Command-line registration for ``jaxgeo locenc`` (thin: parse, call, print, write)."""

from __future__ import annotations

import argparse
from pathlib import Path

from .datasets import DATASETS
from .encodings import ENCODINGS, PRECISIONS
from .networks import NETWORKS


def _cmd_train(args: argparse.Namespace) -> int:
    import jax

    # float64 inside the float32 SH encoding (Encoding.precision="high", the default) needs x64;
    # the model itself stays float32 (its dtype is explicit everywhere).
    jax.config.update("jax_enable_x64", True)
    from ..cli import print_summary
    from .encodings import Encoding
    from .model import ModelConfig
    from .run import train_run
    from .train import TrainConfig

    encoding = Encoding(
        name=args.encoding,
        degree=args.degree,
        n_frequencies=args.frequencies,
        min_radius=args.min_radius,
        max_radius=args.max_radius,
        precision=args.precision,
    )
    model_config = ModelConfig(
        encoding=encoding,
        network=args.network,
        hidden=args.hidden,
        n_layers=args.layers,
        dropout=args.dropout,
    )
    train_config = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        weight_decay=args.weight_decay,
        patience=args.patience,
        seed=args.seed,
    )
    out = args.out or Path("runs") / "locenc" / (
        f"{args.dataset}-{args.encoding}-{args.network}-L{args.degree}-s{args.seed}"
    )
    summary = train_run(
        args.dataset,
        model_config,
        train_config,
        out,
        n_points=args.points,
        overwrite=args.overwrite,
        resume=args.resume,
        plots=not args.no_plots,
    )
    print_summary(summary)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``jaxgeo locenc train``."""
    p = subparsers.add_parser(
        "train",
        help="train and evaluate one encoding × network on a dataset",
        description=(
            "Train a location encoder (positional encoding + network) on a dataset on the "
            "sphere, early-stopping on the validation loss; print one JSON line (dataset, "
            "encoding, network, L, test metrics, train seconds, parameters) and write the "
            "checkpoints, the saved encoder, a predicted map and a learning curve (PNG) to --out."
        ),
    )
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--encoding", default="sh", choices=ENCODINGS)
    p.add_argument("--degree", type=int, default=10, help="highest SH degree L (sh)")
    p.add_argument(
        "--precision",
        default="high",
        choices=PRECISIONS,
        help="sh evaluation: float64 inside, rounded once (high), or float32 (default)",
    )
    p.add_argument("--network", default="siren", choices=NETWORKS)
    p.add_argument("--frequencies", type=int, default=16, help="scales (multi-scale encodings)")
    p.add_argument("--min-radius", type=float, default=0.01, help="smallest scale, radians")
    p.add_argument("--max-radius", type=float, default=1.0, help="largest scale, radians")
    p.add_argument("--hidden", type=int, default=256, help="hidden width")
    p.add_argument("--layers", type=int, default=2, help="hidden layers")
    p.add_argument("--dropout", type=float, default=0.0, help="dropout rate")
    p.add_argument("--epochs", type=int, default=200, help="maximum epochs")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--patience", type=int, default=20, help="early-stopping patience, epochs")
    p.add_argument("--points", type=int, default=10_000, help="dataset size (all splits)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="output folder (default runs/locenc/NAME)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    p.set_defaults(func=_cmd_train)
