#!/usr/bin/env bash
# Refine jobs on worker processes (`jobs submit --workers 2`): a real
# refineryd starts 2 ranks of refinery-model over c10d (Gloo on loopback).
#   - a 2-worker job that refineryd's kill -9 interrupts resumes at the next
#     start and gives the model of an uninterrupted 2-worker job, and its
#     workers died with the server;
#   - kill -9 of one worker fails the attempt within 30 s, naming the
#     worker; `jobs resume` continues from the last checkpoint and succeeds;
#   - cancel stops both workers with a checkpoint: CANCELLED, none left,
#     also while they are still starting;
#   - a batch that does not divide into the workers is refused at submit.
# Usage: workers_e2e_test.sh REFINERYD REFINERY REFINERY_MODEL FIXTURE_DIR
set -euo pipefail
[[ $# -eq 4 ]] || { echo "usage: $0 REFINERYD REFINERY REFINERY_MODEL FIXTURE_DIR" >&2; exit 2; }
SERVERD=$(realpath "$1")
CLI=$(realpath "$2")
TOOL=$(realpath "$3")
FIX=$(realpath "$4")
source "$(dirname "$(realpath "$0")")/lib.sh"
setup_work refinery-workers-e2e
WATCH_PID=""
at_exit() {
  [[ -n $WATCH_PID ]] && kill -KILL "$WATCH_PID" 2>/dev/null || true
  pkill -KILL -f "$WORK/data/jobs/" 2>/dev/null || true
}
on_fail() { for f in "$WORK"/data/jobs/*/worker-*.log; do [[ -f $f ]] && { echo "--- $f" >&2; tail -5 "$f" >&2; }; done; true; }

read -r PORT MPORT < <(free_ports 2)
ADDR=127.0.0.1:$PORT
cli() { "$CLI" --server "$ADDR" --timeout 60 "$@"; }
mkdir -p "$WORK/models"
cp "$FIX/tiny.safetensors" "$WORK/models/tiny.safetensors"
"$TOOL" make-data shapes "$WORK/shapes" --n 300 --seed 7 -q > /dev/null
DATA=coco:$WORK/shapes/refine/captions.json:$WORK/shapes/refine/images
SERVER_ARGS=(--listen "$ADDR" --metrics-listen "127.0.0.1:$MPORT" --models-dir "$WORK/models" --data-dir "$WORK/data"
  --data-root "$WORK/shapes"
  --device cpu --threads 2)
JOB_ARGS=(--base tiny --data "$DATA" --workers 2 --batch-size 8 --epochs 3 --max-steps 24 --lr 1e-4 --checkpoint-every 4
  --eval-every 0)
start_refineryd "${SERVER_ARGS[@]}"

workers_of() { pgrep -f "$WORK/data/jobs/$1/worker-spec.json" || true; }
state_of() { cli jobs show "$1" --json > "$WORK/show.json" && field "$WORK/show.json" 'd["state"]'; }
wait_state() {  # JOB STATE SECONDS
  local deadline=$((SECONDS + $3)) s
  while :; do
    s=$(state_of "$1")
    [[ $s == "$2" ]] && return 0
    ((SECONDS < deadline)) || fail "job $1 is $s, not $2, after $3 s: $(field "$WORK/show.json" 'd["error"]')"
    sleep 0.3
  done
}
wait_checkpoint() {  # WATCH_FILE: until it shows a checkpoint event
  local deadline=$((SECONDS + 120))
  until grep -q '"checkpoint"' "$1" 2>/dev/null; do
    ((SECONDS < deadline)) || fail "no checkpoint within 120 s"; sleep 0.1
  done
}
model_file() { echo "$WORK/data/models/$1.safetensors"; }  # where a job's result is registered
same_model() {  # A B: every weight within AdamW's rounding bound (see distributed_step_test.sh)
  python3 - "$1" "$2" "$E2E_DIR/safetensors_check.py" <<'PY'
import importlib.util, sys
a, b, check = sys.argv[1:4]
spec = importlib.util.spec_from_file_location("st", check); st = importlib.util.module_from_spec(spec); spec.loader.exec_module(st)
wa, wb = st.read(a), st.read(b)
names = sorted(k for k in wa if k != "__metadata__")
assert names == sorted(k for k in wb if k != "__metadata__"), "different tensors"
d = [abs(p - q) for k in names for p, q in zip(wa[k][1], wb[k][1])]
loose = sum(x > 1e-5 for x in d)
assert max(d) <= 24 * 2 * 1.25 * 1e-4 and loose <= 1e-3 * len(d), (max(d), loose, len(d))
print("%d weights, %d differ by > 1e-5 (max %.2g)" % (len(d), loose, max(d)))
PY
}

# --- an uninterrupted 2-worker job: the reference -----------------------------
cli jobs submit "${JOB_ARGS[@]}" --json > "$WORK/a.json" || fail "submit"
AJOB=$(field "$WORK/a.json" 'd["id"]')
cli jobs watch "$AJOB" --json > "$WORK/a.jsonl" || fail "the 2-worker job did not succeed: $(state_of "$AJOB")"
python3 - "$WORK/a.jsonl" <<'PY' || fail "the 2-worker job's events"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
steps = [e["step"]["step"] for e in ev if "step" in e]
assert steps == list(range(1, 25)), steps
assert sum(1 for e in ev if "checkpoint" in e) == 5, "checkpoints at 4, 8, ..., 20"
assert ev[-1]["state"]["state"] == "SUCCEEDED", ev[-1]
PY
[[ -z $(workers_of "$AJOB") ]] || fail "workers left after the job ended"
grep -q "refinery-model\[rank 0\]: clip-refine: 24 steps of 8 pairs (4 on each of 2 ranks, gloo)" \
  "$WORK/data/jobs/$AJOB/worker-0.log" || fail "worker 0's log does not describe a 2-rank run"
ok "a 2-worker job ran 24 steps of 4 + 4 pairs and succeeded"

# --- kill -9 of refineryd mid-job: the workers die, the job resumes ------------
cli jobs submit "${JOB_ARGS[@]}" --json > "$WORK/b.json"
BJOB=$(field "$WORK/b.json" 'd["id"]')
"$CLI" --server "$ADDR" jobs watch "$BJOB" --json --reconnect-timeout 120 > "$WORK/b.jsonl" 2> "$WORK/b.err" &
WATCH_PID=$!
wait_checkpoint "$WORK/b.jsonl"
[[ -n $(workers_of "$BJOB") ]] || fail "no worker processes while the job runs"
stop_refineryd --kill
deadline=$((SECONDS + 10))
while [[ -n $(workers_of "$BJOB") ]]; do
  ((SECONDS < deadline)) || fail "workers outlived refineryd by 10 s: $(workers_of "$BJOB")"; sleep 0.1
done
ok "kill -9 of refineryd after a checkpoint took its workers with it"
start_refineryd "${SERVER_ARGS[@]}"
wait "$WATCH_PID" || fail "the job did not succeed after the restart: $(tail -3 "$WORK/b.err")"
WATCH_PID=""
R=$(same_model "$(model_file "$AJOB")" "$(model_file "$BJOB")") || fail "the resumed job's model differs: $R"
ok "the job resumed on 2 new workers and equals the uninterrupted one: $R"

# --- kill -9 of one worker: the attempt fails, resume finishes it --------------
cli jobs submit "${JOB_ARGS[@]}" --json > "$WORK/c.json"
CJOB=$(field "$WORK/c.json" 'd["id"]')
"$CLI" --server "$ADDR" jobs watch "$CJOB" --json > "$WORK/c.jsonl" 2> /dev/null &
WATCH_PID=$!
wait_checkpoint "$WORK/c.jsonl"
RANK1=""
for p in $(workers_of "$CJOB"); do
  tr '\0' '\n' < "/proc/$p/environ" 2>/dev/null | grep -qx 'RANK=1' && RANK1=$p
done
[[ -n $RANK1 ]] || fail "no worker with RANK=1"
kill -9 "$RANK1"
killed_at=$SECONDS
wait_state "$CJOB" FAILED 30
ERROR=$(field "$WORK/show.json" 'd["error"]')
[[ $ERROR == *"worker 1 of 2 was killed by signal"* ]] || fail "the error does not name the killed worker: $ERROR"
[[ -z $(workers_of "$CJOB") ]] || fail "worker 0 outlived the failed attempt"
wait "$WATCH_PID" || true
WATCH_PID=""
ok "kill -9 of worker 1: FAILED after $((SECONDS - killed_at)) s: $ERROR"
cli jobs resume "$CJOB" > /dev/null || fail "resume"
cli jobs watch "$CJOB" --json > "$WORK/c2.jsonl" || fail "the resumed job did not succeed"
R=$(same_model "$(model_file "$AJOB")" "$(model_file "$CJOB")") || fail "the resumed job's model differs: $R"
ok "resumed after the lost worker, it succeeded with the uninterrupted job's model: $R"

# --- cancel: both workers stop with a checkpoint ------------------------------
cli jobs submit --base tiny --data "$DATA" --workers 2 --batch-size 8 --epochs 50 --max-steps 400 --checkpoint-every 4 \
  --json > "$WORK/d.json"
DJOB=$(field "$WORK/d.json" 'd["id"]')
"$CLI" --server "$ADDR" jobs watch "$DJOB" --json > "$WORK/d.jsonl" 2> /dev/null &
WATCH_PID=$!
wait_checkpoint "$WORK/d.jsonl"
cli jobs cancel "$DJOB" > /dev/null || fail "cancel"
wait_state "$DJOB" CANCELLED 60
[[ -z $(workers_of "$DJOB") ]] || fail "workers left after cancel"
grep -q "stopped by a signal" "$WORK/data/jobs/$DJOB/worker-1.log" || fail "worker 1 did not stop on the signal"
wait "$WATCH_PID" || true
WATCH_PID=""
ok "cancel stopped both workers with a checkpoint"

# --- cancel while the workers are still starting: CANCELLED, not FAILED -------
cli jobs submit "${JOB_ARGS[@]}" --json > "$WORK/e.json"
EJOB=$(field "$WORK/e.json" 'd["id"]')
deadline=$((SECONDS + 60))
until [[ -n $(workers_of "$EJOB") ]]; do
  ((SECONDS < deadline)) || fail "no workers started within 60 s"; sleep 0.05
done
cli jobs cancel "$EJOB" > /dev/null || fail "cancel"
wait_state "$EJOB" CANCELLED 60
[[ -z $(workers_of "$EJOB") ]] || fail "workers left after an early cancel"
ok "cancel while the workers start up ends CANCELLED with none left"

# --- refused at submit ---------------------------------------------------------
if cli jobs submit --base tiny --data "$DATA" --workers 3 --batch-size 8 > "$WORK/out.txt" 2> "$WORK/err.txt"; then
  fail "--workers 3 with batch 8 was accepted"
fi
grep -q "INVALID_ARGUMENT" "$WORK/err.txt" && grep -q "batch_size 8 does not divide into 3" "$WORK/err.txt" \
  || fail "--workers 3: $(cat "$WORK/err.txt")"
if cli jobs submit --base tiny --data "$DATA" --workers 2 --devices cuda:0 > "$WORK/out.txt" 2> "$WORK/err.txt"; then
  fail "2 workers with 1 device was accepted"
fi
grep -q "give one per worker" "$WORK/err.txt" || fail "--devices: $(cat "$WORK/err.txt")"
ok "a batch that does not divide into the workers, and a device list of the wrong length, are refused"
echo PASS
