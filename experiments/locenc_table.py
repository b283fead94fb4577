"""Rußwurm et al. (2024) main comparison: encodings × networks on checkerboard and land–ocean
(test accuracy), plus the magfield regression target (test MAE / RMSE in nT), several seeds,
mean ± std; written as Markdown and JSON.

Default settings are the paper-style ones (10,000 points, 200 epochs with early stopping, SIREN
and FCNet of 2 × 256, SH degree 20, 16 scales); ``--quick`` shrinks everything (fewer points,
epochs, encodings, seeds, width) so it finishes in a few minutes on 2 CPU cores.

Fits run seed by seed (every configuration at seed 0, then at seed 1, ...), so a run stopped by
``--device-budget-s`` still covers the whole matrix with fewer seeds; the Markdown and JSON are
rewritten after every fit (``"complete": false`` until the end). No checkpoints are written, so
neither orbax nor zarr is needed (a bare GPU machine with jax, flax, optax will do, plus the
dataset packages ``global-land-mask`` and ``ppigrf``).

Run: ``python experiments/locenc_table.py [--quick] [--device-budget-s 230] [--out DIR]``;
writes ``locenc_table[_quick].md`` and ``.json`` under ``--out`` (default experiments/results).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import time
from collections.abc import Callable
from pathlib import Path

import jax
import numpy as np

from jaxgeo.locenc import Encoding, ModelConfig, TrainConfig, fit, load_dataset

CLASSIFICATION = ("checkerboard", "landocean")
FULL = {
    "datasets": ["checkerboard", "landocean", "magfield"],
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
    # The regression target is smooth (|B| is dominated by degrees <= 3): a smaller matrix.
    "encodings_by_dataset": {"magfield": ["direct", "wrap", "spherec+", "sh"]},
    "networks_by_dataset": {"magfield": ["linear", "siren"]},
    "seeds": [0, 1, 2],
    "points": 10_000,
    "epochs": 200,
    "patience": 20,
    "hidden": 256,
    "degree": 20,
    "n_frequencies": 16,
    "min_radius": 0.05,
    "batch_size": 1024,
    "learning_rate": 3e-3,
}
QUICK = {
    "datasets": ["checkerboard", "landocean", "magfield"],
    "encodings": ["direct", "wrap", "spherec+", "sh"],
    "networks": ["linear", "siren"],
    "encodings_by_dataset": {"magfield": ["wrap", "sh"]},
    "networks_by_dataset": {},
    "seeds": [0, 1],
    "points": 3000,
    "epochs": 30,
    "patience": 8,
    "hidden": 64,
    "degree": 12,
    "n_frequencies": 8,
    "min_radius": 0.05,
    "batch_size": 256,
    "learning_rate": 3e-3,
}


def _cells(settings: dict, dataset: str) -> list[tuple[str, str]]:
    encs = settings["encodings_by_dataset"].get(dataset, settings["encodings"])
    nets = settings["networks_by_dataset"].get(dataset, settings["networks"])
    return [(e, n) for e in encs for n in nets]


def _model_config(settings: dict, enc_name: str, net: str, n_out: int) -> ModelConfig:
    enc = Encoding(
        enc_name,
        degree=settings["degree"],
        n_frequencies=settings["n_frequencies"],
        min_radius=settings["min_radius"],
    )
    return ModelConfig(encoding=enc, network=net, hidden=settings["hidden"], n_out=n_out)


def mean_baseline(dataset) -> dict[str, float]:
    """MAE / RMSE of predicting the training mean everywhere (what any model must beat)."""
    err = dataset.test.y - dataset.train.y.mean()
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2)))}


def run_table(
    settings: dict,
    *,
    budget_s: float | None = None,
    workers: int = 1,
    on_fit: Callable[[list[dict], bool], None] | None = None,
    log: Callable[[str], None] = print,
) -> tuple[list[dict], bool]:
    """All fits, seed-major; returns (per-fit records, complete).

    ``workers`` fits run at once in threads: on a GPU most of a fit's time is compiling (CPU,
    in parallel across threads) and dispatching small kernels, so they overlap well. No fit
    starts past ``budget_s`` minus the longest fit so far. ``on_fit(records, complete)`` is
    called after every fit (to write partial results).
    """
    start = time.perf_counter()
    records: list[dict] = []
    longest = 0.0
    datasets: dict = {}

    def one_fit(ds, dataset_name: str, enc_name: str, net: str, seed: int) -> dict:
        tc = TrainConfig(
            epochs=settings["epochs"],
            patience=settings["patience"],
            batch_size=settings["batch_size"],
            learning_rate=settings["learning_rate"],
            seed=seed,
        )
        t0 = time.perf_counter()
        r = fit(ds, _model_config(settings, enc_name, net, ds.n_out), tc)
        return {
            "dataset": dataset_name,
            "encoding": enc_name,
            "network": net,
            "seed": seed,
            **r.metrics,
            "train_seconds": r.train_seconds,
            "fit_seconds": time.perf_counter() - t0,
            "epochs": r.epochs_run,
            "parameters": r.n_params,
        }

    def collect(done) -> None:
        nonlocal longest
        for fut in done:
            rec = fut.result()
            longest = max(longest, rec["fit_seconds"])
            records.append(rec)
            log(json.dumps(rec))
            if on_fit is not None:
                on_fit(records, False)

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        running: set = set()
        for seed in settings["seeds"]:
            for dataset_name in settings["datasets"]:
                ds = load_dataset(dataset_name, n_points=settings["points"], seed=seed)
                datasets[dataset_name, seed] = ds
                if ds.task == "regression":
                    records.append(
                        {"dataset": dataset_name, "encoding": "mean", "network": "-", "seed": seed}
                        | mean_baseline(ds)
                    )
                for enc_name, net in _cells(settings, dataset_name):
                    if len(running) >= workers:
                        done, running = concurrent.futures.wait(
                            running, return_when=concurrent.futures.FIRST_COMPLETED
                        )
                        collect(done)
                    elapsed = time.perf_counter() - start
                    if budget_s is not None and elapsed + longest > budget_s:
                        collect(concurrent.futures.wait(running)[0])
                        log(json.dumps({"stopped": "device budget", "elapsed_s": elapsed}))
                        return records, False
                    running.add(pool.submit(one_fit, ds, dataset_name, enc_name, net, seed))
        collect(concurrent.futures.wait(running)[0])
    return records, True


def summarise(records: list[dict], settings: dict) -> list[dict]:
    """Mean ± std over the seeds each (dataset, encoding, network) completed."""
    rows = []
    keys = dict.fromkeys((r["dataset"], r["encoding"], r["network"]) for r in records)
    for ds, enc, net in keys:
        runs = [r for r in records if (r["dataset"], r["encoding"], r["network"]) == (ds, enc, net)]
        row: dict = {
            "dataset": ds,
            "encoding": enc,
            "network": net,
            "L": settings["degree"] if enc == "sh" else None,
            "seeds": [r["seed"] for r in runs],
        }
        metrics = ("mae", "rmse") if "mae" in runs[0] else ("accuracy", "iou")
        for m in metrics:
            row[f"{m}_mean"] = float(np.mean([r[m] for r in runs]))
            row[f"{m}_std"] = float(np.std([r[m] for r in runs]))
        if "train_seconds" in runs[0]:
            row["train_seconds_mean"] = float(np.mean([r["train_seconds"] for r in runs]))
        rows.append(row)
    return rows


def to_markdown(rows: list[dict], settings: dict, quick: bool, complete: bool) -> str:
    lines = [
        "# Location encoders: test metrics, mean ± std over seeds"
        + (" — QUICK setting" if quick else "")
        + ("" if complete else " — PARTIAL (stopped by the device budget)"),
        "",
        f"Settings: {json.dumps(settings)}",
        "",
    ]
    for ds in settings["datasets"]:
        ds_rows = [r for r in rows if r["dataset"] == ds]
        if not ds_rows:
            continue
        regression = "mae_mean" in ds_rows[0]
        nets = settings["networks_by_dataset"].get(ds, settings["networks"])
        what = "MAE / RMSE (nT)" if regression else "accuracy (%)"
        lines += [f"## {ds}: {what}", "", "| encoding | " + " | ".join(nets) + " | seeds |"]
        lines.append("|---|" + "---:|" * len(nets) + "---:|")
        for r in ds_rows:
            if r["encoding"] == "mean":
                cell = f"{r['mae_mean']:.0f} / {r['rmse_mean']:.0f}"
                lines.append(
                    "| predict the training mean | "
                    + " | ".join([cell] * len(nets))
                    + f" | {len(r['seeds'])} |"
                )
        encs = settings["encodings_by_dataset"].get(ds, settings["encodings"])
        for enc in encs:
            cells, n_seeds = [], 0
            for net in nets:
                r = next((x for x in ds_rows if (x["encoding"], x["network"]) == (enc, net)), None)
                if r is None:
                    cells.append("—")
                elif regression:
                    cells.append(
                        f"{r['mae_mean']:.0f} ± {r['mae_std']:.0f} / "
                        f"{r['rmse_mean']:.0f} ± {r['rmse_std']:.0f}"
                    )
                else:
                    cells.append(f"{100 * r['accuracy_mean']:.1f} ± {100 * r['accuracy_std']:.1f}")
                n_seeds = max(n_seeds, len(r["seeds"]) if r else 0)
            name = f"sh (L={settings['degree']})" if enc == "sh" else enc
            lines.append(f"| {name} | " + " | ".join(cells) + f" | {n_seeds} |")
        lines.append("")
    return "\n".join(lines)


def _device() -> str:
    d = jax.devices()[0]
    return f"{d.platform}:{d.device_kind}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small settings (minutes on a CPU)")
    parser.add_argument("--out", type=Path, default=Path("experiments/results"))
    parser.add_argument(
        "--device-budget-s",
        type=float,
        default=None,
        help="wall seconds to stay within: no fit starts that would end past it (partial table)",
    )
    parser.add_argument("--stem", help="output file stem (default locenc_table[_quick])")
    parser.add_argument(
        "--workers", type=int, default=1, help="fits at once (threads; 8 suits one GPU)"
    )
    args = parser.parse_args(argv)
    # The SH encoding evaluates float32 input in float64 (Encoding precision="high").
    jax.config.update("jax_enable_x64", True)
    settings = QUICK if args.quick else FULL
    stem = args.stem or ("locenc_table_quick" if args.quick else "locenc_table")
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    def write(records: list[dict], complete: bool) -> None:
        rows = summarise(records, settings)
        info = {
            "quick": args.quick,
            "complete": complete,
            "device": _device(),
            "jax": jax.__version__,
            "settings": settings,
            "rows": rows,
            "fits": records,
            "wall_seconds": time.perf_counter() - start,
        }
        (args.out / f"{stem}.json").write_text(json.dumps(info, indent=2) + "\n")
        md = to_markdown(rows, settings, args.quick, complete)
        md += f"\nDevice {info['device']}, jax {jax.__version__}, wall {info['wall_seconds']:.0f} s.\n"
        (args.out / f"{stem}.md").write_text(md)

    records, complete = run_table(
        settings, budget_s=args.device_budget_s, workers=args.workers, on_fit=write
    )
    write(records, complete)
    print(
        json.dumps(
            {
                "wrote": str(args.out / stem) + ".md/.json",
                "complete": complete,
                "fits": sum(1 for r in records if r["encoding"] != "mean"),
                "wall_s": time.perf_counter() - start,
            }
        )
    )


if __name__ == "__main__":
    main()
