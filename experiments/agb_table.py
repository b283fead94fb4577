"""Table: frozen / fine-tuned foundation model vs U-Net for sparse-label biomass regression, and
the cross-region transfer table (Muszynski et al. 2024, "Fine-tuning of Geospatial Foundation
Models for Aboveground Biomass Estimation").

Pipeline (all offline, `jaxgeo.agb`):

1. SimMIM-pretrain a Swin encoder on the imagery of both regions and the BigEarthNet-S2
   example patches (labels never seen);
2. for each seed, on region ``s2`` (the Sentinel-2 scene): ``frozen`` (pretrained encoder,
   single-conv decoder), ``finetune`` (both trained) and ``unet`` (from scratch); test RMSE at
   the test footprints, overall and in the 0-100 / 100-200 / 200-300 Mg/ha bins; each run also
   evaluates zero-shot on region ``l8`` (the Landsat-8 scene, other allometry);
3. transfer: each ``s2`` model fine-tuned on ``l8`` (``--transfer-epochs``), against the same
   kind trained on ``l8`` alone.

Numbers are means ± standard deviations over seeds (initialisation and batch order; the data
and the split are fixed). The study's numbers (U-Net 65.5, foundation model 68.7 / 70.9 Mg/ha)
are printed for the shape of the comparison only: our imagery, labels and sizes differ.

Modes: ``--quick`` (tiny, a smoke run: minutes) and the default CPU setting (``swin-micro``,
64-pixel tiles; tens of minutes on 2 cores). The study's sizes (Swin-B, U-Net width 32,
224-pixel tiles) are options (``--encoder swin-b --unet-base 32 --tile 224 --pixel-m 20``):
a GPU's job.

Writes ``experiments/results/agb_table{_quick}.md`` and ``.json`` (rewritten after each run, so
an interrupted table keeps what it measured).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from jaxgeo.agb.models import ModelConfig
from jaxgeo.agb.run import PretrainConfig, TrainConfig, pretrain, train

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = ("frozen", "finetune", "unet")
PAPER_RMSE = {"unet": 65.5, "frozen": 68.7, "finetune": 70.9}
METRICS = ("rmse", "rmse_0_100", "rmse_100_200", "rmse_200_300", "dense_rmse")


def _mean_sd(values: list[float | None]) -> str:
    v = [x for x in values if x is not None]
    if not v:
        return "–"
    if len(v) == 1:
        return f"{v[0]:.1f}"
    return f"{np.mean(v):.1f} ± {np.std(v, ddof=1):.1f}"


def _markdown(results: dict[str, Any]) -> str:
    a = results["args"]
    lines = [
        "# Sparse-label biomass regression (jaxgeo.agb)",
        "",
        f"Encoder {a['encoder']} (SimMIM-pretrained, {a['pretrain_epochs']} epochs), U-Net "
        f"width {a['unet_base']}, tiles {a['tile']} px at 30 m, {a['epochs']} epochs, seeds "
        f"{a['seeds']}; RMSE in Mg/ha at the test footprints (mean ± sd over seeds); "
        "`dense` is the RMSE against the synthetic dense biomass on all valid test pixels.",
        "",
        "## Region s2: frozen / fine-tuned / U-Net",
        "",
        "| model | trainable params | RMSE | 0–100 | 100–200 | 200–300 | dense | seconds "
        "| study RMSE |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind in KINDS:
        rows = [r for r in results["runs"] if r["kind"] == kind and r["stage"] == "s2"]
        if not rows:
            continue
        cells = [_mean_sd([r["metrics"][m] for r in rows]) for m in METRICS]
        lines.append(
            f"| {kind} | {rows[0]['trainable_parameters']:,} | "
            + " | ".join(cells)
            + f" | {np.mean([r['seconds'] for r in rows]):.0f} | {PAPER_RMSE[kind]} |"
        )
    lines += [
        "",
        "## Transfer between eco-regions (RMSE on the target region's test footprints)",
        "",
        "| model | s2 → s2 | s2 → l8 zero-shot | s2 → l8 fine-tuned | l8 → l8 |",
        "|---|---:|---:|---:|---:|",
    ]
    for kind in KINDS:
        src = [r for r in results["runs"] if r["kind"] == kind and r["stage"] == "s2"]
        ft = [r for r in results["runs"] if r["kind"] == kind and r["stage"] == "s2->l8"]
        own = [r for r in results["runs"] if r["kind"] == kind and r["stage"] == "l8"]
        if not src:
            continue
        lines.append(
            f"| {kind} | {_mean_sd([r['metrics']['rmse'] for r in src])} | "
            f"{_mean_sd([r['transfer']['l8']['rmse'] for r in src])} | "
            f"{_mean_sd([r['metrics']['rmse'] for r in ft])} | "
            f"{_mean_sd([r['metrics']['rmse'] for r in own])} |"
        )
    lines += ["", f"Total time {results.get('seconds', 0):.0f} s.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny smoke-run sizes")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--encoder", default="swin-micro")
    p.add_argument("--unet-base", type=int, default=16)
    p.add_argument("--tile", type=int, default=64)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--transfer-epochs", type=int, default=10)
    p.add_argument("--pretrain-epochs", type=int, default=10)
    p.add_argument("--work", type=Path, default=Path("runs/agb_table"), help="run folders")
    p.add_argument(
        "--kinds", default=",".join(KINDS), help="models to run, comma-separated (default: all)"
    )
    p.add_argument(
        "--tag", default="", help="suffix of the result files (e.g. for a partial table)"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.encoder, args.unet_base, args.tile = "swin-nano", 4, 32
        args.epochs, args.transfer_epochs, args.pretrain_epochs = 3, 2, 1
        args.seeds = min(args.seeds, 2)
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        p.error(f"--kinds: unknown {sorted(unknown)}; expected some of {', '.join(KINDS)}")
    suffix = ("_quick" if args.quick else "") + (f"_{args.tag}" if args.tag else "")
    RESULTS.mkdir(parents=True, exist_ok=True)
    md_path, json_path = RESULTS / f"agb_table{suffix}.md", RESULTS / f"agb_table{suffix}.json"
    work = args.work / (
        ("quick" if args.quick else "default") + (f"_{args.tag}" if args.tag else "")
    )
    t0 = time.perf_counter()
    results: dict[str, Any] = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "runs": [],
    }

    def save() -> None:
        results["seconds"] = time.perf_counter() - t0
        json_path.write_text(json.dumps(results, indent=2) + "\n")
        md_path.write_text(_markdown(results))

    crop = 32 if args.quick else 64
    pre = PretrainConfig(
        encoder=args.encoder,
        crop=crop,
        crops_per_epoch=16 if args.quick else 128,
        batch_size=8 if args.quick else 16,
        epochs=args.pretrain_epochs,
        mask_patch=8 if args.quick else 16,
    )
    if any(k != "unet" for k in kinds):
        s = pretrain(pre, work / "pretrain", overwrite=True)
        results["pretrain"] = s
        print(f"pretrain: SimMIM L1 {s['final_loss']:.3f} in {s['seconds']:.0f} s", file=sys.stderr)
    for seed in range(args.seeds):
        for kind in kinds:
            model = ModelConfig(kind=kind, encoder=args.encoder, unet_base=args.unet_base)
            common = dict(model=model, tile=args.tile, seed=seed)
            ckpt = None if kind == "unet" else work / "pretrain"
            src_dir = work / f"{kind}_s2_{seed}"
            stages = [
                (
                    "s2",
                    TrainConfig(epochs=args.epochs, eval_regions=("l8",), **common),
                    src_dir,
                    {"checkpoint": ckpt},
                ),
                (
                    "s2->l8",
                    TrainConfig(region="l8", epochs=args.transfer_epochs, **common),
                    work / f"{kind}_s2l8_{seed}",
                    {"init_from": src_dir},
                ),
                (
                    "l8",
                    TrainConfig(region="l8", epochs=args.epochs, **common),
                    work / f"{kind}_l8_{seed}",
                    {"checkpoint": ckpt},
                ),
            ]
            for stage, cfg, out, extra in stages:
                s = train(cfg, out, overwrite=True, **extra)  # type: ignore[arg-type]
                results["runs"].append({"kind": kind, "stage": stage, "seed": seed, **s})
                print(
                    f"seed {seed} {kind:8s} {stage:7s} RMSE {s['metrics']['rmse']:.1f} Mg/ha "
                    f"({s['seconds']:.0f} s)",
                    file=sys.stderr,
                )
                save()
    save()
    print(md_path.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
