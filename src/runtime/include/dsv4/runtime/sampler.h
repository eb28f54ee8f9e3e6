// dsv4 runtime: token sampling (issue 5, scope 5).
//
// Order of the filters (llama.cpp's default chain, restricted to what OpenAI/llama-server
// requests carry): top-k → top-p → min-p → temperature → draw. temperature ≤ 0 is greedy
// (argmax, ties to the lower id). The candidate set is never empty: each filter keeps at least
// the best token. NaN/Inf logits fail the request with kInvalidArgument naming the first bad id;
// they are never sampled.
//
// Determinism: the draw uses its own seeded generator (xoshiro256** with splitmix64 seeding,
// documented in sampler.cpp; no <random> distributions); the same logits, parameters and seed
// give the same token on every machine and thread count.
// Threading: a Sampler is used by one thread at a time.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "dsv4/core/status.h"

namespace dsv4::runtime {

struct SamplingParams {
  float temperature = 1.0f;  // ≤ 0: greedy
  int32_t top_k = 0;         // ≤ 0: off
  float top_p = 1.0f;        // (0, 1]; 1: off
  float min_p = 0.0f;        // [0, 1); 0: off
  uint64_t seed = 0;
  int32_t n_probs = 0;       // top log-probabilities to report with each token (0..20)
};

// Checks ranges (temperature ≥ 0 and finite, top_p in (0,1], min_p in [0,1), n_probs 0..20);
// the message names the field.
Status validate(const SamplingParams& p);

struct TokenLogprob {
  int32_t id = 0;
  float logprob = 0;  // log-softmax of the raw logits (temperature 1, before any filter)
};

struct Sampled {
  int32_t id = 0;
  float logprob = 0;                 // of the chosen token, as TokenLogprob
  std::vector<TokenLogprob> top;     // n_probs best, descending, ties to the lower id
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& p);
  // Samples one token from logits [n_vocab].
  Result<Sampled> sample(std::span<const float> logits);

 private:
  SamplingParams p_;
  uint64_t state_[4];
  std::vector<int32_t> idx_;
  std::vector<float> prob_;
};

}  // namespace dsv4::runtime
