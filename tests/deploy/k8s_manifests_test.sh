#!/usr/bin/env bash
# Every manifest in deploy/k8s is valid against the Kubernetes, PyTorchJob
# and ServiceMonitor schemas (strictly: unknown fields are errors), and the
# check catches what a hand edit gets wrong: a misspelt field, a wrong type,
# a missing required field, a kind without a schema.
# Usage: k8s_manifests_test.sh DEPLOY_K8S_DIR
set -euo pipefail
DIR=$1
PY=""
for p in python3 /usr/bin/python3; do
  if "$p" -c 'import yaml, jsonschema' 2> /dev/null; then PY=$p; break; fi
done
[[ -n $PY ]] || { echo "FAIL: no python3 with yaml and jsonschema (python3-yaml, python3-jsonschema)" >&2; exit 1; }
"$PY" "$DIR/check_manifests.py" "$DIR"/*.yaml
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# expect_problem NAME MESSAGE: the check of $WORK/NAME.yaml fails saying MESSAGE.
expect_problem() {
  if "$PY" "$DIR/check_manifests.py" "$WORK/$1.yaml" > /dev/null 2> "$WORK/$1.err"; then
    echo "FAIL: $1 passed the check" >&2; exit 1
  fi
  grep -qF "$2" "$WORK/$1.err" || { echo "FAIL: $1: expected '$2', got: $(cat "$WORK/$1.err")" >&2; exit 1; }
  echo "caught $1: $(grep -F "$2" "$WORK/$1.err" | head -1 | sed 's/^ *//')"
}
sed 's/^  replicas: 3$/  replica: 3/' "$DIR/refinery-embed.yaml" > "$WORK/misspelt.yaml"
expect_problem misspelt "spec: Additional properties are not allowed ('replica' was unexpected)"
sed 's/containerPort: 50051}/containerPort: "fifty"}/' "$DIR/refineryd.yaml" > "$WORK/type.yaml"
expect_problem type "containers/0/ports/0/containerPort: 'fifty' is not of type 'integer'"
sed '/^  selector:$/,/^    matchLabels/d' "$DIR/refinery-embed.yaml" > "$WORK/required.yaml"
expect_problem required "Deployment/refinery-embed: spec: 'selector' is a required property"
sed 's/      replicas: 3/      replicas: three/' "$DIR/pytorchjob.yaml" > "$WORK/crd.yaml"
expect_problem crd "pytorchReplicaSpecs/Worker/replicas: 'three' is not of type 'integer'"
sed 's/    - port: metrics/    - portt: metrics/' "$DIR/servicemonitor.yaml" > "$WORK/monitor.yaml"
expect_problem monitor "spec/endpoints/0: Additional properties are not allowed ('portt' was unexpected)"
printf 'apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n' > "$WORK/kind.yaml"
expect_problem kind "no schema for apiVersion v1 kind Pod"
echo PASS
