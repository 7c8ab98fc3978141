#!/usr/bin/env python3
"""Fails the build when a file includes what its target does not link.

Reads the JSON that cmake/RefineryTargets.cmake writes: for every Refinery
target, its folder, its files and what it links directly. Then for every
#include in those files:
  - a project header ("core/text/bpe_tokenizer.h", "server/store/job_store.h",
    "support/fixture.h") must belong to the file's own target or to a target
    on its link line;
  - a third-party header (<torch/...>, <opencv2/...>, <grpcpp/...>, ...) must
    come from a library on its link line.
So a target's link line is the whole truth about its dependencies: the
tokenizer cannot grow a LibTorch include, nor the job store a batcher one.
Includes inside `#ifdef REFINERY_HAVE_IO` count only with --have-io.
Exit status 1 lists every offending include as file:line.
"""
import argparse
import json
import os
import re
import sys

# Third-party include prefixes -> link names that provide them (any one).
THIRD_PARTY = [
    (("torch/", "ATen/", "c10/", "caffe2/"), ("torch", "torch_library", "TORCH")),
    (("grpcpp/", "grpc/", "grpc++/"), ("gRPC::grpc++", "gRPC::grpc++_reflection", "refinery_proto")),
    (("google/protobuf/",), ("protobuf::libprotobuf", "refinery_proto", "refinery_proto_messages")),
    (("refinery/grpc_code_name.h",), ("refinery_proto",)),
    (("refinery/",), ("refinery_proto", "refinery_proto_messages")),
    (("opencv2/",), ("refinery_opencv",)),
    (("faiss/",), ("faiss",)),
    (("utf8proc.h",), ("utf8proc::utf8proc",)),
    (("zlib.h",), ("ZLIB::ZLIB",)),
    (("sqlite3.h",), ("SQLite::SQLite3",)),
    (("httplib.h",), ("PkgConfig::HTTPLIB",)),
    (("openssl/",), ("OpenSSL::SSL", "OpenSSL::Crypto")),
    (("nlohmann/",), ("nlohmann_json::nlohmann_json",)),
    (("CLI/",), ("CLI11::CLI11",)),
    (("gtest/", "gmock/"), ("GTest::gtest", "GTest::gtest_main", "GTest::gmock")),
    (("omp.h",), ("OpenMP::OpenMP_CXX",)),
    (("prometheus/",), ("prometheus-cpp::core", "prometheus-cpp::pull")),
    (("plplot/",), ("refinery_plplot",)),
]
# Project include roots: "core/...", "server/..." resolve against the
# checkout, "support/..." and "server/test_server.h" against tests/.
PROJECT_PREFIXES = ("core/", "spec/", "server/", "client/", "tools/", "bench/", "support/")

INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')
IFDEF_IO = re.compile(r'^\s*#\s*ifdef\s+REFINERY_HAVE_IO\b')
IF_ANY = re.compile(r'^\s*#\s*if')
ENDIF = re.compile(r'^\s*#\s*endif')
ELSE = re.compile(r'^\s*#\s*(else|elif)')


def includes(path, have_io):
    """Yields (line number, delimiter, header) for the includes that count."""
    stack = []  # per open #if: True where the block is REFINERY_HAVE_IO
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if IFDEF_IO.match(line):
                stack.append("io")
                continue
            if IF_ANY.match(line):
                stack.append("other")
                continue
            if ELSE.match(line) and stack:
                if stack[-1] == "io":
                    stack[-1] = "not-io"
                continue
            if ENDIF.match(line) and stack:
                stack.pop()
                continue
            m = INCLUDE.match(line)
            if not m:
                continue
            if not have_io and "io" in stack:
                continue
            if have_io and "not-io" in stack:
                continue
            yield n, m.group(1), m.group(2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("targets_json")
    ap.add_argument("--root", required=True, help="the checkout")
    ap.add_argument("--have-io", action="store_true")
    args = ap.parse_args()
    targets = json.load(open(args.targets_json))
    root = os.path.realpath(args.root)

    owner = {}  # header path -> target
    for name, t in targets.items():
        for f in t["files"]:
            owner[os.path.realpath(f)] = name

    def resolve(header):
        for base in (root, os.path.join(root, "tests")):
            p = os.path.realpath(os.path.join(base, header))
            if p in owner or os.path.exists(p):
                return p
        return None

    errors = []
    for name, t in sorted(targets.items()):
        links = set(t["links"])
        for f in t["files"]:
            rel = os.path.relpath(f, root)
            for n, delim, header in includes(f, args.have_io):
                where = "%s:%d" % (rel, n)
                if delim == '"' and header.startswith(PROJECT_PREFIXES) or header == "test_server.h":
                    p = resolve(header)
                    if p is None:
                        errors.append('%s: "%s" does not exist' % (where, header))
                        continue
                    dep = owner.get(p)
                    if dep is None:
                        errors.append('%s: "%s" belongs to no target of this build' % (where, header))
                    elif dep != name and dep not in links:
                        errors.append('%s: "%s" is in %s, which %s does not link' % (where, header, dep, name))
                    continue
                for prefixes, providers in THIRD_PARTY:
                    if header.startswith("refinery/") and header.endswith(".grpc.pb.h"):
                        prefixes, providers = ("refinery/",), ("refinery_proto",)  # the services need gRPC
                    if header.startswith(prefixes):
                        if not any(p in links or any(l.endswith("/lib%s.so" % p) for l in links) for p in providers):
                            errors.append("%s: <%s> needs one of %s on the link line of %s"
                                          % (where, header, ", ".join(providers), name))
                        break
    if errors:
        print("layering check failed: every include must be on its target's link line "
              "(cmake/RefineryTargets.cmake)", file=sys.stderr)
        for e in errors:
            print("  " + e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
