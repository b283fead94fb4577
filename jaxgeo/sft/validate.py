"""HipFT's test-suite cases run by jaxgeo (``jaxgeo sft validate``).

Each case is HipFT's ``hipft.in`` translated to a jaxgeo config. A case reports jaxgeo's
validation error (HHabs against the exact solution, where one exists), HipFT's error on the
same case, and, when HipFT's reference results are at hand (``../shared/data/hipft``), the
relative L2 difference between jaxgeo's and HipFT's final maps. The analytic cases run
without the reference data (HipFT's errors are quoted from its test suite).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np

from ..errors import InputError
from .config import SftConfig
from .grid import SftGrid, drop_periodic_endpoint
from .simulation import Simulation, build
from .units import KM_S_TO_RS_HR

log = logging.getLogger(__name__)

T_END = 672.0


@dataclasses.dataclass(frozen=True)
class Case:
    name: str
    description: str
    config: dict[str, Any]
    hipft_hhabs: tuple[float, ...] | None  # HipFT 1.19.3's final HHabs per realization
    needs_data: bool = False
    slow: bool = False


def _cases() -> dict[str, Case]:
    omega = (2.0 * math.pi / T_END) / KM_S_TO_RS_HR
    vt = (0.5 * math.pi / T_END) / KM_S_TO_RS_HR
    base = {
        "grid": {"n_theta": 180, "n_phi": 360},
        "time": {"end_hours": T_END, "dt_max_hours": 1.0},
    }
    out = {"output": {"map_cadence_hours": T_END, "history_cadence_hours": T_END}}
    cases = [
        Case(
            "advect_gaussians_phi",
            "Gaussian pair, rigid rotation, 1 revolution, WENO3+SSPRK(4,3)",
            {
                **base,
                **out,
                "initial": {"kind": "gaussians"},
                "flow": {"rigid_omega_km_s": omega},
            },
            (2.894308580544581e-2,),
        ),
        Case(
            "advect_gaussians_theta",
            "Gaussian pair moved pi/2 in theta by constant v_theta",
            {
                **base,
                **out,
                "initial": {"kind": "gaussians"},
                "flow": {"vtheta_const_km_s": vt},
            },
            (7.642091826504920e-3,),
        ),
        Case(
            "advect_gaussians_phi_theta",
            "Gaussian pair, both motions",
            {
                **base,
                **out,
                "initial": {"kind": "gaussians"},
                "flow": {"rigid_omega_km_s": omega, "vtheta_const_km_s": vt},
            },
            (3.059378024943556e-2,),
        ),
        Case(
            "diffuse_soccer",
            "soccer ball Y6 decay, nu = 100/200/400/800 km^2/s, RKG2",
            {
                **base,
                **out,
                "initial": {"kind": "soccer"},
                "diffusion": {"nu_km2_s": 100.0},
                "ensemble": {"diffusion.nu_km2_s": [100.0, 200.0, 400.0, 800.0]},
            },
            (
                2.173716486056726e-5,
                4.357795743438217e-5,
                8.735525876899925e-5,
                1.752425016406606e-4,
            ),
        ),
        Case(
            "diffuse_advect_soccer",
            "soccer ball decay plus rigid rotation (1 revolution)",
            {
                **base,
                **out,
                "initial": {"kind": "soccer"},
                "diffusion": {"nu_km2_s": 100.0},
                "flow": {"rigid_omega_km_s": 1.8076624395655556},
                "ensemble": {"diffusion.nu_km2_s": [100.0, 200.0, 400.0, 800.0]},
            },
            (
                9.828472589407068e-4,
                9.769111776399375e-4,
                9.664206019585013e-4,
                9.512170269472321e-4,
            ),
        ),
        Case(
            "diffuse_dipole",
            "1000 G dipole on 1024x512, nu = 500 km^2/s, one 8760 h step (STS + sub-cycling)",
            {
                "initial": {"kind": "map", "path": "diffuse_dipole/br_input.h5"},
                "time": {"end_hours": 8760.0, "dt_max_hours": 8760.0},
                "output": {"map_cadence_hours": 8760.0, "history_cadence_hours": 8760.0},
                "diffusion": {"nu_km2_s": 500.0},
            },
            None,
            needs_data=True,
            slow=True,
        ),
        Case(
            "diffuse_advect_atten_map_1cr",
            "real CR2252 map, AFT flows, attenuation 300 G, nu = 25, 5 realizations over flow coefficients",
            {
                "initial": {
                    "kind": "map",
                    "path": "diffuse_advect_atten_map_1cr/br_hmi_synoptic_mr_polfil_720s_cr2252_pslt_flxbal_remeshed_small.h5",
                },
                "time": {"end_hours": T_END, "dt_max_hours": 0.25},
                "output": {"map_cadence_hours": T_END, "history_cadence_hours": T_END},
                "flow": {
                    "differential_rotation": {"model": "aft"},
                    "meridional": {"model": "aft"},
                    "attenuate_gauss": 300.0,
                },
                "diffusion": {"nu_km2_s": 25.0},
                "ensemble": {
                    "flow.differential_rotation.p0": [41.4, 46.0, 50.6, 46.0, 46.0],
                    "flow.differential_rotation.p2": [-288.2, -262.0, -235.8, -262.0, -262.0],
                    "flow.differential_rotation.p4": [-416.0, -379.0, -341.1, -379.0, -379.0],
                    "flow.meridional.p1": [22.0, 22.0, 22.0, 17.8, 24.2],
                    "flow.meridional.p3": [11.0, 11.0, 11.0, 9.9, 12.1],
                    "flow.meridional.p5": [-28.0, -28.0, -28.0, -30.8, -25.2],
                },
            },
            None,
            needs_data=True,
            slow=True,
        ),
    ]
    return {c.name: c for c in cases}


CASES = _cases()


def find_reference_dir(data_dir: str | Path | None = None) -> Path | None:
    """HipFT's reference data folder: the argument, ``$JAXGEO_SHARED_DATA/hipft``, or
    ``../shared/data/hipft`` from the working directory or the source tree."""
    import os

    candidates = []
    if data_dir is not None:
        candidates.append(Path(data_dir))
    if os.environ.get("JAXGEO_SHARED_DATA"):
        candidates.append(Path(os.environ["JAXGEO_SHARED_DATA"]) / "hipft")
    candidates += [
        Path.cwd() / ".." / "shared" / "data" / "hipft",
        Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "hipft",
    ]
    for c in candidates:
        if (c / "README.md").exists() or (c / "diffuse_soccer").is_dir():
            return c.resolve()
    if data_dir is not None:
        raise InputError(f"--data {data_dir}: not a folder of HipFT reference cases")
    return None


def _final_reference(case_dir: Path, grid: SftGrid) -> np.ndarray | None:
    from ..io import read_hipft_map

    path = case_dir / "reference_hipft_brmap_final.h5"
    if not path.exists():
        return None
    m = read_hipft_map(path)
    return np.asarray(drop_periodic_endpoint(jnp.asarray(m.data)))


def _hipft_hhabs(case_dir: Path) -> list[float] | None:
    from .diagnostics import read_hipft_history

    files = sorted(case_dir.glob("hipft_history_sol_r*.out"))
    if not files:
        return None
    return [float(read_hipft_history(f)["validation_err_hhabs"][-1]) for f in files]


def simulate(sim: Simulation) -> jnp.ndarray:
    """Run a simulation to its end without writing anything; returns the final fields."""
    br = sim.br0
    for seg in sim.segments:
        br = sim.advance_segment(br, seg)
    return br


def _run_dipole_exact(cfg: SftConfig) -> tuple[np.ndarray, Any]:
    """HipFT's diffuse_dipole: one step with HipFT's field-dependent automatic sub-cycles."""
    from . import diffusion
    from .units import KM2_S_TO_RS2_HR

    sim = build(cfg)
    assert cfg.diffusion is not None
    nu = cfg.diffusion.nu_km2_s * KM2_S_TO_RS2_HR
    br, _ = diffusion.diffuse_auto(sim.grid, sim.br0, nu, cfg.time.end_hours, cfg.diffusion.scheme)
    return np.asarray(br), sim


def run_case(case: Case, ref_dir: Path | None) -> dict[str, Any]:
    cfg_dict = dict(case.config)
    base_dir = ref_dir if ref_dir is not None else Path.cwd()
    cfg = SftConfig.from_dict(cfg_dict, base_dir=base_dir)
    t0 = time.perf_counter()
    if case.name == "diffuse_dipole":
        final, sim = _run_dipole_exact(cfg)
    else:
        sim = build(cfg)
        final = np.asarray(simulate(sim))
    wall = time.perf_counter() - t0
    result: dict[str, Any] = {
        "case": case.name,
        "description": case.description,
        "grid": [sim.grid.n_theta, sim.grid.n_phi + 1],
        "realizations": sim.n_realizations,
        "wall_s": round(wall, 2),
    }
    if sim.exact is not None:
        hist = sim.compute_history(jnp.asarray(final), cfg.time.end_hours)
        result["jaxgeo_hhabs"] = [float(v) for v in hist["validation_err_hhabs"]]
    hip = None
    if ref_dir is not None and (ref_dir / case.name).is_dir():
        hip = _hipft_hhabs(ref_dir / case.name)
        ref = _final_reference(ref_dir / case.name, sim.grid)
        if ref is not None:
            ref = np.broadcast_to(ref, final.shape)
            num = np.sqrt(np.sum((final - ref) ** 2, axis=(-2, -1)))
            den = np.sqrt(np.sum(ref**2, axis=(-2, -1)))
            result["map_rel_l2_vs_hipft"] = [float(v) for v in num / den]
    if hip is None and case.hipft_hhabs is not None:
        hip = list(case.hipft_hhabs)
    if hip is not None and any(h > 0 for h in hip):
        result["hipft_hhabs"] = hip
    if "jaxgeo_hhabs" in result and "hipft_hhabs" in result:
        ours, theirs = result["jaxgeo_hhabs"], result["hipft_hhabs"]
        result["hhabs_not_worse"] = bool(
            all(o <= h * (1 + 1e-3) for o, h in zip(ours, theirs, strict=False))
        )
    return result


def _fmt(values: Any) -> str:
    if not values:
        return "-"
    if len(set(f"{v:.3e}" for v in values)) == 1:
        return f"{values[0]:.3e}"
    return f"{min(values):.3e}..{max(values):.3e}"


def run_validation(
    cases: list[str] | None = None,
    data_dir: str | Path | None = None,
    *,
    json_only: bool = False,
    include_slow: bool = False,
) -> dict[str, Any]:
    ref_dir = find_reference_dir(data_dir)
    names = cases or [n for n, c in CASES.items() if include_slow or not c.slow]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        raise InputError(f"unknown validation case(s) {unknown}; choose from {list(CASES)}")
    results = []
    for name in names:
        case = CASES[name]
        if case.needs_data and ref_dir is None:
            log.warning("skipping %s: HipFT reference data not found (use --data)", name)
            results.append({"case": name, "skipped": "reference data not found"})
            continue
        log.info("running %s", name)
        results.append(run_case(case, ref_dir))
    if not json_only:
        header = f"{'case':30s} {'jaxgeo HHabs':>22s} {'HipFT HHabs':>22s} {'map vs HipFT (rel L2)':>24s} {'wall s':>7s}"
        lines = [header, "-" * len(header)]
        for r in results:
            if "skipped" in r:
                lines.append(f"{r['case']:30s} skipped: {r['skipped']}")
                continue
            lines.append(
                f"{r['case']:30s} {_fmt(r.get('jaxgeo_hhabs')):>22s} {_fmt(r.get('hipft_hhabs')):>22s} "
                f"{_fmt(r.get('map_rel_l2_vs_hipft')):>24s} {r['wall_s']:7.1f}"
            )
        sys.stderr.write("\n".join(lines) + "\n")
    ok = all(r.get("hhabs_not_worse", True) for r in results)
    return {
        "ok": ok,
        "command": "sft validate",
        "reference_data": str(ref_dir) if ref_dir else None,
        "cases": results,
    }
