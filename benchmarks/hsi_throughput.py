"""Pretraining throughput of the hyperspectral backbones, and of the zarr input pipeline alone.

For each backbone (default: Spec-ResNet-50 and Spec-ViT-S on 128 x 128 x 202 EnMAP patches) one
full MoCo-v2 (ResNet) or MAE (ViT) training step is timed: augmentation, forward and backward
of the online network, momentum encoder / decoder, optimiser update, as
``jaxgeo hsi pretrain`` runs it. ``--dtype bfloat16`` computes in bf16 (parameters, optimiser
state and batch statistics stay float32; the inputs and a bf16 copy of the parameters feed
the step). The input pipeline case reads a synthetic patch store written for the purpose
with :meth:`PatchStore.batches` (zarr chunk per patch, decompressed by one reader thread
per core, read ahead in a thread) and reports patches/s without any model: it must exceed the
training rate. ``patches_per_s`` is what ``hsi pretrain`` reads (int16, normalised by the
step on the device); ``host_normalized_patches_per_s`` adds the float32 normalisation on the
host. One JSON line per case on stdout.

    python benchmarks/hsi_throughput.py                       # CPU, float32, batch 4
    python benchmarks/hsi_throughput.py --batch 64 --dtype bfloat16 --steps 20   # GPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxgeo.hsi.backbones import make_backbone
from jaxgeo.hsi.ssl import make_method
from jaxgeo.train import ModuleDef, init_train_state, make_train_step


def _device() -> str:
    d = jax.devices()[0]
    return f"{d.platform}:{getattr(d, 'device_kind', '')}" + (
        f" ({platform.processor() or platform.machine()})" if d.platform == "cpu" else ""
    )


def bench_step(
    backbone: str, method: str, batch: int, size: int, bands: int, dtype: str, steps: int
) -> dict:
    settings = {"queue_size": 65536 - 65536 % batch} if method == "moco" else {}
    m = make_method(method, **settings)

    def factory():
        rngs = nnx.Rngs(0)
        return m.build(make_backbone(backbone, bands, rngs=rngs), rngs)

    net = nnx.eval_shape(factory)
    mdef = ModuleDef(net)

    @jax.jit
    def init():
        module = factory()
        params, rest = ModuleDef.params(module), ModuleDef.rest(module)
        return params, rest

    params, rest = init()
    tx = optax.adamw(1e-4, weight_decay=0.05)
    loss = m.make_loss(mdef)
    cdt = jnp.bfloat16 if dtype == "bfloat16" else jnp.float32
    if cdt == jnp.bfloat16:
        f32_loss = loss

        def loss(p, s, b, k):  # mixed precision: bf16 compute, float32 master weights
            pb = jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16), p)
            value, (state, metrics) = f32_loss(pb, s, b, k)
            state = jax.tree_util.tree_map(lambda new, old: new.astype(old.dtype), state, s)
            return value.astype(jnp.float32), (state, metrics)

    step = jax.jit(make_train_step(loss, tx, m.make_after_update(1000)))
    ts = init_train_state(params, m.init_state(params, rest, jax.random.key(1)), tx)
    x = jax.random.normal(jax.random.key(2), (batch, size, size, bands), cdt)
    b = {"x": x, "x2": x} if method == "moco" else {"x": x}
    t0 = time.perf_counter()
    ts, met = step(ts, b, jax.random.key(0))
    jax.block_until_ready(met["loss"])
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i in range(steps):
        ts, met = step(ts, b, jax.random.key(i + 1))
    jax.block_until_ready(met["loss"])
    dt = (time.perf_counter() - t0) / steps
    n_params = sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(params))
    return {
        "case": "pretrain_step",
        "backbone": backbone,
        "method": method,
        "batch": batch,
        "patch": f"{size}x{size}x{bands}",
        "dtype": dtype,
        "device": _device(),
        "parameters": n_params,
        "compile_s": round(compile_s, 2),
        "step_ms": round(1e3 * dt, 2),
        "patches_per_s": round(batch / dt, 2),
        "loss": float(met["loss"]),
    }


def bench_pipeline(n_patches: int, size: int, batch: int, workdir: Path) -> dict:
    from jaxgeo.hsi.store import PatchStore
    from jaxgeo.hsi.synth import SynthConfig, write_dataset

    path = workdir / "bench.zarr"
    t0 = time.perf_counter()
    write_dataset(SynthConfig(n_patches=n_patches, patch_size=size, seed=0, two_dates=False), path)
    write_s = time.perf_counter() - t0
    store = PatchStore.open(path)
    rates = {}
    for mode in ("raw", "host_normalized"):
        n = 0
        t0 = time.perf_counter()
        for epoch in range(2):
            for b in store.batches(
                "train", batch, seed=0, epoch=epoch, drop_last=False, raw=mode == "raw"
            ):
                n += b["x"].shape[0]
        rates[mode] = n / (time.perf_counter() - t0)
    return {
        "case": "zarr_pipeline",
        "patch": f"{size}x{size}x{store.n_bands}",
        "batch": batch,
        "patches": n,
        "cpus": os.cpu_count(),
        "write_s": round(write_s, 2),
        # raw int16, normalised on the device by the step (what `hsi pretrain` reads)
        "patches_per_s": round(rates["raw"], 2),
        "mb_per_s": round(rates["raw"] * size * size * store.n_bands * 2 / 1e6, 1),
        # float32 normalised on the host (PatchStore.read)
        "host_normalized_patches_per_s": round(rates["host_normalized"], 2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backbones", default="spec-resnet50:moco,spec-vit-s:mae",
                   help="comma-separated BACKBONE:METHOD cases")  # fmt: skip
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--bands", type=int, default=202)
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--pipeline-patches", type=int, default=64, help="0: skip the pipeline case")
    args = p.parse_args(argv)
    for case in args.backbones.split(","):
        if not case:
            continue
        backbone, method = case.split(":")
        row = bench_step(
            backbone, method, args.batch, args.size, args.bands, args.dtype, args.steps
        )
        print(json.dumps(row), flush=True)
    if args.pipeline_patches:
        work = Path(tempfile.mkdtemp(prefix="hsi_bench_"))
        try:
            print(
                json.dumps(
                    bench_pipeline(args.pipeline_patches, args.size, max(args.batch, 16), work)
                ),
                flush=True,
            )
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
