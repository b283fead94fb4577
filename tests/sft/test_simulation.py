"""The assembled simulation: ensembles, splitting, gradients, sharding, conservation."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

from jaxgeo.sft import sources
from jaxgeo.sft.config import SftConfig
from jaxgeo.sft.simulation import build, make_scan, plan_schedule
from jaxgeo.sft.validate import simulate


def _cfg(**sections):
    base = {
        "grid": {"n_theta": 31, "n_phi": 61},
        "initial": {"kind": "soccer"},
        "time": {"end_hours": 48.0, "dt_max_hours": 2.0},
        "output": {"map_cadence_hours": 24.0, "history_cadence_hours": 6.0},
    }
    base.update(sections)
    return SftConfig.from_dict(base)


def test_schedule_lands_on_every_event():
    segs = plan_schedule(
        0.0, 10.0, 0.75, {"history": [2.0, 4.0, 6.0, 8.0, 10.0], "map": [5.0, 10.0]}
    )
    ends = [s.t1 for s in segs]
    assert ends == [2.0, 4.0, 5.0, 6.0, 8.0, 10.0]
    for s in segs:
        assert s.n_full * s.dt + s.dt_last == pytest.approx(s.t1 - s.t0, abs=1e-12)
        assert s.dt_last < s.dt


def test_soccer_ball_decays_and_rotates_as_the_exact_solution():
    cfg = _cfg(diffusion={"nu_km2_s": 500.0}, flow={"rigid_omega_km_s": 1.0})
    sim = build(cfg)
    br = np.asarray(simulate(sim))
    exact = sim.exact(cfg.time.end_hours)
    err = np.linalg.norm(br - exact) / np.linalg.norm(exact)
    assert err < 2e-2  # 12-degree grid
    strang = np.asarray(
        simulate(
            build(dataclasses.replace(cfg, time=dataclasses.replace(cfg.time, splitting="strang")))
        )
    )
    err_s = np.linalg.norm(strang - exact) / np.linalg.norm(exact)
    assert err_s < 2e-2


def test_ensemble_equals_one_run_per_member():
    cfg = _cfg(
        diffusion={"nu_km2_s": 100.0},
        flow={
            "differential_rotation": {"model": "aft"},
            "meridional": {"model": "aft"},
            "attenuate_gauss": 0.3,
        },
        ensemble={"diffusion.nu_km2_s": [100.0, 400.0], "flow.meridional.p1": [15.0, 30.0]},
    )
    ens = np.asarray(simulate(build(cfg)))
    for r, over in enumerate(cfg.realizations()):
        member = dataclasses.replace(cfg.with_overrides(over), ensemble=None)
        one = np.asarray(simulate(build(member)))[0]
        np.testing.assert_allclose(ens[r], one, rtol=0, atol=1e-13 * np.abs(one).max())


def test_signed_flux_is_conserved_with_all_processes():
    cfg = _cfg(
        initial={"kind": "harmonic", "l": 3, "m": 2, "amplitude_gauss": 10.0},
        diffusion={"nu_km2_s": 300.0},
        flow={
            "differential_rotation": {"model": "aft"},
            "meridional": {"model": "aft"},
            "attenuate_gauss": 5.0,
        },
        sources={"rfe": {"unsigned_flux_1e21_mx_per_hour": 5.0, "lifetime_hours": 4.0}},
    )
    sim = build(cfg)
    br = simulate(sim)
    net0 = float(sources.signed_flux(sim.br0, sim.grid)[0])
    net = float(sources.signed_flux(br, sim.grid)[0])
    unsigned = float(sources.unsigned_flux(br, sim.grid)[0])
    assert abs(net - net0) < 1e-12 * unsigned


def test_sharded_ensemble_equals_unsharded():
    cfg = _cfg(
        time={"end_hours": 12.0, "dt_max_hours": 2.0},
        diffusion={"nu_km2_s": 100.0},
        flow={"differential_rotation": {"model": "aft"}, "meridional": {"model": "aft"}},
        ensemble={"diffusion.nu_km2_s": [50.0 * (k + 1) for k in range(8)]},
    )
    sim = build(cfg)
    plain = np.asarray(simulate(sim))
    mesh = jax.make_mesh((8,), ("r",), axis_types=(jax.sharding.AxisType.Auto,))
    shard = NamedSharding(mesh, P("r"))
    sharded_sim = dataclasses.replace(
        sim,
        br0=jax.device_put(sim.br0, shard),
        params=jax.device_put(sim.params, shard),
        keys=jax.device_put(sim.keys, shard),
    )
    out = simulate(sharded_sim)
    assert len(out.sharding.device_set) == 8
    # Equal to round-off: XLA compiles the per-device batch of one differently from the batch
    # of eight (vectorisation, FMA contraction), so the last bit may differ.
    np.testing.assert_allclose(np.asarray(out), plain, rtol=0, atol=1e-14 * np.abs(plain).max())


@pytest.fixture(scope="module")
def grad_setup():
    cfg = SftConfig.from_dict(
        {
            "grid": {"n_theta": 13, "n_phi": 25},
            "initial": {"kind": "harmonic", "l": 2, "m": 1, "amplitude_gauss": 5.0},
            "time": {"end_hours": 18.0, "dt_max_hours": 6.0},
            "flow": {
                "differential_rotation": {"model": "aft"},
                "meridional": {"model": "aft"},
                "attenuate_gauss": 8.0,
            },
            "diffusion": {"nu_km2_s": 600.0, "subcycles": 1},
        }
    )
    sim = build(cfg)
    params = jax.tree.map(lambda x: x[0], sim.params)
    dts = jnp.full((3,), 6.0)
    return sim, params, dts


def test_gradients_through_the_run_match_finite_differences(grad_setup):
    sim, params, dts = grad_setup
    run = make_scan(sim.physics)
    target = jnp.asarray(sim.br0[0]) * 0.9

    def loss(nu, p1, p0, br0):
        p = params.replace(nu_km2_s=nu, mf_p1=p1, dr_p0=p0)
        out = run(br0, p, sim.keys[0], 0.0, dts)
        return jnp.sum((out - target) ** 2)

    args = (params.nu_km2_s, params.mf_p1, params.dr_p0, sim.br0[0])
    # Reverse mode (what inference uses); forward mode is checked per kernel in
    # test_advection/test_diffusion/test_flows, which keeps this end-to-end check affordable.
    check_grads(loss, args, order=1, modes=("rev",), eps=1e-4, atol=1e-5, rtol=1e-5)


def test_checkpointed_scan_gives_the_same_gradient(grad_setup):
    sim, params, _ = grad_setup
    # 5 steps: with checkpoint_every=2, two chunks of 2 and a remainder of 1.
    dts = jnp.asarray([6.0, 6.0, 6.0, 6.0, 3.0])
    plain = make_scan(sim.physics)

    def loss(run, nu):
        return jnp.sum(run(sim.br0[0], params.replace(nu_km2_s=nu), sim.keys[0], 0.0, dts) ** 2)

    v1, g1 = jax.value_and_grad(lambda nu: loss(plain, nu))(params.nu_km2_s)
    assert np.isfinite(g1) and g1 != 0
    for every in (1, 2):
        remat = make_scan(sim.physics, checkpoint_every=every)
        v2, g2 = jax.value_and_grad(lambda nu, r=remat: loss(r, nu))(params.nu_km2_s)
        np.testing.assert_allclose(v2, v1, rtol=1e-14)
        np.testing.assert_allclose(g2, g1, rtol=1e-12)
