"""Tests of jaxgeo.sft.assimilation: weights, the assimilation update, map lists and map files."""

from __future__ import annotations

import math
from pathlib import Path

import h5py
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from jax.test_util import check_grads

from jaxgeo.errors import ConfigError, FileFormatError, InputError
from jaxgeo.sft.assimilation import (
    MapList,
    apply_lat_limit,
    assimilate,
    assimilation_weights,
    make_assimilate,
    observation_weights,
    read_observed_map,
)
from jaxgeo.sft.grid import SftGrid
from jaxgeo.sft.sources import signed_flux, unsigned_flux

GRID = SftGrid.uniform(19, 24)


def _fields(seed: int, shape=GRID.shape):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    br = 10.0 * jax.random.normal(k1, shape)
    obs = 10.0 * jax.random.normal(k2, shape) + 3.0
    w = jax.random.uniform(k3, shape)
    return br, obs, w


def _mu_map(grid: SftGrid, lon0_deg: float = 180.0, b0_deg: float = 5.0) -> np.ndarray:
    """μ = cos(angle from a disk centre at (lon0, b0)); negative on the far side."""
    lat = np.radians(grid.lat_deg)[:, None]
    lon = grid.phi[None, :]
    b0, l0 = math.radians(b0_deg), math.radians(lon0_deg)
    return np.sin(lat) * math.sin(b0) + np.cos(lat) * math.cos(b0) * np.cos(lon - l0)


# ---------------------------------------------------------------------------------- update
def test_blend_with_unit_weight_reproduces_obs_and_zero_weight_is_identity():
    br, obs, _ = _fields(0)
    np.testing.assert_allclose(assimilate(br, obs, jnp.ones(GRID.shape)), obs, rtol=0, atol=1e-13)
    np.testing.assert_array_equal(assimilate(br, obs, jnp.zeros(GRID.shape)), br)
    step = make_assimilate(GRID, mode="blend", balance_flux=True)
    np.testing.assert_array_equal(step(br, obs, jnp.zeros(GRID.shape)), br)


def test_add_mode():
    br, obs, w = _fields(1)
    np.testing.assert_allclose(assimilate(br, obs, w, mode="add"), br + w * obs, rtol=1e-15)


@pytest.mark.parametrize("mode", ["blend", "add"])
def test_balanced_increments_have_zero_net_flux(mode):
    br, obs, w = _fields(2, shape=(3, *GRID.shape))
    out = make_assimilate(GRID, mode=mode, balance_flux=True)(br, obs, w)
    inc = out - br
    rel = jnp.abs(signed_flux(inc, GRID)) / unsigned_flux(inc, GRID)
    assert float(jnp.max(rel)) < 1e-12
    # Unbalanced, the same increment carries net flux (the check above is not vacuous).
    raw = assimilate(br, obs, w, mode=mode) - br
    assert float(jnp.min(jnp.abs(signed_flux(raw, GRID)) / unsigned_flux(raw, GRID))) > 1e-3


def test_assimilate_errors():
    br, obs, w = _fields(3)
    with pytest.raises(ConfigError, match="mode"):
        assimilate(br, obs, w, mode="replace")
    with pytest.raises(ConfigError, match="grid"):
        assimilate(br, obs, w, balance_flux=True)
    with pytest.raises(ConfigError, match="mode"):
        make_assimilate(GRID, mode="nudge")


# ---------------------------------------------------------------------------------- weights
def test_mu_weights_against_hand_values():
    grid = SftGrid.uniform(5, 6)
    mu = np.zeros(grid.shape)
    mu[2, :] = [0.05, 0.1, 0.5, 1.0, -0.3, 0.2]
    w = assimilation_weights(grid, mu, mu_power=4.0, mu_limit=0.1)
    np.testing.assert_allclose(w[2], [0.0, 0.0, 0.0625, 1.0, 0.0, 0.0016], rtol=1e-15)
    w2 = assimilation_weights(grid, mu, mu_power=0.5, mu_limit=0.04)
    np.testing.assert_allclose(
        w2[2],
        [math.sqrt(0.05), math.sqrt(0.1), math.sqrt(0.5), 1.0, 0.0, math.sqrt(0.2)],
        rtol=1e-15,
    )


def test_lat_limit_rows_by_hand():
    # θ = 0, 30, …, 180 degrees.
    grid = SftGrid.uniform(7, 6)
    ones = jnp.ones(grid.shape)
    rows = lambda lim: [int(v) for v in np.asarray(apply_lat_limit(grid, ones, lim)[:, 0])]
    assert rows(0.0) == [1, 1, 1, 1, 1, 1, 1]
    # j0 = first row with θ ≥ 30° (row 1), j1 = last row with θ ≤ 150° (row 5): both cut too.
    assert rows(30.0) == [0, 0, 1, 1, 1, 0, 0]
    assert rows(45.0) == [0, 0, 0, 1, 0, 0, 0]
    assert rows(10.0) == [0, 0, 1, 1, 1, 0, 0]


def _hipft_lat_limit_rows(theta: np.ndarray, lim_deg: float) -> np.ndarray:
    """HipFT's load_data_assimilation / apply_data_assimilation loops, transcribed."""
    n = theta.size
    keep = np.ones(n)
    if lim_deg > 0:
        j0 = next((j for j in range(n) if theta[j] >= lim_deg * math.pi / 180.0), -1)
        j1 = next(
            (j for j in range(n - 1, -1, -1) if theta[j] <= math.pi - lim_deg * math.pi / 180.0), -1
        )
        if j0 >= 0:
            keep[: j0 + 1] = 0.0
        if j1 >= 0:
            keep[j1:] = 0.0
    return keep


@settings(max_examples=40, deadline=None)
@given(lim=st.one_of(st.just(0.0), st.floats(min_value=1e-6, max_value=89.9)))
def test_lat_limit_matches_hipft_loops_on_nonuniform_grid(lim):
    u = np.linspace(0.0, 1.0, 23)
    theta = math.pi * (u + 0.07 * np.sin(2.0 * math.pi * u))
    grid = SftGrid(theta=theta, phi=np.arange(5) * 2.0 * math.pi / 5)
    got = np.asarray(apply_lat_limit(grid, jnp.ones(grid.shape), lim)[:, 0])
    np.testing.assert_array_equal(got, _hipft_lat_limit_rows(theta, lim))


def test_weights_vmap_over_parameters():
    mu = jnp.asarray(_mu_map(GRID))
    powers = jnp.array([1.0, 2.0, 4.0])
    limits = jnp.array([0.0, 0.1, 0.3])
    batched = jax.vmap(lambda p, m: assimilation_weights(GRID, mu, mu_power=p, mu_limit=m))(
        powers, limits
    )
    for i in range(3):
        one = assimilation_weights(GRID, mu, mu_power=float(powers[i]), mu_limit=float(limits[i]))
        np.testing.assert_allclose(batched[i], one, rtol=1e-15)
    g = jax.grad(lambda m: jnp.sum(assimilation_weights(GRID, mu, mu_limit=m)))(0.2)
    assert bool(jnp.isfinite(g))


def test_gradient_wrt_mu_power_check_grads():
    grid = SftGrid.uniform(9, 12)
    mu = jnp.asarray(_mu_map(grid))
    br, obs, _ = _fields(4, shape=grid.shape)
    probe = jax.random.normal(jax.random.key(8), grid.shape)

    @jax.jit
    def loss(p):
        w = assimilation_weights(grid, mu, mu_power=p, mu_limit=0.1, lat_limit_deg=10.0)
        out = assimilate(br, obs, w, grid=grid, mode="blend", balance_flux=True)
        return jnp.sum(probe * out)

    check_grads(loss, (3.0,), order=1, modes=("fwd", "rev"))
    # The μ^p derivative is μ^p log μ where assimilated: compare with the unbalanced closed form.
    w = assimilation_weights(grid, mu, mu_power=3.0, mu_limit=0.1)
    dw = jnp.where(w > 0, w * jnp.log(jnp.where(w > 0, mu, 1.0)), 0.0)
    grad = jax.jit(
        jax.grad(
            lambda p: jnp.sum(
                probe * assimilate(br, obs, assimilation_weights(grid, mu, mu_power=p))
            )
        )
    )(3.0)
    np.testing.assert_allclose(grad, jnp.sum(probe * dw * (obs - br)), rtol=1e-12)


# ---------------------------------------------------------------------------------- map lists
_NAMES = st.from_regex(r"[a-z][a-z0-9_]{0,11}\.h5", fullmatch=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(
        st.floats(min_value=1e-3, max_value=1e4, allow_nan=False), min_size=1, max_size=12
    ),
    start=st.floats(min_value=-1e3, max_value=1e3, allow_nan=False),
    names=st.lists(_NAMES, min_size=13, max_size=13),
)
def test_csv_list_round_trip(steps, start, names):
    times = [float(t) for t in np.cumsum([start, *steps])]
    times = [t for i, t in enumerate(times) if i == 0 or t > times[i - 1]]
    paths = names[: len(times)]
    text = "time_hours,path\n" + "".join(f"{t!r},{p}\n" for t, p in zip(times, paths, strict=False))
    ml = MapList.parse(text, name="maps.csv", root_dir="/data", check_files=False)
    assert ml.kind == "csv"
    assert ml.times_hours == tuple(times)
    assert ml.paths == tuple(Path("/data") / p for p in paths)


@settings(max_examples=40, deadline=None)
@given(
    gaps_days=st.lists(st.integers(min_value=1, max_value=5000), min_size=1, max_size=10),
    fixed=st.booleans(),
)
def test_hipft_list_times(gaps_days, fixed):
    """HipFT's list: times are 24·(obs_jd − first obs_jd) hours; both CSV and fixed columns."""
    jd0 = 2455562.49991
    jds = jd0 + np.cumsum([0, *gaps_days]) * 1e-2
    lines = ["target_datetime_utc,obs_datetime_utc,obs_jd,map_path"]
    for i, jd in enumerate(jds):
        target, obs = "2011-01-01T00:00:00", "2010-12-31T23:59:52"
        sep = " " if fixed else ","
        lines.append(f"{target}{sep}{obs}{sep}{jd:13.5f}{sep}y/m{i}.h5")
    ml = MapList.parse("\n".join(lines) + "\n", name="list.csv", root_dir="r", check_files=False)
    assert ml.kind == "hipft"
    expected = 24.0 * (np.round(jds, 5) - round(jds[0], 5))
    np.testing.assert_allclose(ml.times_hours, expected, rtol=0, atol=1e-6)
    assert ml.paths[-1] == Path("r") / f"y/m{len(jds) - 1}.h5"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("time_hours,path\n0,a.h5\n2,b.h5\n1,c.h5\n", r"maps\.csv:4: .*is before"),
        ("time_hours,path\n0,a.h5\n2,b.h5\n2,c.h5\n", r"maps\.csv:4: .*repeats"),
        ("time_hours,path\n0,a.h5,extra\n", r"maps\.csv:2: expected 2 columns"),
        ("time_hours,path\nnoon,a.h5\n", r"maps\.csv:2: time_hours must be a number"),
        ("time_hours,path\n0,\n", r"maps\.csv:2: empty map path"),
        ("time,file\n0,a.h5\n", r"maps\.csv:1: header must be"),
        ("time_hours,path\n", r"maps\.csv: the map list has a header but no maps"),
        ("", r"maps\.csv: empty map list"),
        ("a,b,c,d\nx,y,not-a-jd,m.h5\n", r"maps\.csv:2: obs_jd"),
        ("a,b,c,d\nx,y,2455562.5\n", r"maps\.csv:2: expected 4 columns"),
    ],
)
def test_bad_lists_name_file_and_line(text, match):
    with pytest.raises(FileFormatError, match=match):
        MapList.parse(text, name="maps.csv", check_files=False)


def test_missing_files(tmp_path):
    with pytest.raises(FileFormatError, match="does not exist"):
        MapList.read(tmp_path / "nope.csv")
    lst = tmp_path / "maps.csv"
    (tmp_path / "a.h5").write_bytes(b"")
    lst.write_text("time_hours,path\n0,a.h5\n\n# comment\n5,b.h5\n")
    with pytest.raises(FileFormatError, match=r"maps\.csv:5: map file .*b\.h5.* does not exist"):
        MapList.read(lst)
    ml = MapList.read(lst, check_files=False)
    assert ml.paths == (tmp_path / "a.h5", tmp_path / "b.h5")


def test_maplist_validation_and_schedule():
    with pytest.raises(InputError, match="strictly increasing"):
        MapList(times_hours=(0.0, 0.0), paths=("a", "b"))
    with pytest.raises(InputError, match="2 times but 1 paths"):
        MapList(times_hours=(0.0, 1.0), paths=("a",))
    ml = MapList(times_hours=(0.0, 1.0, 2.5, 4.0), paths=("a", "b", "c", "d"))
    # HipFT: start with the map nearest to the start time, assimilated at the start.
    assert ml.schedule(1.2, 3.0) == ((1.2, Path("b")), (2.5, Path("c")))
    assert ml.schedule(0.0)[0] == (0.0, Path("a"))


# ---------------------------------------------------------------------------------- map files
def _write_map(path: Path, grid: SftGrid, slices: np.ndarray) -> None:
    """Write (slices, n_theta, n_phi) unique-column data as a HipFT 3-D map with the end point."""
    full = np.concatenate([slices, slices[..., :1]], axis=-1)
    with h5py.File(path, "w") as h5:
        h5["Data"] = full
        h5["dim1"] = grid.hipft_phi()
        h5["dim2"] = grid.theta
        h5["dim3"] = np.arange(1.0, slices.shape[0] + 1.0)


def test_read_observed_map(tmp_path):
    rng = np.random.default_rng(0)
    slices = rng.normal(size=(3, *GRID.shape))
    path = tmp_path / "m.h5"
    _write_map(path, GRID, slices)
    obs = read_observed_map(path, GRID)
    np.testing.assert_array_equal(obs.br, slices[0])
    np.testing.assert_array_equal(obs.weight, slices[1])
    np.testing.assert_array_equal(obs.mu, slices[2])
    # HipFT takes φ₀ of the increment from the file's periodic end-point column.
    full = np.concatenate([slices, slices[..., :1] + 1.0], axis=-1)
    with h5py.File(path, "w") as h5:
        h5["Data"] = full
        h5["dim1"] = GRID.hipft_phi()
        h5["dim2"] = GRID.theta
        h5["dim3"] = np.arange(1.0, 4.0)
    np.testing.assert_array_equal(read_observed_map(path, GRID).br[:, 0], slices[0, :, 0] + 1.0)
    with pytest.raises(FileFormatError, match="theta scale"):
        read_observed_map(path, SftGrid.uniform(21, 24))
    with pytest.raises(FileFormatError, match="phi scale"):
        read_observed_map(path, SftGrid.uniform(19, 20))
    flat = tmp_path / "flat.h5"
    with h5py.File(flat, "w") as h5:
        h5["Data"] = np.zeros((19, 25))
        h5["dim1"] = GRID.hipft_phi()
        h5["dim2"] = GRID.theta
    with pytest.raises(FileFormatError, match="must be 3-D"):
        read_observed_map(flat, GRID)
    two = tmp_path / "two.h5"
    _write_map(two, GRID, slices[:2])
    obs2 = read_observed_map(two, GRID)
    assert obs2.mu is None
    with pytest.raises(InputError, match="mu"):
        observation_weights(GRID, obs2, custom_from_mu=True)


def test_list_to_assimilation_end_to_end(tmp_path):
    """A CSV list of two maps read, weighted from μ and assimilated with a balanced increment."""
    mu = _mu_map(GRID)
    for i in range(2):
        br = np.cos(2.0 * GRID.theta)[:, None] * np.ones(GRID.shape) * (i + 1.0)
        _write_map(tmp_path / f"m{i}.h5", GRID, np.stack([br, np.full(GRID.shape, 0.5), mu]))
    (tmp_path / "maps.csv").write_text("time_hours,path\n0.0,m0.h5\n24.0,m1.h5\n")
    ml = MapList.read(tmp_path / "maps.csv")
    maps = ml.read_maps(GRID)
    assert maps.br.shape == (2, *GRID.shape)
    w_file = observation_weights(GRID, maps, lat_limit_deg=0.0)
    np.testing.assert_array_equal(w_file, np.full((2, *GRID.shape), 0.5))
    w = observation_weights(
        GRID, maps, custom_from_mu=True, mu_power=2.0, mu_limit=0.1, lat_limit_deg=20.0
    )
    assert float(jnp.max(w)) <= 1.0 and float(jnp.min(w)) == 0.0
    field = jnp.zeros(GRID.shape)
    out = jax.jit(make_assimilate(GRID, balance_flux=True))(field, maps.br[1], w[1])
    assert float(jnp.abs(signed_flux(out, GRID))) < 1e-12 * float(unsigned_flux(out, GRID))


@pytest.mark.reference
def test_real_map_assimilation(hipft_data, tmp_path):
    """The CR2252 HMI map as an observation on its own 180×360 grid: read, weight, assimilate."""
    src = (
        hipft_data
        / "diffuse_advect_atten_map_1cr"
        / ("br_hmi_synoptic_mr_polfil_720s_cr2252_pslt_flxbal_remeshed_small.h5")
    )
    with h5py.File(src, "r") as h5:
        data = np.asarray(h5["Data"][...], dtype=np.float64)
        phi = np.asarray(h5["dim1"][...], dtype=np.float64)
        theta = np.asarray(h5["dim2"][...], dtype=np.float64)
    grid = SftGrid.from_hipft_scales(phi, theta)
    mu = _mu_map(grid, lon0_deg=90.0, b0_deg=-3.0)
    mu_full = np.concatenate([mu, mu[:, :1]], axis=-1)
    path = tmp_path / "obs.h5"
    with h5py.File(path, "w") as h5:
        h5["Data"] = np.stack([data, np.ones_like(data), mu_full])
        h5["dim1"] = phi
        h5["dim2"] = theta
        h5["dim3"] = np.arange(1.0, 4.0)
    obs = read_observed_map(path, grid)
    np.testing.assert_array_equal(obs.br[:, 1:], data[:, 1:-1])
    w = observation_weights(grid, obs, custom_from_mu=True, mu_power=4.0, mu_limit=0.1)
    model = 0.5 * obs.br
    out = assimilate(model, obs.br, w, grid=grid, balance_flux=True)
    inc = out - model
    assert float(jnp.abs(signed_flux(inc, grid))) < 1e-12 * float(unsigned_flux(inc, grid))
    # The far side (w = 0) is untouched, even with balancing (which scales increments only).
    far = np.asarray(w) == 0.0
    assert far.sum() > grid.n_theta * grid.n_phi // 3
    np.testing.assert_array_equal(np.asarray(out)[far], np.asarray(model)[far])
    # Near disk centre (μ ≈ 1) the unbalanced update takes the map almost fully.
    plain = assimilate(model, obs.br, w)
    centre = np.unravel_index(np.argmax(mu), mu.shape)
    assert float(w[centre]) > 0.99
    assert abs(float(plain[centre] - obs.br[centre])) <= 0.01 * abs(
        float(obs.br[centre] - model[centre])
    )
