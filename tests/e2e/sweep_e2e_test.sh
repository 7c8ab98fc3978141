#!/usr/bin/env bash
# End-to-end test of sweeps and plots with real processes: refineryd runs a
# 2 x 2 sweep (lambda_rafa x alpha) and a one-axis sweep of the shared tiny
# CLIP fixture, each point evaluated on a suite, driven by the refinery
# client; the result tables and figures are written and are PNGs of the
# stated size; `jobs plot` draws one job's curves and several jobs' together;
# an epochs sweep runs one job and takes the smaller counts on the way;
# a bad grid is refused naming the axis.
# Usage: sweep_e2e_test.sh REFINERYD REFINERY FIXTURE_DIR
set -euo pipefail
[[ $# -eq 3 ]] || { echo "usage: $0 REFINERYD REFINERY FIXTURE_DIR" >&2; exit 2; }
SERVERD=$(realpath "$1")
CLI=$(realpath "$2")
FIX=$(realpath "$3")
source "$(dirname "$(realpath "$0")")/lib.sh"
setup_work refinery-sweep-e2e

read -r PORT MPORT < <(free_ports 2)
ADDR=127.0.0.1:$PORT
cli() { "$CLI" --server "$ADDR" --timeout 60 "$@"; }

mkdir -p "$WORK/models" "$WORK/data"
cp "$FIX/tiny.safetensors" "$WORK/models/tiny.safetensors"
python3 - "$FIX/images" "$WORK" <<'PY'
import json, os, shutil, sys
src, work = sys.argv[1], sys.argv[2]
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
data = f"coco:{work}/caps/captions.json:{work}/caps/images"
json.dump({"name": "r", "tasks": [{"name": "captions", "kind": "retrieval", "data": data}]}, open(f"{work}/suite.json", "w"))
PY
DATA="coco:$WORK/caps/captions.json:$WORK/caps/images"
# Width and height of a PNG from its IHDR chunk.
png_size() { python3 -c 'import struct,sys; b=open(sys.argv[1],"rb").read(24); assert b[:8]==b"\x89PNG\r\n\x1a\n", sys.argv[1]; print("%dx%d" % struct.unpack(">II", b[16:24]))' "$1"; }

start_refineryd --listen "$ADDR" --metrics-listen "127.0.0.1:$MPORT" --models-dir "$WORK/models" \
  --data-dir "$WORK/data" --data-root "$WORK" --data-root "$FIX" --import-root "$WORK" --export-root "$WORK" \
  --device cpu --threads 2

if cli sweep submit --base tiny --data "$DATA" --grid colour=1,2 > /dev/null 2> "$WORK/err.txt"; then fail "a bad grid was accepted"; fi
grep -q "INVALID_ARGUMENT.*'colour'" "$WORK/err.txt" || fail "bad grid: $(cat "$WORK/err.txt")"
ok "a grid over a field JobSpec does not have is refused: $(head -c 160 "$WORK/err.txt")"

# --- a 2 x 2 sweep, watched to its table -----------------------------------------
COMMON=(--base tiny --data "$DATA" --set batch_size=2 --set max_steps=2 --set val_fraction=0.25 --set lr=1e-4
  --eval-suite "$WORK/suite.json")
cli sweep submit "${COMMON[@]}" --grid lambda_rafa=0.5,1 --grid alpha=0.2,0.8 --watch > "$WORK/sweep.txt" \
  || fail "sweep submit --watch: $(tail "$WORK/sweep.txt")"
SWEEP=$(grep -o 'sweep sweep-[0-9a-f]*' "$WORK/sweep.txt" | head -1 | cut -d' ' -f2)
[[ -n $SWEEP ]] || fail "no sweep id in: $(head -3 "$WORK/sweep.txt")"
grep -Eq "^\(base\) +\(base\) +- +tiny@1 " "$WORK/sweep.txt" || fail "no base row: $(tail -8 "$WORK/sweep.txt")"
[[ $(grep -Ec "^(0.5|1) +(0.2|0.8) +SUCCEEDED +tiny-refined-lambda_rafa-" "$WORK/sweep.txt") == 4 ]] \
  || fail "four succeeded rows: $(tail -8 "$WORK/sweep.txt")"
ok "sweep $SWEEP: four jobs, one per point, and the base, in its table"
cli --json sweep show "$SWEEP" > "$WORK/sweep.json"
python3 - "$WORK/sweep.json" <<'PY' || fail "sweep show --json: $(cat "$WORK/sweep.json")"
import json, sys
t = json.load(open(sys.argv[1]))
assert t["axes"] == ["lambda_rafa", "alpha"], t["axes"]
pts = t["points"]
assert [(p["values"]["lambda_rafa"], p["values"]["alpha"]) for p in pts] == [("0.5", "0.2"), ("0.5", "0.8"), ("1", "0.2"), ("1", "0.8")]
for p in pts:
    assert p["state"] == "SUCCEEDED" and p["model"].startswith("tiny-refined-"), p
    for k in ("mean_text_to_image_r1", "mean_image_to_text_r1", "modality_gap"):
        assert k in p["metrics"], (k, p)
assert "modality_gap" in t["base"]["metrics"]
PY
cli sweep plot "$SWEEP" --output "$WORK/fig2" > "$WORK/plot2.txt" || fail "sweep plot"
for m in mean_text_to_image_r1 mean_image_to_text_r1 modality_gap; do
  [[ $(png_size "$WORK/fig2/heatmap-$m.png") == 900x700 ]] || fail "heatmap-$m.png: $(png_size "$WORK/fig2/heatmap-$m.png")"
done
cli sweep list | grep -q "$SWEEP.*4 SUCCEEDED" || fail "sweep list: $(cli sweep list)"
ok "sweep show --json, list, and plot: three 900x700 heatmaps"

# --- a one-axis sweep: metric against value ------------------------------------------
cli sweep submit "${COMMON[@]}" --grid alpha=0.2,0.5,0.8 --name alphas --watch > "$WORK/sweep1.txt" || fail "one-axis sweep"
SWEEP1=$(grep -o 'sweep sweep-[0-9a-f]*' "$WORK/sweep1.txt" | head -1 | cut -d' ' -f2)
cli sweep plot "$SWEEP1" --output "$WORK/fig1" --format svg > /dev/null || fail "one-axis plot"
grep -q "<svg" "$WORK/fig1/line-modality_gap.svg" || fail "line-modality_gap.svg is not SVG"
cli sweep plot "$SWEEP1" --output "$WORK/fig1png" > /dev/null
[[ $(png_size "$WORK/fig1png/line-modality_gap.png") == 900x600 ]] || fail "line chart size"
ok "one-axis sweep: lines of each metric against alpha (SVG and PNG)"
cli sweep submit "${COMMON[@]}" --grid method=hycd,clip-refine --watch > "$WORK/sweepm.txt" || fail "method sweep"
SWEEPM=$(grep -o 'sweep sweep-[0-9a-f]*' "$WORK/sweepm.txt" | head -1 | cut -d' ' -f2)
cli sweep plot "$SWEEPM" --output "$WORK/figm" > /dev/null || fail "method plot"
[[ $(png_size "$WORK/figm/heatmap-modality_gap.png") == 900x360 ]] || fail "a categorical axis gets a one-row heatmap"
ok "a sweep over methods: a one-row heatmap per metric"

# --- an epochs sweep: one run, the smaller counts taken on the way -------------------
EPOCHS_COMMON=(--base tiny --data "$DATA" --set batch_size=2 --set val_fraction=0.25 --set lr=1e-4
  --eval-suite "$WORK/suite.json")
cli sweep submit "${EPOCHS_COMMON[@]}" --grid epochs=1,2,3 --name ep --model-name ep --watch > "$WORK/sweepe.txt" \
  || fail "epochs sweep: $(tail "$WORK/sweepe.txt")"
[[ $(grep -c "^== " "$WORK/sweepe.txt") == 1 ]] || fail "an epochs sweep follows one job: $(grep '^== ' "$WORK/sweepe.txt")"
grep -q "^== epochs=3 (and epochs 1, 2 on the way)" "$WORK/sweepe.txt" || fail "epochs header: $(grep '^== ' "$WORK/sweepe.txt")"
grep -q "epoch 1 ended: model ep-epoch-1@1" "$WORK/sweepe.txt" || fail "no epoch-end event: $(head -20 "$WORK/sweepe.txt")"
SWEEPE=$(grep -o 'sweep sweep-[0-9a-f]*' "$WORK/sweepe.txt" | head -1 | cut -d' ' -f2)
cli --json sweep show "$SWEEPE" > "$WORK/sweepe.json"
python3 - "$WORK/sweepe.json" <<'PY' || fail "epochs sweep show --json: $(cat "$WORK/sweepe.json")"
import json, sys
t = json.load(open(sys.argv[1]))
pts = t["points"]
assert len({p["job_id"] for p in pts}) == 1, pts
assert [p["model"] for p in pts] == ["ep-epoch-1@1", "ep-epoch-2@1", "ep@1"], [p["model"] for p in pts]
assert [p.get("epoch", 0) for p in pts] == [1, 2, 0]
for p in pts:
    assert "modality_gap" in p["metrics"], p
assert len({p["metrics"]["modality_gap"] for p in pts}) == 3, "three different models"
PY
EJOB=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["points"][0]["job_id"])' "$WORK/sweepe.json")
cli jobs show "$EJOB" > "$WORK/ejob.txt"
grep -q "epoch 2 (step 6): model ep-epoch-2@1" "$WORK/ejob.txt" || fail "jobs show lists epoch models: $(cat "$WORK/ejob.txt")"
cli sweep plot "$SWEEPE" --output "$WORK/fige" > /dev/null || fail "epochs plot"
[[ $(png_size "$WORK/fige/line-modality_gap.png") == 900x600 ]] || fail "epochs line chart"
ok "epochs sweep $SWEEPE: one job, models at epochs 1 and 2 and its result, each evaluated, plotted"

# --- jobs plot -------------------------------------------------------------------------
JOBS=($(python3 -c 'import json,sys; print(" ".join(p["job_id"] for p in json.load(open(sys.argv[1]))["points"]))' "$WORK/sweep.json"))
cli jobs plot "${JOBS[0]}" --output "$WORK/curves" > "$WORK/curves.txt" || fail "jobs plot"
for f in losses loss-total loss-rafa loss-hycd lr eval-modality_gap eval-t2i_r1; do
  [[ $(png_size "$WORK/curves/$f.png") == 900x600 ]] || fail "$f.png: $(cat "$WORK/curves.txt")"
done
cli jobs plot "${JOBS[@]}" --output "$WORK/curves4" --width 1200 --height 700 > /dev/null || fail "jobs plot of four jobs"
[[ $(png_size "$WORK/curves4/loss-total.png") == 1200x700 ]] || fail "four-job chart size"
[[ ! -e "$WORK/curves4/losses.png" ]] || fail "several jobs get no combined losses chart"
ok "jobs plot: one job's curves, and four jobs on one chart per quantity"
echo "all sweep checks passed"
