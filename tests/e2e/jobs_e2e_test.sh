#!/usr/bin/env bash
# End-to-end test of refine jobs with real processes: refineryd trains the
# shared tiny CLIP fixture on a COCO-format caption set made here, driven by
# the refinery client. Covers submit/watch/show/list/cancel/resume/delete, the
# refined model serving at once, bad data specs, and a `kill -9` of the
# server mid-job after which the job resumes and succeeds with its event
# history intact while a watcher reconnects across the restart.
# Usage: jobs_e2e_test.sh REFINERYD REFINERY FIXTURE_DIR
set -euo pipefail
[[ $# -eq 3 ]] || { echo "usage: $0 REFINERYD REFINERY FIXTURE_DIR" >&2; exit 2; }
SERVERD=$(realpath "$1")
CLI=$(realpath "$2")
FIX=$(realpath "$3")
source "$(dirname "$(realpath "$0")")/lib.sh"
setup_work refinery-jobs-e2e
WATCH_PID=""
at_exit() { [[ -n $WATCH_PID ]] && kill -KILL "$WATCH_PID" 2>/dev/null || true; }

read -r PORT MPORT < <(free_ports 2)
ADDR=127.0.0.1:$PORT
cli() { "$CLI" --server "$ADDR" --timeout 60 "$@"; }

mkdir -p "$WORK/models" "$WORK/data" "$WORK/set/images"
cp "$FIX/tiny.safetensors" "$WORK/models/tiny.safetensors"

# A COCO captions file over copies of the fixture's images (12 images, 2
# captions each), and a broken one for the bad-spec checks.
python3 - "$FIX/images" "$WORK/set" <<'PY'
import json, os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
names = sorted(n for n in os.listdir(src) if n.endswith(('.png', '.jpg')))
coco = {"images": [], "annotations": []}
for i in range(12):
    n = names[i % len(names)]
    f = "img%02d%s" % (i, os.path.splitext(n)[1])
    shutil.copy(os.path.join(src, n), os.path.join(dst, "images", f))
    coco["images"].append({"id": i, "file_name": f})
    for c in range(2):
        coco["annotations"].append({"id": 2 * i + c, "image_id": i, "caption": "photo %d of %s, take %d" % (i, n.split('.')[0], c)})
json.dump(coco, open(os.path.join(dst, "captions.json"), "w"))
bad = dict(coco, annotations=coco["annotations"] + [{"id": 999, "image_id": 4242, "caption": "orphan"}])
json.dump(bad, open(os.path.join(dst, "orphan.json"), "w"))
PY
DATA="coco:$WORK/set/captions.json:$WORK/set/images"

# Checks over `jobs watch --json` output: seqs consecutive from FIRST, the
# last state, the step numbers seen.
cat > "$WORK/events.py" <<'PY'
import json, sys
path, first, want_state = sys.argv[1], int(sys.argv[2]), sys.argv[3]
events = [json.loads(l) for l in open(path) if l.strip()]
assert events, "no events"
seqs = [e["seq"] for e in events]
assert seqs == list(range(first, first + len(seqs))), ("seqs not consecutive", seqs)
states = [e["state"]["state"] for e in events if "state" in e]
assert states and states[-1] == want_state, ("states", states)
steps = [e["step"]["step"] for e in events if "step" in e]
for a, b in zip(steps, steps[1:]):
    assert b <= a + 1, ("a step skipped", a, b)
msgs = [e["state"].get("message", "") for e in events if "state" in e]
print(json.dumps({"events": len(events), "last_seq": seqs[-1], "states": states, "steps": steps[-1] if steps else 0,
                  "evals": sum(1 for e in events if "eval" in e), "checkpoints": sum(1 for e in events if "checkpoint" in e),
                  "restarted": any("restarted" in m for m in msgs)}))
PY
SERVER_ARGS=(--listen "$ADDR" --metrics-listen "127.0.0.1:$MPORT" --models-dir "$WORK/models"
  --data-dir "$WORK/data" --data-root "$WORK" --data-root "$FIX" --import-root "$WORK" --export-root "$WORK"
  --device cpu --threads 2)
start_refineryd "${SERVER_ARGS[@]}"

# --- bad data specs are refused at submit, naming the culprit ---------------
expect_refused() {  # WHAT CODE MENTION -- submit args
  local what=$1 code=$2 mention=$3; shift 4
  if cli jobs submit "$@" > "$WORK/out.txt" 2> "$WORK/err.txt"; then fail "$what: accepted"; fi
  grep -q "$code" "$WORK/err.txt" || fail "$what: expected $code, got: $(cat "$WORK/err.txt")"
  grep -qF "$mention" "$WORK/err.txt" || fail "$what: error does not name '$mention': $(cat "$WORK/err.txt")"
  ok "$what: $(head -c 160 "$WORK/err.txt")"
}
expect_refused "missing annotations file" INVALID_ARGUMENT "nope.json" -- --base tiny --data "coco:$WORK/set/nope.json:$WORK/set/images"
expect_refused "annotation of an unknown image" INVALID_ARGUMENT "4242" -- --base tiny --data "coco:$WORK/set/orphan.json:$WORK/set/images"
expect_refused "unknown scheme" INVALID_ARGUMENT "parquet" -- --base tiny --data "parquet:$WORK/set/x"
expect_refused "unknown base model" NOT_FOUND "nosuchmodel" -- --base nosuchmodel --data "$DATA"
expect_refused "batch larger than the set" INVALID_ARGUMENT "batch_size" -- --base tiny --data "$DATA" --batch-size 100
[[ $(cli jobs list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))') == 0 ]] || fail "a refused job was kept"
ok "refused jobs leave nothing behind"

# --- a job runs to the end; its model serves at once --------------------------
cli jobs submit --base tiny --data "$DATA" --batch-size 2 --eval-every 3 --lr 1e-4 --name tiny-e2e \
  --request-id e2e-first --json > "$WORK/submit.json" || fail "submit"
JOB=$(field "$WORK/submit.json" 'd["id"]')
[[ $(field "$WORK/submit.json" 'd["state"]') == QUEUED ]] || fail "a new job is QUEUED: $(cat "$WORK/submit.json")"
[[ $(field "$WORK/submit.json" 'd["total_steps"]') == 5 ]] || fail "11 training images / batch 2 = 5 steps: $(cat "$WORK/submit.json")"
cli jobs submit --base tiny --data "$DATA" --batch-size 2 --request-id e2e-first --json > "$WORK/again.json"
[[ $(field "$WORK/again.json" 'd["id"]') == "$JOB" ]] || fail "a retried submit made a second job"
ok "submit: $JOB, 5 steps; the same request id returns it again"
cli jobs watch "$JOB" --json > "$WORK/watch1.jsonl" || fail "watch of a succeeding job exited non-zero"
SUMMARY=$(python3 "$WORK/events.py" "$WORK/watch1.jsonl" 1 SUCCEEDED) || fail "events: $SUMMARY"
ok "watch --json: $SUMMARY"
python3 - "$WORK/watch1.jsonl" <<'PY' || fail "event contents"
import json, sys
ev = [json.loads(l) for l in open(sys.argv[1])]
steps = [e["step"] for e in ev if "step" in e]
assert [s["step"] for s in steps] == [1, 2, 3, 4, 5], steps
for s in steps:
    for k in ("total_steps", "loss", "loss_rafa", "loss_hycd", "lr", "samples_per_second", "data_seconds", "eta_seconds"):
        assert k in s, (k, s)
    assert abs(s["loss"] - s["loss_rafa"] - s["loss_hycd"]) < 1e-4 * s["loss"], s
evals = [e["eval"] for e in ev if "eval" in e]
assert [e["step"] for e in evals] == [0, 3, 5], evals
for k in ("modality_gap", "modality_gap_l2", "alignment", "uniformity", "t2i_r1", "t2i_r5", "t2i_r10", "i2t_r1", "i2t_r5", "i2t_r10", "val_loss"):
    assert k in evals[-1]["metrics"], k
assert [e["result"]["model"] for e in ev if "result" in e] == ["tiny-e2e@1"]
PY
ok "events: one per step with every field, evaluations at 0/3/5, the result model"
cli jobs show "$JOB" --json > "$WORK/show.json"
[[ $(field "$WORK/show.json" 'd["state"]') == SUCCEEDED && $(field "$WORK/show.json" 'd["result_model"]') == tiny-e2e@1 ]] \
  || fail "show: $(cat "$WORK/show.json")"
cli embed text --model tiny-e2e --json "a photo of a cat" > "$WORK/embed.json" || fail "the refined model does not serve"
cli models show tiny-e2e --json > "$WORK/model.json"
python3 -c '
import json,sys; m=json.load(open(sys.argv[1])); l=m["lineage"]
assert l["base_model"]=="tiny@1" and l["job_id"]==sys.argv[2] and l["method"]=="clip-refine", l
assert "modality_gap" in l["metrics"] and l["hyperparameters"]["batch_size"]=="2", l' "$WORK/model.json" "$JOB" \
  || fail "lineage: $(cat "$WORK/model.json")"
ok "the refined model tiny-e2e@1 serves, with its lineage"

# --- cancel, resume, delete ---------------------------------------------------
cli jobs submit --base tiny --data "$DATA" --batch-size 2 --epochs 500 --checkpoint-every 1000 --json > "$WORK/c.json"
CJOB=$(field "$WORK/c.json" 'd["id"]')
deadline=$((SECONDS + 60))
until [[ $(cli jobs show "$CJOB" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["step"])') -ge 2 ]]; do
  ((SECONDS < deadline)) || fail "the long job never stepped"; sleep 0.3
done
cli jobs cancel "$CJOB" > "$WORK/cancel.txt" || fail "cancel"
grep -Eq "CANCELLING|CANCELLED" "$WORK/cancel.txt" || fail "cancel said: $(cat "$WORK/cancel.txt")"
if cli jobs watch "$CJOB" > "$WORK/cwatch.txt" 2> "$WORK/cwatch.err"; then fail "watch of a cancelled job exited 0"; fi
[[ $(cli jobs show "$CJOB" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])') == CANCELLED ]] || fail "not CANCELLED"
STOPPED=$(cli jobs show "$CJOB" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["step"])')
ok "cancel: CANCELLING then CANCELLED at step $STOPPED; watch exits non-zero"
cli jobs resume "$CJOB" > /dev/null || fail "resume"
deadline=$((SECONDS + 60))
until [[ $(cli jobs show "$CJOB" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["step"])') -gt $STOPPED ]]; do
  ((SECONDS < deadline)) || fail "the resumed job did not continue"; sleep 0.3
done
cli jobs cancel "$CJOB" > /dev/null
cli jobs watch "$CJOB" > /dev/null 2>&1 || true
if cli jobs delete "$JOB" > /dev/null 2>&1; then :; else fail "delete of a finished job"; fi
if cli jobs show "$JOB" > /dev/null 2> "$WORK/err.txt"; then fail "a deleted job is still there"; fi
grep -q NOT_FOUND "$WORK/err.txt" || fail "show of a deleted job: $(cat "$WORK/err.txt")"
ok "resume continues after step $STOPPED; delete removes a finished job"

# --- kill -9 mid-job: it resumes and succeeds, its history intact -------------
cli jobs submit --base tiny --data "$DATA" --batch-size 2 --epochs 8 --checkpoint-every 4 --eval-every 0 --json > "$WORK/k.json"
KJOB=$(field "$WORK/k.json" 'd["id"]')
TOTAL=$(field "$WORK/k.json" 'd["total_steps"]')
"$CLI" --server "$ADDR" jobs watch "$KJOB" --json --reconnect-timeout 120 > "$WORK/kwatch.jsonl" 2> "$WORK/kwatch.err" &
WATCH_PID=$!
deadline=$((SECONDS + 120))
until grep -q '"checkpoint"' "$WORK/kwatch.jsonl" 2>/dev/null; do
  ((SECONDS < deadline)) || fail "no checkpoint within 120 s"; sleep 0.2
done
sleep 0.5
stop_refineryd --kill
BEFORE=$(python3 -c 'import json,sys; print(max(json.loads(l)["seq"] for l in open(sys.argv[1]) if l.strip()))' "$WORK/kwatch.jsonl")
ok "kill -9 of refineryd after event $BEFORE (a checkpoint was written)"
start_refineryd "${SERVER_ARGS[@]}"
wait "$WATCH_PID" || fail "the watcher did not follow the job to SUCCEEDED across the restart: $(tail -3 "$WORK/kwatch.err")"
WATCH_PID=""
SUMMARY=$(python3 "$WORK/events.py" "$WORK/kwatch.jsonl" 1 SUCCEEDED) || fail "watcher events: $SUMMARY"
ok "the watcher reconnected and saw every event once: $SUMMARY"
cli jobs watch "$KJOB" --json > "$WORK/kreplay.jsonl" || fail "replay"
SUMMARY=$(python3 "$WORK/events.py" "$WORK/kreplay.jsonl" 1 SUCCEEDED) || fail "history: $SUMMARY"
python3 -c 'import json,sys; s=json.loads(sys.argv[1]); assert s["restarted"] and s["steps"]==int(sys.argv[2]), s' "$SUMMARY" "$TOTAL" \
  || fail "history after the restart: $SUMMARY"
cmp -s <(python3 -c 'import json,sys; [print(json.loads(l)["seq"]) for l in open(sys.argv[1])]' "$WORK/kwatch.jsonl") \
       <(python3 -c 'import json,sys; [print(json.loads(l)["seq"]) for l in open(sys.argv[1])]' "$WORK/kreplay.jsonl") \
  || fail "the live watcher and the replay disagree"
ok "after kill -9 the job resumed from its checkpoint and succeeded: $SUMMARY"

# --- metrics -------------------------------------------------------------------
curl -sf "http://127.0.0.1:$MPORT/metrics" > "$WORK/metrics.txt" || fail "metrics"
grep -q '^refinery_jobs{state="SUCCEEDED"} 1' "$WORK/metrics.txt" || fail "jobs by state: $(grep refinery_jobs "$WORK/metrics.txt")"
grep -q '^refinery_jobs{state="CANCELLED"} 1' "$WORK/metrics.txt" || fail "cancelled jobs"
ok "metrics: jobs by state"
echo "all job checks passed"
