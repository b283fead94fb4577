"""jaxgeo.agb.run and the ``jaxgeo agb`` commands: documented parameter counts, frozen
encoder untouched by training, resumed run == uninterrupted run, summaries and plots."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from flax import nnx

from jaxgeo.agb.models import ModelConfig, make_model
from jaxgeo.agb.run import (
    PretrainConfig,
    TrainConfig,
    init_model,
    load_encoder,
    load_model,
    pretrain,
    split_trainable,
    train,
)
from jaxgeo.cli import main
from jaxgeo.errors import ConfigError, StoreExistsError
from jaxgeo.train import count_params, split_module


def _params(config: ModelConfig) -> dict:
    return split_module(nnx.eval_shape(lambda: make_model(config, rngs=nnx.Rngs(0))))[1]


def test_parameter_counts_as_documented():
    # docs/agb.md: frozen Swin-B + single-conv decoder trains 589,888 parameters, the U-Net
    # (width 32) 7,763,905: 13x fewer (the study: 0.6 M vs 7.8 M).
    frozen = _params(ModelConfig("frozen", "swin-b"))
    trained, fixed = split_trainable(frozen, "frozen")
    assert count_params(trained) == 1024 * 9 * 64 + 64 == 589_888
    assert count_params(fixed) == 86_749_368
    unet = _params(ModelConfig("unet", unet_base=32))
    assert count_params(split_trainable(unet, "unet")[0]) == 7_763_905
    assert count_params(unet) / count_params(trained) > 13
    assert count_params(split_trainable(frozen, "finetune")[0]) == 589_888 + 86_749_368
    # The CPU defaults.
    micro = split_trainable(_params(ModelConfig("frozen")), "frozen")[0]
    assert count_params(micro) == 256 * 9 * 64 + 64 == 147_520
    assert count_params(_params(ModelConfig("unet"))) == 1_943_009


def test_config_validation():
    with pytest.raises(ConfigError, match="model.kind"):
        ModelConfig(kind="linear")
    with pytest.raises(ConfigError, match="multiple of 16"):
        TrainConfig(model=ModelConfig("unet", unet_levels=4), tile=40)
    with pytest.raises(ConfigError, match="region"):
        TrainConfig(region="amazon")
    with pytest.raises(ConfigError, match="mask_patch"):
        PretrainConfig(crop=32, mask_patch=12)


_PRE = PretrainConfig(
    encoder="swin-nano",
    crop=32,
    crops_per_epoch=8,
    regions=("s2",),
    bigearthnet=False,
    epochs=1,
    batch_size=4,
    mask_patch=8,
)
_TRAIN = TrainConfig(
    model=ModelConfig("frozen", "swin-nano"),
    tile=32,
    epochs=2,
    batch_size=16,
    n_tracks=1,
    warmup_epochs=0,
)


def _leaves_equal(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(
        np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb, strict=True)
    )


def test_frozen_encoder_is_unchanged_by_training_and_cli_summary(tmp_path, capsys):
    out = tmp_path / "frozen"
    argv = [
        "-q", "agb", "train", "--model", "frozen", "--encoder", "swin-nano", "--tile", "32",
        "--epochs", "2", "--batch-size", "16", "--n-tracks", "1", "--warmup-epochs", "0",
        "--out", str(out), "--plots", str(tmp_path / "plots"),
    ]  # fmt: skip
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["model"] == "frozen" and summary["epochs"] == 2
    m = summary["metrics"]
    assert m["n"] > 0 and m["rmse"] > 0
    assert {"rmse_0_100", "rmse_100_200", "rmse_200_300", "dense_rmse"} <= set(m)
    params, _, _ = load_model(out)
    start, _ = init_model(_TRAIN.model, _TRAIN.seed)
    assert _leaves_equal(params["encoder"], start["encoder"])  # bit for bit
    assert not _leaves_equal(params["decoder"], start["decoder"])
    assert summary["trainable_parameters"] == count_params(params["decoder"])
    assert summary["trainable_parameters"] < summary["parameters"]
    names = sorted(p.rsplit("/", 1)[-1] for p in summary["plots"])
    assert names == ["loss_frozen_s2.png", "map_frozen_s2.png", "scatter_frozen_s2.png"]
    assert all((tmp_path / "plots" / n).stat().st_size > 10_000 for n in names)
    # The run folder is not silently replaced.
    with pytest.raises(StoreExistsError):
        train(_TRAIN, out)


def test_frozen_loss_has_no_gradient_into_the_encoder():
    from jaxgeo.agb.run import make_loss
    from jaxgeo.train import ModuleDef

    model = nnx.eval_shape(lambda: make_model(_TRAIN.model, rngs=nnx.Rngs(0)))
    mdef = ModuleDef(model)
    params, rest = init_model(_TRAIN.model, 0)
    rng = np.random.default_rng(0)
    y = np.where(rng.uniform(size=(2, 32, 32)) < 0.05, 120.0, -1.0).astype(np.float32)
    batch = {"x": rng.standard_normal((2, 32, 32, 6)).astype(np.float32), "y": y}
    loss = make_loss(mdef)
    grads = jax.jit(jax.grad(lambda p: loss(p, {"fixed": {}, "rest": rest}, batch, None)[0]))(
        params
    )
    assert all(float(np.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads["encoder"]))
    assert any(float(np.abs(g).max()) > 0.0 for g in jax.tree.leaves(grads["decoder"]))


def test_resumed_run_equals_uninterrupted_run(tmp_path):
    full = train(_TRAIN, tmp_path / "full")
    part = train(_TRAIN, tmp_path / "part", stop_after_epochs=1)
    assert part["epochs"] == 1 and not part["finished"]
    resumed = train(_TRAIN, tmp_path / "part", resume=True)
    assert resumed["epochs"] == 2 and resumed["finished"]
    pa, ra, _ = load_model(tmp_path / "full")
    pb, rb, _ = load_model(tmp_path / "part")
    assert _leaves_equal(pa, pb) and _leaves_equal(ra, rb)
    assert full["metrics"] == resumed["metrics"]
    ha = json.loads((tmp_path / "full" / "history.json").read_text())
    hb = json.loads((tmp_path / "part" / "history.json").read_text())
    assert ha == hb
    with pytest.raises(ConfigError, match="other settings"):
        train(TrainConfig(**{**_TRAIN.__dict__, "lr": 0.5}), tmp_path / "part", resume=True)


@pytest.mark.long
def test_simmim_pretraining_feeds_a_frozen_encoder(tmp_path):
    pre = PretrainConfig(
        encoder="swin-nano", crop=32, crops_per_epoch=8, regions=("s2",), bigearthnet=False,
        epochs=2, batch_size=4, mask_patch=8,
    )  # fmt: skip
    s = pretrain(pre, tmp_path / "pre", plots=tmp_path / "plots")
    assert s["finished"] and np.isfinite(s["final_loss"])
    train(_TRAIN, tmp_path / "fr", checkpoint=tmp_path / "pre")
    params, _, _ = load_model(tmp_path / "fr")
    enc, _, _ = load_encoder(tmp_path / "pre")
    assert _leaves_equal(params["encoder"], enc)


@pytest.mark.long
def test_finetune_unet_upernet_and_transfer_learn(tmp_path):
    """All kinds train (loss falls) and a model transfers to the other region."""
    base = dict(tile=32, epochs=3, batch_size=8, n_tracks=2, warmup_epochs=0)
    for model in (
        ModelConfig("finetune", "swin-nano"),
        ModelConfig("unet", unet_base=4, unet_levels=2),
        ModelConfig("frozen", "swin-nano", decoder="upernet", upernet_width=16),
    ):
        cfg = TrainConfig(model=model, eval_regions=("l8",), **base)
        s = train(cfg, tmp_path / model.kind / model.decoder)
        hist = json.loads((tmp_path / model.kind / model.decoder / "history.json").read_text())
        assert hist["loss"][-1] < hist["loss"][0]
        assert s["transfer"]["l8"]["n"] > 0
    # Fine-tune on l8 from the s2 U-Net.
    cfg = TrainConfig(model=ModelConfig("unet", unet_base=4, unet_levels=2), region="l8", **base)
    s = train(cfg, tmp_path / "l8", init_from=tmp_path / "unet" / "conv")
    assert s["init_from"] is not None and s["finished"]
