#!/usr/bin/env bash
# Runs the libFuzzer targets built from fuzz/CMakeLists.txt, each for a fixed
# time, from seed corpora made here out of the fixtures and assets. A crash, a
# sanitizer report, a leak or a timeout fails the run and leaves the input in
# BUILD/artifacts/TARGET/ (reproduce: BUILD/fuzz_TARGET FILE). Prints the
# executions of each target.
# Usage: fuzz/run.sh BUILD_DIR [SECONDS_PER_TARGET=10] [TARGET...]
set -euo pipefail
BUILD=$(realpath "$1")
SECONDS_EACH=${2:-10}
shift $(($# > 1 ? 2 : 1))
ROOT=$(cd "$(dirname "$0")/.." && pwd)
FIX=${REFINERY_FIXTURE_DIR:-$ROOT/../shared/fixtures/clip-tiny}
TARGETS=("$@")
((${#TARGETS[@]})) || TARGETS=(safetensors image csv caption_dataset class_dataset text server_config tokens_file)
SEEDS=$BUILD/seeds
mkdir -p "$SEEDS"

python3 - "$SEEDS" "$FIX" "$ROOT" <<'PY'
import json, os, shutil, struct, sys
seeds, fix, root = sys.argv[1:4]
def put(target, name, data):
    d = os.path.join(seeds, target); os.makedirs(d, exist_ok=True)
    open(os.path.join(d, name), "wb").write(data if isinstance(data, bytes) else data.encode())
def safetensors(tensors, meta=None):
    header, blob = {}, b""
    if meta: header["__metadata__"] = meta
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + blob
put("safetensors", "two", safetensors({"a": ("F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)),
                                        "b": ("I64", [3], struct.pack("<3q", 1, 2, 3))}, {"format": "pt"}))
put("safetensors", "f16", safetensors({"x": ("F16", [1, 2], b"\x00\x3c\x00\x40"), "y": ("BF16", [0], b"")}))
for f in sorted(os.listdir(os.path.join(fix, "images"))):
    data = open(os.path.join(fix, "images", f), "rb").read()
    if len(data) <= 300_000: put("image", f, data)
csv = "filepath,caption\nimages/a.png,a photo of a cat\n\"images/b, c.png\",\"a \"\"quoted\"\" dog\"\n"
put("csv", "captions.csv", csv)
put("csv", "classes.csv", "filepath,label\nx.jpg,0\ny.jpg,1\n")
put("class_dataset", "numeric", "filepath,label\nx.jpg,0\nsub/y.jpg,2\n/abs/z.png,1\n")
put("class_dataset", "named", "filepath,label\nx.jpg,cat\n\"y, z.jpg\",dog\nw.jpg,cat\n")
coco = {"images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "sub/b.jpg"}],
        "annotations": [{"image_id": 1, "caption": "a cat"}, {"image_id": 2, "caption": "a dog"}, {"image_id": 1, "caption": "  two  "}]}
put("caption_dataset", "coco", b"\x00" + json.dumps(coco).encode())
put("caption_dataset", "csv", b"\x01" + csv.encode())
put("caption_dataset", "jsonl", b"\x02" + b'{"image": "a.png", "caption": "a cat"}\n\n{"image": "../b.png", "caption": "x"}\n')
texts = json.load(open(os.path.join(fix, "texts.json")))
for i, t in enumerate(texts[:40]): put("text", "t%02d" % i, t)
put("server_config", "full", json.dumps({"listen": "127.0.0.1:1", "max_wait_ms": 5, "data_root": ["/tmp"],
    "tls_cert": "a.pem", "tls_key": "a.key", "insecure_allow_remote": True, "max_rpc_threads": 64}))
put("tokens_file", "text", "# comment\nadmin-token-0123456789abcdef admin ops\nreader-token-0123456789abcdef reader\n")
put("tokens_file", "json", json.dumps({"tokens": [{"token": "trainer-token-0123456789abcdef", "role": "trainer", "name": "ci"}]}))
PY

status=0
for t in "${TARGETS[@]}"; do
  mkdir -p "$BUILD/corpus/$t" "$BUILD/artifacts/$t"
  log=$BUILD/fuzz_$t.log
  if "$BUILD/fuzz_$t" "$BUILD/corpus/$t" "$SEEDS/$t" -max_total_time="$SECONDS_EACH" -max_len=65536 -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$BUILD/artifacts/$t/" > "$log" 2>&1; then
    runs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
    echo "fuzz_$t: $runs executions in ${SECONDS_EACH} s, no finding"
  else
    status=1
    echo "fuzz_$t: FINDING (input in $BUILD/artifacts/$t/):"
    grep -m 20 -E "ERROR|SUMMARY|#0 |#1 |#2 |#3 " "$log" || tail -n 20 "$log"
  fi
done
exit "$status"
