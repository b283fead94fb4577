#!/usr/bin/env bash
# The flux-transport measurements of one GPU session (run from the repository root on the GPU
# machine; it has jax but not zarr, which travels as wheels in .whl/). Figures go to $OUT and
# into benchmarks/RESULTS.md by hand, with the card named.
set -u
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="$PWD:/tmp/site" JAXGEO_SHARED_DATA="$PWD/.bench_data" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
timeout 150 python3 benchmarks/sft_vs_hipft.py --steps 672 --repeats 2 | tee "$OUT/sft_vs_hipft.jsonl"
timeout 120 python3 benchmarks/sft_ensemble_scaling.py --n 1,4,16,64,256 --steps 200 | tee "$OUT/ensemble.jsonl"
timeout 100 python3 -m jaxgeo.cli -q sft validate --json | tee "$OUT/validate.json"
