#!/usr/bin/env bash
# scripts/study.sh end to end at its smallest (QUICK=1): the world, the
# pre-training, every sweep through a real refineryd, and a report whose
# tables name every method and whose figures exist.
# Usage: study_smoke_test.sh BUILD_DIR
set -euo pipefail
BUILD=$(realpath "$1")
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
OUT=$(mktemp -d "${TMPDIR:-/tmp}/refinery-study.XXXXXX")
trap 'rm -rf "$OUT"' EXIT
QUICK=1 BUILD_DIR=$BUILD bash "$ROOT/scripts/study.sh" "$OUT" > "$OUT/stdout.txt" 2>&1 || { tail -30 "$OUT/stdout.txt"; exit 1; }
REPORT=$OUT/report.md
for row in "pre-trained tiny (base)" contrastive self-kd hycd-align rafa hycd clip-refine; do
  grep -q "^| $row | [0-9]" "$REPORT" || { echo "FAIL: no main-table row for $row"; exit 1; }
done
grep -q "^## What the numbers show" "$REPORT" || { echo "FAIL: no conclusions"; exit 1; }
missing=0
for fig in $(grep -o '](figures/[^)]*)' "$REPORT" | sed 's/](\(.*\))/\1/'); do
  [[ -s $OUT/$fig ]] || { echo "FAIL: the report shows $fig, which is missing"; missing=1; }
done
[[ -s $OUT/gallery/index.html ]] || { echo "FAIL: no gallery"; missing=1; }
((missing == 0)) || exit 1
echo "ok: study report with $(grep -c '](figures/' "$REPORT") figures in $(grep -o 'in \*\*[0-9.]* minutes' "$REPORT")"
