"""The shell of ``jaxgeo terrain train-vae / train-flow / sample``: load a DEM, build the
pieces, loop with checkpoints, evaluate, write stores, plots and summaries.

Every training step draws its patches and noise from ``fold_in(key(seed), step)`` and a
checkpoint holds the whole training state, so ``--resume`` continues bit for bit.

Run folders:

- ``train-vae``: ``run.json``, ``checkpoints/``, ``model.json`` (DEM, normalisation, regions,
  class thresholds, VAE architecture), ``vae/`` (parameters), ``history.json``,
  ``summary.json``;
- ``train-flow``: the same with ``flow/`` and the latent statistics added to ``model.json``
  (which also names the VAE run it builds on).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxgeo.errors import ConfigError, FileFormatError
from jaxgeo.train import (
    ModuleDef,
    RunDir,
    count_params,
    init_train_state,
    make_train_step,
    progress,
    warmup_cosine,
)

from . import metrics
from .conditions import ClassSpec, class_map, coarse_heightmap, fit_classes, one_hot
from .data import Dem, Region, load_dem, sample_patches, split_regions
from .flow import FlowModel, FlowSpec, condition_channels, flow_loss, guided, sample
from .outpaint import outpaint, seam_lines, tile_independently
from .vae import LATENT_GRID, HeightmapVAE, VaeSpec, vae_loss

__all__ = [
    "CONDITIONS",
    "FlowConfig",
    "Models",
    "VaeConfig",
    "baselines",
    "detail_noise",
    "evaluate",
    "generate",
    "load_models",
    "sample_large",
    "train_flow",
    "train_vae",
    "with_detail",
]

log = logging.getLogger("jaxgeo.terrain")
CONDITIONS = ("none", "coarse", "class", "both")
_EVAL_SEED = 20_240_917  # fixed held-out patches, the same for every run and table row


# --------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------


def _check_positive(cfg: Any, names: tuple[str, ...]) -> None:
    for name in names:
        if getattr(cfg, name) <= 0:
            raise ConfigError(f"{name} must be > 0, got {getattr(cfg, name)}")


@dataclasses.dataclass(frozen=True)
class VaeConfig:
    """Settings of ``train-vae``.

    Attributes:
        dem: Sample name (``jacksboro``, ``topobathy``), GeoTIFF or DEM store.
        patch: Patch side in cells (64; 32 for small tiles such as ``topobathy``).
        latent_channels, widths: Architecture (:class:`VaeSpec`).
        steps, batch_size, lr, warmup_steps: Adam on a warm-up + cosine schedule.
        beta: Weight of the KL term (per latent element, against the per-cell MSE).
        grad_weight: Weight of the finite-difference (slope) reconstruction term.
        heldout_fraction: Eastern share of the tile held out for evaluation.
        n_relief: Relief classes of the class map.
        checkpoint_every: Steps between checkpoints.
        seed: Initialisation, patches and noise.
    """

    dem: str = "jacksboro"
    patch: int = 64
    latent_channels: int = 4
    widths: tuple[int, ...] = (32, 64, 96)
    steps: int = 3000
    batch_size: int = 32
    lr: float = 2e-3
    warmup_steps: int = 100
    beta: float = 1e-3
    grad_weight: float = 1.0
    heldout_fraction: float = 0.3
    n_relief: int = 3
    checkpoint_every: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        _check_positive(self, ("steps", "batch_size", "lr", "checkpoint_every", "n_relief"))
        if self.beta < 0 or self.grad_weight < 0 or self.warmup_steps < 0:
            raise ConfigError("beta, grad_weight and warmup_steps must be >= 0")
        VaeSpec(self.patch, self.latent_channels, tuple(self.widths))

    def spec(self) -> VaeSpec:
        return VaeSpec(self.patch, self.latent_channels, tuple(self.widths))

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["widths"] = list(self.widths)
        return d


@dataclasses.dataclass(frozen=True)
class FlowConfig:
    """Settings of ``train-flow``.

    Attributes:
        steps, batch_size, lr, warmup_steps: Adam on a warm-up + cosine schedule.
        width, depth, prior_width, prior_depth: Architecture (:class:`FlowSpec`).
        cond_drop: Probability that each condition (coarse heightmap, class map) is dropped
            from a training example, independently (both dropped: unconditional).
        t_sampling: ``uniform`` or ``logit_normal`` training times.
        bank_size: Augmented training patches encoded once before training.
        checkpoint_every: Steps between checkpoints.
        seed: Initialisation, bank, batches and noise.
    """

    steps: int = 4000
    batch_size: int = 64
    lr: float = 1e-3
    warmup_steps: int = 100
    width: int = 96
    depth: int = 4
    prior_width: int = 48
    prior_depth: int = 3
    cond_drop: float = 0.3
    t_sampling: str = "uniform"
    bank_size: int = 4096
    checkpoint_every: int = 500
    seed: int = 0

    def __post_init__(self) -> None:
        _check_positive(self, ("steps", "batch_size", "lr", "bank_size", "checkpoint_every"))
        if not 0.0 <= self.cond_drop < 1.0:
            raise ConfigError(f"cond_drop must be in [0, 1), got {self.cond_drop}")
        if self.t_sampling not in ("uniform", "logit_normal"):
            raise ConfigError(
                f"t_sampling must be uniform or logit_normal, got {self.t_sampling!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------
# Shared pieces
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Models:
    """Everything needed to generate: DEM and its split, normalisation, class thresholds, the
    VAE and (after ``train-flow``) the flows."""

    dem: Dem
    train: Region
    held: Region
    mean_m: float
    std_m: float
    classes: ClassSpec
    vae_spec: VaeSpec
    vae_params: Any
    flow_spec: FlowSpec | None = None
    flow_params: Any = None
    latent_mean: np.ndarray | None = None
    latent_std: np.ndarray | None = None
    detail_freq: np.ndarray | None = None
    detail_power: np.ndarray | None = None

    @property
    def factor(self) -> int:
        return self.vae_spec.patch // LATENT_GRID

    def tile(self) -> jax.Array:
        """The normalised tile, float32."""
        return jnp.asarray((self.dem.elevation - self.mean_m) / self.std_m, jnp.float32)


def _vae_def(spec: VaeSpec) -> ModuleDef:
    return ModuleDef(nnx.eval_shape(lambda: HeightmapVAE(spec, rngs=nnx.Rngs(0))))


def _flow_def(spec: FlowSpec) -> ModuleDef:
    return ModuleDef(nnx.eval_shape(lambda: FlowModel(spec, rngs=nnx.Rngs(0))))


@functools.lru_cache(maxsize=8)
def _flow_init(spec: FlowSpec) -> Any:
    return jax.jit(lambda k: ModuleDef.params(FlowModel(spec, rngs=nnx.Rngs(k))))


def _optimizer(lr: float, steps: int, warmup: int) -> optax.GradientTransformation:
    return optax.chain(
        optax.clip_by_global_norm(1.0), optax.adam(warmup_cosine(lr, steps, min(warmup, steps)))
    )


_patches_jit = jax.jit(sample_patches, static_argnames=("region", "n", "size", "augment"))


def _heldout_patches(models: Models, n: int) -> np.ndarray:
    """``n`` fixed held-out patches (metres), without augmentation."""
    z = _patches_jit(jax.random.key(_EVAL_SEED), jnp.asarray(models.dem.elevation),
                     region=models.held, n=n, size=models.vae_spec.patch, augment=False)  # fmt: skip
    return np.asarray(z, np.float64)


@functools.lru_cache(maxsize=8)
def _conditions_jit(classes: ClassSpec) -> Any:
    """Jitted ``z_m -> (coarse_m, class map)`` (eager, each op would compile on its own)."""
    return jax.jit(lambda z: (coarse_heightmap(z, classes.factor), class_map(z, classes)))


def _save_params(folder: Path, params: Any, meta: dict[str, Any]) -> None:
    from jaxgeo.io import save_snapshot

    save_snapshot(folder, 0, {"params": jax.device_get(params)}, meta)


def _load_params(folder: Path, mdef: ModuleDef, abstract: nnx.Module) -> Any:
    from jaxgeo.io import Checkpointer

    if not folder.is_dir():
        raise FileFormatError(f"{folder} not found; expected the parameters of a finished run")
    target = {"params": ModuleDef.params(abstract)}
    with Checkpointer(folder, create=False) as ckpt:
        state, _ = ckpt.restore(target=target)
    return state["params"]


def _model_json(models: Models, vae_config: dict[str, Any]) -> dict[str, Any]:
    return {
        "dem": vae_config["dem"],
        "dem_name": models.dem.name,
        "cell_size_m": list(models.dem.cell_size_m),
        "train_region": dataclasses.asdict(models.train),
        "heldout_region": dataclasses.asdict(models.held),
        "mean_m": models.mean_m,
        "std_m": models.std_m,
        "classes": {
            "slope_edges": list(models.classes.slope_edges),
            "factor": models.classes.factor,
            "sea": models.classes.sea,
        },  # fmt: skip
        "vae_spec": {
            "patch": models.vae_spec.patch,
            "latent_channels": models.vae_spec.latent_channels,
            "widths": list(models.vae_spec.widths),
        },  # fmt: skip
        "vae_config": vae_config,
    }


def load_models(run: str | Path) -> Models:
    """The models of a ``train-vae`` or ``train-flow`` run folder.

    Raises:
        FileFormatError: Not a finished run folder.
    """
    run = Path(run)
    mj = run / "model.json"
    if not mj.is_file():
        raise FileFormatError(
            f"{mj} not found; expected a finished terrain train-vae/train-flow run"
        )
    info = json.loads(mj.read_text())
    dem = load_dem(info["dem"])
    vs = VaeSpec(info["vae_spec"]["patch"], info["vae_spec"]["latent_channels"],
                 tuple(info["vae_spec"]["widths"]))  # fmt: skip
    vae_dir = Path(info.get("vae_run", run)) / "vae"
    vae_params = _load_params(vae_dir, _vae_def(vs),
                              nnx.eval_shape(lambda: HeightmapVAE(vs, rngs=nnx.Rngs(0))))  # fmt: skip
    c = info["classes"]
    models = Models(
        dem=dem,
        train=Region(**info["train_region"]),
        held=Region(**info["heldout_region"]),
        mean_m=float(info["mean_m"]),
        std_m=float(info["std_m"]),
        classes=ClassSpec(tuple(c["slope_edges"]), int(c["factor"]), bool(c["sea"])),
        vae_spec=vs,
        vae_params=vae_params,
    )
    if "flow_spec" in info:
        fs = FlowSpec(**info["flow_spec"])
        fp = _load_params(run / "flow", _flow_def(fs),
                          nnx.eval_shape(lambda: FlowModel(fs, rngs=nnx.Rngs(0))))  # fmt: skip
        models = dataclasses.replace(
            models, flow_spec=fs, flow_params=fp,
            latent_mean=np.asarray(info["latent_mean"], np.float32),
            latent_std=np.asarray(info["latent_std"], np.float32),
        )  # fmt: skip
    return models


# --------------------------------------------------------------------------------------------
# train-vae
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _vae_parts(config_json: str) -> tuple[Any, Any, Any, Any]:
    """``(init, step, recon, tx)`` of a VAE setting, jitted and cached."""
    raw = json.loads(config_json)
    region = Region(**raw.pop("_train_region"))
    config = VaeConfig(**raw)
    spec = config.spec()
    mdef = _vae_def(spec)
    tx = _optimizer(config.lr, config.steps, config.warmup_steps)

    def loss_fn(params: Any, state: Any, tile: jax.Array, key: jax.Array) -> tuple[Any, Any]:
        k_patch, k_noise = jax.random.split(key)
        x = sample_patches(k_patch, tile, region, config.batch_size, config.patch)
        model = mdef.merge(params, {})
        recon, mean, logvar = model(x, k_noise)
        loss, parts = vae_loss(x, recon, mean, logvar, beta=config.beta,
                               grad_weight=config.grad_weight)  # fmt: skip
        return loss, (state, parts)

    step = jax.jit(make_train_step(loss_fn, tx))

    @jax.jit
    def init(key: jax.Array) -> dict:
        params = ModuleDef.params(HeightmapVAE(spec, rngs=nnx.Rngs(key)))
        return init_train_state(params, {}, tx)

    @jax.jit
    def recon(params: Any, x: jax.Array) -> jax.Array:
        m = mdef.merge(params, {})
        return m.decode(m.encode(x)[0])

    return init, step, recon, tx


def _prepare(config: VaeConfig) -> tuple[Dem, Region, Region, float, float, ClassSpec]:
    dem = load_dem(config.dem)
    train, held = split_regions(dem.shape, config.heldout_fraction, config.patch)
    z = dem.elevation[train.row0 : train.row1, train.col0 : train.col1].astype(np.float64)
    mean, std = float(z.mean()), float(z.std())
    if std == 0:
        raise ConfigError(f"DEM {dem.name}: the training region is flat (std 0)")
    classes = fit_classes(z, config.patch // LATENT_GRID, n_relief=config.n_relief,
                          sea=dem.has_sea)  # fmt: skip
    return dem, train, held, mean, std, classes


def _recon_stats(models: Models, recon: Any, n: int = 64) -> dict[str, float]:
    real = _heldout_patches(models, n)
    xn = jnp.asarray((real - models.mean_m) / models.std_m, jnp.float32)
    rec = np.asarray(recon(models.vae_params, xn), np.float64) * models.std_m + models.mean_m
    return {
        "recon_rmse_m": float(np.sqrt(np.mean((rec - real) ** 2))),
        "recon_slope_w1": metrics.wasserstein1(metrics.slope(rec), metrics.slope(real)),
    }


def train_vae(
    config: VaeConfig,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    plots: str | Path | None = None,
    stop_after_steps: int | None = None,
) -> dict[str, Any]:
    """Train the heightmap VAE on the training region; report held-out reconstruction.

    Args:
        config: Settings.
        out: Run folder.
        resume: Continue from the latest checkpoint in ``out``.
        overwrite: Replace a run in ``out``.
        plots: Folder for PNG figures, or None.
        stop_after_steps: Stop after this many steps in total, as if interrupted (tests).

    Returns:
        The JSON summary (also ``out/summary.json``).

    Raises:
        ConfigError, FileFormatError, StoreExistsError: Bad settings, DEM or run folder.
    """
    dem, train, held, mean, std, classes = _prepare(config)
    info = {"kind": "terrain train-vae", "config": config.to_dict()}
    run = RunDir(out, info, resume=resume, overwrite=overwrite, free=())
    cfg_json = json.dumps({**config.to_dict(), "seed": 0,
                           "_train_region": dataclasses.asdict(train)}, sort_keys=True)  # fmt: skip
    init, step, recon, _ = _vae_parts(cfg_json)
    k_init, key = jax.random.split(jax.random.key(config.seed))
    tile = jnp.asarray((dem.elevation - mean) / std, jnp.float32)
    history: dict[str, list[float]] = {"step": [], "loss": [], "mse": [], "kl": []}
    try:
        ts = init(k_init)
        restored = run.restore(ts)
        if restored is not None:
            ts, meta = restored
            history = meta["history"]
        start = int(ts["step"])
        last = config.steps if stop_after_steps is None else min(stop_after_steps, config.steps)
        t0 = time.perf_counter()
        acc: dict[str, list[Any]] = {"loss": [], "mse": [], "kl": []}
        for i in progress(range(start, last), total=last - start, desc="train-vae"):
            ts, m = step(ts, tile, jax.random.fold_in(key, i))
            for k in acc:
                acc[k].append(m[k])
            if (i + 1) % config.checkpoint_every == 0 or i + 1 == last:
                history["step"].append(i + 1)
                for k in acc:
                    history[k].append(float(np.mean([float(v) for v in acc[k]])))
                    acc[k] = []
                if not np.isfinite(history["loss"][-1]):
                    raise FloatingPointError(f"VAE loss is {history['loss'][-1]} at step {i + 1}")
                log.info(
                    "step %d loss %.5f mse %.5f", i + 1, history["loss"][-1], history["mse"][-1]
                )
                run.save(i + 1, jax.device_get(ts), {"history": history})
        seconds = time.perf_counter() - t0
    finally:
        run.close()
    out = Path(out)
    models = Models(dem, train, held, mean, std, classes, config.spec(), ts["params"])
    finished = int(ts["step"]) >= config.steps
    if finished:
        _save_params(out / "vae", ts["params"], {"steps": int(ts["step"])})
        (out / "model.json").write_text(
            json.dumps(_model_json(models, config.to_dict()), indent=2) + "\n"
        )
    (out / "history.json").write_text(json.dumps(history) + "\n")
    summary: dict[str, Any] = {
        "command": "terrain train-vae",
        "dem": dem.name,
        "patch": config.patch,
        "steps": int(ts["step"]),
        "finished": finished,
        "loss": history["loss"][-1] if history["loss"] else None,
        **_recon_stats(models, recon),
        "cell_size_m": list(dem.cell_size_m),
        "parameters": count_params(ts["params"]),
        "seconds": round(seconds, 3),
        "out": str(out),
    }
    if plots is not None:
        summary["plots"] = [str(p) for p in _vae_plots(Path(plots), models, recon, history)]
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _vae_plots(folder: Path, models: Models, recon: Any, history: dict) -> list[Path]:
    from .plots import plot_loss, plot_samples

    folder.mkdir(parents=True, exist_ok=True)
    real = _heldout_patches(models, 4)
    xn = jnp.asarray((real - models.mean_m) / models.std_m, jnp.float32)
    rec = np.asarray(recon(models.vae_params, xn), np.float64) * models.std_m + models.mean_m
    return [
        plot_loss(folder / "vae_loss.png", {k: history[k] for k in ("step", "loss", "mse")},
                  "VAE training loss"),
        plot_samples(folder / "vae_reconstructions.png", list(real), list(rec),
                     models.dem.cell_size_m, f"VAE on held-out {models.dem.name} terrain",
                     labels=("held-out terrain", "reconstruction")),
    ]  # fmt: skip


# --------------------------------------------------------------------------------------------
# train-flow
# --------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _bank_encoder(vae_spec: VaeSpec, region: Region, classes: ClassSpec, mean_m: float,
                  std_m: float, chunk: int) -> Any:  # fmt: skip
    mdef = _vae_def(vae_spec)
    n_cls = classes.n_classes
    f = vae_spec.patch // LATENT_GRID

    @jax.jit
    def encode(params: Any, tile: jax.Array, key: jax.Array) -> tuple[jax.Array, ...]:
        x = sample_patches(key, tile, region, chunk, vae_spec.patch)
        lat = mdef.merge(params, {}).encode(x)[0]
        z_m = x * std_m + mean_m
        coarse = (coarse_heightmap(z_m, f) - mean_m) / std_m
        return lat, coarse, one_hot(class_map(z_m, classes), n_cls, z_m.dtype)

    return encode


def _encode_bank(models: Models, config: FlowConfig) -> dict[str, jax.Array]:
    """Augmented training patches, encoded once: latents (posterior means) and conditions."""
    chunk = min(256, config.bank_size)
    encode = _bank_encoder(models.vae_spec, models.train, models.classes, models.mean_m,
                           models.std_m, chunk)  # fmt: skip
    tile = models.tile()
    key = jax.random.fold_in(jax.random.key(config.seed), 1)
    parts = [encode(models.vae_params, tile, jax.random.fold_in(key, i))
             for i in range(-(-config.bank_size // chunk))]  # fmt: skip
    lat, coarse, cls = (
        jnp.concatenate([p[j] for p in parts])[: config.bank_size] for j in range(3)
    )
    return {"latent": lat, "coarse": coarse, "classes": cls}


def _flow_spec(models: Models, config: FlowConfig) -> FlowSpec:
    return FlowSpec(models.vae_spec.latent_channels, models.classes.n_classes, config.width,
                    config.depth, config.prior_width, config.prior_depth)  # fmt: skip


def _flow_loss_fn(mdef: ModuleDef, spec: FlowSpec, config: FlowConfig) -> Any:
    def loss_fn(params: Any, state: Any, bank: dict, key: jax.Array) -> tuple[Any, Any]:
        k_idx, k_c, k_k, k_fine, k_prior = jax.random.split(key, 5)
        b = config.batch_size
        idx = jax.random.randint(k_idx, (b,), 0, bank["latent"].shape[0])
        x1 = bank["latent"][idx]
        coarse, cls = bank["coarse"][idx], bank["classes"][idx]
        keep_c = jax.random.bernoulli(k_c, 1.0 - config.cond_drop, (b,)).astype(x1.dtype)
        keep_k = jax.random.bernoulli(k_k, 1.0 - config.cond_drop, (b,)).astype(x1.dtype)
        model = mdef.merge(params, {})
        cond = condition_channels(coarse, cls, keep_c, keep_k, spec.n_classes, x1.shape[:3])
        fine = flow_loss(model.fine, x1, cond, k_fine, t_sampling=config.t_sampling)
        cond_p = cond[..., :2]  # the coarse heightmap and its flag
        prior = flow_loss(model.prior, 2.0 * cls - 1.0, cond_p, k_prior,
                          t_sampling=config.t_sampling)  # fmt: skip
        return fine + prior, (state, {"fine": fine, "prior": prior})

    return loss_fn


@functools.lru_cache(maxsize=8)
def _flow_step(spec: FlowSpec, config_json: str) -> tuple[optax.GradientTransformation, Any]:
    """The optimiser and jitted step of a flow setting, cached across runs and resumes."""
    config = FlowConfig(**json.loads(config_json))
    tx = _optimizer(config.lr, config.steps, config.warmup_steps)
    return tx, jax.jit(make_train_step(_flow_loss_fn(_flow_def(spec), spec, config), tx))


def train_flow(
    vae_run: str | Path,
    config: FlowConfig,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    plots: str | Path | None = None,
    stop_after_steps: int | None = None,
    eval_samples: int = 32,
) -> dict[str, Any]:
    """Train the fine and prior flows in the latent space of a trained VAE.

    Args:
        vae_run: A finished ``train-vae`` run folder.
        config: Settings.
        out: Run folder.
        resume, overwrite, plots, stop_after_steps: As for :func:`train_vae`.
        eval_samples: Held-out patches for the summary's metrics (0: none).

    Returns:
        The JSON summary (also ``out/summary.json``).
    """
    models = load_models(vae_run)
    spec = _flow_spec(models, config)
    info = {"kind": "terrain train-flow", "config": config.to_dict(),
            "vae_run": str(Path(vae_run).absolute())}  # fmt: skip
    run = RunDir(out, info, resume=resume, overwrite=overwrite, free=())
    tx, step = _flow_step(spec, json.dumps({**config.to_dict(), "seed": 0}, sort_keys=True))
    k_init, key = jax.random.split(jax.random.key(config.seed))
    history: dict[str, list[float]] = {"step": [], "loss": [], "fine": [], "prior": []}
    try:
        bank = _encode_bank(models, config)
        mu = jnp.mean(bank["latent"], axis=(0, 1, 2))
        sd = jnp.std(bank["latent"], axis=(0, 1, 2)) + 1e-6
        bank["latent"] = (bank["latent"] - mu) / sd
        params = _flow_init(spec)(k_init)
        ts = init_train_state(params, {}, tx)
        restored = run.restore(ts)
        if restored is not None:
            ts, meta = restored
            history = meta["history"]
        start = int(ts["step"])
        last = config.steps if stop_after_steps is None else min(stop_after_steps, config.steps)
        acc: dict[str, list[Any]] = {"loss": [], "fine": [], "prior": []}
        t0 = time.perf_counter()
        for i in progress(range(start, last), total=last - start, desc="train-flow"):
            ts, m = step(ts, bank, jax.random.fold_in(key, i))
            for k in acc:
                acc[k].append(m[k])
            if (i + 1) % config.checkpoint_every == 0 or i + 1 == last:
                history["step"].append(i + 1)
                for k in acc:
                    history[k].append(float(np.mean([float(v) for v in acc[k]])))
                    acc[k] = []
                if not np.isfinite(history["loss"][-1]):
                    raise FloatingPointError(f"flow loss is {history['loss'][-1]} at step {i + 1}")
                log.info("step %d loss %.5f", i + 1, history["loss"][-1])
                run.save(i + 1, jax.device_get(ts), {"history": history})
        seconds = time.perf_counter() - t0
    finally:
        run.close()
    out = Path(out)
    models = dataclasses.replace(
        models, flow_spec=spec, flow_params=ts["params"],
        latent_mean=np.asarray(mu, np.float32), latent_std=np.asarray(sd, np.float32),
    )  # fmt: skip
    finished = int(ts["step"]) >= config.steps
    if finished:
        _save_params(out / "flow", ts["params"], {"steps": int(ts["step"])})
        mj = json.loads((Path(vae_run) / "model.json").read_text())
        mj.update({
            "vae_run": str(Path(vae_run).absolute()),
            "flow_spec": dataclasses.asdict(spec),
            "flow_config": config.to_dict(),
            "latent_mean": models.latent_mean.tolist(),  # type: ignore[union-attr]
            "latent_std": models.latent_std.tolist(),  # type: ignore[union-attr]
        })  # fmt: skip
        (out / "model.json").write_text(json.dumps(mj, indent=2) + "\n")
    (out / "history.json").write_text(json.dumps(history) + "\n")
    summary: dict[str, Any] = {
        "command": "terrain train-flow",
        "dem": models.dem.name,
        "steps": int(ts["step"]),
        "finished": finished,
        "loss": history["loss"][-1] if history["loss"] else None,
        "parameters": count_params(ts["params"]),
        "seconds": round(seconds, 3),
        "out": str(out),
    }
    if eval_samples > 0:
        summary["eval"] = {
            cond: evaluate(models, condition=cond, n=eval_samples) for cond in ("none", "coarse")
        }
    if plots is not None:
        summary["plots"] = [str(p) for p in _flow_plots(Path(plots), models, history)]
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


# --------------------------------------------------------------------------------------------
# Generation and evaluation
# --------------------------------------------------------------------------------------------


def _check_flow(models: Models) -> None:
    if models.flow_spec is None:
        raise FileFormatError("the run folder holds no flow; expected a terrain train-flow run")


@functools.lru_cache(maxsize=32)
def _stage_sampler(flow_spec: FlowSpec, stage: str, steps: int, method: str, scale: float) -> Any:
    """Jitted ``(params, key, cond, uncond, known, mask) -> x`` for one stage (``fine``:
    latents, ``prior``: class map), with guidance ``scale`` and inpainting."""
    mdef = _flow_def(flow_spec)
    ch = flow_spec.latent_channels if stage == "fine" else flow_spec.n_classes

    @jax.jit
    def run(params: Any, key: jax.Array, cond: jax.Array, uncond: jax.Array, known: jax.Array,
            mask: jax.Array) -> jax.Array:  # fmt: skip
        net = getattr(mdef.merge(params, {}), stage)
        x0 = jax.random.normal(key, cond.shape[:3] + (ch,), jnp.float32)
        return sample(guided(net, cond, uncond, scale), x0, steps=steps, method=method,
                      known=known, mask=mask)  # fmt: skip

    return run


@functools.lru_cache(maxsize=8)
def _decoder(vae_spec: VaeSpec) -> Any:
    mdef = _vae_def(vae_spec)
    return jax.jit(lambda p, z: mdef.merge(p, {}).decode(z))


def _cond_inputs(
    models: Models, coarse: jax.Array | None, cls: jax.Array | None, shape: tuple[int, int, int]
) -> tuple[jax.Array, jax.Array]:
    b = shape[0]
    on, off = jnp.ones((b,), jnp.float32), jnp.zeros((b,), jnp.float32)
    n = models.classes.n_classes
    cond = condition_channels(coarse, cls, on if coarse is not None else off,
                              on if cls is not None else off, n, shape)  # fmt: skip
    uncond = condition_channels(None, None, off, off, n, shape)
    return cond, uncond


@functools.lru_cache(maxsize=64)
def _generator(
    fs: FlowSpec, vs: VaeSpec, steps: int, method: str, scale: float, two_stage: bool,
    has_coarse: bool, has_class: bool,
) -> Any:  # fmt: skip
    """One jitted function for a whole generation setting (eager, every small op between the
    samplers would compile on its own)."""
    fdef, vdef = _flow_def(fs), _vae_def(vs)
    g = LATENT_GRID

    @jax.jit
    def run(fp: Any, vp: Any, key: jax.Array, coarse: jax.Array, cls: jax.Array,
            lat_mean: jax.Array, lat_std: jax.Array) -> tuple[jax.Array, jax.Array]:  # fmt: skip
        flows = fdef.merge(fp, {})
        b = coarse.shape[0]
        k_prior, k_fine = jax.random.split(key)
        on, off = jnp.ones((b,), jnp.float32), jnp.zeros((b,), jnp.float32)
        kc = on if has_coarse else off
        cls_1h = one_hot(cls, fs.n_classes)
        kk = on if has_class else off
        if two_stage:
            pc = condition_channels(coarse, None, kc, off, fs.n_classes, (b, g, g))[..., :2]
            x0 = jax.random.normal(k_prior, (b, g, g, fs.n_classes), jnp.float32)
            x = sample(guided(flows.prior, pc, jnp.zeros_like(pc), scale), x0, steps=steps,
                       method=method)  # fmt: skip
            cls = jnp.argmax(x, axis=-1)
            cls_1h = one_hot(cls, fs.n_classes)
            kk = on
        cond = condition_channels(coarse, cls_1h, kc, kk, fs.n_classes, (b, g, g))
        uncond = condition_channels(None, None, off, off, fs.n_classes, (b, g, g))
        x0 = jax.random.normal(k_fine, (b, g, g, fs.latent_channels), jnp.float32)
        lat = sample(guided(flows.fine, cond, uncond, scale), x0, steps=steps, method=method)
        return vdef.merge(vp, {}).decode(lat * lat_std + lat_mean), cls

    return run


def with_detail(models: Models, n: int = 256) -> Models:
    """``models`` with the spectrum of the VAE's reconstruction residual on training patches.

    A small VAE trained briefly blurs: its reconstructions lack the finest relief, which the
    latent flow cannot restore. :func:`detail_noise` adds it back as a stationary Gaussian
    field with the residual's radially averaged spectral density (a texture stage without a
    network; it carries no information about the conditions).
    """
    p = models.vae_spec.patch
    x = _patches_jit(jax.random.key(_EVAL_SEED + 1), models.tile(), region=models.train, n=n,
                     size=p, augment=True)  # fmt: skip
    mdef = _vae_def(models.vae_spec)
    rec = jax.jit(lambda q, xb: mdef.merge(q, {}).decode(mdef.merge(q, {}).encode(xb)[0]))(
        models.vae_params, x
    )
    r = np.asarray(x - rec, np.float64)
    r = r - r.mean(axis=(-2, -1), keepdims=True)
    density = (np.abs(np.fft.fft2(r)) ** 2).mean(axis=0) / (p * p)  # |R(f)|² / N
    f = np.fft.fftfreq(p)
    fr = np.hypot(*np.meshgrid(f, f, indexing="ij"))
    edges = np.linspace(0.0, fr.max() + 1e-9, p // 2 + 1)
    idx = np.digitize(fr.ravel(), edges) - 1
    power = np.array([density.ravel()[idx == i].mean() for i in range(len(edges) - 1)])
    centres = 0.5 * (edges[:-1] + edges[1:])
    return dataclasses.replace(models, detail_freq=centres, detail_power=power)


def detail_noise(models: Models, key: jax.Array, shape: tuple[int, ...]) -> np.ndarray:
    """Stationary Gaussian fields of ``shape`` (``(..., h, w)``, normalised units) with the
    spectral density found by :func:`with_detail`: ``ifft2(sqrt(S(f)) · fft2(w))`` for white
    ``w`` has ``E|FFT|² / N = S``."""
    if models.detail_power is None or models.detail_freq is None:
        raise ConfigError("detail needs the residual spectrum: call with_detail(models) first")
    h, w = shape[-2], shape[-1]
    fy, fx = np.fft.fftfreq(h), np.fft.fftfreq(w)
    fr = np.hypot(*np.meshgrid(fy, fx, indexing="ij"))
    amp = np.sqrt(np.interp(fr, models.detail_freq, models.detail_power))
    amp[0, 0] = 0.0
    white = np.asarray(jax.random.normal(key, shape, jnp.float32), np.float64)
    return np.real(np.fft.ifft2(amp * np.fft.fft2(white)))


def generate(
    models: Models,
    key: jax.Array,
    *,
    coarse_m: np.ndarray | None = None,
    classes: np.ndarray | None = None,
    n: int | None = None,
    guidance: float = 3.0,
    steps: int = 25,
    sampler: str = "euler",
    two_stage: bool = False,
    detail: bool = False,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Generate patches (metres), one-stage or coarse-to-fine.

    Args:
        models: Loaded VAE and flows.
        key: Randomness.
        coarse_m: ``(b, 8, 8)`` coarse heightmaps in metres, or None.
        classes: ``(b, 8, 8)`` integer class maps, or None.
        n: Number of samples when no condition fixes it.
        guidance: Classifier-free guidance scale (1: none).
        steps, sampler: Integration.
        two_stage: Without a class map, generate one first with the prior flow.
        detail: Add the VAE's missing detail (:func:`with_detail`).

    Returns:
        ``(patches (b, P, P) metres, class maps used (b, 8, 8) or None)``.
    """
    _check_flow(models)
    fs = models.flow_spec
    assert fs is not None
    b = next((len(a) for a in (coarse_m, classes) if a is not None), n)
    if b is None:
        raise ConfigError("generate needs n when no condition is given")
    g = LATENT_GRID
    coarse = (jnp.zeros((b, g, g), jnp.float32) if coarse_m is None
              else jnp.asarray((np.asarray(coarse_m) - models.mean_m) / models.std_m, jnp.float32))  # fmt: skip
    cls = jnp.zeros((b, g, g), jnp.int32) if classes is None else jnp.asarray(classes, jnp.int32)
    run = _generator(fs, models.vae_spec, steps, sampler, float(guidance),
                     two_stage and classes is None, coarse_m is not None, classes is not None)  # fmt: skip
    z_j, used_j = run(models.flow_params, models.vae_params, key, coarse, cls,
                      jnp.asarray(models.latent_mean), jnp.asarray(models.latent_std))  # fmt: skip
    z = np.asarray(z_j, np.float64)
    used = classes if classes is not None else (np.asarray(used_j) if two_stage else None)
    if detail:
        z = z + detail_noise(models, jax.random.fold_in(key, 7), z.shape)
    return z * models.std_m + models.mean_m, used


def evaluate(
    models: Models,
    *,
    condition: str = "coarse",
    guidance: float = 3.0,
    two_stage: bool = False,
    n: int = 32,
    steps: int = 25,
    sampler: str = "euler",
    seed: int = 0,
    detail: bool = False,
) -> dict[str, Any]:
    """Generate for ``n`` fixed held-out patches (their conditions when ``condition`` asks) and
    score against them: slope/curvature W1, spectrum slope, condition consistency.

    ``coarse_rmse_m`` (block means against the held-out patches' coarse maps) and
    ``class_agreement`` are computed for every condition type: for ``none`` they show what
    chance gives.
    """
    if condition not in CONDITIONS:
        raise ConfigError(f"condition must be one of {', '.join(CONDITIONS)}, got {condition!r}")
    real = _heldout_patches(models, n)
    coarse_j, cls_j = _conditions_jit(models.classes)(jnp.asarray(real, jnp.float32))
    coarse_m, cls = np.asarray(coarse_j, np.float64), np.asarray(cls_j)
    t0 = time.perf_counter()
    z, _ = generate(
        models, jax.random.key(seed),
        coarse_m=coarse_m if condition in ("coarse", "both") else None,
        classes=cls if condition in ("class", "both") else None,
        n=n, guidance=guidance, steps=steps, sampler=sampler, two_stage=two_stage,
        detail=detail,
    )  # fmt: skip
    seconds = time.perf_counter() - t0
    gen_cls = np.asarray(_conditions_jit(models.classes)(jnp.asarray(z, jnp.float32))[1])
    return {
        "condition": condition,
        "guidance": guidance,
        "two_stage": two_stage,
        "detail": detail,
        **metrics.terrain_stats(z, real),
        "coarse_rmse_m": metrics.condition_consistency(z, coarse_m, models.factor),
        "class_agreement": float(np.mean(gen_cls == cls)),
        "seconds": round(seconds, 3),
    }


def baselines(models: Models, n: int = 32, seed: int = 0) -> dict[str, dict[str, Any]]:
    """Reference rows: VAE reconstruction of the held-out patches (the best a latent model can
    reach), decoded N(0, I) latents (noise through the decoder) and white noise with the
    held-out mean and standard deviation."""
    real = _heldout_patches(models, n)
    mdef = _vae_def(models.vae_spec)
    xn = jnp.asarray((real - models.mean_m) / models.std_m, jnp.float32)
    rec = np.asarray(jax.jit(lambda p, x: mdef.merge(p, {}).decode(mdef.merge(p, {}).encode(x)[0]))(
        models.vae_params, xn), np.float64) * models.std_m + models.mean_m  # fmt: skip
    g, c = LATENT_GRID, models.vae_spec.latent_channels
    lat = jax.random.normal(jax.random.key(seed), (n, g, g, c), jnp.float32)
    if models.latent_std is not None and models.latent_mean is not None:
        lat = lat * jnp.asarray(models.latent_std) + jnp.asarray(models.latent_mean)
    dec = np.asarray(_decoder(models.vae_spec)(models.vae_params, lat), np.float64)
    dec = dec * models.std_m + models.mean_m
    rng = np.random.default_rng(seed)
    white = real.mean() + real.std() * rng.standard_normal(real.shape)
    coarse_m = np.asarray(coarse_heightmap(jnp.asarray(real), models.factor))
    out = {}
    rows = [("vae_reconstruction", rec), ("decoded_latent_noise", dec), ("white_noise", white)]
    if models.detail_power is not None:
        extra = detail_noise(models, jax.random.key(seed + 1), rec.shape) * models.std_m
        rows.insert(1, ("vae_reconstruction + detail", rec + extra))
    for name, z in rows:
        out[name] = {**metrics.terrain_stats(z, real),
                     "coarse_rmse_m": metrics.condition_consistency(z, coarse_m, models.factor)}  # fmt: skip
    return out


def _flow_plots(folder: Path, models: Models, history: dict) -> list[Path]:
    from .plots import plot_loss, plot_samples, plot_slope_spectra

    folder.mkdir(parents=True, exist_ok=True)
    real = _heldout_patches(models, 16)
    real_j = jnp.asarray(real, jnp.float32)
    coarse_m = np.asarray(coarse_heightmap(real_j, models.factor), np.float64)
    cond, _ = generate(models, jax.random.key(1), coarse_m=coarse_m)
    unc, _ = generate(models, jax.random.key(2), n=16)
    return [
        plot_loss(folder / "flow_loss.png", history, "flow-matching loss (fine + prior)"),
        plot_samples(folder / "flow_samples_coarse.png", list(real[:5]), list(cond[:5]),
                     models.dem.cell_size_m, "held-out terrain and samples given its coarse "
                     "heightmap (CFG 3)"),
        plot_samples(folder / "flow_samples_uncond.png", list(real[:5]), list(unc[:5]),
                     models.dem.cell_size_m, "held-out terrain and unconditional samples",
                     labels=("held-out terrain", "unconditional")),
        plot_slope_spectra(folder / "flow_slopes_spectra.png",
                           {"held-out": real, "coarse-conditioned": cond, "unconditional": unc},
                           f"{models.dem.name}: slope distributions and power spectra"),
    ]  # fmt: skip


# --------------------------------------------------------------------------------------------
# sample: large canvases
# --------------------------------------------------------------------------------------------


def _condition_canvas(models: Models, source: Dem, size: tuple[int, int]) -> np.ndarray:
    """The source DEM cropped (or mirror-extended) to ``size`` cells, metres."""
    z = np.asarray(source.elevation, np.float64)
    h, w = size
    reps = (-(-h // z.shape[0]), -(-w // z.shape[1]))
    if reps != (1, 1):
        z = np.pad(z, ((0, (reps[0] - 1) * z.shape[0]), (0, (reps[1] - 1) * z.shape[1])),
                   mode="symmetric")  # fmt: skip
    return z[:h, :w]


def sample_large(
    models: Models,
    *,
    size: tuple[int, int] = (512, 512),
    condition: str = "coarse",
    source: Dem | None = None,
    guidance: float = 3.0,
    steps: int = 25,
    sampler: str = "euler",
    two_stage: bool = False,
    stride: int = 4,
    seed: int = 0,
    tiled_baseline: bool = True,
    detail: bool = False,
) -> dict[str, Any]:
    """Generate a ``size`` heightmap by sliding-window outpainting in latent space.

    Conditions (coarse heightmap, class map) come from ``source`` (default: the run's DEM)
    cropped or mirror-extended to ``size``.

    Returns:
        ``elevation`` (metres), ``reference`` (the source crop), the condition maps, seam
        lines (cells), metrics, and ``tiled`` (the no-overlap baseline) when asked.
    """
    _check_flow(models)
    fs = models.flow_spec
    assert fs is not None
    if condition not in CONDITIONS:
        raise ConfigError(f"condition must be one of {', '.join(CONDITIONS)}, got {condition!r}")
    f = models.factor
    h, w = size
    if not 1 <= stride <= LATENT_GRID:
        raise ConfigError(
            f"stride must be 1 to {LATENT_GRID} latent cells (the window side), got {stride}"
        )
    if h % f or w % f or h < models.vae_spec.patch or w < models.vae_spec.patch:
        raise ConfigError(
            f"size {h}x{w} must be multiples of {f} and at least one patch "
            f"({models.vae_spec.patch})"
        )
    ref = _condition_canvas(models, source or models.dem, size)
    coarse_j, cls_j = _conditions_jit(models.classes)(jnp.asarray(ref, jnp.float32))
    coarse_m, cls_map = np.asarray(coarse_j, np.float64), np.asarray(cls_j)
    m, n = h // f, w // f
    g = LATENT_GRID
    use_coarse = condition in ("coarse", "both")
    use_class = condition in ("class", "both")
    coarse_n = jnp.asarray((coarse_m - models.mean_m) / models.std_m, jnp.float32)
    key = jax.random.key(seed)
    k_prior, k_fine, k_tile = jax.random.split(key, 3)
    t0 = time.perf_counter()

    def window_cond(i0: int, j0: int, cls_canvas: np.ndarray | None) -> tuple[Any, Any]:
        c = coarse_n[None, i0 : i0 + g, j0 : j0 + g] if use_coarse else None
        k = None if cls_canvas is None else one_hot(jnp.asarray(cls_canvas[None, i0 : i0 + g,
                                                                         j0 : j0 + g]),
                                                    fs.n_classes)  # fmt: skip
        return _cond_inputs(models, c, k, (1, g, g))

    cls_canvas = cls_map if use_class else None
    if cls_canvas is None and two_stage:
        prior = _stage_sampler(fs, "prior", steps, sampler, float(guidance))

        def prior_window(k: jax.Array, known: np.ndarray, mask: np.ndarray, i0: int,
                         j0: int) -> np.ndarray:  # fmt: skip
            cond, _ = window_cond(i0, j0, None)
            pc = cond[..., :2]
            return np.asarray(prior(models.flow_params, k, pc, jnp.zeros_like(pc),
                                    jnp.asarray(known[None]), jnp.asarray(mask[None]))[0])  # fmt: skip

        one_hot_canvas = outpaint(prior_window, k_prior, (m, n, fs.n_classes), window=g,
                                  stride=stride)  # fmt: skip
        cls_canvas = np.argmax(one_hot_canvas, axis=-1)
    fine = _stage_sampler(fs, "fine", steps, sampler, float(guidance))

    def fine_window(k: jax.Array, known: np.ndarray, mask: np.ndarray, i0: int,
                    j0: int) -> np.ndarray:  # fmt: skip
        cond, uncond = window_cond(i0, j0, cls_canvas)
        return np.asarray(fine(models.flow_params, k, cond, uncond, jnp.asarray(known[None]),
                               jnp.asarray(mask[None]))[0])  # fmt: skip

    lat = outpaint(fine_window, k_fine, (m, n, fs.latent_channels), window=g, stride=stride)
    scale = (jnp.asarray(models.latent_std), jnp.asarray(models.latent_mean))
    dec = _decoder(models.vae_spec)
    z = np.asarray(dec(models.vae_params, jnp.asarray(lat) * scale[0] + scale[1]), np.float64)
    if detail:
        z = z + detail_noise(models, jax.random.fold_in(key, 7), z.shape)
    z = z * models.std_m + models.mean_m
    seconds = time.perf_counter() - t0
    rows = [s * f for s in seam_lines(m, g, stride)]
    cols = [s * f for s in seam_lines(n, g, stride)]
    result: dict[str, Any] = {
        "elevation": z,
        "reference": ref,
        "coarse_m": coarse_m,
        "classes": cls_canvas,
        "seam_rows": rows,
        "seam_cols": cols,
        "seconds": seconds,
        "metrics": _canvas_metrics(models, z, ref, coarse_m, rows, cols, use_coarse),
    }
    if tiled_baseline and m % g == 0 and n % g == 0:
        # Windows sampled and decoded on their own, side by side (the classic tiling).
        tiles = tile_independently(fine_window, k_tile, (m, n, fs.latent_channels), window=g)
        zt = np.zeros_like(z)
        p = models.vae_spec.patch
        for i0 in range(0, m, g):
            for j0 in range(0, n, g):
                t = tiles[None, i0 : i0 + g, j0 : j0 + g]
                zt[i0 * f : i0 * f + p, j0 * f : j0 * f + p] = np.asarray(
                    dec(models.vae_params, jnp.asarray(t) * scale[0] + scale[1]))[0]  # fmt: skip
        zt = zt * models.std_m + models.mean_m
        trow = list(range(p, h, p))
        tcol = list(range(p, w, p))
        result["tiled"] = zt
        result["tiled_metrics"] = _canvas_metrics(models, zt, ref, coarse_m, trow, tcol, use_coarse)
    return result


def _canvas_metrics(models: Models, z: np.ndarray, ref: np.ndarray, coarse_m: np.ndarray,
                    rows: list[int], cols: list[int], use_coarse: bool) -> dict[str, Any]:  # fmt: skip
    """Seam discontinuity (at the seams, and at lines midway between them as the no-seam
    level), slope W1 against the reference crop and condition consistency."""
    f = models.factor
    mid_c = [
        c + models.vae_spec.patch // 4
        for c in cols
        if c + models.vae_spec.patch // 4 < z.shape[1] - 2
    ]
    mid_r = [
        r + models.vae_spec.patch // 4
        for r in rows
        if r + models.vae_spec.patch // 4 < z.shape[0] - 2
    ]
    seam = np.sqrt(np.mean([metrics.seam_discontinuity(z, cols, axis=1) ** 2 if cols else 0.0,
                            metrics.seam_discontinuity(z, rows, axis=0) ** 2 if rows else 0.0]))  # fmt: skip
    inner = np.sqrt(np.mean([metrics.seam_discontinuity(z, mid_c, axis=1) ** 2 if mid_c else 0.0,
                             metrics.seam_discontinuity(z, mid_r, axis=0) ** 2 if mid_r else 0.0]))  # fmt: skip
    return {
        "seam_rms_m": float(seam),
        "between_seams_rms_m": float(inner),
        "seam_ratio": float(seam / inner) if inner > 0 else None,
        "slope_w1_vs_source": metrics.wasserstein1(metrics.slope(z), metrics.slope(ref)),
        "coarse_rmse_m": metrics.condition_consistency(z, coarse_m, f) if use_coarse else None,
    }
