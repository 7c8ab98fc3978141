#!/usr/bin/env bash
# The layering check (cmake/check_layering.py) on a small tree made here:
# it must reject an include of a target that is not on the link line, and a
# third-party header whose library is not linked, naming file and line; and
# accept the same tree once the links are stated.
# Usage: layering_check_test.sh CHECK_LAYERING_PY
set -euo pipefail
CHECK=$(realpath "$1")
WORK=$(mktemp -d /tmp/refinery-layering.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

mkdir -p "$WORK/core/text" "$WORK/core/model"
cat > "$WORK/core/model/clip.h" <<'H'
#pragma once
#include <torch/torch.h>
H
cat > "$WORK/core/text/tokenizer.cpp" <<'C'
#include "core/text/tokenizer.h"

#include <utf8proc.h>
#include <torch/torch.h>

#include "core/model/clip.h"
#ifdef REFINERY_HAVE_IO
#include <opencv2/core.hpp>
#endif
C
echo '#pragma once' > "$WORK/core/text/tokenizer.h"

targets() {  # TEXT_LINKS
  cat > "$WORK/targets.json" <<J
{"t_model": {"dir": "$WORK/core/model", "files": ["$WORK/core/model/clip.h"], "links": ["torch"]},
 "t_text": {"dir": "$WORK/core/text", "files": ["$WORK/core/text/tokenizer.cpp", "$WORK/core/text/tokenizer.h"],
            "links": [$1]}}
J
}

targets '"utf8proc::utf8proc"'
if python3 "$CHECK" --root "$WORK" "$WORK/targets.json" 2> "$WORK/err.txt"; then fail "a bad include passed"; fi
grep -q 'core/text/tokenizer.cpp:4: <torch/torch.h>' "$WORK/err.txt" || fail "torch include not named: $(cat "$WORK/err.txt")"
grep -q 'core/text/tokenizer.cpp:6: "core/model/clip.h" is in t_model, which t_text does not link' "$WORK/err.txt" ||
  fail "project include not named: $(cat "$WORK/err.txt")"
grep -q opencv2 "$WORK/err.txt" && fail "an include under #ifdef REFINERY_HAVE_IO counted without --have-io"
ok "rejected, naming each include: $(tr '\n' ' ' < "$WORK/err.txt" | head -c 300)"

if python3 "$CHECK" --root "$WORK" --have-io "$WORK/targets.json" 2> "$WORK/err.txt"; then fail "passed with --have-io"; fi
grep -q 'tokenizer.cpp:8: <opencv2/core.hpp>' "$WORK/err.txt" || fail "--have-io: opencv include not checked"
ok "--have-io checks the I/O-only includes too"

targets '"utf8proc::utf8proc", "t_model", "torch"'
python3 "$CHECK" --root "$WORK" "$WORK/targets.json" || fail "a tree whose links are stated was rejected"
ok "accepted once the links are stated"

echo '#include "core/text/missing.h"' >> "$WORK/core/text/tokenizer.cpp"
if python3 "$CHECK" --root "$WORK" "$WORK/targets.json" 2> "$WORK/err.txt"; then fail "a missing header passed"; fi
grep -q '"core/text/missing.h" does not exist' "$WORK/err.txt" || fail "missing header not named: $(cat "$WORK/err.txt")"
ok "a header that does not exist is named"
