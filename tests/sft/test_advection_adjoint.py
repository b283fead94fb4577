"""The hand-written adjoint of the advection operator (``adjoint="hand"``) against autodiff."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from jax.test_util import check_grads

from jaxgeo.errors import ConfigError
from jaxgeo.sft import advection
from jaxgeo.sft.grid import SftGrid


def nonuniform_grid(n_theta: int = 12, n_phi: int = 16, seed: int = 3) -> SftGrid:
    """A grid with random (±30 %) cell widths in both θ and φ: every D_* weight differs."""
    rng = np.random.default_rng(seed)
    dt = 1.0 + 0.3 * rng.uniform(-1.0, 1.0, n_theta - 1)
    theta = np.concatenate([[0.0], np.cumsum(dt)]) * (math.pi / dt.sum())
    dp = 1.0 + 0.3 * rng.uniform(-1.0, 1.0, n_phi)
    phi = 0.2 + np.concatenate([[0.0], np.cumsum(dp)]) * (2.0 * math.pi / dp.sum())
    return SftGrid.from_hipft_scales(phi, theta)


def random_flows(grid: SftGrid, rng: np.random.Generator) -> tuple[jax.Array, jax.Array]:
    """Flows of both signs everywhere, R_sun/h (magnitudes like the solar ones)."""
    vt = 1e-3 * rng.standard_normal((grid.n_theta - 1, grid.n_phi))
    vp = 1e-2 * rng.standard_normal(grid.shape)
    return jnp.asarray(vt), jnp.asarray(vp)


def random_inputs(op, grid: SftGrid, rng: np.random.Generator, fe_batch: tuple[int, ...] = ()):
    """``(fe, k)`` whose halo columns and flow factors are all independent random numbers,
    so the VJP is compared entry by entry, halo layout included."""
    vt, vp = random_flows(grid, rng)
    k = op.prepare(vt, vp, jnp.float64)
    k = {
        name: v + 0.2 * jnp.std(v) * jnp.asarray(rng.standard_normal(v.shape))
        for name, v in k.items()
    }
    fe = advection._ext(jnp.asarray(100.0 * rng.standard_normal(grid.shape)), op.r)
    fe = fe + jnp.asarray(100.0 * rng.standard_normal(fe_batch + fe.shape))
    return fe, k


def vjp(op):
    """Jitted ``(fe, k, ct) -> (ct_fe, ct_k)`` of ``op.apply``."""
    return jax.jit(lambda fe, k, ct: jax.vjp(op.apply, fe, k)[1](ct))


def assert_trees_close(a, b, rtol: float) -> None:
    for (path, x), y in zip(
        jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b), strict=True
    ):
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape, (jax.tree_util.keystr(path), x.shape, y.shape)
        scale = np.max(np.abs(x))
        assert scale > 0, jax.tree_util.keystr(path)
        err = np.max(np.abs(x - y)) / scale
        assert err < rtol, (jax.tree_util.keystr(path), err)


@pytest.mark.parametrize("space", ["weno3", "upwind"])
def test_hand_vjp_equals_autodiff_vjp_for_field_and_every_flow_factor(space: str) -> None:
    grid = nonuniform_grid()
    rng = np.random.default_rng(0)
    op_a = advection._Operator(grid, space, "autodiff")
    op_h = advection._Operator(grid, space, "hand")
    # Two fields and one flow: the flow factors' cotangents also sum over the batch.
    fe, k = random_inputs(op_a, grid, rng, fe_batch=(2,))
    ct = jnp.asarray(rng.standard_normal((2, *grid.shape)))
    # The forward is the same code: identical bits when compiled alike.
    np.testing.assert_array_equal(
        np.asarray(jax.jit(op_a.apply)(fe, k)), np.asarray(jax.jit(op_h.apply)(fe, k))
    )
    ct_a, ct_h = vjp(op_a)(fe, k, ct), vjp(op_h)(fe, k, ct)
    assert set(ct_h[1]) == set(k)
    assert_trees_close(ct_a, ct_h, rtol=1e-12)


@pytest.mark.parametrize("scheme", ["weno3-ssprk43", "upwind-ssprk33"])
def test_check_grads_through_a_full_step_wrt_field_and_flows(scheme: advection.Scheme) -> None:
    grid = nonuniform_grid(10, 12, seed=7)
    rng = np.random.default_rng(2)
    vt, vp = random_flows(grid, rng)
    br = jnp.asarray(100.0 * rng.standard_normal(grid.shape))
    step = jax.jit(advection.make_advection_step(grid, scheme, unroll_stages=False, adjoint="hand"))
    dt = 0.5 * float(advection.max_stable_dt(grid, vt, vp, scheme))
    # Scaled so that the three inputs have unit-size entries (finite differences of one eps).
    check_grads(
        lambda b, t, p: step(100.0 * b, 1e-3 * t, 1e-2 * p, dt),
        (br / 100.0, vt / 1e-3, vp / 1e-2),
        order=1,
        modes=["rev"],
        eps=1e-6,
    )


@pytest.mark.long  # two compilations of a checkpointed scan: ~15 s of CPU
def test_step_gradients_equal_autodiff_under_scan_checkpoint_and_jit() -> None:
    grid = nonuniform_grid(10, 12, seed=11)
    rng = np.random.default_rng(4)
    vt, vp = random_flows(grid, rng)
    br = jnp.asarray(100.0 * rng.standard_normal(grid.shape))
    w = jnp.asarray(rng.standard_normal(grid.shape))
    dt = 0.5 * float(advection.max_stable_dt(grid, vt, vp))

    def loss(adjoint):
        step = jax.checkpoint(
            advection.make_advection_step(grid, unroll_stages=False, adjoint=adjoint)
        )

        def run(b, t, p):
            out = jax.lax.scan(lambda x, _: (step(x, t, p, dt), None), b, None, length=3)[0]
            return jnp.sum(w * out)

        return jax.jit(jax.value_and_grad(run, argnums=(0, 1, 2)))

    (v_a, g_a), (v_h, g_h) = loss("autodiff")(br, vt, vp), loss("hand")(br, vt, vp)
    assert float(v_a) == float(v_h)
    assert_trees_close(g_a, g_h, rtol=1e-12)


def test_vmap_over_fields_equals_loop() -> None:
    grid = nonuniform_grid(10, 12, seed=13)
    rng = np.random.default_rng(5)
    vt, vp = random_flows(grid, rng)
    brs = jnp.asarray(100.0 * rng.standard_normal((2, *grid.shape)))
    w = jnp.asarray(rng.standard_normal(grid.shape))
    step = advection.make_advection_step(grid, unroll_stages=False, adjoint="hand")
    dt = 0.5 * float(advection.max_stable_dt(grid, vt, vp))

    def loss(b, t, p):
        return jnp.sum(w * step(b, t, p, dt))

    grad = jax.grad(loss, argnums=(0, 1, 2))
    batched = jax.jit(jax.vmap(grad, in_axes=(0, None, None)))(brs, vt, vp)
    grad_jit = jax.jit(grad)
    looped = [grad_jit(b, vt, vp) for b in brs]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *looped)
    assert_trees_close(stacked, batched, rtol=1e-13)


def test_default_is_autodiff_and_hand_refuses_forward_mode() -> None:
    grid = nonuniform_grid(8, 8, seed=17)
    rng = np.random.default_rng(6)
    vt, vp = random_flows(grid, rng)
    br = jnp.asarray(rng.standard_normal(grid.shape))
    ones = jnp.ones_like(br)
    # Forward mode (inference's jacfwd / grad_mode="forward") needs the autodiff default.
    assert advection._Operator(grid, "weno3").adjoint == "autodiff"
    tend = advection.advection_operator(grid)
    jax.jit(lambda b, t: jax.jvp(lambda x: tend(x, vt, vp), (b,), (t,)))(br, ones)
    hand = advection.advection_operator(grid, adjoint="hand")
    with pytest.raises(TypeError, match="forward-mode"):
        jax.jit(lambda b, t: jax.jvp(lambda x: hand(x, vt, vp), (b,), (t,)))(br, ones)
    with pytest.raises(ConfigError, match="adjoint"):
        advection.make_advection_step(grid, adjoint="magic")  # type: ignore[arg-type]


def test_inside_shard_map_with_replicated_flows_equals_autodiff() -> None:
    # Fields sharded over devices, flows replicated: the flows' cotangents must be summed
    # over the devices, as JAX's own transpose does (sft.ensemble's layouts).
    grid = nonuniform_grid(8, 12, seed=19)
    rng = np.random.default_rng(7)
    vt, vp = random_flows(grid, rng)
    mesh = jax.make_mesh((2,), ("r",))
    brs = jax.device_put(
        jnp.asarray(rng.standard_normal((2, *grid.shape))), NamedSharding(mesh, P("r"))
    )
    vt, vp = (jax.device_put(v, NamedSharding(mesh, P())) for v in (vt, vp))
    grads = []
    for adjoint in ("autodiff", "hand"):
        tend = advection.advection_operator(grid, adjoint=adjoint)

        def block_grad(b, t, p, tend=tend):
            g = jax.grad(lambda b, t, p: jnp.sum(jnp.square(tend(b, t, p))), argnums=(0, 1, 2))
            gb, gt, gp = g(b, t, p)
            return gb, jax.lax.psum(gt, "r"), jax.lax.psum(gp, "r")

        f = jax.shard_map(
            block_grad, mesh=mesh, in_specs=(P("r"), P(), P()), out_specs=(P("r"), P(), P())
        )
        grads.append(jax.jit(f)(brs, vt, vp))
    assert_trees_close(grads[0], grads[1], rtol=1e-12)
