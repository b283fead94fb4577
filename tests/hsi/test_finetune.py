"""Downstream metrics and losses; pretraining and fine-tuning runs on a tiny synthetic store:
resume equals an uninterrupted run, a pretrained backbone beats a random one (long), the
command line, cross-sensor transfer."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxgeo.errors import FileFormatError
from jaxgeo.hsi.finetune import (
    confusion_matrix,
    masked_cross_entropy,
    metrics_from_confusion,
    split_trainable,
)
from jaxgeo.hsi.run import FinetuneConfig, PretrainConfig, finetune, pca_2d, pretrain
from jaxgeo.hsi.synth import SynthConfig, write_dataset

_MAE = {"dec_width": 16, "dec_depth": 1, "dec_heads": 2}


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    path = tmp_path_factory.mktemp("hsi") / "tiny.zarr"
    cfg = SynthConfig(sensor="enmap", n_patches=40, patch_size=16, seed=0, field_size_px=6.0)
    write_dataset(cfg, path)
    return path


def test_metrics_from_a_known_confusion():
    conf = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 0]])  # class 2 absent everywhere
    m = metrics_from_confusion(conf)
    assert m["accuracy"] == pytest.approx(8 / 11)
    iou0, iou1 = 5 / (5 + 2 + 1), 3 / (3 + 1 + 2)
    assert m["per_class_iou"][:2] == pytest.approx([iou0, iou1]) and m["per_class_iou"][2] is None
    assert m["miou_macro"] == pytest.approx((iou0 + iou1) / 2)  # absent class left out
    assert m["miou_micro"] == pytest.approx(8 / (8 + 3 + 3))
    # Single-label predictions: micro IoU = acc / (2 - acc).
    assert m["miou_micro"] == pytest.approx(m["accuracy"] / (2 - m["accuracy"]))


def test_confusion_ignores_unlabeled():
    y = np.array([[0, 1, -1], [2, -1, 1]])
    p = np.array([[0, 2, 1], [2, 0, 1]])
    conf = confusion_matrix(y, p, 3)
    assert conf.sum() == 4
    np.testing.assert_array_equal(np.diag(conf), [1, 1, 1])
    assert conf[1, 2] == 1


def test_masked_cross_entropy_ignores_unlabeled():
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32))
    y = jnp.asarray([[0, -1, 3], [-1, -1, 1]], jnp.int32)
    loss, count = masked_cross_entropy(logits, y)
    valid = np.asarray(y) >= 0
    ref = optax.softmax_cross_entropy_with_integer_labels(logits[valid], y[valid]).mean()
    assert float(count) == 3 and float(loss) == pytest.approx(float(ref), rel=1e-6)
    g = np.asarray(jax.grad(lambda z: masked_cross_entropy(z, y)[0])(logits))
    assert np.all(g[~valid] == 0)


def test_split_trainable_freezes_backbone():
    params = {"backbone": {"w": 1}, "head": {"b": 2}}
    assert split_trainable(params, "linear") == ({"head": {"b": 2}}, {"backbone": {"w": 1}})
    assert split_trainable(params, "full") == (params, {})


def test_pca_2d_finds_the_main_axis():
    rng = np.random.default_rng(0)
    t = rng.normal(size=200)
    z = np.stack([3 * t, 3 * t, 0.01 * rng.normal(size=200)], axis=1)
    p = pca_2d(z)
    assert abs(np.corrcoef(p[:, 0], t)[0, 1]) > 0.999


def test_pretrain_resume_equals_uninterrupted(tiny_store, tmp_path):
    cfg = PretrainConfig(
        method="mae", backbone="vit-tiny", epochs=2, batch_size=6, lr=1e-3,
        warmup_epochs=1, method_settings=_MAE,
    )  # fmt: skip
    full = pretrain(tiny_store, cfg, tmp_path / "full")
    part = pretrain(tiny_store, cfg, tmp_path / "part", stop_after_epochs=1)
    assert not part["finished"] and not (tmp_path / "part" / "backbone").exists()
    with pytest.raises(FileFormatError, match="no finished pretraining run"):
        finetune(
            tiny_store,
            FinetuneConfig(epochs=1, batch_size=6),
            tmp_path / "ft",
            checkpoint=tmp_path / "part",
        )
    resumed = pretrain(tiny_store, cfg, tmp_path / "part", resume=True)
    assert resumed["finished"] and resumed["epochs"] == 2
    h_full = json.loads((tmp_path / "full" / "history.json").read_text())
    h_res = json.loads((tmp_path / "part" / "history.json").read_text())
    assert h_full["loss"] == h_res["loss"]  # bit for bit
    assert full["final_loss"] == resumed["final_loss"]
    assert full["parameters"] == resumed["parameters"] > full["backbone_parameters"]


@pytest.mark.long
def test_pretrained_probe_beats_random_init(tiny_store, tmp_path):
    cfg = PretrainConfig(
        method="moco", backbone="spec-vit-tiny", epochs=6, batch_size=8, lr=3e-3,
        warmup_epochs=1, method_settings={"queue_size": 64, "hidden": 64, "dim": 32},
    )  # fmt: skip
    pretrain(tiny_store, cfg, tmp_path / "pt")
    probe = FinetuneConfig(
        task="landcover", mode="linear", backbone="spec-vit-tiny", epochs=6, batch_size=8,
        lr=1e-2, warmup_epochs=0,
    )  # fmt: skip
    pre = finetune(tiny_store, probe, tmp_path / "ft_pre", checkpoint=tmp_path / "pt")
    rnd = finetune(tiny_store, probe, tmp_path / "ft_rnd", checkpoint=None)
    assert pre["trainable_parameters"] == rnd["trainable_parameters"] < pre["parameters"]
    assert pre["metrics"]["accuracy"] > rnd["metrics"]["accuracy"]


@pytest.mark.long
def test_cli_pretrain_finetune_cross_sensor(tiny_store, tmp_path, capsys):
    from jaxgeo.cli import main

    desis = tmp_path / "desis.zarr"
    write_dataset(SynthConfig(sensor="desis", n_patches=24, patch_size=16, seed=1), desis)
    argv = [
        "hsi", "pretrain", "--data", str(tiny_store), "--method", "mae", "--backbone",
        "spec-vit-tiny", "--epochs", "1", "--batch-size", "8", "--lr", "1e-3",
        "--warmup-epochs", "0", "--out", str(tmp_path / "pt"), "--plots", str(tmp_path / "p1"),
        "--method-option", "dec_width=16", "--method-option", "dec_depth=1",
        "--method-option", "dec_heads=2",
    ]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["method"] == "mae" and summary["n_bands"] == 202
    assert (tmp_path / "p1" / "embeddings_pca.png").is_file()
    argv = [
        "hsi", "finetune", "--data", str(desis), "--task", "landcover_patch", "--checkpoint",
        str(tmp_path / "pt"), "--mode", "frozen", "--epochs", "1", "--batch-size", "8",
        "--out", str(tmp_path / "ft"), "--plots", str(tmp_path / "p2"),
    ]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["n_bands"] == 235 and summary["backbone"] == "spec-vit-tiny"
    assert 0.0 <= summary["metrics"]["accuracy"] <= 1.0
    assert main(argv) == 2  # refuses to overwrite the run
