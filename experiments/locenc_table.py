"""Rußwurm et al. (2024) main comparison: encodings × networks on checkerboard and land–ocean,
several seeds, test accuracy mean ± std; written as Markdown and JSON.

Default settings are the paper-style ones (10,000 points, 200 epochs with early stopping, SIREN
and FCNet of 2 × 256, SH degree 10 and 20... per ``--degrees``); ``--quick`` shrinks everything
(fewer points, epochs, encodings, seeds, width) so it finishes in a few minutes on 2 CPU cores.

Run: ``python experiments/locenc_table.py [--quick] [--out experiments/results]``; writes
``locenc_table[_quick].md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from jaxgeo.locenc import Encoding, ModelConfig, TrainConfig, fit, load_dataset

FULL = {
    "datasets": ["checkerboard", "landocean"],
    "encodings": [
        "direct",
        "cartesian3d",
        "wrap",
        "grid",
        "theory",
        "spherec",
        "spherec+",
        "spherem",
        "spherem+",
        "sh",
    ],
    "networks": ["linear", "fcnet", "siren"],
    "seeds": [0, 1, 2],
    "points": 10_000,
    "epochs": 200,
    "patience": 20,
    "hidden": 256,
    "degree": 20,
    "n_frequencies": 16,
    "batch_size": 1024,
}
QUICK = {
    "datasets": ["checkerboard", "landocean"],
    "encodings": ["direct", "wrap", "spherec+", "sh"],
    "networks": ["linear", "siren"],
    "seeds": [0, 1],
    "points": 3000,
    "epochs": 30,
    "patience": 8,
    "hidden": 64,
    "degree": 12,
    "n_frequencies": 8,
    "batch_size": 256,
}


def run_table(settings: dict, log=print) -> list[dict]:
    rows = []
    for dataset_name in settings["datasets"]:
        datasets = {
            s: load_dataset(dataset_name, n_points=settings["points"], seed=s)
            for s in settings["seeds"]
        }
        for enc_name in settings["encodings"]:
            enc = Encoding(
                enc_name,
                degree=settings["degree"],
                n_frequencies=settings["n_frequencies"],
                min_radius=0.05,
            )
            for net in settings["networks"]:
                cfg = ModelConfig(
                    encoding=enc,
                    network=net,
                    hidden=settings["hidden"],
                    n_out=datasets[settings["seeds"][0]].n_out,
                )
                accs, ious, secs = [], [], []
                for seed in settings["seeds"]:
                    tc = TrainConfig(
                        epochs=settings["epochs"],
                        patience=settings["patience"],
                        batch_size=settings["batch_size"],
                        learning_rate=3e-3,
                        seed=seed,
                    )
                    r = fit(datasets[seed], cfg, tc)
                    accs.append(r.metrics["accuracy"])
                    ious.append(r.metrics["iou"])
                    secs.append(r.train_seconds)
                row = {
                    "dataset": dataset_name,
                    "encoding": enc_name,
                    "network": net,
                    "L": enc.degree if enc_name == "sh" else None,
                    "accuracy_mean": float(np.mean(accs)),
                    "accuracy_std": float(np.std(accs)),
                    "iou_mean": float(np.mean(ious)),
                    "iou_std": float(np.std(ious)),
                    "train_seconds_mean": float(np.mean(secs)),
                    "seeds": settings["seeds"],
                }
                rows.append(row)
                log(json.dumps(row))
    return rows


def to_markdown(rows: list[dict], settings: dict, quick: bool) -> str:
    nets = settings["networks"]
    lines = [
        f"# Location encoders: test accuracy (%) mean ± std over seeds {settings['seeds']}"
        + (" — QUICK setting" if quick else ""),
        "",
        f"Settings: {json.dumps({k: v for k, v in settings.items() if k != 'seeds'})}",
        "",
    ]
    for ds in settings["datasets"]:
        lines += [
            f"## {ds}",
            "",
            "| encoding | " + " | ".join(nets) + " |",
            "|---|" + "---:|" * len(nets),
        ]
        for enc in settings["encodings"]:
            cells = []
            for net in nets:
                r = next(
                    x
                    for x in rows
                    if x["dataset"] == ds and x["encoding"] == enc and x["network"] == net
                )
                cells.append(f"{100 * r['accuracy_mean']:.1f} ± {100 * r['accuracy_std']:.1f}")
            name = f"sh (L={settings['degree']})" if enc == "sh" else enc
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small settings (minutes on a CPU)")
    parser.add_argument("--out", type=Path, default=Path("experiments/results"))
    args = parser.parse_args()
    settings = QUICK if args.quick else FULL
    start = time.perf_counter()
    rows = run_table(settings)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "locenc_table_quick" if args.quick else "locenc_table"
    (args.out / f"{stem}.json").write_text(
        json.dumps(
            {
                "quick": args.quick,
                "settings": settings,
                "rows": rows,
                "wall_seconds": time.perf_counter() - start,
            },
            indent=2,
        )
        + "\n"
    )
    (args.out / f"{stem}.md").write_text(to_markdown(rows, settings, args.quick) + "\n")
    print(f"wrote {args.out / stem}.md/.json in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
