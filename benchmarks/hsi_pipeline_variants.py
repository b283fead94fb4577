"""Ways of reading a batch of int16 patches from a hyperspectral patch store, side by side.

Variants (all give the same array; checked first):

- ``zarr``: one zarr basic selection per patch (one chunk), the patches of a batch read by a
  pool of threads (the reader before the direct path);
- ``zarr_orthogonal``: one zarr orthogonal selection per batch;
- ``direct``: what :meth:`PatchStore.read_raw` does for its own layout on a local disk: the
  chunk file read and Blosc-decompressed in the pool's threads, bypassing zarr's event loop.

Each with 1, 2 and 4 batches in flight (``PatchStore.batches`` keeps two). One JSON line per
variant; the store is written first if it does not exist (scene generator, one date).

    python benchmarks/hsi_pipeline_variants.py --store /tmp/pb.zarr --patches 128 --batch 32
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np

from jaxgeo.hsi.store import PatchStore
from jaxgeo.hsi.synth import SynthConfig, write_dataset


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, default=Path("/tmp/hsi_pipeline_bench.zarr"))
    ap.add_argument("--patches", type=int, default=128)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--epochs", type=int, default=3)
    args = ap.parse_args()
    if not args.store.exists():
        t = time.perf_counter()
        cfg = SynthConfig(n_patches=args.patches, patch_size=args.size, seed=0, two_dates=False)
        write_dataset(cfg, args.store)
        print(json.dumps({"write_s": round(time.perf_counter() - t, 2)}), flush=True)
    store = PatchStore.open(args.store)
    arr = store._refl
    order = store.indices("train")
    batches = [
        np.random.default_rng(e).permutation(order)[i : i + args.batch]
        for e in range(args.epochs)
        for i in range(0, len(order) - args.batch + 1, args.batch)
    ]
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=min(32, os.cpu_count() or 4))

    def zarr_per_chunk(idx: np.ndarray) -> np.ndarray:
        out = np.empty((len(idx), *arr.shape[1:]), np.int16)

        def one(k: int) -> None:
            out[k] = arr[int(idx[k])]

        list(pool.map(one, range(len(idx))))
        return out

    def zarr_orthogonal(idx: np.ndarray) -> np.ndarray:
        srt = np.argsort(idx)
        got = np.asarray(arr.get_orthogonal_selection((idx[srt],)))
        out = np.empty_like(got)
        out[srt] = got
        return out

    variants: dict[str, Callable[[np.ndarray], np.ndarray]] = {
        "zarr": zarr_per_chunk,
        "zarr_orthogonal": zarr_orthogonal,
        "direct": store.read_raw,
    }
    ref = zarr_per_chunk(batches[0])
    for fn in variants.values():
        np.testing.assert_array_equal(fn(batches[0]), ref)
    for name, fn in variants.items():
        for inflight in (1, 2, 4):
            loader = concurrent.futures.ThreadPoolExecutor(max_workers=inflight)
            pending: deque = deque()
            n = 0
            t = time.perf_counter()
            for b in batches:
                pending.append(loader.submit(fn, b))
                if len(pending) > inflight:
                    n += len(pending.popleft().result())
            while pending:
                n += len(pending.popleft().result())
            rate = n / (time.perf_counter() - t)
            loader.shutdown()
            print(json.dumps({"variant": name, "inflight": inflight, "patches": n,
                              "patches_per_s": round(rate, 1), "cpus": os.cpu_count()}),
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
