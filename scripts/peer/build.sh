#!/usr/bin/env bash
# Build the upstream llama.cpp peer (CPU only) outside git, plus our logits harness.
# Idempotent: re-running skips the download/extract when the sdist is already present and
# re-runs the (incremental) CMake build.
#
# Layout (all under build/peer/, which is ignored by git):
#   build/peer/dl/llama_cpp_python-0.3.36.tar.gz   the PyPI sdist
#   build/peer/src/llama_cpp_python-0.3.36/        extracted sdist; upstream tree in vendor/llama.cpp
#   build/peer/build/                              CMake build of vendor/llama.cpp (Release, CPU)
#   build/peer/bin/dump_logits                     our harness (scripts/peer/dump_logits.cpp)
#   build/peer/bin/bench_worker                    our harness (scripts/peer/bench_worker.cpp, bench/pair-bench.py)
#
# Env: JOBS (default 2), NICE (default 10), LCP_VERSION (default 0.3.36).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
PEER="$ROOT/build/peer"
VER="${LCP_VERSION:-0.3.36}"
JOBS="${JOBS:-2}"
NICE="${NICE:-10}"
SDIST="$PEER/dl/llama_cpp_python-$VER.tar.gz"
SRC="$PEER/src/llama_cpp_python-$VER"
LLAMA="$SRC/vendor/llama.cpp"
BLD="$PEER/build"
EXPECTED_SHA256_0_3_36="832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"

mkdir -p "$PEER/dl" "$PEER/src" "$PEER/bin"

# 1. sdist (source only, no wheels, no deps)
if [[ ! -f "$SDIST" ]]; then
    python3 -m pip download --no-deps --no-binary :all: "llama-cpp-python==$VER" -d "$PEER/dl"
fi
SHA="$(sha256sum "$SDIST" | cut -d' ' -f1)"
echo "sdist: $SDIST sha256=$SHA"
if [[ "$VER" == "0.3.36" && "$SHA" != "$EXPECTED_SHA256_0_3_36" ]]; then
    echo "WARNING: sdist sha256 differs from the one recorded in scripts/peer/PINNED.md" >&2
fi

# 2. extract
if [[ ! -f "$LLAMA/CMakeLists.txt" ]]; then
    tar -xzf "$SDIST" -C "$PEER/src"
fi
if [[ ! -f "$LLAMA/src/models/deepseek4.cpp" ]]; then
    echo "ERROR: $LLAMA/src/models/deepseek4.cpp is missing: this sdist has no DeepSeek-V4 support." >&2
    echo "       Use a newer llama-cpp-python sdist (LCP_VERSION=...)." >&2
    exit 1
fi
# The sdist carries no .git; the vendored commit is named in the sdist's CHANGELOG.md.
COMMIT="$(sed -n "/^## \[$VER\]/,/^## \[/p" "$SRC/CHANGELOG.md" | grep -o 'ggml-org/llama.cpp@[0-9a-f]*' | head -1 | cut -d@ -f2 || true)"
echo "vendored llama.cpp commit (from CHANGELOG.md): ${COMMIT:-unknown}"

# 3. configure + build upstream (CPU only; no OpenSSL, no web UI download)
# (re-running configure on an existing cache is cheap and keeps the options in sync)
# LLAMA_BUILD_SERVER=ON is needed for the llama-cli target (tools/cli is only added with the server);
# only the targets listed below are built, not the server itself.
nice -n "$NICE" cmake -S "$LLAMA" -B "$BLD" \
        -DCMAKE_BUILD_TYPE=Release \
        -DBUILD_SHARED_LIBS=ON \
        -DGGML_NATIVE=ON \
        -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF \
        -DLLAMA_OPENSSL=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF \
        -DLLAMA_BUILD_TESTS=ON -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_SERVER=ON \
        -DLLAMA_BUILD_COMMIT="${COMMIT:-unknown}" >/dev/null
TARGETS=(llama llama-bench llama-cli llama-completion llama-tokenize llama-quantize test-llama-archs)
if [[ -n "${EXTRA_TARGETS:-}" ]]; then TARGETS+=($EXTRA_TARGETS); fi
nice -n "$NICE" cmake --build "$BLD" --config Release -j "$JOBS" --target "${TARGETS[@]}"

# 4. our harnesses (dump_logits: logits of a fixed prompt; bench_worker: timed runs on request for
#    bench/pair-bench.py), plain compiler commands against the built libllama
LIBDIR="$(dirname "$(find "$BLD" -name 'libllama.so' -print -quit)")"
GGML_LIBDIR="$(dirname "$(find "$BLD" -name 'libggml.so' -print -quit)")"
for h in dump_logits bench_worker; do
    if [[ ! -x "$PEER/bin/$h" || "$HERE/$h.cpp" -nt "$PEER/bin/$h" ]]; then
        # build to a temporary name and rename, so a running harness is never overwritten in place
        nice -n "$NICE" g++ -std=c++17 -O2 -Wall -Wextra \
            -I"$LLAMA/include" -I"$LLAMA/ggml/include" \
            "$HERE/$h.cpp" -o "$PEER/bin/$h.new" \
            -L"$LIBDIR" -L"$GGML_LIBDIR" -lllama -lggml -lggml-base -lggml-cpu \
            -Wl,-rpath,"$LIBDIR" -Wl,-rpath,"$GGML_LIBDIR"
        mv "$PEER/bin/$h.new" "$PEER/bin/$h"
    fi
done
echo "built: $BLD/bin/{llama-bench,llama-cli,llama-tokenize,llama-quantize,test-llama-archs}, $PEER/bin/{dump_logits,bench_worker}"
