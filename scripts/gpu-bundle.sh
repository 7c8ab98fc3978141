#!/usr/bin/env bash
# Copies the header-only and source dependencies that a GPU machine (LibTorch,
# CMake and nvcc, but no Debian -dev packages) lacks into .gpu-deps/ (ignored
# by git), so a torch-only build there needs nothing else:
#   cmake -S . -B build-gpu -DREFINERY_TORCH_ONLY=ON \
#     -DCMAKE_PREFIX_PATH="$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)');$PWD/.gpu-deps" \
#     -DREFINERY_GTEST_SOURCE_DIR=$PWD/.gpu-deps/googletest
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$ROOT/.gpu-deps
rm -rf "$OUT" && mkdir -p "$OUT/include"
cp -r /usr/include/nlohmann "$OUT/include/"
cp -r /usr/include/CLI "$OUT/include/"
cp -r /usr/src/googletest "$OUT/googletest"
du -sh "$OUT"
