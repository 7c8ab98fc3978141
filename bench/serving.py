#!/usr/bin/env python3
"""Serving benchmarks against a real refineryd, per checkpoint.

  ratio       the server under N closed-loop callers (`refinery bench embed`)
              against the raw batch forward of the same checkpoint
              (`refinery-model bench`): throughput ratio, p50 and p99. Two
              raw figures: one pass of the whole batch on all threads
              (raw/s, ratio), and the batch split over the server's passes
              side by side (--parallel-passes, raw-p/s, ratio-p): what the
              server's own per-call work costs.
  cold-start  from refineryd's start to its first embedding: health, the
              first call (which loads the weights) and the load time that
              /metrics reports (refinery_model_load_duration_seconds).
  index-adds  a vector index on the server: bulk load N random embeddings
              (`refinery index add --from FILE.safetensors`), then W callers
              add single vectors (gRPC AddItems, one item per call) for S
              seconds; search latency before and after; then a restart
              (SIGTERM, start, time until the index answers).

  python3 bench/serving.py ratio CKPT... [--build DIR] [--seconds 20] [--callers 32] [--precision fp32|bf16|int8]
              [--parallel-passes 2] [--json]
  python3 bench/serving.py cold-start CKPT... [--build DIR] [--json]
  /usr/bin/python3 bench/serving.py index-adds CKPT [--n 1000000] [--kind flat|ivf] [--nlist 1024] [--callers 8]
              [--seconds 20] [--json]
              (index-adds uses the Python client: Debian's python3 with grpcio and numpy)

Each checkpoint is served alone from a temporary --models-dir (a symlink).
Programs come from --build (default ./build). Figures are printed as a
table, or as one JSON object with --json.
"""
import argparse
import json
import threading
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
        self.argv = [os.path.join(build, "server", "refineryd"), "--listen", f"127.0.0.1:{self.port}",
                     "--metrics-listen", f"127.0.0.1:{self.metrics_port}", "--data-dir",
                     os.path.join(self.dir, "data"), "--models-dir", models, *extra]
        self.start()

    def start(self):
        self.started = time.monotonic()
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT)

    def restart(self):
        """SIGTERM, wait, start again on the same ports and data."""
        self.proc.terminate()
        self.proc.wait(timeout=120)
        self.start()

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
        def raw_bench(passes):
            return json.loads(subprocess.run(
                [os.path.join(args.build, "tools", "refinery-model", "refinery-model"), "bench", "-q", "--checkpoint",
                 ckpt, "--modality", "image", "--batch", str(args.batch), "--seconds", str(args.seconds),
                 "--precision", args.precision, "--parallel-passes", str(passes), "--json"],
                check=True, capture_output=True, text=True).stdout)
        raw = raw_bench(1)
        raw_passes = raw_bench(args.parallel_passes) if args.parallel_passes > 1 else raw
        server = Server(args.build, ckpt, ["--max-batch-images", str(args.batch), "--precision", args.precision,
                                           "--parallel-passes", str(args.parallel_passes)])
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
        rows.append({"checkpoint": ckpt, "architecture": raw.get("architecture"), "precision": args.precision,
                     "raw_items_per_s": raw["throughput"],
                     "raw_batch_ms": raw["latency_p50_ms"], "server_items_per_s": load["throughput"],
                     "ratio": load["throughput"] / raw["throughput"],
                     "parallel_passes": args.parallel_passes,
                     "raw_passes_items_per_s": raw_passes["throughput"],
                     "ratio_passes": load["throughput"] / raw_passes["throughput"], "p50_ms": load["p50_ms"],
                     "p99_ms": load["p99_ms"], "p99_over_p50": load["p99_ms"] / load["p50_ms"],
                     "mean_batch": items / batches if batches else 0, "errors": load["errors"]})
    if args.json:
        print(json.dumps({"callers": args.callers, "batch": args.batch, "seconds": args.seconds,
                          "precision": args.precision, "runs": rows}, indent=2))
        return
    print(f"{args.callers} callers, 1 image per call, {args.batch} images at once in {args.parallel_passes} pass(es), "
          f"{args.precision}, {args.seconds} s each")
    print(f"{'checkpoint':<28} {'raw/s':>8} {'raw-p/s':>8} {'server/s':>9} {'ratio':>6} {'ratio-p':>7} {'p50 ms':>8} "
          f"{'p99 ms':>8} {'p99/p50':>7} {'batch':>6}")
    for r in rows:
        print(f"{os.path.basename(r['checkpoint']):<28} {r['raw_items_per_s']:8.1f} {r['raw_passes_items_per_s']:8.1f} "
              f"{r['server_items_per_s']:9.1f} {r['ratio']:6.2f} {r['ratio_passes']:7.2f} {r['p50_ms']:8.1f} "
              f"{r['p99_ms']:8.1f} {r['p99_over_p50']:7.2f} {r['mean_batch']:6.1f}")


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


def write_embeddings(path, n, dim, seed, chunk=65536):
    """n random unit rows around 1000 centres, as refinery embed --output writes them."""
    import numpy as np
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1000, dim), dtype=np.float32)
    header = json.dumps({"embeddings": {"dtype": "F32", "shape": [n, dim], "data_offsets": [0, n * dim * 4]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(len(header).to_bytes(8, "little") + header)
        for begin in range(0, n, chunk):
            m = min(chunk, n - begin)
            x = centres[rng.integers(0, 1000, m)] + 0.5 * rng.standard_normal((m, dim), dtype=np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            f.write(x.astype("<f4").tobytes())
    return centres


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, max(0, int(round(p * len(values) + 0.5)) - 1))] if values else 0.0


def index_adds(args):
    sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
    import numpy as np
    from refinery_client import Client
    server = Server(args.build, args.checkpoints[0])
    try:
        server.wait_healthy()
        server.client("index", "create", "grow", "--kind", args.kind, "--nlist", str(args.nlist))
        dim = json.loads(server.client("--json", "index", "show", "grow").stdout)["dim"]
        path = os.path.join(server.dir, "bulk.safetensors")
        centres = write_embeddings(path, args.n, dim, seed=1)
        t0 = time.monotonic()
        server.client("index", "add", "grow", "--from", path, "--id-prefix", "bulk-")
        bulk_s = time.monotonic() - t0
        os.remove(path)
        address = f"127.0.0.1:{server.port}"
        rng = np.random.default_rng(2)

        def query():
            x = centres[rng.integers(0, 1000)] + 0.5 * rng.standard_normal(dim).astype(np.float32)
            return (x / np.linalg.norm(x)).tolist()

        def search_ms(client, count=100):
            out = []
            for _ in range(count):
                q = query()
                t = time.monotonic()
                client.search("grow", vector=q, k=10)
                out.append((time.monotonic() - t) * 1e3)
            return out

        with Client(address) as c:
            before = search_ms(c)
        stop = threading.Event()
        latencies, lock = [], threading.Lock()

        def caller(w):
            local_rng = np.random.default_rng(100 + w)
            mine = []
            with Client(address) as c:
                i = 0
                while not stop.is_set():
                    x = centres[local_rng.integers(0, 1000)] + 0.5 * local_rng.standard_normal(dim).astype(np.float32)
                    t = time.monotonic()
                    c.add_to_index("grow", vectors={f"w{w}-{i}": (x / np.linalg.norm(x)).tolist()})
                    mine.append((time.monotonic() - t) * 1e3)
                    i += 1
            with lock:
                latencies.extend(mine)

        threads = [threading.Thread(target=caller, args=(w,)) for w in range(args.callers)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(args.seconds)
        stop.set()
        for t in threads:
            t.join()
        adds_s = time.monotonic() - t0
        with Client(address) as c:
            after = search_ms(c)
            size = json.loads(server.client("--json", "index", "show", "grow").stdout)["size"]
        server.restart()
        healthy = server.wait_healthy(timeout=600)
        restarted_size = json.loads(server.client("--json", "index", "show", "grow").stdout)["size"]
        server.log.flush()
        log_text = open(server.log.name).read()
        replay = re.findall(r'index "grow": (\d+) items; replayed (\d+) logged changes in ([0-9.]+) s', log_text)
        if not replay:
            print("serving.py: no replay line in the server log:\n" +
                  "\n".join(l for l in log_text.splitlines() if "index" in l), file=sys.stderr)
    finally:
        server.close()
    if restarted_size != size:
        sys.exit(f"serving.py: the restart lost items: {size} before, {restarted_size} after")
    row = {"checkpoint": args.checkpoints[0], "kind": args.kind, "nlist": args.nlist, "n": args.n, "dim": dim, "callers": args.callers,
           "bulk_seconds": bulk_s, "bulk_items_per_s": args.n / bulk_s,
           "single_adds": len(latencies), "single_adds_per_s": len(latencies) / adds_s,
           "add_p50_ms": percentile(latencies, 0.5), "add_p99_ms": percentile(latencies, 0.99),
           "add_max_ms": max(latencies) if latencies else 0,
           "search_before_p50_ms": percentile(before, 0.5), "search_before_p99_ms": percentile(before, 0.99),
           "search_after_p50_ms": percentile(after, 0.5), "search_after_p99_ms": percentile(after, 0.99),
           "items": size, "restart_to_healthy_s": healthy,
           "restart_replayed": int(replay[-1][1]) if replay else 0,
           "restart_index_open_s": float(replay[-1][2]) if replay else None}
    if args.json:
        print(json.dumps(row, indent=2))
        return
    print(f"{args.kind} index of {args.n} x {dim} on the server ({os.path.basename(args.checkpoints[0])})")
    print(f"  bulk add --from FILE: {bulk_s:.1f} s ({row['bulk_items_per_s']:.0f} items/s)")
    print(f"  single adds, {args.callers} callers, 1 item per call: {row['single_adds_per_s']:.0f} items/s; "
          f"p50 {row['add_p50_ms']:.2f} ms, p99 {row['add_p99_ms']:.2f} ms, max {row['add_max_ms']:.0f} ms")
    print(f"  search k=10: before p50 {row['search_before_p50_ms']:.2f} / p99 {row['search_before_p99_ms']:.2f} ms; "
          f"after p50 {row['search_after_p50_ms']:.2f} / p99 {row['search_after_p99_ms']:.2f} ms")
    print(f"  restart with {size} items: healthy after {healthy:.2f} s "
          f"(index opened in {row['restart_index_open_s']} s, {row['restart_replayed']} logged changes replayed)")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("ratio", "cold-start", "index-adds"):
        s = sub.add_parser(name)
        s.add_argument("checkpoints", nargs="+" if name != "index-adds" else 1)
        s.add_argument("--build", default=os.path.join(ROOT, "build"))
        s.add_argument("--json", action="store_true")
        if name == "ratio":
            s.add_argument("--seconds", type=int, default=20)
            s.add_argument("--callers", type=int, default=32)
            s.add_argument("--batch", type=int, default=32)
            s.add_argument("--precision", choices=["fp32", "bf16", "int8"], default="fp32",
                           help="the raw forward's and the server's (--precision)")
            s.add_argument("--parallel-passes", type=int, default=2,
                           help="the server's passes side by side on the CPU (its auto is 2), and the raw-p forward's")
        if name == "index-adds":
            s.add_argument("--n", type=int, default=1000000)
            s.add_argument("--kind", choices=["flat", "ivf"], default="ivf")
            s.add_argument("--nlist", type=int, default=1024, help="IVF cells (0: automatic, retrained as n grows)")
            s.add_argument("--callers", type=int, default=8)
            s.add_argument("--seconds", type=int, default=20)
    args = p.parse_args()
    for c in args.checkpoints:
        if not os.path.isfile(c):
            sys.exit(f"serving.py: no checkpoint file '{c}'")
    args.build = os.path.abspath(args.build)
    {"ratio": ratio, "cold-start": cold_start, "index-adds": index_adds}[args.command](args)


if __name__ == "__main__":
    main()
