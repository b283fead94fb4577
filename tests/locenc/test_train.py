"""Training: reaches a fixed accuracy on the checkerboard, resume == uninterrupted, save/load,
metrics, and the datasets it trains on."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

from jaxgeo.cli import main
from jaxgeo.errors import ConfigError, StoreExistsError
from jaxgeo.locenc import (
    Encoding,
    ModelConfig,
    TrainConfig,
    classification_metrics,
    fibonacci_lattice,
    fit,
    load_dataset,
    load_encoder,
    params_dict,
    regression_metrics,
    save_encoder,
)

# One model, one dataset size, one optimiser and batch size for the training, resume and CLI
# tests, so that they share one compiled epoch (the compile cache keys on model config, task,
# optimiser and batch size; the jit on array shapes): compiling is most of their cost.
POINTS = 2000
MODEL = ModelConfig(encoding=Encoding("sh", degree=10), network="siren", hidden=64, n_out=16)
TRAIN = TrainConfig(epochs=25, batch_size=256, learning_rate=5e-3, patience=10)


@pytest.fixture(scope="module")
def checkerboard():
    return load_dataset("checkerboard", n_points=POINTS, seed=0)


@pytest.fixture(scope="module")
def checkerboard_fit(checkerboard):
    # Shared by the accuracy and the save/load tests. The validation loss bottoms out after
    # ~6 epochs (accuracy 0.84 there on this seed), so early stopping ends it near epoch 16.
    return fit(checkerboard, MODEL, TRAIN)


def test_short_training_reaches_accuracy_on_checkerboard(checkerboard_fit):
    result = checkerboard_fit
    assert result.metrics["accuracy"] > 0.8, result.metrics
    assert result.metrics["iou"] > 0.6
    # Chance (uniform 1/16) has cross-entropy log 16 = 2.77.
    assert min(result.history["val_loss"]) < np.log(16.0) / 3


@pytest.fixture(scope="module")
def magfield():
    return load_dataset("magfield", n_points=1200, seed=0)


def test_short_training_beats_the_mean_on_magfield(magfield):
    # Regression: |B| of the geomagnetic field is dominated by the dipole, |B| ∝ sqrt(1 + 3 sin²φ_m),
    # smooth and of low degree: a linear model on SH to degree 4 (25 features) should cut the
    # error of predicting the mean (~1e4 nT) several-fold.
    ds = magfield
    cfg = ModelConfig(encoding=Encoding("sh", degree=4), network="linear", n_out=1)
    result = fit(ds, cfg, TrainConfig(epochs=60, batch_size=64, learning_rate=3e-2, patience=10))
    err = ds.test.y - ds.train.y.mean()
    mean_rmse = float(np.sqrt(np.mean(err**2)))
    assert 5e3 < mean_rmse < 2e4  # sanity of the target's spread, nT
    assert result.metrics["rmse"] < 0.25 * mean_rmse, (result.metrics, mean_rmse)
    assert result.metrics["mae"] < 2500.0, result.metrics  # nT


def test_resume_equals_uninterrupted(tmp_path, checkerboard):
    tc = dataclasses.replace(TRAIN, epochs=4, checkpoint_every=2, seed=3)
    full = fit(checkerboard, MODEL, tc, checkpoint_dir=tmp_path / "a")
    fit(checkerboard, MODEL, tc, checkpoint_dir=tmp_path / "b", stop_after_epochs=2)
    with pytest.raises(StoreExistsError):
        fit(checkerboard, MODEL, tc, checkpoint_dir=tmp_path / "b")
    resumed = fit(checkerboard, MODEL, tc, checkpoint_dir=tmp_path / "b", resume=True)
    assert resumed.history == full.history and resumed.epochs_run == 4
    for a, b in zip(
        jax.tree_util.tree_leaves(params_dict(full.model)),
        jax.tree_util.tree_leaves(params_dict(resumed.model)),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ConfigError, match="other settings"):
        fit(
            checkerboard,
            dataclasses.replace(MODEL, hidden=32),
            tc,
            checkpoint_dir=tmp_path / "b",
            resume=True,
        )


def test_saved_encoder_embeds_identically(tmp_path, checkerboard_fit):
    model = checkerboard_fit.model
    save_encoder(model, tmp_path / "enc", metadata={"note": "x"})
    with pytest.raises(StoreExistsError):
        save_encoder(model, tmp_path / "enc")
    loaded, meta = load_encoder(tmp_path / "enc")
    assert meta == {"note": "x"} and loaded.config == model.config
    lon, lat = fibonacci_lattice(50)
    got = np.asarray(loaded.embed(lon, lat))
    assert got.shape == (50, 64)
    np.testing.assert_array_equal(got, np.asarray(model.embed(lon, lat)))


def test_metrics_on_known_predictions():
    m = classification_metrics(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2)
    assert m["accuracy"] == 0.75
    assert m["iou"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    r = regression_metrics(np.array([0.0, 0.0]), np.array([3.0, -4.0]))
    assert r == {"mae": 3.5, "rmse": pytest.approx(np.sqrt(12.5))}


def test_datasets_are_split_and_labelled(checkerboard, magfield):
    lon, lat = fibonacci_lattice(4000)
    z = np.sin(np.radians(lat))
    # Equal-area bands: z is uniform; the centroid of the lattice is the centre of the sphere.
    assert abs(z.mean()) < 1e-12 and np.histogram(z, 4)[0].tolist() == [1000] * 4
    xyz = np.stack(
        [
            np.cos(np.radians(lat)) * np.cos(np.radians(lon)),
            np.cos(np.radians(lat)) * np.sin(np.radians(lon)),
            z,
        ]
    )
    assert np.abs(xyz.mean(axis=1)).max() < 1e-3
    cb = checkerboard
    assert sorted(set(cb.train.y.tolist())) == list(range(16))
    assert cb.train.y.size + cb.val.y.size + cb.test.y.size == POINTS
    lo = load_dataset("landocean", n_points=4000, seed=0)
    land = np.concatenate([lo.train.y, lo.val.y, lo.test.y])
    assert land.mean() == pytest.approx(0.29, abs=0.03)  # Earth's land fraction
    assert lo.truth(np.array([10.0, -30.0]), np.array([50.0, 0.0])).tolist() == [1, 0]
    mf = magfield
    # |B| at the surface ranges from ~22 µT (South Atlantic Anomaly) to ~67 µT (poles).
    assert 2.0e4 < mf.train.y.min() and mf.train.y.max() < 7.0e4
    assert mf.task == "regression" and mf.units == "nT"
    with pytest.raises(ConfigError):
        load_dataset("mnist")


def test_cli_train_prints_summary_and_writes_outputs(tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "locenc",
        "train",
        "--dataset",
        "checkerboard",
        "--encoding",
        "sh",
        "--degree",
        "10",
        "--network",
        "siren",
        "--hidden",
        "64",
        "--lr",
        "5e-3",
        "--epochs",
        "2",
        "--points",
        str(POINTS),
        "--batch-size",
        "256",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in (
        "dataset",
        "encoding",
        "network",
        "L",
        "test_accuracy",
        "test_iou",
        "train_seconds",
        "parameters",
    ):
        assert key in summary
    for name in ("map.png", "learning_curve.png", "encoder/encoder.json", "run.json"):
        assert (out / name).exists()
    assert main(argv) == 2  # refuses to overwrite
    assert "exists" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])["error"]
