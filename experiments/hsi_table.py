"""Table: random init vs MoCo / DINO / MAE pretraining vs the no-adapter baseline, on per-pixel
land cover with a frozen backbone (FCN head) and with full fine-tuning; several seeds.

Each method pretrains a spectral backbone (adapter + ViT) on the train split of a synthetic
EnMAP patch store made by ``jaxgeo.hsi.synth`` (mixtures of real library spectra, two dates),
then ``finetune`` trains the head (``frozen``) or everything (``full``) and reports test
accuracy and micro / macro mIoU. The baseline is the same ViT without the adapter (all 202
bands into the patch embedding), pretrained with MoCo.

Modes:

- ``--quick`` (the CI-sized check, a few minutes on a 2-core CPU): 64 patches of 16 x 16,
  ``spec-vit-tiny`` / ``vit-tiny``, 4 pretraining and 5 fine-tuning epochs, seeds 0 and 1.
- default (the paper-sized setting; needs a GPU: about an hour on one H100 per seed): 2,000
  patches of 128 x 128, ``spec-vit-s`` / ``vit-s``, 100 pretraining epochs at batch 256 and
  50 fine-tuning epochs, seeds 0, 1, 2.

Writes ``experiments/results/hsi_table{_quick}.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from jaxgeo.hsi.run import FinetuneConfig, PretrainConfig, finetune, pretrain
from jaxgeo.hsi.synth import SynthConfig, write_dataset

RESULTS = Path(__file__).resolve().parent / "results"


@dataclasses.dataclass(frozen=True)
class Setting:
    n_patches: int
    patch_size: int
    backbone: str
    baseline: str
    pretrain_epochs: int
    pretrain_batch: int
    finetune_epochs: int
    finetune_batch: int
    seeds: tuple[int, ...]
    method_settings: dict
    lr: dict


QUICK = Setting(
    n_patches=64, patch_size=16, backbone="spec-vit-tiny", baseline="vit-tiny",
    pretrain_epochs=4, pretrain_batch=8, finetune_epochs=5, finetune_batch=8, seeds=(0, 1),
    method_settings={
        "moco": {"queue_size": 64, "hidden": 64, "dim": 32},
        "dino": {"out_dim": 256, "hidden": 64, "bottleneck": 32, "n_local": 2},
        "mae": {"dec_width": 32, "dec_depth": 1, "dec_heads": 2},
    },
    lr={"moco": 0.05, "dino": 1e-3, "mae": 1e-3, "frozen": 1e-2, "full": 1e-3},
)  # fmt: skip
FULL = Setting(
    n_patches=2000, patch_size=128, backbone="spec-vit-s", baseline="vit-s",
    pretrain_epochs=100, pretrain_batch=256, finetune_epochs=50, finetune_batch=32,
    seeds=(0, 1, 2), method_settings={"moco": {"queue_size": 4096}, "dino": {}, "mae": {}},
    lr={"moco": None, "dino": None, "mae": None, "frozen": 1e-3, "full": 1e-4},
)  # fmt: skip

ROWS = (  # (row name, pretraining method or None, backbone kind)
    ("random init", None, "spec"),
    ("MoCo-v2", "moco", "spec"),
    ("DINO", "dino", "spec"),
    ("MAE", "mae", "spec"),
    ("no adapter (MoCo-v2)", "moco", "baseline"),
)
MODES = ("frozen", "full")


def run(setting: Setting, work: Path, name: str) -> dict:
    store = work / "store.zarr"
    if not store.exists():
        write_dataset(
            SynthConfig(
                sensor="enmap", n_patches=setting.n_patches, patch_size=setting.patch_size,
                seed=0, field_size_px=max(6.0, setting.patch_size / 5),
            ),
            store,
        )  # fmt: skip
    results: dict[str, dict] = {}
    t0 = time.perf_counter()
    for row, method, kind in ROWS:
        backbone = setting.backbone if kind == "spec" else setting.baseline
        for seed in setting.seeds:
            ckpt = None
            if method is not None:
                cfg = PretrainConfig(
                    method=method, backbone=backbone, epochs=setting.pretrain_epochs,
                    batch_size=setting.pretrain_batch, lr=setting.lr[method],
                    warmup_epochs=1, seed=seed, method_settings=setting.method_settings[method],
                )  # fmt: skip
                ckpt = work / f"pt-{method}-{backbone}-s{seed}"
                summary = pretrain(store, cfg, ckpt, overwrite=True)
                print(
                    f"{row} seed {seed}: pretrain loss {summary['final_loss']:.4f}", file=sys.stderr
                )
            for mode in MODES:
                ft = FinetuneConfig(
                    task="landcover", mode=mode, backbone=backbone,
                    epochs=setting.finetune_epochs, batch_size=setting.finetune_batch,
                    lr=setting.lr[mode], warmup_epochs=1, seed=seed,
                )  # fmt: skip
                out = work / f"ft-{row.replace(' ', '_')}-{mode}-s{seed}"
                s = finetune(store, ft, out, checkpoint=ckpt, overwrite=True)
                m = s["metrics"]
                results.setdefault(f"{row}|{mode}", {"runs": []})["runs"].append(
                    {"seed": seed, **{k: m[k] for k in ("accuracy", "miou_micro", "miou_macro")}}
                )
                print(f"{row} {mode} seed {seed}: acc {m['accuracy']:.3f}", file=sys.stderr)
    for entry in results.values():
        for k in ("accuracy", "miou_micro", "miou_macro"):
            vals = np.array([r[k] for r in entry["runs"]])
            entry[k] = {"mean": float(vals.mean()), "std": float(vals.std())}
    frozen = {r: results[f"{r}|frozen"]["accuracy"]["mean"] for r, _, _ in ROWS}
    best_ssl = max(frozen[r] for r in ("MoCo-v2", "DINO", "MAE"))
    return {
        "setting": name,
        "config": dataclasses.asdict(setting),
        "task": "landcover (per pixel), test split",
        "results": results,
        "pretrained_beats_random_frozen": best_ssl > frozen["random init"],
        "seconds": round(time.perf_counter() - t0, 1),
    }


def to_markdown(table: dict) -> str:
    cfg = table["config"]
    lines = [
        f"# Hyperspectral SSL table ({table['setting']})",
        "",
        f"Synthetic EnMAP store: {cfg['n_patches']} patches of {cfg['patch_size']} px "
        f"(202 bands); backbone `{cfg['backbone']}` (baseline `{cfg['baseline']}`); "
        f"pretraining {cfg['pretrain_epochs']} epochs, fine-tuning {cfg['finetune_epochs']} "
        f"epochs; seeds {cfg['seeds']}. Task: {table['task']}. Mean ± std over seeds.",
        "",
        "| pretraining | frozen acc | frozen mIoU micro | frozen mIoU macro | full acc | full mIoU micro | full mIoU macro |",
        "|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for row, _, _ in ROWS:
        cells = []
        for mode in MODES:
            e = table["results"][f"{row}|{mode}"]
            cells += [
                f"{e[k]['mean']:.3f} ± {e[k]['std']:.3f}"
                for k in ("accuracy", "miou_micro", "miou_macro")
            ]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Pretrained beats random init on the frozen probe: **{table['pretrained_beats_random_frozen']}**. "
        f"Wall time {table['seconds']} s.",
        "",
    ]  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run (minutes on CPU)")
    parser.add_argument("--work", type=Path, help="scratch folder (default runs/hsi_table*)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--seeds", help="comma-separated seeds (default: the setting's)")
    args = parser.parse_args(argv)
    name = "quick" if args.quick else "full"
    setting = QUICK if args.quick else FULL
    if args.seeds:
        try:
            seeds = tuple(int(v) for v in args.seeds.split(","))
        except ValueError:
            parser.error(f"--seeds: expected comma-separated integers, got {args.seeds!r}")
        setting = dataclasses.replace(setting, seeds=seeds)
    work = args.work or Path("runs") / f"hsi_table_{name}"
    work.mkdir(parents=True, exist_ok=True)
    table = run(setting, work, name)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = "hsi_table_quick" if args.quick else "hsi_table"
    (RESULTS / f"{stem}.json").write_text(json.dumps(table, indent=2) + "\n")
    (RESULTS / f"{stem}.md").write_text(to_markdown(table))
    print(
        json.dumps(
            {
                "table": stem,
                "pretrained_beats_random_frozen": table["pretrained_beats_random_frozen"],
                "seconds": table["seconds"],
            }
        )
    )
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
