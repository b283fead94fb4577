"""Data assimilation of observed maps, after HipFT's ``load_data_assimilation``,
``apply_data_assimilation`` and ``assimilate_new_data``.

At each listed time the model field is nudged toward an observed map::

    blend:  B ← B + w (B_obs − B)        (HipFT)
    add:    B ← B + w B_obs              (observed map taken as an increment)

with an optional flux balancing of the increment by HipFT's multiplicative ``balance_flux``
(:func:`jaxgeo.sft.sources.balance_flux`, with HipFT's ``get_flux`` weights), so the assimilation
adds no net signed flux.

Map files are HipFT's 3-slice HDF5 maps (``Data`` of shape (slices, n_theta, n_phi + 1) as
h5py reads it, scales ``dim1`` = φ with the periodic end point, ``dim2`` = θ): slice 0 is Br
(G), slice 1 the default weight w ∈ [0, 1], slice 2 μ, the cosine of the angle from disk
centre (negative on the far side). HipFT fills the φ₀ column of the increment from the file's
*last* (φ₀ + 2π) column, and so does :func:`read_observed_map`.

Weights (HipFT's options):

- ``custom_from_mu``: w = μ^p where μ > μ_limit, else 0 (:func:`assimilation_weights`);
  otherwise the file's weight slice is used as is.
- ``lat_limit_deg`` L > 0 zeroes the weight of the rows within L degrees of each pole, i.e.
  poleward of latitude 90° − L. As HipFT does, the first row at or beyond colatitude L (and
  the last row at or before π − L) is zeroed too (:func:`apply_lat_limit`).

All weight and update functions are pure and take their continuous parameters (μ power,
μ limit, latitude limit) as traced arguments, so they can be vmapped over an ensemble and
differentiated (the weights are smooth in the power; the limits act as steps).

Map lists (:class:`MapList`) come in two forms:

- ours: a CSV with the header ``time_hours,path`` and one ``time,path`` row per map, times in
  model hours;
- HipFT's (``assimilate_data_map_list_filename``): a header row, then
  ``target_datetime_utc,obs_datetime_utc,obs_jd,map_path`` rows (comma separated, or HipFT's
  fixed columns ``(A19,1X,A19,1X,F13.5,1X,A)``); times are 24·(obs_jd − obs_jd of the first
  row) hours.

Relative map paths are resolved against ``root_dir`` (HipFT's
``assimilate_data_map_root_dir``; default: the list file's folder).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

from jaxgeo.errors import ConfigError, FileFormatError, InputError
from jaxgeo.io.hipft_h5 import read_psi_h5
from jaxgeo.sft import sources as _sources
from jaxgeo.sft.grid import SftGrid

__all__ = [
    "MapList",
    "ObservedMap",
    "apply_lat_limit",
    "assimilate",
    "assimilation_weights",
    "make_assimilate",
    "observation_weights",
    "read_observed_map",
    "stack_observed_maps",
]

AssimilationMode = Literal["blend", "add"]
_MODES = ("blend", "add")
_CSV_HEADER = ("time_hours", "path")
# HipFT's degrees -> radians constant.
_D2R = math.pi / 180.0
# Tolerance on matching a map's scales to the run's grid (HipFT's set_mesh eps).
_SCALE_TOL = 1e-6


# ---------------------------------------------------------------------------------- weights
def assimilation_weights(
    grid: SftGrid,
    mu: Float[ArrayLike, "*b theta phi"],
    *,
    mu_power: Float[ArrayLike, ""] = 4.0,
    mu_limit: Float[ArrayLike, ""] = 0.1,
    lat_limit_deg: Float[ArrayLike, ""] = 0.0,
) -> Float[Array, "*b theta phi"]:
    """HipFT's custom weights from μ: w = μ^p where μ > μ_limit, else 0, then the latitude limit.

    Args:
        grid: the grid of ``mu``.
        mu: cosine of the angle from disk centre (..., n_theta, n_phi); ≤ 0 on the far side.
        mu_power: exponent p (HipFT's ``assimilate_data_mu_power``); traced.
        mu_limit: weights are zero where μ ≤ this (``assimilate_data_mu_limit``); traced.
        lat_limit_deg: latitude limit L in degrees (``assimilate_data_lat_limit``, see
            :func:`apply_lat_limit`); 0 for none; traced.

    Returns:
        The weights, same shape as ``mu``.
    """
    mu = jnp.asarray(mu)
    p = jnp.asarray(mu_power, dtype=mu.dtype)
    on = mu > jnp.asarray(mu_limit, dtype=mu.dtype)
    # μ^p only where it is taken: a safe base keeps log(μ) (∂/∂p) finite elsewhere.
    base = jnp.where(on, mu, 1.0)
    w = jnp.where(on, jnp.power(base, p), 0.0)
    return apply_lat_limit(grid, w, lat_limit_deg)


def apply_lat_limit(
    grid: SftGrid,
    weight: Float[ArrayLike, "*b theta phi"],
    lat_limit_deg: Float[ArrayLike, ""],
) -> Float[Array, "*b theta phi"]:
    """Zero the weights within ``lat_limit_deg`` of each pole, as HipFT's latitude limiter.

    HipFT finds j₀, the first row with θ ≥ L, and j₁, the last row with θ ≤ π − L, and zeroes
    rows ≤ j₀ and ≥ j₁ when L > 0. The same rows are found here with comparisons only, so L
    may be traced.

    Args:
        grid: the grid.
        weight: (..., n_theta, n_phi).
        lat_limit_deg: L in degrees, 0 ≤ L ≤ 90; 0 leaves the weights unchanged.

    Returns:
        The limited weights.
    """
    weight = jnp.asarray(weight)
    lim_deg = jnp.asarray(lat_limit_deg, dtype=weight.dtype)
    lim = lim_deg * _D2R
    theta = jnp.asarray(grid.theta, dtype=weight.dtype)
    row = jnp.arange(grid.n_theta)
    # Row j ≤ j₀  ⇔  θ_{j−1} < L (θ ascending); row j ≥ j₁  ⇔  θ_{j+1} > π − L.
    prev = jnp.concatenate([theta[:1], theta[:-1]])
    nxt = jnp.concatenate([theta[1:], theta[-1:]])
    north = (row == 0) | (prev < lim)
    south = (row == grid.n_theta - 1) | (nxt > math.pi - lim)
    cut = (north | south) & (lim_deg > 0.0)
    return jnp.where(cut[:, None], 0.0, weight)


def observation_weights(
    grid: SftGrid,
    obs: ObservedMap,
    *,
    custom_from_mu: bool = False,
    mu_power: Float[ArrayLike, ""] = 4.0,
    mu_limit: Float[ArrayLike, ""] = 0.1,
    lat_limit_deg: Float[ArrayLike, ""] = 0.0,
) -> Float[Array, "*b theta phi"]:
    """The weights HipFT's ``apply_data_assimilation`` uses for an observed map.

    Args:
        grid: the grid.
        obs: the observed map(s).
        custom_from_mu: use μ^p (``assimilate_data_custom_from_mu``) instead of the file's
            weight slice.
        mu_power, mu_limit, lat_limit_deg: as in :func:`assimilation_weights` (traced).

    Raises:
        InputError: ``custom_from_mu`` with maps that hold no μ slice.
    """
    if custom_from_mu:
        if obs.mu is None:
            raise InputError(
                "assimilation.custom_from_mu needs maps with a third (mu) slice; these have only 2"
            )
        return assimilation_weights(
            grid, obs.mu, mu_power=mu_power, mu_limit=mu_limit, lat_limit_deg=lat_limit_deg
        )
    return apply_lat_limit(grid, obs.weight, lat_limit_deg)


# ---------------------------------------------------------------------------------- update
def _check_mode(mode: str) -> None:
    if mode not in _MODES:
        raise ConfigError(f"assimilation.mode must be one of {_MODES}, got {mode!r}")


def assimilate(
    br: Float[ArrayLike, "*b theta phi"],
    obs: Float[ArrayLike, "*b theta phi"],
    weight: Float[ArrayLike, "*b theta phi"],
    *,
    grid: SftGrid | None = None,
    mode: AssimilationMode = "blend",
    balance_flux: bool = False,
) -> Float[Array, "*b theta phi"]:
    """Assimilate an observed map into the field (HipFT's ``assimilate_new_data``).

    Args:
        br: model field (..., n_theta, n_phi), G.
        obs: observed Br (broadcastable to ``br``), G.
        weight: weights w (broadcastable to ``br``), normally in [0, 1].
        grid: the grid; needed when ``balance_flux``.
        mode: ``"blend"``: B + w (B_obs − B); ``"add"``: B + w B_obs.
        balance_flux: flux balance the increment (HipFT's ``assimilate_data_balance_flux``),
            per leading index.

    Returns:
        The updated field.

    Raises:
        ConfigError: unknown mode, or ``balance_flux`` without a grid.
    """
    _check_mode(mode)
    if balance_flux and grid is None:
        raise ConfigError("assimilate(balance_flux=True) needs the grid (cell areas)")
    br = jnp.asarray(br)
    obs = jnp.asarray(obs, dtype=br.dtype)
    weight = jnp.asarray(weight, dtype=br.dtype)
    increment = weight * (obs - br) if mode == "blend" else weight * obs
    increment = jnp.broadcast_to(increment, jnp.broadcast_shapes(increment.shape, br.shape))
    if balance_flux and grid is not None:
        increment = _sources.balance_flux(increment, grid)
    return br + increment


def make_assimilate(
    grid: SftGrid, *, mode: AssimilationMode = "blend", balance_flux: bool = False
) -> Callable[..., Float[Array, "*b theta phi"]]:
    """Factory: ``fn(br, obs, weight) -> br'``, :func:`assimilate` closed over the grid.

    Args:
        grid: the grid (static).
        mode: ``"blend"`` or ``"add"``.
        balance_flux: flux balance each increment.
    """
    _check_mode(mode)

    def step(
        br: Float[ArrayLike, "*b theta phi"],
        obs: Float[ArrayLike, "*b theta phi"],
        weight: Float[ArrayLike, "*b theta phi"],
    ) -> Float[Array, "*b theta phi"]:
        return assimilate(br, obs, weight, grid=grid, mode=mode, balance_flux=balance_flux)

    return step


# ---------------------------------------------------------------------------------- map files
@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ObservedMap:
    """An observed map (or a stack of them along leading axes) on the run's grid.

    Attributes:
        br: observed Br (..., n_theta, n_phi), G.
        weight: the file's default weights (..., n_theta, n_phi).
        mu: cosine of the angle from disk centre (..., n_theta, n_phi), or None when the file
            has only two slices.
    """

    br: Float[Array, "*b theta phi"]
    weight: Float[Array, "*b theta phi"]
    mu: Float[Array, "*b theta phi"] | None = None


def read_observed_map(path: str | Path, grid: SftGrid) -> ObservedMap:
    """Read one HipFT assimilation map (Br, weight[, μ] slices) on ``grid``.

    The file's scales must match the grid (no interpolation, as in HipFT). The φ₀ column is
    taken from the file's periodic end-point column, as HipFT's ``assimilate_new_data`` does.

    Raises:
        FileFormatError: missing file, fewer than 2 slices, or scales that do not match the grid.
    """
    data, scales, _ = read_psi_h5(path, what="assimilation map")
    name = str(path)
    if data.ndim != 3 or data.shape[0] < 2:
        raise FileFormatError(
            f"assimilation map {name!r} must be 3-D with slices (Br, weight[, mu]), "
            f"got Data shape {data.shape}"
        )
    phi_f, theta_f = scales[0], scales[1]
    if theta_f.size != grid.n_theta or np.max(np.abs(theta_f - grid.theta)) > _SCALE_TOL:
        raise FileFormatError(
            f"assimilation map {name!r}: theta scale ({theta_f.size} points) does not match the "
            f"run grid ({grid.n_theta} points); maps must be on the run's grid"
        )
    phi_ref = grid.hipft_phi()
    if phi_f.size != phi_ref.size or np.max(np.abs(phi_f - phi_ref)) > _SCALE_TOL:
        raise FileFormatError(
            f"assimilation map {name!r}: phi scale ({phi_f.size} points with the periodic end "
            f"point) does not match the run grid ({phi_ref.size}); maps must be on the run's grid"
        )
    unique = np.concatenate([data[..., -1:], data[..., 1:-1]], axis=-1)
    mu = jnp.asarray(unique[2]) if unique.shape[0] >= 3 else None
    return ObservedMap(br=jnp.asarray(unique[0]), weight=jnp.asarray(unique[1]), mu=mu)


def stack_observed_maps(maps: Sequence[ObservedMap]) -> ObservedMap:
    """Stack observed maps along a new leading axis (μ kept only if every map has it)."""
    mus = [m.mu for m in maps if m.mu is not None]
    return ObservedMap(
        br=jnp.stack([m.br for m in maps]),
        weight=jnp.stack([m.weight for m in maps]),
        mu=jnp.stack(mus) if len(mus) == len(maps) else None,
    )


@dataclasses.dataclass(frozen=True)
class MapList:
    """A validated list of assimilation maps and their times.

    Attributes:
        times_hours: assimilation times in model hours, strictly increasing.
        paths: the map files, resolved (absolute or relative to the working directory).
        source: the list file it was read from (for messages), or None.
        kind: ``"csv"`` (``time_hours,path``) or ``"hipft"`` (HipFT's list).
    """

    times_hours: tuple[float, ...]
    paths: tuple[Path, ...]
    source: Path | None = None
    kind: Literal["csv", "hipft"] = "csv"

    def __post_init__(self) -> None:
        times = tuple(float(t) for t in self.times_hours)
        paths = tuple(Path(p) for p in self.paths)
        where = f"map list {str(self.source)!r}" if self.source else "map list"
        if len(times) != len(paths):
            raise InputError(f"{where}: {len(times)} times but {len(paths)} paths")
        if not times:
            raise InputError(f"{where}: lists no maps")
        for i, t in enumerate(times):
            if not math.isfinite(t):
                raise InputError(f"{where}: time of map {i + 1} is not finite ({t!r})")
            if i and t <= times[i - 1]:
                raise InputError(
                    f"{where}: map {i + 1} time {t!r} h is not after map {i} time "
                    f"{times[i - 1]!r} h; times must be strictly increasing"
                )
        object.__setattr__(self, "times_hours", times)
        object.__setattr__(self, "paths", paths)

    def __len__(self) -> int:
        return len(self.times_hours)

    # ------------------------------------------------------------------ parsing
    @classmethod
    def read(
        cls, path: str | Path, *, root_dir: str | Path | None = None, check_files: bool = True
    ) -> MapList:
        """Read and validate a map list file (our CSV or HipFT's list).

        Args:
            path: the list file.
            root_dir: folder the listed map paths are relative to (default: the list's folder).
            check_files: check that every listed map exists.

        Raises:
            FileFormatError: missing list or map file, wrong columns, unparsable values,
                unsorted or duplicate times; the message names the file and line.
        """
        path = Path(path)
        if not path.is_file():
            raise FileFormatError(f"map list {str(path)!r} does not exist")
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise FileFormatError(f"map list {str(path)!r} could not be read: {exc}") from exc
        root = Path(root_dir) if root_dir is not None else path.parent
        return cls.parse(text, name=path, root_dir=root, check_files=check_files)

    @classmethod
    def parse(
        cls,
        text: str,
        *,
        name: str | Path = "<map list>",
        root_dir: str | Path = ".",
        check_files: bool = True,
    ) -> MapList:
        """Parse the text of a map list (see :meth:`read`); ``name`` is used in messages."""
        lines = text.splitlines()
        numbered = [
            (i + 1, ln)
            for i, ln in enumerate(lines)
            if ln.strip() and not ln.lstrip().startswith("#")
        ]
        if not numbered:
            raise FileFormatError(f"{name}: empty map list (expected a header row and map rows)")
        header_no, header = numbered[0]
        rows = numbered[1:]
        fields = tuple(f.strip().lower() for f in header.split(","))
        kind: Literal["csv", "hipft"]
        if fields == _CSV_HEADER:
            kind = "csv"
            parsed = [_parse_csv_row(name, no, ln) for no, ln in rows]
        elif len(fields) == 2 or "time_hours" in fields:
            raise FileFormatError(
                f"{name}:{header_no}: header must be 'time_hours,path' (or a HipFT map list "
                f"header such as 'target_datetime_utc,obs_datetime_utc,obs_jd,map_path'), "
                f"got {header.strip()!r}"
            )
        else:
            kind = "hipft"
            jd = [_parse_hipft_row(name, no, ln) for no, ln in rows]
            parsed = [(24.0 * (d - jd[0][0]), p) for d, p in jd] if jd else []
        if not parsed:
            raise FileFormatError(f"{name}: the map list has a header but no maps")
        root = Path(root_dir)
        times: list[float] = []
        paths: list[Path] = []
        for (no, _), (t, rel) in zip(rows, parsed, strict=True):
            if times and t <= times[-1]:
                what = "repeats" if t == times[-1] else "is before"
                raise FileFormatError(
                    f"{name}:{no}: time {t!r} h {what} the previous map's {times[-1]!r} h; "
                    "map times must be strictly increasing"
                )
            full = Path(rel) if Path(rel).is_absolute() else root / rel
            if check_files and not full.is_file():
                raise FileFormatError(f"{name}:{no}: map file {str(full)!r} does not exist")
            times.append(t)
            paths.append(full)
        return cls(times_hours=tuple(times), paths=tuple(paths), source=Path(name), kind=kind)

    # ------------------------------------------------------------------ use
    def schedule(
        self, start_hours: float = 0.0, end_hours: float = math.inf
    ) -> tuple[tuple[float, Path], ...]:
        """When each map is assimilated in a run, by HipFT's rule.

        HipFT starts with the map whose time is nearest to the start time and assimilates it
        at the start; the following maps are assimilated at their own times (up to the end).

        Returns:
            ``((time_hours, path), ...)`` in order.
        """
        times = np.asarray(self.times_hours)
        first = int(np.argmin(np.abs(times - start_hours)))
        out = [(float(start_hours), self.paths[first])]
        out += [
            (float(t), p)
            for t, p in zip(self.times_hours[first + 1 :], self.paths[first + 1 :], strict=True)
            if t <= end_hours
        ]
        return tuple(out)

    def read_maps(self, grid: SftGrid) -> ObservedMap:
        """Read every listed map on ``grid``, stacked along a leading axis of length len(self)."""
        return stack_observed_maps([read_observed_map(p, grid) for p in self.paths])


# Older private name, kept for callers that used it.
_stack_maps = stack_observed_maps


def _parse_csv_row(name: str | Path, no: int, line: str) -> tuple[float, str]:
    parts = [p.strip() for p in line.split(",")]
    if len(parts) != 2:
        raise FileFormatError(
            f"{name}:{no}: expected 2 columns 'time_hours,path', got {len(parts)}: {line.strip()!r}"
        )
    try:
        t = float(parts[0])
    except ValueError:
        raise FileFormatError(
            f"{name}:{no}: time_hours must be a number, got {parts[0]!r}"
        ) from None
    if not math.isfinite(t):
        raise FileFormatError(f"{name}:{no}: time_hours must be finite, got {parts[0]!r}")
    if not parts[1]:
        raise FileFormatError(f"{name}:{no}: empty map path")
    return t, parts[1]


def _parse_hipft_row(name: str | Path, no: int, line: str) -> tuple[float, str]:
    parts = [p.strip() for p in line.split(",")]
    if len(parts) != 4:
        # HipFT reads fixed columns (A19,1X,A19,1X,F13.5,1X,A).
        if len(line) < 55 or "," in line:
            raise FileFormatError(
                f"{name}:{no}: expected 4 columns 'target_datetime_utc,obs_datetime_utc,obs_jd,"
                f"map_path' (HipFT map list), got {len(parts)}: {line.strip()!r}"
            )
        parts = [line[0:19].strip(), line[20:39].strip(), line[40:53].strip(), line[54:].strip()]
    try:
        jd = float(parts[2])
    except ValueError:
        raise FileFormatError(
            f"{name}:{no}: obs_jd (third column) must be a Julian date, got {parts[2]!r}"
        ) from None
    if not math.isfinite(jd):
        raise FileFormatError(f"{name}:{no}: obs_jd must be finite, got {parts[2]!r}")
    if not parts[3]:
        raise FileFormatError(f"{name}:{no}: empty map path")
    return jd, parts[3]
