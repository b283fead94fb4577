"""EarthCrafter's generative core on real terrain: condition type × guidance × one/two-stage.

Trains the heightmap VAE and the latent flows on the western part of matplotlib's Jacksboro DEM
(or reuses finished runs), then generates for fixed held-out patches and scores every setting
with the metrics of :mod:`jaxgeo.terrain.metrics`: slope and curvature W1 to the held-out
terrain, power-spectrum slope, condition consistency. Reference rows: VAE reconstructions (the
floor a latent model can reach), decoded N(0, I) latents and white noise. An outpainting row
compares the seam discontinuity of sliding-window outpainting with independent tiles.

Writes ``experiments/results/terrain_table[_quick].{md,json}``.

    .venv/bin/python experiments/terrain_table.py --quick      # 32×32 patches, ~13 min on 2 CPU cores
    .venv/bin/python experiments/terrain_table.py              # larger nets and longer: GPU
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from jaxgeo.terrain.run import (
    FlowConfig,
    VaeConfig,
    baselines,
    evaluate,
    load_models,
    sample_large,
    train_flow,
    train_vae,
    with_detail,
)

RESULTS = Path(__file__).resolve().parent / "results"

# CPU setting: 32×32 patches (the second patch size), so the 8×8 latent grid is a
# factor 4 in each direction instead of 8 and a CPU-sized VAE keeps the fine relief (held-out
# slope W1 of its reconstructions 0.86 m per cell against 3.36 for the 64×64 setting of the
# same cost; experiments/results/terrain_table_quick_patch64.md is that earlier table).
QUICK: dict[str, Any] = {
    "vae": VaeConfig(
        patch=32,
        widths=(24, 48),
        latent_channels=8,
        steps=3000,
        batch_size=16,
        checkpoint_every=500,
    ),  # fmt: skip
    "flow": FlowConfig(
        width=64,
        depth=4,
        prior_width=32,
        prior_depth=2,
        steps=3000,
        batch_size=64,
        bank_size=4096,
        checkpoint_every=500,
    ),  # fmt: skip
    "n": 128,
}
FULL: dict[str, Any] = {
    "vae": VaeConfig(widths=(32, 64, 96), latent_channels=8, steps=20000, batch_size=32),
    "flow": FlowConfig(steps=20000, batch_size=128, bank_size=16384),
    "n": 256,
}


def _rows(models, n: int) -> list[dict]:  # noqa: ANN001
    settings = []
    for cond in ("none", "coarse", "class", "both"):
        for scale in (1.0, 3.0):
            for two in (False, True):
                if two and cond in ("class", "both"):
                    continue  # the class map is given: nothing for a first stage to make
                settings.append((cond, scale, two))
    rows = []
    for cond, scale, two in settings:
        r = evaluate(models, condition=cond, guidance=scale, two_stage=two, n=n)
        d = evaluate(models, condition=cond, guidance=scale, two_stage=two, n=n, detail=True)
        r["with_detail"] = d
        print(json.dumps(r), flush=True)
        rows.append(r)
    r = evaluate(models, condition="coarse", guidance=3.0, n=n, sampler="heun", steps=13)
    r["with_detail"] = evaluate(models, condition="coarse", guidance=3.0, n=n, sampler="heun",
                                steps=13, detail=True)  # fmt: skip
    r["sampler"] = "heun (13 steps, 26 evaluations)"
    print(json.dumps(r), flush=True)
    rows.append(r)
    return rows


def _markdown(result: dict) -> str:
    patch = result["vae_config"]["patch"]
    lines = [
        "# Terrain latent flow matching (EarthCrafter's core) on held-out Jacksboro DEM",
        "",
        f"Setting: {result['setting']}. VAE held-out reconstruction RMSE "
        f"{result['vae']['recon_rmse_m']:.1f} m; {result['n']} held-out {patch}×{patch} patches "
        f"(8×8×{result['vae_config']['latent_channels']} latents); "
        "Euler 25 steps unless noted. Slope in m per cell (cells ~93 m × 74 m); "
        "W1 = Wasserstein-1 to the held-out patches' distribution; coarse RMSE: block means "
        f"({patch // 8}×{patch // 8} cells) of the samples against the held-out patches' coarse "
        "heightmaps; class "
        "agreement: fraction of blocks whose relief class matches the held-out patch's.",
        "",
        '"+detail": the same samples plus the VAE\'s missing fine relief as a stationary '
        "Gaussian field with the spectrum of the VAE's training residual (no information about "
        "the conditions; `jaxgeo.terrain.run.with_detail`).",
        "",
        "| condition | CFG | stages | slope W1 | slope W1 +detail | curvature W1 | "
        "curvature W1 +detail | spectrum slope (ref) | +detail | coarse RMSE m | "
        "class agreement | +detail | s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        stages = r.get("sampler") or ("two" if r["two_stage"] else "one")
        d = r["with_detail"]
        lines.append(
            f"| {r['condition']} | {r['guidance']:g} | {stages} | {r['slope_w1']:.2f} | "
            f"{d['slope_w1']:.2f} | {r['curvature_w1']:.2f} | {d['curvature_w1']:.2f} | "
            f"{r['spectrum_slope']:.2f} ({r['spectrum_slope_ref']:.2f}) | "
            f"{d['spectrum_slope']:.2f} | {r['coarse_rmse_m']:.1f} | "
            f"{r['class_agreement']:.2f} | {d['class_agreement']:.2f} | {r['seconds']:.1f} |"
        )
    lines += ["", "Reference rows:", "", "| baseline | slope W1 | curvature W1 | spectrum slope | "
              "coarse RMSE m |", "|---|---|---|---|---|"]  # fmt: skip
    for name, r in result["baselines"].items():
        lines.append(
            f"| {name} | {r['slope_w1']:.2f} | {r['curvature_w1']:.2f} | "
            f"{r['spectrum_slope']:.2f} | {r['coarse_rmse_m']:.1f} |"
        )
    o = result.get("outpaint")
    if o:
        lines += [
            "",
            f"Outpainting {o['size']} (coarse condition from the whole Jacksboro tile, CFG 3, "
            f"stride {o['stride']} latent cells): seam discontinuity {o['outpaint']['seam_rms_m']:.2f} m "
            f"(between seams {o['outpaint']['between_seams_rms_m']:.2f} m, ratio "
            f"{o['outpaint']['seam_ratio']:.2f}); independent tiles {o['tiled']['seam_rms_m']:.2f} m "
            f"(ratio {o['tiled']['seam_ratio']:.2f}). Coarse RMSE {o['outpaint']['coarse_rmse_m']:.1f} m; "
            f"{o['seconds']:.0f} s.",
        ]
    total = f"Total {result['seconds']:.0f} s on {result['machine']}"
    if result.get("training_seconds"):
        t = result["training_seconds"]
        total += (f" (training reused from an earlier run of this script: VAE {t['vae']:.0f} s, "
                  f"flows {t['flow']:.0f} s)")  # fmt: skip
    lines += ["", total + ".", ""]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small nets, short training (CPU)")
    p.add_argument("--work", type=Path, default=Path("/tmp/jaxgeo_terrain_table"),
                   help="folder for the VAE and flow run folders")  # fmt: skip
    p.add_argument("--reuse", action="store_true", help="reuse finished runs in --work")
    p.add_argument("--plots", type=Path, help="write the runs' PNG figures here")
    args = p.parse_args()
    setting = QUICK if args.quick else FULL
    t0 = time.perf_counter()
    vae_dir, flow_dir = args.work / "vae", args.work / "flow"
    if not (args.reuse and (vae_dir / "model.json").is_file()):
        s = train_vae(setting["vae"], vae_dir, overwrite=True, plots=args.plots)
        print(json.dumps(s), flush=True)
    vae_summary = json.loads((vae_dir / "summary.json").read_text())
    reused = args.reuse and (flow_dir / "model.json").is_file()
    if not reused:
        s = train_flow(vae_dir, setting["flow"], flow_dir, overwrite=True, plots=args.plots,
                       eval_samples=0)  # fmt: skip
        print(json.dumps(s), flush=True)
    models = with_detail(load_models(flow_dir))
    if args.plots is not None and not (args.plots / "flow_samples_coarse.png").is_file():
        from jaxgeo.terrain.run import _flow_plots

        history = json.loads((flow_dir / "history.json").read_text())
        _flow_plots(args.plots, models, history)
    n = setting["n"]
    rows = _rows(models, n)
    base = baselines(models, n=n)
    big = sample_large(models, size=(256, 384), condition="coarse", guidance=3.0)
    outp = {"size": "256x384", "stride": 4, "outpaint": big["metrics"],
            "tiled": big["tiled_metrics"], "seconds": big["seconds"]}  # fmt: skip
    if args.plots is not None:
        from jaxgeo.terrain.commands import plot_canvas

        plot_canvas(args.plots / "outpaint_256x384.png", big, models.dem.cell_size_m)
    import platform

    result = {
        "setting": "quick (CPU)" if args.quick else "full",
        "vae_config": setting["vae"].to_dict(),
        "flow_config": setting["flow"].to_dict(),
        "vae": vae_summary,
        "n": n,
        "rows": rows,
        "baselines": base,
        "outpaint": outp,
        "seconds": time.perf_counter() - t0,
        "machine": f"{platform.machine()} CPU ({platform.node()}), jax CPU",
    }
    if reused:
        flow_summary = json.loads((flow_dir / "summary.json").read_text())
        result["training_seconds"] = {"vae": vae_summary["seconds"],
                                      "flow": flow_summary["seconds"]}  # fmt: skip
    RESULTS.mkdir(exist_ok=True)
    stem = "terrain_table_quick" if args.quick else "terrain_table"
    (RESULTS / f"{stem}.json").write_text(json.dumps(result, indent=2, default=float) + "\n")
    (RESULTS / f"{stem}.md").write_text(_markdown(result))
    print(_markdown(result))


if __name__ == "__main__":
    main()
