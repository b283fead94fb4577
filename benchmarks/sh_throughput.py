"""Throughput of ``jaxgeo.sphere.real_sph_harm`` (jitted), with scipy's ``sph_harm_y`` as the
reference, and a stability check at l = 100.

Prints one JSON line per case on stdout:

    {"benchmark": "sh_throughput", "impl": "jaxgeo" | "scipy", "l_max": ..., "n_points": ...,
     "dtype": ..., "points_per_s": ..., "coeffs_per_s": ..., "device": ..., "compile_s": ...}

float32 cases are also timed with ``precision="high"`` (``"impl": "jaxgeo-high"``: computed in
float64, rounded to float32); one ``{"benchmark": "sh_stability", ...}`` line (max |Y_lm| /
sqrt((2l+1)/4π) and the addition-theorem error at l_max = 100, float64); and one
``{"benchmark": "sh_float32_accuracy", ...}`` line per degree (max |Y_f32 − Y_f64|, float64
evaluated at the same float32 inputs, for both precisions). Run: ``python benchmarks/sh_throughput.py``
(about a minute on 2 CPU cores); ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import platform
import time

import jax

jax.config.update("jax_enable_x64", True)  # float64 cases; float32 inputs stay float32

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from jaxgeo.sphere import index_to_lm, n_coeffs, real_sph_harm  # noqa: E402

# (l_max, number of points): the batch shrinks with l so each output stays ~20-40 MB.
CASES = [(10, 32768), (40, 4096), (100, 1024), (200, 256)]
SCIPY_CASES = [(10, 4096), (40, 1024)]


def _device() -> str:
    dev = jax.devices()[0]
    return f"{dev.platform}:{dev.device_kind}"


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _points(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    # Uniform on the sphere, plus both poles.
    theta = np.arccos(rng.uniform(-1.0, 1.0, n))
    theta[:2] = [0.0, math.pi]
    return theta, rng.uniform(0.0, 2.0 * math.pi, n)


def _time(call, min_time: float, min_reps: int = 3) -> float:
    """Seconds per call: repeat until both min_reps calls and min_time seconds are done."""
    reps, start = 0, time.perf_counter()
    while True:
        call()
        reps += 1
        elapsed = time.perf_counter() - start
        if reps >= min_reps and elapsed >= min_time:
            return elapsed / reps


def bench_jaxgeo(l_max: int, n: int, dtype, min_time: float, precision: str = "default") -> dict:
    theta, phi = _points(n, seed=l_max)
    theta = jnp.asarray(theta, dtype)
    phi = jnp.asarray(phi, dtype)
    start = time.perf_counter()
    fn = functools.partial(real_sph_harm, precision=precision)
    compiled = jax.jit(fn, static_argnums=0).lower(l_max, theta, phi).compile()
    compile_s = time.perf_counter() - start
    out = compiled(theta, phi).block_until_ready()  # warm-up
    assert bool(jnp.all(jnp.isfinite(out))), "non-finite harmonics"
    per_call = _time(lambda: compiled(theta, phi).block_until_ready(), min_time)
    return {
        "benchmark": "sh_throughput",
        "impl": "jaxgeo" if precision == "default" else f"jaxgeo-{precision}",
        "l_max": l_max,
        "n_points": n,
        "dtype": jnp.dtype(dtype).name,
        "points_per_s": n / per_call,
        "coeffs_per_s": n * n_coeffs(l_max) / per_call,
        "device": _device(),
        "compile_s": compile_s,
    }


def _scipy_real(l_max: int, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    from scipy.special import sph_harm_y

    out = np.empty((theta.size, n_coeffs(l_max)))
    root2 = math.sqrt(2.0)
    for l in range(l_max + 1):
        for m in range(l + 1):
            y = sph_harm_y(l, m, theta, phi)
            base = l * l + l
            if m == 0:
                out[:, base] = y.real
            else:
                out[:, base + m] = root2 * y.real
                out[:, base - m] = root2 * y.imag
    return out


def bench_scipy(l_max: int, n: int, min_time: float) -> dict:
    theta, phi = _points(n, seed=l_max)
    per_call = _time(lambda: _scipy_real(l_max, theta, phi), min_time, min_reps=2)
    return {
        "benchmark": "sh_throughput",
        "impl": "scipy",
        "l_max": l_max,
        "n_points": n,
        "dtype": "float64",
        "points_per_s": n / per_call,
        "coeffs_per_s": n * n_coeffs(l_max) / per_call,
        "device": "cpu:numpy",
        "compile_s": 0.0,
    }


def stability(l_max: int = 100, n: int = 512) -> dict:
    """max |Y|/bound and the addition-theorem error Σ_m Y_lm(x)Y_lm(y) vs (2l+1)/(4π) P_l(x·y)."""
    from scipy.special import eval_legendre

    theta1, phi1 = _points(n, seed=1)
    theta2, phi2 = _points(n, seed=2)
    theta1[2:6] = [1e-12, 1e-6, math.pi - 1e-9, math.pi / 2]
    y = np.asarray(
        jax.jit(real_sph_harm, static_argnums=0)(
            l_max, np.stack([theta1, theta2]), np.stack([phi1, phi2])
        )
    )
    l_of, _ = index_to_lm(np.arange(n_coeffs(l_max)))
    bound = np.sqrt((2 * l_of + 1) / (4.0 * math.pi))
    x1 = np.stack([np.sin(theta1) * np.cos(phi1), np.sin(theta1) * np.sin(phi1), np.cos(theta1)])
    x2 = np.stack([np.sin(theta2) * np.cos(phi2), np.sin(theta2) * np.sin(phi2), np.cos(theta2)])
    cos_gamma = np.clip(np.sum(x1 * x2, axis=0), -1.0, 1.0)
    prod = y[0] * y[1]
    err = 0.0
    for l in range(l_max + 1):
        lhs = prod[:, l_of == l].sum(axis=-1)
        rhs = (2 * l + 1) / (4.0 * math.pi) * eval_legendre(l, cos_gamma)
        err = max(err, float(np.abs(lhs - rhs).max()) / ((2 * l + 1) / (4.0 * math.pi)))
    return {
        "benchmark": "sh_stability",
        "l_max": l_max,
        "n_points": n,
        "dtype": "float64",
        "all_finite": bool(np.all(np.isfinite(y))),
        "max_abs_y_over_bound": float(np.max(np.abs(y) / bound)),
        "addition_theorem_max_rel_err": err,
        "device": _device(),
    }


def float32_accuracy(l_max: int, n: int) -> dict:
    """Max |Y_f32 − Y_f64| (float64 at the same float32 inputs) for both precisions, over
    points uniform on the sphere plus both poles and points 1e-5..0.05 rad from them."""
    theta, phi = _points(n, seed=100 + l_max)
    near = np.array([1e-5, 1e-4, 1e-3, 1e-2, 0.05])
    theta = np.concatenate([theta, near, math.pi - near]).astype(np.float32)
    phi = np.random.default_rng(l_max).uniform(-math.pi, 2 * math.pi, theta.size)
    phi = phi.astype(np.float32)
    f = jax.jit(real_sph_harm, static_argnums=0)
    f_high = jax.jit(functools.partial(real_sph_harm, precision="high"), static_argnums=0)
    y64 = np.asarray(f(l_max, theta.astype(np.float64), phi.astype(np.float64)))
    l_of, _ = index_to_lm(np.arange(n_coeffs(l_max)))
    bound = np.sqrt((2 * l_of + 1) / (4.0 * math.pi))
    out = {"benchmark": "sh_float32_accuracy", "l_max": l_max, "n_points": int(theta.size)}
    for name, fn in (("default", f), ("high", f_high)):
        err = np.abs(np.asarray(fn(l_max, theta, phi), np.float64) - y64)
        out[f"{name}_max_abs_err"] = float(err.max())
        out[f"{name}_max_err_over_bound"] = float((err / bound).max())
        out[f"{name}_median_point_max_abs_err"] = float(np.median(err.max(axis=-1)))
    out["device"] = _device()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run")
    parser.add_argument("--min-time", type=float, default=0.5, help="seconds timed per case")
    parser.add_argument(
        "--scale", type=int, default=1, help="multiply the batch sizes (e.g. 16 on a GPU)"
    )
    parser.add_argument("--no-scipy", action="store_true", help="skip the scipy reference")
    args = parser.parse_args()
    cases = [(l_max, n * args.scale) for l_max, n in (CASES[:2] if args.quick else CASES)]
    min_time = 0.05 if args.quick else args.min_time

    print(
        json.dumps(
            {
                "benchmark": "sh_machine",
                "cpu": _cpu_model(),
                "device": _device(),
                "jax": jax.__version__,
                "date": time.strftime("%Y-%m-%d"),
            }
        ),
        flush=True,
    )
    for dtype in (jnp.float32, jnp.float64):
        for l_max, n in cases:
            print(json.dumps(bench_jaxgeo(l_max, n, dtype, min_time)), flush=True)
            if dtype == jnp.float32:
                row = bench_jaxgeo(l_max, n, dtype, min_time, precision="high")
                print(json.dumps(row), flush=True)
    for l_max, n in [] if args.no_scipy else SCIPY_CASES[: len(cases)]:
        print(json.dumps(bench_scipy(l_max, n, min_time)), flush=True)
    print(json.dumps(stability()), flush=True)
    for l_max, n in [(10, 2000), (40, 1000), (100, 400), (200, 150)][: len(cases)]:
        print(json.dumps(float32_accuracy(l_max, n)), flush=True)


if __name__ == "__main__":
    main()
