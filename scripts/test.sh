#!/usr/bin/env bash
# README command 2: set up, build and run every non-slow test. .ci/run calls this.
# Stages: release build + tests; asan (ASan+UBSan) build + tests, fuzz corpora replayed as tests;
# Python tests once against the asan binaries (incl. dsv4-server with the openai client); the
# scheduler over the real engine under TSan; the CUDA library compiled for one architecture.
# Prints a minutes-per-stage table at the end (copy it into the README's developer section).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}
declare -a STAGES=() TIMES=()
stage() {  # stage NAME command...
  local name=$1; shift
  local t0=$SECONDS
  echo "==> $name"
  "$@"
  STAGES+=("$name"); TIMES+=($((SECONDS - t0)))
}

stage setup bash scripts/setup.sh
stage "build release" bash -c "cmake --preset release >/dev/null && cmake --build --preset release -j$JOBS"
stage "test release" ctest --preset release -j"$JOBS"
stage "build asan" bash -c "cmake --preset asan >/dev/null && cmake --build --preset asan -j$JOBS"
stage "test asan (incl. fuzz corpora)" ctest --preset asan -j"$JOBS"
stage "pytest (asan binaries)" env DSV4_BIN_DIR="$PWD/build/asan/tools" \
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1 \
  .venv-test/bin/python -m pytest -q tests/python
stage "tsan: scheduler and engine under ThreadSanitizer" bash -c \
  "cmake --preset tsan >/dev/null && cmake --build --preset tsan -j$JOBS --target scheduler_test scheduler_model_test \
   && build/tsan/tests/runtime/scheduler_test && build/tsan/tests/engine/scheduler_model_test"
if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH=$PATH:/usr/local/cuda/bin
  stage "build cuda (sm_80 only)" bash -c \
    "cmake --preset cuda >/dev/null && cmake --build --preset cuda -j$JOBS --target dsv4_cuda cuda_dequant_test cuda_ops_test"
else
  echo "==> build cuda: skipped (no nvcc on this machine)"
fi

echo
echo "| stage | seconds |"
echo "|---|---|"
for i in "${!STAGES[@]}"; do echo "| ${STAGES[$i]} | ${TIMES[$i]} |"; done
