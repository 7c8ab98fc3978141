#!/usr/bin/env bash
# Checks a metrics exposition with Prometheus' own linter:
#   promtool_check_test.sh DUMP_BINARY
# runs `DUMP_BINARY --print` and fails when promtool reports anything: it
# exits 1 on a parse error and 3 on a lint problem ("counter metrics should
# have "_total" suffix", "no help text", ...) and prints them on stderr; this
# script also treats any output at all as a failure.
set -uo pipefail

source "$(dirname "$(realpath "$0")")/../../e2e/lib.sh"

if [[ $# -ne 1 ]]; then
  echo "usage: $0 DUMP_BINARY" >&2
  exit 2
fi
dump=$1
promtool=${PROMTOOL:-promtool}
command -v "$promtool" >/dev/null || fail "promtool not found (Debian package 'prometheus', or set PROMTOOL)"
setup_work promtool_check

# promtool accepts empty input, so make sure the linter really bites first.
if printf '# TYPE bad counter\nbad 1\n' | "$promtool" check metrics >"$WORK/selftest.out" 2>&1; then
  fail "promtool accepted a counter without _total and HELP; is it really promtool?"
fi

timeout 30 "$dump" --print >"$WORK/metrics.txt" 2>"$WORK/dump.err" || fail "'$dump --print' failed:
$(cat "$WORK/dump.err")"
grep -q '^# TYPE ' "$WORK/metrics.txt" || fail "'$dump --print' printed no metric families"

timeout 30 "$promtool" check metrics <"$WORK/metrics.txt" >"$WORK/promtool.out" 2>&1
rc=$?
[[ $rc -eq 0 && ! -s "$WORK/promtool.out" ]] || fail "promtool check metrics exited $rc and reported:
$(cat "$WORK/promtool.out")
--- exposition checked ---
$(cat "$WORK/metrics.txt")"
echo "PASS: promtool check metrics found no problems in $(grep -c '^# TYPE ' "$WORK/metrics.txt") families," \
  "$(grep -vc '^#' "$WORK/metrics.txt") samples"
