# shellcheck shell=bash
# Shared harness for the process-level test scripts; source it, do not run it:
#   source "$(dirname "$(realpath "$0")")/../../e2e/lib.sh"   # path from the script
#
#   setup_work PREFIX    WORK=$(mktemp -d $TMPDIR/PREFIX.XXXXXX), plus an EXIT trap
#                        that runs the script's at_exit function (if defined),
#                        stops a started refineryd and removes WORK (kept, and
#                        named on stderr, when KEEP_TMP=1). INT/TERM exit 1.
#   fail MSG             "FAIL: MSG" on stderr, then the script's on_fail function
#                        (if defined) and the last $LOG_TAIL lines of
#                        $WORK/server.log (if any); exits 1.
#   ok MSG               "ok: MSG" on stdout.
#   free_ports N         N distinct free TCP ports on 127.0.0.1, on one line.
#   start_refineryd ARG...  runs "$SERVERD" ARG... in the background, output
#                        appended to $WORK/server.log, sets SERVER_PID, and waits
#                        up to $START_TIMEOUT_S s until `"$CLI" --server "$ADDR"
#                        --timeout 2 health` succeeds; fails if refineryd exits.
#   stop_refineryd [--kill | --wait S]  SIGTERM, S s (default $STOP_WAIT_S) to
#                        exit, then SIGKILL; or SIGKILL at once. Reaps it, sets
#                        STOPPED_RC to its exit status and clears SERVER_PID;
#                        returns 1 if a SIGTERM had to be followed by SIGKILL.
#   stop_pid PID [S] [NAME]  the same for any child process.
#   st CMD ARG...        tests/e2e/safetensors_check.py: `cosine` and `equal`
#                        checks of safetensors files (see that file).
#   field FILE EXPR      prints the Python EXPR over d, FILE's JSON: 'd["id"]'.
#
# Settings (set before the call that uses them): SERVERD, CLI, ADDR (the
# address refineryd listens on); LOG_TAIL (40), START_TIMEOUT_S (60),
# STOP_WAIT_S (10). Works with and without `set -e`.

E2E_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LOG_TAIL=${LOG_TAIL:-40}
START_TIMEOUT_S=${START_TIMEOUT_S:-60}
STOP_WAIT_S=${STOP_WAIT_S:-10}
WORK=""
SERVER_PID=""
STOPPED_RC=0

setup_work() {
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/$1.XXXXXX")
  trap _e2e_exit EXIT
  trap 'exit 1' INT TERM
}

_e2e_exit() {
  local rc=$?
  set +e
  declare -F at_exit > /dev/null && at_exit
  stop_refineryd
  if [[ ${KEEP_TMP:-0} == 1 ]]; then echo "kept $WORK" >&2; elif [[ -n $WORK ]]; then rm -rf "$WORK"; fi
  exit "$rc"
}

fail() {
  echo "FAIL: $*" >&2
  declare -F on_fail > /dev/null && on_fail
  if [[ -n $WORK && -f $WORK/server.log ]]; then
    echo "--- server log (tail) ---" >&2
    tail -n "$LOG_TAIL" "$WORK/server.log" >&2
  fi
  exit 1
}

ok() { echo "ok: $*"; }

free_ports() {
  python3 - "${1:-1}" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
PY
}

start_refineryd() {
  "$SERVERD" "$@" >> "$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  local deadline=$((SECONDS + START_TIMEOUT_S))
  until "$CLI" --server "$ADDR" --timeout 2 health > /dev/null 2>&1; do
    kill -0 "$SERVER_PID" 2> /dev/null || fail "refineryd exited during start-up"
    ((SECONDS < deadline)) || fail "refineryd not SERVING within $START_TIMEOUT_S s"
    sleep 0.3
  done
}

stop_pid() {
  local pid=$1 wait_s=${2:-$STOP_WAIT_S} name=${3:-process} killed=0 i
  STOPPED_RC=0
  [[ -n $pid ]] || return 0
  if kill -0 "$pid" 2> /dev/null; then
    kill -TERM "$pid" 2> /dev/null || true
    for ((i = 0; i < wait_s * 10; i++)); do
      kill -0 "$pid" 2> /dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2> /dev/null; then
      echo "warning: $name (pid $pid) ignored SIGTERM for $wait_s s; killing it" >&2
      kill -KILL "$pid" 2> /dev/null || true
      killed=1
    fi
  fi
  wait "$pid" 2> /dev/null || STOPPED_RC=$?
  return "$killed"
}

stop_refineryd() {
  local rc=0
  [[ -n $SERVER_PID ]] || return 0
  case ${1:-} in
    --kill)
      kill -KILL "$SERVER_PID" 2> /dev/null || true
      STOPPED_RC=0
      wait "$SERVER_PID" 2> /dev/null || STOPPED_RC=$?
      ;;
    --wait) stop_pid "$SERVER_PID" "$2" refineryd || rc=1 ;;
    *) stop_pid "$SERVER_PID" "$STOP_WAIT_S" refineryd || rc=1 ;;
  esac
  SERVER_PID=""
  return "$rc"
}

st() { python3 "$E2E_DIR/safetensors_check.py" "$@"; }

field() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {}, {"d": d}))' "$@"; }
