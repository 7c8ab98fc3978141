#!/usr/bin/env bash
# 2 and 4 ranks over Gloo on loopback give the per-step losses and final
# weights of one process on the same global batch (to float rounding), for
# clip-refine, contrastive and hycd, with and without micro-batches.
# Usage: distributed_step_test.sh DISTRIBUTED_STEP CKPT SAFETENSORS_CHECK_PY
set -euo pipefail
BIN=$1 CKPT=$2 CHECK=$3
WORK=$(mktemp -d "${TMPDIR:-/tmp}/distributed-step.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# run NAME WORLD METHOD MICRO: WORLD processes as torchrun would start them.
run() {
  local name=$1 world=$2 method=$3 micro=$4 p pids=()
  p=$(port)
  for ((r = 0; r < world; r++)); do
    RANK=$r WORLD_SIZE=$world LOCAL_RANK=$r MASTER_ADDR=127.0.0.1 MASTER_PORT=$p \
      timeout 300 "$BIN" "$CKPT" "$method" 8 "$micro" 3 "$WORK/$name.safetensors" \
      > "$WORK/$name.$r.out" 2> "$WORK/$name.$r.err" &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || { cat "$WORK/$name".*.err >&2; echo "FAIL: $name: a rank failed" >&2; exit 1; }; done
}
for method in clip-refine contrastive hycd; do
  for micro in 0 2; do
    run "$method-$micro-w1" 1 "$method" "$micro"
    for world in 2 4; do
      run "$method-$micro-w$world" "$world" "$method" "$micro"
      python3 - "$WORK/$method-$micro-w1" "$WORK/$method-$micro-w$world" "$CHECK" <<'PY'
import importlib.util, json, sys
one, many, check = sys.argv[1:4]
spec = importlib.util.spec_from_file_location("st", check); st = importlib.util.module_from_spec(spec); spec.loader.exec_module(st)
a = [json.loads(l.replace("nan", "NaN")) for l in open(one + ".0.out")]
b = [json.loads(l.replace("nan", "NaN")) for l in open(many + ".0.out")]
assert len(a) == len(b) == 3, (a, b)
for x, y in zip(a, b):
    assert x["rows"] == y["rows"] == 8, (x, y)
    for k in ("total", "rafa", "hycd", "contrastive"):
        if x[k] != x[k]:  # NaN: a term the method does not use
            assert y[k] != y[k], (k, x, y); continue
        assert abs(x[k] - y[k]) <= 1e-5 * max(1.0, abs(x[k])), ("step", x["step"], k, x[k], y[k])
wa = st.read(one + ".safetensors")["weights"][1]
wb = st.read(many + ".safetensors")["weights"][1]
# AdamW divides each gradient by its own running RMS, so where a gradient
# is no bigger than float rounding (a token-embedding row a batch barely
# touches) rounding decides the sign of a whole lr-sized update: two such
# runs may part by twice Adam's step (itself up to about 1.2 lr with CLIP's
# betas) per step. Every other weight must agree.
assert len(wa) == len(wb)
diffs = [abs(p - q) for p, q in zip(wa, wb)]
diff = max(diffs)
loose = sum(d > 1e-5 for d in diffs)
assert diff <= 3 * 2 * 1.25 * 1e-4, ("a weight differs by more than Adam's steps can", diff)
assert loose <= 1e-4 * len(wa), ("too many weights differ by more than 1e-5", loose, len(wa))
print("%s: 3 steps, losses equal; %d weights, %d differ by > 1e-5 (max %.2g)" % (many.split("/")[-1], len(wa), loose, diff))
PY
    done
  done
done
echo "== a rank that never comes: the others fail within the timeout, naming the master"
p=$(port)
if RANK=0 WORLD_SIZE=2 MASTER_ADDR=127.0.0.1 MASTER_PORT=$p DISTRIBUTED_TIMEOUT_S=5 timeout 120 "$BIN" "$CKPT" clip-refine 8 0 1 "$WORK/x.safetensors" 2> "$WORK/lonely.err"; then
  echo "FAIL: rank 0 of 2 ran alone" >&2; exit 1
fi
grep -q "127.0.0.1:$p" "$WORK/lonely.err" || { echo "FAIL: $(cat "$WORK/lonely.err")" >&2; exit 1; }
echo "PASS"
