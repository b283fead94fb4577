"""Cost and memory of the reverse-mode gradient through a flux-transport run.

A 1° run (180 x 360, AFT flows with attenuation at 300 G, ν = 25 km²/s, WENO3-SSPRK(4,3) +
RKG2, Δt = 1 h) from a Y_12^7 field; the scalar is the area-weighted misfit of the final map
to a perturbed copy of itself, differentiated w.r.t. ν and the meridional amplitude p1 with
:mod:`jaxgeo.sft.inference`'s checkpointed forward model (the one ``jaxgeo sft infer`` uses).

Prints one JSON line per case: forward seconds, value-and-gradient seconds and their ratio
(best of ``--repeats`` after a warm-up), and the compiled programs' temporary memory
(``memory_analysis().temp_size_in_bytes``: the peak working set XLA allocates besides the
inputs and outputs) for the forward run and for the gradient:

    .venv/bin/python benchmarks/sft_gradient.py [--rotations 1] [--memory-only-rotations 12]
        [--grid 180x360] [--repeats 2] [--no-checkpoint]

``--memory-only-rotations`` compiles (but does not run) the longer cases and reports their
memory only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402

from jaxgeo.sft.config import SftConfig  # noqa: E402
from jaxgeo.sft.inference import make_forward_model  # noqa: E402

ROTATION_HOURS = 27.2753 * 24.0


def _config(n_theta: int, n_phi: int, hours: float) -> SftConfig:
    return SftConfig.from_dict(
        {
            "grid": {"n_theta": n_theta, "n_phi": n_phi},
            "initial": {"kind": "harmonic", "l": 12, "m": 7, "amplitude_gauss": 800.0},
            "time": {"end_hours": hours, "dt_max_hours": 1.0},
            "output": {"map_cadence_hours": hours, "history_cadence_hours": hours},
            "flow": {
                "differential_rotation": {"model": "aft"},
                "meridional": {"model": "aft"},
                "attenuate_gauss": 300.0,
            },
            "diffusion": {"nu_km2_s": 25.0},
        }
    )


def _case(n_theta: int, n_phi: int, rotations: float, checkpoint: bool) -> tuple:
    hours = round(rotations * ROTATION_HOURS, 6)
    cfg = _config(n_theta, n_phi, hours)
    keys = ("diffusion.nu_km2_s", "flow.meridional.p1")
    model = make_forward_model(cfg, keys, map_times=[hours], checkpoint=checkpoint)
    area = jnp.asarray(model.grid.cell_area)
    target = model.br_unit * 0.9

    def loss(z):
        final = model.predict(model.theta_from_vector(z))["final"]
        return jnp.sum(area * jnp.square(final - target))

    z0 = jnp.asarray([25.0, float(model.base.mf_p1)])
    fwd = jax.jit(loss)
    grad = jax.jit(jax.value_and_grad(loss))
    steps = int((model.layout.dts > 0).sum())
    return model, fwd, grad, z0, steps, hours


def _temp_bytes(fn, z0) -> int:
    return int(fn.lower(z0).compile().memory_analysis().temp_size_in_bytes)


def _best(fn, z0, repeats: int) -> float:
    jax.block_until_ready(fn(z0))
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(z0))
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--grid", default="180x360", help="n_theta x n_phi")
    parser.add_argument("--rotations", type=float, default=1.0)
    parser.add_argument("--memory-only-rotations", type=float, nargs="*", default=[12.0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-checkpoint", action="store_true")
    args = parser.parse_args()
    n_theta, n_phi = (int(v) for v in args.grid.lower().split("x"))
    ck = not args.no_checkpoint
    common = {
        "benchmark": "sft_gradient",
        "grid": [n_theta, n_phi],
        "checkpoint": ck,
        "device": str(jax.devices()[0].device_kind),
        "machine": platform.processor() or platform.machine(),
        "load_1min": round(os.getloadavg()[0], 2),
    }
    model, fwd, grad, z0, steps, hours = _case(n_theta, n_phi, args.rotations, ck)
    t_f = _best(fwd, z0, args.repeats)
    t_g = _best(grad, z0, args.repeats)
    field_mb = n_theta * n_phi * 8 / 2**20
    row = {
        **common,
        "rotations": args.rotations,
        "steps": steps,
        "layout": list(model.layout.dts.shape),
        "forward_s": round(t_f, 3),
        "value_and_grad_s": round(t_g, 3),
        "grad_over_forward": round(t_g / t_f, 2),
        "forward_temp_mb": round(_temp_bytes(fwd, z0) / 2**20, 1),
        "grad_temp_mb": round(_temp_bytes(grad, z0) / 2**20, 1),
        "field_mb": round(field_mb, 3),
    }
    print(json.dumps(row), flush=True)
    for rot in args.memory_only_rotations:
        model, fwd, grad, z0, steps, hours = _case(n_theta, n_phi, rot, ck)
        row = {
            **common,
            "rotations": rot,
            "steps": steps,
            "layout": list(model.layout.dts.shape),
            "forward_temp_mb": round(_temp_bytes(fwd, z0) / 2**20, 1),
            "grad_temp_mb": round(_temp_bytes(grad, z0) / 2**20, 1),
            "field_mb": round(field_mb, 3),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
