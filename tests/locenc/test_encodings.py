"""Positional encodings: shapes, ranges, identities, and the SH encoding against jaxgeo.sphere."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxgeo.errors import ConfigError
from jaxgeo.locenc import ENCODINGS, Encoding
from jaxgeo.sphere import index_to_lm, real_sph_harm

WIDTH = {"wrap": 4, "direct": 2, "cartesian3d": 3}
PER_SCALE = {"grid": 4, "theory": 6, "spherec": 3, "spherec+": 6, "spherem": 5, "spherem+": 8}


@functools.partial(jax.jit, static_argnums=0)
def _encode(enc: Encoding, lon, lat):
    # One compiled call per (encoding, shape, dtype): eager SH retraces its scan every call.
    return enc(lon, lat)


def _points(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lon = rng.uniform(-180.0, 180.0, n)
    lat = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    lat[:2] = [90.0, -90.0]
    return lon, lat


@pytest.mark.parametrize("name", ENCODINGS)
def test_shapes_dtypes_and_ranges(name):
    enc = Encoding(name, degree=6, n_frequencies=5)
    expected = 49 if name == "sh" else WIDTH.get(name, 5 * PER_SCALE.get(name, 0))
    assert enc.n_features == expected
    lon, lat = _points(64)
    for dtype in (jnp.float32, jnp.float64):
        f = _encode(
            enc, jnp.asarray(lon.reshape(8, 8), dtype), jnp.asarray(lat.reshape(8, 8), dtype)
        )
        assert f.shape == (8, 8, expected) and f.dtype == dtype
        assert bool(jnp.all(jnp.isfinite(f)))
    f = np.asarray(f).reshape(64, -1)
    if name == "sh":
        # |Y_lm| <= sqrt((2l+1)/4π) (addition theorem).
        l_of, _ = index_to_lm(np.arange(expected))
        assert np.all(np.abs(f) <= np.sqrt((2 * l_of + 1) / (4 * math.pi)) * (1 + 1e-12))
    else:
        assert np.all(np.abs(f) <= 1.0 + 1e-12)


@pytest.mark.parametrize("name", [n for n in ENCODINGS if n not in ("direct", "theory")])
def test_periodic_in_longitude_for_sphere_encodings(name):
    # At ω = 1 these are functions on the sphere: a 360° shift in longitude changes nothing.
    # (theory mixes λ and φ along 120° directions, so it is not periodic in λ; direct is not.)
    enc = Encoding(name, degree=5, n_frequencies=1, min_radius=1.0, max_radius=1.0)
    lon, lat = _points(32, seed=1)
    np.testing.assert_allclose(_encode(enc, lon + 360.0, lat), _encode(enc, lon, lat), atol=1e-12)


def test_sh_equals_jaxgeo_sphere_real_sph_harm():
    lon, lat = _points(50, seed=2)
    theta, phi = np.radians(90.0 - lat), np.radians(lon)
    got = _encode(Encoding("sh", degree=12), lon, lat)
    # Both compiled: eager and compiled evaluations may differ in the last bit (fused
    # multiply-adds), 3e-16 here.
    want = jax.jit(real_sph_harm, static_argnums=0)(12, theta, phi)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_sh_orthonormal_by_gauss_legendre_quadrature():
    degree = 10
    n = degree + 1  # exact for products of degree <= 2 degree in cos θ
    x, w = np.polynomial.legendre.leggauss(n)
    n_lon = 2 * degree + 2
    lon = np.arange(n_lon) * 360.0 / n_lon
    lat = np.degrees(np.arcsin(x))
    lon2, lat2 = np.meshgrid(lon, lat)
    y = np.asarray(_encode(Encoding("sh", degree=degree), lon2, lat2)).reshape(
        -1, (degree + 1) ** 2
    )
    weights = np.repeat(w, n_lon) * (2.0 * math.pi / n_lon)
    gram = y.T @ (weights[:, None] * y)
    np.testing.assert_allclose(gram, np.eye(gram.shape[0]), atol=1e-12)


def _near_pole_points(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    # Random points with a third of them within 1e-3..1 degree of either pole, and the poles.
    lon, lat = _points(n, seed)
    rng = np.random.default_rng(seed + 100)
    k = n // 3
    lat[2 : 2 + k] = np.sign(rng.uniform(-1, 1, k)) * (90.0 - 10.0 ** rng.uniform(-3, 0, k))
    return lon.astype(np.float32), lat.astype(np.float32)


def test_sh_float32_meets_1e_6_at_degree_100_by_default():
    # The target: float32 features within 1e-6 of float64 at degree 100. The float64
    # values are taken at the same float32-rounded lon/lat, so only evaluation error counts.
    lon32, lat32 = _near_pole_points(96, seed=3)
    enc = Encoding("sh", degree=100)
    assert enc.precision == "high"
    y32 = np.asarray(_encode(enc, jnp.asarray(lon32), jnp.asarray(lat32)))
    y64 = np.asarray(_encode(enc, lon32.astype(np.float64), lat32.astype(np.float64)))
    assert y32.dtype == np.float32
    err = np.max(np.abs(y32 - y64))
    # The float32 rounding of values up to sqrt(201/4π) = 4 alone is 2.4e-7.
    assert err < 1e-6, err


def test_sh_degree_200_is_finite_and_bounded_in_float32():
    lon32, lat32 = _near_pole_points(12, seed=5)
    y = np.asarray(_encode(Encoding("sh", degree=200), jnp.asarray(lon32), jnp.asarray(lat32)))
    assert y.shape == (12, 201**2) and np.all(np.isfinite(y))
    l_of, _ = index_to_lm(np.arange(201**2))
    assert np.all(np.abs(y) <= np.sqrt((2 * l_of + 1) / (4 * math.pi)) * (1 + 1e-6))
    # Addition theorem: Σ_m Y_lm² = (2l+1)/4π at every point, for every l.
    sums = np.zeros((12, 201))
    np.add.at(sums.T, l_of, (y.astype(np.float64) ** 2).T)
    np.testing.assert_allclose(
        sums, np.broadcast_to((2 * np.arange(201) + 1) / (4 * math.pi), sums.shape), rtol=1e-5
    )


def test_sh_high_precision_needs_x64():
    with jax.enable_x64(False):
        with pytest.raises(ConfigError, match="jax_enable_x64"):
            Encoding("sh", degree=2)(np.float32([1.0]), np.float32([2.0]))
    with pytest.raises(ConfigError, match="precision must be one of"):
        Encoding("sh", precision="ultra")  # type: ignore[arg-type]


def test_cartesian_and_coarsest_spherec_are_the_unit_vector():
    lon, lat = _points(40, seed=4)
    xyz = np.asarray(Encoding("cartesian3d")(lon, lat))
    np.testing.assert_allclose(np.linalg.norm(xyz, axis=-1), 1.0, atol=1e-14)
    # sphereC at ω = 1: (sin φ, cos φ cos λ, cos φ sin λ) = (z, x, y).
    sc = np.asarray(Encoding("spherec", n_frequencies=1, min_radius=1.0, max_radius=1.0)(lon, lat))
    np.testing.assert_allclose(sc, xyz[:, [2, 0, 1]], atol=1e-14)


def test_multiscale_frequencies_are_geometric():
    enc = Encoding("grid", n_frequencies=4, min_radius=0.001, max_radius=1.0)
    np.testing.assert_allclose(enc.frequencies(), [1000.0, 100.0, 10.0, 1.0], rtol=1e-12)


def test_encodings_are_differentiable():
    # SH gradients are checked in tests/sphere; here the sinusoid families, in one compile.
    encs = [Encoding(n, n_frequencies=3, min_radius=0.1) for n in ENCODINGS if n != "sh"]

    def total(lo, la):
        return sum(jnp.sum(e(lo, la) ** 2) for e in encs)

    g = jax.jit(jax.grad(total, argnums=(0, 1)))(10.0, 20.0)
    assert all(np.isfinite(float(x)) for x in g)


def test_bad_settings_are_refused():
    with pytest.raises(ConfigError, match="encoding must be one of"):
        Encoding("bogus")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="max_radius"):
        Encoding("grid", min_radius=1.0, max_radius=0.1)


@settings(max_examples=25, deadline=None)
@given(
    name=st.sampled_from([n for n in ENCODINGS if n != "sh"]),
    lon=st.floats(-720.0, 720.0),
    lat=st.floats(-90.0, 90.0),
)
def test_any_location_gives_finite_bounded_features(name, lon, lat):
    # (SH is bounded by sqrt((2l+1)/4π), checked above on random points and the poles.)
    f = np.asarray(Encoding(name, degree=3, n_frequencies=2, min_radius=0.1)(lon, lat))
    assert np.all(np.isfinite(f)) and np.all(np.abs(f) <= 1.0 + 1e-12)
