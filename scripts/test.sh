#!/usr/bin/env bash
# Runs every test: installs what is missing, builds, runs ctest.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
bash "$ROOT/scripts/install-deps.sh"
bash "$ROOT/scripts/build.sh"
cd "${BUILD_DIR:-$ROOT/build}"
ctest --output-on-failure --parallel "$(nproc)" --timeout 600
