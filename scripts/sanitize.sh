#!/usr/bin/env bash
# Builds Refinery with sanitizers in a folder of its own and runs tests there.
#
#   bash scripts/sanitize.sh asan          ASan + UBSan: the lane CI runs
#   bash scripts/sanitize.sh tsan          TSan: the server's concurrency tests
#   bash scripts/sanitize.sh asan --all    every target and every test (e2e too)
#
# A lane builds only its test programs and what they link, so CI pays for the
# parsers, the data sets, the index, the job store and the server runtime,
# not for the whole tree. --all is the full run: on 2 cores about 55 minutes
# to build and 37 of tests (e2e limits are 4x longer in these builds).
# Folders: build-asan/ and build-tsan/ (or $SANITIZE_BUILD_DIR).
# Any report fails its test: errors do not recover, and leaks count.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LANE=${1:?usage: sanitize.sh asan|tsan [--all]}
ALL=${2:-}

case $LANE in
  asan)
    FLAGS="address,undefined"
    # What reads client input or the server's files, without LibTorch (but
    # for the data sets' loader): paths, text, images, safetensors, data
    # sets, the index, the job store, metrics and the server runtime. The
    # synthetic data and chart tests run only with --all.
    PROGRAMS=(refinery_base_tests refinery_text_tests refinery_image_tests refinery_safetensors_tests
              refinery_index_tests refinery_data_tests
              refinery_server_metrics_tests refinery_server_runtime_tests refinery_server_store_tests)
    ;;
  tsan)
    FLAGS="thread"
    # What runs on many threads at once with no LibTorch inside: the job
    # store's writers, token checks during reloads, the worker pool, metrics.
    PROGRAMS=(refinery_server_store_tests refinery_server_runtime_tests refinery_server_metrics_tests
              refinery_base_tests)
    ;;
  *) echo "sanitize.sh: unknown lane '$LANE' (asan or tsan)" >&2; exit 2 ;;
esac
if [[ -n $ALL && $ALL != --all ]]; then
  echo "sanitize.sh: unknown option '$ALL' (--all)" >&2
  exit 2
fi

BUILD=${SANITIZE_BUILD_DIR:-$ROOT/build-$LANE}
GENERATOR=()
command -v ninja >/dev/null && GENERATOR=(-G Ninja)
if [[ ! -f $BUILD/CMakeCache.txt ]]; then
  # -O1 -g1: line numbers in the reports at a fraction of full debug info's
  # compile time.
  cmake -S "$ROOT" -B "$BUILD" "${GENERATOR[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" -DREFINERY_SANITIZE="$FLAGS" > /dev/null
fi

SUPP="$ROOT/scripts/sanitizers"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1"
export LSAN_OPTIONS="suppressions=$SUPP/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$SUPP/tsan.supp"

cd "$BUILD"
if [[ $ALL == --all ]]; then
  cmake --build . --parallel "$(nproc)"
  ctest --output-on-failure --parallel "$(nproc)" --timeout 1800
else
  cmake --build . --parallel "$(nproc)" --target refinery_layering_check "${PROGRAMS[@]}"
  LABELS=$(IFS='|'; echo "${PROGRAMS[*]}")
  ctest --output-on-failure --parallel "$(nproc)" --timeout 600 -L "^($LABELS)\$"
fi
