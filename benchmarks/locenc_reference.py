"""The PyTorch reference's spherical-harmonic location encoder, rebuilt for side-by-side benchmarks.

Runs under a separate Python environment with PyTorch and SymPy (never imports jaxgeo; create it
as described in ``benchmarks/requirements-reference.txt``). It rebuilds the *method* of the
reference ``locationencoder`` (Rußwurm et al. 2024, ICLR; its "analytic" spherical harmonics),
which is not on PyPI:

- every real harmonic Y_lm, l < legendre_polys, is a separate closed-form expression generated
  symbolically: SymPy's associated Legendre function of cos θ (Condon–Shortley phase included),
  times the orthonormalisation sqrt((2l+1)/4π (l−|m|)!/(l+|m|)!), times (−1)^m √2 cos(mφ) or
  sin(|m|φ) (the real form), with every coefficient evaluated to a float (``evalf``): an
  expanded polynomial in cos θ with huge alternating coefficients times powers of
  (1 − cos²θ)^(1/2);
- the expressions are emitted as Python source (one function per (l, m)), optionally compiled
  with ``torch.jit.script`` as the reference does, and evaluated one after another on the whole
  batch, then stacked (the reference's ``SphericalHarmonics.forward``), with its angle convention
  θ = lat + 90°, φ = lon + 180° in radians;
- the training step is that encoder followed by a SIREN (hidden layers sin(w0 (W x + b)),
  w0_initial = 30 then w0 = 1, uniform ±1/n_in and ±sqrt(6/n_in)/w0 initialisation), softmax
  cross-entropy, backward and one Adam update.

Generated source is cached (``--cache``, default ``~/.cache/jaxgeo/locenc_reference``): the
symbolic expansion takes minutes at degree 100.

Usage (prints one JSON line; the driver is ``benchmarks/locenc_throughput.py --reference``)::

    python locenc_reference.py sh --degree 40 --dtype float32 --n 4096 \
        [--points pts.npy --values-out y.npy] [--jit] [--device cpu|cuda]
    python locenc_reference.py train --degree 10 --batch 1024 [--jit] [--device cpu|cuda]

With ``sh --rounds R`` it first prints ``{"ready": true}`` and then times one round per line
read from stdin (a JSON line each), for drivers that alternate rounds of both implementations.

``--degree L`` is the highest degree, (L+1)² features: the reference's ``legendre_polys`` is
L + 1 (its "L = 10" is degree 9 here).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / (
    "jaxgeo/locenc_reference"
)


# ----------------------------------------------------------------------------------------------
# Symbolic generation of the closed forms (SymPy), as the reference does
# ----------------------------------------------------------------------------------------------


def _closed_form_sympy(l: int, m: int) -> str:
    """Real orthonormal Y_lm(θ, φ) as a float-coefficient SymPy expression, printed.

    The reference's own recipe (``assoc_legendre`` then ``evalf``); ~0.3 s per (l, m) at
    l ~ 50, i.e. about an hour for all 10,201 harmonics to degree 100. :func:`_closed_form`
    prints the same expression from SymPy's polynomial algebra in milliseconds.
    """
    from sympy import Abs, Symbol, assoc_legendre, cos, factorial, pi, sin, sqrt

    theta, phi = Symbol("theta"), Symbol("phi")
    am = Abs(m)
    # assoc_legendre carries the Condon–Shortley phase; the real form's (−1)^m removes it again.
    p_bar = sqrt((2 * l + 1) / (4 * pi) * factorial(l - am) / factorial(l + am)) * assoc_legendre(
        l, am, cos(theta)
    )
    if m == 0:
        y = p_bar
    elif m > 0:
        y = (-1) ** m * sqrt(2) * p_bar * cos(m * phi)
    else:
        y = (-1) ** m * sqrt(2) * p_bar * sin(am * phi)
    return str(y.evalf())


def _g15(x: float) -> str:
    # evalf's default: 15 significant digits.
    return format(x, ".15g")


@functools.lru_cache(maxsize=1)
def _legendre_terms(l: int) -> list:
    from sympy import Symbol, legendre_poly

    return legendre_poly(l, Symbol("x"), polys=True).terms()


def _closed_form(l: int, m: int) -> str:
    """The expression :func:`_closed_form_sympy` prints, built from SymPy's Legendre polynomial.

    Y_lm = c · (1 − cos²θ)^(|m|/2) · Σ_k a_k cos^k θ · trig(|m| φ), where the a_k are the
    exact rational coefficients of d^|m|/dx^|m| P_l(x) (SymPy ``legendre_poly``, differentiated
    term by term) rounded to floats, and c = sqrt(2 (2l+1)/4π (l−|m|)!/(l+|m|)!) (no √2 for
    m = 0). As in evalf's output, c is folded into the coefficients when m = 0 or the
    polynomial is a single term, and kept as a separate factor otherwise.
    """
    from sympy import Rational, factorial, ff, pi, sqrt

    am = abs(m)
    terms = [(j - am, a * ff(j, am)) for (j,), a in _legendre_terms(l) if j >= am and a != 0]
    norm = sqrt(Rational(2 * l + 1) / (4 * pi) * factorial(l - am) / factorial(l + am))
    if m != 0:
        norm = norm * sqrt(2)  # (−1)^m of the real form cancels assoc_legendre's (−1)^m
    c = float(norm.evalf(17))
    fold = m == 0 or len(terms) == 1
    coeffs = [(k, float(a * norm) if fold else float(a)) for k, a in terms]

    def term(k: int, a: float) -> str:
        power = "" if k == 0 else "*cos(theta)" if k == 1 else f"*cos(theta)**{k}"
        return _g15(abs(a)) + power

    body = ""
    for i, (k, a) in enumerate(coeffs):
        sign = ("-" if a < 0 else "") if i == 0 else (" - " if a < 0 else " + ")
        body += sign + term(k, a)
    if m == 0:
        return body
    sin_power = "(1.0 - cos(theta)**2)"
    sin_power += "**0.5" if am == 1 else f"**{_g15(am / 2)}" if am % 2 else f"**{am // 2}"
    trig = f"cos({am}*phi)" if m > 0 else f"sin({am}*phi)"
    factor = "" if fold else f"{_g15(c)}*"
    return f"{factor}{sin_power}*({body})*{trig}"


def _func_name(l: int, m: int) -> str:
    return f"Y_{l}_{m}".replace("-", "m")


def generate_source(degree: int, cache: Path) -> Path:
    """Write (or reuse) a module defining ``Y_l_m(theta, phi)`` for every l <= degree.

    The smallest cached module of at least this degree is reused.
    """
    cache.mkdir(parents=True, exist_ok=True)
    for path in sorted(cache.glob("ylm_L*.py"), key=lambda p: int(p.stem[5:])):
        if int(path.stem[5:]) >= degree:
            return path
    path = cache / f"ylm_L{degree}.py"
    lines = [
        '"""Real spherical harmonics as closed forms, generated with SymPy (evalf)."""',
        "import torch",
        "from torch import cos, sin",
        "",
    ]
    start = time.perf_counter()
    for l in range(degree + 1):
        for m in range(-l, l + 1):
            lines += [
                f"def {_func_name(l, m)}(theta: torch.Tensor, phi: torch.Tensor):",
                f"    return {_closed_form(l, m)}",
                "",
            ]
        if l % 10 == 0:
            print(f"generated l = {l} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return path


def load_harmonics(degree: int, cache: Path, jit: bool) -> list:
    """The functions Y_lm for l <= degree in jaxgeo's flat order (index l² + l + m)."""
    path = generate_source(degree, cache)
    spec = importlib.util.spec_from_file_location(f"_ylm_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    # torch.jit.script reads the functions' source through inspect, which needs the module.
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    funcs = [getattr(module, _func_name(l, m)) for l in range(degree + 1) for m in range(-l, l + 1)]
    if jit:
        funcs = [torch.jit.script(f) for f in funcs]
    return funcs


class AnalyticSH(torch.nn.Module):
    """The reference's analytic SH encoder: lon/lat (degrees) -> (n, (degree+1)²)."""

    def __init__(self, funcs: list) -> None:
        super().__init__()
        self.funcs = funcs

    def forward(self, lonlat: torch.Tensor) -> torch.Tensor:
        phi = torch.deg2rad(lonlat[:, 0] + 180.0)
        theta = torch.deg2rad(lonlat[:, 1] + 90.0)
        ys = []
        for f in self.funcs:
            y = f(theta, phi)
            if not isinstance(y, torch.Tensor):  # Y_00 is a constant
                y = y * torch.ones_like(phi)
            ys.append(y)
        return torch.stack(ys, dim=-1)


class SirenLayer(torch.nn.Module):
    def __init__(self, n_in: int, n_out: int, w0: float, is_first: bool, activate: bool) -> None:
        super().__init__()
        bound = 1.0 / n_in if is_first else math.sqrt(6.0 / n_in) / w0
        self.linear = torch.nn.Linear(n_in, n_out)
        torch.nn.init.uniform_(self.linear.weight, -bound, bound)
        torch.nn.init.uniform_(self.linear.bias, -bound, bound)
        self.w0, self.activate = w0, activate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x)
        return torch.sin(self.w0 * z) if self.activate else z


def siren(n_in: int, n_out: int, hidden: int = 256, n_layers: int = 2) -> torch.nn.Module:
    widths = [n_in] + [hidden] * n_layers
    layers = [
        SirenLayer(a, b, 30.0 if i == 0 else 1.0, i == 0, True)
        for i, (a, b) in enumerate(zip(widths[:-1], widths[1:], strict=True))
    ]
    layers.append(SirenLayer(hidden, n_out, 1.0, False, False))
    return torch.nn.Sequential(*layers)


# ----------------------------------------------------------------------------------------------
# Benchmarks
# ----------------------------------------------------------------------------------------------


def _random_lonlat(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lon = rng.uniform(-180.0, 180.0, n)
    lat = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    return np.stack([lon, lat], axis=-1).astype(np.float32)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(call, device: torch.device, min_time: float, min_reps: int = 2) -> float:
    reps, start = 0, time.perf_counter()
    while True:
        call()
        _sync(device)
        reps += 1
        elapsed = time.perf_counter() - start
        if reps >= min_reps and elapsed >= min_time:
            return elapsed / reps


def _warm_up(call, device: torch.device, calls: int = 5, seconds: float = 2.0) -> None:
    """Run until the scripted functions are optimised: TorchScript's profiling executor runs
    the first calls unoptimised (at L = 40 the first call is ~15x slower than later ones), so
    timing from the second call on measured that phase, not the reference's steady state."""
    start = time.perf_counter()
    for i in range(1000):
        call()
        _sync(device)
        if i + 1 >= calls and time.perf_counter() - start >= seconds:
            return


def _paired_rounds(call, device: torch.device, args: argparse.Namespace) -> None:
    """Time one round (``--min-time`` s) per line read from stdin, printing a JSON line each,
    so that the driver can alternate rounds with its own and compare neighbours in time."""
    print(json.dumps({"ready": True}), flush=True)
    for i in range(args.rounds):
        if not sys.stdin.readline():
            return
        per_call = _time(call, device, args.min_time)
        print(json.dumps({"round": i, "points_per_s": args.n / per_call}), flush=True)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()}"


def bench_sh(args: argparse.Namespace, device: torch.device) -> dict:
    dtype = getattr(torch, args.dtype)
    start = time.perf_counter()
    encoder = AnalyticSH(load_harmonics(args.degree, args.cache, args.jit))
    setup_s = time.perf_counter() - start
    lonlat = torch.as_tensor(_random_lonlat(args.n, args.degree), device=device).to(dtype)
    with torch.no_grad():
        _warm_up(lambda: encoder(lonlat), device)
        if args.rounds:
            _paired_rounds(lambda: encoder(lonlat), device, args)
        per_call = _time(lambda: encoder(lonlat), device, args.min_time)
        row = {
            "benchmark": "locenc_sh",
            "impl": "reference (PyTorch analytic SH, rebuilt)",
            "L": args.degree,
            "legendre_polys": args.degree + 1,
            "n_features": (args.degree + 1) ** 2,
            "n_points": args.n,
            "dtype": args.dtype,
            "points_per_s": args.n / per_call,
            "jit": args.jit,
            "device": _device_name(device),
            "torch": torch.__version__,
            "setup_s": setup_s,
        }
        if args.points is not None:
            # Values at the caller's points (float32 lon/lat, cast to the dtype), for accuracy.
            pts = torch.as_tensor(np.load(args.points), device=device).to(dtype)
            y = torch.cat([encoder(chunk) for chunk in torch.split(pts, 4096)])
            np.save(args.values_out, y.cpu().double().numpy())
            row["all_finite"] = bool(torch.isfinite(y).all())
            row["n_nonfinite"] = int((~torch.isfinite(y)).sum())
    return row


def bench_train(args: argparse.Namespace, device: torch.device) -> dict:
    torch.manual_seed(0)
    start = time.perf_counter()
    encoder = AnalyticSH(load_harmonics(args.degree, args.cache, args.jit))
    setup_s = time.perf_counter() - start
    net = siren((args.degree + 1) ** 2, 16).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    lonlat = torch.as_tensor(_random_lonlat(args.batch, 7), device=device)
    y = torch.as_tensor(np.random.default_rng(0).integers(0, 16, args.batch), device=device)

    def step() -> None:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(net(encoder(lonlat)), y)
        loss.backward()
        opt.step()

    _warm_up(step, device)
    per_call = _time(step, device, args.min_time)
    return {
        "benchmark": "locenc_train_step",
        "impl": "reference (PyTorch analytic SH + SIREN, rebuilt)",
        "L": args.degree,
        "legendre_polys": args.degree + 1,
        "network": "siren 2x256",
        "batch": args.batch,
        "dtype": "float32",
        "steps_per_s": 1.0 / per_call,
        "points_per_s": args.batch / per_call,
        "parameters": int(sum(p.numel() for p in net.parameters())),
        "jit": args.jit,
        "device": _device_name(device),
        "torch": torch.__version__,
        "setup_s": setup_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("sh", "train", "generate"))
    parser.add_argument("--degree", type=int, default=10, help="highest degree L")
    parser.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    parser.add_argument("--n", type=int, default=4096, help="points per timed call (sh)")
    parser.add_argument("--batch", type=int, default=1024, help="training batch")
    parser.add_argument("--points", type=Path, help=".npy (n, 2) lon/lat float32 for values")
    parser.add_argument("--values-out", type=Path, help=".npy to write values at --points")
    parser.add_argument("--jit", action="store_true", help="torch.jit.script every Y_lm")
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds timed per case")
    parser.add_argument(
        "--rounds", type=int, default=0, help="sh: also time this many rounds, one per stdin line"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.mode == "generate":
        print(json.dumps({"generated": str(generate_source(args.degree, args.cache))}))
        return
    row = bench_sh(args, device) if args.mode == "sh" else bench_train(args, device)
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
