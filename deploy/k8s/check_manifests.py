#!/usr/bin/env python3
"""Validates Kubernetes manifests offline against the schemas in schemas/
(made by schemas/make_schemas.py from Kubernetes' OpenAPI document and the
PyTorchJob and ServiceMonitor CRDs), strictly, as kubeconform -strict does:
an unknown field is an error, as are a wrong type, a missing required field
and a kind no schema covers.

  check_manifests.py FILE.yaml...

Prints one line per object checked; exits 1 listing every problem as
FILE: KIND/NAME: PATH: MESSAGE. Needs python3-yaml and python3-jsonschema.
"""
import copy
import json
import os
import sys

import jsonschema
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SCHEMAS = os.path.join(HERE, "schemas")


def strict(node):
    """Closes every object schema that lists its properties (unknown fields
    become errors) and lets int-or-string and quantity values be numbers."""
    if isinstance(node, list):
        return [strict(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: strict(v) for k, v in node.items()}
    fmt = out.get("format")
    if fmt == "int-or-string" or out.get("x-kubernetes-int-or-string"):
        for k in ("type", "format", "x-kubernetes-int-or-string", "anyOf"):
            out.pop(k, None)
        out["anyOf"] = [{"type": "string"}, {"type": "integer"}]
    elif fmt == "quantity":
        out.pop("type", None)
        out["anyOf"] = [{"type": "string"}, {"type": "number"}]
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    return out


def load_schemas():
    """(apiVersion, kind) -> a JSON schema."""
    found = {}
    k8s = json.load(open(os.path.join(SCHEMAS, "kubernetes.json")))
    definitions = strict(k8s["definitions"])
    # A quantity ("2Gi", "500m") may also be written as a plain number (cpu: 4).
    definitions["io.k8s.apimachinery.pkg.api.resource.Quantity"] = {"anyOf": [{"type": "string"}, {"type": "number"}]}
    for key, name in k8s["kinds"].items():
        api_version, kind = key.split(" ")
        found[(api_version, kind)] = {"$ref": "#/definitions/" + name, "definitions": definitions}
    for f in sorted(os.listdir(SCHEMAS)):
        if f == "kubernetes.json" or not f.endswith(".json"):
            continue
        group, version, kind = f[:-len(".json")].split("_")
        found[(group + "/" + version, kind)] = strict(json.load(open(os.path.join(SCHEMAS, f))))
    return found


def where(error):
    return "/".join(str(p) for p in error.absolute_path) or "(top)"


def main(paths):
    schemas = load_schemas()
    problems, checked = [], 0
    for path in paths:
        try:
            docs = [d for d in yaml.safe_load_all(open(path)) if d is not None]
        except yaml.YAMLError as e:
            problems.append("%s: not valid YAML: %s" % (path, e))
            continue
        if not docs:
            problems.append("%s: holds no object" % path)
        for doc in docs:
            if not isinstance(doc, dict):
                problems.append("%s: a document is not an object" % path)
                continue
            key = (doc.get("apiVersion"), doc.get("kind"))
            name = "%s/%s" % (key[1], (doc.get("metadata") or {}).get("name", "?"))
            schema = schemas.get(key)
            if schema is None:
                known = ", ".join("%s %s" % k for k in sorted(schemas))
                problems.append("%s: %s: no schema for apiVersion %s kind %s (known: %s)" % (path, name, key[0], key[1], known))
                continue
            validator = jsonschema.Draft7Validator(schema)
            errors = sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
            for e in errors:
                # The deepest cause of an anyOf/oneOf failure says what is wrong.
                leaf = e
                while leaf.context:
                    leaf = min(leaf.context, key=lambda c: len(c.context))
                problems.append("%s: %s: %s: %s" % (path, name, where(e), leaf.message))
            if not errors:
                print("ok  %s: %s %s" % (path, key[0], name))
            checked += 1
    if problems:
        print("%d problem(s) in the manifests:" % len(problems), file=sys.stderr)
        for p in problems:
            print("  " + p, file=sys.stderr)
        return 1
    print("%d objects valid" % checked)
    return 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1:]))
