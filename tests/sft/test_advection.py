"""Tests of jaxgeo.sft.advection: conservation, convergence, gradients, HipFT parity."""

from __future__ import annotations

import functools
import math

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxgeo.errors import ConfigError
from jaxgeo.sft import advection, flows
from jaxgeo.sft.grid import SftGrid, drop_periodic_endpoint, impose_pole_average
from jaxgeo.sft.units import KM_S_TO_RS_HR

SCHEMES = ("weno3-ssprk43", "weno3-ssprk33", "upwind-ssprk33", "upwind-euler")


def conserved_area(grid: SftGrid) -> np.ndarray:
    """The measure every operator conserves exactly: HipFT's flux quadrature ``cell_area``
    (sin θ Δθ Δφ inside, ¼ sin(θ_½) Δθ Δφ at the pole rows)."""
    return grid.cell_area


@functools.cache
def _runner(grid: SftGrid, scheme: str):
    # Stages in a scan and a traced step count: one compiled program per (grid, scheme).
    step = advection.make_advection_step(grid, scheme, unroll_stages=False)

    @jax.jit
    def go(b, vt, vp, dt, n):
        return jax.lax.fori_loop(0, n, lambda i, x: step(x, vt, vp, dt), b)

    return go


def run(grid: SftGrid, scheme: str, br, vt, vp, dt, n):
    return _runner(grid, scheme)(br, vt, vp, dt, n)


def blob(grid: SftGrid, lat_deg: float, lon: float, width: float) -> np.ndarray:
    """exp(−|r − r0|²/w²), smooth on the sphere (chordal distance)."""
    th = grid.theta[:, None]
    ph = grid.phi[None, :]
    t0 = math.radians(90.0 - lat_deg)
    x = np.sin(th) * np.cos(ph) - math.sin(t0) * math.cos(lon)
    y = np.sin(th) * np.sin(ph) - math.sin(t0) * math.sin(lon)
    z = np.cos(th) - math.cos(t0) * np.ones_like(ph)
    return np.exp(-(x * x + y * y + z * z) / width**2)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_signed_flux_conserved_to_round_off(scheme: str) -> None:
    grid = SftGrid.uniform(25, 32)
    rng = np.random.default_rng(1)
    br = jnp.asarray(100.0 * rng.standard_normal(grid.shape))
    br = impose_pole_average(br, grid)
    vt = flows.aft_meridional_flow(grid, 2000.0, 1000.0, -2800.0, ghosts=True)
    vp = flows.aft_differential_rotation(grid, 4600.0, -26200.0, -37900.0) + flows.rigid_rotation(
        grid, 3.0
    )
    vt, vp = flows.attenuate(grid, vt, vp, br, 150.0)
    dt = float(advection.max_stable_dt(grid, vt, vp, scheme))
    out = run(grid, scheme, br, vt, vp, dt, 20)
    area = conserved_area(grid)
    before = float(jnp.sum(br * area))
    after = float(jnp.sum(out * area))
    unsigned = float(jnp.sum(jnp.abs(out) * area))
    assert abs(after - before) <= 1e-12 * unsigned
    # The pole rows stay single-valued and the field changed.
    assert np.ptp(np.asarray(out[0])) == 0.0 and np.ptp(np.asarray(out[-1])) == 0.0
    assert float(jnp.max(jnp.abs(out - br))) > 1.0


def _rotation_error(n_phi: int, scheme: str) -> float:
    grid = SftGrid.uniform(9, n_phi)
    th = grid.theta[:, None]
    f0 = np.exp(2.0 * np.cos(grid.phi))[None, :] * np.sin(th) ** 2
    omega = 1.0  # km/s equatorial: one revolution takes 2π/(ω K) hours
    period = 2 * math.pi / (omega * KM_S_TO_RS_HR)
    vt = jnp.zeros((grid.n_theta - 1, grid.n_phi))
    vp = flows.rigid_rotation(grid, omega)
    nsteps = math.ceil(period / float(advection.max_stable_dt(grid, vt, vp, scheme)))
    out = run(grid, scheme, jnp.asarray(f0), vt, vp, period / nsteps, nsteps)
    return float(np.sqrt(np.mean((np.asarray(out) - f0) ** 2)) / np.sqrt(np.mean(f0**2)))


@pytest.mark.parametrize(
    ("scheme", "lo", "hi"), [("upwind-euler", 0.8, 1.3), ("weno3-ssprk43", 2.0, 5.0)]
)
def test_rigid_rotation_one_revolution_converges(scheme: str, lo: float, hi: float) -> None:
    # Upwind reaches its asymptotic first order only on finer grids.
    ns = np.array([128, 256, 512]) if scheme.startswith("upwind") else np.array([48, 96, 192])
    errs = np.array([_rotation_error(int(n), scheme) for n in ns])
    slope = -np.polyfit(np.log(ns), np.log(errs), 1)[0]
    assert lo <= slope <= hi, (errs, slope)
    assert errs[-1] < (0.2 if scheme.startswith("upwind") else 2e-3)


def test_constant_vtheta_translates_blob_as_hipft_exact_solution() -> None:
    # sin θ · B is carried at constant speed: B(θ, t) = g(θ − v t) / sin θ.
    def error(n_theta: int) -> float:
        grid = SftGrid.uniform(n_theta, 2 * (n_theta - 1))
        th = grid.theta[:, None]
        inv = np.zeros_like(th)
        inv[1:-1] = 1.0 / np.sin(th[1:-1])
        w = 0.03

        def exact(c):
            return inv * np.exp(-((th - c) ** 2) / w) * np.ones((1, grid.n_phi))

        hours = 100.0
        vt_km_s = (math.pi / 4) / hours / KM_S_TO_RS_HR
        vt = flows.constant_vtheta(grid, vt_km_s)
        vp = jnp.zeros(grid.shape)
        nsteps = math.ceil(hours / float(advection.max_stable_dt(grid, vt, vp)))
        out = run(
            grid, "weno3-ssprk43", jnp.asarray(exact(math.pi / 4)), vt, vp, hours / nsteps, nsteps
        )
        ex = exact(math.pi / 2)
        return float(np.linalg.norm(np.asarray(out) - ex) / np.linalg.norm(ex))

    # Same grids as the rotation test below, so the compiled programs are shared.
    e1, e2 = error(41), error(81)
    assert e2 < 0.35 * e1 and e2 < 0.05, (e1, e2)


def test_rotation_through_poles_moves_blob_rigidly() -> None:
    # Rotate a blob at 22.5°S, φ = π/2 by 45° about the x axis: it moves to 22.5°N. The blob
    # is narrow enough to stay clear of the polar caps (whose one-value treatment is only
    # first order when a gradient crosses the pole).
    def error(n_theta: int) -> float:
        grid = SftGrid.uniform(n_theta, 2 * (n_theta - 1))
        omega = 1.0
        hours = (math.pi / 4) / (omega * KM_S_TO_RS_HR)
        vt, vp = flows.rigid_rotation_through_poles(grid, omega)
        nsteps = math.ceil(hours / float(advection.max_stable_dt(grid, vt, vp)))
        f0 = jnp.asarray(blob(grid, -22.5, math.pi / 2, 0.25))
        out = run(grid, "weno3-ssprk43", f0, vt, vp, hours / nsteps, nsteps)
        ex = blob(grid, 22.5, math.pi / 2, 0.25)
        return float(np.linalg.norm(np.asarray(out) - ex) / np.linalg.norm(ex))

    e1, e2 = error(41), error(81)
    assert e2 < 0.4 * e1 and e2 < 0.03, (e1, e2)


def test_operator_matches_step_and_vanishes_for_uniform_field_in_rigid_rotation() -> None:
    grid = SftGrid.uniform(13, 16)
    vp = flows.rigid_rotation(grid, 2.0)
    vt = jnp.zeros((grid.n_theta - 1, grid.n_phi))
    for space in ("weno3", "upwind"):
        op = advection.advection_operator(grid, space)
        np.testing.assert_allclose(np.asarray(op(jnp.ones(grid.shape), vt, vp)), 0.0, atol=1e-15)
    rng = np.random.default_rng(0)
    br = jnp.asarray(rng.standard_normal(grid.shape))
    vt = flows.aft_meridional_flow(grid)
    op = advection.advection_operator(grid, "upwind")
    step = advection.make_advection_step(grid, "upwind-euler")
    np.testing.assert_allclose(
        np.asarray(step(br, vt, vp, 0.7)),
        np.asarray(br + 0.7 * op(br, vt, vp)),
        rtol=1e-14,
        atol=1e-14,
    )
    # Unrolled and scanned Runge-Kutta stages are the same arithmetic.
    for scheme in ("weno3-ssprk43", "upwind-ssprk33"):
        s1 = jax.jit(advection.make_advection_step(grid, scheme))
        s2 = jax.jit(advection.make_advection_step(grid, scheme, unroll_stages=False))
        np.testing.assert_allclose(
            np.asarray(s1(br, vt, vp, 3.0)), np.asarray(s2(br, vt, vp, 3.0)), rtol=1e-14, atol=1e-14
        )


def test_max_stable_dt_is_hipft_formula() -> None:
    grid = SftGrid.uniform(11, 14)
    vt = np.asarray(flows.aft_meridional_flow(grid, 300.0, 0.0, 0.0))
    vp = np.asarray(flows.aft_differential_rotation(grid) + flows.rigid_rotation(grid, 1.0))
    kmax = 0.0
    for j in range(1, grid.n_theta - 1):
        for k in range(grid.n_phi):
            kt = max(abs(vt[j - 1, k]), abs(vt[j, k])) / grid.dtheta[j]
            kp = max(abs(vp[j, k - 1]), abs(vp[j, k])) / (grid.sin_theta[j] * grid.dphi[k])
            kmax = max(kmax, kt + kp)
    expect = 0.95 * 0.5 / kmax
    assert float(advection.max_stable_dt(grid, vt, vp, "upwind-euler")) == pytest.approx(expect)
    assert float(advection.max_stable_dt(grid, vt, vp)) == pytest.approx(2 * expect)
    with pytest.raises(ConfigError, match="flow.scheme"):
        advection.make_advection_step(grid, "weno5")


def test_gradients_wrt_flow_coefficients_and_initial_field() -> None:
    grid = SftGrid.uniform(7, 6)
    rng = np.random.default_rng(4)
    br0 = impose_pole_average(jnp.asarray(50.0 * rng.standard_normal(grid.shape)), grid)
    step = advection.make_advection_step(grid, unroll_stages=False)

    def f(coef, br):
        vt = flows.aft_meridional_flow(grid, coef[0], coef[1], coef[2], ghosts=True)
        vp = flows.aft_differential_rotation(grid, coef[3], coef[4], coef[5])
        vp = vp + flows.rigid_rotation(grid, coef[6])
        vt, vp = flows.attenuate(grid, vt, vp, br, coef[7])
        br = step(br, vt, vp, 30.0)
        return jnp.sum(br * jnp.asarray(grid.cell_area)) + jnp.sum(br[2:5, :3] ** 2)

    coef = jnp.array([2200.0, 1100.0, -2800.0, 4600.0, -26200.0, -37900.0, 5.0, 80.0])
    check_grads(jax.jit(f), (coef, br0), order=1, modes=("fwd", "rev"), eps=1e-4)


def test_vmap_over_fields_equals_loop() -> None:
    grid = SftGrid.uniform(12, 10)
    rng = np.random.default_rng(5)
    batch = jnp.asarray(rng.standard_normal((3, *grid.shape)))
    vt = flows.aft_meridional_flow(grid, 500.0, 0.0, 0.0)
    vp = flows.aft_differential_rotation(grid, 500.0, 0.0, 0.0)
    step = jax.jit(advection.make_advection_step(grid, unroll_stages=False))
    out = jax.vmap(step, in_axes=(0, None, None, None))(batch, vt, vp, 5.0)
    for i in range(3):
        np.testing.assert_allclose(
            np.asarray(out[i]), np.asarray(step(batch[i], vt, vp, 5.0)), rtol=1e-13, atol=1e-13
        )
    # Leading batch dimensions also work without vmap.
    np.testing.assert_allclose(
        np.asarray(step(batch, vt, vp, 5.0)), np.asarray(out), rtol=1e-13, atol=1e-13
    )


# ------------------------------------------------------------------ HipFT reference runs
HIPFT_CASES = {
    "advect_gaussians_phi": (False, True, 2.894e-2),
    "advect_gaussians_theta": (True, False, 7.64e-3),
    "advect_gaussians_phi_theta": (True, True, 3.06e-2),
}


def _read_map(path):
    with h5py.File(path, "r") as f:
        return f["Data"][...], f["dim1"][...], f["dim2"][...]


@jax.jit
def _run_672(br, vt, vp):
    grid = _run_672.grid  # type: ignore[attr-defined]
    step = advection.make_advection_step(grid)
    return jax.lax.scan(lambda b, _: (step(b, vt, vp, 1.0), None), br, None, length=672)[0]


@pytest.mark.parametrize("case", sorted(HIPFT_CASES))
def test_hipft_gaussian_advection_reference(hipft_data, case: str) -> None:
    folder = hipft_data / case
    text = (folder / "hipft.in").read_text()
    assert "res_nt = 180" in text and "time_end = 672.0" in text and "validation_run = 2" in text
    use_vt, use_vp, hipft_err = HIPFT_CASES[case]
    assert ("flow_vt_const" in text) == use_vt and ("flow_vp_rigid_omega" in text) == use_vp
    ref, p, t = _read_map(folder / "reference_hipft_brmap_final.h5")
    exact, _, _ = _read_map(folder / "reference_hipft_brmap_final_analytic.h5")
    grid = SftGrid.from_hipft_scales(p, t)
    # HipFT's validation_run 2 initial condition (load_initial_condition), width 0.03.
    th = grid.theta[:, None]
    ph = grid.hipft_phi()[None, :]
    inv = np.zeros_like(th)
    inv[1:-1] = 1.0 / np.sin(th[1:-1])
    g = np.exp(-((th - math.pi / 4) ** 2) / 0.03)
    f0 = -inv * g * np.exp(-((ph - math.pi / 2) ** 2) / 0.03) + inv * g * np.exp(
        -((ph - 3 * math.pi / 2) ** 2) / 0.03
    )
    br = impose_pole_average(drop_periodic_endpoint(f0), grid)
    span = 672.0
    vt = flows.constant_vtheta(grid, (math.pi / 2 / span) / KM_S_TO_RS_HR if use_vt else 0.0)
    vp = flows.rigid_rotation(grid, (2 * math.pi / span) / KM_S_TO_RS_HR if use_vp else 0.0)
    # HipFT's step is min(dt_max = 1 h, flow CFL): 1 h here.
    assert float(advection.max_stable_dt(grid, vt, vp)) > 1.0
    _run_672.grid = grid  # type: ignore[attr-defined]
    out = np.asarray(_run_672(br, vt, vp))
    ref_u = np.asarray(drop_periodic_endpoint(ref))
    ex_u = np.asarray(drop_periodic_endpoint(exact))
    rel = np.linalg.norm(out - ref_u) / np.linalg.norm(ref_u)
    assert rel < 1e-10, rel
    hh = math.sqrt(np.sum((out - ex_u) ** 2) / np.sum(np.abs(out) * np.abs(ex_u)))
    assert hh <= hipft_err * (1 + 1e-3), (hh, hipft_err)
