"""The hyperspectral patch store (jaxgeo.hsi.store)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

from jaxgeo.errors import FileFormatError, InputError, StoreExistsError
from jaxgeo.hsi.store import NODATA, SCALE_FACTOR, PatchStore, write_patch_store

N, S, B = 10, 6, 5
CLASSES = ("a", "b", "c")
CROPS = ("u", "v")


def _data(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    refl = rng.uniform(0.0, 0.6, (N, S, S, B))
    refl[0, 0, 0, 0] = np.nan  # a missing value
    return dict(
        reflectance=refl,
        reflectance_t2=refl * 0.9,
        landcover=rng.integers(-1, 3, (N, S, S)),
        croptype=rng.integers(-1, 2, (N, S, S)),
        split=np.array([0, 0, 0, 0, 0, 0, 1, 1, 2, 2]),
        wavelength_nm=np.linspace(400.0, 2400.0, B),
        fwhm_nm=np.full(B, 10.0),
        sensor="test",
        landcover_classes=CLASSES,
        croptype_classes=CROPS,
    )


def _write(path: Path, **kw) -> dict:
    data = _data() | kw
    write_patch_store(path, attrs={"seed": 7, "generator": {"k": 1}}, **data)
    return data


def test_round_trip_within_quantisation(tmp_path: Path) -> None:
    path = tmp_path / "p.zarr"
    data = _write(path)
    store = PatchStore.open(path)
    assert (store.n_patches, store.patch_size, store.n_bands) == (N, S, B)
    assert store.sensor == "test" and store.has_second_date
    assert store.landcover_classes == CLASSES and store.croptype_classes == CROPS
    assert store.attrs["seed"] == 7 and store.attrs["generator"] == {"k": 1}
    idx = np.array([3, 0, 7])
    x = store.read(idx, normalize=False)
    assert x.dtype == np.float32 and x.shape == (3, S, S, B)
    ref = data["reflectance"][idx]
    assert np.isnan(x[1, 0, 0, 0])  # the missing value comes back missing
    ok = np.isfinite(ref)
    np.testing.assert_allclose(x[ok], ref[ok], atol=SCALE_FACTOR / 2 + 1e-7)
    x2 = store.read(idx, normalize=False, date=2)
    np.testing.assert_allclose(x2[ok], 0.9 * ref[ok], atol=SCALE_FACTOR / 2 + 1e-7)
    np.testing.assert_array_equal(store.labels(idx, "landcover"), data["landcover"][idx])
    np.testing.assert_array_equal(store.labels(idx, "croptype"), data["croptype"][idx])
    for i in range(N):  # majority class of each patch
        lc = data["landcover"][i]
        counts = np.bincount(lc[lc >= 0], minlength=3)
        assert store.labels([i], "landcover_patch")[0] == counts.argmax()
    assert store.read_raw([0])[0, 0, 0, 0] == NODATA


def test_band_statistics_are_those_of_the_train_split(tmp_path: Path) -> None:
    path = tmp_path / "p.zarr"
    data = _write(path)
    store = PatchStore.open(path)
    q = np.rint(data["reflectance"][:6] / SCALE_FACTOR) * SCALE_FACTOR  # what is stored
    pixels = q.reshape(-1, B)
    np.testing.assert_allclose(store.band_mean, np.nanmean(pixels, axis=0), rtol=1e-6)
    np.testing.assert_allclose(store.band_std, np.nanstd(pixels, axis=0), rtol=1e-5)
    z = store.read(store.indices("train"))
    assert z[0, 0, 0, 0] == 0.0  # a missing value reads as the band mean
    valid = np.isfinite(q)
    for b in range(B):
        zb = z[..., b][valid[..., b]]
        assert abs(zb.mean()) < 1e-5 and abs(zb.std() - 1.0) < 1e-5


def test_indices_and_batches(tmp_path: Path) -> None:
    path = tmp_path / "p.zarr"
    data = _write(path)
    store = PatchStore.open(path)
    np.testing.assert_array_equal(store.indices("train"), np.arange(6))
    np.testing.assert_array_equal(store.indices("test"), [8, 9])
    kw = dict(seed=3, epoch=1, with_t2=True, task="croptype")
    batches = list(store.batches("train", 4, **kw))
    assert len(batches) == 1  # drop_last
    again = list(store.batches("train", 4, **kw))
    np.testing.assert_array_equal(batches[0]["idx"], again[0]["idx"])  # (seed, epoch) fixes it
    b = batches[0]
    assert set(b) == {"x", "x2", "y", "idx"} and b["x"].shape == (4, S, S, B)
    np.testing.assert_array_equal(b["y"], data["croptype"][b["idx"]])
    np.testing.assert_array_equal(b["x"], store.read(b["idx"]))
    all_idx = np.concatenate(
        [b["idx"] for b in store.batches("train", 4, seed=3, epoch=2, drop_last=False)]
    )
    np.testing.assert_array_equal(np.sort(all_idx), np.arange(6))
    val = list(store.batches("val", 1, seed=0, epoch=0))  # evaluation order is fixed
    np.testing.assert_array_equal([v["idx"][0] for v in val], [6, 7])
    # Leaving the loop early stops the reader thread cleanly.
    for _ in store.batches("train", 1, seed=0, epoch=0):
        break


def test_missing_array_and_bad_shape_are_named(tmp_path: Path) -> None:
    path = tmp_path / "p.zarr"
    _write(path)
    root = zarr.open_group(path, mode="a", zarr_format=3)
    del root["band_std"]
    with pytest.raises(FileFormatError, match="band_std"):
        PatchStore.open(path)
    root.create_array("band_std", shape=(B + 1,), dtype="float32")
    with pytest.raises(FileFormatError, match=r"'band_std' has shape \(6,\)"):
        PatchStore.open(path)
    with pytest.raises(FileFormatError, match="not found"):
        PatchStore.open(tmp_path / "nothing.zarr")


def test_writer_refuses_bad_shapes_and_labels(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="landcover has shape"):
        _write(tmp_path / "a.zarr", landcover=np.zeros((N, S, S + 1), int))
    with pytest.raises(InputError, match=r"class indices in \[-1, 2\]"):
        _write(tmp_path / "b.zarr", landcover=np.full((N, S, S), 3))
    with pytest.raises(InputError, match="no patch in the train split"):
        _write(tmp_path / "c.zarr", split=np.full(N, 1))
    assert not any(tmp_path.iterdir())  # failed writes leave nothing behind


def test_overwrite_refused_and_old_store_survives_failed_write(tmp_path: Path) -> None:
    path = tmp_path / "p.zarr"
    _write(path)
    before = PatchStore.open(path).read_raw(np.arange(N))
    with pytest.raises(StoreExistsError, match="--overwrite"):
        _write(path)
    with pytest.raises(InputError):  # fails half way, after the arrays were created
        _write(path, croptype=np.full((N, S, S), 5), overwrite=True)
    np.testing.assert_array_equal(PatchStore.open(path).read_raw(np.arange(N)), before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.zarr"]  # no temp folders left
    _write(path, reflectance=_data(1)["reflectance"], overwrite=True)
    assert not np.array_equal(PatchStore.open(path).read_raw(np.arange(N)), before)
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreExistsError, match="not a zarr store"):
        _write(tmp_path / "plain", overwrite=True)


def test_raw_batches_and_device_normalisation_match_read(tmp_path: Path) -> None:
    """``batches(raw=True)`` yields the stored integers; :func:`normalize_raw` (what the
    pretraining step applies on the device) gives what ``read`` gives, missing values too."""
    import jax

    from jaxgeo.hsi.store import normalize_raw

    path = tmp_path / "p.zarr"
    _write(path)
    store = PatchStore.open(path)
    kw = dict(seed=1, epoch=0, with_t2=True, drop_last=False)
    for b_raw, b in zip(
        store.batches("train", 4, raw=True, **kw), store.batches("train", 4, **kw), strict=True
    ):
        assert b_raw["x"].dtype == np.int16 and b_raw["x2"].dtype == np.int16
        np.testing.assert_array_equal(b_raw["x"], store.read_raw(b["idx"]))
        for key in ("x", "x2"):
            z = np.asarray(jax.jit(normalize_raw)(b_raw[key], *store.normalization))
            np.testing.assert_allclose(z, b[key], rtol=1e-6, atol=1e-6)
    z0 = np.asarray(normalize_raw(store.read_raw([0]), *store.normalization))
    assert z0[0, 0, 0, 0] == 0.0  # the missing value, as in read()


def test_direct_chunk_reads_equal_zarr_and_fall_back_for_unwritten_chunks(tmp_path: Path) -> None:
    path = tmp_path / "p.zarr"
    _write(path)
    store = PatchStore.open(path)
    arr = zarr.open_group(path, mode="r")["reflectance"]
    assert store._chunk_reader(store._refl).__name__ == "direct"
    np.testing.assert_array_equal(store.read_raw(np.arange(N)), np.asarray(arr[:]))
    # A chunk file that is not there reads as zarr reads it (the fill value).
    (path / "reflectance" / "c" / "4" / "0" / "0" / "0").unlink()
    fresh = PatchStore.open(path)
    got = fresh.read_raw([4, 5])
    np.testing.assert_array_equal(got[0], np.full((S, S, B), NODATA, np.int16))
    np.testing.assert_array_equal(got[1], np.asarray(arr[5]))
