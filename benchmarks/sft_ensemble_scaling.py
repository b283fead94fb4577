"""Cost of flux-transport ensembles: N = 1, 4, 16, 64 realizations at 1°, per realization-step.

Each case runs the real CR2252 HMI map (180 x 360, packaged) with AFT flows, attenuation at
300 G, diffusion (ν spread over the ensemble, 250 ... 100 km²/s, RKG2) and Δt = 0.25 h for
``--steps`` steps, through :func:`jaxgeo.sft.ensemble.place` (realizations split over all
devices present, the batch padded to fill them) — the code path of ``jaxgeo sft run``. The
timing is the best of ``--repeats`` runs after one warm-up (compilation excluded). One JSON line
per N:

    .venv/bin/python benchmarks/sft_ensemble_scaling.py [--n 1,4,16,64] [--steps 50]

``cell_steps_per_cpu_s`` counts HipFT's cells (n_theta x (n_phi + 1)), as benchmarks/
sft_vs_hipft.py does, to compare with HipFT's 5-realization CPU figure (6.9 M cell-steps per
CPU-second, HipFT 1.x with OpenMP on CPU). ``cost_vs_one`` is the wall time of the batch over
that of one realization (the target: 16 realizations cost less than 8 x one).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

from jaxgeo.sft import ensemble  # noqa: E402
from jaxgeo.sft.config import SftConfig, default_config_path  # noqa: E402
from jaxgeo.sft.simulation import build  # noqa: E402

HIPFT_CELL_STEPS_PER_CPU_S = 6.9e6


def config(n: int, steps: int, dt: float) -> SftConfig:
    # ν from 100 to 250 km²/s: the largest (which sets the RKG2 stage count) is the same for
    # every N, so the cost per realization-step is comparable across N.
    nus = [250.0 - 150.0 * k / max(n - 1, 1) for k in range(n)]
    d = {
        "initial": {
            "kind": "map",
            "path": str(default_config_path().parent / "br_cr2252_360x180.h5"),
        },
        "time": {"end_hours": steps * dt, "dt_max_hours": dt},
        "output": {"map_cadence_hours": steps * dt, "history_cadence_hours": steps * dt},
        "flow": {
            "differential_rotation": {"model": "aft"},
            "meridional": {"model": "aft"},
            "attenuate_gauss": 300.0,
        },
        "diffusion": {"nu_km2_s": 250.0, "scheme": "rkg2"},
    }
    if n > 1:
        d["ensemble"] = {"diffusion.nu_km2_s": nus}
    return SftConfig.from_dict(d)


def bench(n: int, steps: int, dt: float, repeats: int) -> dict:
    sim = build(config(n, steps, dt))
    placement = ensemble.place(sim)
    br, params, keys = placement.put_state(sim.br0, sim.params, sim.keys)
    args = (params, keys, jnp.asarray(0.0), jnp.asarray(dt), jnp.asarray(steps, jnp.int32))
    t0 = time.perf_counter()
    jax.block_until_ready(placement.advance(br, *args))
    compile_s = time.perf_counter() - t0
    best_wall, best_cpu = float("inf"), float("inf")
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        jax.block_until_ready(placement.advance(br, *args))
        best_wall = min(best_wall, time.perf_counter() - w0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    hipft_cells = sim.grid.n_theta * (sim.grid.n_phi + 1)
    cell_steps = hipft_cells * steps * n
    return {
        "benchmark": "sft_ensemble_scaling",
        "n_realizations": n,
        "padded": placement.n_padded,
        "devices": placement.n_devices,
        "grid": [sim.grid.n_theta, sim.grid.n_phi],
        "steps": steps,
        "dt_hours": sim.dt_step,
        "diffusion_stages": list(sim.physics.diffusion_plan.stages),
        "compile_s": round(compile_s, 2),
        "wall_s": round(best_wall, 4),
        "cpu_s": round(best_cpu, 4),
        "ms_per_realization_step": round(1e3 * best_wall / (steps * n), 3),
        "cell_steps_per_cpu_s": round(cell_steps / best_cpu),
        "cell_steps_per_wall_s": round(cell_steps / best_wall),
        "vs_hipft_cpu": round(cell_steps / best_cpu / HIPFT_CELL_STEPS_PER_CPU_S, 3),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", default="1,4,16,64", help="comma-separated ensemble sizes")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--dt", type=float, default=0.25, help="hours")
    p.add_argument("--repeats", type=int, default=2)
    a = p.parse_args()
    one = None
    for n in (int(v) for v in a.n.split(",")):
        row = bench(n, a.steps, a.dt, a.repeats)
        if one is None and n == 1:
            one = row["wall_s"]
        if one:
            row["cost_vs_one"] = round(row["wall_s"] / one, 2)
        row.update(
            machine=platform.processor() or platform.machine(),
            cpus=os.cpu_count(),
            jax=jax.__version__,
            backend=jax.default_backend(),
        )
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
