#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang with ASan + UBSan) into
# build-fuzz/ (or $FUZZ_BUILD_DIR) and runs each for SECONDS (default 10).
# A longer run of one target: bash scripts/fuzz.sh 600 image
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${FUZZ_BUILD_DIR:-$ROOT/build-fuzz}
GENERATOR=()
command -v ninja >/dev/null && GENERATOR=(-G Ninja)
[[ -f $BUILD/CMakeCache.txt ]] || CXX=clang++ cmake -S "$ROOT/fuzz" -B "$BUILD" "${GENERATOR[@]}" > /dev/null
cmake --build "$BUILD" --parallel "$(nproc)"
bash "$ROOT/fuzz/run.sh" "$BUILD" "$@"
