#!/usr/bin/env bash
# End-to-end check that a real Prometheus server can scrape a metrics endpoint.
#
#   prometheus_scrape_test.sh [--target HOST:PORT | --port-from-stdout]
#                             [--expect METRIC]... [--expect-query PROMQL]...
#                             [--timeout SECONDS]
#                             [--tls-ca PEM [--tls-client CERT KEY]] [-- CMD [ARG...]]
#
# Starts CMD, then a throwaway Prometheus (scrape_interval 1s, job "refinery",
# temp storage, 127.0.0.1 on a free port), and waits until Prometheus reports
# up{job="refinery"} == 1, every --expect METRIC has a sample in that job and
# every --expect-query instant query (e.g. 'x_total{code="OK"} == 3') returns
# a non-empty result. Exits 0 on success; 1 (with the Prometheus log tail) on
# failure or after --timeout seconds (default 30; Prometheus alone needs ~6 s
# to start and run its first scrape); 2 on bad usage. Both processes are
# always stopped and the temp directory removed.
#
# Where the target listens:
#   (default)           the script picks a free port P on 127.0.0.1 and
#                       replaces "{TARGET}" with 127.0.0.1:P and "{PORT}" with
#                       P in CMD's arguments, e.g.
#                         ... -- refineryd --metrics-listen {TARGET} ...
#   --target HOST:PORT  CMD listens there (you chose the port); "{TARGET}" and
#                       "{PORT}" are still substituted.
#                       Without CMD the target is already running there.
#   --port-from-stdout  CMD binds 127.0.0.1 itself and prints its port as its
#                       first stdout line, e.g.
#                         ... --port-from-stdout -- metrics_dump --serve 127.0.0.1:0
#
# HTTPS: --tls-ca makes Prometheus scrape https:// and trust that CA;
# --tls-client adds the client certificate and key it presents (mTLS).
#
# Environment: PROMETHEUS (default "prometheus"), KEEP_TMP=1 keeps the temp dir.
set -uo pipefail
source "$(dirname "$(realpath "$0")")/../../e2e/lib.sh"

usage() {
  sed -n '2,/^set /p' "$0" | grep '^#' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

target=""
port_from_stdout=0
timeout_s=30
expects=()
queries=()
tls_ca=""
tls_cert=""
tls_key=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --target) [[ $# -ge 2 ]] || usage; target=$2; shift 2 ;;
    --port-from-stdout) port_from_stdout=1; shift ;;
    --expect) [[ $# -ge 2 ]] || usage; expects+=("$2"); shift 2 ;;
    --expect-query) [[ $# -ge 2 ]] || usage; queries+=("$2"); shift 2 ;;
    --timeout) [[ $# -ge 2 && $2 =~ ^[0-9]+$ ]] || usage; timeout_s=$2; shift 2 ;;
    --tls-ca) [[ $# -ge 2 ]] || usage; tls_ca=$(realpath "$2"); shift 2 ;;
    --tls-client) [[ $# -ge 3 ]] || usage; tls_cert=$(realpath "$2"); tls_key=$(realpath "$3"); shift 3 ;;
    --) shift; break ;;
    -h|--help) usage ;;
    *) echo "unknown option: $1" >&2; usage ;;
  esac
done
[[ $# -ge 1 || -n $target ]] || { echo "missing -- CMD (or --target of a running one)" >&2; usage; }
[[ -z $tls_cert || -n $tls_ca ]] || { echo "--tls-client needs --tls-ca" >&2; usage; }
[[ -n $target && $port_from_stdout -eq 1 ]] && { echo "--target and --port-from-stdout exclude each other" >&2; usage; }
for metric in "${expects[@]+"${expects[@]}"}"; do
  [[ $metric =~ ^[a-zA-Z_:][a-zA-Z0-9_:]*$ ]] || { echo "--expect wants a metric name, got '$metric'" >&2; exit 2; }
done

prometheus=${PROMETHEUS:-prometheus}
command -v "$prometheus" >/dev/null || fail "'$prometheus' not found (Debian package 'prometheus')"
command -v python3 >/dev/null || fail "python3 is needed to pick free ports"

# GET http://127.0.0.1:$prom_port/api/v1/query?query=$1, body on stdout.
prom_query() {
  if command -v curl >/dev/null; then
    curl -sfG --noproxy '*' --max-time 3 "http://127.0.0.1:$prom_port/api/v1/query" --data-urlencode "query=$1"
  else
    python3 - "$prom_port" "$1" <<'PY'
import sys, urllib.parse, urllib.request
url = "http://127.0.0.1:%s/api/v1/query?query=%s" % (sys.argv[1], urllib.parse.quote(sys.argv[2]))
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
sys.stdout.write(opener.open(url, timeout=3).read().decode())
PY
  fi
}

prom_get() {  # GET an arbitrary API path, for diagnostics
  if command -v curl >/dev/null; then
    curl -sf --noproxy '*' --max-time 3 "http://127.0.0.1:$prom_port$1"
  else
    python3 -c 'import sys, urllib.request as u; print(u.build_opener(u.ProxyHandler({})).open(sys.argv[1], timeout=3).read().decode())' \
      "http://127.0.0.1:$prom_port$1"
  fi
}

setup_work prometheus_scrape
target_pid=""
prom_pid=""
at_exit() {
  stop_pid "$prom_pid" 10 prometheus
  stop_pid "$target_pid" 10 target
}

on_fail() {  # after lib.sh's "FAIL: ..." line
  if [[ -n $prom_pid ]] && kill -0 "$prom_pid" 2>/dev/null; then
    echo "--- Prometheus targets ---" >&2
    prom_get /api/v1/targets >&2 2>/dev/null && echo >&2
  fi
  echo "--- Prometheus log (tail) ---" >&2
  tail -n 40 "$WORK/prometheus.log" >&2 2>/dev/null
  echo "--- target stdout (tail) ---" >&2
  tail -n 20 "$WORK/target.out" >&2 2>/dev/null
  echo "--- target stderr (tail) ---" >&2
  tail -n 40 "$WORK/target.err" >&2 2>/dev/null
}

deadline=$((SECONDS + timeout_s))

# --- the target ---------------------------------------------------------------
if [[ $port_from_stdout -eq 0 && -z $target ]]; then
  target="127.0.0.1:$(free_ports 1)"
fi
cmd=()
for arg in "$@"; do
  arg=${arg//\{TARGET\}/$target}
  arg=${arg//\{PORT\}/${target##*:}}
  cmd+=("$arg")
done
if ((${#cmd[@]})); then
  echo "starting target: ${cmd[*]}" >&2
  "${cmd[@]}" >"$WORK/target.out" 2>"$WORK/target.err" </dev/null &
  target_pid=$!
fi

if [[ $port_from_stdout -eq 1 ]]; then
  port=""
  while [[ -z $port ]]; do
    if [[ $(wc -l <"$WORK/target.out") -ge 1 ]]; then  # a complete first line
      port=$(head -n 1 "$WORK/target.out")
      [[ $port =~ ^[0-9]+$ ]] || fail "first stdout line of the target is '$port', not a port"
      break
    fi
    kill -0 "$target_pid" 2>/dev/null || fail "target exited before printing its port"
    ((SECONDS < deadline)) || fail "target printed no port within ${timeout_s}s"
    sleep 0.1
  done
  target="127.0.0.1:$port"
fi
echo "target: $target" >&2

# --- Prometheus ---------------------------------------------------------------
prom_port=$(free_ports 1)
cat >"$WORK/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: refinery
    static_configs:
      - targets: ['$target']
YAML
if [[ -n $tls_ca ]]; then
  {
    echo "    scheme: https"
    echo "    tls_config:"
    echo "      ca_file: $tls_ca"
    [[ -z $tls_cert ]] || printf '      cert_file: %s\n      key_file: %s\n' "$tls_cert" "$tls_key"
  } >>"$WORK/prometheus.yml"
fi
"$prometheus" \
  --config.file="$WORK/prometheus.yml" \
  --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address="127.0.0.1:$prom_port" \
  --log.level=info \
  >"$WORK/prometheus.log" 2>&1 </dev/null &
prom_pid=$!
echo "prometheus: http://127.0.0.1:$prom_port (pid $prom_pid)" >&2

# --- wait for a successful scrape -------------------------------------------------
job='{job="refinery"}'
while :; do
  [[ -z $target_pid ]] || kill -0 "$target_pid" 2>/dev/null || fail "target exited while waiting for scrapes"
  kill -0 "$prom_pid" 2>/dev/null || fail "prometheus exited"
  missing=""
  # up is 1 only when the last scrape connected and parsed cleanly.
  if prom_query "up$job" 2>/dev/null | grep -Eq '"value":\[[0-9.e+]+,"1"\]'; then
    for metric in "${expects[@]+"${expects[@]}"}"; do
      prom_query "$metric$job" 2>/dev/null | grep -q '"result":\[{' || missing+=" $metric"
    done
    for query in "${queries[@]+"${queries[@]}"}"; do
      prom_query "$query" 2>/dev/null | grep -q '"result":\[{' || missing+=" [$query]"
    done
    if [[ -z $missing ]]; then
      samples=$(prom_query "scrape_samples_scraped$job" 2>/dev/null | grep -Eo '"value":\[[0-9.e+]+,"[0-9]+"\]' |
        grep -Eo '"[0-9]+"' | tr -d '"')
      echo "PASS: Prometheus scraped $target: up == 1, ${samples:-?} samples per scrape," \
        "${#expects[@]} expected metric(s) present, ${#queries[@]} expected query(ies) non-empty"
      exit 0
    fi
  else
    missing=" up==1"
  fi
  ((SECONDS < deadline)) || fail "not within ${timeout_s}s; still waiting for:$missing"
  sleep 0.5
done
