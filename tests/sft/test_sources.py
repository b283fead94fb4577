"""Tests of jaxgeo.sft.sources: random flux emergence (HipFT models 1, 2) and static sources."""

from __future__ import annotations

import math

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxgeo.errors import ConfigError, FileFormatError
from jaxgeo.sft.grid import SftGrid
from jaxgeo.sft.sources import (
    balance_flux,
    hipft_flux_weights,
    load_static_source,
    make_rfe_source,
    rfe_frame,
    signed_flux,
    static_source,
    unsigned_flux,
)
from jaxgeo.sft.units import GAUSS_SR_TO_MX

GRID = SftGrid.uniform(31, 48)
# Finer in θ: in model 1 HipFT's pole rows get √n_phi instead of n_phi cells' worth of flux, a
# deficit of about 2/n_theta of the rate.
GRID_RATE = SftGrid.uniform(81, 40)


def _stretched_grid() -> SftGrid:
    """A non-uniform grid in both θ and φ (HipFT supports both)."""
    u = np.linspace(0.0, 1.0, 25)
    theta = math.pi * (u + 0.08 * np.sin(2.0 * math.pi * u))
    v = np.linspace(0.0, 1.0, 41)
    phi = 2.0 * math.pi * (v + 0.05 * np.sin(2.0 * math.pi * v))
    return SftGrid.from_hipft_scales(phi, theta)


def _mx_per_hour_1e21(field_g_per_h, grid):
    """Unsigned flux rate of a source field, in 1e21 Mx/h."""
    return unsigned_flux(field_g_per_h, grid) * GAUSS_SR_TO_MX / 1e21


def _expected_unit_rate(grid: SftGrid, model: int) -> float:
    """E[unsigned flux] of a unit-rate frame before balancing, HipFT's pole treatment included.

    Interior cells: E|S| dA = scale·dA (E|g| = 1). A pole row is the dφ-weighted mean of
    n_phi independent deviates, a Gaussian of std √(π/2)·√Σ(dφ_k/2π·scale_k)², so its mean
    modulus is √Σ(dφ_k/2π·scale_k)².
    """
    w = hipft_flux_weights(grid)
    c = 1e21 / GAUSS_SR_TO_MX
    if model == 1:
        scale = c / (grid.n_theta * grid.n_phi) / np.outer(grid.theta_weight, grid.dphi)
    else:
        scale = np.full(grid.shape, c / (4.0 * math.pi))
    total = float(np.sum(scale[1:-1] * w[1:-1]))
    for row in (0, -1):
        mean_abs = math.sqrt(float(np.sum((grid.dphi / (2.0 * math.pi) * scale[row]) ** 2)))
        total += mean_abs * float(np.sum(w[row]))
    return total * GAUSS_SR_TO_MX / 1e21


@pytest.mark.parametrize(("model", "sigma_deg"), [(1, None), (2, None), (1, 12.0)])
def test_every_frame_has_zero_net_flux(model, sigma_deg):
    keys = jax.random.split(jax.random.key(3), 6)
    frames = jax.vmap(lambda k: rfe_frame(GRID, k, model=model, sigma_deg=sigma_deg))(keys)
    rel = jnp.abs(signed_flux(frames, GRID)) / unsigned_flux(frames, GRID)
    assert float(jnp.max(rel)) < 1e-12
    # Pole rows hold one value each (polar-cap control volumes).
    assert float(jnp.max(jnp.abs(frames[:, 0, :] - frames[:, :1, 0]))) == 0.0
    assert float(jnp.max(jnp.abs(frames[:, -1, :] - frames[:, -1:, 0]))) == 0.0


def test_zero_net_flux_on_nonuniform_grid():
    grid = _stretched_grid()
    keys = jax.random.split(jax.random.key(5), 4)
    frames = jax.vmap(lambda k: rfe_frame(grid, k, model=1))(keys)
    rel = jnp.abs(signed_flux(frames, grid)) / unsigned_flux(frames, grid)
    assert float(jnp.max(rel)) < 1e-12


@pytest.mark.parametrize("model", [1, 2])
def test_mean_unsigned_flux_matches_rate(model):
    """Over many frames the emerging unsigned flux per hour is the requested rate.

    Checked twice: against HipFT's exact expectation (its pole rows average n_phi deviates,
    so a cap gets less than n_phi cells' worth) within 1.5 %, and against the rate within 3 %.
    """
    rate = 150.0
    lifetime = 0.3
    src = make_rfe_source(GRID_RATE, model=model, lifetime_hours=lifetime)
    key = jax.random.key(11)
    n_frames = 150
    # At t = k·L the source is frame k itself.
    times = jnp.arange(n_frames, dtype=jnp.float64) * lifetime
    fields = jax.vmap(lambda t: src(key, t, rate))(times)
    measured = float(jnp.mean(_mx_per_hour_1e21(fields, GRID_RATE)))
    expected = rate * _expected_unit_rate(GRID_RATE, model)
    assert abs(measured / expected - 1.0) < 0.015, (measured, expected)
    assert abs(measured / rate - 1.0) < 0.03, (measured, rate)


def test_patchy_emergence_keeps_the_rate():
    """sigma_deg correlates cells but keeps E|S| per cell, so the rate holds (model 2)."""
    keys = jax.random.split(jax.random.key(2), 200)
    frames = jax.vmap(lambda k: rfe_frame(GRID, k, model=2, sigma_deg=15.0))(keys)
    measured = float(jnp.mean(_mx_per_hour_1e21(frames, GRID)))
    assert abs(measured - 1.0) < 0.05
    # Correlated: neighbouring cells agree far more than white noise would.
    f = frames[:, 5:-5, :]
    corr = jnp.sum(f[..., 1:] * f[..., :-1]) / jnp.sqrt(
        jnp.sum(f[..., 1:] ** 2) * jnp.sum(f[..., :-1] ** 2)
    )
    assert float(corr) > 0.5


def test_linear_in_time_between_frames():
    lifetime = 0.5
    src = make_rfe_source(GRID, model=2, lifetime_hours=lifetime, start_hours=2.0)
    key = jax.random.key(7)
    f3 = rfe_frame(GRID, jax.random.fold_in(key, 3), model=2)
    f4 = rfe_frame(GRID, jax.random.fold_in(key, 4), model=2)
    for alpha in (0.0, 0.25, 0.7):
        got = src(key, 2.0 + (3.0 + alpha) * lifetime, 1.0)
        np.testing.assert_allclose(got, (1.0 - alpha) * f3 + alpha * f4, rtol=1e-12, atol=1e-14)
    # Continuous across a frame switch.
    t_switch = 2.0 + 4.0 * lifetime
    a = src(key, t_switch - 1e-9, 1.0)
    b = src(key, t_switch, 1.0)
    assert float(jnp.max(jnp.abs(a - b))) < 1e-6 * float(jnp.max(jnp.abs(b)))


def test_time_integral_in_a_scan():
    """Used inside lax.scan with a traced time, the midpoint rule integrates S exactly.

    S is linear within each frame interval, so ∫₀^{nL} S dt = L (F₀/2 + F₁ + … + F_{n−1} + F_n/2).
    """
    lifetime, n, sub = 0.3, 4, 3
    src = make_rfe_source(GRID, model=1, lifetime_hours=lifetime)
    key = jax.random.key(9)
    dt = lifetime / sub

    def body(acc, i):
        t = (i + 0.5) * dt
        return acc + dt * src(key, t, 2.0), None

    total, _ = jax.jit(
        lambda: jax.lax.scan(body, jnp.zeros(GRID.shape), jnp.arange(n * sub, dtype=jnp.float64))
    )()
    frames = [rfe_frame(GRID, jax.random.fold_in(key, k), model=1) for k in range(n + 1)]
    expected = 2.0 * lifetime * (0.5 * frames[0] + sum(frames[1:-1]) + 0.5 * frames[-1])
    np.testing.assert_allclose(
        total, expected, rtol=1e-10, atol=1e-12 * float(jnp.max(jnp.abs(expected)))
    )


def test_seeds_reproduce_and_differ():
    src = jax.jit(make_rfe_source(GRID, model=2, lifetime_hours=0.3))
    t = jnp.float64(1.05)
    a = src(jax.random.key(1), t, 10.0)
    b = src(jax.random.key(1), t, 10.0)
    c = src(jax.random.key(2), t, 10.0)
    np.testing.assert_array_equal(a, b)
    assert float(jnp.max(jnp.abs(a - c))) > 0.1 * float(jnp.max(jnp.abs(a)))


def test_vmap_over_seeds_and_rates():
    src = make_rfe_source(GRID, model=1, lifetime_hours=0.3)
    seeds = jnp.arange(4)
    rates = jnp.array([1.0, 2.0, 5.0, 10.0])
    batched = jax.vmap(lambda s, r: src(jax.random.key(s), 0.4, r))(seeds, rates)
    assert batched.shape == (4, *GRID.shape)
    for i in range(4):
        one = src(jax.random.key(int(seeds[i])), 0.4, float(rates[i]))
        np.testing.assert_allclose(
            batched[i], one, rtol=1e-12, atol=1e-14 * float(jnp.max(jnp.abs(one)))
        )


def test_gradient_wrt_rate_is_exact():
    src = make_rfe_source(GRID, model=2, lifetime_hours=0.3)
    key = jax.random.key(4)
    probe = jax.random.normal(jax.random.key(99), GRID.shape)

    def loss(rate):
        return jnp.sum(probe * src(key, 0.77, rate))

    unit = jnp.sum(probe * src(key, 0.77, 1.0))
    g = jax.grad(loss)(3.0)
    assert bool(jnp.isfinite(g))
    np.testing.assert_allclose(g, unit, rtol=1e-13)
    check_grads(loss, (3.0,), order=2, modes=("fwd", "rev"))


def test_balance_flux_edge_cases():
    w = jnp.asarray(hipft_flux_weights(GRID))
    positive = jnp.ones(GRID.shape)
    np.testing.assert_array_equal(balance_flux(positive, GRID), jnp.zeros(GRID.shape))
    # A field with zero net flux is left as it is.
    f = jnp.zeros(GRID.shape).at[3, 4].set(1.0 / w[3, 4]).at[7, 9].set(-1.0 / w[7, 9])
    np.testing.assert_array_equal(balance_flux(f, GRID), f)
    # Leading axes are balanced independently; the product of the two scalings is one.
    x = (
        jax.random.normal(jax.random.key(0), (3, *GRID.shape))
        + jnp.array([0.5, 0.0, -0.3])[:, None, None]
    )
    bal = balance_flux(x, GRID)
    assert float(jnp.max(jnp.abs(signed_flux(bal, GRID)) / unsigned_flux(bal, GRID))) < 1e-13
    pos_scale = bal[x > 0] / x[x > 0]
    assert bal.shape == x.shape and bool(jnp.all(pos_scale > 0))


def test_flux_weights_match_hipft_get_flux():
    np.testing.assert_allclose(hipft_flux_weights(GRID), GRID.cell_area, rtol=1e-14)
    grid = _stretched_grid()
    w = hipft_flux_weights(grid)
    # Column 0: half of dph(1) + half of dph(npm-1), both HipFT's last φ spacing.
    last = grid.phi[0] + 2.0 * math.pi - grid.phi[-1]
    np.testing.assert_allclose(w[:, 0], grid.theta_weight * last, rtol=1e-15)
    np.testing.assert_array_equal(w[:, 1:], grid.cell_area[:, 1:])


def test_config_errors():
    with pytest.raises(ConfigError, match="model"):
        make_rfe_source(GRID, model=3)
    with pytest.raises(ConfigError, match="lifetime_hours"):
        make_rfe_source(GRID, model=2, lifetime_hours=0.0)
    with pytest.raises(ConfigError, match="sigma_deg"):
        make_rfe_source(GRID, model=2, sigma_deg=-1.0)


def test_static_source(tmp_path):
    smap = jax.random.normal(jax.random.key(1), GRID.shape)
    src = static_source(smap)
    np.testing.assert_array_equal(src(jax.random.key(0), 12.0, 1.0), smap)
    np.testing.assert_allclose(src(jax.random.key(0), 12.0, 2.5), 2.5 * smap)
    # A file on the run grid (with the periodic end point) reads back exactly.
    path = tmp_path / "src.h5"
    with h5py.File(path, "w") as h5:
        h5["Data"] = np.concatenate([np.asarray(smap), np.asarray(smap[:, :1])], axis=1)
        h5["dim1"] = GRID.hipft_phi()
        h5["dim2"] = GRID.theta
    np.testing.assert_allclose(load_static_source(path, GRID), smap, rtol=0, atol=1e-15)
    # A coarser file is interpolated bilinearly (exact for a bilinear field).
    coarse = SftGrid.uniform(7, 8)
    pc, tc = coarse.hipft_phi(), coarse.theta
    path2 = tmp_path / "coarse.h5"
    with h5py.File(path2, "w") as h5:
        h5["Data"] = 2.0 * tc[:, None] - 0.5 * pc[None, :] + 0.3 * tc[:, None] * pc[None, :]
        h5["dim1"] = pc
        h5["dim2"] = tc
    exact = (
        2.0 * GRID.theta[:, None]
        - 0.5 * GRID.phi[None, :]
        + 0.3 * GRID.theta[:, None] * GRID.phi[None, :]
    )
    np.testing.assert_allclose(load_static_source(path2, GRID), exact, rtol=1e-12, atol=1e-12)
    with pytest.raises(FileFormatError, match="does not exist"):
        load_static_source(tmp_path / "missing.h5", GRID)
