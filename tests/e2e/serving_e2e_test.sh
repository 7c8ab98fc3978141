#!/usr/bin/env bash
# End-to-end test of serving with real processes: refineryd on free local
# ports with the shared tiny CLIP fixture, driven by the refinery client the
# way a user would drive it. Prints one line per check; exits non-zero at the
# first failure, with the server's log tail.
# Usage: serving_e2e_test.sh REFINERYD REFINERY FIXTURE_DIR
set -euo pipefail
[[ $# -eq 3 ]] || { echo "usage: $0 REFINERYD REFINERY FIXTURE_DIR" >&2; exit 2; }
SERVERD=$(realpath "$1")
CLI=$(realpath "$2")
FIX=$(realpath "$3")
ASSETS=$(cd "$(dirname "$0")/../../assets" && pwd)
source "$(dirname "$(realpath "$0")")/lib.sh"
setup_work refinery-e2e
MAX_ITEMS=64    # --max-request-items: low, so an oversized request is cheap to make
GRACE_S=10      # --shutdown-grace-s

# Three free TCP ports on 127.0.0.1 (gRPC, metrics, HTTP API).
read -r PORT MPORT HPORT < <(free_ports 3)
ADDR=127.0.0.1:$PORT
cli() { "$CLI" --server "$ADDR" --timeout 60 "$@"; }

mkdir -p "$WORK/models" "$WORK/data"
cp "$FIX/tiny.safetensors" "$WORK/models/tiny.safetensors"
mapfile -t IMAGES < <(ls "$FIX"/images/* | sort)

# Checks over the client's JSON output with the standard library only.
cat > "$WORK/check.py" <<'PY'
import json, sys
def load(path):
    return json.load(open(path))
def descending(xs):
    return all(a >= b - 1e-12 for a, b in zip(xs, xs[1:]))
cmd, args = sys.argv[1], sys.argv[2:]
if cmd == 'has-model':  # has-model LIST.json REF
    refs = [m['ref'] for m in load(args[0])['models']]
    assert args[1] in refs, refs
elif cmd == 'classify':  # classify OUT.json IMAGES LABELS_PER_IMAGE [all]
    j = load(args[0])
    assert len(j['results']) == int(args[1]), j
    for r in j['results']:
        p = [l['probability'] for l in r['labels']]
        assert len(p) == int(args[2]), r
        assert descending(p), r
        if args[3:] == ['all']:  # every label returned: a full softmax
            assert abs(sum(p) - 1) <= 1e-4, ('sum', sum(p))
        assert all(-1 <= l['cosine'] <= 1 for l in r['labels']), r
    print(', '.join('%s: %s %.3f' % (r['image'].split('/')[-1], r['labels'][0]['label'], r['labels'][0]['probability']) for r in j['results']))
elif cmd == 'rank':  # rank OUT.json N softmax|cosine
    items = load(args[0])['items']
    s = [i['score'] for i in items]
    assert len(s) == int(args[1]), items
    assert descending(s), s
    assert sorted(i['index'] for i in items) == list(range(len(items))), items
    if args[2] == 'softmax':
        assert abs(sum(s) - 1) <= 1e-4, ('sum', sum(s))
    else:
        assert all(-1 <= x <= 1 for x in s), s
    print('best: %s (%.4f)' % (items[0]['name'].split('/')[-1], s[0]))
elif cmd == 'top-hit':  # top-hit OUT.json ID MIN_SCORE
    hits = load(args[0])['hits']
    assert hits and hits[0]['id'] == args[1], hits[:3]
    assert hits[0]['score'] >= float(args[2]), hits[0]
    assert descending([h['score'] for h in hits]), hits
    print('%s %.6f %s' % (hits[0]['id'], hits[0]['score'], hits[0]['metadata_json']))
elif cmd == 'index-size':  # index-size LIST.json NAME SIZE
    sizes = {i['name']: i['size'] for i in load(args[0])['indexes']}
    assert sizes.get(args[1]) == int(args[2]), sizes
elif cmd == 'no-index':  # no-index LIST.json NAME
    assert args[1] not in [i['name'] for i in load(args[0])['indexes']]
elif cmd == 'bench':  # bench OUT.json
    j = load(args[0])
    for k in ('throughput', 'p50_ms', 'p90_ms', 'p99_ms', 'calls', 'errors', 'concurrency', 'duration_s'):
        assert k in j, ('missing', k, j)
    assert j['calls'] > 0 and j['errors'] == 0 and j['throughput'] > 0 and j['concurrency'] == 4, j
    assert 0 < j['p50_ms'] <= j['p90_ms'] <= j['p99_ms'], j
    print('%.1f items/s, p50 %.1f ms, p99 %.1f ms' % (j['throughput'], j['p50_ms'], j['p99_ms']))
elif cmd == 'items':  # items TEXTS.json OUT.jsonl FIRST COUNT
    texts = load(args[0])
    with open(args[1], 'w') as f:
        for i in range(int(args[2]), int(args[2]) + int(args[3])):
            f.write(json.dumps({'id': 't%d' % i, 'text': texts[i], 'metadata': {'row': i}}) + '\n')
elif cmd == 'text':  # text TEXTS.json I
    print(load(args[0])[int(args[1])])
else:
    sys.exit('unknown check ' + cmd)
PY
check() { python3 "$WORK/check.py" "$@"; }

SERVER_ARGS=(--listen "$ADDR" --metrics-listen "127.0.0.1:$MPORT" --http-listen "127.0.0.1:$HPORT" --models-dir "$WORK/models"
  --data-dir "$WORK/data" --data-root "$WORK" --data-root "$FIX" --import-root "$WORK" --export-root "$WORK"
  --device cpu --threads 2 --max-request-items "$MAX_ITEMS" --shutdown-grace-s "$GRACE_S")

# expect_error PHRASE CMD...: the command fails and its stderr names PHRASE;
# then the server must still answer a normal call.
expect_error() {
  local phrase=$1; shift
  if "$@" > "$WORK/out.txt" 2> "$WORK/err.txt"; then fail "'$*' succeeded"; fi
  grep -qF -- "$phrase" "$WORK/err.txt" || fail "'$*': error lacks '$phrase': $(cat "$WORK/err.txt")"
  grep -q '^refinery: error: ' "$WORK/err.txt" || fail "'$*': error line lacks 'refinery: error: ': $(cat "$WORK/err.txt")"
  cli embed text "a photo of a cat" > /dev/null 2>&1 || fail "server did not answer normally after '$*'"
  ok "rejected: $(head -n 1 "$WORK/err.txt")"
}

echo "== start refineryd on $ADDR (metrics $MPORT)"
"$CLI" --server "$ADDR" --timeout 2 health > "$WORK/out.txt" 2> "$WORK/err.txt" && fail "health succeeded with no server"
grep -q "UNAVAILABLE" "$WORK/err.txt" && grep -qF "$ADDR" "$WORK/err.txt" || fail "no-server error: $(cat "$WORK/err.txt")"
ok "health without a server: $(cat "$WORK/err.txt")"
start_refineryd "${SERVER_ARGS[@]}"
[[ $(cli health) == SERVING ]] || fail "health"
ok "health: SERVING"

echo "== models"
cli models list | grep -q 'tiny@1' || fail "models list lacks tiny@1: $(cli models list)"
cli --json models list > "$WORK/models.json"
check has-model "$WORK/models.json" tiny@1 || fail "models list --json"
cli models show tiny --json > "$WORK/show.json"  # --json after the verb works too
python3 -c "import json,sys; j=json.load(open(sys.argv[1])); assert j['ref']=='tiny@1' and j['architecture']['embed_dim']==32, j" \
  "$WORK/show.json" || fail "models show"
ok "models list/show: tiny@1, embed dim 32"

echo "== embeddings match the reference implementation"
cli embed text --texts "$FIX/texts.json" --output "$WORK/text.safetensors" > /dev/null
r=$(st cosine "$WORK/text.safetensors" embeddings "$FIX/reference.safetensors" text_features 0.99999 tiny@1) \
  || fail "text features differ from the reference"
ok "embed text (200 texts, chunked under --max-request-items $MAX_ITEMS): $r"
cli embed image "${IMAGES[@]}" --output "$WORK/image.safetensors" > /dev/null
r=$(st cosine "$WORK/image.safetensors" embeddings "$FIX/reference.safetensors" image_features 0.9995 tiny@1) \
  || fail "image features differ from the reference"
ok "embed image (9 images): $r"
cli --json embed text "a photo of a cat" "a dog" --normalize > "$WORK/embed.json"
python3 -c "
import json,sys,math; j=json.load(open(sys.argv[1])); m=j['embeddings']
assert m['rows']==2 and m['dim']==32 and len(m['values'])==64, m
for r in range(2): assert abs(math.sqrt(sum(v*v for v in m['values'][r*32:(r+1)*32]))-1)<1e-4
assert j['model']=='tiny@1' and j['timing']['total_ms']>0, j" "$WORK/embed.json" || fail "embed --json --normalize"
ok "embed text --json --normalize: 2 unit rows"

echo "== the HTTP API answers as gRPC does"
HTTP=http://127.0.0.1:$HPORT
curl -sf "$HTTP/ready" | grep -q '"ready"' || fail "/ready"
curl -sf -X POST "$HTTP/v1/embeddings" -H 'Content-Type: application/json' \
  -d '{"model": "tiny", "input": ["a photo of a cat", "a dog"]}' > "$WORK/openai.json" || fail "POST /v1/embeddings"
python3 -c "
import json,sys; o=json.load(open(sys.argv[1])); g=json.load(open(sys.argv[2]))
assert o['object']=='list' and o['model']==g['model'], (o['model'], g['model'])
for i in range(2):
    row=g['embeddings']['values'][i*32:(i+1)*32]
    assert o['data'][i]['index']==i and o['data'][i]['embedding']==row, (i, o['data'][i]['embedding'][:3], row[:3])
assert o['usage']['prompt_tokens']>=8, o['usage']
print('2 x 32, equal to the gRPC numbers; usage', o['usage'])" "$WORK/openai.json" "$WORK/embed.json" > "$WORK/out.txt" \
  || fail "/v1/embeddings differs from EmbedText"
ok "POST /v1/embeddings: $(cat "$WORK/out.txt")"
code=$(curl -s -o "$WORK/err.json" -w '%{http_code}' -X POST "$HTTP/v1/embeddings" -d '{"model": "nosuchmodel", "input": "x"}')
python3 -c "import json,sys; e=json.load(open(sys.argv[1]))['error']; assert e['code']=='NOT_FOUND' and 'nosuchmodel' in e['message'], e" \
  "$WORK/err.json" && [[ $code == 404 ]] || fail "unknown model over HTTP: $code $(cat "$WORK/err.json")"
ok "unknown model over HTTP: 404 $(cat "$WORK/err.json")"
curl -sf "$HTTP/openapi.json" | python3 -c "import json,sys; d=json.load(sys.stdin); assert '/v1/embeddings' in d['paths'], d['paths'].keys()" \
  || fail "/openapi.json"
ok "/openapi.json describes /v1/embeddings"

echo "== classify and rank"
cli --json classify --image "${IMAGES[0]}" --image "${IMAGES[7]}" --labels cat,dog,rocket,coffee --top-k 0 > "$WORK/cls.json"
r=$(check classify "$WORK/cls.json" 2 4 all) || fail "classify: $(cat "$WORK/cls.json")"
ok "classify (4 labels): $r"
cli --json classify --image "${IMAGES[1]}" --templates-file "$ASSETS/zeroshot_prompts.json" --dataset cifar10 --top-k 3 \
  > "$WORK/cls2.json"
r=$(check classify "$WORK/cls2.json" 1 3) || fail "classify --dataset: $(cat "$WORK/cls2.json")"
ok "classify --templates-file --dataset cifar10 --top-k 3: $r"
cli --json rank --image "${IMAGES[7]}" --texts "a rocket" "a cup of coffee" "a cat" > "$WORK/rank.json"
r=$(check rank "$WORK/rank.json" 3 softmax) || fail "rank --image: $(cat "$WORK/rank.json")"
ok "rank --image against 3 texts (softmax): $r"
cli --json rank --text "a photo of a cat" --images "${IMAGES[@]}" --score cosine > "$WORK/rank2.json"
r=$(check rank "$WORK/rank2.json" 9 cosine) || fail "rank --text: $(cat "$WORK/rank2.json")"
ok "rank --text against 9 images (cosine): $r"

echo "== vector index"
check items "$FIX/texts.json" "$WORK/items.jsonl" 0 100
cli index create docs --model tiny > /dev/null
cli index add docs --items "$WORK/items.jsonl" --image "img-rocket=${IMAGES[7]}" --image "img-cat=${IMAGES[2]}" \
  > "$WORK/add.txt" || fail "index add"
ok "index add: $(cat "$WORK/add.txt")"
cli --json index list > "$WORK/indexes.json"
check index-size "$WORK/indexes.json" docs 102 || fail "index list: $(cat "$WORK/indexes.json")"
cli index list | grep -E '^docs +102 ' > /dev/null || fail "index list (human): $(cli index list)"
ok "index list: docs has 102 items"
QUERY=$(check text "$FIX/texts.json" 0)
cli --json search docs --text "$QUERY" -k 5 > "$WORK/hits.json"
r=$(check top-hit "$WORK/hits.json" t0 0.9999) || fail "search --text: $(cat "$WORK/hits.json")"
ok "search --text finds its own item first: $r"
cli --json search docs --image "${IMAGES[7]}" -k 3 > "$WORK/hits2.json"
r=$(check top-hit "$WORK/hits2.json" img-rocket 0.9999) || fail "search --image: $(cat "$WORK/hits2.json")"
ok "search --image finds its own item first: $r"
cli index create graph --kind hnsw --hnsw-m 8 > /dev/null
check items "$FIX/texts.json" "$WORK/items2.jsonl" 100 40
cli index add graph --items "$WORK/items2.jsonl" --items-per-call 16 > /dev/null
QUERY2=$(check text "$FIX/texts.json" 110)
cli --json search graph --text "$QUERY2" -k 3 --ef 32 > "$WORK/hits3.json"
r=$(check top-hit "$WORK/hits3.json" t110 0.9999) || fail "hnsw search: $(cat "$WORK/hits3.json")"
ok "hnsw index: add in 3 calls, search finds its own item: $r"
cli index delete graph t110 t111 > /dev/null
cli --json index show graph | python3 -c "import json,sys; j=json.load(sys.stdin); assert j['size']==38, j" \
  || fail "index delete: size"
cli index drop graph > /dev/null
cli --json index list > "$WORK/indexes.json"
check no-index "$WORK/indexes.json" graph || fail "index drop"
ok "index delete/drop"

echo "== bulk add: --from a file of embeddings, --from a folder of images"
cli embed text --texts "$FIX/texts.json" --output "$WORK/texts.safetensors" > /dev/null
cli index create bulk --model tiny > /dev/null
cli index add bulk --from "$WORK/texts.safetensors" --id-prefix row- --items-per-call $MAX_ITEMS > "$WORK/bulk.txt" \
  || fail "index add --from FILE: $(cat "$WORK/bulk.txt")"
grep -q "added 200 item(s) to bulk (size 200) in 4 call(s)" "$WORK/bulk.txt" || fail "index add --from FILE: $(cat "$WORK/bulk.txt")"
cli --json search bulk --text "$QUERY2" -k 3 > "$WORK/hits-bulk.json"
r=$(check top-hit "$WORK/hits-bulk.json" row-110 0.9999) || fail "search after --from FILE: $(cat "$WORK/hits-bulk.json")"
ok "index add --from FILE.safetensors --id-prefix: 200 rows in 4 calls; search finds row 110 first: $r"
mkdir -p "$WORK/pics/more"
cp "${IMAGES[0]}" "${IMAGES[1]}" "$WORK/pics/"
cp "${IMAGES[7]}" "$WORK/pics/more/"
echo "not an image" > "$WORK/pics/notes.txt"
cli index add bulk --from "$WORK/pics" > "$WORK/bulk2.txt" || fail "index add --from FOLDER: $(cat "$WORK/bulk2.txt")"
grep -q "added 3 item(s) to bulk (size 203)" "$WORK/bulk2.txt" || fail "index add --from FOLDER: $(cat "$WORK/bulk2.txt")"
cli --json search bulk --image "${IMAGES[7]}" -k 3 > "$WORK/hits-bulk2.json"
r=$(check top-hit "$WORK/hits-bulk2.json" "more/$(basename "${IMAGES[7]}")" 0.9999) \
  || fail "search after --from FOLDER: $(cat "$WORK/hits-bulk2.json")"
ok "index add --from FOLDER: 3 images, ids relative to it: $r"
# A file of image embeddings names its rows (the paths): no --id-prefix needed.
cli embed image "${IMAGES[2]}" "${IMAGES[3]}" --output "$WORK/images.safetensors" > /dev/null
cli index add bulk --from "$WORK/images.safetensors" > /dev/null || fail "index add --from FILE with its own ids"
cli --json search bulk --image "${IMAGES[3]}" -k 1 > "$WORK/hits-bulk3.json"
r=$(check top-hit "$WORK/hits-bulk3.json" "${IMAGES[3]}" 0.9999) || fail "ids from the file: $(cat "$WORK/hits-bulk3.json")"
ok "index add --from FILE: ids from the file's items: $r"
expect_error "nothing-here" cli index add bulk --from "$WORK/nothing-here"
mkdir -p "$WORK/empty-folder"
expect_error "holds no images" cli index add bulk --from "$WORK/empty-folder"
expect_error "row-0" cli index add bulk --from "$WORK/texts.safetensors" --id-prefix row- --items-per-call $MAX_ITEMS

echo "== bad input names the culprit; the server keeps serving"
head -c $(($(stat -c %s "${IMAGES[7]}") / 2)) "${IMAGES[7]}" > "$WORK/cut.jpg"
expect_error "cut.jpg" cli embed image "${IMAGES[0]}" "$WORK/cut.jpg"
cp "$FIX/texts.json" "$WORK/notes.png"
expect_error "notes.png" cli embed image "${IMAGES[0]}" "$WORK/notes.png"
expect_error "$WORK/absent.png" cli embed image "$WORK/absent.png"
echo '[]' > "$WORK/empty.json"
expect_error "empty.json" cli embed text --texts "$WORK/empty.json"
expect_error "nosuchmodel" cli embed text --model nosuchmodel "a cat"
expect_error "nosuchindex" cli search nosuchindex --text "a cat"
expect_error "nosuchindex" cli index add nosuchindex --text "x=a cat"
expect_error "$MAX_ITEMS" cli embed text --texts "$FIX/texts.json" --items-per-call 200
printf '{"id": "a", "text": "fine"}\n{"id": "b", "text": \n' > "$WORK/bad.jsonl"
expect_error "bad.jsonl:2" cli index add docs --items "$WORK/bad.jsonl"
expect_error "t0" cli index add docs --text "t0=again"
expect_error "docs" cli index create docs
cli --json index list > "$WORK/indexes.json"
check index-size "$WORK/indexes.json" docs 102 || fail "a rejected add changed the index: $(cat "$WORK/indexes.json")"
ok "rejected adds left docs at 102 items"

echo "== metrics"
python3 -c "
import sys, urllib.request
text = urllib.request.urlopen('http://127.0.0.1:$MPORT/metrics', timeout=10).read().decode()
assert 'refinery_build_info' in text, text[:500]
# tiny loaded once (on the first call), from its safetensors file.
loads = [l for l in text.splitlines() if l.startswith('refinery_model_load_duration_seconds_count{')]
assert loads == ['refinery_model_load_duration_seconds_count{format=\"safetensors\",model=\"tiny\"} 1'], loads
# Each lane that ran a batch reports its learnt wait budget: a tenth of a
# pass of the tiny model, well under a second.
budgets = {l.split(' ')[0]: float(l.split(' ')[1]) for l in text.splitlines()
           if l.startswith('refinery_batch_wait_budget_seconds{')}
assert 'refinery_batch_wait_budget_seconds{modality=\"text\",model=\"tiny@1\"}' in budgets, budgets
assert all(0 < v < 1 for v in budgets.values()), budgets
# The bulk index's changes sit in its write-ahead log (no snapshot since).
logs = {l.split(' ')[0]: float(l.split(' ')[1]) for l in text.splitlines() if l.startswith('refinery_index_log_bytes{')}
assert logs.get('refinery_index_log_bytes{index=\"bulk\"}', 0) > 200 * 8 * 4, logs
assert 'refinery_index_snapshot_bytes{index=\"bulk\"}' in text, text" || fail "metrics endpoint"
ok "metrics endpoint serves refinery_build_info, the model load time, the batchers' wait budgets and index log sizes"
# The start-up log says how the math runs: OpenBLAS is the OpenMP build
# where it is installed.
if [[ -e /usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3 ]]; then
  grep -q "(OpenBLAS, OpenMP)" "$WORK/server.log" || fail "start-up log: not OpenMP OpenBLAS: $(grep LibTorch "$WORK/server.log")"
fi
ok "start-up log: $(grep -o 'LibTorch.*' "$WORK/server.log" | head -n 1)"
# --threads 2 and --parallel-passes auto: two passes side by side, one thread each.
grep -q "forward passes: up to 2 at once on the CPU, 1 intra-op thread(s) each" "$WORK/server.log" \
  || fail "start-up log: $(grep 'forward passes' "$WORK/server.log")"
ok "start-up log: $(grep -o 'forward passes.*' "$WORK/server.log" | head -n 1)"

echo "== bench"
cli --json bench embed --modality text --concurrency 4 --duration 2 > "$WORK/bench.json" \
  || fail "bench: $(cat "$WORK/bench.json")"
r=$(check bench "$WORK/bench.json") || fail "bench --json: $(cat "$WORK/bench.json")"
ok "bench embed text x4 for 2 s: $r"

echo "== SIGTERM drains and exits 0; a restart keeps the indexes (snapshot + log replay)"
stop_refineryd --wait $((GRACE_S + 5)) || fail "refineryd still running $((GRACE_S + 5)) s after SIGTERM"
[[ $STOPPED_RC -eq 0 ]] || fail "refineryd exited $STOPPED_RC after SIGTERM"
ok "SIGTERM: exited 0"
start_refineryd "${SERVER_ARGS[@]}"
cli --json index list > "$WORK/indexes.json"
check index-size "$WORK/indexes.json" docs 102 || fail "after restart: $(cat "$WORK/indexes.json")"
cli --json search docs --text "$QUERY" -k 5 > "$WORK/hits4.json"
r=$(check top-hit "$WORK/hits4.json" t0 0.9999) || fail "search after restart: $(cat "$WORK/hits4.json")"
python3 -c "
import json,sys; a=json.load(open(sys.argv[1]))['hits']; b=json.load(open(sys.argv[2]))['hits']
assert [h['id'] for h in a] == [h['id'] for h in b], (a, b)
assert all(abs(x['score']-y['score']) < 1e-5 for x, y in zip(a, b)), (a, b)" "$WORK/hits.json" "$WORK/hits4.json" \
  || fail "hits changed across the restart"
ok "after restart: docs has 102 items, same hits: $r"
check index-size "$WORK/indexes.json" bulk 205 || fail "bulk after restart: $(cat "$WORK/indexes.json")"
grep -q 'index "bulk": 205 items; replayed 6 logged changes' "$WORK/server.log" \
  || fail "no replay reported: $(grep 'index "bulk"' "$WORK/server.log")"
ok "after restart: bulk has 205 items, $(grep -o 'replayed 6 logged changes in [0-9.]* s' "$WORK/server.log" | tail -n 1)"

echo "== --precision bf16: embeddings stay close to the reference"
stop_refineryd --wait $((GRACE_S + 5)) || fail "refineryd still running after SIGTERM"
if grep -qw -e avx512_bf16 -e amx_bf16 /proc/cpuinfo; then
  start_refineryd "${SERVER_ARGS[@]}" --precision bf16
  grep -q "per pass in bf16" "$WORK/server.log" || fail "start-up log lacks the precision"
  cli embed text --texts "$FIX/texts.json" --output "$WORK/text16.safetensors" > /dev/null
  r=$(st cosine "$WORK/text16.safetensors" embeddings "$FIX/reference.safetensors" text_features 0.99 tiny@1) \
    || fail "bf16 text features: $r"
  ok "bf16 texts: $r"
else
  ! "$SERVERD" "${SERVER_ARGS[@]}" --precision bf16 > "$WORK/out.txt" 2>&1 || fail "bf16 accepted without native bf16"
  grep -q "AVX512-BF16" "$WORK/out.txt" || fail "bf16 refusal: $(cat "$WORK/out.txt")"
  ok "bf16 refused on this CPU"
fi

echo "== --model-precision: one model in int8, the others as --precision says"
stop_refineryd --wait $((GRACE_S + 5)) || fail "refineryd still running after SIGTERM"
cp "$FIX/tiny.safetensors" "$WORK/models/small.safetensors"
if grep -qw -e avx512_vnni -e avx_vnni -e amx_int8 /proc/cpuinfo; then
  start_refineryd "${SERVER_ARGS[@]}" --model-precision small=int8
  grep -q "per pass in fp32, small@1 in int8" "$WORK/server.log" || fail "start-up log lacks the model's precision"
  cli models list | grep -E '^small@1 .* int8 ' > /dev/null || fail "models list lacks the precision: $(cli models list)"
  cli models show small | grep -q "precision: *int8" || fail "models show: $(cli models show small)"
  cli embed text --model small --texts "$FIX/texts.json" --output "$WORK/text8.safetensors" > /dev/null
  r=$(st cosine "$WORK/text8.safetensors" embeddings "$FIX/reference.safetensors" text_features 0.99 small@1) \
    || fail "int8 text features: $r"
  cli embed text --model tiny --texts "$FIX/texts.json" --output "$WORK/text32.safetensors" > /dev/null
  r32=$(st cosine "$WORK/text32.safetensors" embeddings "$FIX/reference.safetensors" text_features 0.99999 tiny@1) \
    || fail "tiny is no longer fp32: $r32"
  ! st equal "$WORK/text8.safetensors" embeddings "$WORK/text32.safetensors" embeddings 2> /dev/null \
    || fail "small@1 served the same numbers as the fp32 model"
  ok "int8 texts (small@1): $r; fp32 (tiny@1): $r32"
  grep -q "loaded small@1 (.*, int8)" "$WORK/server.log" || fail "load log lacks int8: $(grep loaded "$WORK/server.log")"
  cp "$FIX/tiny.safetensors" "$WORK/imported.safetensors"
  cli models import "$WORK/imported.safetensors" --name small --precision fp32 | grep -q "as small@2 (fp32)" \
    || fail "import --precision fp32"
  cli models show small@2 | grep -q "precision: *fp32" || fail "small@2: $(cli models show small@2)"
  ok "small@2 imported in fp32 beside small@1 in int8"
  budget() { python3 -c "
import sys, urllib.request
text = urllib.request.urlopen('http://127.0.0.1:$MPORT/metrics', timeout=10).read().decode()
print(sum(l.startswith('refinery_batch_wait_budget_seconds{modality=\"text\",model=\"small@1\"}') for l in text.splitlines()))"; }
  [[ $(budget) == 1 ]] || fail "no wait budget for small@1"
  cli models delete small@1 > /dev/null
  [[ $(budget) == 0 ]] || fail "a deleted model's wait budget is still exported"
  ok "a deleted model's wait-budget series leaves /metrics"
  stop_refineryd --wait $((GRACE_S + 5)) || fail "refineryd still running after SIGTERM"
else
  ! "$SERVERD" "${SERVER_ARGS[@]}" --model-precision small=int8 > "$WORK/out.txt" 2>&1 || fail "int8 accepted without VNNI"
  grep -q "VNNI" "$WORK/out.txt" || fail "int8 refusal: $(cat "$WORK/out.txt")"
  ok "int8 refused on this CPU"
fi
! "$SERVERD" "${SERVER_ARGS[@]}" --model-precision smal=int8 > "$WORK/out.txt" 2>&1 || fail "a rule for no model was accepted"
grep -q "no registered model is 'smal' (registered: small, tiny)" "$WORK/out.txt" || fail "typo refusal: $(cat "$WORK/out.txt")"
! "$SERVERD" "${SERVER_ARGS[@]}" --model-precision small > "$WORK/out.txt" 2>&1 || fail "a rule without = was accepted"
grep -q "expected NAME=PRECISION" "$WORK/out.txt" || fail "malformed rule: $(cat "$WORK/out.txt")"
ok "precision rules naming no model, or malformed, stop the start naming them"

echo "all serving end-to-end checks passed"
