#!/usr/bin/env bash
# Builds the CUDA library for every supported architecture (too slow for CI, which builds sm_80
# only). sm_90a is needed for Hopper's FP8 tensor-core instructions.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PATH:/usr/local/cuda/bin
ARCHS=${ARCHS:-"80;89;90a;120"}
cmake --preset cuda -B build/cuda-all -DCMAKE_CUDA_ARCHITECTURES="$ARCHS" >/dev/null
cmake --build build/cuda-all -j"$(nproc)" --target dsv4_cuda cuda_dequant_test
ls -la build/cuda-all/src/backend/cuda/libdsv4_cuda.so
grep -o "arch=compute_[0-9a]*,code=[a-z_0-9]*" build/cuda-all/compile_commands.json | sort -u | sed "s/^/  /"
