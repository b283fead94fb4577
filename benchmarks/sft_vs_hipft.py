"""Flux-transport speed against HipFT: cell-steps per CPU-second on HipFT's cases.

Prints one JSON line per case with jaxgeo's throughput (per CPU-second of the process, all
threads counted, and per wall-second) next to HipFT 1.19.3's serial figure measured on the same
kind of machine (2-core x86 CPU, gfortran build), and the ratio.

    .venv/bin/python benchmarks/sft_vs_hipft.py [--cases adv_1deg,flow_diff_1deg,...] [--steps N]

Cases:
    adv_1deg          360x180, WENO3 + SSPRK(4,3) advection only (HipFT: 11.7 M/CPU-s)
    flow_diff_1deg    360x180 real CR2252 map, AFT flows + attenuation + diffusion (HipFT: 6.2-7.8 M)
    flow_diff_1deg_r5 the same, 5 realizations over flow coefficients (HipFT: 6.9 M)
    full_1024x512     1024x512 map, AFT flows + attenuation + diffusion (HipFT: 1.2 M)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxgeo.sft.config import SftConfig, default_config_path  # noqa: E402
from jaxgeo.sft.simulation import build  # noqa: E402
from jaxgeo.sft.units import KM_S_TO_RS_HR  # noqa: E402

HIPFT_CELL_STEPS_PER_CPU_S = {
    "adv_1deg": 11.7e6,
    "flow_diff_1deg": 7.0e6,  # HipFT: 6.2-7.8 M, middle of the range
    "flow_diff_1deg_r5": 6.9e6,
    "full_1024x512": 1.2e6,
}

MAP_1DEG = str(default_config_path().parent / "br_cr2252_360x180.h5")
SHARED_1024 = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "hipft" / "maps"


def _map_1024() -> str | None:
    name = "br_hmi_synoptic_mr_polfil_720s_cr2252_pslt_flxbal_remeshed.h5"
    roots = [SHARED_1024]
    if os.environ.get("JAXGEO_SHARED_DATA"):
        roots.insert(0, Path(os.environ["JAXGEO_SHARED_DATA"]) / "hipft" / "maps")
    for root in roots:
        if (root / name).exists():
            return str(root / name)
    return None


def _flow_diff(path: str, dt: float, realizations: int) -> dict:
    cfg = {
        "initial": {"kind": "map", "path": path},
        "time": {"end_hours": 672.0, "dt_max_hours": dt},
        "output": {"map_cadence_hours": 672.0, "history_cadence_hours": 672.0},
        "flow": {
            "differential_rotation": {"model": "aft"},
            "meridional": {"model": "aft"},
            "attenuate_gauss": 300.0,
        },
        "diffusion": {"nu_km2_s": 25.0},
    }
    if realizations > 1:
        p0 = [41.4, 46.0, 50.6, 46.0, 46.0]
        p1 = [22.0, 22.0, 22.0, 17.8, 24.2]
        cfg["ensemble"] = {
            "flow.differential_rotation.p0": (p0 * math.ceil(realizations / 5))[:realizations],
            "flow.meridional.p1": (p1 * math.ceil(realizations / 5))[:realizations],
        }
    return cfg


def case_config(name: str) -> dict | None:
    if name == "adv_1deg":
        omega = (2.0 * math.pi / 672.0) / KM_S_TO_RS_HR
        return {
            "grid": {"n_theta": 180, "n_phi": 360},
            "initial": {"kind": "gaussians"},
            "time": {"end_hours": 672.0, "dt_max_hours": 1.0},
            "output": {"map_cadence_hours": 672.0, "history_cadence_hours": 672.0},
            "flow": {"rigid_omega_km_s": omega},
        }
    if name == "flow_diff_1deg":
        return _flow_diff(MAP_1DEG, 0.25, 1)
    if name == "flow_diff_1deg_r5":
        return _flow_diff(MAP_1DEG, 0.25, 5)
    if name == "full_1024x512":
        path = _map_1024()
        return None if path is None else _flow_diff(path, 0.25, 1)
    raise SystemExit(f"unknown case {name!r}")


def measure(name: str, steps: int, repeats: int) -> dict:
    raw = case_config(name)
    if raw is None:
        return {
            "benchmark": "sft_vs_hipft",
            "case": name,
            "skipped": "1024x512 map not found in ../shared/data",
        }
    sim = build(SftConfig.from_dict(raw))
    br = sim.br0
    dtype = br.dtype
    args = (sim.params, sim.keys, jnp.asarray(0.0, dtype), jnp.asarray(sim.dt_step, dtype))
    t0 = time.perf_counter()
    jax.block_until_ready(sim.advance(br, *args, jnp.asarray(2, jnp.int32)))
    compile_s = time.perf_counter() - t0
    best_wall, best_cpu = math.inf, math.inf
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        out = sim.advance(br, *args, jnp.asarray(steps, jnp.int32))
        jax.block_until_ready(out)
        best_wall = min(best_wall, time.perf_counter() - w0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    assert np.all(np.isfinite(np.asarray(out)))
    cells = sim.grid.n_theta * (sim.grid.n_phi + 1)  # HipFT counts the periodic point
    work = cells * steps * sim.n_realizations
    per_cpu = work / best_cpu
    ref = HIPFT_CELL_STEPS_PER_CPU_S[name]
    dev = jax.devices()[0]
    return {
        "benchmark": "sft_vs_hipft",
        "case": name,
        "grid": [sim.grid.n_theta, sim.grid.n_phi + 1],
        "realizations": sim.n_realizations,
        "steps": steps,
        "dt_hours": sim.dt_step,
        "dtype": str(dtype),
        "device": f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
        "threads": os.cpu_count(),
        "compile_s": round(compile_s, 2),
        "wall_s": round(best_wall, 4),
        "cpu_s": round(best_cpu, 4),
        "cell_steps_per_cpu_s": round(per_cpu),
        "cell_steps_per_wall_s": round(work / best_wall),
        "hipft_cell_steps_per_cpu_s": ref,
        "speedup_per_cpu_s_vs_hipft": round(per_cpu / ref, 2),
        "speedup_wall_vs_hipft_serial": round(work / best_wall / ref, 2),
        "machine": platform.processor() or platform.machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cases", default="adv_1deg,flow_diff_1deg,flow_diff_1deg_r5,full_1024x512"
    )
    parser.add_argument("--steps", type=int, default=200, help="steps timed per case")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    for name in args.cases.split(","):
        steps = args.steps if name != "full_1024x512" else max(args.steps // 10, 10)
        print(json.dumps(measure(name, steps, args.repeats)), flush=True)


if __name__ == "__main__":
    main()
