"""Per-operation profile of a compiled flux-transport program on the CPU (or any backend).

Runs one jitted program under ``jax.profiler.trace`` and reads the trace back with
``jax.profiler.ProfileData`` (no extra package): the time of each compiled kernel (XLA fusion,
copy, concatenate, ...) per step, largest first, as JSON lines. The programs are those of
``benchmarks/sft_kernels.py`` (uniform grids, AFT flows + attenuation + RKG2, Δt = 0.25 h):

    .venv/bin/python benchmarks/sft_profile.py [--case 1deg] [--program full_step] [--top 30]

``--program`` is one of sft_kernels.py's kernels (advection, diffusion, flows, flows_advection,
full_step). Kernel names are XLA's; dump the optimized HLO with ``--hlo FILE`` to see what
each fusion computes. The profiler adds overhead, so compare kernels within one profile, and
time changes with an A/B in one process.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import sys
import tempfile
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

sys.path.insert(0, str(Path(__file__).resolve().parent))

import sft_kernels  # noqa: E402

from jaxgeo.sft.config import SftConfig  # noqa: E402
from jaxgeo.sft.simulation import build  # noqa: E402

_SKIP = ("Thunk", "$", "while", "Pjit", "Execute")


def profile(fn, args, steps: int) -> tuple[float, list[tuple[str, float, float]]]:
    """Total and per-kernel milliseconds per step of one call of ``fn(*args)``."""
    jax.block_until_ready(fn(*args))  # compile and warm up
    with tempfile.TemporaryDirectory() as tmp:
        with jax.profiler.trace(tmp):
            jax.block_until_ready(fn(*args))
        path = glob.glob(f"{tmp}/**/*.xplane.pb", recursive=True)[0]
        data = jax.profiler.ProfileData.from_file(path)
    total: collections.Counter = collections.Counter()
    count: collections.Counter = collections.Counter()
    for plane in data.planes:
        for line in plane.lines:
            for ev in line.events:
                if any(s in ev.name for s in _SKIP):
                    continue
                total[ev.name] += ev.duration_ns
                count[ev.name] += 1
    rows = [(k, v / 1e6 / steps, count[k] / steps) for k, v in total.most_common()]
    return sum(total.values()) / 1e6 / steps, rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--case", default="1deg", choices=sorted(sft_kernels.CASES))
    parser.add_argument("--program", default="full_step")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--hlo", default=None, help="write the optimized HLO text here")
    args = parser.parse_args()
    sim = build(SftConfig.from_dict(sft_kernels._config(*sft_kernels.CASES[args.case])))
    programs = sft_kernels.kernels(sim, args.steps)
    if args.program not in programs:
        parser.error(f"--program: expected one of {sorted(programs)}, got {args.program!r}")
    fn, fn_args = programs[args.program]
    total, rows = profile(fn, fn_args, args.steps)
    if args.hlo:
        Path(args.hlo).write_text(fn.lower(*fn_args).compile().as_text())
    head = {"benchmark": "sft_profile", "case": args.case, "program": args.program}
    print(json.dumps({**head, "kernel": "(all)", "ms_per_step": round(total, 4)}))
    for name, ms, n in rows[: args.top]:
        print(json.dumps({**head, "kernel": name, "ms_per_step": round(ms, 4), "calls": n}))


if __name__ == "__main__":
    main()
