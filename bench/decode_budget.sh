#!/usr/bin/env bash
# refineryd under a burst of 36 MP images, by decode budget: peak RSS and the
# callers' throughput and latency. 8 decode workers, 8 concurrent callers,
# one 6000 x 6000 PNG per call (each decode leases 412 MiB).
#   bash bench/decode_budget.sh [BUILD_DIR=build] [SECONDS=20] [BUDGETS_MB="1024 8192"]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=$(realpath "${1:-$ROOT/build}")
SECONDS_EACH=${2:-20}
BUDGETS=${3:-"1024 8192"}
FIX=${REFINERY_FIXTURE_DIR:-$ROOT/../shared/fixtures/clip-tiny}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 "$ROOT/bench/make_big_png.py" "$WORK/big.png" > /dev/null
PORT=$((20000 + RANDOM % 20000))
for mb in $BUDGETS; do
  mkdir -p "$WORK/data-$mb"
  "$BUILD/server/refineryd" --listen "127.0.0.1:$PORT" --metrics-listen "" --data-dir "$WORK/data-$mb" \
    --models-dir "$FIX" --preprocess-threads 8 --decode-memory-mb "$mb" > "$WORK/log-$mb" 2>&1 &
  pid=$!
  for _ in $(seq 100); do "$BUILD/client/refinery" --server "127.0.0.1:$PORT" health > /dev/null 2>&1 && break; sleep 0.2; done
  "$BUILD/client/refinery" --server "127.0.0.1:$PORT" bench embed --modality image --image "$WORK/big.png" \
    --concurrency 8 --duration "$SECONDS_EACH" --json > "$WORK/bench-$mb.json"
  rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
  kill "$pid"
  wait "$pid" || true
  python3 - "$WORK/bench-$mb.json" "$mb" "$rss_kb" <<'PY'
import json, sys
d, mb, rss = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3])
print(f"--decode-memory-mb {mb:>5}: peak RSS {rss / 1024:6.0f} MiB, {d['calls_per_s']:.2f} calls/s, "
      f"p50 {d['p50_ms'] / 1000:.2f} s, p99 {d['p99_ms'] / 1000:.2f} s, errors {d['errors']}")
PY
done
