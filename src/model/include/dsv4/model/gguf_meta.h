// dsv4 model: writing DeepSeek-V4 hyperparameters as deepseek4.* GGUF keys, the inverse of
// hparams_from_gguf() (keys: gguf-and-llama-cpp.md §2.3, as upstream's converter writes them,
// so files we make load in upstream llama.cpp).
#pragma once

#include "dsv4/format/gguf_writer.h"
#include "dsv4/model/hparams.h"

namespace dsv4 {

// Writes general.architecture and every deepseek4.* key of `h`. block_count = n_layer_all;
// nextn_predict_layers only when n_nextn > 0.
void write_hparams(GgufWriter& w, const HParams& h);

}  // namespace dsv4
