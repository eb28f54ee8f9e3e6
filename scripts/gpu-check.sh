#!/usr/bin/env bash
# The one prepared GPU run of issue 8 (scope 4): ≤ 5 minutes, every stage timed and time-boxed,
# results appended to a log as they come, so a run cut short still leaves what it reached.
#
#   scripts/gpu-check.sh --prepare   on the CPU machine: builds the CUDA test binaries for
#                                    sm_80 + sm_90 (H100/H200 run native code, no PTX JIT) into
#                                    build/gpu-prebuilt/ with libdsv4_cuda.so, plus a copy of the
#                                    googletest sources for the fallback build (the GPU machine has
#                                    CUDA, CMake and ninja, not the Debian -dev packages).
#   scripts/gpu-check.sh             on the GPU machine (carry build/gpu-prebuilt): runs the stages.
#
# Device-tool call (one run, leaves time for a rerun):
#   run(command="bash scripts/gpu-check.sh", carry=["build/gpu-prebuilt"], timeout_s=420)
# Time boxes add up to 230 s with the prebuilt binaries (expected: well under a minute once the
# machine is up), 380 s when the fallback build runs.
# The log and the gtest XML files go to $OUT when it is set (they come back), else build/gpu-check/.
#
# Stages: env (nvidia-smi, driver, nvcc) · binaries (prebuilt, else build cuda-minimal there) ·
# cuda_dequant_test · cuda_ops_test (CudaOps vs RefOps, batch invariance) · device-to-device copy
# bandwidth · forward-pass fixture tests on CUDA (not yet possible: skipped with a note) · TODOs.
# A stage that fails or times out is logged and the next one still runs; exit status 1 if any
# stage failed.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/cuda/bin
export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}/usr/local/cuda/lib64:/usr/local/cuda/lib

export PREBUILT=build/gpu-prebuilt
ARCHS=${ARCHS:-"80;90"}

if [ "${1:-}" = "--prepare" ]; then
  set -e
  cmake -S . -B build/gpu-prebuilt-build -G Ninja -DCMAKE_BUILD_TYPE=Release -DDSV4_CUDA=ON \
    -DDSV4_MINIMAL=ON -DCMAKE_CUDA_ARCHITECTURES="$ARCHS" >/dev/null
  cmake --build build/gpu-prebuilt-build -j"${JOBS:-2}" --target dsv4_cuda cuda_dequant_test cuda_ops_test
  rm -rf "$PREBUILT"
  mkdir -p "$PREBUILT"
  cp build/gpu-prebuilt-build/tests/cuda_dequant_test build/gpu-prebuilt-build/tests/cuda_ops_test \
     build/gpu-prebuilt-build/src/backend/cuda/libdsv4_cuda.so "$PREBUILT"/
  if [ -d /usr/src/googletest ]; then cp -r /usr/src/googletest "$PREBUILT"/googletest-src; fi
  echo "archs=$ARCHS built=$(date -u +%FT%TZ) host=$(hostname)" >"$PREBUILT"/BUILD_INFO
  du -sh "$PREBUILT"
  echo "carry: $PREBUILT"
  exit 0
fi

OUTDIR=${OUT:-build/gpu-check}
mkdir -p "$OUTDIR"
LOG="$OUTDIR/gpu-check.log"
FAILED=0
T_START=$SECONDS
log() { echo "$*" | tee -a "$LOG"; }

# stage NAME LIMIT_SECONDS command...: runs under `timeout`, output into the log as it comes.
stage() {
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  log ""
  log "==> [$name] (limit ${limit}s, t=$((SECONDS - T_START))s)"
  if declare -F "$1" >/dev/null; then  # a function of this script: run it in a child bash
    timeout --kill-after=10 "$limit" bash -c "$(declare -f "$1"); $(printf '%q ' "$@")" 2>&1 | tee -a "$LOG"
  else
    timeout --kill-after=10 "$limit" "$@" 2>&1 | tee -a "$LOG"
  fi
  local rc=${PIPESTATUS[0]}
  local dt=$((SECONDS - t0))
  if [ "$rc" -eq 0 ]; then
    log "<== [$name] ok in ${dt}s"
  elif [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    log "<== [$name] TIMEOUT after ${dt}s (limit ${limit}s)"
    FAILED=1
  else
    log "<== [$name] FAILED rc=$rc in ${dt}s"
    FAILED=1
  fi
  return "$rc"
}

log "# dsv4 gpu-check $(date -u +%FT%TZ) on $(hostname)"
log "# commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown) (working tree as sent)"

env_info() {
  nvidia-smi || true
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem,compute_cap \
    --format=csv || true
  nvcc --version | tail -2 || true
  cmake --version | head -1 || true
  uname -a
}
stage "env: GPU, driver, toolkit" 20 env_info

# ---- binaries: the carried prebuilt ones, else a cuda-minimal build here ----------------------
BIN=""
prebuilt_ok() {
  [ -x "$PREBUILT/cuda_ops_test" ] && [ -x "$PREBUILT/cuda_dequant_test" ] || return 1
  cat "$PREBUILT/BUILD_INFO" 2>/dev/null
  LD_LIBRARY_PATH="$PREBUILT:${LD_LIBRARY_PATH:-}" "$PREBUILT/cuda_ops_test" --gtest_list_tests >/dev/null
}
build_here() {
  local gtest_args=()
  if ! ls /usr/lib/*/cmake/GTest/GTestConfig.cmake /usr/local/lib*/cmake/GTest/GTestConfig.cmake \
      >/dev/null 2>&1; then
    [ -d "$PREBUILT/googletest-src" ] || { echo "no GTest and no carried googletest sources"; return 1; }
    cmake -S "$PREBUILT/googletest-src" -B build/gpu-gtest-build -G Ninja -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_INSTALL_PREFIX="$PWD/build/gpu-gtest" -DBUILD_GMOCK=OFF >/dev/null &&
      cmake --build build/gpu-gtest-build -j"$(nproc)" --target install >/dev/null || return 1
    gtest_args=(-DCMAKE_PREFIX_PATH="$PWD/build/gpu-gtest")
  fi
  # sm_90 only here: the H100/H200 of the device tool (GPU_ARCH overrides)
  cmake --preset cuda-minimal -B build/gpu-build -DCMAKE_CUDA_ARCHITECTURES="${GPU_ARCH:-90}" \
    "${gtest_args[@]}" >/dev/null || return 1
  cmake --build build/gpu-build -j"$(nproc)" --target dsv4_cuda cuda_dequant_test cuda_ops_test
}
if stage "binaries: carried prebuilt ($PREBUILT)" 20 prebuilt_ok; then
  BIN=$PREBUILT
  export LD_LIBRARY_PATH="$PREBUILT:${LD_LIBRARY_PATH:-}"
elif stage "binaries: build cuda-minimal here (fallback)" 150 build_here; then
  BIN=build/gpu-build/tests
else
  log "no test binaries: the test stages are skipped"
fi

# ---- op tests ---------------------------------------------------------------------------------
if [ -n "$BIN" ]; then
  stage "cuda_dequant_test" 30 "$BIN/cuda_dequant_test" --gtest_output=xml:"$OUTDIR/cuda_dequant_test.xml"
  stage "cuda_ops_test (CudaOps vs RefOps, batch invariance)" 120 \
    "$BIN/cuda_ops_test" --gtest_filter=-CudaBench.* --gtest_output=xml:"$OUTDIR/cuda_ops_test.xml"
  # on a GPU machine a skipped op test means the device was not usable: count it as a failure
  for x in "$OUTDIR"/cuda_dequant_test.xml "$OUTDIR"/cuda_ops_test.xml; do
    skipped=$(grep -c 'result="skipped"' "$x" 2>/dev/null || true)
    if [ "${skipped:-0}" != "0" ]; then
      log "!! $(basename "$x" .xml): $skipped test(s) SKIPPED on the GPU machine (no usable device?)"
      FAILED=1
    fi
  done
  stage "device-to-device copy bandwidth" 40 env DSV4_GPU_BENCH=1 \
    "$BIN/cuda_ops_test" --gtest_filter=CudaBench.*
fi

# ---- forward-pass fixture tests on CUDA -------------------------------------------------------
log ""
log "==> [fixture model tests on CUDA] SKIPPED: the forward pass (src/model) cannot take a CudaOps"
log "    yet (no backend selection, no CUDA path in the engine); nothing to run on the GPU."

log ""
log "# TODO for a later session (issue 8), each to become a stage of this script:"
log "TODO: fixture model tests on the GPU: run tests/engine + tests/model fixture tests with the"
log "      forward pass on CudaOps (needs backend selection in src/model / runtime, e.g. -ngl)."
log "TODO: build dsv4-mkmodel and dsv4-bench in the cuda-minimal preset (tools/ needs CLI11/fmt"
log "      today, which the GPU machine lacks), then on the GPU machine:"
log "      dsv4-mkmodel --preset flash-2l --mix upstream --seed 3 --tokenizer third_party/tokenizer/deepseek-v4/tokenizer.json -o build/models/flash-2l-upstream.gguf"
log "      (and --mix ds4-q2), no download; the tokenizer must travel in the working tree."
log "TODO: dsv4-bench -m build/models/flash-2l-upstream.gguf on CUDA: tg and pp512/pp4096 at depths"
log "      0/4096/32768; bytes/token from the engine's own count vs the d2d copy GB/s above (≥ 60%);"
log "      projected 43-layer t/s beside the seed's 35.7 t/s; record date/GPU/driver in bench/RESULTS.md."
log "TODO: -ot exps=CPU and --tensor-split 1,1 over two logical devices: logits within the CPU bound."

log ""
log "# gpu-check finished in $((SECONDS - T_START))s; failed stages: $FAILED (log: $LOG)"
exit "$FAILED"
