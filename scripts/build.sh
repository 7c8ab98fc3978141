#!/usr/bin/env bash
# Configures and builds Refinery into build/ (or $BUILD_DIR).
#   bash scripts/build.sh [CMAKE_ARG...] [--target TARGET...]
# CMake arguments come first (e.g. -DCMAKE_PREFIX_PATH=/path/to/libtorch);
# after --target, only those targets (and what they link) are built: the
# demo builds its three programs, the tests build everything.
# Compiles go through ccache when it is installed (REFINERY_CCACHE=ON).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
CMAKE_ARGS=()
TARGETS=()
while (($#)); do
  if [[ $1 == --target ]]; then
    shift
    TARGETS=("$@")
    break
  fi
  CMAKE_ARGS+=("$1")
  shift
done
GENERATOR=()
command -v ninja >/dev/null && GENERATOR=(-G Ninja)
if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]]; then
  cmake -S "$ROOT" -B "$BUILD_DIR" "${GENERATOR[@]}" -DCMAKE_BUILD_TYPE=Release "${CMAKE_ARGS[@]}"
elif ((${#CMAKE_ARGS[@]})); then
  cmake "$BUILD_DIR" "${CMAKE_ARGS[@]}"
fi
if ((${#TARGETS[@]})); then
  cmake --build "$BUILD_DIR" --parallel "$(nproc)" --target "${TARGETS[@]}"
else
  cmake --build "$BUILD_DIR" --parallel "$(nproc)"
fi
