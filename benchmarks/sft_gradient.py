"""Cost and memory of the reverse-mode gradient through a flux-transport run.

A 1° run (180 x 360, AFT flows with attenuation at 300 G, ν = 25 km²/s, WENO3-SSPRK(4,3) +
RKG2, Δt = 1 h) from a Y_12^7 field; the scalar is the area-weighted misfit of the final map
to a perturbed copy of itself, differentiated w.r.t. ν and the meridional amplitude p1 with
:mod:`jaxgeo.sft.inference`'s checkpointed forward model (the one ``jaxgeo sft infer`` uses).

Prints one JSON line per case: forward seconds, value-and-gradient seconds and their ratio
(best of ``--repeats`` after a warm-up; wall and process CPU time), and the compiled
programs' temporary memory (``memory_analysis().temp_size_in_bytes``: the peak working set
XLA allocates besides the inputs and outputs) for the forward run and for the gradient:

    .venv/bin/python benchmarks/sft_gradient.py [--rotations 1] [--memory-only-rotations 12]
        [--grid 180x360] [--repeats 2] [--no-checkpoint] [--adjoint autodiff,hand]

``--memory-only-rotations`` compiles (but does not run) the longer cases and reports their
memory only. ``--adjoint`` names the advection operator's reverse-mode derivatives to compare
(:mod:`jaxgeo.sft.advection`: JAX's autodiff, or the hand-written adjoint that ``jaxgeo sft
infer`` uses for its reverse-mode gradients); with several, the
cases are compiled first and then timed in alternation in this one process (an A/B on a
shared machine), one JSON line per case and round.
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


def _case(
    n_theta: int, n_phi: int, rotations: float, checkpoint: bool, adjoint: str = "autodiff"
) -> tuple:
    hours = round(rotations * ROTATION_HOURS, 6)
    cfg = _config(n_theta, n_phi, hours)
    keys = ("diffusion.nu_km2_s", "flow.meridional.p1")
    model = make_forward_model(cfg, keys, map_times=[hours], checkpoint=checkpoint)
    area = jnp.asarray(model.grid.cell_area)
    target = model.br_unit * 0.9

    def loss(z):
        theta = model.theta_from_vector(z)
        final = model.predict(theta, adjoint=adjoint)["final"]
        return jnp.sum(area * jnp.square(final - target))

    z0 = jnp.asarray([25.0, float(model.base.mf_p1)])
    fwd = jax.jit(loss)
    grad = jax.jit(jax.value_and_grad(loss))
    steps = int((model.layout.dts > 0).sum())
    return model, fwd, grad, z0, steps, hours


def _temp_bytes(fn, z0) -> int:
    return int(fn.lower(z0).compile().memory_analysis().temp_size_in_bytes)


def _best(fn, z0, repeats: int) -> tuple[float, float]:
    """Best wall and best process CPU seconds of ``repeats`` calls after a warm-up (on a
    shared, loaded machine the CPU time is the steadier of the two)."""
    jax.block_until_ready(fn(z0))
    best, best_cpu = math.inf, math.inf
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn(z0))
        best = min(best, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best, best_cpu


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--grid", default="180x360", help="n_theta x n_phi")
    parser.add_argument("--rotations", type=float, default=1.0)
    parser.add_argument("--memory-only-rotations", type=float, nargs="*", default=[12.0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-checkpoint", action="store_true")
    parser.add_argument(
        "--adjoint",
        default="autodiff",
        help="comma-separated advection adjoints to compare: autodiff (JAX's), hand "
        "(the hand-written one, what `jaxgeo sft infer` uses)",
    )
    args = parser.parse_args()
    adjoints = [a.strip() for a in args.adjoint.split(",") if a.strip()]
    for a in adjoints:
        if a not in ("autodiff", "hand"):
            parser.error(f"--adjoint: expected autodiff or hand, got {a!r}")
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
    field_mb = n_theta * n_phi * 8 / 2**20
    cases = {}
    for a in adjoints:
        # The operator reads the default when the model is built; compile now, while it holds.
        model, fwd, grad, z0, steps, hours = _case(n_theta, n_phi, args.rotations, ck, a)
        fwd_c = fwd.lower(z0).compile()
        grad_c = grad.lower(z0).compile()
        mem = {
            "forward_temp_mb": round(fwd_c.memory_analysis().temp_size_in_bytes / 2**20, 1),
            "grad_temp_mb": round(grad_c.memory_analysis().temp_size_in_bytes / 2**20, 1),
        }
        cases[a] = (model, fwd_c, grad_c, z0, steps, mem)
    for rnd in range(2 if len(adjoints) > 1 else 1):
        for a, (model, fwd_c, grad_c, z0, steps, mem) in cases.items():
            t_f, c_f = _best(fwd_c, z0, args.repeats)
            t_g, c_g = _best(grad_c, z0, args.repeats)
            row = {
                **common,
                "load_1min": round(os.getloadavg()[0], 2),
                "adjoint": a,
                "round": rnd,
                "rotations": args.rotations,
                "steps": steps,
                "layout": list(model.layout.dts.shape),
                "forward_s": round(t_f, 3),
                "value_and_grad_s": round(t_g, 3),
                "grad_over_forward": round(t_g / t_f, 2),
                "forward_cpu_s": round(c_f, 3),
                "value_and_grad_cpu_s": round(c_g, 3),
                "grad_over_forward_cpu": round(c_g / c_f, 2),
                **mem,
                "field_mb": round(field_mb, 3),
            }
            print(json.dumps(row), flush=True)
    for rot, a in ((rot, a) for rot in args.memory_only_rotations for a in adjoints):
        model, fwd, grad, z0, steps, hours = _case(n_theta, n_phi, rot, ck, a)
        row = {
            **common,
            "adjoint": a,
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
