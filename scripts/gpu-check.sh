#!/usr/bin/env bash
# The device check for a CUDA machine (LibTorch 2.x from pip, no Debian -dev
# packages): builds the torch-only core against torch's own LibTorch, runs the
# tests with REFINERY_TEST_DEVICE=cuda (parity against the reference, bf16,
# a training step against the CPU's), and benchmarks ViT-B/32 and ViT-L/14
# models made with `init`: load time, first pass, forward throughput per
# precision, CLIP-Refine training steps (samples/s, peak GPU memory).
#
# Here, first: `bash scripts/gpu-bundle.sh` (header-only deps and GoogleTest
# into .gpu-deps/) and a copy of the fixtures in shared/ (both ignored by
# git; carry them). There: `bash scripts/gpu-check.sh [SECONDS_BUDGET]`.
# Every step has a time limit and the script goes on past a failed one, so
# one run reports all it can. Logs and bench.jsonl go to ${OUT:-/tmp/gpu-check}.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-/tmp/gpu-check}
BUILD=${BUILD:-/tmp/build-gpu}
BUDGET=${1:-540}
mkdir -p "$OUT"
SHARED="$ROOT/shared"
[[ -d "$SHARED/fixtures/clip-tiny" ]] || SHARED="$ROOT/../shared"
left() { echo $((BUDGET - SECONDS)); }
step() {  # step NAME LIMIT_S COMMAND...: runs COMMAND under the smaller of LIMIT_S and the time left
  local name=$1 limit=$2; shift 2
  local l; l=$(left); ((l < limit)) && limit=$l
  if ((limit < 5)); then echo "== $name: skipped, no time left" >&2; return 1; fi
  local t0=$SECONDS
  timeout "$limit" "$@"; local rc=$?
  echo "== $name: rc $rc in $((SECONDS - t0)) s" >&2
  return $rc
}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))'
  nproc
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
TORCH_PREFIX=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')
TORCH_INCLUDE=$(python3 -c 'import torch, os; print(os.path.join(os.path.dirname(torch.__file__), "include"))')
echo "gloo headers in torch: $(ls -d "$TORCH_INCLUDE/gloo" 2>/dev/null || echo none)" | tee -a "$OUT/machine.txt"

step configure 120 cmake -S "$ROOT" -B "$BUILD" -G Ninja -DREFINERY_TORCH_ONLY=ON -DREFINERY_CCACHE=OFF \
  -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$ROOT/.gpu-deps" \
  -DREFINERY_GTEST_SOURCE_DIR="$ROOT/.gpu-deps/googletest" \
  -DREFINERY_SHARED_DIR="$SHARED" > "$OUT/configure.log" 2>&1 || { tail -40 "$OUT/configure.log"; exit 1; }
grep -E "LibTorch|Gloo|NCCL|CUDA" "$OUT/configure.log" | head -10
# -k 0: every error in one run; whatever built is still tested and benchmarked.
step build 360 cmake --build "$BUILD" --parallel "$(nproc)" -- -k 0 > "$OUT/build.log" 2>&1 ||
  grep -E -m40 "error|Error" "$OUT/build.log"
grep -c "warning:" "$OUT/build.log" | sed 's/^/compiler warnings: /'

TOOL=$BUILD/tools/refinery-model/refinery-model
bench() {  # bench NAME ARGS...: one JSON line (with its name) to bench.jsonl, a failure's message to bench.log
  local name=$1; shift
  local line
  if line=$(step "bench $name" 90 "$TOOL" bench -q --device cuda "$@" --json 2>> "$OUT/bench.log"); then
    echo "{\"name\": \"$name\", ${line#\{}" | tee -a "$OUT/bench.jsonl"
  else
    echo "bench $name failed: $(tail -2 "$OUT/bench.log")"
  fi
}
if [[ -x "$TOOL" ]]; then
  step "init ViT-B-32" 60 "$TOOL" init -q --arch ViT-B-32 --out /tmp/b32.safetensors
  bench matmul-8192 --modality matmul --matmul-size 8192 --seconds 3
  for m in image text; do
    for b in 32 256; do
      for p in fp32 bf16; do
        bench "b32-$m-$b-$p" --checkpoint /tmp/b32.safetensors --modality $m --batch $b --precision $p --seconds 3
      done
    done
  done
  # int8 is refused on a GPU, saying why.
  "$TOOL" bench -q --device cuda --checkpoint /tmp/b32.safetensors --modality image --precision int8 --json \
    > /dev/null 2> "$OUT/int8.log"; echo "int8 on cuda: rc $? $(cat "$OUT/int8.log")"
  bench b32-train-32-bf16 --checkpoint /tmp/b32.safetensors --modality train --batch 32 --precision bf16 --seconds 3
  bench b32-train-256-bf16 --checkpoint /tmp/b32.safetensors --modality train --batch 256 --precision bf16 --seconds 3
  bench b32-train-256-fp32 --checkpoint /tmp/b32.safetensors --modality train --batch 256 --precision fp32 --seconds 3
fi

(cd "$BUILD" && step ctest 150 env REFINERY_TEST_DEVICE=cuda ctest --output-on-failure --parallel 4 --timeout 120 \
  > "$OUT/ctest.log" 2>&1); tail -4 "$OUT/ctest.log"
grep -E "^\[ (bf16|cuda)" -r "$BUILD/Testing/Temporary/LastTest.log" 2>/dev/null | head -8

if [[ -x "$TOOL" ]]; then
  step "init ViT-L-14" 90 "$TOOL" init -q --arch ViT-L-14 --out /tmp/l14.safetensors
  for m in image text; do
    for p in fp32 bf16; do
      bench "l14-$m-256-$p" --checkpoint /tmp/l14.safetensors --modality $m --batch 256 --precision $p --seconds 3
    done
  done
fi

# NCCL: pip's torch links it, its header comes in the nvidia-nccl wheel. The
# collectives' source compiled against it (a second tree, that one target).
NCCL_INCLUDE_DIR=$(python3 -c 'import nvidia.nccl, os; print(os.path.join(list(nvidia.nccl.__path__)[0], "include"))' 2>/dev/null)
if [[ -n "$NCCL_INCLUDE_DIR" && -f "$NCCL_INCLUDE_DIR/nccl.h" ]]; then
  export NCCL_INCLUDE_DIR
  step "configure with NCCL" 60 cmake -S "$ROOT" -B "$BUILD-nccl" -G Ninja -DREFINERY_TORCH_ONLY=ON -DREFINERY_CCACHE=OFF \
    -DREFINERY_BUILD_TESTS=OFF -DCMAKE_PREFIX_PATH="$TORCH_PREFIX;$ROOT/.gpu-deps" -DREFINERY_SHARED_DIR="$SHARED" \
    > "$OUT/nccl.log" 2>&1 && grep -E "NCCL" "$OUT/nccl.log"
  step "build refinery_distributed with NCCL" 120 cmake --build "$BUILD-nccl" --parallel "$(nproc)" \
    --target refinery_distributed >> "$OUT/nccl.log" 2>&1 || grep -E -m20 "error" "$OUT/nccl.log"
else
  echo "no nccl.h in the nvidia-nccl wheel"
fi
echo "done in $SECONDS s"
