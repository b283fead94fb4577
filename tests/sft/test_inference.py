"""Parameter inference: gradients of the forward model, twin recovery, Fisher scaling, CLI.

Tiny grids (13 x 24) and cheap schemes (upwind-Euler advection, Euler diffusion) keep the
compilations short; everything runs in float64 with strict promotion (tests/conftest.py).
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from jaxgeo.errors import ConfigError, FileFormatError, StoreExistsError
from jaxgeo.io import write_hipft_map
from jaxgeo.sft import inference as inf
from jaxgeo.sft.config import SftConfig
from jaxgeo.sft.grid import SftGrid
from jaxgeo.sft.run import run
from jaxgeo.sft.validation import harmonic

NU, P1 = "diffusion.nu_km2_s", "flow.meridional.p1"
TRUE = {NU: 500.0, P1: 30.0}
KEYS = [NU, P1]

BASE = {
    "initial": {"kind": "map", "path": "init.h5"},
    "time": {"end_hours": 48.0, "dt_max_hours": 4.0},
    "output": {"map_cadence_hours": 12.0, "history_cadence_hours": 4.0, "dtype": "float64"},
    "flow": {"scheme": "upwind-euler", "meridional": {"model": "aft", "p1": TRUE[P1]}},
    "diffusion": {"nu_km2_s": TRUE[NU], "scheme": "euler"},
}


def _config(init: Path, **changes) -> dict:
    d = copy.deepcopy(BASE)
    d["initial"]["path"] = str(init)
    for dotted, value in changes.items():
        *head, last = dotted.split(".")
        node = d
        for part in head:
            node = node.setdefault(part, {})
        node[last] = value
    return d


def _toml(d: dict) -> str:
    from jaxgeo.config import dumps_toml

    return dumps_toml(d)


# The model's config: the same run, started from wrong values of ν and p1.
START = {"diffusion.nu_km2_s": 800.0, "flow.meridional.p1": 15.0}


@pytest.fixture(scope="module")
def init_map(tmp_path_factory) -> Path:
    """A 13 x 24 initial map with non-axisymmetric structure, polar fields and a dipole."""
    grid = SftGrid.uniform(13, 24)
    field = (
        harmonic(grid, 3, 2, 10.0)
        + harmonic(grid, 1, 0, 4.0)
        + harmonic(grid, 4, 0, -3.0)
        + harmonic(grid, 2, -1, 2.0)
    )
    path = tmp_path_factory.mktemp("init") / "init.h5"
    data = np.concatenate([field, field[:, :1]], axis=1)
    write_hipft_map(path, data, grid.hipft_phi(), grid.theta, dtype=np.float64)
    return path


@pytest.fixture(scope="module")
def obs_store(tmp_path_factory, init_map) -> Path:
    out = tmp_path_factory.mktemp("obs") / "obs.zarr"
    run(SftConfig.from_dict(_config(init_map)), out, progress=False)
    return out


@pytest.fixture(scope="module")
def model_cfg(init_map) -> SftConfig:
    return SftConfig.from_dict(_config(init_map, **START))


@pytest.fixture(scope="module")
def problem(obs_store, model_cfg) -> inf.Problem:
    obs = inf.Observations.from_store(obs_store)
    misfit = inf.MisfitSpec(maps=True, history=("ax_dipole",))
    return inf.make_problem(model_cfg, obs, KEYS, misfit, grad_mode="forward")


def test_layout_predicts_the_stored_observations(problem):
    """At the true parameters the prediction reproduces the stored run (same schedule)."""
    pred = problem.predict(TRUE)
    obs = problem.observations
    np.testing.assert_allclose(problem.model.map_times, obs.map_times[1:])
    np.testing.assert_allclose(pred["maps"], obs.maps[1:], rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        pred["history"]["ax_dipole"], obs.history["ax_dipole"][1:], rtol=1e-12, atol=1e-14
    )
    assert problem.loss(TRUE) < 1e-24
    assert problem.loss(START) > 1e-7


@pytest.fixture(scope="module")
def observables(problem):
    """Jitted maps and axial-dipole series as functions of (ν, p1), plain and checkpointed."""

    def make(checkpoint):
        model = dataclasses.replace(problem.model, checkpoint=checkpoint)

        @jax.jit
        def f(nu, p1):
            pred = model.predict({NU: nu, P1: p1})
            return pred["maps"][:, 2:-2:3, ::5], pred["history"]["ax_dipole"]

        return f

    return make(False), make(True)


POINT = (jnp.asarray(650.0), jnp.asarray(22.0))


def test_predict_gradient_passes_check_grads(observables):
    plain, _ = observables
    check_grads(plain, POINT, order=1, modes=("fwd", "rev"), eps=1e-3, atol=1e-7, rtol=1e-6)


def test_checkpointed_and_plain_gradients_agree(observables):
    plain, remat = observables
    out, vjp_plain = jax.vjp(plain, *POINT)
    ct = jax.tree.map(lambda x: jnp.cos(jnp.arange(x.size, dtype=x.dtype)).reshape(x.shape), out)
    g_plain = vjp_plain(ct)
    out_remat, vjp_remat = jax.vjp(remat, *POINT)
    g_remat = vjp_remat(ct)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), out, out_remat)
    np.testing.assert_allclose(np.asarray(g_remat), np.asarray(g_plain), rtol=1e-12)
    assert np.all(np.asarray(g_plain) != 0)


def test_loss_gradient_matches_central_differences(problem):
    # The problem's gradient is the forward-mode one (grad_mode="forward") that the fits use.
    comp = problem.compiled
    u = jnp.asarray(problem.model.to_unconstrained({NU: 650.0, P1: 22.0}))
    value, grad = comp.value_and_grad(u, problem.data)
    h = 1e-4
    fd = []
    for i in range(u.size):
        e = jnp.zeros_like(u).at[i].set(h)
        f_plus = comp.value_and_grad(u + e, problem.data)[0]
        f_minus = comp.value_and_grad(u - e, problem.data)[0]
        fd.append((f_plus - f_minus) / (2 * h))
    np.testing.assert_allclose(np.asarray(grad), np.asarray(fd), rtol=1e-6)
    assert float(value) == pytest.approx(problem.loss({NU: 650.0, P1: 22.0}), rel=1e-12)


def test_reverse_mode_gradient_through_the_hand_adjoint_equals_forward_mode(
    problem, obs_store, model_cfg
):
    """grad_mode="reverse" differentiates through the hand-written advection adjoint; the
    forward-mode gradient (JAX's derivatives) gives the same numbers."""
    obs = inf.Observations.from_store(obs_store)
    misfit = inf.MisfitSpec(maps=True, history=("ax_dipole",))
    rev = inf.make_problem(model_cfg, obs, KEYS, misfit, grad_mode="reverse")
    u = jnp.asarray(problem.model.to_unconstrained({NU: 650.0, P1: 22.0}))
    v_rev, g_rev = rev.compiled.value_and_grad(u, rev.data)
    v_fwd, g_fwd = problem.compiled.value_and_grad(u, problem.data)
    assert float(v_rev) == pytest.approx(float(v_fwd), rel=1e-13)
    np.testing.assert_allclose(np.asarray(g_rev), np.asarray(g_fwd), rtol=1e-10)
    # The reverse program really holds the hand adjoint: the custom_vjp refuses forward mode.
    with pytest.raises(TypeError):
        jax.jvp(lambda x: rev.compiled.loss_u(x, rev.data), (u,), (u,))


def test_tiny_twin_fit_recovers_nu_and_p1(problem):
    result = inf.fit(problem, optimizer="lbfgs", steps=30)
    assert result.converged, result.reason
    assert result.iterations <= 30
    for k in KEYS:
        assert result.estimate[k] == pytest.approx(TRUE[k], rel=0.02)
    # Noise-free and the same discretisation: far better than 2 % in practice.
    assert abs(result.estimate[NU] / TRUE[NU] - 1) < 1e-4
    assert result.loss_history[-1] < 1e-6 * result.loss_history[0]
    assert len(result.loss_history) == len(result.gradient_norm_history)


def test_fisher_uncertainty_scales_with_the_noise_level_and_matches_the_scatter(problem):
    """σ(θ) from σ² (JᵀJ)⁻¹ doubles with the noise, and matches the spread of the estimates
    over independent noise draws (Gauss–Newton fits from the truth)."""
    stds = []
    for sigma in (0.02, 0.04):
        noisy = problem.with_observations(
            problem.observations.with_noise(map_sigma_gauss=sigma, history_rel_sigma=0.0, seed=3)
        )
        res = inf.fit(noisy, [TRUE], steps=20)
        stds.append(inf.fisher_uncertainty(noisy, res.estimate).std)
    for k in KEYS:
        assert stds[1][k] / stds[0][k] == pytest.approx(2.0, rel=0.03)
    # Spread of the estimates over noise draws at σ = 0.04 G.
    estimates = []
    for seed in range(12):
        noisy = problem.with_observations(
            problem.observations.with_noise(map_sigma_gauss=0.04, seed=100 + seed)
        )
        estimates.append([inf.fit(noisy, [TRUE], steps=20).estimate[k] for k in KEYS])
    spread = np.std(np.asarray(estimates), axis=0, ddof=1)
    for i, k in enumerate(KEYS):
        assert 0.5 < spread[i] / stds[1][k] < 1.8, (k, spread[i], stds[1][k])


def test_parametrisations_round_trip_and_respect_bounds():
    nu = inf.default_spec(NU, 300.0, starts=[600.0])
    assert nu.transform == "log" and nu.hi == pytest.approx(3000.0)
    p1 = inf.default_spec(P1, 20.0)
    boxed = inf.default_spec(NU, 300.0, (50.0, 900.0))
    for spec, x in ((nu, 123.0), (p1, -12.5), (boxed, 700.0)):
        assert float(spec.to_physical(spec.to_unconstrained(x))) == pytest.approx(x, rel=1e-12)
    for u in (-30.0, 30.0):
        assert -40.0 <= float(p1.to_physical(u)) <= 80.0
        assert 50.0 * (1 - 1e-12) <= float(boxed.to_physical(u)) <= 900.0 * (1 + 1e-12)
    with pytest.raises(ConfigError, match="outside its bounds"):
        p1.to_unconstrained(95.0)
    with pytest.raises(ConfigError, match="> 0"):
        nu.to_unconstrained(-1.0)


def test_visibility_weights_are_zero_behind_the_limb(problem):
    grid = problem.model.grid
    w = inf.visibility_weights(grid, [0.0, 24.0], mu_power=2.0, mu_limit=0.1)
    assert w.shape == (2, *grid.shape)
    assert w[0, grid.n_theta // 2, 0] == pytest.approx(1.0)  # disk centre at t = 0: φ = 0
    far = np.abs(np.angle(np.exp(1j * grid.phi))) > np.pi / 2
    assert np.all(w[0][:, far] == 0.0)
    assert np.all((w >= 0) & (w <= 1))
    # The observer drifts to lower Carrington longitudes (about 13.2 degrees per day).
    centre = grid.phi[np.argmax(w[1, grid.n_theta // 2])]
    assert np.degrees(centre) == pytest.approx(360.0 - 13.2, abs=15.0)


# ----------------------------------------------------------------------------- CLI
def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="jaxgeo sft")
    inf.register_infer(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


@pytest.fixture(scope="module")
def config_file(tmp_path_factory, init_map) -> Path:
    path = tmp_path_factory.mktemp("cfg") / "model.toml"
    path.write_text(_toml(_config(init_map, **START)))
    return path


def test_cli_end_to_end(config_file, obs_store, tmp_path, capsys):
    out = tmp_path / "fit.json"
    plots = tmp_path / "plots"
    argv = [
        "infer",
        str(config_file),
        "--obs",
        str(obs_store),
        "--fit",
        f"{NU},{P1}",
        "--out",
        str(out),
        "--optimizer",
        "adam",
        "--learning-rate",
        "0.1",
        "--steps",
        "4",
        "--starts",
        "2",
        "--grad-mode",
        "forward",
        "--misfit",
        "maps,history",
        "--history",
        "ax_dipole",
        "--visibility",
        "--plots",
        str(plots),
    ]
    assert _cli(argv) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert summary["ok"] and summary["command"] == "sft infer"
    fit = json.loads(out.read_text())
    for key in ("estimate", "uncertainty", "loss_history", "gradient_norm_history", "true"):
        assert key in fit, key
    assert set(fit["estimate"]) == set(fit["uncertainty"]) == set(KEYS)
    assert fit["true"] == TRUE
    assert len(fit["loss_history"]) == len(fit["gradient_norm_history"]) >= 2
    assert fit["loss_history"][-1] < fit["loss_history"][0]
    assert len(fit["starts"]) == 2 and fit["wall_s"] > 0
    assert all(np.isfinite(v) and v > 0 for v in fit["uncertainty"].values())
    names = {p.name for p in plots.iterdir()}
    assert {"loss_history.png", "history_fit.png", "final_map_fit.png"} <= names
    # An existing FIT.json is not replaced without --overwrite.
    with pytest.raises(StoreExistsError, match="--overwrite"):
        _cli(argv)


def _argv(config: Path, obs: Path, out: Path, fit: str) -> list[str]:
    return ["infer", str(config), "--obs", str(obs), "--fit", fit, "--out", str(out)]


def test_cli_refuses_bad_inputs(config_file, obs_store, init_map, tmp_path):
    out = tmp_path / "fit.json"
    with pytest.raises(ConfigError, match="not a parameter that can be fitted"):
        _cli(_argv(config_file, obs_store, out, "diffusion.nu"))
    with pytest.raises(ConfigError, match=r"no \[sources.rfe\] section"):
        _cli(_argv(config_file, obs_store, out, "sources.rfe.unsigned_flux_1e21_mx_per_hour"))
    with pytest.raises(ConfigError, match="not set in the config"):
        _cli(_argv(config_file, obs_store, out, "flow.attenuate_gauss"))
    with pytest.raises(FileFormatError, match="does not exist|cannot read"):
        _cli(_argv(config_file, tmp_path / "missing.zarr", out, NU))
    other_grid = tmp_path / "grid.toml"
    harmonic_start = {
        "initial.kind": "harmonic",
        "initial.path": None,
        "grid.n_theta": 15,
        "grid.n_phi": 25,
    }
    cfg = _config(init_map, **harmonic_start)
    del cfg["initial"]["path"]
    other_grid.write_text(_toml(cfg))
    with pytest.raises(FileFormatError, match="grid"):
        _cli(_argv(other_grid, obs_store, out, NU))
    other_times = tmp_path / "times.toml"
    other_times.write_text(_toml(_config(init_map, **{"output.history_cadence_hours": 6.0})))
    with pytest.raises(FileFormatError, match="does not land on"):
        _cli(_argv(other_times, obs_store, out, NU))
    assert not out.exists()
