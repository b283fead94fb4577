"""Micro-benchmark of the flux-transport kernels: one advection step (flow fixed), one diffusion
step, the flows (with attenuation), flows + advection (flow recomputed from the field each
step, as in the full step) and one full step, per CPU-second and per wall-second.

Each kernel is jitted inside a ``lax.fori_loop`` of ``--steps`` iterations over the batch of
realizations (``jax.vmap``, realization axis leading), as ``jaxgeo.sft.simulation.make_advance``
runs it; the timing is the best of ``--repeats`` runs after one warm-up. Prints one JSON line
per (case, kernel):

    .venv/bin/python benchmarks/sft_kernels.py [--cases 1deg,1deg_r5,1024x512] [--steps N]

Cases use the physics of ``benchmarks/sft_vs_hipft.py``'s flow_diff cases (AFT flows,
attenuation at 300 G, ν = 25 km²/s, RKG2 with HipFT's automatic sub-cycling, Δt = 0.25 h) on
a uniform grid of the same size, so no map file is needed:

    1deg      180 x 359 unique longitudes (HipFT's 360 with the periodic point), 1 realization
    1deg_r5   the same with 5 realizations
    1024x512  512 x 1023, 1 realization

``cell_steps_per_cpu_s`` counts HipFT's cells (n_theta x (n_phi + 1)) as sft_vs_hipft.py does.
``ms_per_step`` is wall time per step of the whole batch.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

from jaxgeo.sft import advection, diffusion  # noqa: E402
from jaxgeo.sft.config import SftConfig  # noqa: E402
from jaxgeo.sft.simulation import build, make_flows, make_step  # noqa: E402

CASES = {"1deg": (180, 360, 1), "1deg_r5": (180, 360, 5), "1024x512": (512, 1024, 1)}


def _config(n_theta: int, n_phi: int, realizations: int) -> dict:
    cfg = {
        "grid": {"n_theta": n_theta, "n_phi": n_phi},
        "initial": {"kind": "harmonic", "l": 12, "m": 7, "amplitude_gauss": 800.0},
        "time": {"end_hours": 672.0, "dt_max_hours": 0.25},
        "output": {"map_cadence_hours": 672.0, "history_cadence_hours": 672.0},
        "flow": {
            "differential_rotation": {"model": "aft"},
            "meridional": {"model": "aft"},
            "attenuate_gauss": 300.0,
        },
        "diffusion": {"nu_km2_s": 25.0},
    }
    if realizations > 1:
        p0 = [41.4 + 2.3 * k for k in range(realizations)]
        cfg["ensemble"] = {"flow.differential_rotation.p0": p0}
    return cfg


def _time(fn, args, repeats: int) -> tuple[float, float]:
    jax.block_until_ready(fn(*args))  # compile and warm up
    best_wall, best_cpu = math.inf, math.inf
    for _ in range(repeats):
        c0, w0 = time.process_time(), time.perf_counter()
        jax.block_until_ready(fn(*args))
        best_wall = min(best_wall, time.perf_counter() - w0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best_wall, best_cpu


def kernels(sim, steps: int) -> dict:
    """Jitted ``fn(*args)`` running each kernel ``steps`` times over the batch."""
    physics, grid = sim.physics, sim.grid
    br = sim.br0
    dtype = br.dtype
    dt = jnp.asarray(sim.dt_step, dtype)
    t0 = jnp.asarray(0.0, dtype)
    flow_fn = jax.vmap(make_flows(physics), in_axes=(0, 0, None))
    vt, vp = flow_fn(sim.params, br, t0)
    adv = jax.vmap(
        advection.make_advection_step(grid, physics.advection_scheme), in_axes=(0, 0, 0, None)
    )
    dif = jax.vmap(
        diffusion.make_diffusion_step(grid, physics.diffusion_plan), in_axes=(0, 0, None)
    )
    nu = sim.params.nu_km2_s * 0.0 + physics.diffusion_plan.nu_max
    full = jax.vmap(make_step(physics), in_axes=(0, 0, 0, None, None))

    def loop(body):
        return jax.jit(lambda x, *a: jax.lax.fori_loop(0, steps, lambda i, y: body(y, *a), x))

    def flows_body(carry, params):
        x, acc = carry
        vt_i, vp_i = flow_fn(params, x, t0)
        # Feed the flows back so that XLA cannot hoist them out of the loop.
        return x + 1e-30 * vp_i, acc + vt_i

    def flows_adv_body(x, params):
        vt_i, vp_i = flow_fn(params, x, t0)
        return adv(x, vt_i, vp_i, dt)

    return {
        "advection": (loop(lambda x, a, b: adv(x, a, b, dt)), (br, vt, vp)),
        # As in the full step: the flows change every step, so the advection's per-step
        # preparation (Lax-Friedrichs α, split flows) cannot be hoisted out of the loop.
        "flows_advection": (loop(flows_adv_body), (br, sim.params)),
        "diffusion": (loop(lambda x, n: dif(x, n, dt)), (br, nu)),
        "flows": (loop(flows_body), ((br, jnp.zeros_like(vt)), sim.params)),
        "full_step": (
            loop(lambda x, p, k: full(x, p, k, t0, dt)),
            (br, sim.params, sim.keys),
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--kernels", default="advection,diffusion,flows,flows_advection,full_step")
    parser.add_argument("--steps", type=int, default=50, help="steps per timed run")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for case in args.cases.split(","):
        n_theta, n_phi, n_r = CASES[case]
        sim = build(SftConfig.from_dict(_config(n_theta, n_phi, n_r)))
        steps = args.steps if n_theta < 400 else max(args.steps // 5, 5)
        fns = kernels(sim, steps)
        plan = sim.physics.diffusion_plan
        for name in args.kernels.split(","):
            fn, fargs = fns[name]
            wall, cpu = _time(fn, fargs, args.repeats)
            work = n_theta * n_phi * steps * n_r
            row = {
                "benchmark": "sft_kernels",
                "case": case,
                "kernel": name,
                "grid": [n_theta, n_phi],
                "realizations": n_r,
                "scheme": sim.physics.advection_scheme,
                "diffusion": f"{plan.scheme} x{plan.operator_evaluations}",
                "steps": steps,
                "ms_per_step": round(1e3 * wall / steps, 3),
                "cpu_ms_per_step": round(1e3 * cpu / steps, 3),
                "cell_steps_per_cpu_s": round(work / cpu),
                "cell_steps_per_wall_s": round(work / wall),
                "threads": os.cpu_count(),
                "xla_flags": os.environ.get("XLA_FLAGS", ""),
                "load_1min": round(os.getloadavg()[0], 2),
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
