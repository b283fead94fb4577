"""Throughput and accuracy of the location encoder, side by side with the PyTorch reference.

jaxgeo (this environment): the ``sh`` encoding (points/s, float32, ``precision="high"`` — the
default — and ``"default"``) at L = 10, 40, 100, 200 and one training step (SH encoding + SIREN
2 × 256, 16 classes, batch 1024, forward + backward + Adam update).

The reference (``locationencoder``, Rußwurm et al. 2024) is not on PyPI; its method — SymPy-
generated closed-form harmonics evaluated one by one in torch — is rebuilt in
``benchmarks/locenc_reference.py`` and run in its own environment through a subprocess (create
it as ``benchmarks/requirements-reference.txt`` says; ``--reference PYTHON`` or the variable
``JAXGEO_LOCENC_REFERENCE_PYTHON`` points at its python, default ``/work/refenv/bin/python``).
Without it the reference rows are skipped with a message and the issue's quoted figures
(1.3e5 points/s at L = 10, ~1.2e3 at L = 40, float32) are printed as ``"reference (quoted)"``.

Accuracy: max |error| at 1,024 float32 lon/lat points (a third within 1° of the poles, the poles
included) against float64 ``jaxgeo.sphere.real_sph_harm`` at the same float32-rounded inputs (in
each implementation's angle convention; itself checked against ``scipy.special.sph_harm_y``).

Prints JSON lines: {"benchmark": "locenc_sh" | "locenc_train_step" | "locenc_truth" | ..., "impl",
"L", "dtype", "points_per_s", "max_abs_error", ...}. Run:
``python benchmarks/locenc_throughput.py`` (several minutes on 2 loaded CPU cores, most of it the
reference at L = 100); ``--quick`` for a smoke run; ``--scale 16`` for batches that fill a GPU;
``--no-reference`` for jaxgeo alone; ``--paired 7`` adds jaxgeo and the reference timed in
alternating rounds (the ratio that this host's drift does not move).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)  # the float64 truth and precision="high"

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

from jaxgeo.locenc import Encoding, LocationEncoder, ModelConfig, params_dict  # noqa: E402
from jaxgeo.locenc.train import make_train_epoch  # noqa: E402
from jaxgeo.sphere import index_to_lm, real_sph_harm  # noqa: E402

QUOTED_REFERENCE = {10: 1.3e5, 40: 1.2e3}  # points/s, from the issue (PyTorch, float32)
SH_CASES = [(10, 65536), (40, 16384), (100, 4096), (200, 1024)]
STEP_CASES = [10, 40, 100]
# Points per timed reference call: its cost is per point beyond a few thousand (the closed forms
# are evaluated term by term), so smaller batches at high degree give the same points/s.
REFERENCE_N = {10: 65536, 40: 4096, 100: 1024}
PAIRED_DEGREES = (10, 40)  # the quoted reference figures
DEFAULT_REFERENCE_PYTHON = "/work/refenv/bin/python"
N_ACCURACY = 1024


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


def accuracy_points() -> tuple[np.ndarray, np.ndarray]:
    """float32 lon/lat: uniform on the sphere, a third within 1e-3..1° of a pole, the poles."""
    lon, lat = _points(N_ACCURACY, 12345)
    rng = np.random.default_rng(54321)
    k = N_ACCURACY // 3
    near = np.sign(rng.uniform(-1, 1, k)) * (90.0 - 10.0 ** rng.uniform(-3, 0, k))
    lat[2 : 2 + k] = near.astype(np.float32)
    lat[:2] = [90.0, -90.0]
    return lon, lat


def truth(degree: int, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """float64 real harmonics (jaxgeo's convention), chunked to bound memory."""
    fn = jax.jit(real_sph_harm, static_argnums=0)
    return np.concatenate(
        [
            np.asarray(fn(degree, theta[i : i + 256], phi[i : i + 256]))
            for i in range(0, theta.size, 256)
        ]
    )


def scipy_check(degree: int, lon: np.ndarray, lat: np.ndarray) -> dict:
    """Max |jaxgeo float64 − scipy.special.sph_harm_y| (real form, Condon–Shortley phase)."""
    from scipy.special import sph_harm_y

    theta = np.radians(90.0 - lat.astype(np.float64))
    phi = np.radians(lon.astype(np.float64))
    ours = truth(degree, theta, phi)
    l_of, m_of = index_to_lm(np.arange((degree + 1) ** 2))
    err = 0.0
    for k, (l, m) in enumerate(zip(l_of, m_of, strict=True)):
        c = sph_harm_y(int(l), abs(int(m)), theta, phi)
        ref = c.real if m == 0 else np.sqrt(2.0) * (c.real if m > 0 else c.imag)
        err = max(err, float(np.max(np.abs(ours[:, k] - ref))))
    return {"benchmark": "locenc_truth", "L": degree, "max_abs_jaxgeo64_minus_scipy": err}


def bench_sh(degree: int, n: int, min_time: float, precision: str) -> dict:
    enc = Encoding("sh", degree=degree, precision=precision)  # type: ignore[arg-type]
    lon, lat = (jnp.asarray(a) for a in _points(n, degree))
    start = time.perf_counter()
    compiled = jax.jit(enc).lower(lon, lat).compile()
    compile_s = time.perf_counter() - start
    compiled(lon, lat).block_until_ready()
    per_call = _time(lambda: compiled(lon, lat).block_until_ready(), min_time)
    # Accuracy against float64 at the same float32 inputs.
    alon, alat = accuracy_points()
    fn = jax.jit(enc)
    y32 = np.concatenate(
        [np.asarray(fn(alon[i : i + 256], alat[i : i + 256])) for i in range(0, alon.size, 256)]
    )
    y64 = truth(
        degree, np.radians(90.0 - alat.astype(np.float64)), np.radians(alon.astype(np.float64))
    )
    row = {
        "benchmark": "locenc_sh",
        "impl": "jaxgeo",
        "precision": precision,
        "L": degree,
        "n_features": enc.n_features,
        "n_points": n,
        "dtype": "float32",
        "points_per_s": n / per_call,
        "max_abs_error": float(np.max(np.abs(y32 - y64))),
        "all_finite": bool(np.all(np.isfinite(y32))),
        "device": _device(),
        "compile_s": compile_s,
    }
    if degree in QUOTED_REFERENCE:
        row["speedup_vs_quoted_reference"] = row["points_per_s"] / QUOTED_REFERENCE[degree]
    return row


def bench_step(degree: int, batch: int, min_time: float, precision: str = "high") -> dict:
    enc = Encoding("sh", degree=degree, precision=precision)  # type: ignore[arg-type]
    cfg = ModelConfig(encoding=enc, network="siren", n_out=16)
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
        "precision": precision,
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


# ----------------------------------------------------------------------------------------------
# The reference, in its own environment
# ----------------------------------------------------------------------------------------------


def find_reference(arg: str | None) -> tuple[str | None, str]:
    """(python of the reference environment or None, why not)."""
    python = arg or os.environ.get("JAXGEO_LOCENC_REFERENCE_PYTHON") or DEFAULT_REFERENCE_PYTHON
    python = shutil.which(python) or python
    if not Path(python).exists():
        return None, (
            f"reference environment not found ({python}); create it as "
            "benchmarks/requirements-reference.txt says, or pass --reference PYTHON"
        )
    probe = subprocess.run(
        [python, "-c", "import torch, sympy, numpy"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        return None, f"{python} lacks torch/sympy/numpy: {probe.stderr.strip()[-300:]}"
    return python, ""


def _run_reference(python: str, args: list[str], timeout: float) -> dict:
    script = Path(__file__).with_name("locenc_reference.py")
    try:
        proc = subprocess.run(
            [python, str(script), *args], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "args": args}
    if proc.returncode != 0:
        return {"error": proc.stderr.strip()[-500:], "args": args}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _common_reference_args(opts: argparse.Namespace) -> list[str]:
    args = ["--threads", str(opts.ref_threads), "--device", opts.ref_device]
    args += ["--jit"] if opts.ref_jit else []
    args += ["--cache", opts.ref_cache] if opts.ref_cache else []
    return args


def bench_reference_sh(
    python: str, degree: int, n: int, dtype: str, opts: argparse.Namespace
) -> dict:
    alon, alat = accuracy_points()
    with tempfile.TemporaryDirectory() as tmp:
        pts, vals = Path(tmp) / "pts.npy", Path(tmp) / "vals.npy"
        np.save(pts, np.stack([alon, alat], axis=-1))
        args = ["sh", "--degree", str(degree), "--dtype", dtype, "--n", str(n)]
        args += ["--points", str(pts), "--values-out", str(vals), "--min-time", str(opts.min_time)]
        args += _common_reference_args(opts)
        row = _run_reference(python, args, opts.ref_timeout)
        if "error" in row:
            return {"benchmark": "locenc_sh", "impl": "reference", "L": degree, **row}
        y = np.load(vals)
    # The reference's angles: θ = lat + 90°, φ = lon + 180° (from the same float32 inputs, in
    # float64 here); its real form carries (−1)^m relative to jaxgeo's Condon–Shortley one.
    theta = np.radians(alat.astype(np.float64) + 90.0)
    phi = np.radians(alon.astype(np.float64) + 180.0)
    _, m_of = index_to_lm(np.arange((degree + 1) ** 2))
    expected = truth(degree, theta, phi) * np.where(m_of % 2 == 0, 1.0, -1.0)
    with np.errstate(invalid="ignore"):
        err = np.abs(y - expected)
    finite = np.isfinite(err)
    row["max_abs_error"] = float(err.max()) if finite.all() else float("nan")
    row["max_abs_error_finite_entries"] = float(err[finite].max()) if finite.any() else None
    row["fraction_nonfinite"] = float(1.0 - finite.mean())
    l_of, _ = index_to_lm(np.arange((degree + 1) ** 2))
    bad = ~finite | (err > 1e-3)
    row["lowest_degree_off_by_1e-3"] = int(l_of[bad.any(axis=0)].min()) if bad.any() else None
    return row


def bench_paired(python: str, degree: int, n: int, opts: argparse.Namespace) -> dict:
    """jaxgeo (both precisions) and the reference (float32) timed in alternating rounds.

    This host's speed drifts by tens of per cent within minutes, so each round's jaxgeo
    figures are compared with the reference round right after them (same batch), and the
    ratios are summarised by their median and minimum over the rounds.
    """
    lon, lat = (jnp.asarray(a) for a in _points(n, degree))
    calls = {}
    for precision in ("high", "default"):
        enc = Encoding("sh", degree=degree, precision=precision)  # type: ignore[arg-type]
        compiled = jax.jit(enc).lower(lon, lat).compile()
        compiled(lon, lat).block_until_ready()
        calls[precision] = functools.partial(compiled, lon, lat)
    args = ["sh", "--degree", str(degree), "--dtype", "float32", "--n", str(n)]
    args += ["--rounds", str(opts.paired), "--min-time", str(opts.min_time)]
    args += _common_reference_args(opts)
    script = Path(__file__).with_name("locenc_reference.py")
    row: dict = {"benchmark": "locenc_sh_paired", "L": degree, "n_points": n, "dtype": "float32"}
    with subprocess.Popen(
        [python, str(script), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        if not proc.stdout.readline().strip():  # {"ready": true} after the reference's set-up
            proc.wait()
            return {**row, "error": proc.stderr.read().strip()[-500:]}
        pts: dict[str, list[float]] = {"high": [], "default": [], "reference": []}
        for _ in range(opts.paired):
            for precision, call in calls.items():
                pts[precision].append(
                    n / _time(lambda c=call: c().block_until_ready(), opts.min_time)
                )
            proc.stdin.write("go\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            if not line.strip():  # the reference stopped
                proc.wait()
                return {**row, "error": proc.stderr.read().strip()[-500:]}
            pts["reference"].append(json.loads(line)["points_per_s"])
        proc.stdin.close()
        proc.kill()
    row.update(
        rounds=opts.paired,
        round_time_s=opts.min_time,
        reference_jit=opts.ref_jit,
        device=_device(),
        **{f"{k}_points_per_s": v for k, v in pts.items()},
    )
    for precision in ("high", "default"):
        ratios = np.asarray(pts[precision]) / np.asarray(pts["reference"])
        row[f"speedup_{precision}_median"] = float(np.median(ratios))
        row[f"speedup_{precision}_min"] = float(ratios.min())
    return row


def bench_reference_step(python: str, degree: int, opts: argparse.Namespace) -> dict:
    args = ["train", "--degree", str(degree), "--batch", "1024", "--min-time", str(opts.min_time)]
    args += _common_reference_args(opts)
    row = _run_reference(python, args, opts.ref_timeout)
    if "error" in row:
        return {"benchmark": "locenc_train_step", "impl": "reference", "L": degree, **row}
    return row


def _emit(row: dict) -> None:
    print(json.dumps(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small smoke run (L = 10, 40)")
    parser.add_argument(
        "--min-time", type=float, help="seconds timed per case (default 1; 0.05 with --quick)"
    )
    parser.add_argument("--scale", type=int, default=1, help="multiply the SH batch sizes")
    parser.add_argument(
        "--sh-batch",
        type=int,
        help="points per jaxgeo SH call at every degree (default: 65,536 at L = 10 down to "
        "1,024 at L = 200; above ~4,000 points at L = 40 a call's output exceeds 32 MB and the "
        "CPU time goes to page faults of its fresh buffer)",
    )
    parser.add_argument("--reference", help="python of the reference environment")
    parser.add_argument("--no-reference", action="store_true", help="jaxgeo alone")
    parser.add_argument("--ref-threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument(
        "--ref-jit",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="torch.jit.script every Y_lm, as the reference does (slow to set up at L = 100)",
    )
    parser.add_argument("--ref-device", default="cpu", help="torch device (cpu, cuda)")
    parser.add_argument("--ref-timeout", type=float, default=900.0, help="seconds per case")
    parser.add_argument("--ref-cache", help="folder of generated closed forms (its --cache)")
    parser.add_argument(
        "--ref-max-step-degree", type=int, default=100, help="highest L of reference train steps"
    )
    parser.add_argument("--no-steps", action="store_true", help="skip the training steps")
    parser.add_argument(
        "--max-degree", type=int, default=200, help="skip the cases above this degree L"
    )
    parser.add_argument(
        "--paired",
        type=int,
        default=0,
        metavar="ROUNDS",
        help="also time jaxgeo and the reference in this many alternating rounds at L = 10 and "
        "40 (batch --sh-batch, default 1,024, for both) and report the ratios' median and "
        "minimum: the side-by-side figure that survives the host's drift",
    )
    args = parser.parse_args()
    if args.sh_batch is not None and args.sh_batch < 1:
        parser.error(f"--sh-batch must be a positive number of points, got {args.sh_batch}")
    if args.paired < 0:
        parser.error(f"--paired must be a number of rounds >= 0, got {args.paired}")
    min_time = args.min_time if args.min_time is not None else 0.05 if args.quick else 1.0
    args.min_time = min_time
    sh_cases = [c for c in (SH_CASES[:2] if args.quick else SH_CASES) if c[0] <= args.max_degree]
    step_cases = [] if args.no_steps else STEP_CASES[:1] if args.quick else STEP_CASES
    step_cases = [d for d in step_cases if d <= args.max_degree]
    _emit(
        {
            "benchmark": "locenc_machine",
            "device": _device(),
            "jax": jax.__version__,
            "date": time.strftime("%Y-%m-%d"),
            "loadavg": os.getloadavg(),
            "cpus": os.cpu_count(),
        }
    )
    python = None
    if not args.no_reference:
        python, why = find_reference(args.reference)
        if python is None:
            print(f"locenc_throughput: skipping the reference: {why}", file=sys.stderr)
            _emit({"benchmark": "locenc_reference", "skipped": why})
    if python is None:
        for degree, pts in QUOTED_REFERENCE.items():
            _emit(
                {
                    "benchmark": "locenc_sh",
                    "impl": "reference (quoted)",
                    "L": degree,
                    "dtype": "float32",
                    "points_per_s": pts,
                }
            )
    _emit(scipy_check(40 if args.quick else 100, *(a[:64] for a in accuracy_points())))
    for degree, n in sh_cases:
        for precision in ("high", "default"):
            _emit(bench_sh(degree, args.sh_batch or n * args.scale, min_time, precision))
        if python is not None and degree in REFERENCE_N:
            for dtype in ("float32", "float64"):
                ref_n = REFERENCE_N[degree] * args.scale
                _emit(bench_reference_sh(python, degree, ref_n, dtype, args))
    if python is not None and args.paired:
        for degree in (d for d in PAIRED_DEGREES if d <= args.max_degree):
            _emit(bench_paired(python, degree, args.sh_batch or 1024, args))
    for degree in step_cases:
        for precision in ("high", "default"):
            _emit(bench_step(degree, 1024, min_time, precision))
        if python is not None and degree <= args.ref_max_step_degree:
            _emit(bench_reference_step(python, degree, args))
    _emit({"benchmark": "locenc_machine_end", "loadavg": os.getloadavg()})


if __name__ == "__main__":
    main()
