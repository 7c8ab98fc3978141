#!/usr/bin/env bash
# `refinery-model compare` end to end: the fixture model against a random one
# on a caption set made of the fixture images; compare.json must agree with
# itself, and the page must open in a real browser (headless Chromium) with
# every card and thumbnail in place. Exits 77 (skipped) without Chromium.
# Usage: compare_gallery_test.sh REFINERY_MODEL FIXTURE_DIR
# KEEP_TMP=1 keeps the work folder, with the page and a screenshot (shot.png).
set -euo pipefail
TOOL=$1
FIX=$2
source "$(dirname "$(realpath "$0")")/../../e2e/lib.sh"

CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [[ -z $CHROMIUM ]]; then
  echo "SKIP: no chromium on PATH (scripts/install-deps.sh installs it)"
  exit 77
fi
setup_work refinery-compare

echo "== a caption set of the fixture images, two captions each"
# One caption per image carries HTML's special characters: the page must show them, not parse them.
python3 - "$FIX/images" "$WORK/captions.jsonl" <<'PY'
import json, os, sys
images, out = sys.argv[1], sys.argv[2]
with open(out, "w") as f:
    for name in sorted(os.listdir(images)):
        stem = os.path.splitext(name)[0].replace("_", " ")
        for caption in (f"a photo of the {stem}", f"<b>{stem}</b> & \"quoted\" 'text'"):
            f.write(json.dumps({"image": os.path.join(images, name), "caption": caption}) + "\n")
PY
"$TOOL" init -q --arch tiny --seed 7 --out "$WORK/random.safetensors"

echo "== compare the fixture model (A) with a random one (B)"
OUT=$WORK/out
K=3
"$TOOL" compare -q --checkpoint "$FIX/tiny.safetensors" --checkpoint "$WORK/random.safetensors" \
  --data "jsonl:$WORK/captions.jsonl" --k $K --output "$OUT"
[[ -s $OUT/index.html && -s $OUT/compare.json ]] || fail "index.html or compare.json missing: $(ls "$OUT")"
[[ ! -e $OUT/index.html.tmp && ! -e $OUT/compare.json.tmp ]] || fail "temporary files left behind"

echo "== compare.json agrees with itself"
python3 - "$OUT" $K <<'PY' || fail "compare.json is inconsistent"
import json, os, sys
out, k = sys.argv[1], int(sys.argv[2])
d = json.load(open(os.path.join(out, "compare.json")))
assert d["k"] == k and d["data"]["images"] == 9 and d["data"]["captions"] == 18, d["data"]
assert [m["name"] for m in d["models"]] == ["tiny.safetensors", "random.safetensors"], d["models"]
n_queries = {"text_to_image": 18, "image_to_text": 9}
n_candidates = {"text_to_image": 9, "image_to_text": 18}
groups = {(g["direction"], g["winner"]): g for g in d["groups"]}
assert set(groups) == {(x, w) for x in n_queries for w in "AB"}, groups
for direction, models in d["recall"].items():
    for label, recall in models.items():
        values = [recall[f"R@{j}"] for j in sorted({1, 5, k})]
        assert all(0 <= a <= b <= 1 for a, b in zip(values, values[1:])), (direction, label, recall)
for q in d["queries"]:
    ra, rb = q["results"]["A"], q["results"]["B"]
    correct = {"A": ra["rank"] <= k, "B": rb["rank"] <= k}
    assert correct["A"] != correct["B"], q
    assert correct[q["winner"]] and ra["correct"] == correct["A"] and rb["correct"] == correct["B"], q
    d_ = q["direction"]
    truth = {t["image_index"] if d_ == "text_to_image" else t["caption_index"] for t in q["truth"]}
    for label, r in q["results"].items():
        assert len(r["top"]) == k and 1 <= r["rank"] <= n_candidates[d_], r
        ids = [t["image_index"] if d_ == "text_to_image" else t["caption_index"] for t in r["top"]]
        assert [t["truth"] for t in r["top"]] == [i in truth for i in ids], r
        scores = [t["score"] for t in r["top"]]
        assert scores == sorted(scores, reverse=True), scores
        hits = [j for j, t in enumerate(r["top"]) if t["truth"]]
        # The first hit in the top k sits at the rank (ties aside); no hit means rank > k.
        assert (hits[0] + 1 == r["rank"]) if hits else r["rank"] > k, r
for (direction, winner), g in groups.items():
    listed = [q for q in d["queries"] if q["direction"] == direction and q["winner"] == winner]
    assert len(listed) == g["shown"] == g["total"], (g, len(listed))
    gaps = [q["results"]["B" if winner == "A" else "A"]["rank"] - q["results"][winner]["rank"] for q in listed]
    assert gaps == sorted(gaps, reverse=True), gaps
assert len(d["queries"]) > 0, "no query that one model gets right and the other wrong"
print(len(d["queries"]), "queries,", {f"{x}/{w}": g["total"] for (x, w), g in groups.items()})
PY
ok "compare.json"

echo "== the page: escaped captions, every thumbnail present and 160 px on its longer side"
python3 - "$OUT" <<'PY' || fail "index.html"
import json, os, re, struct, sys
out = sys.argv[1]
html = open(os.path.join(out, "index.html"), encoding="utf-8").read()
d = json.load(open(os.path.join(out, "compare.json")))
assert "<b>" + "astronaut" not in html and "&lt;b&gt;" in html, "caption HTML not escaped"
assert "&amp; &quot;quoted&quot; &#39;text&#39;" in html, "quotes or & not escaped"
assert not re.search(r'(src|href)="(https?:)?//', html), "external resource"
assert html.count('<article class="card"') == len(d["queries"])

def jpeg_size(path):
    data = open(path, "rb").read()
    assert data[:2] == b"\xff\xd8", path
    i = 2
    while i < len(data):
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return w, h
        i += 2 + length
    raise AssertionError(f"{path}: no SOF marker")

srcs = set(re.findall(r'<img [^>]*src="([^"]+)"', html))
assert srcs, "no images on the page"
for src in srcs:
    assert re.fullmatch(r"thumbs/\d+\.jpg", src), src
    w, h = jpeg_size(os.path.join(out, src))
    assert max(w, h) == 160, (src, w, h)
print(len(srcs), "thumbnails")
PY
ok "index.html"

echo "== headless Chromium renders every card and loads every image"
# A copy of the page with a probe that, once everything has loaded, records on
# <html> how many images there are and how many decoded.
python3 - "$OUT/index.html" "$OUT/probe.html" <<'PY'
import sys
html = open(sys.argv[1], encoding="utf-8").read()
probe = """<script>
addEventListener('load', () => {
  const imgs = [...document.images], root = document.documentElement.dataset;
  root.images = imgs.length;
  root.loaded = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  root.cards = document.querySelectorAll('article.card').length;
  root.overflow = document.documentElement.scrollWidth > innerWidth ? 'yes' : 'no';
});
</script>"""
open(sys.argv[2], "w", encoding="utf-8").write(html.replace("</body>", probe + "</body>"))
PY
browser() {
  timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$(mktemp -d "$WORK/profile.XXXXXX")" --window-size=1400,2000 "$@" 2> "$WORK/chromium.log"
}
browser --virtual-time-budget=10000 --dump-dom "file://$OUT/probe.html" > "$WORK/dom.html" \
  || fail "chromium --dump-dom failed: $(tail -5 "$WORK/chromium.log")"
python3 - "$WORK/dom.html" "$OUT/compare.json" <<'PY' || fail "rendered page"
import json, re, sys
dom = open(sys.argv[1], encoding="utf-8").read()
d = json.load(open(sys.argv[2]))
m = re.search(r"<html[^>]*>", dom)
attrs = dict(re.findall(r'data-(\w+)="([^"]*)"', m.group(0))) if m else {}
assert attrs, "the probe did not run: " + dom[:300]
n_cards = len(d["queries"])
assert int(attrs["cards"]) == n_cards, (attrs, n_cards)
assert int(attrs["images"]) > 0 and attrs["loaded"] == attrs["images"], f"images loaded: {attrs}"
assert attrs["overflow"] == "no", "the page scrolls sideways at 1400 px"
# Every card has its two labelled answers; captions came through as text.
assert dom.count('class="answer ') == 2 * n_cards
assert "<b>astronaut</b>" not in dom
print(attrs)
PY
browser --screenshot="$WORK/shot.png" "file://$OUT/index.html" > /dev/null || fail "chromium --screenshot failed"
[[ -s $WORK/shot.png ]] || fail "no screenshot"
ok "rendered in Chromium"

echo "== --max-queries caps each group, --name-a/--name-b name the models"
"$TOOL" compare -q --checkpoint "$FIX/tiny.safetensors" --checkpoint "$WORK/random.safetensors" \
  --data "jsonl:$WORK/captions.jsonl" --k $K --max-queries 1 --name-a fixture --name-b random --output "$WORK/capped"
python3 - "$WORK/capped/compare.json" "$OUT/compare.json" <<'PY' || fail "--max-queries / --name-*"
import json, sys
capped, full = (json.load(open(p)) for p in sys.argv[1:])
assert [m["name"] for m in capped["models"]] == ["fixture", "random"]
for g, f in zip(capped["groups"], full["groups"]):
    assert g["total"] == f["total"] and g["shown"] == min(1, f["total"]), (g, f)
assert len(capped["queries"]) == sum(g["shown"] for g in capped["groups"])
PY
ok "--max-queries"

echo "== bad input names the culprit and leaves the last page as it was"
expect_error() {  # expect_error PHRASE CMD...
  local phrase=$1; shift
  if "$@" > "$WORK/stdout.txt" 2> "$WORK/err.txt"; then fail "'$*' succeeded"; fi
  grep -qF -- "$phrase" "$WORK/err.txt" || fail "'$*' error lacks '$phrase': $(cat "$WORK/err.txt")"
}
before=$(sha256sum < "$OUT/index.html")
expect_error "$WORK/absent.safetensors" "$TOOL" compare -q --checkpoint "$FIX/tiny.safetensors" \
  --checkpoint "$WORK/absent.safetensors" --data "jsonl:$WORK/captions.jsonl" --output "$OUT"
cp "$FIX/texts.json" "$WORK/notes.png"
cp "$WORK/captions.jsonl" "$WORK/bad.jsonl"
echo "{\"image\": \"$WORK/notes.png\", \"caption\": \"not an image\"}" >> "$WORK/bad.jsonl"
expect_error "$WORK/notes.png" "$TOOL" compare -q --checkpoint "$FIX/tiny.safetensors" \
  --checkpoint "$WORK/random.safetensors" --data "jsonl:$WORK/bad.jsonl" --output "$OUT"
[[ $(sha256sum < "$OUT/index.html") == "$before" ]] || fail "a failed run changed index.html"
expect_error "exactly twice" "$TOOL" compare -q --checkpoint "$FIX/tiny.safetensors" \
  --data "jsonl:$WORK/captions.jsonl" --output "$WORK/one"
[[ ! -e $WORK/one/index.html ]] || fail "a failed run wrote a page"
ok "errors"

echo "PASS"
