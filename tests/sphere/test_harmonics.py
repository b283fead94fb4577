"""Real spherical harmonics: against scipy, orthonormality, addition theorem, range, gradients."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax.test_util import check_grads
from scipy.special import eval_legendre, sph_harm_y

from jaxgeo.errors import ConfigError, InputError
from jaxgeo.sphere import (
    gauss_legendre_grid,
    index_to_lm,
    lm_index,
    n_coeffs,
    real_sph_harm,
    real_sph_harm_lm,
)

sph = jax.jit(real_sph_harm, static_argnums=0)

# Points at and near both poles (where naive recursions underflow or lose accuracy) and on
# the equator, besides random ones.
SPECIAL_THETA = np.array([0.0, 1e-12, 1e-8, 1e-4, 0.05, math.pi / 2, math.pi - 1e-9, math.pi])


def _points(n_random: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    theta = np.concatenate([rng.uniform(0.0, math.pi, n_random), SPECIAL_THETA])
    phi = rng.uniform(0.0, 2.0 * math.pi, theta.size)
    return theta, phi


def _scipy_real(l_max: int, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Real harmonics from scipy's complex ones (which carry the Condon–Shortley phase):
    Y_lm = √2 Re Y_l^m, Y_l,−m = √2 Im Y_l^m (m > 0)."""
    out = np.zeros((*theta.shape, n_coeffs(l_max)))
    for l in range(l_max + 1):
        for m in range(l + 1):
            y = sph_harm_y(l, m, theta, phi)
            if m == 0:
                out[..., lm_index(l, 0)] = y.real
            else:
                out[..., lm_index(l, m)] = math.sqrt(2.0) * y.real
                out[..., lm_index(l, -m)] = math.sqrt(2.0) * y.imag
    return out


def _bound(l_max: int) -> np.ndarray:
    """sqrt((2l+1)/(4π)) per flat index: the sup of |Y_lm| (addition theorem)."""
    l, _ = index_to_lm(np.arange(n_coeffs(l_max)))
    return np.sqrt((2 * l + 1) / (4.0 * math.pi))


@pytest.mark.parametrize("method", ["fourier", "recursion"])
def test_matches_scipy_l30_including_poles(method):
    theta, phi = _points(40, seed=0)
    ours = np.asarray(
        jax.jit(real_sph_harm, static_argnums=0, static_argnames="method")(
            30, theta, phi, method=method
        )
    )
    ref = _scipy_real(30, theta, phi)
    assert ours.shape == (theta.size, 31 * 31)
    # Point by point, relative to the size of the whole set of harmonics there.
    norm_err = np.linalg.norm(ours - ref, axis=-1) / np.linalg.norm(ref, axis=-1)
    assert norm_err.max() < 1e-12
    # Entry by entry, against the bound sqrt((2l+1)/4π): what the Fourier form promises.
    assert (np.abs(ours - ref) / _bound(30)).max() < 1e-13  # measured 3e-14 (either method)
    # Exact zeros of the m != 0 harmonics at the north pole (sin θ factored out of the odd
    # orders, the even ones masked).
    _, m = index_to_lm(np.arange(n_coeffs(30)))
    assert np.all(ours[theta == 0.0][:, m != 0] == 0.0)
    if method == "fourier":
        return
    # The recursion also keeps full relative precision in the tiny sin^m θ values next to the
    # poles.
    significant = np.abs(ref) > 1e-290
    rel = np.abs(ours - ref)[significant] / np.abs(ref)[significant]
    assert rel.max() < 1e-10
    assert np.abs(ours[~significant]).max(initial=0.0) < 1e-280


def test_low_degrees_closed_form_and_phase():
    # Condon–Shortley phase: Y_11 = −√(3/4π) sin θ cos φ, Y_1,−1 = −√(3/4π) sin θ sin φ.
    theta, phi = _points(5, seed=1)
    y = np.asarray(sph(2, theta, phi))
    c1 = math.sqrt(3.0 / (4.0 * math.pi))
    st_, ct = np.sin(theta), np.cos(theta)
    np.testing.assert_allclose(y[:, 0], 1.0 / math.sqrt(4.0 * math.pi), rtol=1e-15)
    np.testing.assert_allclose(y[:, lm_index(1, 0)], c1 * ct, atol=1e-15)
    np.testing.assert_allclose(y[:, lm_index(1, 1)], -c1 * st_ * np.cos(phi), atol=1e-15)
    np.testing.assert_allclose(y[:, lm_index(1, -1)], -c1 * st_ * np.sin(phi), atol=1e-15)
    c22 = 0.25 * math.sqrt(15.0 / math.pi)
    np.testing.assert_allclose(y[:, lm_index(2, 2)], c22 * st_**2 * np.cos(2 * phi), atol=1e-15)
    np.testing.assert_allclose(y[:, lm_index(2, -2)], c22 * st_**2 * np.sin(2 * phi), atol=1e-15)


def test_orthonormal_by_gauss_legendre_l40():
    l_max = 40
    grid = gauss_legendre_grid(l_max + 1)  # exact for products up to degree 2 l_max
    y = np.asarray(sph(l_max, grid.theta[:, None], grid.phi[None, :]))
    y = y.reshape(-1, n_coeffs(l_max))
    gram = y.T @ (grid.weights.reshape(-1, 1) * y)
    assert np.abs(gram - np.eye(n_coeffs(l_max))).max() < 1e-12


def test_addition_theorem_to_degree_200():
    # Σ_m Y_lm(x) Y_lm(y) = (2l+1)/(4π) P_l(x·y): sensitive to every order m at once, and at
    # l = 200 to the stability of the recursion.
    l_max = 200
    theta1, phi1 = _points(16, seed=2)
    theta2, phi2 = _points(16, seed=3)
    theta2[-1] = 0.0  # pair a pole with the south pole
    y1 = np.asarray(sph(l_max, np.stack([theta1, theta2]), np.stack([phi1, phi2])))
    y1, y2 = y1[0], y1[1]

    def unit(t, p):
        return np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], axis=-1)

    cos_gamma = np.clip(np.sum(unit(theta1, phi1) * unit(theta2, phi2), axis=-1), -1.0, 1.0)
    l_of, _ = index_to_lm(np.arange(n_coeffs(l_max)))
    for l in (0, 1, 2, 7, 30, 100, 150, 199, 200):
        lhs = np.sum((y1 * y2)[:, l_of == l], axis=-1)
        rhs = (2 * l + 1) / (4.0 * math.pi) * eval_legendre(l, cos_gamma)
        scale = (2 * l + 1) / (4.0 * math.pi)
        assert np.abs(lhs - rhs).max() / scale < 1e-11, l


@pytest.mark.parametrize("l_max", [200, 300])
def test_finite_and_bounded_at_high_degree(l_max):
    theta, phi = _points(12, seed=4)
    y = np.asarray(sph(l_max, theta, phi))
    assert np.all(np.isfinite(y))
    assert np.all(np.abs(y) <= _bound(l_max) * (1.0 + 1e-11))
    # Σ_m Y_lm² = (2l+1)/(4π) at every point (addition theorem at x = y).
    l_of, _ = index_to_lm(np.arange(n_coeffs(l_max)))
    sums = np.stack([np.sum(y[:, l_of == l] ** 2, axis=-1) for l in (l_max // 2, l_max)])
    expect = np.array([2 * (l_max // 2) + 1, 2 * l_max + 1])[:, None] / (4.0 * math.pi)
    assert np.abs(sums / expect - 1.0).max() < 1e-11


def test_float32_stays_in_range_at_degree_300():
    # sin^m θ near the poles is far below float32's range at this degree; the extended-range
    # recursion must still give finite values close to the float64 ones.
    theta, phi = _points(12, seed=5)
    t32, p32 = theta.astype(np.float32), phi.astype(np.float32)
    y32 = sph(300, jnp.asarray(t32), jnp.asarray(p32))
    assert y32.dtype == jnp.float32
    y64 = np.asarray(sph(300, t32.astype(np.float64), p32.astype(np.float64)))
    y32 = np.asarray(y32, dtype=np.float64)
    assert np.all(np.isfinite(y32))
    # Error ~ l eps of the bound (measured 1.4e-6), not the l² eps of a plain recursion in cos θ
    # at the poles (2e-4 here).
    assert (np.abs(y32 - y64) / _bound(300)).max() < 1e-5


def _float32_points(n_random: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Float32 points uniform on the sphere, plus the poles and points 1e-5..0.05 rad from
    them (where a recursion in a rounded cos θ loses l² eps) and the equator."""
    rng = np.random.default_rng(seed)
    near = np.array([0.0, 1e-5, 1e-4, 1e-3, 1e-2, 0.05])
    theta = np.concatenate([np.arccos(rng.uniform(-1.0, 1.0, n_random)), near, math.pi - near])
    theta = np.append(theta, math.pi / 2)
    # Longitudes in [−π, 2π): m φ reaches 400π at l = 200.
    phi = rng.uniform(-math.pi, 2.0 * math.pi, theta.size)
    return theta.astype(np.float32), phi.astype(np.float32)


sph_high = jax.jit(functools.partial(real_sph_harm, precision="high"), static_argnums=0)


# Max |Y_f32 − Y_f64| (float64 evaluated at the same float32 inputs), absolute. Measured
# 5.2e-7, 1.9e-6, 5.8e-6, 1.3e-5; the plain recursion in cos θ with cos(fl(m φ)) gave 2.4e-6,
# 4.4e-5, 4.6e-4, 2.4e-3.
@pytest.mark.parametrize(
    ("l_max", "n_random", "tol"),
    [(10, 200, 1e-6), (40, 120, 5e-6), (100, 60, 1.2e-5), (200, 30, 2.5e-5)],
)
def test_float32_accuracy_by_degree(l_max, n_random, tol):
    t32, p32 = _float32_points(n_random, seed=l_max)
    y32 = sph(l_max, jnp.asarray(t32), jnp.asarray(p32))
    assert y32.dtype == jnp.float32
    y64 = np.asarray(sph(l_max, t32.astype(np.float64), p32.astype(np.float64)))
    err = np.abs(np.asarray(y32, np.float64) - y64)
    assert err.max() < tol
    # precision="high": computed in float64; the θ and φ factors are rounded to float32 and
    # multiplied there (up to degree 100), so ~1.5 ulp are left: below 1.5e-7 of the bound
    # (measured 9.2e-8, 1.08e-7, 8.8e-8; 5.8e-8 at degree 200, rounded once by the recursion).
    high = sph_high(l_max, jnp.asarray(t32), jnp.asarray(p32))
    assert high.dtype == jnp.float32
    err_high = np.abs(np.asarray(high, np.float64) - y64) / _bound(l_max)
    assert err_high.max() < 1.5e-7


def test_float32_single_harmonic_high_order():
    # real_sph_harm_lm reduces m φ exactly too: cos(97 φ) from a rounded 97 φ is off by 3e-5.
    t32, p32 = _float32_points(40, seed=8)
    single = jax.jit(real_sph_harm_lm, static_argnums=(0, 1))
    high_fn = jax.jit(functools.partial(real_sph_harm_lm, precision="high"), static_argnums=(0, 1))
    for l, m in [(100, -97), (40, 3)]:
        y32 = np.asarray(single(l, m, jnp.asarray(t32), jnp.asarray(p32)), np.float64)
        y64 = np.asarray(single(l, m, t32.astype(np.float64), p32.astype(np.float64)))
        assert np.abs(y32 - y64).max() < 1e-5, (l, m)
        high = high_fn(l, m, jnp.asarray(t32), jnp.asarray(p32))
        assert high.dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(high, np.float64), y64, rtol=0, atol=3e-7)


def test_precision_high_needs_x64_and_known_values():
    t32 = jnp.zeros(3, jnp.float32)
    with pytest.raises(ConfigError, match="precision must be"):
        real_sph_harm(3, t32, t32, precision="double")
    with pytest.raises(ConfigError, match="precision must be"):
        real_sph_harm_lm(3, 1, t32, t32, precision=None)
    with jax.enable_x64(False), pytest.raises(ConfigError, match="jax_enable_x64"):
        real_sph_harm(3, t32, t32, precision="high")
    # float64 input: "high" is the default computation.
    theta, phi = _points(5, seed=9)
    np.testing.assert_array_equal(
        np.asarray(real_sph_harm(4, theta, phi, precision="high")),
        np.asarray(real_sph_harm(4, theta, phi)),
    )


def test_single_harmonic_matches_full_set():
    theta, phi = _points(6, seed=6)
    y = np.asarray(sph(12, theta, phi))
    single_fn = jax.jit(real_sph_harm_lm, static_argnums=(0, 1))
    for l, m in [(0, 0), (6, 5), (6, -5), (12, -7)]:
        single = np.asarray(single_fn(l, m, theta, phi))
        np.testing.assert_allclose(single, y[:, lm_index(l, m)], rtol=1e-13, atol=1e-15)


def test_broadcasting_jit_and_vmap():
    theta, phi = _points(4, seed=7)
    grid_vals = sph(5, theta[:, None], phi[None, :3])
    assert grid_vals.shape == (theta.size, 3, 36)
    np.testing.assert_allclose(np.asarray(grid_vals[:, 1]), np.asarray(sph(5, theta, phi[1])))
    mapped = jax.jit(jax.vmap(functools.partial(real_sph_harm, 5)))(theta, phi)
    np.testing.assert_allclose(np.asarray(mapped), np.asarray(sph(5, theta, phi)), rtol=1e-14)
    scalar = real_sph_harm(1, 0.4, 1.0)  # eager call on Python scalars
    assert scalar.shape == (4,)


def test_check_grads_theta_phi():
    # At both poles, next to them and inside; finite differences straddle the poles, where
    # the harmonics continue smoothly because sin θ (not sqrt(1 − cos²θ)) is used.
    theta = jnp.asarray([0.0, 1e-7, 0.6, math.pi / 2, math.pi - 1e-6, math.pi])
    phi = jnp.asarray([0.9, 2.0, 4.0, 0.1, 5.5, 3.0])
    f = jax.jit(functools.partial(real_sph_harm, 6))
    check_grads(f, (theta, phi), order=1, modes=("fwd", "rev"))


def test_gradients_at_pole_are_finite_and_exact():
    # dY_11/dθ at the north pole is −√(3/4π) cos φ; higher m have zero slope there.
    phi0 = 0.3
    jac = jax.jit(jax.jacrev(functools.partial(real_sph_harm, 40), argnums=(0, 1)))
    d_theta, d_phi = jac(0.0, phi0)
    assert np.all(np.isfinite(d_theta)) and np.all(np.isfinite(d_phi))
    c1 = math.sqrt(3.0 / (4.0 * math.pi))
    np.testing.assert_allclose(d_theta[lm_index(1, 1)], -c1 * math.cos(phi0), rtol=1e-14)
    np.testing.assert_allclose(d_theta[lm_index(1, -1)], -c1 * math.sin(phi0), rtol=1e-14)
    l, m = index_to_lm(np.arange(n_coeffs(40)))
    # Zero slope for |m| >= 2: to round-off in the Fourier form, exactly in the recursion.
    # (slopes elsewhere reach l·sqrt((2l+1)/4π) ≈ 70; measured 1.4e-14)
    assert np.abs(np.asarray(d_theta)[np.abs(m) >= 2]).max() < 1e-12
    exact = jax.jit(
        jax.jacrev(functools.partial(real_sph_harm, 40, method="recursion"), argnums=0)
    )(0.0, phi0)
    assert np.all(exact[np.abs(m) >= 2] == 0.0)
    assert np.abs(np.asarray(d_phi)).max() < 1e-30  # Y at the pole does not depend on φ
    # Near the pole at high degree the gradient stays finite too.
    near = jax.jit(jax.jacfwd(lambda t: real_sph_harm(200, t, phi0)))(1e-9)
    assert np.all(np.isfinite(near))


@given(l=st.integers(0, 20_000), data=st.data())
def test_lm_index_round_trip(l, data):
    m = data.draw(st.integers(-l, l))
    i = lm_index(l, m)
    assert index_to_lm(i) == (l, m)
    assert l * l <= i < (l + 1) * (l + 1)


@given(st.lists(st.integers(0, 10**12), min_size=1, max_size=20))
def test_index_to_lm_arrays_invert(indices):
    i = np.asarray(indices, dtype=np.int64)
    l, m = index_to_lm(i)
    assert np.all(np.abs(m) <= l)
    np.testing.assert_array_equal(lm_index(l, m), i)


def test_bad_inputs_raise():
    with pytest.raises(InputError, match="l_max"):
        real_sph_harm(-1, 0.1, 0.2)
    with pytest.raises(InputError, match="l_max"):
        real_sph_harm(2.0, 0.1, 0.2)
    with pytest.raises(InputError, match="-l <= m <= l"):
        real_sph_harm_lm(2, 3, 0.1, 0.2)
    with pytest.raises(InputError, match="same float dtype"):
        real_sph_harm(2, jnp.zeros(3, jnp.float32), jnp.zeros(3, jnp.float64))
    with pytest.raises(InputError, match=">= 0"):
        index_to_lm(-1)


@pytest.mark.reference
def test_convention_matches_hipft_soccer_ball(hipft_data):
    """HipFT's soccer-ball field is Y_60 + √(14/11) Y_65 in its tesseral convention: a least
    squares fit of its analytic map onto our degree-6 harmonics must give exactly that ratio
    (with our sign, i.e. the Condon–Shortley phase included) and nothing else."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(hipft_data / "diffuse_soccer" / "reference_hipft_brmap_final_analytic.h5") as f:
        data = np.asarray(f["Data"][0], dtype=np.float64)
        phi = np.asarray(f["dim1"][...], dtype=np.float64)
        theta = np.asarray(f["dim2"][...], dtype=np.float64)
    y = np.asarray(sph(6, theta[:, None], phi[None, :]))[..., 36:49].reshape(-1, 13)
    coef, *_ = np.linalg.lstsq(y, data.reshape(-1), rcond=None)
    assert np.abs(y @ coef - data.reshape(-1)).max() < 1e-10 * np.abs(data).max()
    c60, c65 = coef[lm_index(6, 0) - 36], coef[lm_index(6, 5) - 36]
    np.testing.assert_allclose(c65 / c60, math.sqrt(14.0 / 11.0), rtol=1e-12)
    others = np.delete(coef, [lm_index(6, 0) - 36, lm_index(6, 5) - 36])
    assert np.abs(others).max() < 1e-12 * abs(c60)


@pytest.mark.parametrize("precision", ["default", "high"])
def test_many_points_are_evaluated_in_blocks_with_the_same_values_and_gradient(
    precision, monkeypatch
) -> None:
    """Above _BLOCK_ELEMENTS output elements the Fourier form runs in blocks of _BLOCK points
    (padded; 2^23 and 512, made small here): values and gradient equal the unblocked
    evaluation of the same points to round-off."""
    from jaxgeo.sphere import _harmonics as h

    monkeypatch.setattr(h, "_BLOCK_ELEMENTS", 64 * 169)
    monkeypatch.setattr(h, "_BLOCK", 32)
    rng = np.random.default_rng(3)
    n = 2 * 64 + 37  # above the threshold, not a multiple of the block
    theta = jnp.asarray(np.arccos(rng.uniform(-1, 1, n)), jnp.float32)
    phi = jnp.asarray(rng.uniform(-np.pi, np.pi, n), jnp.float32)
    w = jnp.arange(169, dtype=jnp.float32)

    def total(t, p):
        return jnp.sum(real_sph_harm(12, t, p, precision=precision) ** 2 * w)

    y = real_sph_harm(12, theta, phi, precision=precision)
    g = jax.grad(total)(theta, phi)
    monkeypatch.setattr(h, "_BLOCK_ELEMENTS", 10**12)  # the same points in one piece
    # (matrix products of another shape may round differently in the last bit, and with
    # precision="high" such a float64 difference can still flip a float32 rounding)
    np.testing.assert_allclose(
        np.asarray(y), np.asarray(real_sph_harm(12, theta, phi, precision=precision)),
        rtol=0, atol=1e-6,
    )  # fmt: skip
    g1 = np.asarray(jax.grad(total)(theta, phi))
    tol = (1e-4 if precision == "default" else 1e-6) * np.abs(g1).max()
    np.testing.assert_allclose(np.asarray(g), g1, rtol=0, atol=tol)


def test_float32_result_from_float64_angles_matches_precision_high() -> None:
    """dtype=float32 from float64 angles forms only the last product in float32: ~2 float32
    roundings from the float64 values, and the same numbers as precision="high" on the same
    (float32) angles."""
    theta, phi = _points(400, seed=6)
    theta32, phi32 = theta.astype(jnp.float32), phi.astype(jnp.float32)
    t64, p64 = theta32.astype(jnp.float64), phi32.astype(jnp.float64)
    for l_max in (10, 40, 120):
        y = real_sph_harm(l_max, t64, p64, dtype=jnp.float32)
        assert y.dtype == jnp.float32
        exact = np.asarray(real_sph_harm(l_max, t64, p64))
        assert np.abs(np.asarray(y, np.float64) - exact).max() < 6e-7
        high = real_sph_harm(l_max, theta32, phi32, precision="high")
        np.testing.assert_array_equal(np.asarray(y), np.asarray(high))
    wide = real_sph_harm(5, theta32, phi32, dtype="float64")
    assert wide.dtype == jnp.float64  # computed in float64, not widened float32
    np.testing.assert_allclose(np.asarray(wide), np.asarray(real_sph_harm(5, t64, p64)), atol=1e-14)
    with pytest.raises(ConfigError, match="dtype must be a floating dtype"):
        real_sph_harm(5, theta, phi, dtype=jnp.int32)
