"""Seeded synthesis of hyperspectral scenes from real endmember spectra, with labels.

The generator stands in for SpectralEarth's EnMAP archive where no real archive is at hand.
Every scene is built from measured or radiative-transfer spectra (:mod:`jaxgeo.hsi.spectra`),
resampled to the sensor's bands through Gaussian spectral responses, and mixed linearly:

1. **Regions.** The unit of generation is a *tile* of ``tile_patches × tile_patches`` patches
   (default 2 × 2, i.e. 256 × 256 pixels for 128-pixel patches). Tiles are independent and sit
   apart on a mosaic, and a tile's patches all go to one split, so the train, validation and
   test patches are spatially disjoint (no shared pixels, fields or landscape).
2. **Fields.** A tile is cut into fields: Voronoi cells of ~``field_size_px`` pixels whose borders
   are warped by a Gaussian random field (GRF), so parcels are irregular. Each field gets a
   land-cover class from class weights modulated by smooth per-class GRFs (classes cluster:
   towns, lakes, forests), and a crop type if it is cropland.
3. **Abundances.** A field draws its material shares from a class-specific Dirichlet
   distribution over the material groups (forest: mostly ``tree`` with ``npv``, ``grass`` and
   ``soil``; water: ``water`` with a little ``soil``; ...) and one endmember spectrum per material
   (``n_variants`` spectra per material and tile). Per-pixel heterogeneity multiplies each share
   by a log-normal GRF; a Gaussian blur of ``mixing_sigma_px`` then mixes neighbouring fields at
   their borders. Shares stay ≥ 0 and sum to one per pixel.
4. **Signal.** Reflectance = abundances × endmember spectra (linear mixing), scaled by a
   topographic illumination factor cos(i)/cos(θ_sun) from a GRF terrain (water is flat), plus
   signal-dependent Gaussian noise σ = ``noise_floor`` + ρ / ``snr``.
5. **Second date.** Phenology moves abundance between materials in vegetated pixels only:
   cereals ripen (→ npv), maize closes its canopy (soil →), legumes and oilseed are harvested
   (→ soil, → npv), grass dries (→ npv), deciduous trees lose some leaves (→ npv). Geometry,
   illumination and the noise realisation are those of date 1, so the two dates differ exactly
   where vegetation is (at either date).
6. **Labels** come from the dominant material of each pixel at date 1: water → water, tree →
   forest, grass → grassland, a crop → cropland (and that crop type), urban → urban, soil → bare
   soil; pixels whose dominant share is below ``min_dominance`` or dominated by ``npv`` are
   unlabeled (-1).

Everything is a function of ``(seed, tile index)``: tile k of a dataset is the same whatever the
number of patches, and the same seed gives the same bytes. NumPy only (the generator is I/O
bound); ``jaxgeo hsi make-dataset`` streams tiles into a patch store.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from jaxgeo.errors import ConfigError

from .sensors import get_sensor
from .spectra import CROPS, MATERIALS, endmembers
from .store import SPLITS, PatchStoreWriter

__all__ = [
    "CROPTYPE_CLASSES",
    "LANDCOVER_CLASSES",
    "SceneTile",
    "SynthConfig",
    "generate_tile",
    "iter_tiles",
    "synthesize",
    "write_dataset",
]

LANDCOVER_CLASSES: tuple[str, ...] = (
    "water",
    "forest",
    "grassland",
    "cropland",
    "urban",
    "bare_soil",
)
CROPTYPE_CLASSES: tuple[str, ...] = CROPS

VEGETATION: tuple[str, ...] = ("tree", "grass", *CROPS)
"""Green-vegetation materials: the second date differs only where one of them is present."""

_M = {name: i for i, name in enumerate(MATERIALS)}
# Dominant material -> land-cover class (npv: unlabeled).
_MATERIAL_CLASS = np.array(
    [
        LANDCOVER_CLASSES.index(c) if c is not None else -1
        for c in (
            "water",  # water
            "bare_soil",  # soil
            None,  # npv
            "urban",  # urban
            "forest",  # tree
            "grassland",  # grass
            "cropland",
            "cropland",
            "cropland",
            "cropland",
        )
    ],
    np.int16,
)
_MATERIAL_CROP = np.array([CROPS.index(m) if m in CROPS else -1 for m in MATERIALS], np.int16)

# Dirichlet concentrations of the material shares of a field, per land-cover class. Zero means
# the material never occurs in that class (water and bare fields hold no green vegetation, so
# phenology leaves them unchanged). For cropland the principal material is the field's crop.
_CLASS_ALPHA: dict[str, dict[str, float]] = {
    "water": {"water": 30.0, "soil": 1.0},
    "forest": {"tree": 14.0, "npv": 1.5, "grass": 1.5, "soil": 1.0},
    "grassland": {"grass": 12.0, "npv": 3.0, "soil": 2.0},
    "cropland": {"crop": 12.0, "soil": 3.0, "npv": 1.0},
    "urban": {"urban": 12.0, "soil": 2.0, "tree": 1.5, "grass": 1.5},
    "bare_soil": {"soil": 14.0, "npv": 2.0},
}
# Mean share of land-cover classes among fields before spatial clustering.
_CLASS_WEIGHTS = np.array([0.10, 0.20, 0.18, 0.27, 0.12, 0.13])

# Phenology, date 1 -> date 2: (from material, to material, fraction of the source share moved,
# material whose presence gates the move). Fractions are jittered ±20 % per tile.
_PHENOLOGY: tuple[tuple[str, str, float, str], ...] = (
    ("cereal", "npv", 0.70, "cereal"),  # ripening: green leaves to straw
    ("soil", "maize", 0.60, "maize"),  # canopy closure over the soil between rows
    ("legume", "soil", 0.50, "legume"),  # harvest
    ("oilseed", "npv", 0.40, "oilseed"),  # senescence of pods and stems
    ("grass", "npv", 0.35, "grass"),  # summer drying
    ("tree", "npv", 0.15, "tree"),  # partial leaf fall
)


@dataclass(frozen=True)
class SynthConfig:
    """Settings of the scene generator (all stored in the patch store's ``generator`` attr).

    Attributes:
        sensor: Sensor name (:data:`jaxgeo.hsi.sensors.SENSORS`).
        n_patches: Number of patches.
        patch_size: Patch side, pixels.
        seed: Seed of everything.
        two_dates: Also make the second (phenology) date.
        tile_patches: Patches per side of one generated region.
        field_size_px: Typical field (Voronoi cell) side, pixels.
        n_variants: Endmember spectra drawn per material and tile.
        mixing_sigma_px: Gaussian blur that mixes neighbouring fields, pixels.
        heterogeneity: Standard deviation of the log-normal per-pixel share factors.
        relief_m: Standard deviation of the terrain height, m (30 m pixels).
        sun_zenith_deg: Sun zenith angle for the illumination factor, degrees.
        snr: Signal-to-noise ratio of the signal-dependent noise term.
        noise_floor: Signal-independent noise, reflectance units.
        min_dominance: Pixels whose largest material share is below this are unlabeled.
        split_fractions: Fractions of tiles in train, validation and test.
    """

    sensor: str = "enmap"
    n_patches: int = 1000
    patch_size: int = 128
    seed: int = 0
    two_dates: bool = True
    tile_patches: int = 2
    field_size_px: float = 24.0
    n_variants: int = 3
    mixing_sigma_px: float = 1.0
    heterogeneity: float = 0.25
    relief_m: float = 40.0
    sun_zenith_deg: float = 35.0
    snr: float = 150.0
    noise_floor: float = 0.002
    min_dominance: float = 0.35
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)

    def __post_init__(self) -> None:
        get_sensor(self.sensor)  # ConfigError for an unknown name
        checks = (
            (self.n_patches >= 1, "n_patches", ">= 1", self.n_patches),
            (self.patch_size >= 8, "patch_size", ">= 8", self.patch_size),
            (self.tile_patches >= 1, "tile_patches", ">= 1", self.tile_patches),
            (self.field_size_px > 2, "field_size_px", "> 2", self.field_size_px),
            (self.n_variants >= 1, "n_variants", ">= 1", self.n_variants),
            (self.mixing_sigma_px >= 0, "mixing_sigma_px", ">= 0", self.mixing_sigma_px),
            (self.heterogeneity >= 0, "heterogeneity", ">= 0", self.heterogeneity),
            (self.relief_m >= 0, "relief_m", ">= 0", self.relief_m),
            (0 <= self.sun_zenith_deg < 80, "sun_zenith_deg", "in [0, 80)", self.sun_zenith_deg),
            (self.snr > 0, "snr", "> 0", self.snr),
            (self.noise_floor >= 0, "noise_floor", ">= 0", self.noise_floor),
            (0 <= self.min_dominance < 1, "min_dominance", "in [0, 1)", self.min_dominance),
        )
        for ok, key, expected, value in checks:
            if not ok:
                raise ConfigError(f"synth.{key} must be {expected}, got {value}")
        fr = self.split_fractions
        if len(fr) != 3 or min(fr) < 0 or not math.isclose(sum(fr), 1.0, abs_tol=1e-9):
            raise ConfigError(
                f"synth.split_fractions must be 3 non-negative numbers summing to 1, got {fr}"
            )

    @property
    def tile_size(self) -> int:
        """Side of one generated region, pixels."""
        return self.tile_patches * self.patch_size

    @property
    def n_tiles(self) -> int:
        return -(-self.n_patches // self.tile_patches**2)

    def as_attrs(self) -> dict[str, Any]:
        """Settings as JSON values (for the store's ``generator`` attribute)."""
        out = dataclasses.asdict(self)
        out["split_fractions"] = list(self.split_fractions)
        out["name"] = "jaxgeo.hsi.synth"
        return out


@dataclass(frozen=True)
class SceneTile:
    """The patches of one generated tile (n = tile_patches², fewer for the last tile).

    Attributes:
        tile: Tile index.
        reflectance: (n, S, S, B) float32 reflectance at date 1.
        reflectance_t2: (n, S, S, B) float32 at date 2, or None.
        abundance: (n, S, S, M) float32 material shares at date 1 (M = len(MATERIALS)).
        abundance_t2: (n, S, S, M) at date 2, or None.
        landcover: (n, S, S) int16 class index, -1 unlabeled.
        croptype: (n, S, S) int16 crop index, -1 not cropland.
        split: (n,) int8 split code (one value per tile).
        location: (n, 2) int64 top-left pixel (row, column) of each patch on the mosaic.
    """

    tile: int
    reflectance: np.ndarray
    reflectance_t2: np.ndarray | None
    abundance: np.ndarray
    abundance_t2: np.ndarray | None
    landcover: np.ndarray
    croptype: np.ndarray
    split: np.ndarray
    location: np.ndarray


# --------------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------------


def _grf(rng: np.random.Generator, shape: tuple[int, ...], corr_px: float) -> np.ndarray:
    """Standardised Gaussian random fields with Gaussian correlation of length ``corr_px``.

    ``shape`` is (..., H, W); white noise filtered in Fourier space (periodic, which does not
    matter for a tile cut from an infinite landscape).
    """
    noise = rng.standard_normal(shape, dtype=np.float32)
    h, w = shape[-2:]
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.rfftfreq(w)[None, :]
    filt = np.exp(-2.0 * (np.pi * corr_px) ** 2 * (kx**2 + ky**2)).astype(np.float32)
    field = np.fft.irfft2(np.fft.rfft2(noise) * filt, s=(h, w)).astype(np.float32)
    field -= field.mean(axis=(-2, -1), keepdims=True)
    field /= field.std(axis=(-2, -1), keepdims=True) + np.float32(1e-12)
    return field


def _fields(
    rng: np.random.Generator, size: int, field_size_px: float
) -> tuple[np.ndarray, np.ndarray]:
    """Warped Voronoi partition of a size × size tile: (cell id map, cell seed positions)."""
    n_cells = max(2, round((size / field_size_px) ** 2))
    seeds = rng.uniform(0.0, size, (n_cells, 2))
    warp = _grf(rng, (2, size, size), corr_px=field_size_px) * np.float32(0.3 * field_size_px)
    yy, xx = np.meshgrid(np.arange(size, dtype=np.float32), np.arange(size, dtype=np.float32),
                         indexing="ij")  # fmt: skip
    py = (yy + warp[0]).reshape(-1, 1)
    px = (xx + warp[1]).reshape(-1, 1)
    best = np.full(py.shape[0], np.inf, np.float32)
    cell = np.zeros(py.shape[0], np.int64)
    # In blocks of seeds, to keep the distance matrix small for large tiles.
    for start in range(0, n_cells, 64):
        sy = seeds[start : start + 64, 0].astype(np.float32)[None, :]
        sx = seeds[start : start + 64, 1].astype(np.float32)[None, :]
        d = (py - sy) ** 2 + (px - sx) ** 2
        j = d.argmin(axis=1)
        dj = d[np.arange(d.shape[0]), j]
        better = dj < best
        best[better] = dj[better]
        cell[better] = j[better] + start
    return cell.reshape(size, size), seeds


def _field_classes(
    rng: np.random.Generator, seeds: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Land-cover class and crop type of each field; classes cluster through smooth GRFs."""
    bias = _grf(rng, (len(LANDCOVER_CLASSES), size, size), corr_px=size / 4.0)
    iy = np.clip(seeds[:, 0].astype(np.int64), 0, size - 1)
    ix = np.clip(seeds[:, 1].astype(np.int64), 0, size - 1)
    logits = np.log(_CLASS_WEIGHTS)[None, :] + 1.5 * bias[:, iy, ix].T
    gumbel = -np.log(-np.log(rng.uniform(1e-12, 1.0, logits.shape)))
    cls = np.argmax(logits + gumbel, axis=1)
    crop = rng.integers(0, len(CROPS), size=len(seeds))
    return cls, crop


def _field_shares(rng: np.random.Generator, cls: np.ndarray, crop: np.ndarray) -> np.ndarray:
    """(n_fields, M) material shares of each field, Dirichlet per class."""
    shares = np.zeros((len(cls), len(MATERIALS)))
    for f, (c, k) in enumerate(zip(cls, crop, strict=True)):
        alpha = _CLASS_ALPHA[LANDCOVER_CLASSES[c]]
        names = [CROPS[k] if m == "crop" else m for m in alpha]
        draw = rng.dirichlet(list(alpha.values()))
        shares[f, [_M[n] for n in names]] = draw
    return shares


def _blur(x: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur over the two leading (spatial) axes, truncated at 3σ (finite support)."""
    if sigma <= 0:
        return x
    return ndimage.gaussian_filter(x, sigma=(sigma, sigma, 0), mode="reflect", truncate=3.0)


def _illumination(rng: np.random.Generator, size: int, cfg: SynthConfig) -> np.ndarray:
    """cos(i)/cos(θ_sun) on a GRF terrain of 30 m pixels, clipped to [0.4, 1.6]."""
    dem = _grf(rng, (size, size), corr_px=size / 6.0) * np.float32(cfg.relief_m)
    dz_dy, dz_dx = np.gradient(dem, 30.0)
    slope = np.arctan(np.hypot(dz_dx, dz_dy))
    aspect = np.arctan2(-dz_dx, dz_dy)
    sz = np.deg2rad(cfg.sun_zenith_deg)
    sun_az = rng.uniform(0.0, 2.0 * np.pi)
    cos_i = np.cos(sz) * np.cos(slope) + np.sin(sz) * np.sin(slope) * np.cos(sun_az - aspect)
    return np.clip(cos_i / np.cos(sz), 0.4, 1.6).astype(np.float32)


def _phenology(rng: np.random.Generator, shares: np.ndarray) -> np.ndarray:
    """Date-2 material shares (..., M) from date-1 shares: moves gated by vegetation present."""
    out = shares.copy()
    for src, dst, frac, gate in _PHENOLOGY:
        f = np.float32(frac * rng.uniform(0.8, 1.2))
        moved = np.where(shares[..., _M[gate]] > 0, f * shares[..., _M[src]], np.float32(0))
        out[..., _M[src]] -= moved
        out[..., _M[dst]] += moved
    return out


def _tile_splits(cfg: SynthConfig) -> np.ndarray:
    """Split code of every tile: a seeded permutation cut by ``split_fractions``."""
    n = cfg.n_tiles
    if n >= 3:
        n_val = max(1, round(cfg.split_fractions[1] * n)) if cfg.split_fractions[1] > 0 else 0
        n_test = max(1, round(cfg.split_fractions[2] * n)) if cfg.split_fractions[2] > 0 else 0
    else:  # too few tiles for three splits: all train
        n_val = n_test = 0
    codes = np.full(n, SPLITS["train"], np.int8)
    codes[n - n_val - n_test : n - n_test] = SPLITS["val"]
    codes[n - n_test :] = SPLITS["test"]
    return codes[np.random.default_rng([cfg.seed, 2**31 - 1]).permutation(n)]


def _labels(shares: np.ndarray, min_dominance: float) -> tuple[np.ndarray, np.ndarray]:
    """Land-cover and crop-type labels from the dominant material of each pixel."""
    dom = shares.argmax(axis=-1)
    strong = np.take_along_axis(shares, dom[..., None], axis=-1)[..., 0] >= min_dominance
    landcover = np.where(strong, _MATERIAL_CLASS[dom], -1).astype(np.int16)
    croptype = np.where(strong, _MATERIAL_CROP[dom], -1).astype(np.int16)
    return landcover, croptype


# --------------------------------------------------------------------------------------------
# Tiles
# --------------------------------------------------------------------------------------------


def generate_tile(cfg: SynthConfig, tile: int, *, splits: np.ndarray | None = None) -> SceneTile:
    """Generate tile ``tile`` of a dataset (a pure function of ``cfg.seed`` and ``tile``).

    Args:
        cfg: Generator settings.
        tile: Tile index in [0, cfg.n_tiles).
        splits: Split code per tile (computed from ``cfg`` when omitted).

    Returns:
        The tile's patches (the last tile holds only the patches up to ``cfg.n_patches``).
    """
    rng = np.random.default_rng([cfg.seed, tile])
    size, s, t = cfg.tile_size, cfg.patch_size, cfg.tile_patches
    library = endmembers(cfg.sensor)
    n_m, n_v = len(MATERIALS), cfg.n_variants

    # Endmember spectra: n_variants per material, (M * V, B).
    spectra = np.stack(
        [library[m][rng.integers(0, len(library[m]), n_v)] for m in MATERIALS]
    ).reshape(n_m * n_v, -1)

    cell, seeds = _fields(rng, size, cfg.field_size_px)
    cls, crop = _field_classes(rng, seeds, size)
    shares = _field_shares(rng, cls, crop).astype(np.float32)  # (F, M)
    variant = rng.integers(0, n_v, size=(len(seeds), n_m))  # field's spectrum per material

    # Per-pixel shares: the field's, times log-normal heterogeneity, renormalised.
    hetero = np.exp(
        np.float32(cfg.heterogeneity)
        * _grf(rng, (n_m, size, size), corr_px=max(2.0, cfg.field_size_px / 4.0))
    )
    pix = shares[cell] * np.moveaxis(hetero, 0, -1)  # (size, size, M)
    pix /= pix.sum(axis=-1, keepdims=True)
    # Spread each material's share over its variant slot, then blur (mixes fields at borders).
    slots = np.zeros((size, size, n_m * n_v), np.float32)
    flat_idx = np.arange(n_m)[None, None, :] * n_v + variant[cell]
    np.put_along_axis(slots, flat_idx, pix, axis=-1)
    slots = _blur(slots, cfg.mixing_sigma_px)
    slots /= slots.sum(axis=-1, keepdims=True)

    illum = _illumination(rng, size, cfg)
    water = slots[..., _M["water"] * n_v : (_M["water"] + 1) * n_v].sum(axis=-1)
    illum = 1.0 + (illum - 1.0) * (1.0 - water)  # water surfaces are flat
    noise = rng.standard_normal((size, size, spectra.shape[1]), dtype=np.float32)

    def render(sl: np.ndarray) -> np.ndarray:
        # A 2-D product: NumPy's stacked (3-D) matmul does not reach BLAS and is ~20× slower.
        rho = (sl.reshape(-1, sl.shape[-1]) @ spectra).reshape(size, size, -1)
        rho *= illum[..., None]
        sigma = np.abs(rho)
        sigma *= np.float32(1.0 / cfg.snr)
        sigma += np.float32(cfg.noise_floor)
        sigma *= noise
        rho += sigma
        return rho

    refl = render(slots)
    mat = slots.reshape(size, size, n_m, n_v).sum(axis=-1)
    refl2 = mat2 = None
    if cfg.two_dates:
        # Move abundance between variant slots in proportion to each material's variants.
        slots2_by_mat = _phenology(rng, mat)
        with np.errstate(invalid="ignore", divide="ignore"):
            within = np.where(
                mat[..., None] > 0, slots.reshape(size, size, n_m, n_v) / mat[..., None], 0.0
            )
        # A material that appears only at date 2 (maize over bare soil) takes its field's variant.
        fresh = (mat <= 0) & (slots2_by_mat > 0)
        if fresh.any():
            default = np.zeros_like(within)
            np.put_along_axis(default, variant[cell][..., None], 1.0, axis=-1)
            within = np.where(fresh[..., None], default, within)
        slots2 = (within * slots2_by_mat[..., None]).reshape(size, size, n_m * n_v)
        # Unchanged pixels keep date 1's shares bit for bit (no round-off from the rescaling).
        changed = np.any(slots2_by_mat != mat, axis=-1)
        slots2 = np.where(changed[..., None], slots2, slots).astype(np.float32)
        refl2 = render(slots2)
        mat2 = slots2_by_mat

    landcover, croptype = _labels(mat, cfg.min_dominance)
    split_code = (_tile_splits(cfg) if splits is None else splits)[tile]

    first = tile * t * t
    n = min(t * t, cfg.n_patches - first)
    rows = [(i // t) * s for i in range(n)]
    cols = [(i % t) * s for i in range(n)]
    # Tiles sit on a mosaic one tile apart (a gap of one tile between neighbours).
    per_row = max(1, math.isqrt(cfg.n_tiles - 1) + 1)
    origin = np.array([(tile // per_row) * 2 * size, (tile % per_row) * 2 * size])

    def cut(a: np.ndarray | None) -> np.ndarray | None:
        if a is None:
            return None
        return np.stack([a[r : r + s, c : c + s] for r, c in zip(rows, cols, strict=True)])

    return SceneTile(
        tile=tile,
        reflectance=cut(refl),  # type: ignore[arg-type]
        reflectance_t2=cut(refl2),
        abundance=cut(mat),  # type: ignore[arg-type]
        abundance_t2=cut(mat2),
        landcover=cut(landcover),  # type: ignore[arg-type]
        croptype=cut(croptype),  # type: ignore[arg-type]
        split=np.full(n, split_code, np.int8),
        location=origin[None, :] + np.stack([rows, cols], axis=1),
    )


def iter_tiles(cfg: SynthConfig) -> Iterator[SceneTile]:
    """All tiles of a dataset, in order."""
    splits = _tile_splits(cfg)
    for tile in range(cfg.n_tiles):
        yield generate_tile(cfg, tile, splits=splits)


def synthesize(cfg: SynthConfig) -> SceneTile:
    """A whole (small) dataset in memory, the tiles concatenated (``tile`` is -1)."""
    tiles = list(iter_tiles(cfg))

    def cat(name: str) -> Any:
        parts = [getattr(t, name) for t in tiles]
        return None if parts[0] is None else np.concatenate(parts)

    fields = {f.name: cat(f.name) for f in dataclasses.fields(SceneTile) if f.name != "tile"}
    return SceneTile(tile=-1, **fields)


def write_dataset(
    cfg: SynthConfig,
    path: str | Path,
    *,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Generate a dataset and stream it into a patch store.

    Args:
        cfg: Generator settings.
        path: Store folder.
        overwrite: Replace an existing store.
        progress: Called as ``progress(patches_done, n_patches)`` after each tile.

    Returns:
        Summary: path, sensor, bands, patches, per-class pixel counts, patches per split,
        seconds.

    Raises:
        StoreExistsError: ``path`` exists and ``overwrite`` is False.
    """
    start = time.perf_counter()
    sensor = get_sensor(cfg.sensor)
    lc_counts = np.zeros(len(LANDCOVER_CLASSES), np.int64)
    ct_counts = np.zeros(len(CROPTYPE_CLASSES), np.int64)
    split_counts = np.zeros(3, np.int64)
    writer = PatchStoreWriter(
        path,
        n_patches=cfg.n_patches,
        patch_size=cfg.patch_size,
        wavelength_nm=sensor.centres,
        fwhm_nm=sensor.fwhm,
        sensor=sensor.name,
        landcover_classes=LANDCOVER_CLASSES,
        croptype_classes=CROPTYPE_CLASSES,
        two_dates=cfg.two_dates,
        attrs={"seed": cfg.seed, "generator": cfg.as_attrs()},
        overwrite=overwrite,
    )
    with writer:
        done = 0
        for tile in iter_tiles(cfg):
            writer.write(
                done,
                reflectance=tile.reflectance,
                reflectance_t2=tile.reflectance_t2,
                landcover=tile.landcover,
                croptype=tile.croptype,
                split=tile.split,
                location=tile.location,
            )
            lc_counts += np.bincount(
                tile.landcover[tile.landcover >= 0], minlength=len(LANDCOVER_CLASSES)
            )
            ct_counts += np.bincount(
                tile.croptype[tile.croptype >= 0], minlength=len(CROPTYPE_CLASSES)
            )
            split_counts += np.bincount(tile.split, minlength=3)
            done += len(tile.split)
            if progress is not None:
                progress(done, cfg.n_patches)
    return {
        "path": str(path),
        "sensor": sensor.name,
        "bands": sensor.n_bands,
        "patches": cfg.n_patches,
        "patch_size": cfg.patch_size,
        "two_dates": cfg.two_dates,
        "landcover_pixels": dict(zip(LANDCOVER_CLASSES, lc_counts.tolist(), strict=True)),
        "croptype_pixels": dict(zip(CROPTYPE_CLASSES, ct_counts.tolist(), strict=True)),
        "split_patches": dict(zip(SPLITS, split_counts.tolist(), strict=True)),
        "seconds": round(time.perf_counter() - start, 2),
    }
