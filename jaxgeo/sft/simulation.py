"""A flux-transport simulation assembled from a config: state, parameters, step, schedule.

This is the functional core behind ``jaxgeo sft run`` (and the validation cases, the
benchmarks and parameter inference). The pieces:

- :class:`Params`: the continuous parameters of ONE realization as a registered pytree of
  float scalars (ν, AFT coefficients, rigid rotation, attenuation, assimilation μ power/limit,
  emergence rate). An ensemble is the same pytree with a leading realization axis; every kernel
  takes it as a traced argument, so ``jax.vmap`` runs an ensemble and ``jax.grad`` differentiates
  with respect to any of them.
- :class:`Physics`: the static part (grid, which processes are on, schemes, diffusion plan).
- :func:`make_step`: ``step(br, params, key, t, dt) -> br``, HipFT's ``update_flow`` +
  ``flux_transport_step`` (Lie: advection, diffusion, source; Strang: S/2 A/2 D A/2 S/2).
- :func:`make_advance`: ``n`` steps of size ``dt`` in a ``lax.fori_loop`` (forward runs) and
  :func:`make_scan` (differentiable, optionally checkpointed).
- :func:`build`: config -> :class:`Simulation` (grid, initial state, parameters per
  realization, physics, event schedule).

The time step: HipFT takes ``min(dt_max, CFL)`` and cuts steps to land on output and data
times. Here the step is planned at Python level from the unattenuated flows of all
realizations (attenuation only slows the flow, so the step stays stable) and the run is split
into segments between events (history, map, assimilation and emergence-frame times, end),
each made of equal full steps plus one shorter step to land exactly on the event.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from ..errors import ConfigError, FileFormatError, InputError
from . import advection, diagnostics, diffusion, flows, sources, validation
from .config import AdvectionScheme, SftConfig
from .grid import SftGrid, drop_periodic_endpoint, impose_pole_average
from .units import KM2_S_TO_RS2_HR, KM_S_TO_RS_HR

log = logging.getLogger(__name__)

Field = Float[Array, "*b theta phi"]


# --------------------------------------------------------------------------- parameters
@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Params:
    """Continuous parameters of one realization (or, with a leading axis, of an ensemble).

    Units are the config's (HipFT's): ν in km²/s, flows in m/s or km/s, fields in Gauss.
    ``inv_b_att`` is 1/B_att (0 means no attenuation), so that it is smooth and traced.
    """

    scale: Array
    nu_km2_s: Array
    dr_p0: Array
    dr_p2: Array
    dr_p4: Array
    mf_p1: Array
    mf_p3: Array
    mf_p5: Array
    rigid_omega_km_s: Array
    vtheta_const_km_s: Array
    inv_b_att: Array
    mu_power: Array
    mu_limit: Array
    rfe_rate: Array

    @classmethod
    def from_config(cls, cfg: SftConfig, dtype: Any = jnp.float64) -> Params:
        f = cfg.flow
        dr = f.differential_rotation if f is not None else None
        mf = f.meridional if f is not None else None
        a = cfg.assimilation
        rfe = cfg.sources.rfe if cfg.sources is not None else None
        values = {
            "scale": cfg.initial.scale,
            "nu_km2_s": cfg.diffusion.nu_km2_s if cfg.diffusion is not None else 0.0,
            "dr_p0": dr.p0 if dr else 0.0,
            "dr_p2": dr.p2 if dr else 0.0,
            "dr_p4": dr.p4 if dr else 0.0,
            "mf_p1": mf.p1 if mf else 0.0,
            "mf_p3": mf.p3 if mf else 0.0,
            "mf_p5": mf.p5 if mf else 0.0,
            "rigid_omega_km_s": f.rigid_omega_km_s if f is not None else 0.0,
            "vtheta_const_km_s": f.vtheta_const_km_s if f is not None else 0.0,
            "inv_b_att": (1.0 / f.attenuate_gauss) if f is not None and f.attenuate_gauss else 0.0,
            "mu_power": a.mu_power if a is not None else 0.0,
            "mu_limit": a.mu_limit if a is not None else 0.0,
            "rfe_rate": rfe.unsigned_flux_1e21_mx_per_hour if rfe is not None else 0.0,
        }
        return cls(**{k: jnp.asarray(v, dtype=dtype) for k, v in values.items()})

    def replace(self, **kwargs: Any) -> Params:
        return dataclasses.replace(self, **kwargs)


# Config path -> Params field, for ensembles, per-realization store variables and inference.
PARAM_FIELDS: dict[str, str] = {
    "initial.scale": "scale",
    "diffusion.nu_km2_s": "nu_km2_s",
    "flow.differential_rotation.p0": "dr_p0",
    "flow.differential_rotation.p2": "dr_p2",
    "flow.differential_rotation.p4": "dr_p4",
    "flow.meridional.p1": "mf_p1",
    "flow.meridional.p3": "mf_p3",
    "flow.meridional.p5": "mf_p5",
    "flow.rigid_omega_km_s": "rigid_omega_km_s",
    "flow.vtheta_const_km_s": "vtheta_const_km_s",
    "assimilation.mu_power": "mu_power",
    "assimilation.mu_limit": "mu_limit",
    "sources.rfe.unsigned_flux_1e21_mx_per_hour": "rfe_rate",
}


def stack_params(params: Sequence[Params]) -> Params:
    """Stack per-realization parameters along a new leading axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *params)


# --------------------------------------------------------------------------- physics
@dataclasses.dataclass(frozen=True, eq=False)
class Physics:
    """Static description of what a step does (hashable by identity)."""

    grid: SftGrid
    splitting: str = "lie"
    advection_scheme: AdvectionScheme | None = None
    differential_rotation: bool = False
    meridional: bool = False
    rigid_rotation: bool = False
    vtheta_const: bool = False
    attenuate: bool = False
    flow_series: flows.FlowSeriesArrays | None = None
    diffusion_plan: diffusion.DiffusionPlan | None = None
    rfe: sources.SourceFn | None = None
    static_source: Array | None = None
    # The advection operator's reverse-mode derivative (jaxgeo.sft.advection): "autodiff",
    # "hand" (reverse mode only) or None for the module default.
    adjoint: advection.Adjoint | None = None

    @property
    def has_flow(self) -> bool:
        return self.advection_scheme is not None

    @property
    def has_source(self) -> bool:
        return self.rfe is not None or self.static_source is not None


def make_flows(
    physics: Physics, *, file_columns: Callable[[Array], Array] | None = None
) -> Callable[[Params, Field, Array], tuple[Array, Array]]:
    """``flows(params, br, t) -> (vt, vp)`` on HipFT's faces (vt with ghost faces), R_sun/h.

    Follows HipFT's ``update_flow``: flows from files, meridional flow, differential rotation,
    rigid rotation, constant v_θ, then attenuation by the current field.

    ``file_columns`` maps the flows read from files (on the whole grid) to the columns of
    ``physics.grid`` (a longitude block of a decomposed run); by default they are used as is.
    """
    grid = physics.grid

    def compute(params: Params, br: Field, t: Array) -> tuple[Array, Array]:
        dtype = br.dtype
        vt = jnp.zeros((grid.n_theta + 1, grid.n_phi), dtype)
        vp = jnp.zeros(grid.shape, dtype)
        if physics.flow_series is not None:
            vt_f, vp_f = flows.interpolate_flow(physics.flow_series, t)
            if file_columns is not None:
                vt_f, vp_f = file_columns(vt_f), file_columns(vp_f)
            vt = vt + vt_f.astype(dtype)
            vp = vp + vp_f.astype(dtype)
        if physics.meridional:
            vt = vt + flows.aft_meridional_flow(
                grid, params.mf_p1, params.mf_p3, params.mf_p5, ghosts=True
            )
        if physics.differential_rotation:
            vp = vp + flows.aft_differential_rotation(
                grid, params.dr_p0, params.dr_p2, params.dr_p4
            )
        if physics.rigid_rotation:
            vp = vp + flows.rigid_rotation(grid, params.rigid_omega_km_s)
        if physics.vtheta_const:
            vt = vt + flows.constant_vtheta(grid, params.vtheta_const_km_s, ghosts=True)
        if physics.attenuate:
            # HipFT's v ← v (1 − tanh(max(|B| of the face's two cells) / B_att)), as
            # flows.attenuate, with inv_b_att = 1/B_att (0: no attenuation, tanh(0) = 0).
            # tanh is monotonic and scaling by 1/B_att > 0 keeps the order, so the face's
            # tanh of the larger |B| is the larger of the two cells' tanh: one tanh per cell
            # instead of one per face (two per cell); XLA keeps the (expensive) tanh array
            # in memory for its four uses.
            inv = params.inv_b_att
            safe = jnp.where(inv > 0, inv, 1.0)
            th = jnp.where(inv > 0, jnp.tanh(jnp.abs(br) * safe), 0.0)
            fac_t = 1.0 - jnp.maximum(th[..., :-1, :], th[..., 1:, :])
            fac_p = 1.0 - jnp.maximum(th, jnp.roll(th, -1, axis=-1))
            # The ghost θ faces beyond the poles stay unattenuated, as in HipFT.
            vt = jnp.concatenate(
                [vt[..., :1, :], vt[..., 1:-1, :] * fac_t, vt[..., -1:, :]], axis=-2
            )
            vp = vp * fac_p
        return vt, vp

    return compute


def make_sources(physics: Physics) -> Callable[[Params, Array, Array, Any], Array] | None:
    """``sources(params, key, t, dtype) -> S`` on the whole grid, G/h (static map plus random
    flux emergence), or None when the physics has no source."""
    if not physics.has_source:
        return None
    grid = physics.grid

    def sources(params: Params, key: Array, t: Array, dtype: Any) -> Array:
        s = jnp.zeros(grid.shape, dtype)
        if physics.static_source is not None:
            s = s + jnp.asarray(physics.static_source, dtype)
        if physics.rfe is not None:
            s = s + physics.rfe(key, t, params.rfe_rate)
        return s

    return sources


def compose_step(
    physics: Physics,
    *,
    flows: Callable[[Params, Field, Array], tuple[Array, Array]] | None,
    advect: Callable[[Field, Array, Array, Array], Field] | None,
    diffuse: Callable[[Field, Array, Array], Field] | None,
    sources: Callable[[Params, Array, Array, Any], Array] | None,
) -> Callable[..., Field]:
    """HipFT's process order (Lie or Strang splitting) over the given operators.

    One place for the order, shared by :func:`make_step` (the whole grid) and the longitude
    decomposition (``jaxgeo.sft.ensemble.make_lon_step``, operators on one block). ``flows``
    is used only with ``advect``; None drops a process.
    """

    def step(br: Field, params: Params, key: Array, t: Array, dt: Array) -> Field:
        dt = jnp.asarray(dt, br.dtype)
        if advect is not None:
            assert flows is not None
            vt, vp = flows(params, br, t)
        if sources is not None:
            src = sources(params, key, t, br.dtype)
        nu = params.nu_km2_s * KM2_S_TO_RS2_HR

        if physics.splitting == "strang":
            half = 0.5 * dt
            if sources is not None:
                br = br + half * src
            if advect is not None:
                br = advect(br, vt, vp, half)
            if diffuse is not None:
                br = diffuse(br, nu, dt)
            if advect is not None:
                br = advect(br, vt, vp, half)
            if sources is not None:
                br = br + half * src
            return br
        if advect is not None:
            br = advect(br, vt, vp, dt)
        if diffuse is not None:
            br = diffuse(br, nu, dt)
        if sources is not None:
            br = br + dt * src
        return br

    return step


def make_step(physics: Physics) -> Callable[..., Field]:
    """One HipFT time step of one realization: ``step(br, params, key, t, dt) -> br``.

    ``br`` (n_theta, n_phi) in G; ``params`` a :class:`Params` of scalars; ``key`` a PRNG key
    (random flux emergence); ``t`` the time at the start of the step and ``dt`` the step, hours.
    All arguments are traced; ``jax.vmap`` over (br, params, key) makes an ensemble.
    """
    grid = physics.grid
    return compose_step(
        physics,
        flows=make_flows(physics) if physics.has_flow else None,
        advect=(
            advection.make_advection_step(grid, physics.advection_scheme, adjoint=physics.adjoint)
            if physics.advection_scheme is not None
            else None
        ),
        diffuse=(
            diffusion.make_diffusion_step(grid, physics.diffusion_plan)
            if physics.diffusion_plan is not None
            else None
        ),
        sources=make_sources(physics),
    )


def make_advance(physics: Physics, *, block: int | None = None) -> Callable[..., Field]:
    """``advance(br, params, keys, t0, dt, n) -> br`` for a batch of realizations.

    ``br`` (R, n_theta, n_phi), ``params`` with leading axis R, ``keys`` (R,) PRNG keys, and
    ``n`` a traced step count (``lax.fori_loop``: one compiled program for every segment).
    Forward only; use :func:`make_scan` to differentiate.

    ``block``: None steps all realizations together (``vmap`` over R inside the step loop);
    an integer runs the realizations ``block`` at a time, each block through all ``n`` steps
    (``lax.map`` with ``batch_size``; the realizations are independent within a segment, so
    the result is the same to round-off). On CPU a block that fits the cache is faster:
    see :func:`cpu_block_size`.
    """
    one = make_step(physics)
    step = jax.vmap(one, in_axes=(0, 0, 0, None, None))

    def advance(br: Field, params: Params, keys: Array, t0: Array, dt: Array, n: Array) -> Field:
        def body(i, x):
            return step(x, params, keys, t0 + i.astype(x.dtype) * dt, dt)

        return jax.lax.fori_loop(0, n, body, br)

    if block is None:
        return advance

    def advance_blocks(
        br: Field, params: Params, keys: Array, t0: Array, dt: Array, n: Array
    ) -> Field:
        def member(args: tuple[Field, Params, Array]) -> Field:
            b, p, k = args

            def body(i, x):
                return one(x, p, k, t0 + i.astype(x.dtype) * dt, dt)

            return jax.lax.fori_loop(0, n, body, b)

        return jax.lax.map(member, (br, params, keys), batch_size=block)

    return advance_blocks


# A realization block of about this many cells keeps a step's working set in the CPU caches.
_CPU_BLOCK_CELLS = 1 << 16


def cpu_block_size(physics: Physics, n_realizations: int) -> int | None:
    """The realization block :func:`make_advance` should use on one CPU device, or None.

    Stepping all realizations together makes every array R times larger; once a step's
    working set leaves the caches each stencil pass goes to memory. Measured at 1° (one pinned
    core, 5 realizations, AFT flows + attenuation + RKG2): all together 27.6 ms per step,
    one at a time 20.9 ms, two at a time 23.4 ms. Small grids keep several realizations per
    block, so the per-operation overhead is still shared.
    """
    if n_realizations <= 1 or jax.default_backend() != "cpu":
        return None
    cells = physics.grid.n_theta * physics.grid.n_phi
    return max(1, min(n_realizations, _CPU_BLOCK_CELLS // cells))


def make_scan(physics: Physics, *, checkpoint_every: int = 0) -> Callable[..., Field]:
    """Differentiable ``run(br, params, key, t0, dts) -> br_final`` of ONE
    realization over the steps ``dts`` (a 1-D array), with ``lax.scan``.

    ``checkpoint_every`` sets what reverse mode keeps in memory:

    - 0: everything the steps' adjoints need (fastest for short runs, O(steps) of the step's
      intermediates);
    - 1: the field at every step (each step is rematerialised, ``jax.checkpoint``);
    - k > 1: the field every k steps; a chunk of k steps is recomputed in the reverse pass,
      keeping its k fields, then each step is rematerialised. With k ≈ √steps the memory is
      O(√steps) fields for one extra forward run.
    """
    step = make_step(physics)
    if checkpoint_every:
        step = jax.checkpoint(step)

    def steps(carry: tuple[Field, Array], dts: Array, params: Params, key: Array):
        def body(c, dt):
            x, t = c
            return (step(x, params, key, t, dt), t + dt), None

        return jax.lax.scan(body, carry, dts)[0]

    def run(br: Field, params: Params, key: Array, t0: Array, dts: Array) -> Field:
        carry = (br, jnp.asarray(t0, br.dtype))
        k = int(checkpoint_every)
        n = dts.shape[0]
        if k <= 1 or n <= k:
            return steps(carry, dts, params, key)[0]
        n_chunks = n // k
        chunk = jax.checkpoint(lambda c, d: (steps(c, d, params, key), None))
        carry, _ = jax.lax.scan(chunk, carry, dts[: n_chunks * k].reshape(n_chunks, k))
        if n > n_chunks * k:
            carry = steps(carry, dts[n_chunks * k :], params, key)
        return carry[0]

    return run


# --------------------------------------------------------------------------- schedule
@dataclasses.dataclass(frozen=True)
class Segment:
    """Steps from ``t0`` to ``t1``: ``n_full`` steps of ``dt`` then one of ``dt_last`` (if > 0)."""

    t0: float
    t1: float
    dt: float
    n_full: int
    dt_last: float
    events: frozenset[str]


def _event_times(start: float, end: float, cadence: float) -> list[float]:
    n = int(math.floor((end - start) / cadence + 1e-9))
    times = [start + k * cadence for k in range(1, n + 1)]
    return [t for t in times if t < end - 1e-9] + [end]


def plan_schedule(
    start: float,
    end: float,
    dt_step: float,
    events: dict[str, Sequence[float]],
    *,
    tol: float = 1e-9,
) -> list[Segment]:
    """Split [start, end] at every event time into segments of equal steps (HipFT's cuts)."""
    stamps: dict[float, set[str]] = {}
    for name, times in events.items():
        for t in times:
            if start + tol < t <= end + tol:
                key = round(min(t, end), 9)
                stamps.setdefault(key, set()).add(name)
    stamps.setdefault(round(end, 9), set()).add("end")
    segments = []
    t0 = start
    for t1 in sorted(stamps):
        span = t1 - t0
        if span <= tol:
            continue
        n_full = int(math.floor(span / dt_step * (1 + 1e-12) + 1e-9))
        rest = span - n_full * dt_step
        if rest <= tol * max(1.0, dt_step):
            rest = 0.0
        segments.append(Segment(t0, t1, dt_step, n_full, rest, frozenset(stamps[t1])))
        t0 = t1
    return segments


# --------------------------------------------------------------------------- building
@dataclasses.dataclass(frozen=True, eq=False)
class Simulation:
    """Everything a run needs, built from a config by :func:`build`."""

    config: SftConfig
    grid: SftGrid
    physics: Physics
    br0: Field  # (R, n_theta, n_phi)
    params: Params  # leading axis R
    keys: Array  # (R,) PRNG keys
    overrides: tuple[dict[str, float], ...]
    dt_step: float
    segments: tuple[Segment, ...]
    history_times: tuple[float, ...]
    map_times: tuple[float, ...]
    assimilation: Any = None  # AssimilationPlan or None
    exact: Callable[[float], np.ndarray] | None = None  # validation cases: exact field (R, nt, np)

    @property
    def n_realizations(self) -> int:
        return int(self.br0.shape[0])

    @functools.cached_property
    def advance(self) -> Callable[..., Field]:
        block = cpu_block_size(self.physics, self.n_realizations)
        return jax.jit(make_advance(self.physics, block=block))

    @functools.cached_property
    def history(self) -> Callable[..., dict[str, Array]]:
        grid = self.grid
        lim = self.config.output.pole_flux_lat_limit_deg

        def hist(br: Field, exact: Field | None) -> dict[str, Array]:
            return jax.vmap(
                lambda b, e: diagnostics.history(grid, b, exact=e, pole_lat_limit_deg=lim),
                in_axes=(0, None if exact is None else 0),
            )(br, exact)

        return jax.jit(hist)

    def advance_segment(self, br: Field, seg: Segment) -> Field:
        dtype = br.dtype
        if seg.n_full:
            br = self.advance(
                br,
                self.params,
                self.keys,
                jnp.asarray(seg.t0, dtype),
                jnp.asarray(seg.dt, dtype),
                jnp.asarray(seg.n_full, jnp.int32),
            )
        if seg.dt_last > 0:
            br = self.advance(
                br,
                self.params,
                self.keys,
                jnp.asarray(seg.t0 + seg.n_full * seg.dt, dtype),
                jnp.asarray(seg.dt_last, dtype),
                jnp.asarray(1, jnp.int32),
            )
        return br

    def compute_history(self, br: Field, t: float) -> dict[str, np.ndarray]:
        exact = None
        if self.exact is not None:
            exact = jnp.asarray(self.exact(t), br.dtype)
        return {k: np.asarray(v) for k, v in self.history(br, exact).items()}


@dataclasses.dataclass(frozen=True, eq=False)
class AssimilationPlan:
    """Assimilation events: times, the observed maps (stacked) and the update function."""

    times: tuple[float, ...]
    obs_br: Array  # (K, n_theta, n_phi)
    weight_fn: Callable[[int, Params], Array]
    update: Callable[[Field, Array, Array], Field]

    @functools.cached_property
    def apply(self) -> Callable[..., Field]:
        def one(br, params, obs, k):
            return self.update(br, obs, self.weight_fn(k, params))

        return jax.jit(jax.vmap(one, in_axes=(0, 0, None, None)))

    def index_at(self, t: float) -> int | None:
        for k, tk in enumerate(self.times):
            if abs(tk - t) < 1e-9:
                return k
        return None


def read_initial_map(path: Path) -> tuple[SftGrid, np.ndarray]:
    """Initial field from a HipFT/PSI HDF5 map or a jaxgeo run store (its last stored map).

    Returns:
        ``(grid, br)`` with ``br`` (n_map_realizations, n_theta, n_phi), pole rows averaged.
    """
    if not path.exists():
        raise FileFormatError(f"initial map {path} does not exist")
    if path.is_dir():
        from ..io import open_store

        ds = open_store(path)
        if "br" not in ds:
            raise FileFormatError(f"initial map {path} is a store without a 'br' variable")
        br = np.asarray(ds["br"].isel(time=-1).values, dtype=np.float64)  # (R, lat, lon)
        lat = np.asarray(ds["lat"].values)
        lon = np.asarray(ds["lon"].values)
        grid = SftGrid.from_store_coords(lat, lon)
        data = br[:, ::-1, :]
    else:
        from ..io import read_hipft_map

        m = read_hipft_map(path)
        grid = SftGrid.from_hipft_scales(m.phi, m.theta)
        data = np.asarray(drop_periodic_endpoint(jnp.asarray(m.data)))
    data = np.asarray(impose_pole_average(jnp.asarray(data), grid))
    if not np.all(np.isfinite(data)):
        raise FileFormatError(f"initial map {path} holds NaN or infinite values")
    return grid, data


def _initial_state(cfg: SftConfig) -> tuple[SftGrid, np.ndarray]:
    ini = cfg.initial
    if ini.kind == "map":
        assert ini.path is not None
        grid, data = read_initial_map(cfg.resolve(ini.path))
    else:
        grid = SftGrid.uniform(cfg.grid.n_theta, cfg.grid.n_phi - 1)
        if ini.kind == "soccer":
            field = validation.soccer_ball(grid)
        elif ini.kind == "gaussians":
            # HipFT (1.19) divides the pair by sin(theta) in every Gaussian validation case.
            field = validation.gaussian_pair(grid, over_sin_theta=True)
        elif ini.kind == "dipole":
            field = validation.dipole(grid, ini.amplitude_gauss)
        elif ini.kind == "harmonic":
            field = validation.harmonic(grid, ini.l, ini.m, ini.amplitude_gauss)
        else:
            field = np.zeros(grid.shape)
        data = np.asarray(field)[None]
    if ini.flux_balance:
        data = np.asarray(sources.balance_flux(jnp.asarray(data), grid))
    return grid, data


def _exact_solution(
    cfg: SftConfig, params: Params, grid: SftGrid
) -> Callable[[float], np.ndarray] | None:
    """Exact field for the analytic validation cases (HipFT's validation_run 1-3)."""
    ini = cfg.initial
    t0 = cfg.time.start_hours
    scale = np.asarray(params.scale)
    if ini.kind == "soccer":
        if cfg.flow is not None and (
            cfg.flow.differential_rotation
            or cfg.flow.meridional
            or cfg.flow.vtheta_const_km_s
            or cfg.flow.attenuate_gauss
        ):
            return None
        nu = (
            np.asarray(params.nu_km2_s) * KM2_S_TO_RS2_HR
            if cfg.diffusion is not None
            else 0 * scale
        )
        om = (
            np.asarray(params.rigid_omega_km_s) * KM_S_TO_RS_HR
            if cfg.flow is not None
            else 0 * scale
        )

        def soccer(t: float) -> np.ndarray:
            return np.stack(
                [
                    s * validation.soccer_ball_exact(grid, t - t0, n, o)
                    for s, n, o in zip(scale, nu, om, strict=True)
                ]
            )

        return soccer
    if ini.kind == "gaussians":
        if (
            cfg.diffusion is not None
            or cfg.flow is None
            or cfg.flow.differential_rotation
            or cfg.flow.meridional
        ):
            return None
        om = np.asarray(params.rigid_omega_km_s) * KM_S_TO_RS_HR
        vt = np.asarray(params.vtheta_const_km_s) * KM_S_TO_RS_HR

        def pair(t: float) -> np.ndarray:
            return np.stack(
                [
                    s
                    * validation.gaussian_pair_exact(
                        grid, t - t0, omega=o, vtheta=v, over_sin_theta=True
                    )
                    for s, o, v in zip(scale, om, vt, strict=True)
                ]
            )

        return pair
    return None


def build(cfg: SftConfig, *, dtype: Any = jnp.float64) -> Simulation:
    """Assemble a :class:`Simulation` from a validated config (reads input files)."""
    grid, data = _initial_state(cfg)
    overrides = cfg.realizations()
    n_map = data.shape[0]
    if n_map > 1 and len(overrides) > 1 and n_map != len(overrides):
        raise InputError(
            f"the initial map holds {n_map} realizations but [ensemble] lists {len(overrides)}; "
            "they must agree"
        )
    n_r = max(n_map, len(overrides))
    if len(overrides) == 1:
        overrides = overrides * n_r
    per_real = [cfg.with_overrides(o) for o in overrides]
    params = stack_params([Params.from_config(c, dtype) for c in per_real])
    br0 = (
        jnp.asarray(np.broadcast_to(data, (n_r,) + grid.shape), dtype) * params.scale[:, None, None]
    )

    seeds = [
        (c.sources.rfe.seed if c.sources is not None and c.sources.rfe is not None else 0)
        for c in per_real
    ]
    keys = jnp.stack([jax.random.key(int(s)) for s in seeds])

    physics = _physics(cfg, grid, params, br0, dtype)
    dt_step = _plan_dt(cfg, physics, params)

    t_start, t_end = cfg.time.start_hours, cfg.time.end_hours
    out = cfg.output
    history_times = _event_times(t_start, t_end, out.history_cadence_hours)
    map_times = _event_times(t_start, t_end, out.map_cadence_hours)
    events: dict[str, Sequence[float]] = {"history": history_times, "map": map_times}
    ckpt = out.checkpoint_cadence_hours
    if ckpt is not None:
        events["checkpoint"] = _event_times(t_start, t_end, ckpt)
    assim = _assimilation(cfg, grid, t_start, t_end)
    if assim is not None:
        events["assimilation"] = assim.times
    if physics.rfe is not None and cfg.sources is not None and cfg.sources.rfe is not None:
        events["rfe"] = _event_times(t_start, t_end, cfg.sources.rfe.lifetime_hours)
    segments = plan_schedule(t_start, t_end, dt_step, events)
    exact = _exact_solution(cfg, params, grid)
    return Simulation(
        config=cfg,
        grid=grid,
        physics=physics,
        br0=br0,
        params=params,
        keys=keys,
        overrides=tuple(overrides),
        dt_step=dt_step,
        segments=tuple(segments),
        history_times=tuple(history_times),
        map_times=tuple(map_times),
        assimilation=assim,
        exact=exact,
    )


def _physics(cfg: SftConfig, grid: SftGrid, params: Params, br0: Field, dtype: Any) -> Physics:
    f = cfg.flow
    kwargs: dict[str, Any] = {"grid": grid, "splitting": cfg.time.splitting}
    if f is not None:
        kwargs.update(
            advection_scheme=f.scheme,
            differential_rotation=f.differential_rotation is not None,
            meridional=f.meridional is not None,
            rigid_rotation=bool(np.any(np.asarray(params.rigid_omega_km_s) != 0)),
            vtheta_const=bool(np.any(np.asarray(params.vtheta_const_km_s) != 0)),
            attenuate=bool(np.any(np.asarray(params.inv_b_att) > 0)),
        )
        if f.files is not None:
            series = flows.FlowSeries.from_list(
                cfg.resolve(f.files.list), cfg.resolve(f.files.root_dir)
            )
            kwargs["flow_series"] = series.load(grid, dtype=dtype)
    d = cfg.diffusion
    if d is not None:
        nu_max = float(np.max(np.asarray(params.nu_km2_s))) * KM2_S_TO_RS2_HR
        if d.nu_map is not None:
            raise ConfigError("diffusion.nu_map is not supported yet; use diffusion.nu_km2_s")
        if nu_max > 0:
            dt_plan = min(cfg.time.dt_max_hours, cfg.time.end_hours - cfg.time.start_hours)
            kwargs["diffusion_plan"] = _diffusion_plan(
                grid, br0, nu_max, dt_plan, d.scheme, d.subcycles
            )
    s = cfg.sources
    if s is not None:
        if s.rfe is not None:
            kwargs["rfe"] = sources.make_rfe_source(
                grid,
                model=s.rfe.model,
                lifetime_hours=s.rfe.lifetime_hours,
                sigma_deg=s.rfe.sigma_deg,
                start_hours=cfg.time.start_hours,
                dtype=dtype,
            )
        if s.static_path is not None:
            kwargs["static_source"] = jnp.asarray(
                sources.load_static_source(cfg.resolve(s.static_path), grid), dtype
            )
    return Physics(**kwargs)


def _diffusion_plan(
    grid: SftGrid, br0: Field, nu_max: float, dt: float, scheme: str, subcycles: int | str
) -> diffusion.DiffusionPlan:
    """HipFT's sub-cycling: fixed count, or 'auto' from the practical time-step limit (PTL)
    of the initial field (HipFT re-evaluates it every cycle; planning it once keeps the step
    static, so it can be compiled once and differentiated)."""
    if subcycles == "auto" and scheme != "euler":
        ptl = diffusion.ptl_timestep(grid, np.asarray(br0), nu_max)
        n = 1 if not math.isfinite(ptl) or ptl >= dt else min(60, math.ceil(dt / ptl))
        return diffusion.plan_diffusion(grid, nu_max, dt, scheme, subcycles=n)
    return diffusion.plan_diffusion(grid, nu_max, dt, scheme, subcycles=subcycles)


def _plan_dt(cfg: SftConfig, physics: Physics, params: Params) -> float:
    dt = min(cfg.time.dt_max_hours, cfg.time.end_hours - cfg.time.start_hours)
    if physics.has_flow:
        no_att = dataclasses.replace(physics, attenuate=False)
        flow_fn = make_flows(no_att)
        br = jnp.zeros((params.scale.shape[0],) + physics.grid.shape, params.scale.dtype)
        t = jnp.asarray(cfg.time.start_hours, br.dtype)
        vt, vp = jax.vmap(flow_fn, in_axes=(0, 0, None))(params, br, t)
        if physics.flow_series is not None:
            vt = jnp.concatenate([vt, physics.flow_series.vt + 0 * vt[:1]])
            vp = jnp.concatenate([vp, physics.flow_series.vp + 0 * vp[:1]])
        assert physics.advection_scheme is not None
        cfl = float(advection.max_stable_dt(physics.grid, vt, vp, physics.advection_scheme))
        if math.isfinite(cfl) and cfl < dt:
            log.info("time step limited by the flow CFL condition: %.4g h (dt_max %.4g h)", cfl, dt)
            dt = cfl
    if dt < cfg.time.dt_min_hours:
        raise ConfigError(
            f"the stable time step {dt:.3g} h is below time.dt_min_hours = {cfg.time.dt_min_hours} h"
        )
    return dt


def _assimilation(cfg: SftConfig, grid: SftGrid, t0: float, t1: float) -> AssimilationPlan | None:
    a = cfg.assimilation
    if a is None:
        return None
    from . import assimilation as assim

    root = cfg.resolve(a.root_dir) if a.root_dir else None
    maps = assim.MapList.read(cfg.resolve(a.map_list), root_dir=root)
    schedule = [(t, p) for t, p in maps.schedule(t0, t1) if t > t0 + 1e-9 or t == t0]
    # HipFT applies the first map at the end of the first step; here: at its listed time,
    # which is the start for the first map, so it is applied before the first step.
    observed = [assim.read_observed_map(p, grid) for _, p in schedule]
    stacked = assim._stack_maps(observed)
    update = assim.make_assimilate(grid, mode=a.mode, balance_flux=a.balance_flux)

    def weight_fn(k: int, params: Params) -> Array:
        obs_k = jax.tree.map(lambda x: x[k], stacked)
        return assim.observation_weights(
            grid,
            obs_k,
            custom_from_mu=a.custom_from_mu,
            mu_power=params.mu_power,
            mu_limit=params.mu_limit,
            lat_limit_deg=a.lat_limit_deg,
        )

    return AssimilationPlan(
        times=tuple(t for t, _ in schedule), obs_br=stacked.br, weight_fn=weight_fn, update=update
    )


def realization_table(sim: Simulation) -> dict[str, np.ndarray]:
    """Per-realization parameter values that vary, keyed by store variable name."""
    out: dict[str, np.ndarray] = {}
    keys = sorted({k for o in sim.overrides for k in o})
    for key in keys:
        name = key.replace(".", "_")
        out[name] = np.asarray([o.get(key, np.nan) for o in sim.overrides], dtype=np.float64)
    return out
