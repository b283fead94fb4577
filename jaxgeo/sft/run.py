"""The shell of ``jaxgeo sft run``: build, loop over segments, write the store, checkpoint.

Store layout (``docs/sft/output.md``): ``br(realization, time, lat, lon)`` in Gauss with
``lat`` ascending (both poles) and ``lon`` in [0, 360) without the periodic duplicate; the
history variables on ``(realization, history_time)``; per-realization parameters on
``realization``; the config TOML and the package version in the attributes.

Checkpoints live beside the store (``RUN.zarr.ckpt/``) and are written after every stored map
(or at ``output.checkpoint_cadence_hours``). ``--resume`` restores the latest one and carries
on; the computation is deterministic, so a resumed run equals an uninterrupted one bit for
bit, and rows the interrupted run already stored are not written twice.

Devices (:mod:`jaxgeo.sft.ensemble`): the realizations are split over all devices by default
(``devices`` limits the count; the batch is padded to a multiple of it and the padding never
reaches the store), or, with ``shard="lon"``, the longitudes of every member are. With two or
more realizations the store also holds ensemble statistics (``br_mean``, ``br_std``,
``br_quantile`` and ``<history>_mean/_std/_quantile``). Under ``jax.distributed`` (several
processes) the coordinator creates the store sized for the whole run with one realization
per chunk, and every process writes its own realizations into it.
"""

from __future__ import annotations

import logging
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import xarray as xr
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ..errors import FileFormatError, InputError, StoreExistsError
from ..io import append, committed_sizes, create_store, open_store, read_attrs
from ..parallel import REALIZATION_AXIS, barrier, is_coordinator, pad_leading, select_devices
from ..parallel.distributed import interleave_processes, native_stdout_to_stderr, put_global
from . import diagnostics, ensemble
from .config import SftConfig
from .simulation import Simulation, build, realization_table

log = logging.getLogger(__name__)


def checkpoint_dir(out: Path) -> Path:
    return out.with_name(out.name + ".ckpt")


def _lat_lon(sim: Simulation) -> tuple[np.ndarray, np.ndarray]:
    return sim.grid.lat_deg[::-1].copy(), sim.grid.lon_deg.copy()


def _to_store_layout(br: np.ndarray) -> np.ndarray:
    """(R, n_theta, n_phi) with north first -> (R, lat ascending, lon)."""
    return np.asarray(br)[:, ::-1, :]


def _quantile_coord() -> tuple[str, np.ndarray, dict[str, str]]:
    return ("quantile", np.asarray(ensemble.QUANTILES), {"long_name": "probability", "units": "1"})


def _map_dataset(
    sim: Simulation,
    br: np.ndarray | None,
    t: float,
    stats: dict[str, np.ndarray] | None = None,
    *,
    realizations: np.ndarray | None = None,
) -> xr.Dataset:
    """Maps at one time: ``br`` (R, n_theta, n_phi) host values (or None: statistics only)
    and, for ensembles, the statistics from :func:`ensemble.map_statistics`."""
    lat, lon = _lat_lon(sim)
    dtype = np.dtype(sim.config.output.dtype)
    data_vars: dict[str, Any] = {}
    coords: dict[str, Any] = {
        "time": ("time", np.asarray([t]), {"units": "hours", "long_name": "time since start"}),
        "lat": ("lat", lat, {"units": "degrees_north", "long_name": "latitude"}),
        "lon": ("lon", lon, {"units": "degrees_east", "long_name": "Carrington longitude"}),
    }
    if br is not None:
        data = _to_store_layout(br).astype(dtype)[:, None]
        data_vars["br"] = (
            ("realization", "time", "lat", "lon"),
            data,
            {"units": "G", "long_name": "radial magnetic field"},
        )
        coords["realization"] = (
            np.arange(sim.n_realizations) if realizations is None else realizations
        )
    if stats is not None:
        stat_attrs = ensemble.statistics_attrs("br", "G", "radial magnetic field")
        coords["quantile"] = _quantile_coord()
        for kind in ("mean", "std"):
            values = stats[kind][None, ::-1, :].astype(dtype)
            data_vars[f"br_{kind}"] = (("time", "lat", "lon"), values, stat_attrs[kind])
        q = stats["quantile"][:, None, ::-1, :].astype(dtype)
        data_vars["br_quantile"] = (("quantile", "time", "lat", "lon"), q, stat_attrs["quantile"])
    return xr.Dataset(data_vars, coords=coords)


def _history_dataset(
    sim: Simulation, rows: list[tuple[float, dict[str, np.ndarray]]]
) -> xr.Dataset:
    times = np.asarray([t for t, _ in rows])
    names = list(rows[0][1])
    data_vars: dict[str, Any] = {}
    for name in names:
        values = np.stack([h[name] for _, h in rows], axis=1).astype(np.float64)  # (R, T)
        attrs: dict[str, Any] = {
            "units": diagnostics.HISTORY_UNITS.get(name, ""),
            "long_name": diagnostics.HISTORY_LONG_NAMES.get(name, name),
        }
        data_vars[name] = (("realization", "history_time"), values, attrs)
    coords: dict[str, Any] = {
        "realization": np.arange(sim.n_realizations),
        "history_time": (
            "history_time",
            times,
            {"units": "hours", "long_name": "time since start"},
        ),
    }
    if sim.n_realizations >= 2:
        coords["quantile"] = _quantile_coord()
        per_row = [ensemble.history_statistics(h) for _, h in rows]
        for name in names:
            units = diagnostics.HISTORY_UNITS.get(name, "")
            long = diagnostics.HISTORY_LONG_NAMES.get(name, name)
            stat_attrs = ensemble.statistics_attrs(name, units, long)
            for kind in ("mean", "std"):
                values = np.asarray([st[name][kind] for st in per_row], dtype=np.float64)
                data_vars[f"{name}_{kind}"] = (("history_time",), values, stat_attrs[kind])
            q = np.stack([st[name]["quantile"] for st in per_row], axis=1).astype(np.float64)
            data_vars[f"{name}_quantile"] = (
                ("quantile", "history_time"),
                q,
                stat_attrs["quantile"],
            )
    return xr.Dataset(data_vars, coords=coords)


def _maps_at(sim: Simulation, placement: ensemble.Placement, br: jax.Array, t: float) -> xr.Dataset:
    """The map Dataset at time ``t`` of the configured realizations (single process)."""
    real = placement.unpad(br)
    stats = ensemble.map_statistics(real) if sim.n_realizations >= 2 else None
    return _map_dataset(sim, np.asarray(real), t, stats)


def _initial_dataset(sim: Simulation, maps: xr.Dataset, hist: dict[str, np.ndarray]) -> xr.Dataset:
    t0 = sim.config.time.start_hours
    ds = xr.merge([maps, _history_dataset(sim, [(t0, hist)])])
    for name, values in realization_table(sim).items():
        ds[name] = ("realization", values, {"long_name": f"per-realization value of {name}"})
    return ds


def _check_out(out: Path, *, overwrite: bool, resume: bool) -> None:
    if resume:
        if not out.exists():
            raise FileFormatError(f"--resume: output store {out} does not exist; nothing to resume")
        if not checkpoint_dir(out).is_dir():
            raise FileFormatError(
                f"--resume: no checkpoints beside {out} (expected {checkpoint_dir(out)}); "
                "the run cannot be resumed, start it again with --overwrite"
            )
        return
    if out.exists() and not overwrite:
        raise StoreExistsError(f"output store {out} already exists; pass --overwrite to replace it")
    if out.exists() and not (out / "zarr.json").exists():
        raise StoreExistsError(
            f"{out} exists and is not a jaxgeo store; refusing to replace it even with --overwrite"
        )


def run(
    cfg: SftConfig,
    out: str | Path,
    *,
    overwrite: bool = False,
    resume: bool = False,
    plots: str | Path | None = None,
    progress: bool = True,
    stop_after_segments: int | None = None,
    devices: int | None = None,
    shard: ensemble.ShardMode = "realization",
) -> dict[str, Any]:
    """Run a simulation and write its store; returns the JSON summary.

    Args:
        cfg: the validated config.
        out: output store path (``.zarr`` directory).
        overwrite: replace an existing store (the old one is kept until the new one exists).
        resume: continue from the latest checkpoint beside ``out``.
        plots: folder for the standard figures, or None.
        progress: show a progress bar on stderr.
        stop_after_segments: stop early after this many segments (tests of resume).
        devices: use the first ``devices`` devices (default: all, every process's).
        shard: ``"realization"`` (split the ensemble over devices) or ``"lon"`` (split the
            longitudes of each member; single large runs).
    """
    out = Path(out)
    multi = jax.process_count() > 1
    if multi:
        if shard != "realization":
            raise InputError(
                "multi-process runs split realizations over processes; --shard lon works "
                "within one process only"
            )
        with native_stdout_to_stderr():
            return _run_multiprocess(
                cfg,
                out,
                overwrite=overwrite,
                resume=resume,
                plots=plots,
                devices=devices,
                stop_after_segments=stop_after_segments,
            )
    _check_out(out, overwrite=overwrite, resume=resume)
    cfg = cfg.with_absolute_paths()
    config_text = cfg.to_toml()
    if resume:
        stored = read_attrs(out).get("config")
        if stored is not None and stored != config_text:
            raise InputError(
                f"--resume: the config differs from the one {out} was written with; "
                "resume with the same config or start again with --overwrite"
            )
    sim = build(cfg)
    placement = ensemble.place(sim, devices=devices, shard=shard)
    n_seg = len(sim.segments)
    log.info(
        "grid %d x %d, %d realization(s), dt %.4g h, %d segments, %d %s device(s), shard %s",
        sim.grid.n_theta,
        sim.grid.n_phi,
        sim.n_realizations,
        sim.dt_step,
        n_seg,
        placement.n_devices,
        jax.devices()[0].platform,
        placement.mode,
    )
    from ..io import Checkpointer

    ckpt_path = checkpoint_dir(out)
    br, params, keys = placement.put_state(sim.br0, sim.params, sim.keys)
    start_seg = 0
    stored_time = -math.inf
    stored_hist_time = -math.inf
    if resume:
        ckpt = Checkpointer(ckpt_path, create=False)
        target = jax.ShapeDtypeStruct(sim.br0.shape, sim.br0.dtype)
        state, meta = ckpt.restore(target={"br": target})
        br = placement.put_field(jnp.asarray(state["br"]))
        start_seg = int(meta["segment"]) + 1
        sizes = committed_sizes(out)
        ds = open_store(out)
        stored_time = float(ds["time"].values[-1]) if sizes.get("time", 0) else -math.inf
        stored_hist_time = (
            float(ds["history_time"].values[-1]) if sizes.get("history_time", 0) else -math.inf
        )
        log.info("resuming at t = %.4g h (segment %d of %d)", meta["time_hours"], start_seg, n_seg)
    else:
        if sim.assimilation is not None:
            k = sim.assimilation.index_at(cfg.time.start_hours)
            if k is not None:
                br = sim.assimilation.apply(br, params, sim.assimilation.obs_br[k], k)
        hist0 = sim.compute_history(placement.unpad(br), cfg.time.start_hours)
        ds0 = _initial_dataset(sim, _maps_at(sim, placement, br, cfg.time.start_hours), hist0)
        attrs = {
            "config": config_text,
            "title": "jaxgeo surface flux transport run",
            "dt_hours": sim.dt_step,
        }
        if ckpt_path.exists():
            shutil.rmtree(ckpt_path)
        create_store(
            out, ds0, append_dim=("time", "history_time"), overwrite=overwrite, attrs=attrs
        )
        ckpt = Checkpointer(ckpt_path, max_to_keep=2)

    pending: list[tuple[float, dict[str, np.ndarray]]] = []

    def flush() -> None:
        rows = [(t, h) for t, h in pending if t > stored_hist_time + 1e-9]
        if rows:
            append(out, _history_dataset(sim, rows), "history_time")
        pending.clear()

    bar = _progress_bar(cfg, sim, start_seg) if progress else None
    wall0 = time.perf_counter()
    n_steps = 0
    i = start_seg - 1  # last segment done (a resumed, already finished run does none)
    for i in range(start_seg, n_seg):
        seg = sim.segments[i]
        br = ensemble.advance_segment(placement.advance, br, params, keys, seg)
        n_steps += seg.n_full + (1 if seg.dt_last > 0 else 0)
        if "assimilation" in seg.events and sim.assimilation is not None:
            k = sim.assimilation.index_at(seg.t1)
            if k is not None:
                br = sim.assimilation.apply(br, params, sim.assimilation.obs_br[k], k)
        if "history" in seg.events or "end" in seg.events:
            pending.append((seg.t1, sim.compute_history(placement.unpad(br), seg.t1)))
        is_map = "map" in seg.events or "end" in seg.events
        if is_map or "checkpoint" in seg.events:
            real = placement.unpad(br)
            _check_finite_field(real, seg.t1)
            flush()
            if is_map and seg.t1 > stored_time + 1e-9:
                append(out, _maps_at(sim, placement, br, seg.t1), "time")
            ckpt.save(i, {"br": real}, {"segment": i, "time_hours": seg.t1})
        if bar is not None:
            bar.update(seg.t1 - seg.t0)
        if stop_after_segments is not None and i + 1 - start_seg >= stop_after_segments:
            flush()
            break
    else:
        flush()
    jax.block_until_ready(br)
    wall = time.perf_counter() - wall0
    if bar is not None:
        bar.close()
    ckpt.close()
    finished = stop_after_segments is None or start_seg + (stop_after_segments or 0) >= n_seg
    summary = _summary(sim, out, finished, n_steps, wall, placement)
    hist = sim.compute_history(placement.unpad(br), sim.segments[max(0, min(i, n_seg - 1))].t1)
    _final_values(summary, sim, hist)
    if plots is not None:
        from .plot import plot_run

        paths = plot_run(open_store(out), plots)
        summary["plots"] = [str(p) for p in paths]
    return summary


def _check_finite_field(br: jax.Array, t: float) -> None:
    if not bool(jnp.all(jnp.isfinite(br))):
        raise FloatingPointError(
            f"the field became non-finite by t = {t:.4g} h; the run is unstable "
            "(reduce time.dt_max_hours or check the parameters)"
        )


def _progress_bar(cfg: SftConfig, sim: Simulation, start_seg: int) -> Any:
    from tqdm import tqdm

    bar = tqdm(
        total=cfg.time.end_hours - cfg.time.start_hours,
        unit="h",
        desc="sft",
        file=sys.stderr,
        bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} h [{elapsed}<{remaining}, {rate_fmt}]",
    )
    n_seg = len(sim.segments)
    done = cfg.time.end_hours if start_seg >= n_seg else sim.segments[start_seg].t0
    bar.update(done - cfg.time.start_hours)
    return bar


def _summary(
    sim: Simulation,
    out: Path,
    finished: bool,
    n_steps: int,
    wall: float,
    placement: ensemble.Placement,
) -> dict[str, Any]:
    cells = sim.grid.n_theta * sim.grid.n_phi
    return {
        "ok": True,
        "command": "sft run",
        "out": str(out),
        "finished": bool(finished),
        "n_realizations": sim.n_realizations,
        "grid": [sim.grid.n_theta, sim.grid.n_phi],
        "dt_hours": sim.dt_step,
        "steps": n_steps,
        "wall_s": round(wall, 3),
        "cell_steps_per_s": (cells * n_steps * sim.n_realizations / wall) if wall > 0 else None,
        **placement.describe(),
        "processes": jax.process_count(),
    }


def _final_values(summary: dict[str, Any], sim: Simulation, hist: dict[str, np.ndarray]) -> None:
    for name in ("polar_field_north", "polar_field_south", "ax_dipole", "flux_positive"):
        if name in hist:
            summary[f"final_{name}"] = [float(v) for v in hist[name]]
    if "validation_err_hhabs" in hist and sim.exact is not None:
        summary["final_validation_err_hhabs"] = [float(v) for v in hist["validation_err_hhabs"]]


# ------------------------------------------------------------------------ several processes
def _local_rows(br: jax.Array, n_real: int) -> list[tuple[slice, np.ndarray]]:
    """The realization rows this process holds, as (slice of the realization axis, values)."""
    rows = []
    seen = set()
    for shard in br.addressable_shards:
        sl = shard.index[0]
        start = sl.start or 0
        stop = min(sl.stop if sl.stop is not None else br.shape[0], n_real)
        if start >= stop or start in seen:
            continue
        seen.add(start)
        rows.append((slice(start, stop), np.asarray(shard.data)[: stop - start]))
    return rows


def _schedule_counts(sim: Simulation) -> tuple[list[float], list[float], list[int], list[int]]:
    """Map and history times of the whole run (start included) from the segment schedule, and,
    per segment, how many of each are stored once that segment is done."""
    t0 = sim.config.time.start_hours
    map_times, hist_times = [t0], [t0]
    maps_done, hist_done = [], []
    for seg in sim.segments:
        if "history" in seg.events or "end" in seg.events:
            hist_times.append(seg.t1)
        if "map" in seg.events or "end" in seg.events:
            map_times.append(seg.t1)
        maps_done.append(len(map_times))
        hist_done.append(len(hist_times))
    return map_times, hist_times, maps_done, hist_done


def _run_multiprocess(
    cfg: SftConfig,
    out: Path,
    *,
    overwrite: bool,
    resume: bool,
    plots: str | Path | None,
    devices: int | None,
    stop_after_segments: int | None = None,
) -> dict[str, Any]:
    """One process of a ``jax.distributed`` run: SPMD over every process's devices.

    The coordinator (process 0) creates the store sized for the whole run (every map and
    history time known from the schedule) with one realization per chunk; after each map
    every process writes the realizations it holds into their region, the coordinator writes
    the history rows and statistics (small, gathered to every process), and commits the new
    length once all processes passed a barrier. Then every process saves its shards of the
    state into one orbax checkpoint beside the store; ``resume`` restores it (on the same
    process and device counts) and rewrites nothing already committed differently: regions
    are rewritten with the same values at worst.
    """
    # Every process checks (they share the file system), so that a refusal stops all of them
    # rather than leaving the others waiting at a barrier for a coordinator that gave up.
    _check_out(out, overwrite=overwrite, resume=resume)
    cfg = cfg.with_absolute_paths()
    config_text = cfg.to_toml()
    if resume:
        stored = read_attrs(out)
        if stored.get("config") not in (None, config_text):
            raise InputError(
                f"--resume: the config differs from the one {out} was written with; "
                "resume with the same config or start again with --overwrite"
            )
        if stored.get("processes") not in (None, jax.process_count()):
            raise InputError(
                f"--resume: {out} was written by {stored['processes']} processes, this run has "
                f"{jax.process_count()}; resume with the same number of processes"
            )
    sim = build(cfg)
    n_r = sim.n_realizations
    n_proc = jax.process_count()
    # Round-robin over processes, so that the mesh over the first min(R, devices) devices
    # gives every process realizations to compute and write (--devices N: the first N of
    # that order).
    pool = select_devices(devices, interleave_processes(jax.devices()))
    used = {d.process_index for d in pool[: min(n_r, len(pool))]}
    if len(used) < n_proc:
        raise InputError(
            f"a run over {n_proc} processes needs at least {n_proc} realizations and devices "
            f"on every process; got {n_r} realization(s) on {len(pool)} device(s) of "
            f"processes {sorted(used)}"
        )
    placement = ensemble.place(sim, devices=pool, shard="realization")
    assert placement.mesh is not None  # several processes: several devices and members
    members = NamedSharding(placement.mesh, P(REALIZATION_AXIS))
    replicated = NamedSharding(placement.mesh, P())

    def put_members(tree: Any) -> Any:
        return put_global(pad_leading(tree, placement.n_padded), members)

    br = put_members(sim.br0)
    params, keys = put_members(sim.params), put_members(sim.keys)
    t0 = cfg.time.start_hours
    map_times, hist_times, maps_done, hist_done = _schedule_counts(sim)
    n_seg = len(sim.segments)
    ckpt_path = checkpoint_dir(out)
    log.info(
        "process %d of %d: %d realization(s) on %d device(s) (%d local), %d segments",
        jax.process_index(),
        n_proc,
        n_r,
        placement.n_devices,
        sum(d.process_index == jax.process_index() for d in placement.mesh.devices.flat),
        n_seg,
    )

    # Small results (histories, statistics, the finiteness check) come out of their programs
    # replicated on every device, so each is one collective and every process reads it.
    history_all = jax.jit(sim.history, out_shardings=replicated)
    stats_all = jax.jit(
        lambda x: ensemble.ensemble_statistics(placement.unpad(x)), out_shardings=replicated
    )
    finite_all = jax.jit(lambda x: jnp.all(jnp.isfinite(x)), out_shardings=replicated)

    def history(br: jax.Array, t: float) -> dict[str, np.ndarray]:
        exact = None
        if sim.exact is not None:
            exact = put_members(jnp.asarray(sim.exact(t), br.dtype))
        return {k: np.asarray(v)[:n_r] for k, v in history_all(br, exact).items()}

    def assimilate(br: jax.Array, t: float) -> jax.Array:
        if sim.assimilation is None:
            return br
        k = sim.assimilation.index_at(t)
        if k is None:
            return br
        obs = put_global(np.asarray(sim.assimilation.obs_br[k]), replicated)
        return sim.assimilation.apply(br, params, obs, k)

    def write_maps(br: jax.Array, k: int, t: float) -> None:
        if not bool(finite_all(br)):
            raise FloatingPointError(
                f"the field became non-finite by t = {t:.4g} h; the run is unstable "
                "(reduce time.dt_max_hours or check the parameters)"
            )
        for sl, values in _local_rows(br, n_r):
            ds = _map_dataset(sim, values, t, realizations=np.arange(sl.start, sl.stop))
            ensemble.write_region(out, ds, {"realization": sl, "time": slice(k, k + 1)})
        if n_r >= 2:
            # A collective: every process takes part, the coordinator writes.
            st = {name: np.asarray(v) for name, v in stats_all(br).items()}
            if is_coordinator():
                ds = _map_dataset(sim, None, t, st)
                ensemble.write_region(out, ds, {"time": slice(k, k + 1)})

    from ..io import Checkpointer

    pending: list[tuple[float, dict[str, np.ndarray]]] = []

    def commit(tag: str, n_maps: int, n_hist: int) -> None:
        """Coordinator writes the pending history rows; all meet; the new lengths count."""
        if is_coordinator() and pending:
            region = {"history_time": slice(n_hist - len(pending), n_hist)}
            ensemble.write_region(out, _history_dataset(sim, pending), region)
        pending.clear()
        barrier(f"sft-written-{tag}")
        if is_coordinator():
            ensemble.commit_sizes(out, {"time": n_maps, "history_time": n_hist})

    if resume:
        ckpt = Checkpointer(ckpt_path, create=False)
        target = jax.ShapeDtypeStruct(br.shape, br.dtype, sharding=members)
        state, meta = ckpt.restore(target={"br": target})
        br = state["br"]
        last = int(meta["segment"])
        start_seg = last + 1
        n_maps, n_hist = maps_done[last], hist_done[last]
        log.info("resuming at t = %.4g h (segment %d of %d)", meta["time_hours"], start_seg, n_seg)
        barrier("sft-restored")
    else:
        br = assimilate(br, t0)
        hist0 = history(br, t0)
        barrier("sft-checked")  # nobody looks at `out` any more before the coordinator
        if is_coordinator():
            if out.exists():
                shutil.rmtree(out)
            if ckpt_path.exists():
                shutil.rmtree(ckpt_path)
            template = _initial_dataset(
                sim, _map_dataset(sim, np.asarray(sim.br0), t0, None), hist0
            )
            if n_r >= 2:
                zeros = {
                    "mean": np.zeros(sim.grid.shape),
                    "std": np.zeros(sim.grid.shape),
                    "quantile": np.zeros((len(ensemble.QUANTILES),) + sim.grid.shape),
                }
                template = xr.merge([template, _map_dataset(sim, None, t0, zeros)])
            template = template.reindex(time=map_times, history_time=hist_times)
            ensemble.create_region_store(
                out,
                template,
                {"time": len(map_times), "history_time": len(hist_times)},
                attrs={
                    "config": config_text,
                    "title": "jaxgeo surface flux transport run",
                    "dt_hours": sim.dt_step,
                    "processes": n_proc,
                },
                committed={"time": 0, "history_time": 0},
            )
            ckpt_path.mkdir(parents=True)
        barrier("sft-store-created")
        ckpt = Checkpointer(ckpt_path, max_to_keep=2, create=False)
        start_seg = 0
        n_maps, n_hist = 1, 1
        write_maps(br, 0, t0)
        pending.append((t0, hist0))
        commit("start", n_maps, n_hist)

    last_hist: dict[str, np.ndarray] | None = None
    n_steps = 0
    wall0 = time.perf_counter()
    i = start_seg - 1
    for i in range(start_seg, n_seg):
        seg = sim.segments[i]
        br = ensemble.advance_segment(placement.advance, br, params, keys, seg)
        n_steps += seg.n_full + (1 if seg.dt_last > 0 else 0)
        if "assimilation" in seg.events:
            br = assimilate(br, seg.t1)
        if "history" in seg.events or "end" in seg.events:
            last_hist = history(br, seg.t1)
            pending.append((seg.t1, last_hist))
        is_map = "map" in seg.events or "end" in seg.events
        if is_map or "checkpoint" in seg.events:
            if is_map:
                write_maps(br, n_maps, seg.t1)
                n_maps += 1
            n_hist += len(pending)
            assert (n_maps, n_hist) == (maps_done[i], hist_done[i])
            commit(f"segment-{i}", n_maps, n_hist)
            ckpt.save(i, {"br": br}, {"segment": i, "time_hours": seg.t1})
        if stop_after_segments is not None and i + 1 - start_seg >= stop_after_segments:
            break
    jax.block_until_ready(br)
    wall = time.perf_counter() - wall0
    barrier("sft-done")
    ckpt.close()
    finished = i + 1 >= n_seg
    summary = _summary(sim, out, finished, n_steps, wall, placement)
    if last_hist is None:
        last_hist = history(br, sim.segments[max(0, min(i, n_seg - 1))].t1)
    _final_values(summary, sim, last_hist)
    if plots is not None and is_coordinator():
        from .plot import plot_run

        summary["plots"] = [str(p) for p in plot_run(open_store(out), plots)]
    return summary


def config_for_store(out: Path) -> SftConfig:
    """The config a store was written with (its ``config`` attribute)."""
    text = read_attrs(out).get("config")
    if text is None:
        raise FileFormatError(
            f"store {out} has no 'config' attribute; it was not written by jaxgeo sft run"
        )
    return SftConfig.from_toml_text(text)


__all__ = ["checkpoint_dir", "config_for_store", "run"]
