"""Gradient-based parameter inference through flux-transport runs (``jaxgeo sft infer``).

The pieces, from the core outwards:

- :class:`ParamSpec`: one fitted config key (``"diffusion.nu_km2_s"``, ``"flow.meridional.p1"``,
  ...) with its reparametrisation: ``log`` (x = ref·e^u, positivity, for ν, B_att, the emergence
  rate and the initial-map scale), ``tanh`` (x = lo + (hi − lo)(1 + tanh u)/2, bounds, for the
  flow coefficients) or ``log-tanh`` (the same in log space, a positive key with bounds).
- :class:`ForwardModel`: ``predict(theta) -> observables`` — the maps at the observed map times
  and history series (polar fields, axial dipole, ...) at the observed history times, for a
  mapping ``theta`` of physical values. It is a pure function of ``theta``: one
  :func:`~jaxgeo.sft.simulation.make_scan` per interval between observations, nested in two
  ``lax.scan`` levels (blocks ending at map times, sub-intervals ending at history times),
  each level and each step wrapped in ``jax.checkpoint``, so reverse-mode memory is
  O(blocks + sub-intervals + steps per sub-interval) fields rather than O(steps).
- :class:`Observations`: maps and history series of one realization of a run store
  (``jaxgeo sft run ... --out OBS.zarr``), optionally with noise added.
- :class:`MisfitSpec` and :class:`Problem`: weighted least squares, normalised so the loss is
  O(1): Σ_t Σ_cells W (p − o)² / Σ W o² for the maps (W = cell area, times μ^p on the visible
  disk for a data-assimilation-like visibility mask) plus, per history series,
  Σ_t (p − o)² / Σ_t o². The residual vector r has loss = rᵀr.
- :func:`fit`: L-BFGS (``optax.lbfgs`` with its zoom line search) or Adam in the unconstrained
  coordinates, multi-start, stopped on the gradient norm or the relative loss change.
- :func:`fisher_uncertainty`: Gauss–Newton covariance σ² (JᵀJ)⁻¹ at the optimum, J the
  Jacobian (``jax.jacfwd``) of r with respect to the physical parameters and σ² = rᵀr/(n − p).
- :func:`infer` and :func:`register_infer`: the ``jaxgeo sft infer`` command.

Stability: the time step and the diffusion stages are planned once, at Python level. The plan
is made over the whole admissible parameter box (the flow bounds' corners for the CFL step, the
ν ceiling for the diffusion stages), so no trial point of the optimiser runs unstable. ν in log
space has no upper bound, so the model clamps it at that ceiling (5× the largest start by
default, or the upper bound given with ``--bounds``).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float

from ..errors import ConfigError, FileFormatError, InputError, StoreExistsError
from . import diagnostics
from .advection import Adjoint
from .config import EnsembleConfig, SftConfig
from .grid import SftGrid
from .simulation import PARAM_FIELDS, Params, Simulation, build, make_scan
from .units import GAUSS_SR_TO_MX

log = logging.getLogger(__name__)

Field = Float[Array, "theta phi"]
Vector = Float[Array, " p"]

__all__ = [
    "FITTABLE",
    "FitResult",
    "ForwardModel",
    "MisfitSpec",
    "Observations",
    "ParamSpec",
    "Problem",
    "Uncertainty",
    "default_spec",
    "fisher_uncertainty",
    "fit",
    "infer",
    "make_forward_model",
    "make_problem",
    "register_infer",
    "visibility_weights",
]

# --------------------------------------------------------------------------- parameters
# Config path -> Params field for every key that can be fitted. Assimilation's μ power/limit
# are left out: inference runs without assimilation (see make_forward_model).
FITTABLE: dict[str, str] = {
    **{k: v for k, v in PARAM_FIELDS.items() if not k.startswith("assimilation.")},
    "flow.attenuate_gauss": "inv_b_att",
}

Transform = Literal["log", "tanh", "log-tanh"]

# Default reparametrisation and bounds (config units: m/s for the AFT coefficients, km/s for
# rigid rotation and constant v_θ). The AFT boxes hold the published fits with a wide margin
# (HipFT's defaults p0,p2,p4 = 46,-262,-379 and p1,p3,p5 = 22,11,-28 m/s).
_DEFAULTS: dict[str, tuple[Transform, float | None, float | None]] = {
    "initial.scale": ("log", None, None),
    "diffusion.nu_km2_s": ("log", None, None),
    "flow.differential_rotation.p0": ("tanh", -150.0, 250.0),
    "flow.differential_rotation.p2": ("tanh", -700.0, 200.0),
    "flow.differential_rotation.p4": ("tanh", -900.0, 200.0),
    "flow.meridional.p1": ("tanh", -40.0, 80.0),
    "flow.meridional.p3": ("tanh", -80.0, 100.0),
    "flow.meridional.p5": ("tanh", -120.0, 80.0),
    "flow.rigid_omega_km_s": ("tanh", -2.0, 2.0),
    "flow.vtheta_const_km_s": ("tanh", -0.1, 0.1),
    "flow.attenuate_gauss": ("log", None, None),
    "sources.rfe.unsigned_flux_1e21_mx_per_hour": ("log", None, None),
}

# The ν ceiling for the stability plan when ν is fitted in unbounded log space.
_NU_CEILING_FACTOR = 5.0


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One fitted key and its map between unconstrained u and the physical value x.

    Attributes:
        key: config path (a key of :data:`FITTABLE`).
        transform: ``log`` x = ref·exp(u); ``tanh`` x = lo + (hi − lo)(1 + tanh u)/2;
            ``log-tanh`` log x = log lo + (log hi − log lo)(1 + tanh u)/2.
        lo, hi: bounds (``tanh``, ``log-tanh``); for ``log`` ν, ``hi`` is the stability ceiling.
        ref: reference value of ``log`` (u = 0 there; the config's value).
    """

    key: str
    transform: Transform
    lo: float | None = None
    hi: float | None = None
    ref: float = 1.0

    def __post_init__(self) -> None:
        if self.transform in ("tanh", "log-tanh"):
            if self.lo is None or self.hi is None or not self.lo < self.hi:
                raise ConfigError(
                    f"bounds of {self.key} must satisfy lo < hi, got {self.lo!r}, {self.hi!r}"
                )
            if self.transform == "log-tanh" and self.lo <= 0:
                raise ConfigError(
                    f"{self.key} is fitted in log space; its lower bound must be > 0, got {self.lo}"
                )
        if self.transform == "log" and not self.ref > 0:
            raise ConfigError(
                f"{self.key} is fitted in log space; its reference value must be > 0, "
                f"got {self.ref}"
            )

    def to_physical(self, u: Float[ArrayLike, ""]) -> Float[Array, ""]:
        """x(u), traced."""
        u = jnp.asarray(u)
        if self.transform == "log":
            return self.ref * jnp.exp(u)
        assert self.lo is not None and self.hi is not None
        s = 0.5 * (1.0 + jnp.tanh(u))
        if self.transform == "tanh":
            return self.lo + (self.hi - self.lo) * s
        a, b = math.log(self.lo), math.log(self.hi)
        return jnp.exp(a + (b - a) * s)

    def to_unconstrained(self, x: float) -> float:
        """u(x) on the host; refuses values outside the admissible range."""
        x = float(x)
        if self.transform in ("log", "log-tanh") and not x > 0:
            raise ConfigError(f"{self.key}: value {x:g} must be > 0 (it is fitted in log space)")
        if self.transform == "log":
            return math.log(x / self.ref)
        assert self.lo is not None and self.hi is not None
        if not self.lo < x < self.hi:
            raise ConfigError(
                f"{self.key}: value {x:g} lies outside its bounds ({self.lo:g}, {self.hi:g}); "
                f"widen them with --bounds {self.key}=LO:HI"
            )
        if self.transform == "tanh":
            s = (x - self.lo) / (self.hi - self.lo)
        else:
            s = (math.log(x) - math.log(self.lo)) / (math.log(self.hi) - math.log(self.lo))
        return math.atanh(2.0 * s - 1.0)

    @property
    def upper(self) -> float | None:
        """Largest value the model can see (bounds, or the ν ceiling)."""
        return self.hi


def default_spec(
    key: str,
    start: float,
    bounds: tuple[float, float] | None = None,
    *,
    starts: Sequence[float] = (),
) -> ParamSpec:
    """The default :class:`ParamSpec` of ``key`` around its config value ``start``.

    Args:
        key: a key of :data:`FITTABLE`.
        start: the config's value (reference of the log transform).
        bounds: optional (lo, hi); turns ``log`` keys into ``log-tanh`` and replaces the
            default box of ``tanh`` keys.
        starts: every starting value that will be used (sets the ν ceiling).

    Raises:
        ConfigError: unknown key or bad bounds.
    """
    if key not in _DEFAULTS:
        raise ConfigError(f"{key!r} cannot be fitted; choose from: {', '.join(FITTABLE)}")
    transform, lo, hi = _DEFAULTS[key]
    if bounds is not None:
        lo, hi = float(bounds[0]), float(bounds[1])
        if transform == "log":
            transform = "log-tanh"
    if transform == "log":
        ref = float(start)
        if not ref > 0:
            raise ConfigError(
                f"{key}: starting value {ref:g} must be > 0 (it is fitted in log space)"
            )
        if key == "diffusion.nu_km2_s":
            hi = _NU_CEILING_FACTOR * max([ref, *[float(s) for s in starts]])
        return ParamSpec(key, "log", None, hi, ref)
    return ParamSpec(key, transform, lo, hi, 1.0)


def _config_value(cfg: SftConfig, key: str) -> float | None:
    """The value of a fittable key in ``cfg`` (None when its section or the value is absent)."""
    obj: Any = cfg
    for part in key.split("."):
        if obj is None:
            return None
        obj = getattr(obj, part)
    return None if obj is None else float(obj)


def _section_present(cfg: SftConfig, key: str) -> bool:
    section = key.rsplit(".", 1)[0]
    if section == "initial":
        return True
    obj: Any = cfg
    for part in section.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return False
    return True


def check_keys(cfg: SftConfig, keys: Sequence[str]) -> tuple[str, ...]:
    """Validate fitted keys against the config; returns them as a tuple.

    Raises:
        ConfigError: unknown or repeated key, key whose section is absent, or whose value is
            not set in the config (it is the starting value).
    """
    keys = tuple(k.strip() for k in keys)
    if not keys:
        raise ConfigError("--fit needs at least one key")
    for key in keys:
        if key not in FITTABLE:
            hint = (
                " (inference runs without assimilation)" if key.startswith("assimilation.") else ""
            )
            raise ConfigError(
                f"--fit key {key!r} is not a parameter that can be fitted{hint}; "
                f"choose from: {', '.join(FITTABLE)}"
            )
        if keys.count(key) > 1:
            raise ConfigError(f"--fit lists {key!r} twice")
        section = key.rsplit(".", 1)[0]
        if not _section_present(cfg, key):
            raise ConfigError(
                f"cannot fit {key}: the config has no [{section}] section; add it (its value "
                "is the starting guess)"
            )
        if _config_value(cfg, key) is None:
            raise ConfigError(
                f"cannot fit {key}: it is not set in the config; set it to a starting value"
            )
    return keys


# --------------------------------------------------------------------------- observations
@dataclasses.dataclass(frozen=True, eq=False)
class Observations:
    """Maps and history series of one realization, in the model's layout.

    Attributes:
        lat_deg, lon_deg: the store's coordinates (lat ascending, lon without the duplicate).
        map_times: (T,) hours.
        maps: (T, n_theta, n_phi) Gauss, north first (the model's θ order), float64.
        history_times: (H,) hours.
        history: name -> (H,) series.
        config_text: the TOML the observations were run with (for the true values), or None.
        realization: which realization of the store these are.
        source: where they came from (for messages).
    """

    lat_deg: np.ndarray
    lon_deg: np.ndarray
    map_times: np.ndarray
    maps: np.ndarray
    history_times: np.ndarray
    history: Mapping[str, np.ndarray]
    config_text: str | None = None
    realization: int = 0
    source: str = "<memory>"

    @classmethod
    def from_store(cls, path: str | Path, *, realization: int = 0) -> Observations:
        """Read one realization of a run store.

        Raises:
            FileFormatError: the store is missing, unreadable or holds no ``br``.
            InputError: the realization is not in the store.
        """
        from ..io import open_store

        path = Path(path)
        ds = open_store(path)
        if "br" not in ds or "time" not in ds.dims:
            raise FileFormatError(
                f"observation store {path} has no 'br(realization, time, lat, lon)' variable; "
                "expected a store written by `jaxgeo sft run`"
            )
        n_r = int(ds.sizes.get("realization", 1))
        if not 0 <= realization < n_r:
            raise InputError(
                f"observation store {path} holds realizations 0..{n_r - 1}, "
                f"got --realization {realization}"
            )
        maps = np.asarray(ds["br"].isel(realization=realization).values, dtype=np.float64)
        history: dict[str, np.ndarray] = {}
        h_times = np.zeros(0)
        if "history_time" in ds.dims:
            h_times = np.asarray(ds["history_time"].values, dtype=np.float64)
            for name, var in ds.data_vars.items():
                if var.dims == ("realization", "history_time"):
                    history[str(name)] = np.asarray(var.values[realization], dtype=np.float64)
        return cls(
            lat_deg=np.asarray(ds["lat"].values, dtype=np.float64),
            lon_deg=np.asarray(ds["lon"].values, dtype=np.float64),
            map_times=np.asarray(ds["time"].values, dtype=np.float64),
            maps=np.ascontiguousarray(maps[:, ::-1, :]),
            history_times=h_times,
            history=history,
            config_text=ds.attrs.get("config"),
            realization=int(realization),
            source=str(path),
        )

    def with_noise(
        self,
        *,
        map_sigma_gauss: float = 0.0,
        history_rel_sigma: float = 0.0,
        seed: int = 0,
    ) -> Observations:
        """A copy with independent Gaussian noise: σ in Gauss on every map cell, and σ
        relative to each series' RMS on the history series. Pole rows get one draw per row."""
        rng = np.random.default_rng(seed)
        maps = self.maps + map_sigma_gauss * rng.standard_normal(self.maps.shape)
        # The pole rows are one control volume each: one noise value per cap.
        maps[:, 0, :] = maps[:, 0, :1]
        maps[:, -1, :] = maps[:, -1, :1]
        history = {}
        for name, series in self.history.items():
            rms = float(np.sqrt(np.mean(series**2)))
            history[name] = series + history_rel_sigma * rms * rng.standard_normal(series.shape)
        return dataclasses.replace(self, maps=maps, history=history)

    def true_values(self, keys: Sequence[str]) -> dict[str, float] | None:
        """The fitted keys' values in the config the observations were run with, if known."""
        if not self.config_text:
            return None
        try:
            cfg = SftConfig.from_toml_text(self.config_text)
            overrides = cfg.realizations()
            if self.realization >= len(overrides) and len(overrides) > 1:
                return None
            cfg = cfg.with_overrides(overrides[min(self.realization, len(overrides) - 1)])
        except InputError:
            return None
        out: dict[str, float] = {}
        for key in keys:
            value = _config_value(cfg, key)
            if value is None:
                return None
            out[key] = value
        return out


# --------------------------------------------------------------------------- forward model
@dataclasses.dataclass(frozen=True)
class _Layout:
    """Where the observations fall in the step sequence.

    ``dts[b, h, :]`` are the steps of sub-interval h of block b (zero-padded: a step of 0 h
    is the identity), starting at ``t_start[b, h]``. Blocks end at map times, sub-intervals at
    history times. ``map_select`` / ``hist_select`` index the flattened block / sub-interval
    outputs in time order.
    """

    dts: np.ndarray  # (B, H, S)
    t_start: np.ndarray  # (B, H)
    map_select: np.ndarray  # (n_maps_run,)
    hist_select: np.ndarray  # (n_hist_run,)
    map_at_start: bool
    hist_at_start: bool


def _step_table(sim: Simulation) -> tuple[np.ndarray, np.ndarray, dict[float, int]]:
    """Start time and length of every step, and step count at each segment end."""
    t_start: list[float] = []
    dts: list[float] = []
    ends: dict[float, int] = {}
    for seg in sim.segments:
        for i in range(seg.n_full):
            t_start.append(seg.t0 + i * seg.dt)
            dts.append(seg.dt)
        if seg.dt_last > 0:
            t_start.append(seg.t0 + seg.n_full * seg.dt)
            dts.append(seg.dt_last)
        ends[seg.t1] = len(dts)
    return np.asarray(t_start), np.asarray(dts), ends


def _locate(
    times: Sequence[float], ends: Mapping[float, int], t0: float, what: str, sim: Simulation
) -> list[int]:
    """Step index at which each time (> t0) is reached; refuses times the run skips."""
    out = []
    end_times = np.asarray(sorted(ends))
    for t in times:
        if t <= t0 + 1e-9:
            continue
        k = int(np.argmin(np.abs(end_times - t)))
        if abs(end_times[k] - t) > 1e-6 * max(1.0, abs(t)):
            cfg = sim.config
            raise FileFormatError(
                f"the observations hold a {what} at t = {t:g} h, which the config's schedule "
                f"does not land on (time {cfg.time.start_hours:g}..{cfg.time.end_hours:g} h, "
                f"map cadence {cfg.output.map_cadence_hours:g} h, history cadence "
                f"{cfg.output.history_cadence_hours:g} h); run the observations with the same "
                "[time] and [output] settings as CONFIG"
            )
        out.append(ends[float(end_times[k])])
    return out


def _make_layout(
    sim: Simulation, map_times: Sequence[float], hist_times: Sequence[float]
) -> _Layout:
    t0 = sim.config.time.start_hours
    t_step, dt_step, ends = _step_table(sim)
    k_maps = sorted(set(_locate(map_times, ends, t0, "map", sim)))
    k_hist = sorted(set(_locate(hist_times, ends, t0, "history row", sim)))
    if not k_maps and not k_hist:
        raise InputError("no observation times after the start of the run; nothing to fit")
    blocks = list(k_maps)
    if k_hist and (not blocks or k_hist[-1] > blocks[-1]):
        blocks.append(k_hist[-1])
    has_map = [k in set(k_maps) for k in blocks]
    hist_set = set(k_hist)
    subs: list[list[tuple[int, int, bool]]] = []  # per block: (k_from, k_to, is_history)
    k_prev = 0
    for k_end in blocks:
        ends_here = sorted({k for k in k_hist if k_prev < k <= k_end} | {k_end})
        sub = []
        for k in ends_here:
            sub.append((k_prev, k, k in hist_set))
            k_prev = k
        subs.append(sub)
    n_b = len(blocks)
    n_h = max(len(s) for s in subs)
    n_s = max(max(b - a for a, b, _ in s) for s in subs)
    dts = np.zeros((n_b, n_h, max(n_s, 1)))
    t_start = np.zeros((n_b, n_h))
    is_hist = np.zeros((n_b, n_h), bool)
    for b, sub in enumerate(subs):
        for h in range(n_h):
            if h < len(sub):
                a, c, flag = sub[h]
                dts[b, h, : c - a] = dt_step[a:c]
                t_start[b, h] = t_step[a]
                is_hist[b, h] = flag
            else:
                # Padding after the block's end: zero steps starting at the block's end time.
                c = sub[-1][1]
                t_start[b, h] = t_step[c - 1] + dt_step[c - 1]
    padded = dts.size - len(dt_step[: blocks[-1]])
    if padded:
        log.info("observation layout: %d zero steps of padding (uneven intervals)", padded)
    return _Layout(
        dts=dts,
        t_start=t_start,
        map_select=np.flatnonzero(np.asarray(has_map)),
        hist_select=np.flatnonzero(is_hist.ravel()),
        map_at_start=any(t <= t0 + 1e-9 for t in map_times),
        hist_at_start=any(t <= t0 + 1e-9 for t in hist_times),
    )


Prediction = dict[str, Any]

# Reverse mode keeps the field of every step of a sub-interval when they take at most this
# many bytes (each step is rematerialised in the reverse pass); longer sub-intervals (also at
# least _CHUNK_STEPS_OVER steps) are checkpointed in chunks of about √steps, which costs one
# more forward run. Measured at 1°, one rotation (655 steps, 0.32 GB of fields), hand adjoint,
# one pinned core: value and gradient 34 -> 29.6 s, gradient temporaries 69 -> 367 MB.
_ALL_STEPS_BYTES = 512 * 2**20
_CHUNK_STEPS_OVER = 64

# History series a model can predict (the validation error needs an exact solution).
_SERIES: tuple[str, ...] = tuple(
    n for n in diagnostics.HISTORY_NAMES if n != "validation_err_hhabs"
)


@dataclasses.dataclass(frozen=True, eq=False)
class ForwardModel:
    """Differentiable map from fitted physical parameters to observables.

    Built by :func:`make_forward_model`; :meth:`predict` is pure (no jit inside).

    Attributes:
        sim: the planning simulation (grid, physics, schedule; realization 0 holds the config's
            values with the initial map unscaled).
        keys: fitted keys, in the order of parameter vectors.
        specs: their :class:`ParamSpec`.
        base: the config's :class:`Params` of the fitted realization.
        br_unit: the initial field before ``initial.scale`` (n_theta, n_phi), G.
        scale: the config's ``initial.scale``.
        key: PRNG key of the realization (random flux emergence).
        map_times, history_times: the observation times predicted, hours.
        history_names: the history series predicted.
        layout: the step layout.
        checkpoint: rematerialise steps, sub-intervals and blocks in reverse mode.
    """

    sim: Simulation
    keys: tuple[str, ...]
    specs: tuple[ParamSpec, ...]
    base: Params
    br_unit: Array
    scale: float
    key: Array
    map_times: tuple[float, ...]
    history_times: tuple[float, ...]
    history_names: tuple[str, ...]
    layout: _Layout
    checkpoint: bool = True

    @property
    def grid(self) -> SftGrid:
        return self.sim.grid

    def params(self, theta: Mapping[str, Float[ArrayLike, ""]]) -> tuple[Params, Field]:
        """The realization's :class:`Params` and initial field for physical values ``theta``."""
        p = self.base
        dtype = self.br_unit.dtype
        scale: Any = self.scale
        for spec in self.specs:
            x = jnp.asarray(theta[spec.key], dtype=dtype)
            field = FITTABLE[spec.key]
            if spec.key == "initial.scale":
                scale = x
                continue
            if spec.key == "flow.attenuate_gauss":
                x = 1.0 / x
            elif spec.key == "diffusion.nu_km2_s" and spec.transform == "log":
                # ν above the planned ceiling would make the super time steps unstable.
                assert spec.hi is not None
                x = jnp.minimum(x, spec.hi)
            p = p.replace(**{field: x})
        p = p.replace(scale=jnp.asarray(scale, dtype=dtype))
        return p, self.br_unit * scale

    def predict(
        self, theta: Mapping[str, Float[ArrayLike, ""]], *, adjoint: Adjoint | None = None
    ) -> Prediction:
        """Observables for the physical parameter values ``theta`` (key -> scalar).

        ``adjoint`` picks the advection operator's reverse-mode derivative
        (:mod:`jaxgeo.sft.advection`): ``"hand"`` for reverse mode only (faster gradients;
        ``jax.jvp``/``jacfwd`` then raise), ``"autodiff"`` for both modes, None for the
        module default.

        Returns:
            ``{"maps": (n_map_times, n_theta, n_phi), "history": {name: (n_history_times,)},
            "final": (n_theta, n_phi)}`` — maps in G at :attr:`map_times`, history series at
            :attr:`history_times`, and the field at the last observation time.
        """
        params, br0 = self.params(theta)
        grid = self.grid
        names = self.history_names
        lim = self.sim.config.output.pole_flux_lat_limit_deg
        lay = self.layout
        n_blocks, n_subs, n_steps = lay.dts.shape
        # Checkpoint only the levels that have more than one element (a level of one element
        # would be recomputed in the reverse pass for nothing); sub-intervals whose fields
        # exceed _ALL_STEPS_BYTES are cut into chunks of about √steps, so memory stays
        # bounded (O(√steps) fields per sub-interval) for long runs.
        every = 0
        if self.checkpoint:
            field_bytes = grid.n_theta * grid.n_phi * jnp.dtype(br0.dtype).itemsize
            long_run = n_steps > _CHUNK_STEPS_OVER and n_steps * field_bytes > _ALL_STEPS_BYTES
            every = math.ceil(math.sqrt(n_steps)) if long_run else 1
        physics = self.sim.physics
        if adjoint is not None:
            physics = dataclasses.replace(physics, adjoint=adjoint)
        run = make_scan(physics, checkpoint_every=every)
        key = self.key

        def observe(br: Field) -> dict[str, Array]:
            if not names:
                return {}
            h = diagnostics.history(grid, br, pole_lat_limit_deg=lim)
            return {n: h[n] for n in names}

        def sub_interval(br: Field, xs: tuple[Array, Array]) -> tuple[Field, dict[str, Array]]:
            t_start, dts = xs
            br = run(br, params, key, t_start, dts)
            return br, observe(br)

        def block(br: Field, xs: tuple[Array, Array]) -> tuple[Field, Any]:
            br, hist = jax.lax.scan(sub_interval, br, xs)
            return br, (br, hist)

        if self.checkpoint:
            # Nested checkpointing: blocks, then sub-intervals, then steps (make_scan).
            if n_subs > 1:
                sub_interval = jax.checkpoint(sub_interval)  # type: ignore[assignment]
            if n_blocks > 1:
                block = jax.checkpoint(block)  # type: ignore[assignment]
        dtype = br0.dtype
        xs = (jnp.asarray(lay.t_start, dtype), jnp.asarray(lay.dts, dtype))
        final, (maps, hist) = jax.lax.scan(block, br0, xs)
        maps = maps[lay.map_select]
        if lay.map_at_start:
            maps = jnp.concatenate([br0[None], maps])
        series = {}
        h0 = observe(br0) if lay.hist_at_start else {}
        for n in names:
            s = hist[n].reshape(-1)[lay.hist_select]
            series[n] = jnp.concatenate([h0[n][None], s]) if lay.hist_at_start else s
        return {"maps": maps, "history": series, "final": final}

    def theta_from_vector(self, z: Vector) -> dict[str, Array]:
        return {k: z[i] for i, k in enumerate(self.keys)}

    def to_physical(self, u: Vector) -> Vector:
        """Physical vector from the unconstrained vector (traced)."""
        return jnp.stack([s.to_physical(u[i]) for i, s in enumerate(self.specs)])

    def to_unconstrained(self, theta: Mapping[str, float]) -> np.ndarray:
        return np.asarray([s.to_unconstrained(theta[s.key]) for s in self.specs])


def _planning_config(
    cfg_r: SftConfig, specs: Sequence[ParamSpec], starts: Sequence[Mapping[str, float]]
) -> SftConfig:
    """The realization's config as an ensemble over the admissible box, for `build` to plan
    the time step (CFL at the flow bounds' corners) and diffusion stages (ν ceiling) from.

    Row 0 holds the config's values with the initial map unscaled (scale 1).
    """
    flow_specs = [s for s in specs if s.key.startswith("flow.") and s.key != "flow.attenuate_gauss"]
    rows: list[dict[str, float]] = [{}]
    if flow_specs:
        boxes = [(s.lo, s.hi) for s in flow_specs]
        if len(flow_specs) <= 6:
            combos = list(itertools.product(*boxes))
        else:  # lower and upper edge of each key (the corners grow as 2^k)
            combos = [tuple(b[i] for b in boxes) for i in (0, 1)]
        for combo in combos:
            rows.append({s.key: float(v) for s, v in zip(flow_specs, combo, strict=True)})  # type: ignore[arg-type]
    for s in specs:
        if s.key == "diffusion.nu_km2_s" and s.upper is not None:
            rows.append({s.key: float(s.upper)})
    keys = sorted({k for r in rows for k in r} | {"initial.scale"})
    values: dict[str, tuple[float, ...]] = {}
    for k in keys:
        default = 1.0 if k == "initial.scale" else _config_value(cfg_r, k)
        assert default is not None
        values[k] = tuple(1.0 if k == "initial.scale" else float(r.get(k, default)) for r in rows)
    return dataclasses.replace(cfg_r, ensemble=EnsembleConfig(mode="zip", values=values))


def realization_config(cfg: SftConfig, realization: int = 0) -> SftConfig:
    """The config of one realization (its [ensemble] overrides applied, no ensemble)."""
    overrides = cfg.realizations()
    if len(overrides) > 1 and not 0 <= realization < len(overrides):
        raise InputError(
            f"the config's [ensemble] has {len(overrides)} realizations, "
            f"got --realization {realization}"
        )
    cfg_r = cfg.with_overrides(overrides[realization] if len(overrides) > 1 else overrides[0])
    return dataclasses.replace(cfg_r, ensemble=None)


def make_forward_model(
    cfg: SftConfig,
    keys: Sequence[str],
    *,
    map_times: Sequence[float],
    history_times: Sequence[float] = (),
    history_names: Sequence[str] = (),
    realization: int = 0,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    starts: Sequence[Mapping[str, float]] = (),
    checkpoint: bool = True,
) -> ForwardModel:
    """Build the differentiable forward model of one realization of ``cfg``.

    Args:
        cfg: the run config (its values are the reference/starting values).
        keys: fitted keys (see :data:`FITTABLE`).
        map_times: times (h) at which maps are predicted; the start time gives the initial map.
        history_times: times (h) at which history series are predicted.
        history_names: which series (names of ``diagnostics.HISTORY_UNITS``).
        realization: which realization of the config's [ensemble].
        bounds: key -> (lo, hi), replacing the default box (see :func:`default_spec`).
        starts: starting values that will be used (the ν ceiling covers them).
        checkpoint: nested ``jax.checkpoint`` (bounded reverse-mode memory).

    Raises:
        ConfigError: bad keys or bounds; the config has [assimilation].
        FileFormatError: observation times the schedule does not land on.
    """
    if cfg.assimilation is not None:
        raise ConfigError(
            "inference runs the model without data assimilation; remove [assimilation] from "
            "the config (the observations are fitted directly)"
        )
    cfg_r = realization_config(cfg, realization)
    keys = check_keys(cfg_r, keys)
    bounds = dict(bounds or {})
    for k in bounds:
        if k not in keys:
            raise ConfigError(f"--bounds names {k!r}, which is not fitted (--fit {','.join(keys)})")
    specs = []
    for k in keys:
        start = _config_value(cfg_r, k)
        assert start is not None
        spec = default_spec(k, start, bounds.get(k), starts=[s[k] for s in starts if k in s])
        spec.to_unconstrained(start)  # the config's value must be admissible
        specs.append(spec)
    bad = [n for n in history_names if n not in _SERIES]
    if bad:
        raise ConfigError(f"unknown history series {bad}; choose from: {', '.join(_SERIES)}")
    t0 = cfg.time.start_hours
    for t in [*map_times, *history_times]:
        if t < t0 - 1e-9 or t > cfg.time.end_hours + 1e-6:
            raise FileFormatError(
                f"the observations hold t = {t:g} h, outside the config's time span "
                f"{t0:g}..{cfg.time.end_hours:g} h"
            )
    sim = build(_planning_config(cfg_r, specs, starts))
    base = jax.tree.map(lambda x: x[0], sim.params)
    layout = _make_layout(sim, map_times, history_times if history_names else ())
    log.info(
        "forward model: grid %d x %d, dt %.4g h, %d steps, %d blocks x %d sub-intervals x %d "
        "steps, diffusion stages %s",
        sim.grid.n_theta,
        sim.grid.n_phi,
        sim.dt_step,
        int(np.count_nonzero(layout.dts)),
        *layout.dts.shape,
        None if sim.physics.diffusion_plan is None else sim.physics.diffusion_plan.stages,
    )
    return ForwardModel(
        sim=sim,
        keys=keys,
        specs=tuple(specs),
        base=base,
        br_unit=sim.br0[0],
        scale=float(cfg_r.initial.scale),
        key=sim.keys[0],
        map_times=tuple(float(t) for t in map_times),
        history_times=tuple(float(t) for t in history_times) if history_names else (),
        history_names=tuple(history_names),
        layout=layout,
        checkpoint=checkpoint,
    )


# --------------------------------------------------------------------------- misfit
# Carrington rotation period seen from Earth (synodic), hours: the sub-observer Carrington
# longitude decreases by 360° per period.
CARRINGTON_SYNODIC_HOURS = 27.2753 * 24.0


def visibility_weights(
    grid: SftGrid,
    times_hours: Sequence[float],
    *,
    lon0_deg: float = 0.0,
    b0_deg: float = 0.0,
    mu_power: float = 4.0,
    mu_limit: float = 0.1,
) -> np.ndarray:
    """Data-assimilation-like weights of an Earth-side observer: μ^p where μ > μ_limit, else 0.

    μ = cos(angle from disk centre) = sin θ cos B0 cos(φ − φ_obs) + cos θ sin B0, with the
    sub-observer Carrington longitude φ_obs(t) = lon0 − 360° t / 27.2753 d. Behind the limb
    (μ ≤ 0) the weight is zero.

    Returns:
        (T, n_theta, n_phi) weights in [0, 1].
    """
    t = np.asarray(times_hours, dtype=np.float64)
    lon_obs = np.radians(lon0_deg) - 2.0 * np.pi * t / CARRINGTON_SYNODIC_HOURS
    b0 = np.radians(b0_deg)
    st = np.sin(grid.theta)[None, :, None]
    ct = np.cos(grid.theta)[None, :, None]
    dphi = grid.phi[None, None, :] - lon_obs[:, None, None]
    mu = st * np.cos(b0) * np.cos(dphi) + ct * np.sin(b0)
    base = np.where(mu > mu_limit, mu, 1.0)
    return np.where(mu > mu_limit, base**mu_power, 0.0)


@dataclasses.dataclass(frozen=True)
class MisfitSpec:
    """What the loss compares, and how it weights it.

    Attributes:
        maps: fit the maps (area-weighted, optionally with the visibility mask).
        history: history series to fit (each normalised by its own Σ o²).
        map_weight, history_weight: relative weights of the two groups.
        visibility: weight maps by μ^p on the Earth-facing disk (zero behind the limb).
        mu_power, mu_limit, observer_lon0_deg, b0_deg: see :func:`visibility_weights`.
        include_start: also fit the observations at the start time (only informative for
            ``initial.scale``; None = when ``initial.scale`` is fitted).
    """

    maps: bool = True
    history: tuple[str, ...] = ("polar_field_north", "polar_field_south", "ax_dipole")
    map_weight: float = 1.0
    history_weight: float = 1.0
    visibility: bool = False
    mu_power: float = 4.0
    mu_limit: float = 0.1
    observer_lon0_deg: float = 0.0
    b0_deg: float = 0.0
    include_start: bool | None = None

    def __post_init__(self) -> None:
        if not self.maps and not self.history:
            raise ConfigError("the misfit needs maps or at least one history series")
        if self.map_weight < 0 or self.history_weight < 0:
            raise ConfigError("misfit weights must be >= 0")
        unknown = [n for n in self.history if n not in _SERIES]
        if unknown:
            raise ConfigError(
                f"unknown history series {unknown}; choose from: {', '.join(_SERIES)}"
            )


def _misfit_data(
    model: ForwardModel, obs: Observations, misfit: MisfitSpec
) -> tuple[dict[str, Any], int]:
    """Observed values and square-root weights (the residual is √w (p − o)); and n."""
    grid = model.grid
    data: dict[str, Any] = {}
    n = 0
    if misfit.maps:
        idx = _time_index(obs.map_times, model.map_times)
        o = obs.maps[idx]
        w = np.broadcast_to(grid.cell_area, o.shape).copy()
        if misfit.visibility:
            w = w * visibility_weights(
                grid,
                model.map_times,
                lon0_deg=misfit.observer_lon0_deg,
                b0_deg=misfit.b0_deg,
                mu_power=misfit.mu_power,
                mu_limit=misfit.mu_limit,
            )
        norm = float(np.sum(w * o**2)) or 1.0
        data["maps"] = jnp.asarray(o)
        data["map_sqrt_w"] = jnp.asarray(np.sqrt(misfit.map_weight * w / norm))
        n += int(np.count_nonzero(w))
    if misfit.history:
        idx = _time_index(obs.history_times, model.history_times)
        data["history"] = {}
        data["history_sqrt_w"] = {}
        b_rms = float(np.sqrt(np.mean(obs.maps**2))) if obs.maps.size else 1.0
        for name in misfit.history:
            o = obs.history[name][idx]
            # A series that vanishes by symmetry (the axial dipole of an m != 0 field) must
            # not blow its round-off up to O(1): floor its scale at 1e-9 of the field's.
            unit = diagnostics.HISTORY_UNITS.get(name, "G")
            scale = b_rms * (4.0 * math.pi * GAUSS_SR_TO_MX if unit == "Mx" else 1.0)
            norm = max(float(np.sum(o**2)), o.size * (1e-9 * scale) ** 2) or 1.0
            data["history"][name] = jnp.asarray(o)
            data["history_sqrt_w"][name] = jnp.asarray(
                np.full(o.shape, math.sqrt(misfit.history_weight / (len(misfit.history) * norm)))
            )
            n += o.size
    return data, n


def _time_index(have: np.ndarray, want: Sequence[float]) -> np.ndarray:
    have = np.asarray(have)
    idx = [int(np.argmin(np.abs(have - t))) for t in want]
    assert all(abs(have[i] - t) < 1e-6 * max(1.0, abs(t)) for i, t in zip(idx, want, strict=True))
    return np.asarray(idx, dtype=int)


def _residuals(pred: Prediction, data: Mapping[str, Any], misfit: MisfitSpec) -> Array:
    parts = []
    if misfit.maps:
        parts.append(((pred["maps"] - data["maps"]) * data["map_sqrt_w"]).reshape(-1))
    for name in misfit.history:
        parts.append((pred["history"][name] - data["history"][name]) * data["history_sqrt_w"][name])
    return jnp.concatenate(parts)


# --------------------------------------------------------------------------- problem
GradMode = Literal["reverse", "forward"]


def _forward_mode_value_and_grad(f: Callable[[Vector, Any], Array]) -> Callable[..., Array]:
    """``f`` whose reverse-mode derivative is computed with one JVP per parameter.

    For a handful of parameters this is cheaper than the reverse pass through the run (no
    rematerialisation, memory of a forward run) and gives the same gradient; wrapping it in
    ``custom_vjp`` lets ``jax.value_and_grad`` — and optax's line search, which calls it — use it.
    """

    @jax.custom_vjp
    def g(u: Vector, data: Any) -> Array:
        return f(u, data)

    def g_fwd(u: Vector, data: Any) -> tuple[Array, tuple[Array, Any]]:
        basis = jnp.eye(u.shape[0], dtype=u.dtype)
        value, grad = jax.vmap(
            lambda v: jax.jvp(lambda x: f(x, data), (u,), (v,)), out_axes=(None, 0)
        )(basis)
        return value, (grad, data)

    def g_bwd(res: tuple[Array, Any], ct: Array) -> tuple[Array, Any]:
        grad, data = res
        return ct * grad, jax.tree.map(jnp.zeros_like, data)

    g.defvjp(g_fwd, g_bwd)
    return g


class _Compiled:
    """The jitted functions of a problem; shared by problems that differ only in their data."""

    def __init__(self, model: ForwardModel, misfit: MisfitSpec, grad_mode: GradMode) -> None:
        self.model = model

        def residuals_z(z: Vector, data: Any, adjoint: Adjoint | None = None) -> Array:
            pred = model.predict(model.theta_from_vector(z), adjoint=adjoint)
            return _residuals(pred, data, misfit)

        def make_loss(adjoint: Adjoint | None) -> Callable[[Vector, Any], Array]:
            def loss_u(u: Vector, data: Any) -> Array:
                r = residuals_z(model.to_physical(u), data, adjoint)
                return jnp.sum(r * r)

            return loss_u

        # Reverse mode through the hand-written advection adjoint (measured 1 rotation at
        # 1°: value and gradient 8.0–8.6× the forward run, against 9.9–15× with autodiff);
        # the Jacobian (jacfwd) and forward-mode gradients need JAX's own derivatives.
        loss_u = make_loss(None)
        if grad_mode == "forward":
            loss_u = _forward_mode_value_and_grad(loss_u)
            loss_grad = loss_u
        elif grad_mode == "reverse":
            loss_grad = make_loss("hand")
        else:
            raise ConfigError(f"gradient mode must be 'reverse' or 'forward', got {grad_mode!r}")
        self.loss_u = loss_grad  # what L-BFGS's line search differentiates
        self.residuals = jax.jit(residuals_z)
        self.jacobian = jax.jit(jax.jacfwd(residuals_z))
        self.loss = jax.jit(loss_u)
        self.value_and_grad = jax.jit(jax.value_and_grad(loss_grad))
        self.predict = jax.jit(lambda z: model.predict(model.theta_from_vector(z)))
        self.to_physical = jax.jit(model.to_physical)
        self._cache: dict[tuple[str, float], Any] = {}

    def lbfgs(self, memory_size: int) -> tuple[Any, Any]:
        """``(opt, update(u, state, value, grad, data))``, cached."""
        key = ("lbfgs", memory_size)
        if key not in self._cache:
            opt = optax.lbfgs(memory_size=memory_size)
            loss_u = self.loss_u

            @jax.jit
            def update(u, state, value, grad, data):
                # optax's L-BFGS adds int32 and int64 counters: not allowed under strict
                # promotion (the test setup), harmless under standard.
                with jax.numpy_dtype_promotion("standard"):
                    updates, state = opt.update(
                        grad, state, u, value=value, grad=grad, value_fn=lambda v: loss_u(v, data)
                    )
                    return optax.apply_updates(u, updates), state

            self._cache[key] = (opt, update)
        return self._cache[key]

    def adam(self, learning_rate: float) -> tuple[Any, Any]:
        """``(opt, update(u, state, grad))``, cached."""
        key = ("adam", learning_rate)
        if key not in self._cache:
            opt = optax.adam(learning_rate)

            @jax.jit
            def update(u, state, grad):
                with jax.numpy_dtype_promotion("standard"):
                    updates, state = opt.update(grad, state, u)
                    return optax.apply_updates(u, updates), state

            self._cache[key] = (opt, update)
        return self._cache[key]


@dataclasses.dataclass(frozen=True, eq=False)
class Problem:
    """A forward model, observations and a misfit: everything :func:`fit` needs.

    Attributes:
        model: the :class:`ForwardModel`.
        misfit: the :class:`MisfitSpec`.
        observations: the :class:`Observations` fitted.
        data: observed values and weights as arrays (a traced argument of the compiled
            functions, so :meth:`with_observations` reuses them without recompiling).
        n_residuals: residuals with non-zero weight.
        grad_mode: "reverse" (checkpointed adjoint) or "forward" (one JVP per parameter).
    """

    model: ForwardModel
    misfit: MisfitSpec
    observations: Observations
    data: dict[str, Any]
    n_residuals: int
    grad_mode: GradMode
    compiled: _Compiled

    @property
    def keys(self) -> tuple[str, ...]:
        return self.model.keys

    def with_observations(self, obs: Observations) -> Problem:
        """The same problem fitted to other observations (same times; e.g. with noise)."""
        data, n = _misfit_data(self.model, obs, self.misfit)
        return dataclasses.replace(self, observations=obs, data=data, n_residuals=n)

    def vector(self, theta: Mapping[str, float]) -> Array:
        return jnp.asarray([float(theta[k]) for k in self.keys])

    def residuals(self, theta: Mapping[str, float]) -> np.ndarray:
        return np.asarray(self.compiled.residuals(self.vector(theta), self.data))

    def loss(self, theta: Mapping[str, float]) -> float:
        r = self.residuals(theta)
        return float(r @ r)

    def predict(self, theta: Mapping[str, float]) -> Prediction:
        return jax.tree.map(np.asarray, self.compiled.predict(self.vector(theta)))

    def start_values(self) -> dict[str, float]:
        """The config's values of the fitted keys."""
        return {k: _start_of(self.model, k) for k in self.keys}


def _start_of(model: ForwardModel, key: str) -> float:
    if key == "initial.scale":
        return model.scale
    field = FITTABLE[key]
    value = float(getattr(model.base, field))
    return 1.0 / value if key == "flow.attenuate_gauss" else value


def make_problem(
    cfg: SftConfig,
    obs: Observations,
    keys: Sequence[str],
    misfit: MisfitSpec = MisfitSpec(),
    *,
    realization: int = 0,
    bounds: Mapping[str, tuple[float, float]] | None = None,
    starts: Sequence[Mapping[str, float]] = (),
    checkpoint: bool = True,
    grad_mode: GradMode = "reverse",
    extra_history: Sequence[str] = (),
) -> Problem:
    """Assemble a :class:`Problem` from a config and observations.

    Args:
        cfg: run config (its values of the fitted keys are the default start).
        obs: observations (e.g. :meth:`Observations.from_store`).
        keys: fitted keys.
        misfit: what the loss compares.
        realization: realization of the config's [ensemble] that the model runs.
        bounds: key -> (lo, hi) overrides of the reparametrisation.
        starts: starting values that will be used (for the stability plan).
        checkpoint: nested checkpointing of the run (reverse mode).
        grad_mode: "reverse" (adjoint through the checkpointed scans) or "forward" (one JVP
            per parameter: cheaper for a few parameters, same gradient).
        extra_history: further history series to predict (not fitted; for plots).

    Raises:
        ConfigError / FileFormatError / InputError: bad keys, grids or times that do not match.
    """
    grid_check = _grid_from_obs(obs)
    include_start = misfit.include_start
    if include_start is None:
        include_start = "initial.scale" in keys
    t0 = cfg.time.start_hours
    # Maps are predicted when fitted, or for the final-map figure (extra_history: plots).
    want_maps = misfit.maps or bool(extra_history)
    map_times = [float(t) for t in obs.map_times if include_start or t > t0 + 1e-9]
    map_times = map_times if want_maps else []
    hist_times = [float(t) for t in obs.history_times if include_start or t > t0 + 1e-9]
    names = list(misfit.history)
    for name in extra_history:
        if name not in names and name in obs.history:
            names.append(name)
    missing = [name for name in names if name not in obs.history]
    if missing:
        raise FileFormatError(
            f"the observations ({obs.source}) hold no history series {missing}; "
            f"they hold {sorted(obs.history)}"
        )
    if misfit.maps and obs.maps.shape[0] == 0:
        raise FileFormatError(f"the observations ({obs.source}) hold no maps")
    model = make_forward_model(
        cfg,
        keys,
        map_times=map_times,
        history_times=hist_times if names else (),
        history_names=names,
        realization=realization,
        bounds=bounds,
        starts=starts,
        checkpoint=checkpoint,
    )
    if model.grid.shape != grid_check[0] or not (
        np.allclose(model.grid.lat_deg[::-1], grid_check[1], atol=1e-6)
        and np.allclose(model.grid.lon_deg, grid_check[2], atol=1e-6)
    ):
        raise FileFormatError(
            f"the observations ({obs.source}) are on a {grid_check[0][0]} x "
            f"{grid_check[0][1]} (lat x lon) grid that differs from the config's "
            f"{model.grid.n_theta} x {model.grid.n_phi} grid; run them with the same grid"
        )
    compiled = _Compiled(model, misfit, grad_mode)
    data, n_res = _misfit_data(model, obs, misfit)
    return Problem(model, misfit, obs, data, n_res, grad_mode, compiled)


def _grid_from_obs(obs: Observations) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
    """(lat, lon) shape and coordinates of the observations, checked against their maps."""
    shape = (obs.lat_deg.size, obs.lon_deg.size)
    if obs.maps.ndim != 3 or obs.maps.shape[1:] != shape:
        raise FileFormatError(
            f"the observations ({obs.source}) hold maps of shape {obs.maps.shape[1:]}, "
            f"not (lat, lon) = {shape}"
        )
    return shape, obs.lat_deg, obs.lon_deg


# --------------------------------------------------------------------------- optimisers
@dataclasses.dataclass(frozen=True)
class FitResult:
    """Outcome of :func:`fit` (the best of the starts).

    Attributes:
        estimate: key -> fitted physical value.
        loss: final loss.
        loss_history, gradient_norm_history: per iterate of the best start (the gradient in
            the unconstrained coordinates).
        iterations: optimiser updates of the best start.
        converged: stopped by the gradient-norm or relative-loss-change test.
        reason: why it stopped.
        starts: per start: its values, estimate, loss, iterations.
        optimizer: "lbfgs" or "adam".
        wall_s: seconds for all starts (compilation included).
    """

    estimate: dict[str, float]
    loss: float
    loss_history: list[float]
    gradient_norm_history: list[float]
    iterations: int
    converged: bool
    reason: str
    starts: list[dict[str, Any]]
    optimizer: str
    wall_s: float


def make_starts(
    problem: Problem,
    n: int,
    *,
    first: Mapping[str, float] | None = None,
    spread: float = 0.7,
    seed: int = 0,
) -> list[dict[str, float]]:
    """``n`` starting points: ``first`` (default: the config's values), then points drawn around
    it in the unconstrained coordinates (σ = ``spread``: about ×2 for log keys)."""
    if n < 1:
        raise InputError(f"--starts must be >= 1, got {n}")
    model = problem.model
    x0 = dict(problem.start_values())
    x0.update(first or {})
    u0 = model.to_unconstrained(x0)
    rng = np.random.default_rng(seed)
    out = [x0]
    for _ in range(n - 1):
        u = u0 + spread * rng.standard_normal(u0.shape)
        z = np.asarray(model.to_physical(jnp.asarray(u)))
        start = {k: float(z[i]) for i, k in enumerate(model.keys)}
        for s in model.specs:
            if s.transform == "log" and s.hi is not None:
                # Stay well inside the ν ceiling the stability plan was made for.
                start[s.key] = min(start[s.key], 0.5 * s.hi)
        out.append(start)
    return out


def fit(
    problem: Problem,
    starts: Sequence[Mapping[str, float]] | None = None,
    *,
    optimizer: Literal["lbfgs", "adam"] = "lbfgs",
    steps: int | None = None,
    learning_rate: float = 0.05,
    memory_size: int = 10,
    gtol: float = 1e-6,
    gtol_abs: float = 1e-12,
    ftol: float = 1e-10,
) -> FitResult:
    """Minimise the problem's loss from each start; return the best.

    Runs in the unconstrained coordinates u of the :class:`ParamSpec`. Stops when the gradient
    norm falls below ``gtol`` × its initial value (or ``gtol_abs``), when the loss changes by
    less than ``ftol`` relative between iterates, or after ``steps`` updates.

    Args:
        problem: from :func:`make_problem`.
        starts: physical starting values (default: the config's values).
        optimizer: "lbfgs" (``optax.lbfgs`` with its zoom line search) or "adam".
        steps: maximum updates per start (default 60 for L-BFGS, 300 for Adam).
        learning_rate: Adam's step size in u.
        memory_size: L-BFGS history length.
        gtol, gtol_abs, ftol: convergence tolerances.
    """
    if optimizer not in ("lbfgs", "adam"):
        raise InputError(f"--optimizer must be 'lbfgs' or 'adam', got {optimizer!r}")
    if steps is None:
        steps = 60 if optimizer == "lbfgs" else 300
    if steps < 0:
        raise InputError(f"--steps must be >= 0, got {steps}")
    model = problem.model
    comp = problem.compiled
    starts = list(starts) if starts else [problem.start_values()]
    data = problem.data
    wall0 = time.perf_counter()
    runs: list[dict[str, Any]] = []
    for i_start, start in enumerate(starts):
        u = jnp.asarray(model.to_unconstrained({**problem.start_values(), **start}))
        losses: list[float] = []
        gnorms: list[float] = []
        reason = "max steps"
        converged = False
        if optimizer == "lbfgs":
            opt, update_fn = comp.lbfgs(memory_size)
        else:
            opt, update_fn = comp.adam(float(learning_rate))
        with jax.numpy_dtype_promotion("standard"):
            state = opt.init(u)
        it = 0
        best_u, best_f = u, math.inf
        while True:
            if optimizer == "lbfgs" and it > 0:
                # The zoom line search leaves the value and gradient at the new point in the
                # state (what optax.value_and_grad_from_state reads).
                value = optax.tree_utils.tree_get(state, "value")
                grad = optax.tree_utils.tree_get(state, "grad")
            else:
                value, grad = comp.value_and_grad(u, data)
            f = float(value)
            g = float(jnp.linalg.norm(grad))
            losses.append(f)
            gnorms.append(g)
            if f < best_f:
                best_u, best_f = u, f
            log.info(
                "start %d iter %3d  loss %.6e  |grad| %.3e  %s",
                i_start,
                it,
                f,
                g,
                _fmt(dict(zip(model.keys, np.asarray(comp.to_physical(u)), strict=True))),
            )
            if not (math.isfinite(f) and math.isfinite(g)):
                reason = "non-finite loss or gradient"
                break
            if g <= max(gtol * gnorms[0], gtol_abs):
                reason, converged = "gradient norm", True
                break
            if len(losses) > 1 and abs(losses[-2] - f) <= ftol * max(abs(losses[-2]), abs(f)):
                reason, converged = "relative loss change", True
                break
            if it >= steps:
                break
            if optimizer == "lbfgs":
                u, state = update_fn(u, state, value, grad, data)
            else:
                u, state = update_fn(u, state, grad)
            it += 1
        z = np.asarray(comp.to_physical(best_u))
        runs.append(
            {
                "start": {k: float(start.get(k, problem.start_values()[k])) for k in model.keys},
                "estimate": {k: float(z[i]) for i, k in enumerate(model.keys)},
                "loss": best_f,
                "iterations": it,
                "converged": converged,
                "reason": reason,
                "loss_history": losses,
                "gradient_norm_history": gnorms,
            }
        )
    best = min(runs, key=lambda r: r["loss"] if math.isfinite(r["loss"]) else math.inf)
    return FitResult(
        estimate=best["estimate"],
        loss=best["loss"],
        loss_history=best["loss_history"],
        gradient_norm_history=best["gradient_norm_history"],
        iterations=best["iterations"],
        converged=best["converged"],
        reason=best["reason"],
        starts=[
            {k: r[k] for k in ("start", "estimate", "loss", "iterations", "reason")} for r in runs
        ],
        optimizer=optimizer,
        wall_s=time.perf_counter() - wall0,
    )


def _fmt(theta: Mapping[str, Any]) -> str:
    return " ".join(f"{k.rsplit('.', 1)[-1]}={float(v):.6g}" for k, v in theta.items())


# --------------------------------------------------------------------------- uncertainty
@dataclasses.dataclass(frozen=True)
class Uncertainty:
    """Gauss–Newton (Fisher) uncertainty at an estimate.

    Attributes:
        std: key -> standard deviation, √diag(σ² (JᵀJ)⁻¹), in the key's unit.
        covariance: (p, p) σ² (JᵀJ)⁻¹, keys in the problem's order.
        correlation: (p, p).
        std_sandwich: key -> standard deviation of the heteroscedasticity-robust (sandwich)
            covariance (JᵀJ)⁻¹ (Σ_i r_i² J_i J_iᵀ) (JᵀJ)⁻¹.
        sigma2: residual variance rᵀr / (n − p).
        n_residuals: n (residuals with non-zero weight).
        condition: condition number of JᵀJ.
    """

    std: dict[str, float]
    covariance: np.ndarray
    correlation: np.ndarray
    std_sandwich: dict[str, float]
    sigma2: float
    n_residuals: int
    condition: float


def fisher_uncertainty(problem: Problem, estimate: Mapping[str, float]) -> Uncertainty:
    """Gauss–Newton covariance of the fitted parameters, σ² (JᵀJ)⁻¹.

    J = ∂r/∂x is the Jacobian of the weighted residuals with respect to the physical
    parameters (``jax.jacfwd``, one forward pass per parameter); σ² = rᵀr/(n − p) is the
    residual variance. This is the covariance of the least-squares estimate when the residuals
    are independent with equal variance after weighting, to first order in the noise; it
    scales linearly with the noise level and does not include model error.
    """
    z = problem.vector(estimate)
    jac = np.asarray(problem.compiled.jacobian(z, problem.data), dtype=np.float64)
    r = np.asarray(problem.compiled.residuals(z, problem.data), dtype=np.float64)
    n, p = problem.n_residuals, len(problem.keys)
    dof = max(n - p, 1)
    sigma2 = float(r @ r) / dof
    jtj = jac.T @ jac
    cond = float(np.linalg.cond(jtj)) if np.all(np.isfinite(jtj)) else math.inf
    inv = np.linalg.pinv(jtj, rcond=1e-14, hermitian=True)
    cov = sigma2 * inv
    meat = (jac * (r**2)[:, None]).T @ jac
    sandwich = inv @ meat @ inv * (n / dof)
    std = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    denom = np.where(std > 0, std, 1.0)
    corr = cov / np.outer(denom, denom)
    keys = problem.keys
    if cond > 1e12:
        log.warning(
            "J^T J is nearly singular (condition %.2g): the fitted keys are not all "
            "constrained by these observations",
            cond,
        )
    return Uncertainty(
        std={k: float(std[i]) for i, k in enumerate(keys)},
        covariance=cov,
        correlation=corr,
        std_sandwich={k: float(np.sqrt(max(sandwich[i, i], 0.0))) for i, k in enumerate(keys)},
        sigma2=sigma2,
        n_residuals=n,
        condition=cond,
    )


# --------------------------------------------------------------------------- the command
def _parse_bounds(items: Sequence[str]) -> dict[str, tuple[float, float]]:
    out = {}
    for item in items:
        try:
            key, rng = item.split("=", 1)
            lo, hi = (float(v) for v in rng.split(":"))
        except ValueError:
            raise InputError(f"--bounds takes KEY=LO:HI, got {item!r}") from None
        out[key.strip()] = (lo, hi)
    return out


def _parse_values(items: Sequence[str], what: str) -> dict[str, float]:
    out = {}
    for item in items:
        try:
            key, value = item.split("=", 1)
            out[key.strip()] = float(value)
        except ValueError:
            raise InputError(f"{what} takes KEY=VALUE, got {item!r}") from None
    return out


def _write_json(path: Path, payload: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, sort_keys=True, default=float) + "\n")
    os.replace(tmp, path)


def infer(
    config: str | Path | SftConfig,
    obs: str | Path,
    keys: Sequence[str],
    out: str | Path,
    *,
    optimizer: Literal["lbfgs", "adam"] = "lbfgs",
    steps: int | None = None,
    n_starts: int = 1,
    plots: str | Path | None = None,
    overwrite: bool = False,
    realization: int = 0,
    misfit: MisfitSpec = MisfitSpec(),
    bounds: Mapping[str, tuple[float, float]] | None = None,
    start: Mapping[str, float] | None = None,
    seed: int = 0,
    learning_rate: float = 0.05,
    grad_mode: GradMode = "reverse",
    checkpoint: bool = True,
) -> dict[str, Any]:
    """``jaxgeo sft infer``: fit ``keys`` of ``config`` to the run store ``obs``; write FIT.json.

    Returns:
        The one-line JSON summary.

    Raises:
        StoreExistsError: ``out`` exists and ``overwrite`` is false.
        ConfigError / FileFormatError / InputError: bad keys, store, grid or times.
    """
    wall0 = time.perf_counter()
    out = Path(out)
    if out.exists() and not overwrite:
        raise StoreExistsError(f"output file {out} already exists; pass --overwrite to replace it")
    if out.exists() and out.is_dir():
        raise StoreExistsError(f"output {out} is a directory; FIT.json must be a file path")
    cfg = config if isinstance(config, SftConfig) else SftConfig.from_toml(config)
    cfg_path = None if isinstance(config, SftConfig) else str(config)
    # Key errors first: they need no file reading.
    check_keys(realization_config(cfg, realization), keys)
    observations = Observations.from_store(obs, realization=realization)
    plot_series = ("polar_field_north", "polar_field_south", "ax_dipole") if plots else ()
    first = dict(start or {})
    problem = make_problem(
        cfg,
        observations,
        keys,
        misfit,
        realization=realization,
        bounds=bounds,
        checkpoint=checkpoint,
        grad_mode=grad_mode,
        extra_history=plot_series,
        starts=[first] if first else (),
    )
    for k in first:
        if k not in problem.keys:
            raise InputError(f"--start names {k!r}, which is not fitted")
    starts = make_starts(problem, n_starts, first=first, seed=seed)
    log.info("fitting %s from %d start(s) with %s", ", ".join(problem.keys), len(starts), optimizer)
    result = fit(
        problem,
        starts,
        optimizer=optimizer,
        steps=steps,
        learning_rate=learning_rate,
    )
    unc = fisher_uncertainty(problem, result.estimate)
    truth = observations.true_values(problem.keys)
    payload: dict[str, Any] = {
        "command": "sft infer",
        "config": cfg_path,
        "obs": str(obs),
        "realization": realization,
        "keys": list(problem.keys),
        "estimate": result.estimate,
        "uncertainty": unc.std,
        "uncertainty_sandwich": unc.std_sandwich,
        "correlation": unc.correlation.tolist(),
        "sigma2": unc.sigma2,
        "n_residuals": unc.n_residuals,
        "jtj_condition": unc.condition,
        "true": truth,
        "relative_error": (
            {k: (result.estimate[k] - v) / v if v else None for k, v in truth.items()}
            if truth
            else None
        ),
        "final_loss": result.loss,
        "loss_history": result.loss_history,
        "gradient_norm_history": result.gradient_norm_history,
        "iterations": result.iterations,
        "converged": result.converged,
        "stop_reason": result.reason,
        "optimizer": optimizer,
        "grad_mode": grad_mode,
        "starts": result.starts,
        "misfit": dataclasses.asdict(misfit),
        "parametrisation": {
            s.key: {"transform": s.transform, "lo": s.lo, "hi": s.hi, "ref": s.ref}
            for s in problem.model.specs
        },
        "dt_hours": problem.model.sim.dt_step,
        "grid": [problem.model.grid.n_theta, problem.model.grid.n_phi],
        "fit_wall_s": round(result.wall_s, 3),
    }
    from .._version import __version__

    payload["jaxgeo_version"] = __version__
    plot_paths: list[Path] = []
    if plots is not None:
        plot_paths = plot_fit(problem, result, plots)
    payload["wall_s"] = round(time.perf_counter() - wall0, 3)
    _write_json(out, payload)
    summary: dict[str, Any] = {
        "ok": True,
        "command": "sft infer",
        "out": str(out),
        "estimate": result.estimate,
        "uncertainty": unc.std,
        "final_loss": result.loss,
        "iterations": result.iterations,
        "converged": result.converged,
        "wall_s": payload["wall_s"],
    }
    if truth:
        summary["true"] = truth
    if plot_paths:
        summary["plots"] = [str(p) for p in plot_paths]
    return summary


# --------------------------------------------------------------------------- plots
def plot_fit(problem: Problem, result: FitResult, out_dir: str | Path) -> list[Path]:
    """Loss and gradient-norm histories, observed vs fitted history series and final map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    fig, axes = plt.subplots(1, 2, figsize=(9.0, 3.4), constrained_layout=True)
    it = np.arange(len(result.loss_history))
    axes[0].semilogy(it, np.maximum(result.loss_history, 1e-300), "o-", ms=3)
    axes[0].set_xlabel("iteration")
    axes[0].set_ylabel("loss")
    axes[1].semilogy(it, np.maximum(result.gradient_norm_history, 1e-300), "o-", ms=3, color="C1")
    axes[1].set_xlabel("iteration")
    axes[1].set_ylabel("|gradient| (unconstrained)")
    fig.suptitle(f"{result.optimizer}: {_fmt(result.estimate)}", fontsize=9)
    paths.append(out_dir / "loss_history.png")
    fig.savefig(paths[-1], dpi=130)
    plt.close(fig)

    pred = problem.predict(result.estimate)
    start = problem.predict(problem.start_values())
    obs = problem.observations
    model = problem.model
    names = [
        n for n in ("polar_field_north", "polar_field_south", "ax_dipole") if n in pred["history"]
    ]
    if names:
        fig, axes = plt.subplots(
            len(names), 1, figsize=(8.0, 2.4 * len(names)), squeeze=False, constrained_layout=True
        )
        for ax, n in zip(axes[:, 0], names, strict=True):
            ax.plot(obs.history_times, obs.history[n], "k.", ms=2, label="observed")
            ax.plot(model.history_times, start["history"][n], "C7--", lw=1, label="start")
            ax.plot(model.history_times, pred["history"][n], "C3-", lw=1.2, label="fitted")
            ax.set_ylabel(f"{n} [G]")
        axes[0, 0].legend(fontsize=8)
        axes[-1, 0].set_xlabel("time [h]")
        paths.append(out_dir / "history_fit.png")
        fig.savefig(paths[-1], dpi=130)
        plt.close(fig)

    if model.map_times:
        t_last = model.map_times[-1]
        k = int(np.argmin(np.abs(obs.map_times - t_last)))
        o = obs.maps[k]
        p = pred["maps"][-1]
        lim = float(np.percentile(np.abs(o), 99.0)) or 1.0
        lat, lon = model.grid.lat_deg, model.grid.lon_deg
        fig, axes = plt.subplots(3, 1, figsize=(7.5, 8.4), constrained_layout=True)
        for ax, field, title in (
            (axes[0], o, f"observed, t = {t_last:g} h"),
            (axes[1], p, "fitted"),
            (axes[2], p - o, "fitted − observed"),
        ):
            mesh = ax.pcolormesh(
                lon, lat, field, cmap="RdBu_r", vmin=-lim, vmax=lim, shading="nearest"
            )
            ax.set_title(title, fontsize=9)
            ax.set_ylabel("latitude [deg]")
        axes[-1].set_xlabel("Carrington longitude [deg]")
        fig.colorbar(mesh, ax=axes, label="Br [G]", shrink=0.8, extend="both")
        paths.append(out_dir / "final_map_fit.png")
        fig.savefig(paths[-1], dpi=130)
        plt.close(fig)
    return paths


# --------------------------------------------------------------------------- CLI
_HISTORY_DEFAULT = "polar_field_north,polar_field_south,ax_dipole"


def _cmd_infer(args: argparse.Namespace) -> int:
    from ..cli import print_summary

    jax.config.update("jax_enable_x64", True)
    parts = {p.strip() for p in args.misfit.split(",") if p.strip()}
    unknown = parts - {"maps", "history"}
    if unknown or not parts:
        raise InputError(f"--misfit takes maps, history or maps,history; got {args.misfit!r}")
    history = tuple(n.strip() for n in args.history.split(",") if n.strip())
    misfit = MisfitSpec(
        maps="maps" in parts,
        history=history if "history" in parts else (),
        visibility=args.visibility,
        mu_power=args.mu_power,
        mu_limit=args.mu_limit,
        observer_lon0_deg=args.observer_lon0,
        b0_deg=args.b0,
    )
    summary = infer(
        args.config,
        args.obs,
        [k for k in args.fit.split(",") if k.strip()],
        args.out,
        optimizer=args.optimizer,
        steps=args.steps,
        n_starts=args.starts,
        plots=args.plots,
        overwrite=args.overwrite,
        realization=args.realization,
        misfit=misfit,
        bounds=_parse_bounds(args.bounds or []),
        start=_parse_values(args.start or [], "--start"),
        seed=args.seed,
        learning_rate=args.learning_rate,
        grad_mode=args.grad_mode,
    )
    print_summary(summary)
    return 0


def register_infer(subparsers: argparse._SubParsersAction) -> None:
    """Add ``jaxgeo sft infer`` (called from ``jaxgeo.sft.commands.register``)."""
    p = subparsers.add_parser(
        "infer",
        help="fit run parameters to an observed run store by gradient descent",
        description=(
            "Fit parameters of CONFIG (nu, flow coefficients, attenuation, emergence rate, "
            "initial-map scale) to the maps and/or history series of an observed run store, "
            "by L-BFGS or Adam through the differentiable run; writes FIT.json with the "
            "estimate and its Gauss-Newton (Fisher) uncertainty."
        ),
    )
    p.add_argument("config", help="TOML config of the model (its values are the first start)")
    p.add_argument("--obs", required=True, help="observed run store (jaxgeo sft run ... --out)")
    p.add_argument(
        "--fit",
        required=True,
        metavar="KEY[,KEY...]",
        help=f"config keys to fit, from: {', '.join(FITTABLE)}",
    )
    p.add_argument("--out", required=True, help="output FIT.json")
    p.add_argument("--optimizer", choices=("lbfgs", "adam"), default="lbfgs")
    p.add_argument(
        "--steps", type=int, default=None, help="max updates per start (lbfgs 60, adam 300)"
    )
    p.add_argument("--starts", type=int, default=1, help="number of starting points")
    p.add_argument("--seed", type=int, default=0, help="seed of the extra starting points")
    p.add_argument(
        "--start", action="append", metavar="KEY=VALUE", help="first start (default: CONFIG's)"
    )
    p.add_argument(
        "--bounds",
        action="append",
        metavar="KEY=LO:HI",
        help="bounds of a key (tanh reparametrisation; log-tanh for positive keys)",
    )
    p.add_argument(
        "--misfit", default="maps,history", help="what to fit: maps, history or maps,history"
    )
    p.add_argument(
        "--history", default=_HISTORY_DEFAULT, help="history series fitted (comma separated)"
    )
    p.add_argument(
        "--visibility",
        action="store_true",
        help="weight maps by mu^p on the Earth-facing disk, zero behind the limb",
    )
    p.add_argument("--mu-power", type=float, default=4.0, help="visibility weight mu^p")
    p.add_argument("--mu-limit", type=float, default=0.1, help="no weight where mu <= limit")
    p.add_argument(
        "--observer-lon0", type=float, default=0.0, help="sub-observer longitude at t=0 [deg]"
    )
    p.add_argument("--b0", type=float, default=0.0, help="observer latitude B0 [deg]")
    p.add_argument("--realization", type=int, default=0, help="realization of the store to fit")
    p.add_argument("--learning-rate", type=float, default=0.05, help="Adam step size")
    p.add_argument(
        "--grad-mode",
        choices=("reverse", "forward"),
        default="reverse",
        help="reverse: checkpointed adjoint; forward: one JVP per key (faster for 1-3 keys)",
    )
    p.add_argument("--plots", metavar="DIR", help="write loss, series and map figures into DIR")
    p.add_argument("--overwrite", action="store_true", help="replace an existing FIT.json")
    p.set_defaults(func=_cmd_infer)
