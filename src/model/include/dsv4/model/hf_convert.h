// dsv4 model: the official Hugging Face DeepSeek-V4 checkpoint (config.json + *.safetensors with
// official tensor names, FP8 e4m3 + 128x128 E8M0 dense weights, FP4 e2m1 + per-32 E8M0 routed
// experts; dsv4-architecture.md §3) mapped onto upstream llama.cpp's GGUF naming
// (gguf-and-llama-cpp.md §2.4, §5), and written as a GGUF without torch.
//
// Conversion rules (what upstream's converter does, measured in tests/fixtures/upstream-converter):
//   FP4 experts          -> MXFP4, stacked [n_expert]; lossless (codes and scales moved, not rounded)
//   FP8 dense            -> Q8_0 of the exact FP8 x scale values (default), or, with keep_fp8,
//                           F8_E4M3_B128 (lossless; general.file_type 41 + key dsv4.keep_fp8;
//                           rows that are not whole 128-blocks, only in tiny test models, as
//                           BF16, which holds every e4m3 x 2^k value exactly)
//   BF16 2-D             -> BF16 (bytes kept);  BF16 1-D (norms) -> F32 (exact)
//   F32                  -> F32;  I64 tid2eid [vocab, k] -> I32 {k, vocab}
//   ffn.gate.bias of hash-routed layers: dropped (unused);  mtp.*: not written (trunk file)
#pragma once

#include <string>
#include <vector>

#include "dsv4/core/status.h"
#include "dsv4/format/gguf_writer.h"
#include "dsv4/model/hparams.h"

namespace dsv4 {

// Hyperparameters from an HF config.json (keys of dsv4-architecture.md §2.1). Errors name the key.
Result<HParams> hparams_from_hf_config(const std::string& config_json_path);

// The upstream GGUF name of an official tensor name ("layers.3.attn.wq_a.weight" ->
// "blk.3.attn_q_a.weight"), "" for tensors the GGUF does not hold (scales, mtp.*), and for routed
// experts the stacked tensor's name ("layers.3.ffn.experts.7.w1.weight" -> "blk.3.ffn_gate_exps.weight").
std::string upstream_name(const std::string& official);

// Writes tokenizer.ggml.* from a tokenizer.json (vocabulary by id, token types: added special ->
// control (3), other added -> user-defined (4); merges; bos/eos/pad found by their strings, not by
// id; add_bos/add_eos false as the DeepSeek-V4 files have them). Returns the vocabulary size.
Result<int64_t> write_tokenizer_metadata(GgufWriter& w, const std::string& tokenizer_json_path,
                                         const std::string& pre);

struct ConvertOptions {
  bool keep_fp8 = false;
  // Also write the MTP block (mtp.0.* → blk.{n_layer}.* and blk.{n_layer}.nextn.*, with
  // e_proj/h_proj and the MTP HC head under dsv4's names; model.h struct Mtp). Off by default:
  // upstream llama.cpp does not load those names.
  bool include_mtp = false;
  std::string pre = "joyai-llm";  // tokenizer.ggml.pre of the real DeepSeek-V4 files
};

// Converts the checkpoint directory `dir` (config.json, tokenizer.json, one or more
// *.safetensors) to the GGUF `out`. Errors name the file and tensor at fault.
Status convert_hf_to_gguf(const std::string& dir, const std::string& out, const ConvertOptions& opt);

// The same conversion into memory (the bytes of the GGUF file convert_hf_to_gguf would write).
// With keep_fp8 this is how an official safetensors directory is loaded directly (Model::load):
// FP8 weights stay FP8 (F8_E4M3_B128 blocks, the 128×128 E8M0 scale copied to each row's
// blocks), FP4 experts stay FP4 (MXFP4 blocks), BF16/F32 as stored; all lossless.
Result<std::vector<uint8_t>> convert_hf_to_gguf_bytes(const std::string& dir, const ConvertOptions& opt);

}  // namespace dsv4
