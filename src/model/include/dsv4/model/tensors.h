// dsv4 model: the one table of DeepSeek-V4 GGUF tensor names (upstream llama.cpp naming, incl.
// its MTP blocks `blk.N.nextn.*`) with the shape each must have for given hyperparameters.
//
// Source: gguf-and-llama-cpp.md §2.4 (and upstream src/models/deepseek4.cpp load_arch_tensors,
// read, not copied). Shapes are ggml order: ne[0] is the contiguous (input) dimension.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dsv4/core/status.h"
#include "dsv4/format/gguf_model.h"
#include "dsv4/model/hparams.h"

namespace dsv4 {

// What a tensor holds, for type rules.
enum class TensorClass {
  kVector,   // norms, biases, sinks, HC base/scale: f32/f16/bf16 only
  kMatrix,      // weights consumed by a matmul: any float or quantized type
  kProjection,  // kMatrix stored as FP8 in the official checkpoint (attention q/kv/output,
                // shared experts, indexer q, MTP projections): Q8_0 in upstream's files
  kExperts,  // stacked routed experts [.., .., n_expert]: any float or quantized type
  kIndex,    // tid2eid: i32
};

struct TensorSpec {
  std::string name;
  std::vector<int64_t> ne;  // ggml order
  TensorClass cls;
  bool required;
};

// Every tensor a file with hyperparameters `h` holds: globals, trunk blocks and the
// n_nextn MTP blocks, in the order upstream creates them.
std::vector<TensorSpec> expected_tensors(const HParams& h);

// The 32 tensors of antirez/ds4's standalone MTP file (`mtp.0.*`, e_proj and h_proj separate;
// real-headers/ds4-mtp.txt), an SWA block plus the MTP projections, norms and HC head.
std::vector<TensorSpec> expected_ds4_mtp_tensors(const HParams& h);

// Checks the file's tensor table against expected_tensors(h) (or, for a file holding only
// mtp.0.* tensors, expected_ds4_mtp_tensors(h)): every required tensor present with
// its exact shape and an allowed type, no unknown tensor. Reads no tensor data. Errors name the
// tensor: "blk.3.attn_q_a.weight: shape {1024, 4096}, expected {4096, 1024}".
// `problems` (optional) receives every problem found, not only the first.
Status validate_tensors(const GgufModel& f, const HParams& h,
                        std::vector<std::string>* problems = nullptr);

}  // namespace dsv4
