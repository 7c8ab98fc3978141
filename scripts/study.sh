#!/usr/bin/env bash
# The study in one command: the paper's experiments in miniature, through
# refineryd and refinery as a user would run them.
#   1. make-data shapes: a synthetic captioned world (pre-train, refine and
#      retrieval sets, class sets in five variants, an evaluation suite);
#   2. pre-trains a tiny CLIP from scratch on it (the CLIP loss);
#   3. post-pre-trains it with every method (a sweep over `method`), a
#      lambda_rafa x lambda_hycd grid (5 x 5), an alpha sweep (0.1 ... 1.0)
#      and an epochs sweep (1, 3, 5, 7, 9: one run, the models taken at the
#      end of those epochs), every model evaluated on the suite;
#   4. writes OUT/report.md: the analog of the seed's Table I (methods x
#      shifted test sets), the main table (mean zero-shot top-1, R@1 both
#      ways, modality gap), the sweeps' figures, the methods' training
#      curves, a gallery of what refining changed, and what the numbers say.
# Usage: bash scripts/study.sh [OUT_DIR]   (SEED=0, BUILD_DIR as build.sh; QUICK=1: a
# smaller world and grid, for a smoke run)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=$(realpath -m "${1:-$ROOT/study}")
SEED=${SEED:-0}
BUILD=${BUILD_DIR:-$ROOT/build}
if [[ ! -x $BUILD/server/refineryd || ! -x $BUILD/client/refinery ]]; then
  bash "$ROOT/scripts/install-deps.sh"
  bash "$ROOT/scripts/build.sh" > "${TMPDIR:-/tmp}/refinery-build.log" 2>&1 || { tail -40 "${TMPDIR:-/tmp}/refinery-build.log"; exit 1; }
fi
TOOL=$BUILD/tools/refinery-model/refinery-model
START=$(date +%s)
mkdir -p "$OUT"
log() { echo "[$(( $(date +%s) - START ))s] $*" | tee -a "$OUT/study.log" >&2; }

# Sizes: the full study fits in 30 minutes on 2 cores.
if [[ ${QUICK:-0} == 1 ]]; then
  N=600; EPOCHS=6; GRID=0.5,1.0; ALPHAS=0.2,0.8; EPOCH_GRID=1,2; PRE_EPOCHS=8; CLASS_IMAGES=4; RETRIEVAL=60
else
  N=3000; EPOCHS=5; GRID=0.2,0.4,0.6,0.8,1.0; ALPHAS=0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1.0; EPOCH_GRID=1,3,5,7,9
  PRE_EPOCHS=30; CLASS_IMAGES=10; RETRIEVAL=200
fi
LR=2e-5      # post-pre-training: 1/25 of the pre-training rate (see the report)
BATCH=128

log "world: $N pre-training images, seed $SEED"
"$TOOL" make-data shapes "$OUT/world" --n "$N" --seed "$SEED" --class-images "$CLASS_IMAGES" \
  --retrieval-images "$RETRIEVAL" -q > "$OUT/world.txt"
PRETRAIN=$(awk '/^pretrain/ {print $2}' "$OUT/world.txt")
REFINE=$(awk '/^refine/ {print $2}' "$OUT/world.txt")
RETRIEVAL_SET=$(awk '/^retrieval/ {print $2}' "$OUT/world.txt")
SUITE=$OUT/world/suite.json

rm -rf "$OUT/server"
mkdir -p "$OUT/server/models" "$OUT/server/data"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
MPORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BUILD/server/refineryd" --listen "127.0.0.1:$PORT" --metrics-listen "127.0.0.1:$MPORT" \
  --models-dir "$OUT/server/models" --data-dir "$OUT/server/data" --data-root "$OUT" --device cpu > "$OUT/server/refineryd.log" 2>&1 &
SERVER_PID=$!
trap 'kill -TERM $SERVER_PID 2>/dev/null; wait $SERVER_PID 2>/dev/null || true' EXIT
cli() { "$BUILD/client/refinery" --server "127.0.0.1:$PORT" "$@"; }
until cli --timeout 2 health > /dev/null 2>&1; do
  kill -0 $SERVER_PID 2>/dev/null || { tail "$OUT/server/refineryd.log"; exit 1; }
  sleep 0.3
done

log "pre-training a tiny CLIP from scratch ($PRE_EPOCHS epochs)"
cli jobs submit --init random --arch tiny --data "$PRETRAIN" --batch-size $BATCH --epochs $PRE_EPOCHS --warmup-steps 50 \
  --seed "$SEED" --eval-every 0 --name tiny-pretrained --eval-suite "$SUITE" --watch > "$OUT/pretrain.txt"
cli --json jobs show "$(grep -o 'job-[0-9a-f]*' "$OUT/pretrain.txt" | head -1)" > "$OUT/pretrain.json"

COMMON=(--base tiny-pretrained --data "$REFINE" --eval-suite "$SUITE" --set batch_size=$BATCH --set lr=$LR
  --set seed="$SEED" --set eval_every=0)
sweep() {  # NAME, then sweep submit arguments
  local name=$1; shift
  log "sweep $name"
  cli sweep submit "${COMMON[@]}" --name "$name" --model-name "$name" "$@" --watch > "$OUT/sweep-$name.txt"
  local id
  id=$(grep -o 'sweep sweep-[0-9a-f]*' "$OUT/sweep-$name.txt" | head -1 | cut -d' ' -f2)
  cli --json sweep show "$id" > "$OUT/sweep-$name.json"
  cli sweep plot "$id" --output "$OUT/figures/$name" > /dev/null
  mkdir -p "$OUT/jobs"
  for job in $(python3 -c 'import json,sys; print(" ".join(dict.fromkeys(p["job_id"] for p in json.load(open(sys.argv[1]))["points"])))' "$OUT/sweep-$name.json"); do
    cli --json jobs show "$job" > "$OUT/jobs/$job.json"
  done
  echo "$id"
}
METHODS=$(sweep methods --grid method=contrastive,self-kd,hycd-align,rafa,hycd,clip-refine --set epochs=$EPOCHS)
sweep lambdas --grid lambda_rafa=$GRID --grid lambda_hycd=$GRID --set epochs=$EPOCHS > /dev/null
sweep alpha --grid alpha=$ALPHAS --set epochs=$EPOCHS > /dev/null
sweep epochs --grid epochs=$EPOCH_GRID > /dev/null
sweep epochs-contrastive --grid epochs=$EPOCH_GRID --set method=contrastive > /dev/null

log "training curves of the methods"
mapfile -t METHOD_JOBS < <(python3 -c 'import json,sys; print("\n".join(p["job_id"] for p in json.load(open(sys.argv[1]))["points"]))' "$OUT/sweep-methods.json")
cli jobs plot "${METHOD_JOBS[@]}" --output "$OUT/figures/curves" > /dev/null

log "gallery: what clip-refine changed in retrieval"
path_of() { cli --json models show "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["path"])'; }
# Named links, so that the gallery labels the models by what they are.
mkdir -p "$OUT/checkpoints"
ln -sfn "$(path_of tiny-pretrained)" "$OUT/checkpoints/pre-trained.safetensors"
ln -sfn "$(path_of methods-method-clip-refine)" "$OUT/checkpoints/clip-refine.safetensors"
"$TOOL" compare --checkpoint "$OUT/checkpoints/pre-trained.safetensors" --checkpoint "$OUT/checkpoints/clip-refine.safetensors" \
  --data "$RETRIEVAL_SET" --output "$OUT/gallery" -q > /dev/null

SECONDS_TOOK=$(( $(date +%s) - START ))
log "report"
python3 "$ROOT/scripts/study_report.py" "$OUT" "$SECONDS_TOOK" "$SEED" "$LR" "$BATCH" "$EPOCHS"
log "done in $SECONDS_TOOK s: $OUT/report.md"
