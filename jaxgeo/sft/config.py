"""Flux-transport run configuration (TOML <-> frozen dataclasses).

The structure mirrors the TOML file of ``docs/sft/config.md``. A physics section that is
present switches that process on, as HipFT's ``advance_*`` switches do; a key left out inside
a section takes HipFT's default. Everything is checked before any work starts.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from ..config import dumps_toml, from_dict, option, read_toml, section, to_dict
from ..errors import ConfigError

InitialKind = Literal["map", "soccer", "gaussians", "dipole", "harmonic", "zero"]
AdvectionScheme = Literal["weno3-ssprk43", "weno3-ssprk33", "upwind-ssprk33", "upwind-euler"]
DiffusionScheme = Literal["rkg2", "rkl2", "euler"]


@dataclasses.dataclass(frozen=True)
class GridConfig:
    n_theta: int = option(180, doc="points in colatitude, both poles included", ge=5)
    n_phi: int = option(360, doc="points in longitude, periodic end point included", ge=5)


@dataclasses.dataclass(frozen=True)
class InitialConfig:
    kind: InitialKind = option("map", doc="map | soccer | gaussians | dipole | harmonic | zero")
    path: str | None = option(None, doc="HipFT/PSI HDF5 map or jaxgeo zarr store (kind = map)")
    scale: float = option(1.0, doc="factor applied to the initial field")
    flux_balance: bool = option(False, doc="remove the net signed flux of the initial map")
    l: int = option(6, doc="degree of the harmonic initial state", ge=0)
    m: int = option(5, doc="order of the harmonic initial state (|m| <= l; m < 0: sin family)")
    amplitude_gauss: float = option(
        1.0, doc="amplitude of dipole / harmonic initial states", unit="G"
    )

    def __post_init__(self) -> None:
        if self.kind == "map" and not self.path:
            raise ConfigError("initial.path is required when initial.kind = 'map'")
        if self.kind == "harmonic" and abs(self.m) > self.l:
            raise ConfigError(f"initial.m must satisfy |m| <= l = {self.l}, got {self.m}")


@dataclasses.dataclass(frozen=True)
class TimeConfig:
    start_hours: float = option(0.0, doc="start time", unit="h")
    end_hours: float = option(672.0, doc="end time", unit="h")
    dt_max_hours: float = option(1.0, doc="largest time step", unit="h", gt=0)
    dt_min_hours: float = option(1e-6, doc="smallest allowed time step", unit="h", gt=0)
    splitting: Literal["lie", "strang"] = option("lie", doc="operator splitting")

    def __post_init__(self) -> None:
        if self.end_hours <= self.start_hours:
            raise ConfigError(
                f"time.end_hours must be > time.start_hours = {self.start_hours}, got {self.end_hours}"
            )


@dataclasses.dataclass(frozen=True)
class OutputConfig:
    map_cadence_hours: float = option(24.0, doc="interval between stored maps", unit="h", gt=0)
    history_cadence_hours: float = option(1.0, doc="interval between history rows", unit="h", gt=0)
    dtype: Literal["float32", "float64"] = option("float32", doc="precision of stored maps")
    checkpoint_cadence_hours: float | None = option(
        None, doc="interval between checkpoints (default: every stored map)", unit="h", gt=0
    )
    pole_flux_lat_limit_deg: float = option(
        30.0, doc="polar-cap size for polar fluxes and areas", unit="deg", gt=0, le=90
    )


@dataclasses.dataclass(frozen=True)
class DifferentialRotationConfig:
    model: Literal["aft"] = option(
        "aft", doc="AFT profile v_phi = sin(t)(p0 + p2 cos^2 t + p4 cos^4 t)"
    )
    p0: float = option(46.0, doc="AFT coefficient", unit="m/s")
    p2: float = option(-262.0, doc="AFT coefficient", unit="m/s")
    p4: float = option(-379.0, doc="AFT coefficient", unit="m/s")


@dataclasses.dataclass(frozen=True)
class MeridionalConfig:
    model: Literal["aft"] = option("aft", doc="AFT meridional-flow profile")
    p1: float = option(22.0, doc="AFT coefficient", unit="m/s")
    p3: float = option(11.0, doc="AFT coefficient", unit="m/s")
    p5: float = option(-28.0, doc="AFT coefficient", unit="m/s")


@dataclasses.dataclass(frozen=True)
class FlowFilesConfig:
    list: str = option(doc="flow list file (HipFT format): time (days), v_theta file, v_phi file")
    root_dir: str = option(".", doc="folder the listed files are relative to")


@dataclasses.dataclass(frozen=True)
class FlowConfig:
    scheme: AdvectionScheme = option("weno3-ssprk43", doc="space + time scheme for advection")
    differential_rotation: DifferentialRotationConfig | None = option(
        None, doc="differential rotation (omit for none)"
    )
    meridional: MeridionalConfig | None = option(None, doc="meridional flow (omit for none)")
    rigid_omega_km_s: float = option(
        0.0, doc="rigid rotation v_phi = omega sin(theta)", unit="km/s"
    )
    vtheta_const_km_s: float = option(0.0, doc="constant v_theta", unit="km/s")
    attenuate_gauss: float | None = option(
        None, doc="flow attenuation v (1 - tanh(|B|/B_att)); omit for none", unit="G", gt=0
    )
    files: FlowFilesConfig | None = option(None, doc="time-dependent flows from files")


@dataclasses.dataclass(frozen=True)
class DiffusionConfig:
    nu_km2_s: float = option(0.0, doc="uniform diffusivity", unit="km^2/s", ge=0)
    nu_map: str | None = option(None, doc="HDF5 map of diffusivity (km^2/s) on the run grid")
    scheme: DiffusionScheme = option("rkg2", doc="Euler, or RKL2 / RKG2 super time stepping")
    subcycles: int | Literal["auto"] = option("auto", doc="diffusion sub-cycles per step, or auto")

    def __post_init__(self) -> None:
        if isinstance(self.subcycles, int) and self.subcycles < 1:
            raise ConfigError(f"diffusion.subcycles must be >= 1 or 'auto', got {self.subcycles}")


@dataclasses.dataclass(frozen=True)
class RfeConfig:
    model: Literal[1, 2] = option(2, doc="HipFT random-flux-emergence model")
    unsigned_flux_1e21_mx_per_hour: float = option(
        0.0, doc="total unsigned flux emerging per hour", unit="1e21 Mx/h", ge=0
    )
    lifetime_hours: float = option(0.3, doc="lifetime of one emergence frame", unit="h", gt=0)
    sigma_deg: float | None = option(
        None, doc="Gaussian patch width; omit for HipFT's cell-by-cell emergence", unit="deg", gt=0
    )
    seed: int = option(1, doc="random seed; list it in [ensemble] for independent realizations")


@dataclasses.dataclass(frozen=True)
class SourcesConfig:
    rfe: RfeConfig | None = option(None, doc="random flux emergence (omit for none)")
    static_path: str | None = option(None, doc="static source map (HDF5, G/h) added every step")


@dataclasses.dataclass(frozen=True)
class AssimilationConfig:
    map_list: str = option(doc="CSV of (time_hours, path) or a HipFT map list")
    root_dir: str | None = option(
        None, doc="folder the listed maps are relative to (default: the list's)"
    )
    custom_from_mu: bool = option(
        False,
        doc="weights mu^p above mu_limit from the maps' mu slice (else the maps' weight slice)",
    )
    mu_power: float = option(4.0, doc="weight = mu^p", ge=0)
    mu_limit: float = option(0.1, doc="no assimilation where mu <= limit", ge=0, le=1)
    lat_limit_deg: float = option(
        0.0, doc="no assimilation poleward of 90 - limit", unit="deg", ge=0, lt=90
    )
    balance_flux: bool = option(False, doc="remove the net flux of each increment")
    mode: Literal["blend", "add"] = option("blend", doc="B += w (B_obs - B), or B += w B_obs")


@dataclasses.dataclass(frozen=True)
class EnsembleConfig:
    """Per-realization values; keys are dotted config paths."""

    mode: Literal["zip", "product"] = option(
        "zip", doc="zip lists of one length, or Cartesian product"
    )
    values: dict[str, tuple[float, ...]] = dataclasses.field(
        default_factory=dict, metadata={"doc": "parameter path -> list of values"}
    )


# Parameter paths that can vary per realization, with the dataclass field they override.
ENSEMBLE_KEYS: tuple[str, ...] = (
    "initial.scale",
    "diffusion.nu_km2_s",
    "flow.differential_rotation.p0",
    "flow.differential_rotation.p2",
    "flow.differential_rotation.p4",
    "flow.meridional.p1",
    "flow.meridional.p3",
    "flow.meridional.p5",
    "flow.rigid_omega_km_s",
    "flow.vtheta_const_km_s",
    "flow.attenuate_gauss",
    "assimilation.mu_power",
    "assimilation.mu_limit",
    "sources.rfe.unsigned_flux_1e21_mx_per_hour",
    "sources.rfe.seed",
)


@dataclasses.dataclass(frozen=True)
class SftConfig:
    grid: GridConfig = section(GridConfig, doc="grid when no initial map sets it")
    initial: InitialConfig = section(InitialConfig, doc="initial state")
    time: TimeConfig = section(TimeConfig, doc="time span and stepping")
    output: OutputConfig = section(OutputConfig, doc="what is stored and how often")
    flow: FlowConfig | None = option(None, doc="advection (omit for none)")
    diffusion: DiffusionConfig | None = option(None, doc="diffusion (omit for none)")
    sources: SourcesConfig | None = option(None, doc="sources (omit for none)")
    assimilation: AssimilationConfig | None = option(None, doc="data assimilation (omit for none)")
    ensemble: EnsembleConfig | None = option(None, doc="realizations over parameters")
    base_dir: str = dataclasses.field(
        default=".", metadata={"doc": "folder relative paths refer to"}
    )

    def __post_init__(self) -> None:
        if self.ensemble is not None:
            for key, values in self.ensemble.values.items():
                if key not in ENSEMBLE_KEYS:
                    raise ConfigError(
                        f"ensemble key {key!r} is not a parameter that can vary; "
                        f"choose from: {', '.join(ENSEMBLE_KEYS)}"
                    )
                if len(values) == 0:
                    raise ConfigError(f"ensemble.{key!r} must list at least one value")
                section_name = key.split(".")[0]
                if section_name != "initial" and _get(self, key.rsplit(".", 1)[0]) is None:
                    raise ConfigError(
                        f"ensemble key {key!r} needs the [{key.rsplit('.', 1)[0]}] section to be present"
                    )
            if self.ensemble.mode == "zip":
                lengths = {k: len(v) for k, v in self.ensemble.values.items()}
                if len(set(lengths.values())) > 1:
                    raise ConfigError(
                        f"ensemble lists must all have the same length in zip mode, got {lengths}"
                    )

    # -- construction ---------------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, base_dir: str | Path = ".") -> SftConfig:
        data = dict(data)
        ens = data.pop("ensemble", None)
        if ens is not None:
            if not isinstance(ens, Mapping):
                raise ConfigError(f"ensemble must be a table, got {ens!r}")
            ens = dict(ens)
            mode = ens.pop("mode", "zip")
            values = {k: (v if isinstance(v, list) else [v]) for k, v in ens.items()}
            data["ensemble"] = {"mode": mode, "values": values}
        data.setdefault("base_dir", str(base_dir))
        return from_dict(cls, data)

    @classmethod
    def from_toml(cls, path: str | Path) -> SftConfig:
        p = Path(path)
        return cls.from_dict(read_toml(p), base_dir=str(p.resolve().parent))

    @classmethod
    def from_toml_text(cls, text: str, *, base_dir: str | Path = ".") -> SftConfig:
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise ConfigError(f"config text is not valid TOML: {err}") from None
        return cls.from_dict(data, base_dir=base_dir)

    def to_toml(self) -> str:
        data = to_dict(self)
        data.pop("base_dir", None)
        if self.ensemble is not None:
            ens = {
                "mode": self.ensemble.mode,
                **{k: list(v) for k, v in self.ensemble.values.items()},
            }
            data["ensemble"] = ens
        return dumps_toml(data)

    def resolve(self, path: str) -> Path:
        """Resolve a path from the config relative to the config file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else Path(self.base_dir) / p

    def with_absolute_paths(self) -> SftConfig:
        """A copy whose file paths are absolute (so the config stored with a run stands alone)."""
        cfg: SftConfig = self
        for dotted in (
            "initial.path",
            "diffusion.nu_map",
            "sources.static_path",
            "assimilation.map_list",
            "assimilation.root_dir",
            "flow.files.list",
            "flow.files.root_dir",
        ):
            value = _get(cfg, dotted)
            if isinstance(value, str):
                cfg = _set(cfg, dotted.split("."), str(self.resolve(value).resolve()))
        return cfg

    # -- ensembles ------------------------------------------------------------------
    def realizations(self) -> list[dict[str, float]]:
        """Per-realization overrides (one dict per realization; [{}] without ensemble)."""
        if self.ensemble is None or not self.ensemble.values:
            return [{}]
        keys = list(self.ensemble.values)
        lists = [self.ensemble.values[k] for k in keys]
        if self.ensemble.mode == "zip":
            combos = list(zip(*lists, strict=True))
        else:
            combos = list(itertools.product(*lists))
        return [dict(zip(keys, c, strict=True)) for c in combos]

    def with_overrides(self, overrides: Mapping[str, Any]) -> SftConfig:
        """A copy with dotted-path values replaced (used per realization)."""
        cfg: Any = self
        for key, value in overrides.items():
            cfg = _set(cfg, key.split("."), value)
        return cfg


def _get(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if obj is None:
            return None
        obj = getattr(obj, part)
    return obj


def _set(obj: Any, parts: list[str], value: Any) -> Any:
    head, rest = parts[0], parts[1:]
    if not rest:
        field_type = type(getattr(obj, head))
        if field_type is int and isinstance(value, float) and float(value).is_integer():
            value = int(value)
        return dataclasses.replace(obj, **{head: value})
    return dataclasses.replace(obj, **{head: _set(getattr(obj, head), rest, value)})


def default_config_path() -> Path:
    """The packaged default run (CR2252 HMI map, AFT flows, diffusion, ensemble over nu)."""
    return Path(__file__).parent / "data" / "default_run.toml"


__all__ = [
    "AssimilationConfig",
    "DiffusionConfig",
    "DifferentialRotationConfig",
    "ENSEMBLE_KEYS",
    "EnsembleConfig",
    "FlowConfig",
    "FlowFilesConfig",
    "GridConfig",
    "InitialConfig",
    "MeridionalConfig",
    "OutputConfig",
    "RfeConfig",
    "SftConfig",
    "SourcesConfig",
    "TimeConfig",
    "default_config_path",
]
