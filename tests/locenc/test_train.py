"""Training: reaches a fixed accuracy on the checkerboard, resume == uninterrupted, save/load,
metrics, and the datasets it trains on."""

from __future__ import annotations

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

TINY = ModelConfig(encoding=Encoding("sh", degree=4), network="siren", hidden=16, n_out=16)


def test_short_training_reaches_accuracy_on_checkerboard():
    ds = load_dataset("checkerboard", n_points=2000, seed=0)
    cfg = ModelConfig(encoding=Encoding("sh", degree=12), network="siren", hidden=64, n_out=16)
    result = fit(ds, cfg, TrainConfig(epochs=25, batch_size=128, learning_rate=3e-3, patience=5))
    assert result.metrics["accuracy"] > 0.8, result.metrics
    assert result.metrics["iou"] > 0.6
    # Chance (uniform 1/16) has cross-entropy log 16 = 2.77.
    assert min(result.history["val_loss"]) < np.log(16.0) / 3


def test_resume_equals_uninterrupted(tmp_path):
    ds = load_dataset("checkerboard", n_points=300, seed=1)
    tc = TrainConfig(epochs=4, batch_size=64, checkpoint_every=2, seed=3)
    cfg = ModelConfig(
        encoding=Encoding("sh", degree=4), network="fcnet", hidden=16, dropout=0.2, n_out=16
    )
    full = fit(ds, cfg, tc, checkpoint_dir=tmp_path / "a")
    fit(ds, cfg, tc, checkpoint_dir=tmp_path / "b", stop_after_epochs=2)
    with pytest.raises(StoreExistsError):
        fit(ds, cfg, tc, checkpoint_dir=tmp_path / "b")
    resumed = fit(ds, cfg, tc, checkpoint_dir=tmp_path / "b", resume=True)
    assert resumed.history == full.history
    for a, b in zip(
        jax.tree_util.tree_leaves(params_dict(full.model)),
        jax.tree_util.tree_leaves(params_dict(resumed.model)),
        strict=True,
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(ConfigError, match="other settings"):
        fit(
            ds,
            ModelConfig(encoding=Encoding("sh", degree=5), network="fcnet", hidden=16, n_out=16),
            tc,
            checkpoint_dir=tmp_path / "b",
            resume=True,
        )


def test_saved_encoder_embeds_identically(tmp_path):
    ds = load_dataset("checkerboard", n_points=200, seed=0)
    result = fit(ds, TINY, TrainConfig(epochs=1, batch_size=64))
    save_encoder(result.model, tmp_path / "enc", metadata={"note": "x"})
    with pytest.raises(StoreExistsError):
        save_encoder(result.model, tmp_path / "enc")
    loaded, meta = load_encoder(tmp_path / "enc")
    assert meta == {"note": "x"} and loaded.config == TINY
    lon, lat = fibonacci_lattice(50)
    np.testing.assert_array_equal(
        np.asarray(loaded.embed(lon, lat)), np.asarray(result.model.embed(lon, lat))
    )
    assert loaded.embed(lon, lat).shape == (50, 16)


def test_metrics_on_known_predictions():
    m = classification_metrics(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2)
    assert m["accuracy"] == 0.75
    assert m["iou"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    r = regression_metrics(np.array([0.0, 0.0]), np.array([3.0, -4.0]))
    assert r == {"mae": 3.5, "rmse": pytest.approx(np.sqrt(12.5))}


def test_datasets_are_split_and_labelled():
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
    cb = load_dataset("checkerboard", n_points=2000, seed=0)
    assert sorted(set(cb.train.y.tolist())) == list(range(16))
    assert cb.train.y.size + cb.val.y.size + cb.test.y.size == 2000
    lo = load_dataset("landocean", n_points=4000, seed=0)
    land = np.concatenate([lo.train.y, lo.val.y, lo.test.y])
    assert land.mean() == pytest.approx(0.29, abs=0.03)  # Earth's land fraction
    assert lo.truth(np.array([10.0, -30.0]), np.array([50.0, 0.0])).tolist() == [1, 0]
    mf = load_dataset("magfield", n_points=500, seed=0)
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
        "spherec+",
        "--network",
        "fcnet",
        "--hidden",
        "8",
        "--epochs",
        "2",
        "--points",
        "300",
        "--batch-size",
        "64",
        "--frequencies",
        "4",
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
