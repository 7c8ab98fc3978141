#!/usr/bin/env bash
# The demo: installs what is missing, builds, then
#  1. has refinery-model embed the fixture's captions and images and print the
#     best caption for each image;
#  2. runs a CLIP-Refine job on refineryd: the fixture's images with a caption
#     each, progress streamed live, and the modality gap before and after.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FIXTURE=${REFINERY_FIXTURE_DIR:-$ROOT/../shared/fixtures/clip-tiny}
bash "$ROOT/scripts/install-deps.sh"
bash "$ROOT/scripts/build.sh" > "${TMPDIR:-/tmp}/refinery-build.log" 2>&1 || {
  tail -40 "${TMPDIR:-/tmp}/refinery-build.log"; exit 1; }
BUILD=${BUILD_DIR:-$ROOT/build}
TOOL=$BUILD/tools/refinery-model/refinery-model
CHECKPOINT=${1:-$FIXTURE/tiny.safetensors}
echo "== checkpoint: $CHECKPOINT"
[[ $# -eq 0 ]] && echo "   (the fixture CLIP has random weights: expect arbitrary matches; pass your own checkpoint as \$1)"
echo "== best caption per image (of $(python3 -c "import json,sys;print(len(json.load(open(sys.argv[1]))))" "$FIXTURE/texts.json" 2>/dev/null || echo the) captions in texts.json)"
mapfile -t IMAGES < <(ls "$FIXTURE"/images/* | sort)
"$TOOL" match --checkpoint "$CHECKPOINT" --texts "$FIXTURE/texts.json" --images "${IMAGES[@]}"

echo "== a CLIP-Refine job on refineryd"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/refinery-demo.XXXXXX")
SERVER_PID=""
cleanup() {
  if [[ -n $SERVER_PID ]]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/models" "$WORK/set"
ln -s "$(realpath "$CHECKPOINT")" "$WORK/models/base.${CHECKPOINT##*.}"
# One caption per image, from its file name ("a photo of a chelsea").
python3 - "$WORK/set/captions.jsonl" "${IMAGES[@]}" <<'PY'
import json, os, sys
with open(sys.argv[1], "w") as f:
    for path in sys.argv[2:]:
        name = os.path.splitext(os.path.basename(path))[0].replace("_", " ")
        f.write(json.dumps({"image": path, "caption": "a photo of a %s" % name}) + "\n")
PY
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BUILD/server/refineryd" --listen "127.0.0.1:$PORT" --metrics-listen "" --models-dir "$WORK/models" \
  --data-dir "$WORK/data" --device "${REFINERY_DEVICE:-auto}" > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
CLI=("$BUILD/client/refinery" --server "127.0.0.1:$PORT")
for _ in $(seq 100); do "${CLI[@]}" --timeout 2 health > /dev/null 2>&1 && break; sleep 0.3; done
"${CLI[@]}" jobs submit --base base --data "jsonl:$WORK/set/captions.jsonl" --batch-size 4 --epochs 10 \
  --lr 1e-4 --val-fraction 0.2 --eval-every 10 --name demo-refined --json > "$WORK/job.json"
JOB=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["id"])' "$WORK/job.json")
"${CLI[@]}" jobs watch "$JOB" --json > "$WORK/events.jsonl" &
WATCHER=$!
"${CLI[@]}" jobs watch "$JOB" || { tail -20 "$WORK/server.log"; exit 1; }
wait "$WATCHER" || true
python3 - "$WORK/events.jsonl" <<'PY'
import json, sys
evals = [json.loads(l)["eval"] for l in open(sys.argv[1]) if '"eval"' in l]
first, last = evals[0], evals[-1]
print("== validation metrics, before -> after %d steps (lr 1e-4, to show movement on a tiny model)" % last["step"])
for k in ("modality_gap", "modality_gap_l2", "alignment", "uniformity", "val_loss"):
    print("   %-16s %10.5f -> %10.5f" % (k, first["metrics"][k], last["metrics"][k]))
PY
"${CLI[@]}" models show demo-refined
