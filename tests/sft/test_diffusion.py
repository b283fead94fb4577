"""Tests of HipFT's diffusion operator, super time stepping and sub-cycling."""

from __future__ import annotations

import math

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy.linalg import expm

from jaxgeo.errors import ConfigError
from jaxgeo.sft.diagnostics import history, read_hipft_history
from jaxgeo.sft.diffusion import (
    diffuse_auto,
    diffusion_operator,
    dtime_diffusion_euler,
    make_diffusion_step,
    plan_diffusion,
    ptl_timestep,
    sts_init,
    sts_stages,
)
from jaxgeo.sft.grid import SftGrid, drop_periodic_endpoint, impose_pole_average
from jaxgeo.sft.validation import dipole, harmonic, soccer_ball, soccer_ball_exact

HIPFT_KM2_S_TO_RS2_HR = 7.43162901307967e-09


def _area_amplitude(grid, br, mode):
    a = grid.cell_area_exact
    return float(np.sum(np.asarray(br) * mode * a) / np.sum(mode * mode * a))


def _run(grid, plan, br, nu, dt, n):
    step = make_diffusion_step(grid, plan)

    def body(x, _):
        return step(x, nu, dt), None

    return jax.jit(lambda x: jax.lax.scan(body, x, None, length=n)[0])(jnp.asarray(br))


def test_operator_eigenmodes_second_order():
    """A Y_lm ≈ −l(l+1) Y_lm with a fitted order ≈ 2 over a ladder of grids."""
    op = diffusion_operator
    for l, m in ((1, 0), (3, 2), (6, 5)):
        errs, hs = [], []
        for n in (13, 25, 49):
            g = SftGrid.uniform(n, 2 * (n - 1))
            y = harmonic(g, l, m)
            ay = np.asarray(jax.jit(op(g))(jnp.asarray(y), 1.0))
            err = ay + l * (l + 1) * y
            a = g.cell_area_exact
            errs.append(math.sqrt(np.sum(err**2 * a) / np.sum((l * (l + 1) * y) ** 2 * a)))
            hs.append(math.pi / (n - 1))
        slope = np.polyfit(np.log(hs), np.log(errs), 1)[0]
        assert 1.8 < slope < 2.3, (l, m, errs)


@pytest.mark.parametrize("l, m, nu", [(1, 0, 2e-3), (2, 1, 1e-3), (4, -3, 2e-4), (6, 5, 1e-4)])
def test_eigenmode_decay_rkg2(l, m, nu):
    """Y_lm decays as exp(−ν l(l+1) t); the error shrinks ~4x per grid doubling."""
    t_end, n_steps = 100.0, 5
    errs = []
    for n in (19, 37):
        g = SftGrid.uniform(n, 2 * (n - 1))
        y = harmonic(g, l, m, 10.0)
        plan = plan_diffusion(g, nu, t_end / n_steps, "rkg2", 1)
        out = _run(g, plan, y, nu, t_end / n_steps, n_steps)
        ratio = _area_amplitude(g, out, y)
        errs.append(abs(ratio - math.exp(-nu * l * (l + 1) * t_end)))
    assert errs[1] < 0.02 * math.exp(-nu * l * (l + 1) * t_end)
    assert errs[0] / errs[1] > 3.0


def _nonuniform(n_theta=15, n_phi=22):
    rng = np.random.default_rng(3)
    u = np.linspace(0.0, 1.0, n_theta)
    theta = math.pi * (u + 0.04 * np.sin(2 * math.pi * u))
    phi = np.linspace(0.0, 2 * math.pi, n_phi, endpoint=False) + rng.uniform(-0.05, 0.05, n_phi)
    phi = np.sort(phi)
    return SftGrid(theta=theta, phi=phi - phi[0])


def _corner_nu(g, seed=4):
    rng = np.random.default_rng(seed)
    nc = 1e-3 * (1.0 + 0.5 * rng.uniform(size=(g.n_theta + 1, g.n_phi)))
    # φ-constant on the first and last faces, with HipFT's ghost rows (2·mean − ν = ν):
    # then the polar cap's flux equals the face's, and variable ν conserves flux exactly.
    nc[:2] = nc[1].mean()
    nc[-2:] = nc[-2].mean()
    return nc


@pytest.mark.parametrize("scheme", ["euler", "rkl2", "rkg2"])
def test_signed_flux_conserved_to_roundoff(scheme):
    g = _nonuniform()
    rng = np.random.default_rng(5)
    br = np.asarray(impose_pole_average(rng.normal(size=g.shape) * 100.0, g))
    nu = _corner_nu(g)
    plan = plan_diffusion(g, nu, 20.0, scheme, 2)
    out = np.asarray(_run(g, plan, br, jnp.asarray(nu), 20.0, 3))
    a = g.cell_area
    unsigned = np.sum(np.abs(br) * a)
    assert abs(np.sum(out * a) - np.sum(br * a)) < 1e-12 * unsigned
    # Pole rows stay single-valued.
    assert np.ptp(out[0]) == 0.0 and np.ptp(out[-1]) == 0.0
    # and the operator itself integrates to zero, scalar ν included.
    y = np.asarray(diffusion_operator(g)(jnp.asarray(br), 1e-3))
    assert abs(np.sum(y * a)) < 1e-13 * np.sum(np.abs(y) * a)


def test_corner_nu_constant_equals_scalar_and_per_member_nu():
    g = SftGrid.uniform(11, 20)
    br = jnp.asarray(soccer_ball(g))
    op = jax.jit(diffusion_operator(g))
    nc = jnp.full((g.n_theta + 1, g.n_phi), 3e-3)
    np.testing.assert_allclose(op(br, nc), op(br, 3e-3), rtol=1e-13, atol=1e-13)
    two = jnp.stack([br, 2 * br])
    out = op(two, jnp.asarray([1e-3, 2e-3]))
    np.testing.assert_allclose(out[1], 4 * op(br, 1e-3), rtol=1e-13, atol=1e-14)


def _dense_solution(g, br, nu, t):
    op = diffusion_operator(g)
    n = g.n_theta * g.n_phi
    mat = jax.jacfwd(lambda v: op(v.reshape(g.shape), nu).reshape(-1))(jnp.zeros(n))
    return (expm(np.asarray(mat) * t) @ np.asarray(br).reshape(-1)).reshape(g.shape)


@pytest.mark.parametrize("scheme", ["rkl2", "rkg2"])
def test_sts_second_order_in_time(scheme):
    g = SftGrid.uniform(13, 24)
    br = soccer_ball(g) + harmonic(g, 2, 1)
    nu, t_end = 2e-3, 5.0  # λ Δt ≤ 0.4 for the l = 6 mode: the asymptotic regime
    exact = _dense_solution(g, br, nu, t_end)
    plan = plan_diffusion(g, nu, t_end, scheme, 1)
    errs, dts = [], []
    for k in range(4):
        n = 2**k
        out = np.asarray(_run(g, plan, br, nu, t_end / n, n))
        errs.append(np.linalg.norm(out - exact) / np.linalg.norm(exact))
        dts.append(t_end / n)
    slope = np.polyfit(np.log(dts), np.log(errs), 1)[0]
    assert 1.8 < slope < 2.4, errs


def test_euler_matches_semidiscrete_solution():
    g = SftGrid.uniform(13, 24)
    br = soccer_ball(g)
    exact = _dense_solution(g, br, 2e-3, 10.0)
    plan = plan_diffusion(g, 2e-3, 10.0, "euler", 1)
    assert plan.stages[0] == math.ceil(10.0 / plan.dt_euler_hours)
    out = np.asarray(_run(g, plan, br, 2e-3, 10.0, 1))
    # First order in time at the stable Euler step: a few per cent here.
    assert np.linalg.norm(out - exact) / np.linalg.norm(exact) < 5e-2


def test_stiff_super_step_stays_bounded_and_accurate():
    """A scaled-down diffuse_dipole: one long super step, dt/dt_Euler ~ 1e4."""
    g = SftGrid.uniform(33, 64)
    br = dipole(g, 1000.0)
    nu, t = 5e-3, 100.0
    exact = math.exp(-2 * nu * t)  # e^-1
    ax0 = float(history(g, br)["ax_dipole"])
    assert t / dtime_diffusion_euler(g, nu) > 1e4
    for scheme in ("rkl2", "rkg2"):
        for cycles, tol in ((1, 0.1), (4, 1e-2)):
            plan = plan_diffusion(g, nu, t, scheme, cycles)
            out = np.asarray(_run(g, plan, br, nu, t, 1))
            assert np.all(np.isfinite(out)) and np.max(np.abs(out)) <= 1000.0
            ratio = float(history(g, out)["ax_dipole"]) / ax0
            assert abs(ratio - exact) < tol * exact, (scheme, cycles, ratio)


def test_auto_subcycles_follow_hipft_ptl_and_replay():
    g = SftGrid.uniform(33, 64)
    nu, t = 5e-3, 100.0
    br = dipole(g, 1000.0) + harmonic(g, 6, 3, 300.0)
    first = ptl_timestep(g, br, nu)
    # The PTL of an l = 6 mode is 0.95 / (ν l(l+1)) up to the discretisation error.
    assert first == pytest.approx(0.95 / (42 * nu), rel=0.05)
    out, plan = diffuse_auto(g, br, nu, t, "rkg2")
    assert plan.n_subcycles > 1 and sum(plan.cycle_fractions) == pytest.approx(1.0)
    assert plan.cycle_fractions[0] * t == pytest.approx(first, rel=1e-12)
    # cycles never shrink (HipFT keeps the previous cycle as a floor) except the last.
    dts = np.asarray(plan.cycle_fractions[:-1])
    assert np.all(np.diff(dts) >= -1e-15)
    replay = np.asarray(jax.jit(make_diffusion_step(g, plan))(jnp.asarray(br), nu, t))
    np.testing.assert_allclose(replay, np.asarray(out), rtol=1e-10, atol=1e-10)


def test_gradient_wrt_nu_and_vmap_over_nu():
    g = SftGrid.uniform(9, 16)
    br = jnp.asarray(soccer_ball(g) + dipole(g, 1.0))
    plan = plan_diffusion(g, 4e-2, 5.0, "rkg2", 2)
    step = make_diffusion_step(g, plan)

    @jax.jit
    def scalar(nu):
        out = step(br, nu, 5.0)
        return jnp.sum(out**2 * jnp.asarray(g.cell_area))

    check_grads(scalar, (jnp.asarray(2e-2),), order=1, modes=("fwd", "rev"), eps=1e-5)
    nus = jnp.asarray([1e-2, 2e-2, 4e-2])
    batched = jax.jit(jax.vmap(step, in_axes=(None, 0, None)))(br, nus, 5.0)
    single = jax.jit(step)
    for i, nu in enumerate(nus):
        np.testing.assert_allclose(batched[i], single(br, nu, 5.0), rtol=1e-13, atol=1e-13)


def test_plans_and_coefficients():
    g = SftGrid.uniform(19, 36)
    dte = dtime_diffusion_euler(g, 1e-3)
    assert dtime_diffusion_euler(g, 2e-3) == pytest.approx(dte / 2)
    for scheme in ("rkl2", "rkg2"):
        for ratio in (0.5, 3.0, 57.0, 1e4):
            s = sts_stages(scheme, ratio * dte, dte)
            assert s >= 3 and s % 2 == 1
        c = sts_init(scheme, 9)
        assert c.s == 9 and c.u.shape == (9,)
    # HipFT's counts: RKL2 s ≈ 2√r, RKG2 s ≈ √(6r) for r = Δt/Δt_E.
    assert sts_stages("rkl2", 1e4 * dte, dte) == 201
    assert sts_stages("rkg2", 1e4 * dte, dte) == 245
    p = plan_diffusion(g, 1e-3, 10.0, "rkg2", 4)
    assert p.n_subcycles == 4 and len(set(p.stages)) == 1
    assert p.stages[0] == sts_stages("rkg2", 2.5, dte)
    assert plan_diffusion(g, 1e-3, 10.0, "rkg2", "auto").n_subcycles == 1
    for bad in (dict(scheme="rk4"), dict(subcycles=-1), dict(subcycles="many")):
        kw = dict(scheme="rkg2", subcycles=1) | bad
        with pytest.raises(ConfigError):
            plan_diffusion(g, 1e-3, 10.0, **kw)
    with pytest.raises(ConfigError):
        dtime_diffusion_euler(g, 0.0)
    with pytest.raises(ConfigError):
        make_diffusion_step(g, p, "rkl2")


@pytest.mark.slow
@pytest.mark.reference
def test_diffuse_soccer_matches_hipft(hipft_data):
    """HipFT's diffuse_soccer: 4 realizations, RKG2, 672 × 1 h, auto sub-cycles (= 1 here)."""
    case = hipft_data / "diffuse_soccer"
    with h5py.File(case / "reference_hipft_brmap_final.h5") as f:
        g = SftGrid.from_hipft_scales(f["dim1"][:], f["dim2"][:])
        ref = np.asarray(drop_periodic_endpoint(f["Data"][:]))
    nus = np.array([100.0, 200.0, 400.0, 800.0]) * HIPFT_KM2_S_TO_RS2_HR
    br0 = soccer_ball(g)
    plan = plan_diffusion(g, nus.max(), 1.0, "rkg2", "auto")
    step = make_diffusion_step(g, plan)

    def run(nu):
        return jax.lax.scan(
            lambda x, _: (step(x, nu, 1.0), None), jnp.asarray(br0), None, length=672
        )[0]

    out = np.asarray(jax.jit(jax.vmap(run))(jnp.asarray(nus)))
    for k in range(4):
        rel = np.linalg.norm(out[k] - ref[k]) / np.linalg.norm(ref[k])
        assert rel < 1e-9, (k, rel)
        exact = soccer_ball_exact(g, 672.0, nus[k])
        hh = float(history(g, out[k], exact=exact)["validation_err_hhabs"])
        hipft = read_hipft_history(case / f"hipft_history_sol_r{k + 1:06d}.out")[
            "validation_err_hhabs"
        ][-1]
        assert hh <= hipft * (1 + 1e-6)


@pytest.mark.long
@pytest.mark.reference
def test_diffuse_dipole_matches_hipft(hipft_data):
    """HipFT's diffuse_dipole: 1024×512, ν = 500 km²/s, one 8760 h step, PTL + RKG2."""
    case = hipft_data / "diffuse_dipole"
    with h5py.File(case / "br_input.h5") as f:
        g = SftGrid.from_hipft_scales(
            f["dim1"][:].astype(np.float64), f["dim2"][:].astype(np.float64)
        )
        br0 = impose_pole_average(drop_periodic_endpoint(f["Data"][:].astype(np.float64)), g)
    with h5py.File(case / "reference_hipft_brmap_final.h5") as f:
        ref = np.asarray(f["Data"][:, :-1], dtype=np.float64)
    out, plan = diffuse_auto(g, br0, 500.0 * HIPFT_KM2_S_TO_RS2_HR, 8760.0, "rkg2")
    hist = read_hipft_history(case / "hipft_history_sol_r000001.out")
    # HipFT's verbose history logs the end time of each cycle (our φ period is exactly 2π,
    # HipFT keeps the float32 file's end point 2π + 1.7e-7: the PTL moves by ~1e-8).
    np.testing.assert_allclose(
        np.cumsum(plan.cycle_fractions) * 8760.0, hist["time"][1:-1], rtol=1e-6
    )
    rel = np.linalg.norm(np.asarray(out) - ref) / np.linalg.norm(ref)
    assert rel < 1e-6
