"""The Flax port of all-MiniLM-L6-v2 against a reference made by Hugging Face transformers
(PyTorch) and its pure-Python WordPiece tokenizer (``make_reference.py``)."""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxgeo.errors import FileFormatError, InputError
from jaxgeo.geollm.bert import (
    BertConfig,
    BertEncoder,
    load_bert_params,
    load_pretrained_regressor,
    mean_pool,
)
from jaxgeo.geollm.tokenizer import tokenize
from jaxgeo.train import ModuleDef

REFERENCE = Path(__file__).with_name("reference_minilm.npz")


@pytest.fixture(scope="module")
def reference() -> dict:
    with np.load(REFERENCE) as f:
        return {k: f[k] for k in f.files}


@pytest.fixture(scope="module")
def encoder() -> tuple:
    cfg, params = load_bert_params()
    mdef = ModuleDef(nnx.eval_shape(lambda: BertEncoder(cfg, rngs=nnx.Rngs(0))))
    f = jax.jit(lambda p, i, m: mdef.merge(p, {})(i, m))
    return cfg, params, f


def test_tokenizer_matches_the_reference_wordpiece(reference: dict) -> None:
    tok = tokenize(list(reference["texts"]))
    np.testing.assert_array_equal(tok.input_ids, reference["input_ids"])
    np.testing.assert_array_equal(tok.attention_mask, reference["attention_mask"])
    assert not tok.truncated.any()


def test_tokenizer_truncation_keeps_sep_and_pads() -> None:
    tok = tokenize(["a b c d e f g h", "a"], max_length=5, pad_to=6)
    assert tok.input_ids.shape == (2, 6) and tok.truncated.tolist() == [True, False]
    assert tok.input_ids[0, 4] == 102 and tok.input_ids[1].tolist() == [101, 1037, 102, 0, 0, 0]
    with pytest.raises(InputError, match="pad_to"):
        tokenize(["a b c"], pad_to=2)


def test_embedding_matches_the_pytorch_reference(reference: dict, encoder: tuple) -> None:
    cfg, params, f = encoder
    assert cfg == BertConfig()
    ids, mask = reference["input_ids"], reference["attention_mask"]
    hidden = f(params, ids, mask)
    assert hidden.dtype == jnp.float32 and hidden.shape == (*ids.shape, 384)
    emb = np.asarray(mean_pool(hidden, jnp.asarray(mask)))
    ref = reference["embedding"]
    rel = np.linalg.norm(emb - ref, axis=1) / np.linalg.norm(ref, axis=1)
    assert rel.max() < 1e-5, rel
    np.testing.assert_allclose(np.asarray(hidden[:, 0, :8]), reference["first_hidden"], atol=2e-5)


def test_padding_does_not_change_the_embedding(reference: dict, encoder: tuple) -> None:
    _, params, f = encoder
    ids, mask = reference["input_ids"][1:2], reference["attention_mask"][1:2]
    n = int(mask.sum())
    short = mean_pool(f(params, ids[:, :n], mask[:, :n]), jnp.asarray(mask[:, :n]))
    long = mean_pool(f(params, ids, mask), jnp.asarray(mask))
    np.testing.assert_allclose(np.asarray(short), np.asarray(long), rtol=1e-5, atol=1e-6)


def test_lora_model_starts_as_the_pretrained_one(reference: dict, encoder: tuple) -> None:
    _, enc_params, f = encoder
    ids, mask = reference["input_ids"][:1], reference["attention_mask"][:1]
    base = np.asarray(mean_pool(f(enc_params, ids, mask), jnp.asarray(mask)))
    mdef, params, rest = load_pretrained_regressor(lora_rank=4, seed=0)
    query = params["encoder"]["layers"]["0"]["query"]
    assert query["lora_a"].shape == (384, 4) and not np.any(query["lora_b"])
    embed = jax.jit(lambda p, i, m: mdef.merge(p, rest).embed(i, m))
    np.testing.assert_array_equal(np.asarray(embed(params, ids, mask)), base)


def test_missing_or_wrong_weights_are_refused(tmp_path: Path) -> None:
    with pytest.raises(FileFormatError, match="not found"):
        load_bert_params(tmp_path / "model.safetensors")
    from safetensors.numpy import save_file

    (tmp_path / "config.json").write_text('{"hidden_size": 384, "num_hidden_layers": 1}')
    save_file({"embeddings.word_embeddings.weight": np.zeros((10, 384), np.float32)},
              str(tmp_path / "model.safetensors"))  # fmt: skip
    with pytest.raises(FileFormatError, match="expected shape"):
        load_bert_params(tmp_path / "model.safetensors")
