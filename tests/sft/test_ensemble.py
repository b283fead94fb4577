"""Ensembles on devices: statistics vs NumPy, longitude decomposition == one device,
realization padding, statistics and spread plots in a run store."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxgeo.io import open_store
from jaxgeo.sft import ensemble, flows
from jaxgeo.sft.config import SftConfig
from jaxgeo.sft.grid import impose_pole_average
from jaxgeo.sft.run import run
from jaxgeo.sft.simulation import build

BASE = {
    "grid": {"n_theta": 19, "n_phi": 65},
    "initial": {"kind": "harmonic", "l": 3, "m": 2, "amplitude_gauss": 20.0},
    "time": {"end_hours": 4.0, "dt_max_hours": 2.0},
    "output": {"map_cadence_hours": 2.0, "history_cadence_hours": 1.0, "dtype": "float64"},
    "flow": {
        "differential_rotation": {"model": "aft"},
        "meridional": {"model": "aft"},
        "attenuate_gauss": 10.0,
    },
    "diffusion": {"nu_km2_s": 400.0},
}


def _cfg(**over) -> SftConfig:
    d = {k: (dict(v) if isinstance(v, dict) else v) for k, v in BASE.items()}
    d.update(over)
    return SftConfig.from_dict(d)


# ------------------------------------------------------------------------------ statistics
def test_statistics_match_numpy():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 5, 7)) * rng.uniform(0.1, 10.0, size=(1, 5, 7))
    want_q = np.quantile(x, ensemble.QUANTILES, axis=0)
    got = ensemble.ensemble_statistics(x)
    np.testing.assert_allclose(got["mean"], x.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(got["std"], x.std(axis=0, ddof=1), rtol=1e-13)
    np.testing.assert_allclose(got["quantile"], want_q, rtol=1e-13)
    # Realization axis spread over the 8 devices: same numbers under jit.
    mesh = jax.make_mesh((8,), ("r",), axis_types=(jax.sharding.AxisType.Auto,))
    xs = jax.device_put(
        jnp.asarray(x), jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("r"))
    )
    sharded = ensemble.map_statistics(xs)
    np.testing.assert_allclose(sharded["quantile"], want_q, rtol=1e-13)
    np.testing.assert_allclose(sharded["std"], x.std(axis=0, ddof=1), rtol=1e-13)
    hist = ensemble.history_statistics({"a": x[:, 0, 0], "b": x[:, 1, 2]})
    np.testing.assert_allclose(hist["b"]["quantile"], want_q[:, 1, 2], rtol=1e-13)
    np.testing.assert_allclose(hist["a"]["mean"], x[:, 0, 0].mean(), rtol=1e-13)


# ------------------------------------------------------------------------------ longitude split
@pytest.fixture(scope="module")
def rough_sim():
    """Two members on a 19 x 64 grid from a rough (noise) field: every stencil column matters."""
    sim = build(_cfg(ensemble={"diffusion.nu_km2_s": [200.0, 600.0]}))
    rng = np.random.default_rng(0)
    noise = impose_pole_average(jnp.asarray(rng.normal(0.0, 20.0, sim.br0.shape)), sim.grid)
    return dataclasses.replace(sim, br0=noise)


def _advance_all(sim, advance, br, params, keys):
    for seg in sim.segments:
        br = ensemble.advance_segment(advance, br, params, keys, seg)
    return np.asarray(br)


def test_lon_decomposition_equals_single_device(rough_sim):
    sim = rough_sim
    ref = _advance_all(sim, sim.advance, sim.br0, sim.params, sim.keys)
    placement = ensemble.place(sim, shard="lon")
    assert placement.n_devices == 8 and sim.grid.n_phi == 64  # 8 columns a block
    br, params, keys = placement.put_state(sim.br0, sim.params, sim.keys)
    out = _advance_all(sim, placement.advance, br, params, keys)
    assert br.sharding.spec == jax.sharding.PartitionSpec(None, None, ensemble.LON_AXIS)
    scale = np.abs(ref).max()
    np.testing.assert_allclose(np.asarray(out), ref, rtol=0, atol=1e-13 * scale)
    # Conservation survives the split: signed flux to round-off of the unsigned flux.
    area = sim.grid.cell_area
    net0 = (np.asarray(sim.br0) * area).sum(axis=(-2, -1))
    net1 = (np.asarray(out) * area).sum(axis=(-2, -1))
    assert np.all(np.abs(net1 - net0) < 1e-13 * (np.abs(np.asarray(out)) * area).sum())
    # A halo one column narrower than lon_halo_width is NOT exact: the width is needed.
    narrow = ensemble.make_lon_advance(
        sim.physics, placement.mesh, halo=ensemble.lon_halo_width(sim.physics) - 1
    )
    bad = _advance_all(sim, narrow, br, params, keys)
    assert np.abs(bad - ref).max() > 1e-6 * scale


def test_lon_decomposition_with_sources_and_file_flows(rough_sim):
    """Random flux emergence, a static source and flows from files are drawn/read on the
    whole sphere and cut per block: the decomposed run equals the single-device run."""
    base = build(
        _cfg(
            ensemble={"diffusion.nu_km2_s": [200.0, 600.0]},
            sources={"rfe": {"unsigned_flux_1e21_mx_per_hour": 5.0}},
        )
    )
    grid = base.grid
    rng = np.random.default_rng(1)
    static = rng.normal(0.0, 0.5, grid.shape)
    static[0], static[-1] = static[0, 0], static[-1, 0]  # a pole cap holds one value
    # Two flows from "files" (v_φ varying in longitude, so a wrong cut shows), switching at 2 h.
    vt = rng.normal(0.0, 2e-4, (2, grid.n_theta + 1, grid.n_phi))
    vt[:, 0], vt[:, -1] = 0.0, 0.0
    vp = rng.normal(0.0, 2e-4, (2, *grid.shape))
    series = flows.FlowSeriesArrays(
        times=jnp.asarray([0.0, 2.0]),
        vt=jnp.asarray(vt),
        vp=jnp.asarray(vp),
        period=jnp.asarray(4.0),
    )
    physics = dataclasses.replace(base.physics, static_source=static, flow_series=series)
    sim = dataclasses.replace(base, physics=physics, br0=rough_sim.br0[:, :, :64])
    assert sim.grid.n_phi == 64
    ref = _advance_all(sim, sim.advance, sim.br0, sim.params, sim.keys)
    placement = ensemble.place(sim, shard="lon")
    br, params, keys = placement.put_state(sim.br0, sim.params, sim.keys)
    out = _advance_all(sim, placement.advance, br, params, keys)
    scale = np.abs(ref).max()
    np.testing.assert_allclose(np.asarray(out), ref, rtol=0, atol=1e-13 * scale)
    # The sources and file flows matter (the comparison is not vacuous).
    plain = _advance_all(rough_sim, rough_sim.advance, sim.br0, sim.params, sim.keys)
    assert np.abs(plain - ref).max() > 1e-3 * scale


# ------------------------------------------------------------------------------ run stores
def test_run_pads_realizations_and_stores_statistics(tmp_path):
    cfg = _cfg(ensemble={"diffusion.nu_km2_s": [100.0, 300.0, 900.0]})
    summary = run(cfg, tmp_path / "r.zarr", progress=False, devices=2, plots=tmp_path / "p")
    assert summary["devices"] == 2 and summary["padded_realizations"] == 4
    ds = open_store(tmp_path / "r.zarr")
    assert ds.sizes["realization"] == 3  # the padded member never reaches the store
    br = ds["br"].values  # (R, time, lat, lon)
    np.testing.assert_allclose(ds["br_mean"].values, br.mean(axis=0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ds["br_std"].values, br.std(axis=0, ddof=1), atol=1e-12)
    assert ds["br_quantile"].dims == ("quantile", "time", "lat", "lon")
    np.testing.assert_allclose(
        ds["br_quantile"].values, np.quantile(br, [0.05, 0.5, 0.95], axis=0), atol=1e-12
    )
    for name in ("polar_field_north", "ax_dipole", "flux_positive"):
        h = ds[name].values  # (R, history_time)
        np.testing.assert_allclose(ds[f"{name}_mean"].values, h.mean(axis=0), rtol=1e-12)
        # (members start equal: the first std is round-off of the mean, hence atol)
        np.testing.assert_allclose(
            ds[f"{name}_std"].values, h.std(axis=0, ddof=1), atol=1e-13 * np.abs(h).max()
        )
        np.testing.assert_allclose(
            ds[f"{name}_quantile"].values, np.quantile(h, [0.05, 0.5, 0.95], axis=0), rtol=1e-12
        )
    assert ds.sizes["history_time"] == 5 and ds.sizes["time"] == 3
    names = {p.split("/")[-1] for p in summary["plots"]}
    assert {"spread_polar_fields.png", "spread_butterfly.png"} <= names


def test_single_realization_lon_run_has_no_statistics(tmp_path):
    cfg = _cfg(time={"end_hours": 2.0, "dt_max_hours": 2.0})
    summary = run(cfg, tmp_path / "one.zarr", progress=False, shard="lon")
    assert summary["shard"] == "lon" and summary["devices"] == 8
    ds = open_store(tmp_path / "one.zarr")
    assert np.all(np.isfinite(ds["br"].values))
    assert "br_mean" not in ds and "polar_field_north_std" not in ds and "quantile" not in ds.dims


def test_blocked_advance_equals_all_members_together():
    """Realizations stepped in blocks (lax.map, the CPU cache-friendly layout) give the same
    fields as all together (vmap), including a block count that does not divide R."""
    from jaxgeo.sft.simulation import cpu_block_size, make_advance

    sim = build(_cfg(ensemble={"diffusion.nu_km2_s": [100.0, 300.0, 900.0]}))
    args = (sim.br0, sim.params, sim.keys, jnp.asarray(0.0), jnp.asarray(1.5), jnp.asarray(3))
    ref = np.asarray(jax.jit(make_advance(sim.physics))(*args))
    for block in (1, 2):
        out = np.asarray(jax.jit(make_advance(sim.physics, block=block))(*args))
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-13 * np.abs(ref).max())
    assert np.abs(ref[0] - ref[2]).max() > 1e-6 * np.abs(ref).max()  # members differ
    # Small grid: several members per block on CPU; one member or another backend: none.
    assert cpu_block_size(sim.physics, 3) == 3
    assert cpu_block_size(sim.physics, 1) is None
