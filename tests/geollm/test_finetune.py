"""Fine-tuning on a handful of short prompts: shapes, the loss falls, runs are deterministic
and a resumed run is bit for bit the uninterrupted one; LoRA trains only its factors and the
head; and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from jaxgeo.cli import main
from jaxgeo.errors import ConfigError, StoreExistsError
from jaxgeo.geollm.dataset import GeoDataset
from jaxgeo.geollm.finetune import FinetuneConfig, finetune, merge_params, split_trainable

# 16 prompts of ~25 tokens (coordinates only), batches of 8, 3 epochs: 6 steps. The loop
# runs in LoRA mode (checkpoints of a fraction of a MB); full fine-tuning is checked by steps.
CFG = FinetuneConfig(
    train_size=16, variant="coordinates_only", mode="lora", lora_rank=4, epochs=3,
    batch_size=8, lr=3e-3, max_length=64,
)  # fmt: skip


# Trained once: `make test` keeps each test file on one worker (`pytest -n 2 --dist loadfile`).
@pytest.fixture(scope="session")
def runs(small_pop: GeoDataset, tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("ft")
    full = finetune(small_pop, CFG, base / "a", test_limit=8)
    part = finetune(small_pop, CFG, base / "c", test_limit=8, stop_after_epochs=1)
    resumed = finetune(small_pop, CFG, base / "c", test_limit=8, resume=True)
    return {"base": base, "full": full, "part": part, "resumed": resumed}


def _pred(run_dir: Path) -> np.ndarray:
    with np.load(run_dir / "predictions.npz") as f:
        return f["pred"]


def test_summary_shapes_and_falling_loss(runs: dict) -> None:
    s = runs["full"]
    assert s["steps"] == 6 and s["epochs"] == 3 and s["n_train"] == 16 and s["n_test"] == 8
    # LoRA: 2 x 6 layers x (384 x 4 + 4 x 384) factors, and the head's 385
    assert s["trainable_parameters"] == 12 * 2 * 384 * 4 + 385
    # all-MiniLM-L6-v2 has 22,713,216 parameters, 147,840 of them in the pooler (unused)
    assert s["parameters"] == 22_713_216 - 147_840 + 385 + 12 * 2 * 384 * 4
    history = json.loads((runs["base"] / "a" / "history.json").read_text())
    assert history["epoch"] == [1, 2, 3]
    assert np.all(np.diff(history["loss"]) < 0), history["loss"]
    assert history["loss"][-1] < 0.9 * history["loss"][0], history["loss"]
    pred = _pred(runs["base"] / "a")
    assert pred.shape == (8,) and np.isfinite(pred).all()
    assert 0.0 <= s["r2"] <= 1.0


def test_runs_are_deterministic_and_resume_bit_for_bit(runs: dict) -> None:
    # Run c started afresh (1 epoch), stopped, and resumed: the same as run a, bit for bit
    # (so two runs from scratch agree too).
    a, c = _pred(runs["base"] / "a"), _pred(runs["base"] / "c")
    assert runs["part"]["steps"] == 2
    assert runs["resumed"]["steps"] == 6
    np.testing.assert_array_equal(a, c)
    assert runs["resumed"]["final_loss"] == runs["full"]["final_loss"]


def test_full_fine_tuning_steps_lower_the_loss(small_pop: GeoDataset) -> None:
    import jax

    from jaxgeo.geollm.bert import load_pretrained_regressor
    from jaxgeo.geollm.finetune import make_loss, make_optimizer
    from jaxgeo.geollm.tokenizer import tokenize
    from jaxgeo.train import init_train_state, make_train_step

    cfg = FinetuneConfig(train_size=8, batch_size=8, epochs=4, lr=1e-4, warmup_fraction=0.0)
    mdef, params, _ = load_pretrained_regressor(0, seed=1)
    idx = small_pop.train_indices(8)
    tok = tokenize(small_pop.prompts(idx, "coordinates_only"))
    batch = {
        "input_ids": tok.input_ids,
        "attention_mask": tok.attention_mask,
        "y": ((small_pop.label[idx] - 4.95) / 2.87).astype(np.float32),
        "fixed": {},
    }
    tx = make_optimizer(cfg, 4)
    step = jax.jit(make_train_step(make_loss(mdef), tx))
    ts = init_train_state(params, {}, tx)
    losses = []
    for i in range(4):
        ts, metrics = step(ts, batch, jax.random.key(i))
        losses.append(float(metrics["loss"]))
    assert losses[-1] < 0.7 * losses[0], losses
    assert int(ts["step"]) == 4
    emb0 = params["encoder"]["layers"]["3"]["output"]["kernel"]
    assert not np.array_equal(ts["params"]["encoder"]["layers"]["3"]["output"]["kernel"], emb0)


def test_a_used_run_folder_is_refused(small_pop: GeoDataset, runs: dict) -> None:
    with pytest.raises(StoreExistsError):
        finetune(small_pop, CFG, runs["base"] / "a")


def test_lora_split_trains_only_factors_and_head() -> None:
    params = {
        "encoder": {"layers": {"0": {"query": {"kernel": 1, "bias": 2, "lora_a": 3, "lora_b": 4},
                                      "key": {"kernel": 5}}}},
        "head": {"kernel": 6, "bias": 7},
    }  # fmt: skip
    trained, fixed = split_trainable(params, "lora")
    assert trained == {
        "encoder": {"layers": {"0": {"query": {"lora_a": 3, "lora_b": 4}}}},
        "head": {"kernel": 6, "bias": 7},
    }
    assert merge_params(fixed, trained) == params
    assert split_trainable(params, "full") == (params, {})


def test_config_refusals() -> None:
    with pytest.raises(ConfigError, match="mode"):
        FinetuneConfig(mode="qlora")
    with pytest.raises(ConfigError, match="batch_size"):
        FinetuneConfig(train_size=8, batch_size=16)
    with pytest.raises(ConfigError, match="variant"):
        FinetuneConfig(variant="everything")


def test_command_line_make_dataset_and_baselines(tmp_path: Path, capsys) -> None:
    store = tmp_path / "d.zarr"
    args = ["geollm", "make-dataset", "--out", str(store), "--target", "poverty_rate",
            "--n-samples", "40", "--n-test", "10"]  # fmt: skip
    assert main(args) == 0
    made = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert made["n_train"] == 30
    assert main(args) == 2  # refuses to overwrite
    assert "already exists" in json.loads(capsys.readouterr().out.strip())["error"]
    assert main(["geollm", "baselines", str(store), "--sizes", "30,10",
                 "--methods", "knn,xgboost_ft", "--out", str(tmp_path / "bl")]) == 0  # fmt: skip
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(res["r2"]) == {"knn", "xgboost_ft"} and set(res["r2"]["knn"]) == {"30", "10"}
    assert (tmp_path / "bl" / "baselines.json").is_file()


def test_token_buckets_and_shared_programs() -> None:
    """Batches pad to their longest prompt rounded up to the bucket (or to the cap with no
    bucket: one shape for accelerators), and runs that differ only in data, size, variant or
    seed share one compiled program."""
    from jaxgeo.geollm.finetune import _program_key, _width

    mask = np.zeros((3, 256), np.int32)
    mask[0, :40] = 1
    mask[1, :10] = 1
    assert _width(mask, 256, 32) == 64
    assert _width(mask, 48, 32) == 48  # never beyond the cap
    assert _width(mask, 256, None) == 256
    a = _program_key(FinetuneConfig(train_size=100, variant="no_address", seed=3))
    assert a == _program_key(FinetuneConfig(train_size=1000))
    assert a != _program_key(FinetuneConfig(lr=1e-4))
    assert a != _program_key(FinetuneConfig(mode="lora"))
    with pytest.raises(ConfigError, match="token_bucket must be a positive"):
        finetune("unused.zarr", FinetuneConfig(), "unused", token_bucket=-3)
