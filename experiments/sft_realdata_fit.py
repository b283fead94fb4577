"""Real-data inference: fit ν and the meridional-flow amplitude to HipFT's CR2252 run.

HipFT's ``diffuse_advect_atten_map_1cr`` reference case (``../shared/data/hipft``) starts from
the CR2252 HMI map (180 × 360, 1°) and runs 672 h (2688 steps of 0.25 h) with the AFT
differential rotation and meridional flow, flow attenuation at 300 G and ν = 25 km²/s, for 5
realizations over the flow coefficients; it stores the final map of each realization (and
histories). This script fits ν and the meridional amplitude p1 of one realization (default
HipFT's realization 2: p0, p2, p4 = 46, −262, −379 m/s, p1, p3, p5 = 22, 11, −28 m/s) so that
a jaxgeo run from the CR2252 map reproduces HipFT's final map: start from wrong values
(ν = 60 km²/s, p1 = 0.6 × the true one), Adam (a few large steps) then L-BFGS, both through
the differentiable run (``jaxgeo.sft.inference``, forward-mode gradients), then the
Gauss–Newton uncertainty at the optimum. The other coefficients are HipFT's values of that
realization. The model steps with Δt = 1 h (HipFT: 0.25 h), to keep the fit within minutes on
a CPU; the difference this makes is measured (the loss at HipFT's true values, and the shift
of the optimum it causes) and reported.

Writes ``experiments/results/sft_realdata_fit.{json,md}`` and two figures
(``sft_realdata_fit_loss.png``, ``sft_realdata_fit_map.png``). About 15 min on 2 loaded CPU
cores; ``--quick`` (Δt = 2 h, 2 Adam + 2 L-BFGS steps) is a smoke run of a few minutes.

Run: ``.venv/bin/python experiments/sft_realdata_fit.py [--data ../shared/data/hipft]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

from jaxgeo.sft import inference as inf  # noqa: E402
from jaxgeo.sft.config import SftConfig  # noqa: E402
from jaxgeo.sft.simulation import read_initial_map  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "experiments" / "results"
CASE = "diffuse_advect_atten_map_1cr"
INITIAL = "br_hmi_synoptic_mr_polfil_720s_cr2252_pslt_flxbal_remeshed_small.h5"
FINAL = "reference_hipft_brmap_final.h5"
PARAMS = "hipft_realization_parameters.out"
NU, P1 = "diffusion.nu_km2_s", "flow.meridional.p1"
KEYS = (NU, P1)
T_END = 672.0
# HipFT's columns (hipft_realization_parameters.out) -> our config keys.
COLUMNS = {
    "diffusion_coef_constants": NU,
    "flow_dr_coef_p0_values": "flow.differential_rotation.p0",
    "flow_dr_coef_p2_values": "flow.differential_rotation.p2",
    "flow_dr_coef_p4_values": "flow.differential_rotation.p4",
    "flow_mf_coef_p1_values": P1,
    "flow_mf_coef_p3_values": "flow.meridional.p3",
    "flow_mf_coef_p5_values": "flow.meridional.p5",
    "flow_attenuate_values": "flow.attenuate_gauss",
}

log = logging.getLogger("sft_realdata_fit")


def read_realizations(path: Path) -> list[dict[str, float]]:
    """HipFT's per-realization parameters, as our config keys."""
    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    header, rows = lines[0], lines[1:]
    out = []
    for row in rows:
        values = dict(zip(header, (float(v) for v in row), strict=True))
        out.append({key: values[col] for col, key in COLUMNS.items()})
    return out


def model_config(init: Path, truth: dict[str, float], start: dict[str, float], dt: float) -> Any:
    """The realization's physics with the fitted keys at their starting values."""
    return SftConfig.from_dict(
        {
            "initial": {"kind": "map", "path": str(init)},
            "time": {"end_hours": T_END, "dt_max_hours": dt},
            "output": {
                "map_cadence_hours": T_END,
                "history_cadence_hours": T_END,
                "dtype": "float64",
            },
            "flow": {
                "scheme": "weno3-ssprk43",  # HipFT's default
                "differential_rotation": {
                    "model": "aft",
                    "p0": truth["flow.differential_rotation.p0"],
                    "p2": truth["flow.differential_rotation.p2"],
                    "p4": truth["flow.differential_rotation.p4"],
                },
                "meridional": {
                    "model": "aft",
                    "p1": start[P1],
                    "p3": truth["flow.meridional.p3"],
                    "p5": truth["flow.meridional.p5"],
                },
                "attenuate_gauss": truth["flow.attenuate_gauss"],
            },
            "diffusion": {"nu_km2_s": start[NU], "scheme": "rkg2"},
        }
    )


def plot_loss(adam: inf.FitResult, lbfgs: inf.FitResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_a = len(adam.loss_history)
    it_a = np.arange(n_a)
    it_l = n_a - 1 + np.arange(len(lbfgs.loss_history))
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.5), constrained_layout=True)
    for ax, a, b, label in (
        (axes[0], adam.loss_history, lbfgs.loss_history, "loss (relative squared misfit)"),
        (
            axes[1],
            adam.gradient_norm_history,
            lbfgs.gradient_norm_history,
            "|gradient| (unconstrained coordinates)",
        ),
    ):
        ax.semilogy(it_a, a, "o-", ms=4, color="C0", label="Adam")
        ax.semilogy(it_l, b, "s-", ms=4, color="C3", label="L-BFGS")
        ax.set_xlabel("iteration")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.suptitle("Fit of ν and p1 to HipFT's final CR2252 map (672 h)", fontsize=10)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_maps(
    lat: np.ndarray,
    lon: np.ndarray,
    observed: np.ndarray,
    fitted: np.ndarray,
    start: np.ndarray,
    titles: tuple[str, str],
    path: Path,
) -> None:
    """Observed and fitted final maps (lat ascending) and their differences."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lim = float(np.percentile(np.abs(observed), 99.0))
    start_lim = float(np.percentile(np.abs(start - observed), 99.5))
    # The fitted residual is ~1000x smaller than the start's: its own colour scale.
    fit_lim = float(np.percentile(np.abs(fitted - observed), 99.5))
    fig, axes = plt.subplots(2, 2, figsize=(12.0, 6.4), constrained_layout=True)
    panels = (
        (axes[0, 0], observed, "HipFT final map, t = 672 h (observed)", lim),
        (axes[0, 1], fitted, titles[0], lim),
        (axes[1, 0], start - observed, titles[1], start_lim),
        (axes[1, 1], fitted - observed, f"fitted − observed (scale ±{fit_lim:.2g} G)", fit_lim),
    )
    for ax, field, title, vmax in panels:
        mesh = ax.pcolormesh(
            lon, lat, field, cmap="RdBu_r", vmin=-vmax, vmax=vmax, shading="nearest"
        )
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("Carrington longitude [deg]")
        ax.set_ylabel("latitude [deg]")
        fig.colorbar(mesh, ax=ax, label="Br [G]", extend="both", shrink=0.9)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        default=str(REPO / ".." / "shared" / "data" / "hipft"),
        help="HipFT reference data folder (default: ../shared/data/hipft from the repository)",
    )
    parser.add_argument(
        "--realization",
        type=int,
        default=2,
        help="HipFT realization (1-based, as in its files) to fit (default 2)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: Δt = 2 h, 2 Adam + 2 L-BFGS steps"
    )
    parser.add_argument("--out", default=str(RESULTS), help="folder for the results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("jaxgeo").setLevel(logging.INFO)

    case = Path(args.data) / CASE
    missing = [p for p in (case / INITIAL, case / FINAL, case / PARAMS) if not p.is_file()]
    if missing:
        sys.stderr.write(
            f"sft_realdata_fit: HipFT reference data not found: {', '.join(map(str, missing))}\n"
            f"  expected the folder {case} of ../shared/data/hipft (see its README.md); "
            "pass --data DIR\n"
        )
        return 2
    realizations = read_realizations(case / PARAMS)
    r = int(args.realization)
    if not 1 <= r <= len(realizations):
        sys.stderr.write(f"--realization must be in 1..{len(realizations)}, got {r}\n")
        return 2
    truth = realizations[r - 1]
    start = {NU: 60.0, P1: round(0.6 * truth[P1], 6)}
    dt = 2.0 if args.quick else 1.0
    # Adam only brings the start near the optimum (a rate of 0.3 overshoots p1 and
    # oscillates); L-BFGS converges from there in a few iterations.
    n_adam, lr, n_lbfgs = (2, 0.15, 2) if args.quick else (5, 0.15, 12)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "sft_realdata_fit_quick" if args.quick else "sft_realdata_fit"
    wall0 = time.perf_counter()

    grid, br0 = read_initial_map(case / INITIAL)
    _, finals = read_initial_map(case / FINAL)  # (5, n_theta, n_phi), north first
    observed = finals[r - 1]
    obs = inf.Observations(
        lat_deg=grid.lat_deg[::-1].copy(),
        lon_deg=grid.lon_deg.copy(),
        map_times=np.asarray([0.0, T_END]),
        maps=np.stack([br0[0], observed]),
        history_times=np.zeros(0),
        history={},
        source=str(case / FINAL),
    )
    cfg = model_config(case / INITIAL, truth, start, dt)
    problem = inf.make_problem(
        cfg,
        obs,
        KEYS,
        inf.MisfitSpec(maps=True, history=()),
        grad_mode="forward",
        # ν's box (log-tanh) also sets the diffusion stages planned for every trial point.
        bounds={NU: (5.0, 150.0)},
        starts=[start],
    )
    sim = problem.model.sim
    plan = sim.physics.diffusion_plan
    log.info(
        "grid %s, dt %.3g h (%d steps), RKG2 stages %s",
        grid.shape,
        sim.dt_step,
        round(T_END / sim.dt_step),
        None if plan is None else plan.stages,
    )
    t = time.perf_counter()
    adam = inf.fit(problem, [start], optimizer="adam", steps=n_adam, learning_rate=lr)
    t_adam = time.perf_counter() - t
    t = time.perf_counter()
    lbfgs = inf.fit(problem, [adam.estimate], optimizer="lbfgs", steps=n_lbfgs)
    t_lbfgs = time.perf_counter() - t
    estimate = lbfgs.estimate
    t = time.perf_counter()
    unc = inf.fisher_uncertainty(problem, estimate)
    loss_truth = problem.loss({k: truth[k] for k in KEYS})
    pred_fit = problem.predict(estimate)["maps"][-1]
    pred_start = problem.predict(start)["maps"][-1]
    t_post = time.perf_counter() - t

    rel_err = {k: (estimate[k] - truth[k]) / truth[k] for k in KEYS}
    wall = time.perf_counter() - wall0
    rms = float(np.sqrt(np.mean(observed**2)))
    resid_fit = float(np.sqrt(np.mean((pred_fit - observed) ** 2)))
    resid_start = float(np.sqrt(np.mean((pred_start - observed) ** 2)))
    payload: dict[str, Any] = {
        "case": CASE,
        "hipft_realization": r,
        "observed": f"HipFT 1.19.3 final map of realization {r} at t = {T_END:g} h "
        "(2688 steps of 0.25 h)",
        "model": {
            "grid": list(grid.shape),
            "dt_hours": sim.dt_step,
            "steps": round(T_END / sim.dt_step),
            "advection": "weno3-ssprk43",
            "diffusion": "rkg2",
            "rkg2_stages": None if plan is None else list(plan.stages),
            "fixed": {k: v for k, v in truth.items() if k not in KEYS},
        },
        "keys": list(KEYS),
        "true": {k: truth[k] for k in KEYS},
        "start": start,
        "estimate": estimate,
        "relative_error": rel_err,
        "uncertainty": unc.std,
        "uncertainty_sandwich": unc.std_sandwich,
        "correlation": unc.correlation.tolist(),
        "fisher_condition": unc.condition,
        "n_residuals": unc.n_residuals,
        "loss_start": adam.loss_history[0],
        "final_loss": lbfgs.loss,
        "loss_at_true_values": loss_truth,
        "rms_observed_gauss": rms,
        "rms_residual_start_gauss": resid_start,
        "rms_residual_fitted_gauss": resid_fit,
        "adam": {
            "steps": adam.iterations,
            "learning_rate": lr,
            "estimate": adam.estimate,
            "loss_history": adam.loss_history,
            "gradient_norm_history": adam.gradient_norm_history,
            "wall_s": round(t_adam, 1),
        },
        "lbfgs": {
            "iterations": lbfgs.iterations,
            "converged": lbfgs.converged,
            "stop_reason": lbfgs.reason,
            "loss_history": lbfgs.loss_history,
            "gradient_norm_history": lbfgs.gradient_norm_history,
            "wall_s": round(t_lbfgs, 1),
        },
        # Adam's iterates, then L-BFGS's from Adam's best iterate (its first entry).
        "loss_history": adam.loss_history + lbfgs.loss_history,
        "gradient_norm_history": adam.gradient_norm_history + lbfgs.gradient_norm_history,
        "quick": bool(args.quick),
        "machine": f"{platform.machine()} {platform.system()}, jax {jax.__version__}, "
        f"{jax.devices()[0].platform}",
        "date": time.strftime("%Y-%m-%d"),
        "wall_s": round(wall, 1),
        "wall_s_uncertainty_and_maps": round(t_post, 1),
    }
    (out_dir / f"{stem}.json").write_text(json.dumps(payload, indent=2) + "\n")

    lat, lon = grid.lat_deg[::-1], grid.lon_deg
    plot_loss(adam, lbfgs, out_dir / f"{stem}_loss.png")
    plot_maps(
        lat,
        lon,
        observed[::-1],
        pred_fit[::-1],
        pred_start[::-1],
        (
            f"jaxgeo, fitted (ν = {estimate[NU]:.2f} km²/s, p1 = {estimate[P1]:.3f} m/s)",
            f"start (ν = {start[NU]:g}, p1 = {start[P1]:g}) − observed",
        ),
        out_dir / f"{stem}_map.png",
    )
    (out_dir / f"{stem}.md").write_text(markdown(payload))
    log.info("done in %.0f s: %s", wall, json.dumps({k: payload[k] for k in ("estimate",)}))
    return 0


def markdown(p: dict[str, Any]) -> str:
    nu_u, p1_u = p["uncertainty"][NU], p["uncertainty"][P1]
    rows = [
        f"| ν [km²/s] | {p['true'][NU]:g} | {p['start'][NU]:g} | {p['adam']['estimate'][NU]:.3f} "
        f"| {p['estimate'][NU]:.4f} ± {nu_u:.2g} | {p['relative_error'][NU]:+.2e} |",
        f"| p1 [m/s] | {p['true'][P1]:g} | {p['start'][P1]:g} | {p['adam']['estimate'][P1]:.3f} "
        f"| {p['estimate'][P1]:.4f} ± {p1_u:.2g} | {p['relative_error'][P1]:+.2e} |",
    ]
    corr = p["correlation"][0][1]
    return "\n".join(
        [
            "# Fit of ν and the meridional amplitude to HipFT's CR2252 reference run",
            "",
            f"Observed: {p['observed']}, case `{p['case']}` (AFT flows, attenuation "
            f"{p['model']['fixed']['flow.attenuate_gauss']:g} G). Model: jaxgeo from the same "
            f"CR2252 map on the same {p['model']['grid'][0]} × {p['model']['grid'][1]} grid, "
            f"WENO3-SSPRK(4,3) + RKG2 ({p['model']['rkg2_stages']} stages), "
            f"Δt = {p['model']['dt_hours']:g} h ({p['model']['steps']} steps), the other "
            "coefficients at HipFT's values of the realization. Misfit: area-weighted squared "
            "difference of the final map over the whole sphere, relative to Σ W B_obs². Fit: Adam "
            f"({p['adam']['steps']} steps, rate {p['adam']['learning_rate']:g} in the "
            f"unconstrained coordinates) then L-BFGS ({p['lbfgs']['iterations']} iterations, "
            f"stop: {p['lbfgs']['stop_reason']}); forward-mode gradients. ± is the Gauss–Newton "
            "(Fisher) standard deviation (sandwich: "
            f"ν {p['uncertainty_sandwich'][NU]:.2g}, p1 {p['uncertainty_sandwich'][P1]:.2g}); "
            f"correlation(ν, p1) = {corr:+.2f}.",
            "",
            "| parameter | HipFT | start | after Adam | fitted | rel. error |",
            "|---|---|---|---|---|---|",
            *rows,
            "",
            f"Loss: start {p['loss_start']:.3e}, fitted {p['final_loss']:.3e}, at HipFT's true "
            f"values {p['loss_at_true_values']:.3e}. RMS of Br: observed "
            f"{p['rms_observed_gauss']:.2f} G; residual {p['rms_residual_start_gauss']:.3f} G at "
            f"the start, {p['rms_residual_fitted_gauss']:.4f} G fitted.",
            "",
            "Loss history (Adam, then L-BFGS from Adam's best iterate): "
            + ", ".join(f"{v:.3e}" for v in p["loss_history"])
            + ".  Gradient norm: "
            + ", ".join(f"{v:.2e}" for v in p["gradient_norm_history"])
            + ".",
            "",
            f"{p['machine']}, {p['date']}; total {p['wall_s']:.0f} s (Adam "
            f"{p['adam']['wall_s']:.0f} s, L-BFGS {p['lbfgs']['wall_s']:.0f} s, uncertainty and "
            f"maps {p['wall_s_uncertainty_and_maps']:.0f} s, compilation included)"
            + (" — quick smoke run, not a result." if p["quick"] else "."),
            "",
            "Figures: `sft_realdata_fit_loss.png` (loss and gradient norm per iteration), "
            "`sft_realdata_fit_map.png` (observed, fitted, start − observed, fitted − observed).",
            "",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())
