#!/usr/bin/env bash
# The demo: installs what is missing, builds, then has refinery-model embed
# the fixture's captions and images and print the best caption for each image.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FIXTURE=${REFINERY_FIXTURE_DIR:-$ROOT/../shared/fixtures/clip-tiny}
bash "$ROOT/scripts/install-deps.sh"
bash "$ROOT/scripts/build.sh" > "${TMPDIR:-/tmp}/refinery-build.log" 2>&1 || {
  tail -40 "${TMPDIR:-/tmp}/refinery-build.log"; exit 1; }
TOOL=${BUILD_DIR:-$ROOT/build}/tools/refinery-model/refinery-model
CHECKPOINT=${1:-$FIXTURE/tiny.safetensors}
echo "== checkpoint: $CHECKPOINT"
[[ $# -eq 0 ]] && echo "   (the fixture CLIP has random weights: expect arbitrary matches; pass your own checkpoint as \$1)"
echo "== best caption per image (of $(python3 -c "import json,sys;print(len(json.load(open(sys.argv[1]))))" "$FIXTURE/texts.json" 2>/dev/null || echo the) captions in texts.json)"
mapfile -t IMAGES < <(ls "$FIXTURE"/images/* | sort)
"$TOOL" match --checkpoint "$CHECKPOINT" --texts "$FIXTURE/texts.json" --images "${IMAGES[@]}"
