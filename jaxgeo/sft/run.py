"""The shell of ``jaxgeo sft run``: build, loop over segments, write the store, checkpoint.

Store layout (``docs/sft/output.md``): ``br(realization, time, lat, lon)`` in Gauss with
``lat`` ascending (both poles) and ``lon`` in [0, 360) without the periodic duplicate; the
history variables on ``(realization, history_time)``; per-realization parameters on
``realization``; the config TOML and the package version in the attributes.

Checkpoints live beside the store (``RUN.zarr.ckpt/``) and are written after every stored map
(or at ``output.checkpoint_cadence_hours``). ``--resume`` restores the latest one and carries
on; the computation is deterministic, so a resumed run equals an uninterrupted one bit for
bit, and rows the interrupted run already stored are not written twice.
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

from ..errors import FileFormatError, InputError, StoreExistsError
from ..io import append, committed_sizes, create_store, open_store, read_attrs
from . import diagnostics
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


def _map_dataset(sim: Simulation, br: np.ndarray, t: float) -> xr.Dataset:
    lat, lon = _lat_lon(sim)
    dtype = np.dtype(sim.config.output.dtype)
    data = _to_store_layout(br).astype(dtype)[:, None]
    return xr.Dataset(
        {
            "br": (
                ("realization", "time", "lat", "lon"),
                data,
                {"units": "G", "long_name": "radial magnetic field"},
            )
        },
        coords={
            "realization": np.arange(sim.n_realizations),
            "time": ("time", np.asarray([t]), {"units": "hours", "long_name": "time since start"}),
            "lat": ("lat", lat, {"units": "degrees_north", "long_name": "latitude"}),
            "lon": ("lon", lon, {"units": "degrees_east", "long_name": "Carrington longitude"}),
        },
    )


def _history_dataset(
    sim: Simulation, rows: list[tuple[float, dict[str, np.ndarray]]]
) -> xr.Dataset:
    times = np.asarray([t for t, _ in rows])
    names = list(rows[0][1])
    data_vars = {}
    for name in names:
        values = np.stack([h[name] for _, h in rows], axis=1).astype(np.float64)  # (R, T)
        attrs = {
            "units": diagnostics.HISTORY_UNITS.get(name, ""),
            "long_name": diagnostics.HISTORY_LONG_NAMES.get(name, name),
        }
        data_vars[name] = (("realization", "history_time"), values, attrs)
    return xr.Dataset(
        data_vars,
        coords={
            "realization": np.arange(sim.n_realizations),
            "history_time": (
                "history_time",
                times,
                {"units": "hours", "long_name": "time since start"},
            ),
        },
    )


def _initial_dataset(sim: Simulation, br: np.ndarray, hist: dict[str, np.ndarray]) -> xr.Dataset:
    t0 = sim.config.time.start_hours
    ds = xr.merge([_map_dataset(sim, br, t0), _history_dataset(sim, [(t0, hist)])])
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
    """
    out = Path(out)
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
    n_seg = len(sim.segments)
    log.info(
        "grid %d x %d, %d realization(s), dt %.4g h, %d segments, %s",
        sim.grid.n_theta,
        sim.grid.n_phi,
        sim.n_realizations,
        sim.dt_step,
        n_seg,
        jax.devices()[0].platform,
    )
    from ..io import Checkpointer

    ckpt_path = checkpoint_dir(out)
    br = sim.br0
    start_seg = 0
    stored_time = -math.inf
    stored_hist_time = -math.inf
    if resume:
        ckpt = Checkpointer(ckpt_path, create=False)
        state, meta = ckpt.restore(target={"br": jax.ShapeDtypeStruct(br.shape, br.dtype)})
        br = jnp.asarray(state["br"])
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
                br = sim.assimilation.apply(br, sim.params, sim.assimilation.obs_br[k], k)
        hist0 = sim.compute_history(br, cfg.time.start_hours)
        ds0 = _initial_dataset(sim, np.asarray(br), hist0)
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

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(
            total=cfg.time.end_hours - cfg.time.start_hours,
            unit="h",
            desc="sft",
            file=sys.stderr,
            bar_format="{l_bar}{bar}| {n:.1f}/{total:.1f} h [{elapsed}<{remaining}, {rate_fmt}]",
        )
        bar.update(sim.segments[start_seg].t0 - cfg.time.start_hours if start_seg < n_seg else 0)
    wall0 = time.perf_counter()
    n_steps = 0
    for i in range(start_seg, n_seg):
        seg = sim.segments[i]
        br = sim.advance_segment(br, seg)
        n_steps += seg.n_full + (1 if seg.dt_last > 0 else 0)
        if "assimilation" in seg.events and sim.assimilation is not None:
            k = sim.assimilation.index_at(seg.t1)
            if k is not None:
                br = sim.assimilation.apply(br, sim.params, sim.assimilation.obs_br[k], k)
        if "history" in seg.events or "end" in seg.events:
            pending.append((seg.t1, sim.compute_history(br, seg.t1)))
        is_map = "map" in seg.events or "end" in seg.events
        if is_map or "checkpoint" in seg.events:
            host = np.asarray(br)
            if not np.all(np.isfinite(host)):
                raise FloatingPointError(
                    f"the field became non-finite by t = {seg.t1:.4g} h; the run is unstable "
                    "(reduce time.dt_max_hours or check the parameters)"
                )
            flush()
            if is_map and seg.t1 > stored_time + 1e-9:
                append(out, _map_dataset(sim, host, seg.t1), "time")
            ckpt.save(i, {"br": br}, {"segment": i, "time_hours": seg.t1})
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
    cells = sim.grid.n_theta * sim.grid.n_phi
    summary: dict[str, Any] = {
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
    }
    hist = sim.compute_history(br, sim.segments[min(i, n_seg - 1)].t1)
    for name in ("polar_field_north", "polar_field_south", "ax_dipole", "flux_positive"):
        if name in hist:
            summary[f"final_{name}"] = [float(v) for v in hist[name]]
    if "validation_err_hhabs" in hist and sim.exact is not None:
        summary["final_validation_err_hhabs"] = [float(v) for v in hist["validation_err_hhabs"]]
    if plots is not None:
        from .plot import plot_run

        paths = plot_run(open_store(out), plots)
        summary["plots"] = [str(p) for p in paths]
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
