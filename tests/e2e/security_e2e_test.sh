#!/usr/bin/env bash
# End-to-end test of who may reach refineryd and what they may do, with real
# processes and real certificates made here by openssl: mutual TLS, bearer
# tokens with roles, the reload of the tokens file on SIGHUP, the refusal to
# listen beyond loopback unauthenticated, /metrics over the same mutual TLS
# (curl and a real Prometheus scrape it), and the refused calls counted there.
# Then a hostile client (hostile_client.cpp) sends every kind of bad call
# beside a legitimate client while a job trains: each bad call must get its
# status, the legitimate calls their very same results, the job must finish,
# and the server's peak memory stays under a bound.
# Usage: security_e2e_test.sh REFINERYD REFINERY FIXTURE_DIR HOSTILE_CLIENT
set -euo pipefail
[[ $# -eq 4 ]] || { echo "usage: $0 REFINERYD REFINERY FIXTURE_DIR HOSTILE_CLIENT" >&2; exit 2; }
SERVERD=$(realpath "$1")
CLI=$(realpath "$2")
FIX=$(realpath "$3")
HOSTILE=$(realpath "$4")
PEAK_RSS_BOUND_MB=${PEAK_RSS_BOUND_MB:-1500}  # the tiny model, a training job and the attack
source "$(dirname "$(realpath "$0")")/lib.sh"
setup_work refinery-security
read -r PORT MPORT RPORT < <(free_ports 3)
ADDR=127.0.0.1:$PORT
mkdir -p "$WORK/models" "$WORK/data" "$WORK/pki" "$WORK/datasets/images" "$WORK/import" "$WORK/export" "$WORK/outside"
cp "$FIX/tiny.safetensors" "$WORK/models/tiny.safetensors"
# Client paths: data sets under datasets/, imports from import/, exports to
# export/. Outside them: a data set, and a symlink inside the root that leads out.
cp "$FIX"/images/*.png "$WORK/datasets/images/"
printf 'filepath,caption\n' > "$WORK/datasets/set.csv"
for f in "$WORK"/datasets/images/*.png; do printf 'images/%s,a photo of a %s\n' "${f##*/}" "${f##*/}" >> "$WORK/datasets/set.csv"; done
cp -r "$WORK/datasets/images" "$WORK/outside/images"
cp "$WORK/datasets/set.csv" "$WORK/outside/set.csv"
ln -s "$WORK/outside" "$WORK/datasets/escape"
{ cat "$WORK/datasets/set.csv"; echo "escape/images/logo.png,a logo that lives outside"; } > "$WORK/datasets/sneaky.csv"
cp "$FIX/tiny.safetensors" "$FIX/tiny.state_dict.pt" "$WORK/import/"
cp "$FIX/tiny.safetensors" "$WORK/outside/"

# expect_fail PHRASE CMD...: CMD exits non-zero and its stderr holds PHRASE (any, when PHRASE is "").
expect_fail() {
  local phrase=$1; shift
  if "$@" > "$WORK/out.txt" 2> "$WORK/err.txt"; then fail "'$*' succeeded"; fi
  [[ -z $phrase ]] || grep -qF -- "$phrase" "$WORK/err.txt" || fail "'$*': error lacks '$phrase': $(cat "$WORK/err.txt")"
  ok "refused: $(head -n 1 "$WORK/err.txt" | cut -c1-160)"
}

echo "== certificates: a CA, a server and a client it signed, and a rogue CA's client"
cd "$WORK/pki"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$1" 2> /dev/null; }
ca() {  # ca NAME: a self-signed CA
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -out "$1.pem" -days 2 -subj "/CN=$1" -addext basicConstraints=critical,CA:TRUE \
    -addext keyUsage=critical,keyCertSign,cRLSign 2> /dev/null
}
leaf() {  # leaf NAME CA EXTENSIONS
  key "$1.key"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$1" 2> /dev/null
  printf '%s\n' "$3" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -out "$1.pem" -days 2 \
    -extfile "$1.ext" 2> /dev/null
}
ca test-ca
ca rogue-ca
leaf server test-ca "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth"
leaf client test-ca "extendedKeyUsage=clientAuth"
leaf intruder rogue-ca "extendedKeyUsage=clientAuth"
cd - > /dev/null
PKI=$WORK/pki
ok "made with $(openssl version)"

ADMIN=admin-$(openssl rand -hex 16)
TRAINER=trainer-$(openssl rand -hex 16)
READER=reader-$(openssl rand -hex 16)
printf '# refineryd tokens\n%s admin ops\n%s trainer ci\n%s reader\n' "$ADMIN" "$TRAINER" "$READER" > "$WORK/tokens"
chmod 600 "$WORK/tokens"

echo "== refineryd refuses to listen beyond loopback with nobody authenticated"
expect_fail "nothing authenticates them" "$SERVERD" --listen "0.0.0.0:$RPORT" --metrics-listen "" --data-dir "$WORK/data"
expect_fail "clear text" "$SERVERD" --listen "0.0.0.0:$RPORT" --metrics-listen "" --data-dir "$WORK/data" \
  --auth-tokens "$WORK/tokens"
expect_fail "--tls-cert and --tls-key go together" "$SERVERD" --tls-cert "$PKI/server.pem" --data-dir "$WORK/data"

echo "== start refineryd with mutual TLS and tokens on $ADDR"
# Every client call below uses these unless it says otherwise; health needs
# the certificates but no token.
export REFINERY_TLS_CA=$PKI/test-ca.pem REFINERY_TLS_CERT=$PKI/client.pem REFINERY_TLS_KEY=$PKI/client.key
start_refineryd --listen "$ADDR" --metrics-listen "127.0.0.1:$MPORT" --data-dir "$WORK/data" \
  --models-dir "$WORK/models" --tls-cert "$PKI/server.pem" --tls-key "$PKI/server.key" \
  --tls-client-ca "$PKI/test-ca.pem" --auth-tokens "$WORK/tokens" --data-root "$WORK/datasets" \
  --import-root "$WORK/import" --export-root "$WORK/export" --metrics-tls
grep -q "security: mutual TLS; 3 token(s): 1 admin, 1 trainer, 1 reader" "$WORK/server.log" ||
  fail "no security line in the log"
ok "health answers without a token; $(grep -o 'security: .*' "$WORK/server.log" | head -n 1)"
cli() { "$CLI" --server "$ADDR" --timeout 30 "$@"; }

echo "== the transport: no TLS, no client certificate, a rogue CA's certificate"
expect_fail "UNAVAILABLE" env -u REFINERY_TLS_CA -u REFINERY_TLS_CERT -u REFINERY_TLS_KEY \
  "$CLI" --server "$ADDR" --timeout 5 --token "$ADMIN" models list
expect_fail "UNAVAILABLE" env -u REFINERY_TLS_CERT -u REFINERY_TLS_KEY \
  "$CLI" --server "$ADDR" --timeout 5 --token "$ADMIN" models list
expect_fail "UNAVAILABLE" cli --timeout 5 --tls-cert "$PKI/intruder.pem" --tls-key "$PKI/intruder.key" \
  --token "$ADMIN" models list
expect_fail "UNAVAILABLE" cli --timeout 5 --tls-ca "$PKI/rogue-ca.pem" --token "$ADMIN" models list
expect_fail "not a PEM file" cli --tls-ca "$WORK/tokens" models list

echo "== tokens and roles"
expect_fail "UNAUTHENTICATED: ListModels needs a token" cli models list
expect_fail "UNAUTHENTICATED: EmbedText: unknown token" cli --token "reader-$(openssl rand -hex 16)" embed text "a cat"
REFINERY_TOKEN=$READER cli --json models list > "$WORK/models.json" || fail "a reader cannot list models"
grep -q '"tiny' "$WORK/models.json" || fail "models list: $(cat "$WORK/models.json")"
REFINERY_TOKEN=$READER cli --json embed text "a photo of a cat" > "$WORK/embed.json" || fail "a reader cannot embed"
ok "a reader (REFINERY_TOKEN) lists models and embeds texts"
expect_fail "PERMISSION_DENIED: CreateIndex needs role trainer; the token of line 4 has role reader" \
  cli --token "$READER" index create docs
expect_fail "PERMISSION_DENIED: DeleteModel needs role admin" cli --token "$READER" models delete tiny
cli --token "$TRAINER" index create docs > /dev/null || fail "a trainer cannot create an index"
ok "a trainer creates an index"
expect_fail "PERMISSION_DENIED: DropIndex needs role admin; the token of ci has role trainer" \
  cli --token "$TRAINER" index drop docs
expect_fail "PERMISSION_DENIED: ExportModel needs role admin" cli --token "$TRAINER" models export tiny "$WORK/export/out.safetensors"
[[ ! -e $WORK/export/out.safetensors ]] || fail "a refused export wrote a file"
cli --token "$ADMIN" models export tiny "$WORK/export/out.safetensors" > /dev/null || fail "an admin cannot export"
[[ -s $WORK/export/out.safetensors ]] || fail "the admin's export wrote nothing"
cli --token "$ADMIN" index drop docs > /dev/null || fail "an admin cannot drop an index"
ok "an admin exports a model and drops an index"

echo "== client paths stay inside the roots"
export REFINERY_TOKEN=$ADMIN
SUBMIT=(jobs submit --base tiny --batch-size 2 --epochs 1)
cli "${SUBMIT[@]}" --data "csv:$WORK/datasets/set.csv" --json > "$WORK/job.json" || fail "a data set inside the root was refused"
ok "a data set inside --data-root is accepted"
expect_fail "PERMISSION_DENIED: data set file $WORK/outside/set.csv is outside the folders this server allows (--data-root: $WORK/datasets)" \
  cli "${SUBMIT[@]}" --data "csv:$WORK/outside/set.csv"
expect_fail "PERMISSION_DENIED: data set file $WORK/datasets/../outside/set.csv is outside" \
  cli "${SUBMIT[@]}" --data "csv:$WORK/datasets/../outside/set.csv"
expect_fail "PERMISSION_DENIED: data set file $WORK/datasets/escape/set.csv is outside" \
  cli "${SUBMIT[@]}" --data "csv:$WORK/datasets/escape/set.csv"
expect_fail "PERMISSION_DENIED: data set 'csv:$WORK/datasets/sneaky.csv': image $WORK/datasets/escape/images/logo.png is outside" \
  cli "${SUBMIT[@]}" --data "csv:$WORK/datasets/sneaky.csv"
expect_fail "PERMISSION_DENIED: data set file /etc/passwd is outside" cli "${SUBMIT[@]}" --data "csv:/etc/passwd"
grep -q "root:x:0:0\|/bin/bash\|nologin" "$WORK/err.txt" && fail "an error shows /etc/passwd"
cat > "$WORK/datasets/suite.json" <<JSON
{"name": "escape", "tasks": [{"name": "pets", "kind": "zeroshot", "data": "folder:$WORK/outside"}]}
JSON
expect_fail "PERMISSION_DENIED: eval_suite: task 'pets': class data set folder $WORK/outside is outside" \
  cli eval submit --model tiny --suite "$WORK/datasets/suite.json"
expect_fail "PERMISSION_DENIED: export path $WORK/outside/copy.safetensors is outside the folders this server allows (--export-root: $WORK/export)" \
  cli models export tiny "$WORK/outside/copy.safetensors"
[[ ! -e $WORK/outside/copy.safetensors ]] || fail "a refused export wrote a file"
expect_fail "PERMISSION_DENIED: import path $WORK/outside/tiny.safetensors is outside" \
  cli models import "$WORK/outside/tiny.safetensors"
expect_fail "PERMISSION_DENIED: import path $WORK/import/tiny.state_dict.pt is a TorchScript or pickle checkpoint" \
  cli models import "$WORK/import/tiny.state_dict.pt"
cli models import "$WORK/import/tiny.safetensors" --name imported > /dev/null || fail "a safetensors import from the root failed"
ok "a safetensors checkpoint is imported from --import-root"
cli jobs cancel "$(field "$WORK/job.json" 'd["id"]')" > /dev/null 2>&1 || true  # may have ended already
unset REFINERY_TOKEN

echo "== a hostile client beside a legitimate one, while a job trains"
python3 - "$WORK" "$FIX/images/rocket.jpg" <<'PY'
import struct, sys, zlib
work, jpeg = sys.argv[1], sys.argv[2]
def chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)
# 30000 x 30000 RGB (2.7 GB decoded) from a few hundred bytes.
ihdr = struct.pack(">IIBBBBB", 30000, 30000, 8, 2, 0, 0, 0)
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 90001 * 4, 9)) + chunk(b"IEND", b"")
open(work + "/bomb.png", "wb").write(png)
data = open(jpeg, "rb").read()
open(work + "/truncated.jpg", "wb").write(data[: len(data) // 3])
# A PNG signature in front of an HTML page and a ZIP directory.
open(work + "/polyglot.png", "wb").write(b"\x89PNG\r\n\x1a\n<html><script>alert(1)</script></html>PK\x05\x06" + b"\0" * 18)
PY
cli --token "$TRAINER" jobs submit --base tiny --data "csv:$WORK/datasets/set.csv" --batch-size 2 --epochs 400 \
  --checkpoint-every 200 --eval-every 0 --name tiny-under-attack --json > "$WORK/train.json" || fail "cannot submit the job"
TRAIN_JOB=$(field "$WORK/train.json" 'd["id"]')
for _ in $(seq 100); do
  [[ $(cli --token "$READER" --json jobs show "$TRAIN_JOB" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])') == RUNNING ]] && break
  sleep 0.2
done
"$HOSTILE" --server "$ADDR" --tls-ca "$PKI/test-ca.pem" --tls-cert "$PKI/client.pem" --tls-key "$PKI/client.key" \
  --reader "$READER" --trainer "$TRAINER" --image "$FIX/images/chelsea.png" --bomb "$WORK/bomb.png" \
  --truncated "$WORK/truncated.jpg" --polyglot "$WORK/polyglot.png" --data-root "$WORK/datasets" --job "$TRAIN_JOB" \
  --seconds "${HOSTILE_SECONDS:-6}" --callers 2 --attackers 4 --streams 48 > "$WORK/hostile.json" ||
  fail "the hostile client failed: $(cat "$WORK/hostile.json")"
python3 - "$WORK/hostile.json" <<'PY' || fail "under attack: $(cat "$WORK/hostile.json")"
import json, sys
r = json.load(open(sys.argv[1]))
for phase in ("legit_alone", "legit_under_attack"):
    p = r[phase]
    assert p["calls"] > 0 and p["failed"] == 0 and p["different_results"] == 0, (phase, p)
assert r["same_embedding_in_both"], "the legitimate embedding changed under attack"
assert r["attack_kinds_with_unexpected_status"] == 0, {k: v for k, v in r["attacks"].items() if "unexpected" in v}
assert all(sum(v["outcomes"].values()) > 0 for v in r["attacks"].values()), "an attack kind was never sent"
assert r["streams_refused"] == 24 and r["streams_held"] == 24, (r["streams_held"], r["streams_refused"])
a, b = r["legit_alone"], r["legit_under_attack"]
print("ok: %d bad calls (%.0f/s) of %d kinds, each with its status; 24 watch streams held, 24 refused" %
      (r["bad_calls"], r["bad_calls_per_second"], len(r["attacks"])))
print("ok: legitimate EmbedImage p50/p99 %.1f/%.1f ms alone, %.1f/%.1f ms under attack (%.1f vs %.1f calls/s); "
      "same embedding (largest difference %.1e, batching's rounding)" %
      (a["p50_ms"], a["p99_ms"], b["p50_ms"], b["p99_ms"], a["calls_per_second"], b["calls_per_second"],
       max(a["max_abs_difference"], b["max_abs_difference"])))
PY
cli --timeout 0 --token "$READER" jobs watch "$TRAIN_JOB" > /dev/null 2>&1 || fail "the job did not finish: $(cli --token "$READER" jobs show "$TRAIN_JOB")"
ok "the job trained through the attack and SUCCEEDED"
PEAK_KB=$(awk '/VmHWM/ {print $2}' "/proc/$SERVER_PID/status")
((PEAK_KB / 1024 < PEAK_RSS_BOUND_MB)) || fail "peak RSS $((PEAK_KB / 1024)) MB over the bound of $PEAK_RSS_BOUND_MB MB"
ok "server peak RSS $((PEAK_KB / 1024)) MB (bound $PEAK_RSS_BOUND_MB MB)"
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$WORK/data/models.json" || fail "models.json is corrupt"
cli --token "$READER" --json models list > /dev/null || fail "models list after the attack"
ok "models.json intact; the registry answers"

echo "== SIGHUP reloads the tokens file; a broken one keeps the old tokens"
NEWCOMER=newcomer-$(openssl rand -hex 16)
printf '%s admin ops\n%s reader newcomer\n' "$ADMIN" "$NEWCOMER" > "$WORK/tokens"
kill -HUP "$SERVER_PID"
for _ in $(seq 50); do grep -q "SIGHUP: reloaded" "$WORK/server.log" && break; sleep 0.1; done
grep -q "SIGHUP: reloaded .*2 token(s): 1 admin, 0 trainer, 1 reader" "$WORK/server.log" || fail "no reload line"
cli --token "$NEWCOMER" models list > /dev/null || fail "the new token is not accepted after SIGHUP"
expect_fail "UNAUTHENTICATED" cli --token "$TRAINER" models list
printf '%s wizard\n' "$NEWCOMER" > "$WORK/tokens"
kill -HUP "$SERVER_PID"
for _ in $(seq 50); do grep -q "SIGHUP: kept the previous tokens" "$WORK/server.log" && break; sleep 0.1; done
grep -q "SIGHUP: kept the previous tokens: .*line 1: unknown role 'wizard'" "$WORK/server.log" ||
  fail "a broken tokens file was not reported"
grep -qF "$NEWCOMER" "$WORK/server.log" && fail "the log shows a token"
cli --token "$NEWCOMER" models list > /dev/null || fail "a broken tokens file dropped the old tokens"
ok "reloaded on SIGHUP; a broken file is reported (line, not token) and the old tokens stay"

echo "== /metrics over mutual TLS: the same certificate, the same client CA"
MURL="https://127.0.0.1:$MPORT/metrics"
expect_fail "" curl -sSf --max-time 5 "http://127.0.0.1:$MPORT/metrics"
expect_fail "" curl -sSf --max-time 5 --cacert "$PKI/test-ca.pem" "$MURL"
expect_fail "" curl -sSf --max-time 5 --cacert "$PKI/test-ca.pem" --cert "$PKI/intruder.pem" --key "$PKI/intruder.key" "$MURL"
bash "$(dirname "$(realpath "$0")")/../server/metrics/prometheus_scrape_test.sh" --target "127.0.0.1:$MPORT" \
  --tls-ca "$PKI/test-ca.pem" --tls-client "$PKI/client.pem" "$PKI/client.key" --timeout 60 \
  --expect refinery_build_info > "$WORK/scrape.txt" 2>&1 || { cat "$WORK/scrape.txt"; fail "Prometheus could not scrape over mTLS"; }
ok "$(grep PASS "$WORK/scrape.txt")"

echo "== refused calls on /metrics, by method and code"
curl -sf --cacert "$PKI/test-ca.pem" --cert "$PKI/client.pem" --key "$PKI/client.key" "$MURL" > "$WORK/metrics.txt" ||
  fail "no /metrics"
grep -q 'refinery_grpc_calls_total{code="UNAUTHENTICATED",method="ListModels"} [1-9]' "$WORK/metrics.txt" ||
  fail "UNAUTHENTICATED calls not counted: $(grep calls_total "$WORK/metrics.txt")"
grep -q 'refinery_grpc_calls_total{code="PERMISSION_DENIED",method="DeleteModel"} [1-9]' "$WORK/metrics.txt" ||
  fail "PERMISSION_DENIED calls not counted"
ok "$(grep -c 'code="UNAUTHENTICATED"\|code="PERMISSION_DENIED"' "$WORK/metrics.txt") refused-call series"

stop_refineryd || fail "refineryd did not stop on SIGTERM"
[[ $STOPPED_RC -eq 0 ]] || fail "refineryd exited with $STOPPED_RC"
ok "stopped cleanly"
