#!/usr/bin/env bash
# The demo: installs what is missing, builds, then
#  1. has refinery-model embed the fixture's captions and images and print the
#     best caption for each image;
#  2. on refineryd: generates a synthetic captioned world (make-data shapes),
#     pre-trains a tiny CLIP on it from scratch (or takes CKPT), refines it
#     with CLIP-Refine on differently worded captions, and prints what
#     refining changed: zero-shot accuracy per attribute, retrieval R@k and
#     the modality gap, before and after.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FIXTURE=${REFINERY_FIXTURE_DIR:-$ROOT/../shared/fixtures/clip-tiny}
bash "$ROOT/scripts/install-deps.sh"
# Only the three programs the demo runs are built here; the tests build the rest.
BUILD_LOG="${TMPDIR:-/tmp}/refinery-build.log"
BUILD_START=$SECONDS
echo "== building refinery-model, refineryd and refinery (log: $BUILD_LOG)"
# On a terminal, Ninja's [done/total] counter is shown on one line.
build_progress() {
  if [[ -t 1 ]]; then
    while IFS= read -r line; do
      [[ $line =~ ^\[([0-9]+)/([0-9]+)\] ]] && printf '\r   step %s of %s' "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
    done
    printf '\r\033[K'
  else
    cat > /dev/null
  fi
}
if ! bash "$ROOT/scripts/build.sh" --target refinery-model refineryd refinery 2>&1 | tee "$BUILD_LOG" | build_progress; then
  tail -40 "$BUILD_LOG"
  exit 1
fi
echo "   built in $((SECONDS - BUILD_START)) s"
BUILD=${BUILD_DIR:-$ROOT/build}
TOOL=$BUILD/tools/refinery-model/refinery-model
CHECKPOINT=${1:-$FIXTURE/tiny.safetensors}
echo "== checkpoint: $CHECKPOINT"
[[ $# -eq 0 ]] && echo "   (the fixture CLIP has random weights: expect arbitrary matches; pass your own checkpoint as \$1)"
echo "== best caption per image (of $(python3 -c "import json,sys;print(len(json.load(open(sys.argv[1]))))" "$FIXTURE/texts.json" 2>/dev/null || echo the) captions in texts.json)"
mapfile -t IMAGES < <(ls "$FIXTURE"/images/* | sort)
"$TOOL" match --checkpoint "$CHECKPOINT" --texts "$FIXTURE/texts.json" --images "${IMAGES[@]}"

echo "== CLIP-Refine on refineryd, on a synthetic world"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/refinery-demo.XXXXXX")
SERVER_PID=""
cleanup() {
  if [[ -n $SERVER_PID ]]; then kill -TERM "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$WORK"
}
trap cleanup EXIT
mkdir -p "$WORK/models"
# Drawn shape scenes with captions, class sets and an evaluation suite.
"$TOOL" make-data shapes "$WORK/world" --n 1500 --seed 0 --class-images 6 --retrieval-images 100 \
  --variant test -q > "$WORK/world.txt"
PRETRAIN=$(awk '/^pretrain/ {print $2}' "$WORK/world.txt")
REFINE=$(awk '/^refine/ {print $2}' "$WORK/world.txt")
echo "   $(grep -c '"file_name"' "$WORK/world/pretrain/captions.json") pre-training images, e.g. \"$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["annotations"][0]["caption"])' "$WORK/world/pretrain/captions.json")\""
# Your checkpoint, when given, is registered as "base" from --models-dir.
[[ $# -gt 0 ]] && ln -s "$(realpath "$CHECKPOINT")" "$WORK/models/base.${CHECKPOINT##*.}"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BUILD/server/refineryd" --listen "127.0.0.1:$PORT" --metrics-listen "" --models-dir "$WORK/models" \
  --data-dir "$WORK/data" --data-root "$WORK" --device "${REFINERY_DEVICE:-auto}" > "$WORK/server.log" 2>&1 &
SERVER_PID=$!
CLI=("$BUILD/client/refinery" --server "127.0.0.1:$PORT")
for _ in $(seq 100); do "${CLI[@]}" --timeout 2 health > /dev/null 2>&1 && break; sleep 0.3; done
if [[ $# -eq 0 ]]; then
  echo "== 1. pre-train a tiny CLIP from scratch on it (the CLIP loss; about 30 s on 2 cores)"
  "${CLI[@]}" jobs submit --init random --arch tiny --data "$PRETRAIN" --batch-size 128 --epochs 20 --warmup-steps 20 \
    --name tiny-pretrained --watch > "$WORK/pretrain.txt" || { tail -20 "$WORK/pretrain.txt" "$WORK/server.log"; exit 1; }
  tail -1 "$WORK/pretrain.txt"
  BASE=tiny-pretrained
else
  BASE=base
fi
echo "== 2. refine it with CLIP-Refine (RaFA + HyCD) on differently worded captions, evaluated before and after"
"${CLI[@]}" jobs submit --base "$BASE" --data "$REFINE" --batch-size 64 --epochs 3 --lr 2e-5 \
  --eval-suite "$WORK/world/suite.json" --name demo-refined --watch > "$WORK/refine.txt" \
  || { tail -20 "$WORK/refine.txt" "$WORK/server.log"; exit 1; }
tail -1 "$WORK/refine.txt"
echo "== 3. what refining gained or lost (zero-shot accuracy per attribute, retrieval, modality gap)"
"${CLI[@]}" models show demo-refined | sed -n '/evaluation/,$p' | grep -E "suite |TASK|top1 |_r1 |modality_gap "
