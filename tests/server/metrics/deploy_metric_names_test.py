#!/usr/bin/env python3
"""Every metric the Grafana dashboards and the Prometheus alerting rules (and
their unit tests' input series) name is one the server registers, so that no
panel stays empty and no alert waits on a series that never comes: a renamed
metric fails here instead of in production.

The registered names are read from the registry calls in server/ and core/
(registry.counter/gauge/histogram("name", ...)); a histogram's series are its
_bucket, _sum and _count. The scrape tests (prometheus_scrape_*) check that
those names do reach /metrics.

usage: deploy_metric_names_test.py REPO_ROOT
"""
import json
import pathlib
import re
import sys

root = pathlib.Path(sys.argv[1])
REGISTRATION = re.compile(r'\b(counter|gauge|histogram)\(\s*"((?:refinery|process)_[a-z0-9_]+)"')
NAME = re.compile(r'\b((?:refinery|process)_[a-z0-9_]+)')
# Series Prometheus makes itself.
BUILTIN = {"up", "ALERTS", "ALERTS_FOR_STATE"}

registered = {}
for folder in ("server", "core"):
    for path in sorted((root / folder).rglob("*.cpp")):
        for kind, name in REGISTRATION.findall(path.read_text()):
            registered[name] = kind
if len(registered) < 20:
    sys.exit(f"found only {len(registered)} registered metrics in server/ and core/: is the pattern stale?")

series = set(registered)
for name, kind in registered.items():
    if kind == "histogram":
        series |= {name + "_bucket", name + "_sum", name + "_count"}

used = {}  # name -> where
for path in sorted((root / "deploy/grafana/dashboards").glob("*.json")):
    dashboard = json.loads(path.read_text())
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            for name in NAME.findall(target.get("expr", "")):
                used.setdefault(name, f'{path.name}: panel "{panel.get("title")}"')
for path in sorted((root / "deploy/prometheus").glob("*.yml")):
    for number, line in enumerate(path.read_text().splitlines(), 1):
        for name in NAME.findall(line):
            used.setdefault(name, f"{path.name}:{number}")

unknown = sorted(n for n in used if n not in series)
for name in unknown:
    print(f"FAIL {used[name]} names {name}, which the server does not register")
unused = sorted(n for n in registered if not any(u == n or u.startswith(n + "_") for u in used))
print(f"{len(used)} metric names used by the dashboards and rules; {len(registered)} registered")
if unused:
    print("registered but on no panel or rule (fine, listed for whoever edits the dashboard): " + ", ".join(unused))
sys.exit(1 if unknown else 0)
