#!/usr/bin/env bash
# Checks a metrics exposition with Prometheus' own linter:
#   promtool_check_test.sh DUMP_BINARY
# runs `DUMP_BINARY --print` and fails when promtool reports anything: it
# exits 1 on a parse error and 3 on a lint problem ("counter metrics should
# have "_total" suffix", "no help text", ...) and prints them on stderr; this
# script also treats any output at all as a failure.
set -uo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 DUMP_BINARY" >&2
  exit 2
fi
dump=$1
promtool=${PROMTOOL:-promtool}
if ! command -v "$promtool" >/dev/null; then
  echo "FAIL: promtool not found (Debian package 'prometheus', or set PROMTOOL)" >&2
  exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/promtool_check.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# promtool accepts empty input, so make sure the linter really bites first.
printf '# TYPE bad counter\nbad 1\n' | "$promtool" check metrics >"$tmp/selftest.out" 2>&1
if [[ $? -eq 0 ]]; then
  echo "FAIL: promtool accepted a counter without _total and HELP; is it really promtool?" >&2
  exit 1
fi

if ! timeout 30 "$dump" --print >"$tmp/metrics.txt" 2>"$tmp/dump.err"; then
  echo "FAIL: '$dump --print' failed:" >&2
  cat "$tmp/dump.err" >&2
  exit 1
fi
if ! grep -q '^# TYPE ' "$tmp/metrics.txt"; then
  echo "FAIL: '$dump --print' printed no metric families" >&2
  exit 1
fi

timeout 30 "$promtool" check metrics <"$tmp/metrics.txt" >"$tmp/promtool.out" 2>&1
rc=$?
if [[ $rc -ne 0 || -s "$tmp/promtool.out" ]]; then
  echo "FAIL: promtool check metrics exited $rc and reported:" >&2
  cat "$tmp/promtool.out" >&2
  echo "--- exposition checked ---" >&2
  cat "$tmp/metrics.txt" >&2
  exit 1
fi
echo "PASS: promtool check metrics found no problems in $(grep -c '^# TYPE ' "$tmp/metrics.txt") families," \
  "$(grep -vc '^#' "$tmp/metrics.txt") samples"
