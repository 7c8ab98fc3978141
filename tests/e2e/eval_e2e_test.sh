#!/usr/bin/env bash
# End-to-end test of evaluation with real processes: refineryd evaluates the
# shared tiny CLIP fixture over a suite of a class-folder set and a caption
# set made here, driven by the refinery client. Covers `eval submit` (suite
# file and task flags, --watch, --json), bad specs refused at submit naming
# the item, cancel, a refine job with --eval-suite whose model `models show`
# sets against its base, and `eval compare` (deltas equal to the reports'
# differences; missing evaluations run on demand).
# Usage: eval_e2e_test.sh REFINERYD REFINERY FIXTURE_DIR
set -euo pipefail
[[ $# -eq 3 ]] || { echo "usage: $0 REFINERYD REFINERY FIXTURE_DIR" >&2; exit 2; }
SERVERD=$(realpath "$1")
CLI=$(realpath "$2")
FIX=$(realpath "$3")
source "$(dirname "$(realpath "$0")")/lib.sh"
setup_work refinery-eval-e2e

read -r PORT MPORT < <(free_ports 2)
ADDR=127.0.0.1:$PORT
cli() { "$CLI" --server "$ADDR" --timeout 60 "$@"; }

mkdir -p "$WORK/models" "$WORK/data"
cp "$FIX/tiny.safetensors" "$WORK/models/tiny.safetensors"

# Class folders (3 classes of the fixture's images), a caption set (8 images,
# 2 captions each), a folder with an empty class, one with a fake image, and
# three suites.
python3 - "$FIX/images" "$WORK" <<'PY'
import json, os, shutil, sys
src, work = sys.argv[1], sys.argv[2]
classes = {"astronaut": ["astronaut.png", "rocket.jpg"], "cat": ["chelsea.png", "transparent.png"],
           "coffee_cup": ["coffee.png", "camera.png", "logo.png"]}
for c, files in classes.items():
    os.makedirs(f"{work}/cls/{c}")
    for f in files:
        shutil.copy(f"{src}/{f}", f"{work}/cls/{c}/{f}")
os.makedirs(f"{work}/empty/cat"); os.makedirs(f"{work}/empty/dog")
shutil.copy(f"{src}/chelsea.png", f"{work}/empty/cat/a.png")
os.makedirs(f"{work}/fake/cat")
shutil.copy(f"{src}/chelsea.png", f"{work}/fake/cat/a.png")
open(f"{work}/fake/cat/broken.jpg", "w").write("not a picture")
names = sorted(n for n in os.listdir(src) if n.endswith((".png", ".jpg")))
os.makedirs(f"{work}/caps/images")
coco = {"images": [], "annotations": []}
for i in range(8):
    n = names[i % len(names)]
    f = "img%02d%s" % (i, os.path.splitext(n)[1])
    shutil.copy(f"{src}/{n}", f"{work}/caps/images/{f}")
    coco["images"].append({"id": i, "file_name": f})
    for c in range(2):
        coco["annotations"].append({"id": 2 * i + c, "image_id": i, "caption": "photo %d of %s, take %d" % (i, n.split('.')[0], c)})
json.dump(coco, open(f"{work}/caps/captions.json", "w"))
tasks = [{"name": "objects", "kind": "zeroshot", "data": f"folder:{work}/cls"},
         {"name": "captions", "kind": "retrieval", "data": f"coco:{work}/caps/captions.json:{work}/caps/images"}]
json.dump({"name": "small", "tasks": tasks}, open(f"{work}/suite.json", "w"))
json.dump({"name": "other", "tasks": tasks[:1]}, open(f"{work}/other.json", "w"))
json.dump({"name": "long", "tasks": [dict(tasks[0], name="t%d" % i) for i in range(400)]}, open(f"{work}/long.json", "w"))
PY
CLS="folder:$WORK/cls"

start_refineryd --listen "$ADDR" --metrics-listen "127.0.0.1:$MPORT" --models-dir "$WORK/models" \
  --data-dir "$WORK/data" --data-root "$WORK" --data-root "$FIX" --import-root "$WORK" --export-root "$WORK" \
  --device cpu --threads 2

# --- bad specs are refused at submit, naming the item --------------------------
expect_refused() {  # WHAT CODE MENTION -- eval submit args
  local what=$1 code=$2 mention=$3; shift 4
  if cli eval submit "$@" > "$WORK/out.txt" 2> "$WORK/err.txt"; then fail "$what: accepted"; fi
  grep -q "$code" "$WORK/err.txt" || fail "$what: expected $code, got: $(cat "$WORK/err.txt")"
  grep -qF "$mention" "$WORK/err.txt" || fail "$what: error does not name '$mention': $(cat "$WORK/err.txt")"
  ok "$what: $(head -c 200 "$WORK/err.txt")"
}
expect_refused "missing folder" INVALID_ARGUMENT "$WORK/nowhere" -- --model tiny --task zeroshot --data "folder:$WORK/nowhere"
expect_refused "empty class" INVALID_ARGUMENT "dog" -- --model tiny --task zeroshot --data "folder:$WORK/empty"
expect_refused "unknown data set name" NOT_FOUND "NoSuchSet" -- --model tiny --task zeroshot --data "$CLS" --dataset NoSuchSet
expect_refused "unreadable image" INVALID_ARGUMENT "broken.jpg" -- --model tiny --task zeroshot --data "folder:$WORK/fake"
expect_refused "unknown model" NOT_FOUND "nosuchmodel" -- --model nosuchmodel --suite "$WORK/suite.json"
if cli eval submit --model tiny > /dev/null 2> "$WORK/err.txt"; then fail "eval submit without a suite or task"; fi
grep -q "give --suite FILE" "$WORK/err.txt" || fail "usage: $(cat "$WORK/err.txt")"
[[ $(cli jobs list --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))') == 0 ]] || fail "a refused job was kept"
ok "refused evaluations leave nothing behind"

# --- an eval job from a suite file, watched to its report -----------------------
cli eval submit --model tiny --suite "$WORK/suite.json" --watch > "$WORK/eval.txt" || fail "eval submit --watch: $(cat "$WORK/eval.txt")"
grep -q "suite small on tiny@1" "$WORK/eval.txt" || fail "report header: $(cat "$WORK/eval.txt")"
grep -Eq "^ *objects +7 " "$WORK/eval.txt" || fail "zeroshot row: $(cat "$WORK/eval.txt")"
grep -Eq "^ *captions +8 " "$WORK/eval.txt" || fail "retrieval row: $(cat "$WORK/eval.txt")"
grep -q "task objects (zeroshot, 7 images" "$WORK/eval.txt" || fail "task event: $(cat "$WORK/eval.txt")"
ok "eval submit --suite --watch prints the events and the report"

# One task from flags, --json: the events then the report, one object a line.
cli --json eval submit --model tiny --task zeroshot --data "$CLS" --name objects-80 --templates ImageNet --watch \
  > "$WORK/eval.jsonl" || fail "eval submit --task --json"
python3 - "$WORK/eval.jsonl" <<'PY' || fail "eval --json output: $(tail -2 "$WORK/eval.jsonl")"
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
job, report = lines[0], lines[-1]
assert job["state"] == "QUEUED" and job["kind"] == "JOB_KIND_EVAL", job
assert report["suite"] == "objects-80" and report["model"] == "tiny@1", report
t = report["tasks"][0]
assert t["kind"] == "zeroshot" and t["n"] == 7, t
for k in ("top1", "top5", "mean_per_class_recall"):
    assert 0 <= t["metrics"][k] <= 1, (k, t)
details = json.loads(t["details_json"])
assert details["protocol"] == "template ensemble" and details["templates"] == 80, details
progress = [l["eval_progress"] for l in lines[1:-1] if "eval_progress" in l]
assert progress and progress[-1]["done"] == progress[-1]["total"] == 7 + 3 * 80, progress[-1]
PY
ok "eval submit --task --templates ImageNet --json: 240 prompts, 7 images, report last"

# --- cancel a running evaluation --------------------------------------------------
cli --json eval submit --model tiny --suite "$WORK/long.json" > "$WORK/long.json.out"
LJOB=$(field "$WORK/long.json.out" 'd["id"]')
deadline=$((SECONDS + 60))
until [[ $(cli jobs show "$LJOB" --json | python3 -c 'import json,sys; print(json.load(sys.stdin).get("step", 0))') -gt 0 ]]; do
  ((SECONDS < deadline)) || fail "the long evaluation never progressed"; sleep 0.2
done
cli jobs cancel "$LJOB" > /dev/null || fail "cancel"
if cli jobs watch "$LJOB" > /dev/null 2>&1; then fail "watch of a cancelled evaluation exited 0"; fi
cli jobs show "$LJOB" --json > "$WORK/long.show"
[[ $(field "$WORK/long.show" 'd["state"]') == CANCELLED ]] || fail "not CANCELLED: $(cat "$WORK/long.show")"
ok "cancel stops a running evaluation at item $(field "$WORK/long.show" 'd["step"]') of $(field "$WORK/long.show" 'd["total_steps"]')"

# --- a refine job with --eval-suite; models show sets the result against its base --
cli jobs submit --base tiny --data "coco:$WORK/caps/captions.json:$WORK/caps/images" --batch-size 2 --max-steps 3 \
  --lr 1e-3 --name tiny-r --eval-suite "$WORK/suite.json" --watch > "$WORK/refine.txt" || fail "refine: $(tail "$WORK/refine.txt")"
# tiny@1 has a report of this very suite: the job takes it instead of measuring again.
if grep -q "base tiny@1: task objects" "$WORK/refine.txt"; then fail "the base was evaluated again: $(cat "$WORK/refine.txt")"; fi
grep -q "result tiny-r@1: task captions" "$WORK/refine.txt" || fail "result evaluation events: $(cat "$WORK/refine.txt")"
cli models show tiny-r > "$WORK/show.txt"
grep -q "suite small: base tiny@1 -> refined tiny-r@1" "$WORK/show.txt" || fail "models show: $(cat "$WORK/show.txt")"
grep -Eq "captions +modality_gap .* [+-][0-9.]+$" "$WORK/show.txt" || fail "models show deltas: $(cat "$WORK/show.txt")"
ok "refine --eval-suite: the base's report of the suite is reused; models show tiny-r sets it against tiny@1"

# --- eval compare: deltas are the differences of the two reports ------------------
cli --json eval compare tiny tiny-r > "$WORK/compare.json" || fail "compare"
cli --json models show tiny > "$WORK/a.json"
cli --json models show tiny-r > "$WORK/b.json"
python3 - "$WORK/compare.json" "$WORK/a.json" "$WORK/b.json" <<'PY' || fail "compare deltas: $(cat "$WORK/compare.json")"
import json, sys
c, a, b = (json.load(open(p)) for p in sys.argv[1:4])
assert c["a"] == "tiny@1" and c["b"] == "tiny-r@1", c
assert [s["suite"] for s in c["suites"]] == ["small"], c  # the suite both have
ra = {r["suite"]: r for r in a["lineage"]["evaluations"]}["small"]
rb = {r["suite"]: r for r in b["lineage"]["evaluations"]}["small"]
checked = 0
for t in c["suites"][0]["tasks"]:
    ma = next(x for x in ra["tasks"] if x["name"] == t["name"])["metrics"]
    mb = next(x for x in rb["tasks"] if x["name"] == t["name"])["metrics"]
    for m, v in t["metrics"].items():
        assert v["a"] == ma[m] and v["b"] == mb[m], (m, v)
        assert abs(v["delta"] - (mb[m] - ma[m])) < 1e-12, (m, v)
        checked += 1
assert checked == 13, checked
PY
cli eval compare tiny tiny-r > "$WORK/compare.txt"
grep -Eq "TASK +METRIC +tiny@1 +tiny-r@1 +DELTA" "$WORK/compare.txt" || fail "compare table: $(cat "$WORK/compare.txt")"
ok "eval compare tiny tiny-r: 13 metrics, deltas = b - a"

# (Two retrieval tasks so far: the eval job and the refined result; the base was not evaluated again.)
# Missing evaluations run on demand: neither model has suite "other".
cli models import "$WORK/models/tiny.safetensors" --name tiny-copy > /dev/null
cli eval compare tiny tiny-copy --suite "$WORK/other.json" > "$WORK/compare2.txt" || fail "compare --suite: $(cat "$WORK/compare2.txt")"
grep -q "evaluating tiny@1 over suite 'other'" "$WORK/compare2.txt" || fail "compare --suite ran nothing: $(cat "$WORK/compare2.txt")"
grep -q "evaluating tiny-copy@1 over suite 'other'" "$WORK/compare2.txt" || fail "compare --suite: $(cat "$WORK/compare2.txt")"
grep -Eq "objects +top1 .* \+0\.00 pp$" "$WORK/compare2.txt" || fail "the same weights differ: $(cat "$WORK/compare2.txt")"
if cli eval compare tiny-copy tiny-r > /dev/null 2> "$WORK/err.txt"; then fail "compare with no common suite"; fi
grep -q "no suite has been evaluated on both" "$WORK/err.txt" || fail "compare error: $(cat "$WORK/err.txt")"
ok "eval compare --suite runs the missing evaluations; identical weights have zero deltas"

curl -sf "http://127.0.0.1:$MPORT/metrics" > "$WORK/metrics.txt" || fail "metrics"
grep -q '^refinery_eval_tasks_total{kind="retrieval"} 2' "$WORK/metrics.txt" || fail "eval metrics: $(grep refinery_eval "$WORK/metrics.txt")"
ok "metrics: evaluation tasks by kind"
echo "all eval checks passed"
