#!/usr/bin/env bash
# The device check for a CUDA machine (LibTorch 2.x from pip, no Debian -dev
# packages): builds the torch-only core against torch's own LibTorch, runs the
# parity tests on the GPU, and benchmarks a ViT-B/32 made with `init`:
# forward passes and CLIP-Refine training steps (samples/s, peak GPU memory).
# Run `scripts/gpu-bundle.sh` here first and carry `.gpu-deps`.
# Writes logs and JSON under ${OUT:-/tmp/gpu-check}.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
TORCH_PREFIX=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader > "$OUT/gpu.txt" 2>&1
cmake -S "$ROOT" -B /tmp/build-gpu -G Ninja -DREFINERY_TORCH_ONLY=ON \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$ROOT/.gpu-deps" \
  -DREFINERY_GTEST_SOURCE_DIR="$ROOT/.gpu-deps/googletest" \
  -DREFINERY_SHARED_DIR="$ROOT/shared" > "$OUT/configure.log" 2>&1 || { tail -30 "$OUT/configure.log"; exit 1; }
/usr/bin/time -v cmake --build /tmp/build-gpu --parallel "$(nproc)" > "$OUT/build.log" 2>&1 || { grep -m20 error "$OUT/build.log"; exit 1; }
grep -E "Elapsed" "$OUT/build.log"
(cd /tmp/build-gpu && REFINERY_TEST_DEVICE=cuda ctest --output-on-failure > "$OUT/ctest.log" 2>&1); tail -3 "$OUT/ctest.log"
TOOL=/tmp/build-gpu/tools/refinery-model/refinery-model
$TOOL init -q --arch ViT-B-32 --out /tmp/b32.safetensors
for args in "--modality matmul --matmul-size 8192" "--modality image --batch 32" "--modality image --batch 256" \
            "--modality text --batch 32" "--modality text --batch 256" \
            "--modality train --batch 32 --precision bf16" "--modality train --batch 256 --precision bf16" \
            "--modality train --batch 256 --precision fp32"; do
  $TOOL bench -q --device cuda --checkpoint /tmp/b32.safetensors $args --seconds 5 --json | tee -a "$OUT/bench.jsonl"
done
