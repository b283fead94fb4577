"""Ensembles and devices for flux transport: placement, longitude decomposition, statistics.

- **Realizations on devices.** :func:`place` makes a :class:`Placement`: a 1-D mesh over the
  realization axis (:func:`jaxgeo.parallel.mesh_for`), the batch padded to a multiple of the
  device count, and the jitted ``advance`` (the same vmapped step; the compiler splits the
  batch over the devices, no communication between members).
- **Longitude decomposition** (``shard="lon"``, for one large run; HipFT has none): the φ axis
  is split into equal blocks, one per device, inside ``jax.shard_map``. Each operator
  evaluation pads the block with its neighbours' columns (``ppermute`` halo exchange), runs
  the single-device kernel (:func:`jaxgeo.sft.advection.advection_operator`,
  :func:`jaxgeo.sft.diffusion.diffusion_operator`) on the padded block, crops the halo, and
  replaces the two pole-cap rows by the net flux through the cap face summed over all blocks
  (``psum``). The caps couple every column at every Runge–Kutta / super-time-stepping stage,
  so the padding has to be per operator evaluation: a whole step on a padded block is not
  exact. Equal to the single-device run to round-off (tests/sft/test_ensemble.py).
- **Statistics** over realizations (:func:`ensemble_statistics`): mean, standard deviation and
  quantiles, written into the run store beside the maps and histories.
- **Shared stores** for multi-process runs (:func:`create_region_store`,
  :func:`write_region`, :func:`commit_sizes`): the coordinator creates the store with one
  realization per chunk, every process writes its own realizations into their region.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P
from jaxtyping import Array, ArrayLike, Float

from ..errors import ConfigError, InputError
from ..parallel import (
    REALIZATION_AXIS,
    crop_halo,
    exchange_halo,
    global_sum,
    mesh_for,
    pad_leading,
    padded_size,
    select_devices,
    shard_leading,
    unpad_leading,
)
from . import advection, diffusion
from .flows import pole_flux_factors
from .grid import SftGrid
from .simulation import (
    Params,
    Physics,
    Segment,
    Simulation,
    compose_step,
    cpu_block_size,
    make_advance,
    make_flows,
    make_sources,
)

__all__ = [
    "LON_AXIS",
    "QUANTILES",
    "Placement",
    "advance_segment",
    "commit_sizes",
    "create_region_store",
    "ensemble_statistics",
    "history_statistics",
    "lon_halo_width",
    "make_lon_advance",
    "make_lon_step",
    "map_statistics",
    "place",
    "write_region",
]

Field = Float[Array, "*b theta phi"]
ShardMode = Literal["realization", "lon"]
LON_AXIS = "lon"
QUANTILES: tuple[float, ...] = (0.05, 0.5, 0.95)
"""Quantiles stored for every ensemble quantity (5, 50, 95 %)."""


# --------------------------------------------------------------------------- statistics
def ensemble_statistics(
    x: Float[ArrayLike, "realization ..."], quantiles: Sequence[float] = QUANTILES
) -> dict[str, Float[Array, "..."]]:
    """Mean, standard deviation and quantiles over the leading (realization) axis.

    Args:
        x: values per realization, realization first (at least 2 realizations).
        quantiles: probabilities in [0, 1].

    Returns:
        ``{"mean": (*rest), "std": (*rest), "quantile": (len(quantiles), *rest)}``. ``std`` is
        the sample standard deviation (``ddof=1``: an ensemble samples the spread of the
        model's response); quantiles interpolate linearly between order statistics (NumPy's
        default ``method="linear"``). Works on realization-sharded arrays under ``jit``.
    """
    x = jnp.asarray(x)
    q = jnp.asarray(quantiles, dtype=x.dtype)
    return {
        "mean": jnp.mean(x, axis=0),
        "std": jnp.std(x, axis=0, ddof=1),
        "quantile": jnp.quantile(x, q, axis=0),
    }


_stats_jit = jax.jit(ensemble_statistics, static_argnames="quantiles")


def map_statistics(br: Field, quantiles: Sequence[float] = QUANTILES) -> dict[str, np.ndarray]:
    """:func:`ensemble_statistics` of a (R, n_theta, n_phi) field batch, as host arrays."""
    out = _stats_jit(br, quantiles=tuple(quantiles))
    return {k: np.asarray(v) for k, v in out.items()}


def history_statistics(
    hist: Mapping[str, np.ndarray], quantiles: Sequence[float] = QUANTILES
) -> dict[str, dict[str, np.ndarray]]:
    """Statistics of every history quantity (each (R,)), in one device call."""
    names = list(hist)
    stacked = jnp.stack([jnp.asarray(hist[k], dtype=jnp.float64) for k in names], axis=1)
    out = {k: np.asarray(v) for k, v in _stats_jit(stacked, quantiles=tuple(quantiles)).items()}
    return {
        name: {"mean": out["mean"][i], "std": out["std"][i], "quantile": out["quantile"][:, i]}
        for i, name in enumerate(names)
    }


def statistics_attrs(name: str, units: str, long_name: str) -> dict[str, dict[str, str]]:
    """CF attributes of the ``<name>_mean``, ``_std`` and ``_quantile`` store variables."""
    return {
        "mean": {"units": units, "long_name": f"ensemble mean of {long_name}"},
        "std": {
            "units": units,
            "long_name": f"ensemble standard deviation (ddof=1) of {long_name}",
        },
        "quantile": {
            "units": units,
            "long_name": f"ensemble quantiles of {long_name} (linear interpolation)",
        },
    }


# --------------------------------------------------------------------------- placement
@dataclasses.dataclass(frozen=True, eq=False)
class Placement:
    """How a run's state lives on devices.

    Attributes:
        mode: ``"realization"`` (members split over devices) or ``"lon"`` (φ split).
        mesh: the 1-D mesh, or None for a single device.
        n_realizations: the ensemble size as configured.
        n_padded: the batch size on devices (``n_realizations`` rounded up to a multiple of
            the realization axis; equal to it for ``"lon"``).
        advance: jitted ``advance(br, params, keys, t0, dt, n) -> br`` of the padded batch.
    """

    mode: ShardMode
    mesh: Mesh | None
    n_realizations: int
    n_padded: int
    advance: Callable[..., Field]

    @property
    def n_devices(self) -> int:
        return 1 if self.mesh is None else int(self.mesh.devices.size)

    def _field_sharding(self) -> NamedSharding | None:
        if self.mesh is None:
            return None
        spec = P(REALIZATION_AXIS) if self.mode == "realization" else P(None, None, LON_AXIS)
        return NamedSharding(self.mesh, spec)

    def put_state(self, br: Field, params: Params, keys: Array) -> tuple[Field, Params, Array]:
        """Pad and place the initial state, parameters and keys."""
        return self.put_field(br), self.put_members(params), self.put_members(keys)

    def put_field(self, br: ArrayLike) -> Field:
        """Pad a (R, n_theta, n_phi) field batch and place it."""
        br = pad_leading(jnp.asarray(br), self.n_padded)
        sharding = self._field_sharding()
        return br if sharding is None else jax.device_put(br, sharding)

    def put_members(self, tree: Any) -> Any:
        """Pad a per-realization pytree (parameters, keys) and place it."""
        tree = pad_leading(tree, self.n_padded)
        if self.mesh is None:
            return tree
        if self.mode == "realization":
            return shard_leading(tree, self.mesh, REALIZATION_AXIS)
        return jax.device_put(tree, NamedSharding(self.mesh, P()))

    def unpad(self, br: Field) -> Field:
        """The configured realizations only (padded members dropped)."""
        return unpad_leading(br, self.n_realizations)

    def describe(self) -> dict[str, Any]:
        return {
            "shard": self.mode,
            "devices": self.n_devices,
            "padded_realizations": self.n_padded,
        }


def place(
    sim: Simulation,
    *,
    devices: int | Sequence[Any] | None = None,
    shard: ShardMode = "realization",
) -> Placement:
    """Choose devices for a simulation and build its jitted ``advance``.

    Args:
        sim: the built simulation.
        devices: how many devices to use (first ``n`` of ``jax.devices()``), an explicit list,
            or None for all.
        shard: ``"realization"`` splits the ensemble over devices (padding it to a multiple of
            the device count); ``"lon"`` splits the longitude axis of every member over all
            the devices, for single large runs.

    Raises:
        InputError: an impossible device count.
        ConfigError: ``shard="lon"`` with a physics the decomposition does not cover.
    """
    if isinstance(devices, int) or devices is None:
        pool = select_devices(devices)
    else:
        pool = select_devices(None, devices)
    n_r = sim.n_realizations
    if shard == "realization":
        if len(pool) == 1 or n_r == 1:
            block = cpu_block_size(sim.physics, n_r) if pool[0].platform == "cpu" else None
            advance = jax.jit(make_advance(sim.physics, block=block))
            return Placement("realization", None, n_r, n_r, advance)
        mesh = mesh_for(n_r, pool)
        return Placement(
            "realization", mesh, n_r, padded_size(n_r, mesh), jax.jit(make_advance(sim.physics))
        )
    if shard != "lon":
        raise InputError(f"shard must be 'realization' or 'lon', got {shard!r}")
    n_dev = _lon_device_count(sim.grid, sim.physics, len(pool))
    if n_dev == 1:
        return Placement("lon", None, n_r, n_r, jax.jit(make_advance(sim.physics)))
    mesh = jax.make_mesh(
        (n_dev,), (LON_AXIS,), axis_types=(jax.sharding.AxisType.Auto,), devices=pool[:n_dev]
    )
    return Placement("lon", mesh, n_r, n_r, make_lon_advance(sim.physics, mesh))


def advance_segment(
    advance: Callable[..., Field], br: Field, params: Params, keys: Array, seg: Segment
) -> Field:
    """:meth:`Simulation.advance_segment` with a given ``advance`` and (placed) state."""
    dtype = br.dtype
    if seg.n_full:
        br = advance(
            br,
            params,
            keys,
            jnp.asarray(seg.t0, dtype),
            jnp.asarray(seg.dt, dtype),
            jnp.asarray(seg.n_full, jnp.int32),
        )
    if seg.dt_last > 0:
        br = advance(
            br,
            params,
            keys,
            jnp.asarray(seg.t0 + seg.n_full * seg.dt, dtype),
            jnp.asarray(seg.dt_last, dtype),
            jnp.asarray(1, jnp.int32),
        )
    return br


# --------------------------------------------------------------------------- longitude split
def lon_halo_width(physics: Physics) -> int:
    """Columns of each neighbour an advection operator evaluation needs on a padded block.

    WENO3: the face left of column c uses cells c−2 … c+1, and each cell's Lax–Friedrichs α
    the v_φ faces c−3 … c+2, so a column's tendency reads v_φ from 5 columns left to 4
    right, and the attenuated v_φ at a face reads |B| one column further right: 5 both
    sides (4 is tested to fail). Upwind: 2.
    """
    if physics.advection_scheme is None:
        return 1
    space, _ = advection.ADVECTION_SCHEMES[physics.advection_scheme]
    return 5 if space == "weno3" else 2


def _uniform_dphi(grid: SftGrid) -> float:
    d = np.diff(np.append(grid.phi, grid.phi[0] + 2 * math.pi))
    step = 2 * math.pi / grid.n_phi
    if np.max(np.abs(d - step)) > 1e-6 * step:
        raise ConfigError(
            "shard = 'lon' needs uniformly spaced longitudes (the kernels' φ metrics are "
            f"compile-time constants, the same on every block); this grid's spacing varies by "
            f"{np.ptp(d) / step:.2g} of a cell"
        )
    return step


def _lon_device_count(grid: SftGrid, physics: Physics, n_avail: int) -> int:
    """The most devices (<= n_avail) that divide n_phi into blocks at least a halo wide."""
    _uniform_dphi(grid)
    h = lon_halo_width(physics)
    for n in range(n_avail, 0, -1):
        if grid.n_phi % n == 0 and grid.n_phi // n >= h:
            return n
    return 1


def _block_grid(grid: SftGrid, n_cols: int, step: float) -> SftGrid:
    """The grid of a padded block: same θ, ``n_cols`` columns of the global spacing."""
    return SftGrid(theta=grid.theta, phi=np.arange(n_cols, dtype=np.float64) * step)


def make_lon_step(
    physics: Physics, n_shards: int, axis_name: str = LON_AXIS, *, halo: int | None = None
) -> Callable:
    """One step of one realization on a longitude block, inside ``shard_map``.

    ``step(br, params, key, t, dt) -> br`` with ``br`` (n_theta, n_phi / n_shards), the same
    process order and arithmetic as :func:`jaxgeo.sft.simulation.make_step`. ``halo``
    overrides :func:`lon_halo_width` (tests show a narrower one is wrong).

    Raises:
        ConfigError: when n_phi does not split into blocks at least a halo wide.
    """
    grid = physics.grid
    step_phi = _uniform_dphi(grid)
    if grid.n_phi % n_shards:
        raise ConfigError(f"n_phi = {grid.n_phi} does not split into {n_shards} equal blocks")
    n_loc = grid.n_phi // n_shards
    h = lon_halo_width(physics) if halo is None else int(halo)
    if n_loc < h:
        raise ConfigError(
            f"longitude blocks of {n_loc} columns are narrower than the halo ({h}); "
            "use fewer devices"
        )

    def columns(x: Array, width: int) -> Array:
        """This block's columns of a global (..., n_phi) array, with ``width`` periodic
        neighbours on each side."""
        start = jax.lax.axis_index(axis_name).astype(jnp.int32) * n_loc - width
        idx = jnp.mod(start + jnp.arange(n_loc + 2 * width, dtype=jnp.int32), grid.n_phi)
        return jnp.take(x, idx, axis=-1)

    dphi = step_phi
    fac_n, fac_s = pole_flux_factors(grid)
    adv_grid = _block_grid(grid, n_loc + 2 * h, step_phi)
    flow_fn = None
    adv_tend = None
    stages: tuple = ()
    if physics.advection_scheme is not None:
        space, time = advection.ADVECTION_SCHEMES[physics.advection_scheme]
        flow_fn = make_flows(
            dataclasses.replace(physics, grid=adv_grid),
            file_columns=lambda x: columns(x, h),
        )
        adv_tend = advection.advection_operator(adv_grid, space)  # type: ignore[arg-type]
        # HipFT's low-storage SSPRK stages f1 <- a f + b f1 - c dt A(f1) (advection.py).
        stages = tuple(zip(*advection._STAGES[time], strict=True))
    plan = physics.diffusion_plan
    dif_grid = _block_grid(grid, n_loc + 2, step_phi)
    dif_op = diffusion.diffusion_operator(dif_grid) if plan is not None else None
    inv_dt0 = float(grid.inv_dtheta[0]) ** 2 / math.pi
    inv_dt1 = float(grid.inv_dtheta[-1]) ** 2 / math.pi

    def with_caps(interior: Field, north: Array, south: Array) -> Field:
        row = interior[..., :1, :]
        return jnp.concatenate(
            [
                jnp.broadcast_to(north, row.shape),
                interior[..., 1:-1, :],
                jnp.broadcast_to(south, row.shape),
            ],
            axis=-2,
        )

    def advect(br: Field, vt: Array, vp: Array, dt: Array) -> Field:
        # vt, vp on the padded block (halo h); vt0/vt1 the first/last interior θ face, owned.
        vt_in = vt[1:-1] if vt.shape[0] == grid.n_theta + 1 else vt
        vt0 = crop_halo(vt_in[0], h)
        vt1 = crop_halo(vt_in[-1], h)

        assert adv_tend is not None

        def op(f1: Field) -> Field:
            tend = crop_halo(adv_tend(exchange_halo(f1, h, axis_name), vt, vp), h)
            # Caps: minus the net flux through their face, over ALL blocks.
            fn = vt0 * jnp.where(vt0 >= 0.0, f1[0], f1[1]) * (fac_n * dphi)
            fs = vt1 * jnp.where(vt1 >= 0.0, f1[-2], f1[-1]) * (-fac_s * dphi)
            return with_caps(tend, -global_sum(fn, axis_name), -global_sum(fs, axis_name))

        f = br
        f1 = f
        for a, b, c in stages:
            new = f1 if b == 1.0 else b * f1
            if a != 0.0:
                new = a * f + new
            f1 = new + (c * dt) * op(f1)
        return f1

    def dif_apply(x: Field, nu: Array) -> Field:
        assert dif_op is not None
        y = crop_halo(dif_op(exchange_halo(x, 1, axis_name), nu), 1)
        pn = global_sum((x[1] - x[0]) * dphi, axis_name) * (2.0 * nu * inv_dt0)
        ps = global_sum((x[-2] - x[-1]) * dphi, axis_name) * (2.0 * nu * inv_dt1)
        return with_caps(y, pn, ps)

    def diffuse(br: Field, nu: Array, dt: Array) -> Field:
        assert plan is not None
        x = br
        for frac, s in zip(plan.cycle_fractions, plan.stages, strict=True):
            dtc = dt * frac if frac != 1.0 else dt
            if plan.scheme == "euler":
                hstep = dtc / s

                def body(x, _, hstep=hstep):
                    return x + hstep * dif_apply(x, nu), None

                x, _ = jax.lax.scan(body, x, None, length=s)
                continue
            coef = diffusion.sts_init(plan.scheme, s)
            xs = np.stack(
                [coef.u[1:], coef.v[1:], coef.one_minus_uv[1:], coef.ub[1:], coef.g[1:]], axis=1
            )
            u0 = x
            dty0 = dtc * dif_apply(x, nu)
            u1 = u0 + float(coef.ub[0]) * dty0

            def sts_body(carry, cf, u0=u0, dty0=dty0, dtc=dtc):
                ukm1, ukm2 = carry
                y = dif_apply(ukm1, nu)
                new = cf[0] * ukm1 + cf[1] * ukm2 + cf[2] * u0 + (cf[3] * dtc) * y + cf[4] * dty0
                return (new, ukm1), None

            (x, _), _ = jax.lax.scan(sts_body, (u1, u0), jnp.asarray(xs, dtype=x.dtype))
        return x

    # Sources are drawn on the whole sphere (the same numbers as one device: random flux
    # emergence is seeded per realization, not per block), then each block keeps its columns.
    global_sources = make_sources(physics)
    block_sources = (
        None
        if global_sources is None
        else lambda params, key, t, dtype: columns(global_sources(params, key, t, dtype), 0)
    )
    return compose_step(
        physics,
        flows=(
            None
            if flow_fn is None
            else lambda params, br, t: flow_fn(params, exchange_halo(br, h, axis_name), t)
        ),
        advect=advect if flow_fn is not None else None,
        diffuse=diffuse if plan is not None else None,
        sources=block_sources,
    )


def make_lon_advance(
    physics: Physics, mesh: Mesh, axis_name: str = LON_AXIS, *, halo: int | None = None
) -> Callable:
    """Jitted ``advance(br, params, keys, t0, dt, n) -> br`` with φ split over ``mesh``.

    Same signature and results (to round-off) as :func:`jaxgeo.sft.simulation.make_advance`;
    ``br`` (R, n_theta, n_phi) is sharded ``P(None, None, axis_name)``, the rest replicated.
    The whole step loop runs inside one ``shard_map``: halos and pole-cap sums are the only
    communication.
    """
    n = int(mesh.shape[axis_name])
    step = jax.vmap(make_lon_step(physics, n, axis_name, halo=halo), in_axes=(0, 0, 0, None, None))

    def local(br, params, keys, t0, dt, n_steps):
        def body(i, x):
            return step(x, params, keys, t0 + i.astype(x.dtype) * dt, dt)

        return jax.lax.fori_loop(0, n_steps, body, br)

    field = P(None, None, axis_name)
    sharded = jax.shard_map(
        local, mesh=mesh, in_specs=(field, P(), P(), P(), P(), P()), out_specs=field
    )
    return jax.jit(sharded)


# --------------------------------------------------------------------------- shared stores
def create_region_store(
    path: str | Path,
    template: xr.Dataset,
    sizes: Mapping[str, int],
    *,
    attrs: Mapping[str, Any] | None = None,
    committed: Mapping[str, int] | None = None,
) -> Path:
    """Create a store sized for its whole run, for several writer processes.

    Every variable of ``template`` is created with its dimensions resized to ``sizes``
    (e.g. the full ``time`` and ``history_time`` axes) and chunked with ONE realization (and
    one time) per chunk, so processes writing different realizations never touch the same
    chunk file. Coordinates of the fixed dimensions (``lat``, ``lon``, ``realization``,
    ``quantile``) and the time axes given complete in ``template`` are written; data
    variables are left to :func:`write_region` (unwritten chunks read as NaN).

    Args:
        path: the new store (must not exist).
        template: a Dataset with every variable (any length along the sized dimensions).
        sizes: final length of the dimensions that ``template`` holds only part of.
        attrs: global attributes (``config`` etc.).
        committed: initial committed lengths (``jaxgeo_committed``; readers trim to them),
            default: the full sizes.

    Returns:
        The store path.
    """
    import zarr

    from .._version import __version__
    from ..io.store import COMMITTED_ATTR

    path = Path(path)
    if path.exists():
        raise InputError(f"store {path} exists; remove it or pick another path")
    dims = {str(d): int(n) for d, n in template.sizes.items()}
    dims.update({str(k): int(v) for k, v in sizes.items()})
    root = zarr.open_group(path, mode="w-", zarr_format=3)
    for name, var in template.variables.items():
        shape = tuple(dims[str(d)] for d in var.dims)
        chunks = tuple(
            1 if d in ("realization",) or d in sizes else max(n, 1)
            for d, n in zip(var.dims, shape, strict=True)
        )
        if name in template.coords and var.dims == (name,) and str(name) in sizes:
            chunks = (max(shape[0], 1),)
        dtype = var.dtype
        fill = np.nan if np.issubdtype(dtype, np.floating) else 0
        arr = root.create_array(
            str(name),
            shape=shape,
            chunks=chunks,
            dtype=dtype,
            fill_value=fill,
            dimension_names=[str(d) for d in var.dims],
            attributes=dict(var.attrs),
        )
        if name in template.coords or not any(str(d) in sizes for d in var.dims):
            values = np.asarray(var.values)
            region = tuple(slice(0, n) for n in values.shape)
            arr[region] = values
    meta = dict(attrs or {})
    meta["jaxgeo_version"] = __version__
    meta[COMMITTED_ATTR] = dict(dims) if committed is None else {**dims, **committed}
    root.attrs.update(json.loads(json.dumps(meta)))
    return path


def write_region(path: str | Path, ds: xr.Dataset, region: Mapping[str, slice]) -> None:
    """Write every variable of ``ds`` into ``region`` of an existing store (no resizing).

    ``region`` gives, per dimension, the slice ``ds`` fills (dimensions not named are written
    whole). Writers of disjoint regions aligned with the chunks never conflict.
    """
    import zarr

    root = zarr.open_group(Path(path), mode="r+", zarr_format=3)
    for name, var in ds.data_vars.items():
        arr = typing.cast(zarr.Array, root[str(name)])
        dims = tuple(typing.cast(tuple[str, ...], arr.metadata.dimension_names))  # type: ignore[union-attr]
        var = var.transpose(*dims)
        index = tuple(region.get(d, slice(None)) for d in dims)
        arr[index] = np.asarray(var.values).astype(arr.dtype, copy=False)


def commit_sizes(path: str | Path, sizes: Mapping[str, int]) -> None:
    """Record new committed lengths (coordinator only, after the writers' barrier)."""
    from ..io.store import _commit, committed_sizes

    current = committed_sizes(path)
    current.update({str(k): int(v) for k, v in sizes.items()})
    _commit(Path(path), current)
