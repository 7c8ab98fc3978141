#!/usr/bin/env python3
"""Serving benchmarks against a real refineryd, per checkpoint.

  ratio       the server under N closed-loop callers (`refinery bench embed`)
              against the raw batch forward of the same checkpoint
              (`refinery-model bench`): throughput ratio, p50 and p99.
  cold-start  from refineryd's start to its first embedding: health, the
              first call (which loads the weights) and the load time that
              /metrics reports (refinery_model_load_duration_seconds).

  python3 bench/serving.py ratio CKPT... [--build DIR] [--seconds 20] [--callers 32] [--json]
  python3 bench/serving.py cold-start CKPT... [--build DIR] [--json]

Each checkpoint is served alone from a temporary --models-dir (a symlink).
Programs come from --build (default ./build). Figures are printed as a
table, or as one JSON object with --json.
"""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGE = os.path.join(ROOT, "..", "shared", "fixtures", "clip-tiny", "images", "chelsea.png")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """refineryd serving one checkpoint, on free loopback ports."""

    def __init__(self, build, checkpoint, extra=()):
        self.build = build
        self.dir = tempfile.mkdtemp(prefix="refinery-bench-")
        models = os.path.join(self.dir, "models")
        os.makedirs(models)
        self.name = os.path.splitext(os.path.basename(checkpoint))[0]
        os.symlink(os.path.abspath(checkpoint), os.path.join(models, os.path.basename(checkpoint)))
        self.port, self.metrics_port = free_port(), free_port()
        self.log = open(os.path.join(self.dir, "refineryd.log"), "w")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [os.path.join(build, "server", "refineryd"), "--listen", f"127.0.0.1:{self.port}",
             "--metrics-listen", f"127.0.0.1:{self.metrics_port}", "--data-dir", os.path.join(self.dir, "data"),
             "--models-dir", models, *extra], stdout=self.log, stderr=subprocess.STDOUT)

    def client(self, *args, check=True):
        out = subprocess.run([os.path.join(self.build, "client", "refinery"), "--server", f"127.0.0.1:{self.port}",
                              *args], capture_output=True, text=True)
        if check and out.returncode != 0:
            raise SystemExit(f"serving.py: refinery {' '.join(args)} failed: {out.stderr.strip()}\n"
                             f"(server log: {self.log.name})")
        return out

    def wait_healthy(self, timeout=120):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise SystemExit(f"serving.py: refineryd exited with {self.proc.returncode}; see {self.log.name}")
            if self.client("health", check=False).returncode == 0:
                return time.monotonic() - self.started
            time.sleep(0.05)
        raise SystemExit(f"serving.py: refineryd not healthy after {timeout} s; see {self.log.name}")

    def metrics(self):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as r:
            return r.read().decode()

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def metric_sum(text, name):
    total = 0.0
    for line in text.splitlines():
        m = re.match(re.escape(name) + r"(\{[^}]*\})? (\S+)$", line)
        if m:
            total += float(m.group(2))
    return total


def ratio(args):
    rows = []
    for ckpt in args.checkpoints:
        raw = json.loads(subprocess.run(
            [os.path.join(args.build, "tools", "refinery-model", "refinery-model"), "bench", "-q", "--checkpoint", ckpt,
             "--modality", "image", "--batch", str(args.batch), "--seconds", str(args.seconds), "--json"],
            check=True, capture_output=True, text=True).stdout)
        server = Server(args.build, ckpt, ["--max-batch-images", str(args.batch)])
        try:
            server.wait_healthy()
            server.client("bench", "embed", "-c", "1", "-d", "1")  # loads the model
            load = json.loads(server.client("--json", "bench", "embed", "-c", str(args.callers), "-d",
                                            str(args.seconds)).stdout)
            m = server.metrics()
            batches = metric_sum(m, "refinery_batch_size_count")
            items = metric_sum(m, "refinery_batch_size_sum")
        finally:
            server.close()
        rows.append({"checkpoint": ckpt, "architecture": raw.get("architecture"), "raw_items_per_s": raw["throughput"],
                     "raw_batch_ms": raw["latency_p50_ms"], "server_items_per_s": load["throughput"],
                     "ratio": load["throughput"] / raw["throughput"], "p50_ms": load["p50_ms"],
                     "p99_ms": load["p99_ms"], "p99_over_p50": load["p99_ms"] / load["p50_ms"],
                     "mean_batch": items / batches if batches else 0, "errors": load["errors"]})
    if args.json:
        print(json.dumps({"callers": args.callers, "batch": args.batch, "seconds": args.seconds, "runs": rows}, indent=2))
        return
    print(f"{args.callers} callers, 1 image per call, batches of up to {args.batch}, {args.seconds} s each")
    print(f"{'checkpoint':<28} {'raw/s':>8} {'server/s':>9} {'ratio':>6} {'p50 ms':>8} {'p99 ms':>8} {'p99/p50':>7} "
          f"{'batch':>6}")
    for r in rows:
        print(f"{os.path.basename(r['checkpoint']):<28} {r['raw_items_per_s']:8.1f} {r['server_items_per_s']:9.1f} "
              f"{r['ratio']:6.2f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['p99_over_p50']:7.2f} {r['mean_batch']:6.1f}")


def cold_start(args):
    rows = []
    for ckpt in args.checkpoints:
        server = Server(args.build, ckpt)
        try:
            healthy = server.wait_healthy()
            t0 = time.monotonic()
            server.client("embed", "image", IMAGE)
            first = time.monotonic() - server.started
            call = time.monotonic() - t0
            m = server.metrics()
            load = metric_sum(m, "refinery_model_load_duration_seconds_sum")
        finally:
            server.close()
        rows.append({"checkpoint": ckpt, "size_bytes": os.path.getsize(ckpt), "healthy_s": healthy,
                     "first_call_s": call, "load_s": load, "first_embedding_s": first})
    if args.json:
        print(json.dumps({"runs": rows}, indent=2))
        return
    print(f"{'checkpoint':<28} {'MB':>7} {'healthy s':>10} {'load s':>7} {'1st call s':>10} {'start->1st embedding s':>23}")
    for r in rows:
        print(f"{os.path.basename(r['checkpoint']):<28} {r['size_bytes'] / 1e6:7.0f} {r['healthy_s']:10.2f} "
              f"{r['load_s']:7.2f} {r['first_call_s']:10.2f} {r['first_embedding_s']:23.2f}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("ratio", "cold-start"):
        s = sub.add_parser(name)
        s.add_argument("checkpoints", nargs="+")
        s.add_argument("--build", default=os.path.join(ROOT, "build"))
        s.add_argument("--json", action="store_true")
        if name == "ratio":
            s.add_argument("--seconds", type=int, default=20)
            s.add_argument("--callers", type=int, default=32)
            s.add_argument("--batch", type=int, default=32)
    args = p.parse_args()
    for c in args.checkpoints:
        if not os.path.isfile(c):
            sys.exit(f"serving.py: no checkpoint file '{c}'")
    args.build = os.path.abspath(args.build)
    ratio(args) if args.command == "ratio" else cold_start(args)


if __name__ == "__main__":
    main()
