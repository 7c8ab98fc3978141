#!/usr/bin/env python3
"""Makes the schemas that check_manifests.py validates deploy/k8s against,
offline. Run by hand when a source is bumped; its outputs are committed.

  make_schemas.py SWAGGER PYTORCHJOB_CRD SERVICEMONITOR_CRD

SWAGGER             Kubernetes' OpenAPI v2 document as kubernetes-client/python
                    ships it (kubernetes/swagger.json.unprocessed, commit
                    024658493d124f046fc0a9827a2a3165cf2aee28, client 36.0.0).
PYTORCHJOB_CRD      kubeflow/training-operator v1.9.0 (commit 6f74c7f6b2ed),
                    manifests/base/crds/kubeflow.org_pytorchjobs.yaml.
SERVICEMONITOR_CRD  prometheus-operator/prometheus-operator (commit 6adcebc50),
                    example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml.
All three are Apache-2.0.

Writes kubernetes.json (the definitions reachable from the kinds in KINDS,
unchanged) and one file per CRD version: its openAPIV3Schema, unchanged.
"""
import json
import os
import sys

import yaml

KINDS = {  # (group/version, kind) -> definition name in the swagger document
    ("apps/v1", "Deployment"): "io.k8s.api.apps.v1.Deployment",
    ("apps/v1", "StatefulSet"): "io.k8s.api.apps.v1.StatefulSet",
    ("v1", "Service"): "io.k8s.api.core.v1.Service",
    ("v1", "PersistentVolumeClaim"): "io.k8s.api.core.v1.PersistentVolumeClaim",
    ("v1", "ConfigMap"): "io.k8s.api.core.v1.ConfigMap",
    ("autoscaling/v2", "HorizontalPodAutoscaler"): "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler",
    ("policy/v1", "PodDisruptionBudget"): "io.k8s.api.policy.v1.PodDisruptionBudget",
}
HERE = os.path.dirname(os.path.abspath(__file__))


def refs(node, out):
    if isinstance(node, dict):
        r = node.get("$ref")
        if isinstance(r, str) and r.startswith("#/definitions/"):
            out.add(r[len("#/definitions/"):])
        for v in node.values():
            refs(v, out)
    elif isinstance(node, list):
        for v in node:
            refs(v, out)


def main():
    swagger_path, pytorchjob_path, servicemonitor_path = sys.argv[1:4]
    defs = json.load(open(swagger_path))["definitions"]
    keep, pending = set(), list(KINDS.values())
    while pending:
        name = pending.pop()
        if name in keep:
            continue
        keep.add(name)
        found = set()
        refs(defs[name], found)
        pending.extend(found - keep)
    out = {"kinds": {"%s %s" % k: v for k, v in KINDS.items()}, "definitions": {n: defs[n] for n in sorted(keep)}}
    with open(os.path.join(HERE, "kubernetes.json"), "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")
    for path in (pytorchjob_path, servicemonitor_path):
        crd = yaml.safe_load(open(path))
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for v in crd["spec"]["versions"]:
            name = "%s_%s_%s.json" % (group, v["name"], kind)
            with open(os.path.join(HERE, name), "w") as f:
                json.dump(v["schema"]["openAPIV3Schema"], f, indent=1, sort_keys=True)
                f.write("\n")
    print("%d Kubernetes definitions kept of %d" % (len(keep), len(defs)))


if __name__ == "__main__":
    main()
