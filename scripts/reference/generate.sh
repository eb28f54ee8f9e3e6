#!/usr/bin/env bash
# Regenerate every reference fixture under tests/fixtures/<config>/ (and tests/fixtures/tokenizer.json,
# tests/fixtures/SHA256SUMS). Deterministic: two runs on the same machine give identical bytes.
# Usage: scripts/reference/generate.sh [config,config,...]    (default: all four configs)
# Env:   FIXTURES_OUT=DIR to write somewhere else (default: tests/fixtures).
# Needs the reference venv (scripts/reference/setup-venv.sh). Never run by CI. ~15-25 min on 1 core.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
out="${FIXTURES_OUT:-$root/tests/fixtures}"
configs="${1:-tiny,tiny-clamp,tiny-quant,tiny-pro}"
"$here/setup-venv.sh" >/dev/null
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PYTHONHASHSEED=0 CUBLAS_WORKSPACE_CONFIG=:4096:8
cd "$here"
.venv/bin/python -m dsv4ref.fixtures --out "$out" --configs "$configs"
.venv/bin/python -m dsv4ref.finalize --out "$out"
.venv/bin/python -m dsv4ref.selfcheck --out "$out" --configs "$configs"
echo "fixtures written to $out ($(du -sh "$out" | cut -f1))"
