// dsv4-mkmodel: writes a synthetic DeepSeek-V4 GGUF of any size: seeded random weights, upstream
// naming and keys (so upstream llama.cpp loads it), the vocabulary of a given tokenizer.json, a
// chosen layer schedule and quant mix. Used by tests, benchmarks and as the server's default
// model. Its weights are random: it produces no meaningful text.
//
// Quantized tensors are written as valid random blocks (random codes, scales sized to the
// tensor's target standard deviation), not by quantizing floats: the benchmark needs the right
// bytes in the right layout, not a particular function.
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "dsv4/core/dtypes.h"
#include "dsv4/format/ggml_types.h"
#include "dsv4/format/gguf_writer.h"
#include "dsv4/model/gguf_meta.h"
#include "dsv4/model/hf_convert.h"
#include "dsv4/model/hparams.h"
#include "dsv4/model/tensors.h"
#include "dsv4/quant/blocks.h"
#include "dsv4/quant/quant.h"

namespace {

using dsv4::HParams;
using dsv4::Status;
using dsv4::TensorClass;
using dsv4::TensorSpec;

constexpr uint32_t kF32 = 0, kF16 = 1, kQ8_0 = 8, kQ2_K = 10, kQ4_K = 12, kQ6_K = 14, kIQ2_XXS = 16,
                   kIQ2_XS = 17, kIQ3_XXS = 18, kI32 = 26, kBF16 = 30, kMXFP4 = 39, kF8B128 = 42;

HParams preset(const std::string& name) {
  HParams h;
  h.n_head_kv = 1;
  h.n_hc = 4;
  h.hc_sinkhorn_iters = 20;
  h.hc_eps = 1e-6f;
  h.rms_eps = 1e-6f;
  h.rope_freq_base = 10000.f;
  h.compress_rope_freq_base = 160000.f;
  h.rope_yarn_factor = 16.f;
  h.rope_yarn_orig_ctx = 65536;
  h.rope_yarn_beta_fast = 32.f;
  h.rope_yarn_beta_slow = 1.f;
  h.n_expert_shared = 1;
  h.expert_weights_norm = true;
  h.n_rot = 64;
  if (name == "tiny") {
    h.n_embd = 64; h.n_head = 4; h.head_dim = 192; h.q_lora_rank = 32; h.o_groups = 2;
    h.o_lora_rank = 32; h.n_swa = 16; h.n_indexer_head = 4; h.indexer_head_dim = 128;
    h.indexer_top_k = 8; h.n_expert = 8; h.n_expert_used = 2; h.n_ff_exp = 32;
    h.n_hash_layers = 2; h.n_ctx_train = 4096; h.expert_weights_scale = 1.5f;
    h.compress_ratios = {0, 4, 128, 4};
  } else if (name == "small") {
    h.n_embd = 512; h.n_head = 8; h.head_dim = 192; h.q_lora_rank = 256; h.o_groups = 2;
    h.o_lora_rank = 256; h.n_swa = 128; h.n_indexer_head = 8; h.indexer_head_dim = 128;
    h.indexer_top_k = 64; h.n_expert = 32; h.n_expert_used = 4; h.n_ff_exp = 256;
    h.n_hash_layers = 1; h.n_ctx_train = 65536; h.expert_weights_scale = 1.5f;
    h.compress_ratios = {0, 4, 128, 4};
  } else if (name == "flash" || name == "flash-2l") {
    // DeepSeek-V4-Flash (dsv4-architecture.md §2.1)
    h.n_embd = 4096; h.n_head = 64; h.head_dim = 512; h.q_lora_rank = 1024; h.o_groups = 8;
    h.o_lora_rank = 1024; h.n_swa = 128; h.n_indexer_head = 64; h.indexer_head_dim = 128;
    h.indexer_top_k = 512; h.n_expert = 256; h.n_expert_used = 6; h.n_ff_exp = 2048;
    h.n_ctx_train = 1048576; h.expert_weights_scale = 1.5f;
    if (name == "flash") {
      h.n_hash_layers = 3;
      for (int il = 0; il < 43; ++il) h.compress_ratios.push_back(il < 2 ? 0 : (il % 2 ? 128 : 4));
    } else {
      h.n_hash_layers = 0;  // one CSA and one HCA layer, both score-routed
      h.compress_ratios = {4, 128};
    }
  } else {
    h.n_embd = 0;  // unknown preset
  }
  return h;
}

// ---- random tensors ------------------------------------------------------------------------------

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// Standard deviation and mean of a tensor's values, by role. Vectors that the architecture
// treats as biases or mixing parameters get real magnitude (σ ≈ 1), as the reference fixtures do.
void value_law(const TensorSpec& s, float& mean, float& sigma) {
  const std::string& n = s.name;
  mean = 0;
  if (n.find("norm.weight") != std::string::npos) {
    mean = 1.f;
    sigma = 0.1f;
  } else if (s.cls == TensorClass::kVector) {
    sigma = n.find("_scale") != std::string::npos ? 0.3f : 1.f;
  } else if (n.find("compressor_ape") != std::string::npos) {
    sigma = 1.f;
  } else {
    sigma = 1.f / std::sqrt(static_cast<float>(s.ne[0]));  // fan-in scaling keeps activations O(1)
  }
}

// Type of a tensor in a quant mix (n_last_layer: index of the last trunk layer).
uint32_t type_for(const std::string& mix, const TensorSpec& s, int64_t n_last_layer) {
  if (s.cls == TensorClass::kIndex) return kI32;
  if (s.cls == TensorClass::kVector || mix == "f32") return kF32;
  const std::string& n = s.name;
  const bool experts = s.cls == TensorClass::kExperts;
  const bool projection = s.cls == TensorClass::kProjection;
  if (mix == "f16") return kF16;
  if (mix == "bf16") return kBF16;
  if (mix == "upstream") {  // upstream converter: MXFP4 experts, Q8_0 projections, BF16/F32 rest
    if (experts) return kMXFP4;
    if (projection) return kQ8_0;
    if (n.find("hc_") != std::string::npos || n.find("_ape.") != std::string::npos) return kF32;
    return kBF16;
  }
  if (mix == "ds4-q2" || mix == "ds4-q4") {  // antirez/ds4 q2: IQ2_XXS gate/up, Q2_K down; q4: Q4_K
    // all three (real-headers/ds4-q4.txt); both: Q8_0 projections + output, F16 rest
    if (experts && mix == "ds4-q4") return kQ4_K;
    if (experts) return n.find("ffn_down_exps") != std::string::npos ? kQ2_K : kIQ2_XXS;
    if (projection || n == "output.weight") return kQ8_0;
    return kF16;
  }
  if (mix == "unsloth-ud") {  // unsloth UD-IQ3_XXS-like (real-headers/unsloth-UD-IQ3_XXS-0731.txt):
    // IQ3_XXS / IQ2_XS experts varying by layer, MXFP4 down in the last layer, Q6_K embeddings,
    // output and shared experts, Q8_0 attention projections, BF16 router, F32 HC/ape/small
    const bool odd = n.rfind("blk.", 0) == 0 && (std::stoi(n.substr(4)) % 2) == 1;
    const bool last_down = n.find("ffn_down_exps") != std::string::npos && n.find("blk.") == 0 &&
                           std::stoi(n.substr(4)) == n_last_layer;
    if (experts) return last_down ? kMXFP4 : (odd && n.find("ffn_down") == std::string::npos ? kIQ2_XS : kIQ3_XXS);
    if (n == "token_embd.weight" || n == "output.weight" || n.find("shexp") != std::string::npos) return kQ6_K;
    if (projection) return kQ8_0;
    if (n.find("hc_") != std::string::npos || n.find("_ape.") != std::string::npos || n.find("indexer.proj") != std::string::npos) return kF32;
    return kBF16;
  }
  if (mix == "nsparks") {  // nsparks FP4-FP8-native: MXFP4 experts, FP8 projections kept as
    // F8_E4M3_B128 (type 42, file type 41; not loadable by upstream llama.cpp), BF16 rest
    if (experts) return kMXFP4;
    if (projection && s.ne[0] % 128 == 0) return kF8B128;
    if (n.find("hc_") != std::string::npos || n.find("_ape.") != std::string::npos) return kF32;
    return kBF16;
  }
  return kF32;
}

// Bytes of a tensor of `type`, or 0 if ne[0] is not a multiple of the type's block size.
uint64_t tensor_bytes(uint32_t type, const std::vector<int64_t>& ne) {
  const dsv4::GgmlTypeTraits* t =
      type == kF8B128 ? &dsv4::ggml_type_f8_e4m3_b128() : dsv4::ggml_type_traits(type);
  const auto row = t != nullptr ? dsv4::ggml_row_bytes(*t, ne[0]) : std::nullopt;
  if (!row) return 0;
  uint64_t rows = 1;
  for (size_t d = 1; d < ne.size(); ++d) rows *= static_cast<uint64_t>(ne[d]);
  return *row * rows;
}

void put_f16(uint8_t* p, float v) {
  const uint16_t h = dsv4::f32_to_fp16(v);
  std::memcpy(p, &h, 2);
}

// The block structs (dsv4/quant/blocks.h) are byte arrays and u16s: any 2-byte-aligned buffer
// holds them. write_streaming's buffers come from std::vector, which is aligned far beyond that.

// Random blocks of a K- or IQ-quant: every code, sign and sub-scale pattern is a valid block, so
// random bytes with finite super-block scales (d, and dmin where the type has one) are valid data.
// The scales are calibrated with the reference dequantizer so that the values' RMS is `sigma`.
template <class B>
void random_blocks(std::span<uint8_t> out, std::mt19937_64& rng, float sigma, dsv4::quant::QType type) {
  auto* blk = reinterpret_cast<B*>(out.data());
  const size_t nb = out.size() / sizeof(B);
  auto set_scale = [&](size_t b, float d) {
    blk[b].d = dsv4::f32_to_fp16(d);
    if constexpr (requires { blk[b].dmin; }) blk[b].dmin = dsv4::f32_to_fp16(d);
  };
  for (size_t b = 0; b < nb; ++b) {
    auto* bytes = reinterpret_cast<uint8_t*>(&blk[b]);
    for (size_t i = 0; i < sizeof(B); ++i) bytes[i] = static_cast<uint8_t>(rng());
    set_scale(b, 1.f);
  }
  const size_t probe = std::min<size_t>(nb, 16);
  const int64_t per = dsv4::quant::qtype_info(type)->block_size;
  std::vector<float> v(probe * static_cast<size_t>(per));
  double ss = 0;
  if (probe > 0 && dsv4::quant::dequantize_row(type, blk, v.data(), static_cast<int64_t>(v.size()))) {
    for (float x : v) ss += static_cast<double>(x) * x;
  }
  const double rms = probe > 0 ? std::sqrt(ss / static_cast<double>(v.size())) : 0;
  const float d = rms > 0 ? static_cast<float>(sigma / rms) : sigma;
  for (size_t b = 0; b < nb; ++b) set_scale(b, d);
}
// Fills `out` with values (or blocks) following (mean, sigma). tid2eid rows hold distinct experts.
void fill_random(const TensorSpec& s, uint32_t type, uint64_t seed, int64_t n_expert,
                 std::span<uint8_t> out) {
  std::mt19937_64 rng(seed ^ fnv1a(s.name));
  float mean = 0, sigma = 1;
  value_law(s, mean, sigma);
  std::normal_distribution<float> normal(mean, sigma);
  uint8_t* p = out.data();
  const size_t n = out.size();
  switch (type) {
    case kI32: {
      // ne = {n_expert_used, n_vocab}: each row a random distinct subset of experts
      const int64_t k = s.ne[0];
      std::vector<int32_t> perm(static_cast<size_t>(n_expert));
      for (int64_t r = 0; r < s.ne[1]; ++r) {
        for (int64_t e = 0; e < n_expert; ++e) perm[static_cast<size_t>(e)] = static_cast<int32_t>(e);
        for (int64_t i = 0; i < k; ++i) {
          const int64_t j = i + static_cast<int64_t>(rng() % static_cast<uint64_t>(n_expert - i));
          std::swap(perm[static_cast<size_t>(i)], perm[static_cast<size_t>(j)]);
        }
        std::memcpy(p + static_cast<size_t>(r * k) * 4, perm.data(), static_cast<size_t>(k) * 4);
      }
      return;
    }
    case kF32:
      for (size_t i = 0; i < n / 4; ++i) {
        const float v = normal(rng);
        std::memcpy(p + 4 * i, &v, 4);
      }
      return;
    case kF16:
      for (size_t i = 0; i < n / 2; ++i) put_f16(p + 2 * i, normal(rng));
      return;
    case kBF16:
      for (size_t i = 0; i < n / 2; ++i) {
        const uint16_t h = dsv4::f32_to_bf16(normal(rng));
        std::memcpy(p + 2 * i, &h, 2);
      }
      return;
    case kQ8_0: {  // |q| ≤ 127, d so that q·d has std ≈ sigma
      auto* blk = reinterpret_cast<dsv4::quant::BlockQ8_0*>(p);
      for (size_t b = 0; b < n / sizeof *blk; ++b) {
        blk[b].d = dsv4::f32_to_fp16(sigma / 40.f);
        for (auto& q : blk[b].qs) q = static_cast<int8_t>(std::clamp(std::round(normal(rng) / sigma * 40.f), -127.f, 127.f));
      }
      return;
    }
    case kMXFP4: {  // value = e2m1(code)·2^(e−127); random codes have std ≈ 2.9
      auto* blk = reinterpret_cast<dsv4::quant::BlockMXFP4*>(p);
      const int e = 127 + static_cast<int>(std::lround(std::log2(sigma / 2.9f)));
      for (size_t b = 0; b < n / sizeof *blk; ++b) {
        blk[b].e = static_cast<uint8_t>(std::clamp(e, 1, 254));
        for (auto& q : blk[b].qs) q = static_cast<uint8_t>(rng());
      }
      return;
    }
    case kQ2_K: random_blocks<dsv4::quant::BlockQ2_K>(out, rng, sigma, dsv4::quant::QType::kQ2_K); return;
    case kQ4_K: random_blocks<dsv4::quant::BlockQ4_K>(out, rng, sigma, dsv4::quant::QType::kQ4_K); return;
    case kQ6_K: random_blocks<dsv4::quant::BlockQ6_K>(out, rng, sigma, dsv4::quant::QType::kQ6_K); return;
    case kIQ2_XXS: random_blocks<dsv4::quant::BlockIQ2_XXS>(out, rng, sigma, dsv4::quant::QType::kIQ2_XXS); return;
    case kIQ2_XS: random_blocks<dsv4::quant::BlockIQ2_XS>(out, rng, sigma, dsv4::quant::QType::kIQ2_XS); return;
    case kIQ3_XXS: random_blocks<dsv4::quant::BlockIQ3_XXS>(out, rng, sigma, dsv4::quant::QType::kIQ3_XXS); return;
    case kF8B128: {  // {e8m0 scale; 128 e4m3 codes}: random non-NaN codes (|x| ≤ 448), scale ≈ sigma/100
      auto* blk = reinterpret_cast<dsv4::quant::BlockF8E4M3B128*>(p);
      const int e = 127 + static_cast<int>(std::lround(std::log2(sigma / 100.f)));
      for (size_t b = 0; b < n / sizeof *blk; ++b) {
        blk[b].e = static_cast<uint8_t>(std::clamp(e, 1, 254));
        for (auto& q : blk[b].qs) {
          do q = static_cast<uint8_t>(rng()); while ((q & 0x7f) == 0x7f);
        }
      }
      return;
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dsv4-mkmodel: write a synthetic DeepSeek-V4 GGUF (random weights) for tests and benchmarks"};
  std::string out, tokenizer, preset_name = "tiny", mix = "f32", ratios_s, pre = "joyai-llm";
  uint64_t seed = 42;
  int64_t n_layer = -1, n_hash = -1, n_expert = -1, n_embd = -1, n_ff = -1;
  app.add_option("-o,--output", out, "output GGUF path")->required();
  app.add_option("--tokenizer", tokenizer, "tokenizer.json whose vocabulary the model gets")->required();
  app.add_option("--preset", preset_name, "tiny | small | flash-2l | flash")->capture_default_str();
  app.add_option("--mix", mix, "f32 | f16 | bf16 | upstream (MXFP4 experts, Q8_0 dense) | ds4-q2 "
                               "(IQ2_XXS gate/up, Q2_K down, Q8_0 dense, F16 small) | ds4-q4 (Q4_K experts, rest as ds4-q2) | unsloth-ud "
                               "(IQ3_XXS/IQ2_XS experts, MXFP4 last down, Q6_K/Q8_0 dense) | nsparks "
                               "(MXFP4 experts, F8_E4M3_B128 projections)")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "f16", "bf16", "upstream", "ds4-q2", "ds4-q4", "unsloth-ud", "nsparks"}));
  app.add_option("--seed", seed, "random seed")->capture_default_str();
  app.add_option("--ratios", ratios_s, "layer schedule, e.g. 0,0,4,128 (overrides the preset's)");
  app.add_option("--n-layer", n_layer, "trunk layers (schedule repeats the preset's pattern)");
  app.add_option("--n-hash-layers", n_hash, "hash-routed layers");
  app.add_option("--n-expert", n_expert, "routed experts");
  app.add_option("--n-embd", n_embd, "hidden size");
  app.add_option("--n-ff-exp", n_ff, "expert FFN width");
  app.add_option("--pre", pre, "tokenizer.ggml.pre")->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  HParams h = preset(preset_name);
  if (h.n_embd == 0) {
    fmt::print(stderr, "error: unknown preset '{}'\n", preset_name);
    return 2;
  }
  if (!ratios_s.empty()) {
    h.compress_ratios.clear();
    size_t p = 0;
    while (p <= ratios_s.size()) {
      size_t e = ratios_s.find(',', p);
      if (e == std::string::npos) e = ratios_s.size();
      h.compress_ratios.push_back(std::stoi(ratios_s.substr(p, e - p)));
      p = e + 1;
    }
  }
  if (n_layer > 0) {
    std::vector<int32_t> r;
    for (int64_t i = 0; i < n_layer; ++i) {
      r.push_back(h.compress_ratios[static_cast<size_t>(i) % h.compress_ratios.size()]);
    }
    h.compress_ratios = r;
  }
  if (n_hash >= 0) h.n_hash_layers = n_hash;
  if (n_expert > 0) h.n_expert = n_expert;
  if (n_embd > 0) h.n_embd = n_embd;
  if (n_ff > 0) h.n_ff_exp = n_ff;
  h.n_layer_all = h.n_layer = static_cast<int64_t>(h.compress_ratios.size());
  h.swiglu_clamp_exp.assign(h.compress_ratios.size(), 10.f);
  h.swiglu_clamp_shexp = h.swiglu_clamp_exp;

  dsv4::GgufWriter w;
  auto n_vocab = dsv4::write_tokenizer_metadata(w, tokenizer, pre);
  if (!n_vocab) {
    fmt::print(stderr, "error: {}\n", n_vocab.status().to_string());
    return 1;
  }
  h.n_vocab = *n_vocab;
  dsv4::write_hparams(w, h);
  w.add_string("general.name", "dsv4-mkmodel " + preset_name + " " + mix + " (random weights)");
  w.add_u64("dsv4.mkmodel.seed", seed);
  if (mix == "nsparks") w.add_u32("general.file_type", 41);  // with 129-byte blocks: proves type 42

  std::vector<TensorSpec> specs;
  std::vector<uint32_t> types;
  uint64_t total = 0;
  for (const TensorSpec& s : dsv4::expected_tensors(h)) {
    if (!s.required) continue;
    const uint32_t t = type_for(mix, s, h.n_layer - 1);
    const uint64_t bytes = tensor_bytes(t, s.ne);
    if (bytes == 0) {
      fmt::print(stderr, "error: {} (ne[0] = {}) cannot be stored as {} in mix '{}': not a multiple "
                         "of its block size; use a larger preset or another mix\n",
                 s.name, s.ne[0], dsv4::ggml_type_traits(t)->name, mix);
      return 1;
    }
    w.add_tensor_info(s.name, t, s.ne, bytes);
    specs.push_back(s);
    types.push_back(t);
    total += bytes;
  }
  fmt::print("writing {}: preset {}, mix {}, {} layers, {} tensors, {:.2f} GiB\n", out, preset_name,
             mix, h.n_layer, specs.size(), static_cast<double>(total) / (1ull << 30));
  Status st = w.write_streaming(out, [&](size_t i, std::span<uint8_t> buf) {
    fill_random(specs[i], types[i], seed, h.n_expert, buf);
    return Status::ok();
  });
  if (!st) {
    fmt::print(stderr, "error: {}\n", st.to_string());
    return 1;
  }
  return 0;
}
