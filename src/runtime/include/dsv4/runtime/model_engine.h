// dsv4 runtime: the Engine over a DeepSeek-V4 model (GGUF file or official safetensors
// directory) on a CPU backend (issue 5; issue 6 uses it through engine.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "dsv4/core/mapped_file.h"
#include "dsv4/core/status.h"
#include "dsv4/backend/ops.h"
#include "dsv4/runtime/engine.h"

namespace dsv4::runtime {

struct ModelEngineOptions {
  std::string model_path;        // GGUF (first shard) or safetensors directory
  int n_slots = 1;               // --parallel
  int64_t n_ctx = 4096;          // per slot; 0: the model's training context
  int n_threads = 0;             // decode threads; 0: hardware concurrency
  int n_threads_batch = 0;       // prefill threads; 0: n_threads
  int64_t n_ubatch = 512;        // largest prefill chunk run as one forward call
  std::string backend = "cpu";   // "cpu" or "ref" (scalar oracle; slow)
  bool official_numerics = true; // §9.2 FP8 KV round-trip, §9.3 Hadamard + FP4 indexer
  // Activations against quantized weights (dsv4/backend/ops.h): kQ8 = 8-bit blocks and integer
  // dots (upstream llama.cpp's CPU numerics, the fast path), kF32 = exact float32.
  backend::ActQuant act_quant = backend::ActQuant::kQ8;
  int64_t checkpoint_interval = 0;  // positions between rewind checkpoints; 0: automatic
  // How the GGUF's weights are held (dsv4/core/mapped_file.h): auto, mmap (--mmap) or read
  // (--no-mmap); 2 MiB pages wherever the kernel gives them.
  LoadMode load_mode = LoadMode::kAuto;
};

// Loads the model and allocates the slots' state. Errors name the file/key/tensor at fault.
Result<std::unique_ptr<Engine>> make_model_engine(const ModelEngineOptions& opts);

}  // namespace dsv4::runtime
