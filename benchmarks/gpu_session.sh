#!/usr/bin/env bash
# The measurements of one GPU session (run from the repository root on the GPU machine; it has
# jax but not zarr/orbax, which travel as wheels in .whl/). Figures go to $OUT and into
# benchmarks/RESULTS.md by hand, with the card named. Each part has its own time limit so one
# slow part cannot eat the session.
set -u
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="$PWD:/tmp/site" JAXGEO_SHARED_DATA="$PWD/.bench_data" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
# Flux transport: the full step after this session's kernel changes (regression check), and
# the reverse-mode gradient's cost and memory at 1°.
timeout 100 python3 benchmarks/sft_kernels.py --kernels full_step --steps 200 --repeats 3 \
  | tee "$OUT/sft_kernels.jsonl"
timeout 150 python3 benchmarks/sft_gradient.py --rotations 1 --memory-only-rotations 12 \
  --repeats 2 | tee "$OUT/sft_gradient.jsonl"
# Extra parts appended by the session (location encoders, hyperspectral) follow.
if [ -f benchmarks/gpu_session_extra.sh ]; then bash benchmarks/gpu_session_extra.sh; fi
