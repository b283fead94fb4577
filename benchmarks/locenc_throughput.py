"""Throughput of the location encoder: SH encoding (points/s) and one training step
(SH encoding + SIREN, batch 1024, forward + backward + Adam update), float32.

The PyTorch reference (``locationencoder``, Rußwurm et al. 2024) is not on PyPI, so it is not
run here; the issue's figures for it on this kind of machine are printed as ``impl:
"reference (quoted)"`` lines: 1.3e5 points/s at L = 10 and ~1.2e3 points/s at L = 40 (float32,
analytic SH; at L = 40 its float32 output is inf/NaN).

Prints JSON lines: {"benchmark": "locenc_sh" | "locenc_train_step", "impl", "L", "n_points" |
"batch", "dtype", "points_per_s", "device", "compile_s", ...}. Run:
``python benchmarks/locenc_throughput.py`` (about a minute on 2 CPU cores); ``--quick`` for a
smoke run; ``--scale 16`` for batches that fill a GPU.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxgeo.locenc import Encoding, LocationEncoder, ModelConfig, params_dict
from jaxgeo.locenc.train import make_train_epoch

REFERENCE = {10: 1.3e5, 40: 1.2e3}  # points/s, quoted from the issue (PyTorch, float32)
SH_CASES = [(10, 65536), (40, 16384), (100, 4096), (200, 1024)]
STEP_CASES = [10, 40, 100]


def _device() -> str:
    d = jax.devices()[0]
    return f"{d.platform}:{d.device_kind}"


def _time(call, min_time: float, min_reps: int = 3) -> float:
    reps, start = 0, time.perf_counter()
    while True:
        call()
        reps += 1
        elapsed = time.perf_counter() - start
        if reps >= min_reps and elapsed >= min_time:
            return elapsed / reps


def _points(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lon = rng.uniform(-180.0, 180.0, n).astype(np.float32)
    lat = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n))).astype(np.float32)
    return lon, lat


def bench_sh(degree: int, n: int, min_time: float) -> dict:
    enc = Encoding("sh", degree=degree)
    lon, lat = (jnp.asarray(a) for a in _points(n, degree))
    start = time.perf_counter()
    compiled = jax.jit(enc).lower(lon, lat).compile()
    compile_s = time.perf_counter() - start
    out = compiled(lon, lat).block_until_ready()
    finite = bool(jnp.all(jnp.isfinite(out)))
    per_call = _time(lambda: compiled(lon, lat).block_until_ready(), min_time)
    row = {
        "benchmark": "locenc_sh",
        "impl": "jaxgeo",
        "L": degree,
        "n_features": enc.n_features,
        "n_points": n,
        "dtype": "float32",
        "points_per_s": n / per_call,
        "all_finite": finite,
        "device": _device(),
        "compile_s": compile_s,
    }
    if degree in REFERENCE:
        row["speedup_vs_quoted_reference"] = row["points_per_s"] / REFERENCE[degree]
    return row


def bench_step(degree: int, batch: int, min_time: float) -> dict:
    cfg = ModelConfig(encoding=Encoding("sh", degree=degree), network="siren", n_out=16)
    model = LocationEncoder(cfg, rngs=nnx.Rngs(0))
    tx = optax.adam(1e-3)
    # One "epoch" of exactly one batch = one optimiser step (shuffle of the batch included).
    epoch = jax.jit(make_train_epoch(model, tx, "classification", batch))
    params = params_dict(model)
    opt_state = tx.init(params)
    lon, lat = (jnp.asarray(a) for a in _points(batch, 7))
    y = jnp.asarray(np.random.default_rng(0).integers(0, 16, batch), jnp.int32)
    key = jax.random.key(0)
    start = time.perf_counter()
    compiled = epoch.lower(params, opt_state, lon, lat, y, key).compile()
    compile_s = time.perf_counter() - start
    state = {"p": params, "s": opt_state}

    def call():
        p, s, loss = compiled(state["p"], state["s"], lon, lat, y, key)
        loss.block_until_ready()
        state["p"], state["s"] = p, s

    call()
    per_call = _time(call, min_time)
    return {
        "benchmark": "locenc_train_step",
        "impl": "jaxgeo",
        "L": degree,
        "network": "siren 2x256",
        "batch": batch,
        "dtype": "float32",
        "steps_per_s": 1.0 / per_call,
        "points_per_s": batch / per_call,
        "parameters": int(sum(np.size(x) for x in jax.tree_util.tree_leaves(params))),
        "device": _device(),
        "compile_s": compile_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds timed per case")
    parser.add_argument("--scale", type=int, default=1, help="multiply the SH batch sizes")
    args = parser.parse_args()
    min_time = 0.05 if args.quick else args.min_time
    sh_cases = SH_CASES[:2] if args.quick else SH_CASES
    print(
        json.dumps(
            {
                "benchmark": "locenc_machine",
                "device": _device(),
                "jax": jax.__version__,
                "date": time.strftime("%Y-%m-%d"),
            }
        ),
        flush=True,
    )
    for degree, pts in REFERENCE.items():
        print(
            json.dumps(
                {
                    "benchmark": "locenc_sh",
                    "impl": "reference (quoted)",
                    "L": degree,
                    "dtype": "float32",
                    "points_per_s": pts,
                }
            ),
            flush=True,
        )
    for degree, n in sh_cases:
        print(json.dumps(bench_sh(degree, n * args.scale, min_time)), flush=True)
    for degree in STEP_CASES[:1] if args.quick else STEP_CASES:
        print(json.dumps(bench_step(degree, 1024, min_time)), flush=True)


if __name__ == "__main__":
    main()
