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
((${#TARGETS[@]})) || TARGETS=(safetensors checkpoint image csv caption_dataset class_dataset text job_spec index server_config
                               tokens_file openai_embeddings)
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
# Checkpoints: the fixture's headers with the vocabulary and context cut to
# 16 and 4 and fp16 data, so that a file is ~300 KB of zeros, not 13 MB.
SEP = b"\n--part--\n"
def small_header(path, meta=None):
    raw = open(path, "rb").read(1 << 20)
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    header.pop("__metadata__", None)
    out, offset = {}, 0
    for name, entry in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        shape = list(entry["shape"])
        if name.endswith("token_embedding.weight"): shape[0] = 16
        if name in ("positional_embedding", "text_model.embeddings.position_embedding.weight"): shape[0] = 4
        if name.endswith("position_ids"): shape[-1] = 4
        dtype = "F16" if entry["dtype"] in ("F32", "F16", "BF16") else entry["dtype"]
        size = 2 if dtype == "F16" else {"I64": 8, "I32": 4}.get(dtype, 1)
        for d in shape: size *= d
        out[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    if meta: out["__metadata__"] = meta
    return json.dumps(out).encode()
arch = {"embed_dim": 32, "quick_gelu": True, "vision_cfg": {"image_size": 64, "patch_size": 16, "width": 64, "layers": 2,
        "head_width": 64}, "text_cfg": {"context_length": 4, "vocab_size": 16, "width": 64, "heads": 1, "layers": 2}}
oc = small_header(os.path.join(fix, "tiny.safetensors"))
put("checkpoint", "open_clip", b"\x01" + oc)
put("checkpoint", "declared", b"\x01" + small_header(os.path.join(fix, "tiny.safetensors"),
                                                    {"refinery.architecture": json.dumps(arch)}))
hf = small_header(os.path.join(fix, "tiny-hf", "model.safetensors"))
cfg = json.load(open(os.path.join(fix, "tiny-hf", "config.json")))
cfg["text_config"].update(vocab_size=16, max_position_embeddings=4)
cfg = json.dumps(cfg).encode()
put("checkpoint", "hf_single", b"\x02" + cfg + SEP + hf)
put("checkpoint", "hf_sharded", b"\x03" + cfg + SEP + json.dumps({"weight_map": {k: "shard.safetensors"
    for k in json.loads(hf)}}).encode() + SEP + hf)
put("checkpoint", "hf_as_file", b"\x01" + hf)
put("checkpoint", "zip", b"\x00PK\x03\x04" + b"\x00" * 26 + b"archive/data.pkl")
put("checkpoint", "legacy", b"\x00\x80\x02\x8a\x0alz")
# Job specs: JSON (mode bit 0 set) and the protobuf wire form.
spec = {"baseModel": "tiny", "data": "csv:train.csv", "method": "clip-refine", "epochs": 2, "batchSize": 64,
        "lr": 1e-6, "alpha": 0.5, "rafaPrior": "uniform", "schedule": "cosine", "extra": {"rafa_shared": "false"}}
put("job_spec", "json", b"\x01" + json.dumps(spec).encode())
put("job_spec", "json_cpu", b"\x03" + json.dumps(dict(spec, microBatchSize=0, batchSize=512)).encode())
put("job_spec", "json_scratch", b"\x01" + json.dumps({"init": "random", "arch": "tiny", "data": "csv:x.csv"}).encode())
def pb_str(field, text): b = text.encode(); return bytes([field << 3 | 2, len(b)]) + b
def pb_int(field, value):
    out = bytes([field << 3])
    while True:
        byte = value & 0x7F; value >>= 7
        if value: out += bytes([byte | 0x80])
        else: return out + bytes([byte])
put("job_spec", "proto", b"\x00" + pb_str(1, "tiny") + pb_str(2, "csv:train.csv") + pb_str(3, "hycd") + pb_int(5, 3))
# Index folders: a flat index of three items (mode 1 fills in the files' checksums).
def record(live, item, meta):
    return bytes([live]) + struct.pack("<I", len(item)) + item.encode() + struct.pack("<I", len(meta)) + meta.encode()
for kind, ann in (("flat", "none"), ("hnsw", "none"), ("ivf", "none"), ("hnsw", "hnsw")):
    manifest = {"format": "refinery-vector-index", "version": 1, "dim": 4, "slots": 3, "live": 2, "ann": ann,
                "ivf_trained_at": 0, "options": {"kind": kind, "ivf_nlist": 0, "ivf_nprobe": 0, "hnsw_m": 0,
                "hnsw_ef_construction": 0, "hnsw_ef_search": 0}}
    items = record(1, "a", '{"label": "cat"}') + record(0, "b", "") + record(1, "c", "")
    put("index", kind + "_" + ann, b"\x01" + json.dumps(manifest).encode() + SEP + items + SEP + b"IHNf")
put("openai_embeddings", "texts", json.dumps({"model": "tiny", "input": ["a cat", "a dog"], "encoding_format": "base64"}))
put("openai_embeddings", "mixed", json.dumps({"input": ["a cat", {"type": "text", "text": "x"}, {"type": "image",
    "image": "data:image/png;base64,iVBORw0KGgo="}], "dimensions": 4, "user": "u"}))
put("openai_embeddings", "string", json.dumps({"input": "one"}))
put("tokens_file", "text", "# comment\nadmin-token-0123456789abcdef admin ops\nreader-token-0123456789abcdef reader\n")
put("tokens_file", "json", json.dumps({"tokens": [{"token": "trainer-token-0123456789abcdef", "role": "trainer", "name": "ci"}]}))
PY

export LSAN_OPTIONS="suppressions=$ROOT/fuzz/lsan.supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
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
