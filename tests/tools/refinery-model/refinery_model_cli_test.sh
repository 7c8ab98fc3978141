#!/usr/bin/env bash
# End-to-end test of the refinery-model command line: a real process on the
# shared fixture, checked the way a user would check it.
# Usage: refinery_model_cli_test.sh REFINERY_MODEL FIXTURE_DIR
set -euo pipefail
TOOL=$1
FIX=$2
source "$(dirname "$(realpath "$0")")/../../e2e/lib.sh"
setup_work refinery-model-cli

echo "== info on every checkpoint form"
for form in tiny.jit.pt tiny.state_dict.pt tiny.safetensors tiny-hf; do
  "$TOOL" info "$FIX/$form" > "$WORK/info.json" 2>/dev/null
  python3 -c "import json,sys; j=json.load(open(sys.argv[1])); assert j['architecture']['embed_dim']==32 and j['architecture']['vision_cfg']['width']==64, j" "$WORK/info.json" \
    || fail "info $form"
done

echo "== tokenize matches the reference tokens"
"$TOOL" tokenize --texts "$FIX/texts.json" --output "$WORK/tokens.safetensors"
st equal "$WORK/tokens.safetensors" tokens "$FIX/reference.safetensors" tokens || fail "tokens differ from the reference"
"$TOOL" tokenize "a photo of a cat" | grep -q '^\[49406,' || fail "tokenize TEXT prints rows"

echo "== embed texts and images through the whole pipeline"
"$TOOL" embed -q --checkpoint "$FIX/tiny.jit.pt" --texts "$FIX/texts.json" --output "$WORK/text.safetensors"
st cosine "$WORK/text.safetensors" embeddings "$FIX/reference.safetensors" text_features 0.99999 || fail "text features"
mapfile -t IMAGES < <(ls "$FIX"/images/* | sort)
"$TOOL" embed -q --checkpoint "$FIX/tiny-hf" --images "${IMAGES[@]}" --output "$WORK/image.safetensors"
st cosine "$WORK/image.safetensors" embeddings "$FIX/reference.safetensors" image_features 0.9995 || fail "image features"
echo "== embed in bf16 (autocast): close to the reference, or refused on a CPU without native bf16"
if grep -qw -e avx512_bf16 -e amx_bf16 /proc/cpuinfo; then
  "$TOOL" embed -q --checkpoint "$FIX/tiny.safetensors" --precision bf16 --texts "$FIX/texts.json" --output "$WORK/text16.safetensors"
  r=$(st cosine "$WORK/text16.safetensors" embeddings "$FIX/reference.safetensors" text_features 0.99) || fail "bf16 text features: $r"
  "$TOOL" embed -q --checkpoint "$FIX/tiny.safetensors" --precision bf16 --images "${IMAGES[@]}" --output "$WORK/image16.safetensors"
  r2=$(st cosine "$WORK/image16.safetensors" embeddings "$FIX/reference.safetensors" image_features 0.99) || fail "bf16 image features: $r2"
  echo "ok: bf16 texts $r; images $r2"
else
  ! "$TOOL" embed -q --checkpoint "$FIX/tiny.safetensors" --precision bf16 --texts "$FIX/texts.json" 2> "$WORK/err.txt" \
    || fail "bf16 accepted on a CPU without native bf16"
  grep -q "AVX512-BF16" "$WORK/err.txt" || fail "bf16 refusal does not say why: $(cat "$WORK/err.txt")"
fi
echo "== embed in int8 (dynamic quantization): close to the reference, or refused on a CPU without VNNI"
if grep -qw -e avx512_vnni -e avx_vnni -e amx_int8 /proc/cpuinfo; then
  "$TOOL" embed -q --checkpoint "$FIX/tiny.safetensors" --precision int8 --texts "$FIX/texts.json" --output "$WORK/text8.safetensors"
  r=$(st cosine "$WORK/text8.safetensors" embeddings "$FIX/reference.safetensors" text_features 0.995) || fail "int8 text features: $r"
  "$TOOL" embed -q --checkpoint "$FIX/tiny.safetensors" --precision int8 --images "${IMAGES[@]}" --output "$WORK/image8.safetensors"
  r2=$(st cosine "$WORK/image8.safetensors" embeddings "$FIX/reference.safetensors" image_features 0.999) || fail "int8 image features: $r2"
  ! st equal "$WORK/text8.safetensors" embeddings "$WORK/text.safetensors" embeddings 2> /dev/null || fail "int8 gave the fp32 numbers"
  echo "ok: int8 texts $r; images $r2"
  "$TOOL" bench -q --checkpoint "$FIX/tiny.safetensors" --modality text --batch 4 --iterations 3 --precision int8 --json > "$WORK/b8.json"
  python3 -c "import json,sys; j=json.load(open(sys.argv[1])); assert j['precision']=='int8' and 0.99 < j['min_cosine_vs_fp32'] <= 1, j" \
    "$WORK/b8.json" || fail "bench --precision int8: $(cat "$WORK/b8.json")"
else
  ! "$TOOL" embed -q --checkpoint "$FIX/tiny.safetensors" --precision int8 --texts "$FIX/texts.json" 2> "$WORK/err.txt" \
    || fail "int8 accepted on a CPU without VNNI"
  grep -q "VNNI" "$WORK/err.txt" || fail "int8 refusal does not say why: $(cat "$WORK/err.txt")"
fi
! "$TOOL" embed -q --checkpoint "$FIX/tiny.safetensors" --precision int4 --texts "$FIX/texts.json" 2> "$WORK/err.txt" \
  || fail "int4 accepted"
grep -q "unknown precision 'int4' (fp32, bf16 or int8)" "$WORK/err.txt" || fail "int4 refusal: $(cat "$WORK/err.txt")"
echo "== progress bar: drawn on a terminal, absent when piped or with -q"
# `script` runs the tool on a real pseudo-terminal and keeps what it drew.
if command -v script > /dev/null; then
  script -qec "$(printf '%q ' "$TOOL" embed --checkpoint "$FIX/tiny.safetensors" --batch 2 --images "${IMAGES[@]}" \
    --output "$WORK/bar.safetensors")" "$WORK/tty.txt" > /dev/null
  grep -q $'\r''embedding images  \[#*\.*\]  [0-9]/9' "$WORK/tty.txt" || fail "no progress bar on a terminal: $(cat -v "$WORK/tty.txt")"
  grep -aq '9/9  100%' "$WORK/tty.txt" || fail "the bar did not end at 9/9: $(cat -v "$WORK/tty.txt")"
  script -qec "$(printf '%q ' "$TOOL" embed -q --checkpoint "$FIX/tiny.safetensors" --images "${IMAGES[@]}" \
    --output "$WORK/bar.safetensors")" "$WORK/tty-quiet.txt" > /dev/null
  ! grep -q '100%' "$WORK/tty-quiet.txt" || fail "-q drew a bar: $(cat -v "$WORK/tty-quiet.txt")"
fi
"$TOOL" embed --checkpoint "$FIX/tiny.safetensors" --batch 2 --images "${IMAGES[@]}" --output "$WORK/bar.safetensors" \
  2> "$WORK/piped.txt"
! grep -q $'\r' "$WORK/piped.txt" || fail "a bar reached a pipe: $(cat -v "$WORK/piped.txt")"
grep -q "wrote 9 embeddings" "$WORK/piped.txt" || fail "piped stderr lost its log line: $(cat "$WORK/piped.txt")"

"$TOOL" preprocess --size 64 "${IMAGES[@]}" --output "$WORK/pixels.safetensors"
st cosine "$WORK/pixels.safetensors" pixels "$FIX/reference.safetensors" image_pixels 0.99999 || fail "pixels"

echo "== convert round trips"
"$TOOL" convert -q "$FIX/tiny.jit.pt" "$WORK/hf" --format hf
"$TOOL" convert -q "$WORK/hf" "$WORK/back.safetensors" --precision fp16
"$TOOL" embed -q --checkpoint "$WORK/back.safetensors" --texts "$FIX/texts.json" --output "$WORK/text2.safetensors"
st cosine "$WORK/text2.safetensors" embeddings "$FIX/reference.safetensors" text_features 0.9999 || fail "converted model"

echo "== init and bench"
"$TOOL" init -q --arch tiny --out "$WORK/init.safetensors" --seed 3
"$TOOL" bench -q --checkpoint "$WORK/init.safetensors" --modality text --batch 4 --iterations 3 --json > "$WORK/bench.json"
python3 -c "import json,sys; j=json.load(open(sys.argv[1])); assert j['throughput']>0 and j['batch']==4 and j['latency_ms']>0 and j['load_s']>0 and j['first_pass_ms']>0, j" "$WORK/bench.json" \
  || fail "bench --json"
# Passes side by side, as refineryd's --parallel-passes: the batch split over
# them, each on its share of the threads, every pass's items counted.
"$TOOL" bench -q --checkpoint "$WORK/init.safetensors" --modality image --batch 4 --iterations 3 --parallel-passes 2 \
  --threads 2 --json > "$WORK/bench2.json"
python3 -c "import json,sys; j=json.load(open(sys.argv[1])); assert j['parallel_passes']==2 and j['pass_batch']==2 and j['pass_threads']==1 and j['throughput']>0, j" \
  "$WORK/bench2.json" || fail "bench --parallel-passes: $(cat "$WORK/bench2.json")"
! "$TOOL" bench -q --checkpoint "$WORK/init.safetensors" --modality train --parallel-passes 2 --iterations 1 2> "$WORK/err.txt" \
  || fail "bench --parallel-passes accepted for training"
grep -q "parallel-passes runs image or text passes on a CPU only" "$WORK/err.txt" || fail "bench --parallel-passes refusal: $(cat "$WORK/err.txt")"

echo "== match prints one line per image"
"$TOOL" match -q --checkpoint "$FIX/tiny.safetensors" --texts "$FIX/texts.json" --images "${IMAGES[@]:0:3}" > "$WORK/match.txt"
[[ $(wc -l < "$WORK/match.txt") -eq 3 ]] || fail "match output: $(cat "$WORK/match.txt")"

echo "== eval: a suite of a zero-shot and a retrieval task, as the report JSON"
mkdir -p "$WORK/classes/cat" "$WORK/classes/dog"
cp "${IMAGES[0]}" "${IMAGES[1]}" "$WORK/classes/cat/"; cp "${IMAGES[2]}" "${IMAGES[3]}" "${IMAGES[4]}" "$WORK/classes/dog/"
python3 - "$WORK" "${IMAGES[@]:0:4}" <<'PY'
import json, sys
work, images = sys.argv[1], sys.argv[2:]
with open(work + "/r.jsonl", "w") as f:
    for i, p in enumerate(images):
        for c in range(2):
            f.write(json.dumps({"image": p, "caption": "picture %d, caption %d" % (i, c)}) + "\n")
json.dump({"name": "cli", "tasks": [
    {"name": "pets", "kind": "zeroshot", "data": "folder:" + work + "/classes"},
    {"name": "pets-80", "kind": "zeroshot", "data": "folder:" + work + "/classes", "templates": "ImageNet"},
    {"name": "pairs", "kind": "retrieval", "data": "jsonl:" + work + "/r.jsonl"}]}, open(work + "/suite.json", "w"))
PY
"$TOOL" eval -q --checkpoint "$FIX/tiny.safetensors" --suite "$WORK/suite.json" --json --output "$WORK/report.json" > "$WORK/eval.json"
python3 - "$WORK/eval.json" "$WORK/report.json" <<'PY' || fail "eval --json report"
import json, sys
j = json.load(open(sys.argv[1])); k = json.load(open(sys.argv[2]))
assert j["tasks"] == k["tasks"], "--output differs from --json"
names = [t["name"] for t in j["tasks"]]
assert names == ["pets", "pets-80", "pairs"], names
for t in j["tasks"][:2]:
    assert t["kind"] == "zeroshot" and t["n"] == 5, t
    assert set(t["metrics"]) == {"top1", "top5", "mean_per_class_recall"}, t["metrics"]
    assert all(0 <= v <= 1 for v in t["metrics"].values()), t["metrics"]
    assert t["metrics"]["top5"] == 1.0  # two classes
assert j["tasks"][1]["details"]["templates"] == 80
r = j["tasks"][2]
assert r["n"] == 4 and r["details"]["captions"] == 8, r
assert set(r["metrics"]) == {"text_to_image_r1", "text_to_image_r5", "text_to_image_r10", "image_to_text_r1",
                             "image_to_text_r5", "image_to_text_r10", "modality_gap", "modality_gap_l2",
                             "alignment", "uniformity"}, r["metrics"]
assert r["metrics"]["text_to_image_r5"] == 1.0 and r["metrics"]["image_to_text_r10"] == 1.0  # 4 images, 8 captions
s = j["summary"]
assert abs(s["mean_zeroshot_top1"] - (j["tasks"][0]["metrics"]["top1"] + j["tasks"][1]["metrics"]["top1"]) / 2) < 1e-12, s
assert s["retrieval_tasks"] == 1 and s["zeroshot_tasks"] == 2, s
PY
"$TOOL" eval -q --checkpoint "$FIX/tiny.safetensors" --task zeroshot --data "folder:$WORK/classes" > "$WORK/eval.txt"
grep -q "top-1" "$WORK/eval.txt" || fail "eval table: $(cat "$WORK/eval.txt")"

echo "== bad input names the culprit and exits non-zero"
expect_error() {  # expect_error PHRASE CMD...
  local phrase=$1; shift
  if "$@" > "$WORK/out.txt" 2> "$WORK/err.txt"; then fail "'$*' succeeded"; fi
  grep -qF -- "$phrase" "$WORK/err.txt" || fail "'$*' error lacks '$phrase': $(cat "$WORK/err.txt")"
}
expect_error "$WORK/absent.pt" "$TOOL" info "$WORK/absent.pt"
cp "$FIX/texts.json" "$WORK/notes.png"
expect_error "$WORK/notes.png" "$TOOL" embed -q --checkpoint "$FIX/tiny.safetensors" --images "${IMAGES[0]}" "$WORK/notes.png"
head -c 100000 "$FIX/tiny.safetensors" > "$WORK/cut.safetensors"
expect_error "truncated" "$TOOL" info "$WORK/cut.safetensors"
expect_error "unknown architecture 'ViT-X'" "$TOOL" init --arch ViT-X --out "$WORK/x.safetensors"
[[ ! -e "$WORK/x.safetensors" ]] || fail "a failed init left a file"
expect_error "$WORK/nowhere" "$TOOL" eval -q --checkpoint "$FIX/tiny.safetensors" --task zeroshot --data "folder:$WORK/nowhere"
expect_error "unknown data set name 'Pets'" "$TOOL" eval -q --checkpoint "$FIX/tiny.safetensors" --task zeroshot \
  --data "folder:$WORK/classes" --dataset Pets
mkdir -p "$WORK/classes/empty"
expect_error "'empty'" "$TOOL" eval -q --checkpoint "$FIX/tiny.safetensors" --task zeroshot --data "folder:$WORK/classes"
rmdir "$WORK/classes/empty"
cp "$WORK/notes.png" "$WORK/classes/cat/notes.png"
expect_error "notes.png" "$TOOL" eval -q --checkpoint "$FIX/tiny.safetensors" --task zeroshot --data "folder:$WORK/classes" \
  --output "$WORK/bad-report.json"
[[ ! -e "$WORK/bad-report.json" ]] || fail "a failed eval left a report"
echo "all refinery-model CLI checks passed"
