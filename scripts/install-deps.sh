#!/usr/bin/env bash
# Installs the Debian packages Refinery builds and tests against.
# Idempotent: packages already present are left as they are.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config
  ccache                  # a rebuild of an unchanged tree (a fresh clone) compiles nothing
  libtorch-dev            # LibTorch 1.13 (CPU)
  libopenblas0-pthread    # without it LibTorch's fp32 matmul uses reference BLAS (~28x slower)
  libopenblas0-openmp     # OpenBLAS on LibTorch's OpenMP pool: what Refinery's programs link (2.6x on a small model)
  libopencv-core-dev libopencv-imgcodecs-dev libopencv-imgproc-dev   # image decoding, drawing
  nlohmann-json3-dev libcli11-dev libutf8proc-dev zlib1g-dev
  libplplot-dev plplot-driver-cairo fonts-dejavu-core   # charts (PNG, SVG) and their text
  libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc   # the API
  libfaiss-dev            # vector indexes
  libcpp-httplib-dev libssl-dev   # /metrics and the HTTP API, over HTTP or HTTPS
  libsqlite3-dev          # job store
  libgtest-dev libgmock-dev
  libgloo-dev             # Gloo headers for c10d's CPU process group (data-parallel training)
  prometheus              # promtool and a real Prometheus for the metrics tests
  chromium                # headless browser for the HTML tests (refinery-model compare)
  clang libclang-rt-14-dev   # libFuzzer with ASan + UBSan (fuzz/, scripts/fuzz.sh)
  openssl curl            # certificates and scrapes in the e2e tests
  python3-grpcio python3-protobuf python3-numpy   # the Python client's tests (clients/python)
  python3-yaml python3-jsonschema   # the offline schema check of deploy/k8s
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#PACKAGES[@]} packages are installed"
  exit 0
fi
# One line per step; apt's own output goes to a log, shown only on failure.
SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
LOG=$(mktemp "${TMPDIR:-/tmp}/refinery-install-deps.XXXXXX.log")
step() {
  local what=$1; shift
  local start=$SECONDS
  printf 'install-deps: %s ... ' "$what"
  if "$@" >> "$LOG" 2>&1; then
    echo "done ($((SECONDS - start)) s)"
  else
    echo "FAILED"
    echo "install-deps: the last lines of $LOG:" >&2
    tail -n 20 "$LOG" >&2
    exit 1
  fi
}
echo "install-deps: ${#missing[@]} of ${#PACKAGES[@]} packages missing: ${missing[*]}"
step "updating the package lists" $SUDO apt-get update -q
step "installing ${#missing[@]} package(s)" $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
rm -f "$LOG"
