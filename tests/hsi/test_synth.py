"""The seeded scene generator (jaxgeo.hsi.synth) and the make-dataset command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jaxgeo.cli import main
from jaxgeo.errors import ConfigError
from jaxgeo.hsi.spectra import MATERIALS, endmembers
from jaxgeo.hsi.store import PatchStore
from jaxgeo.hsi.synth import (
    CROPTYPE_CLASSES,
    LANDCOVER_CLASSES,
    VEGETATION,
    SynthConfig,
    generate_tile,
    synthesize,
)

# 12 tiles of 2 × 2 patches of 32 px: enough fields for every class, a few seconds.
CFG = SynthConfig(sensor="enmap", n_patches=48, patch_size=32, seed=5, field_size_px=12.0)


@pytest.fixture(scope="module")
def scene():
    return synthesize(CFG)


def test_endmember_groups_are_real_and_distinct() -> None:
    lib = endmembers("hyperion")
    assert set(lib) == set(MATERIALS)
    assert all(len(v) >= 3 and v.shape[1] == 198 for v in lib.values())
    nir = lib["tree"][:, 40].mean()  # ~ 830 nm: vegetation is bright, water dark
    assert nir > 0.3 and lib["water"][:, 40].mean() < nir / 2


def test_deterministic_per_seed() -> None:
    a = generate_tile(CFG, 3)
    b = generate_tile(CFG, 3)
    np.testing.assert_array_equal(a.reflectance, b.reflectance)
    np.testing.assert_array_equal(a.landcover, b.landcover)
    c = generate_tile(SynthConfig(**{**CFG.__dict__, "seed": 6}), 3)
    assert not np.array_equal(a.reflectance, c.reflectance)
    # A tile does not depend on how many patches the dataset has.
    d = generate_tile(SynthConfig(**{**CFG.__dict__, "n_patches": 64}), 3)
    np.testing.assert_array_equal(a.reflectance, d.reflectance)


def test_shapes_labels_and_classes(scene) -> None:
    n, s = CFG.n_patches, CFG.patch_size
    assert scene.reflectance.shape == (n, s, s, 202) and scene.reflectance.dtype == np.float32
    assert scene.landcover.shape == (n, s, s) and scene.croptype.shape == (n, s, s)
    assert scene.landcover.min() >= -1 and scene.landcover.max() < len(LANDCOVER_CLASSES)
    assert scene.croptype.min() >= -1 and scene.croptype.max() < len(CROPTYPE_CLASSES)
    assert set(np.unique(scene.landcover)) >= set(range(len(LANDCOVER_CLASSES)))
    assert set(np.unique(scene.croptype)) >= set(range(len(CROPTYPE_CLASSES)))
    # Crop types exactly on cropland pixels.
    cropland = LANDCOVER_CLASSES.index("cropland")
    np.testing.assert_array_equal(scene.croptype >= 0, scene.landcover == cropland)
    assert (scene.landcover == -1).mean() < 0.1
    assert 0.0 < scene.reflectance.mean() < 0.5


def test_abundances_sum_to_one_and_labels_follow_dominant_material(scene) -> None:
    for ab in (scene.abundance, scene.abundance_t2):
        assert ab.min() >= 0.0
        np.testing.assert_allclose(ab.sum(axis=-1), 1.0, atol=1e-5)
    dom = np.asarray(MATERIALS)[scene.abundance.argmax(axis=-1)]
    forest = scene.landcover == LANDCOVER_CLASSES.index("forest")
    assert np.all(dom[forest] == "tree")
    water = scene.landcover == LANDCOVER_CLASSES.index("water")
    assert np.all(dom[water] == "water")


def test_split_is_spatially_disjoint(scene) -> None:
    assert set(np.unique(scene.split)) == {0, 1, 2}
    s = CFG.patch_size
    boxes = [(int(r), int(c)) for r, c in scene.location]
    for i in range(len(boxes)):
        for j in range(len(boxes)):
            if scene.split[i] == scene.split[j]:
                continue
            (ri, ci), (rj, cj) = boxes[i], boxes[j]
            # Not overlapping and not even touching: at least one patch apart.
            assert abs(ri - rj) > s or abs(ci - cj) > s
    # A tile's patches share one split.
    tiles = np.arange(CFG.n_patches) // CFG.tile_patches**2
    for t in np.unique(tiles):
        assert len(np.unique(scene.split[tiles == t])) == 1


def test_second_date_differs_exactly_where_vegetation_is(scene) -> None:
    veg = [MATERIALS.index(m) for m in VEGETATION]
    vegetated = (scene.abundance[..., veg].sum(-1) > 0) | (scene.abundance_t2[..., veg].sum(-1) > 0)
    changed = np.any(scene.reflectance != scene.reflectance_t2, axis=-1)
    assert not np.any(changed & ~vegetated)
    assert np.mean(changed[vegetated]) > 0.99
    assert (~vegetated).mean() > 0.05  # water and bare fields exist and stay unchanged
    # NDVI drops on cereal (ripening) and rises on maize (canopy closure).
    red, nir = 47, 73  # EnMAP 202 band indices near 660 and 860 nm

    def ndvi(x):
        return (x[..., nir] - x[..., red]) / (x[..., nir] + x[..., red])

    for crop, sign in (("cereal", -1), ("maize", +1)):
        sel = scene.croptype == CROPTYPE_CLASSES.index(crop)
        delta = ndvi(scene.reflectance_t2[sel]).mean() - ndvi(scene.reflectance[sel]).mean()
        assert sign * delta > 0.02, (crop, delta)


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="synth.patch_size"):
        SynthConfig(patch_size=2)
    with pytest.raises(ConfigError, match="unknown"):
        SynthConfig(sensor="aviris")
    with pytest.raises(ConfigError, match="split_fractions"):
        SynthConfig(split_fractions=(0.5, 0.5, 0.5))


def test_make_dataset_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p.zarr"
    argv = ["hsi", "make-dataset", "--sensor", "desis", "--n-patches", "12", "--patch-size",
            "16", "--seed", "2", "--out", str(out), "--one-date", "--plots", str(tmp_path / "pl")]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["sensor"] == "desis" and summary["bands"] == 235 and summary["patches"] == 12
    assert set(summary["landcover_pixels"]) == set(LANDCOVER_CLASSES)
    store = PatchStore.open(out)
    assert store.n_bands == 235 and not store.has_second_date and store.attrs["seed"] == 2
    assert store.attrs["generator"]["patch_size"] == 16
    assert sorted(p.name for p in (tmp_path / "pl").iterdir()) == [
        "class_spectra.png",
        "patches.png",
        "srf_desis.png",
    ]
    assert main(argv) == 2  # exists: refused without --overwrite
    assert "overwrite" in capsys.readouterr().out
