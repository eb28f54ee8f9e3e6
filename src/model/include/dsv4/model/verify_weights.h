// dsv4 model: optional load-time scan of every tensor's values for NaN and infinity
// (reliability.md G16: safetensors and GGUF do not check them). Dequantizes each tensor row by
// row with the quant layer's reference dequantizers; reads the whole file, so it costs a pass
// over the weights (dsv4-gguf-info --verify-weights).
#pragma once

#include <string>
#include <vector>

#include "dsv4/core/status.h"
#include "dsv4/format/gguf_model.h"

namespace dsv4 {

// Errors: kInvalidFile naming the first tensor and element index holding a non-finite value
// (`problems` receives one line per bad tensor), kUnsupported for a type the quant layer cannot
// dequantize. Integer tensors are skipped.
Status verify_weights(const GgufModel& f, std::vector<std::string>* problems = nullptr);

}  // namespace dsv4
