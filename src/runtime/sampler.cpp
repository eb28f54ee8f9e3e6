// dsv4 runtime: token sampling (sampler.h).
//
// Generator: xoshiro256** (Blackman & Vigna), 256 bits of state in Sampler::state_, seeded by
// running splitmix64 from SamplingParams::seed (the seeding the xoshiro authors recommend). A
// uniform double in [0, 1) is the top 53 bits of one output times 2^-53. Nothing here uses
// <random>'s distributions, whose output differs between standard libraries, so the same logits,
// parameters and seed give the same token on every machine and thread count.
//
// Probability arithmetic is in double. Filters (top-p, min-p) use the softmax of the raw logits
// (temperature 1) over the candidates still standing after top-k, as llama.cpp's chain does; the
// temperature only shapes the final draw among the survivors.
#include "dsv4/runtime/sampler.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace dsv4::runtime {

namespace {

uint64_t splitmix64(uint64_t& x) {
  uint64_t z = (x += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t xoshiro_next(uint64_t s[4]) {
  const uint64_t result = rotl(s[1] * 5, 7) * 9;
  const uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

// Total order used everywhere: higher logit first, ties to the lower id.
struct ByLogitDesc {
  const float* l;
  bool operator()(int32_t a, int32_t b) const {
    return l[a] > l[b] || (l[a] == l[b] && a < b);
  }
};

Status bad_param(const char* field, const std::string& why) {
  return Status(ErrorCode::kInvalidArgument, std::string(field) + " " + why);
}

}  // namespace

Status validate(const SamplingParams& p) {
  if (!std::isfinite(p.temperature) || p.temperature < 0)
    return bad_param("temperature", "must be finite and >= 0, got " + std::to_string(p.temperature));
  if (!std::isfinite(p.top_p) || !(p.top_p > 0.0f && p.top_p <= 1.0f))
    return bad_param("top_p", "must be in (0, 1], got " + std::to_string(p.top_p));
  if (!std::isfinite(p.min_p) || !(p.min_p >= 0.0f && p.min_p < 1.0f))
    return bad_param("min_p", "must be in [0, 1), got " + std::to_string(p.min_p));
  if (p.n_probs < 0 || p.n_probs > 20)
    return bad_param("n_probs", "must be in 0..20, got " + std::to_string(p.n_probs));
  return Status::ok();
}

Sampler::Sampler(const SamplingParams& p) : p_(p) {
  uint64_t x = p.seed;
  for (uint64_t& s : state_) s = splitmix64(x);
}

Result<Sampled> Sampler::sample(std::span<const float> logits) {
  const int64_t n = static_cast<int64_t>(logits.size());
  if (n == 0) return Status(ErrorCode::kInvalidArgument, "sampling from 0 logits");
  if (n > INT32_MAX) return Status(ErrorCode::kInvalidArgument, "vocabulary too large");
  const float* l = logits.data();

  // Validate and find the maximum (argmax ties to the lower id: strict >).
  int32_t best = 0;
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(l[i]))
      return Status(ErrorCode::kInvalidArgument,
                    "logit of token id " + std::to_string(i) + " is " +
                        (std::isnan(l[i]) ? "NaN" : "infinite"));
    if (l[i] > l[best]) best = static_cast<int32_t>(i);
  }
  const double lmax = l[best];

  // log-softmax normaliser of the raw logits.
  double z_all = 0;
  for (int64_t i = 0; i < n; ++i) z_all += std::exp(static_cast<double>(l[i]) - lmax);
  const double log_z_all = std::log(z_all);
  auto logprob = [&](int32_t id) {
    return static_cast<float>(static_cast<double>(l[id]) - lmax - log_z_all);
  };

  Sampled out;
  // Top n_probs: a small sorted insertion list (n_probs ≤ 20).
  if (p_.n_probs > 0) {
    const size_t k = static_cast<size_t>(std::min<int64_t>(p_.n_probs, n));
    std::vector<int32_t> top;
    top.reserve(k + 1);
    ByLogitDesc cmp{l};
    for (int32_t i = 0; i < static_cast<int32_t>(n); ++i) {
      if (top.size() == k && !cmp(i, top.back())) continue;
      top.insert(std::upper_bound(top.begin(), top.end(), i, cmp), i);
      if (top.size() > k) top.pop_back();
    }
    out.top.reserve(k);
    for (int32_t id : top) out.top.push_back({id, logprob(id)});
  }

  int32_t chosen = best;
  if (p_.temperature > 0) {
    ByLogitDesc cmp{l};
    // top-k: candidates are the top_k best (sorted) or everything (id order).
    bool sorted = false;
    idx_.clear();
    if (p_.top_k > 0 && p_.top_k < n) {
      idx_.resize(static_cast<size_t>(n));
      for (int32_t i = 0; i < static_cast<int32_t>(n); ++i) idx_[static_cast<size_t>(i)] = i;
      const auto k = static_cast<std::ptrdiff_t>(p_.top_k);
      std::partial_sort(idx_.begin(), idx_.begin() + k, idx_.end(), cmp);
      idx_.resize(static_cast<size_t>(k));
      sorted = true;
    } else {
      idx_.resize(static_cast<size_t>(n));
      for (int32_t i = 0; i < static_cast<int32_t>(n); ++i) idx_[static_cast<size_t>(i)] = i;
    }
    // The best candidate is `best` in every case (it survives top-k).
    // Normaliser over the candidates at temperature 1 (what top-p measures against).
    double z = 0;
    if (idx_.size() == static_cast<size_t>(n)) {
      z = z_all;
    } else {
      for (int32_t id : idx_) z += std::exp(static_cast<double>(l[id]) - lmax);
    }

    // min-p before the top-p sort: both keep a prefix of the descending order, so their
    // intersection does not depend on the order, and min-p first makes the sort smaller. top-p
    // still measures against z (the post-top-k mass), as it would in the documented order.
    if (p_.min_p > 0) {
      const double thresh = lmax + std::log(static_cast<double>(p_.min_p));
      std::erase_if(idx_, [&](int32_t id) { return static_cast<double>(l[id]) < thresh; });
    }

    if (p_.top_p < 1.0f) {
      const double target = static_cast<double>(p_.top_p) * z;
      double cum = 0;
      size_t keep = idx_.size();
      size_t done = 0;  // idx_[0, done) is sorted and final
      if (sorted) done = idx_.size();
      // Sort lazily in growing blocks: top-p usually stops early.
      size_t block = 64;
      size_t i = 0;
      for (;;) {
        if (i == done && done < idx_.size()) {
          const auto first = idx_.begin() + static_cast<std::ptrdiff_t>(done);
          size_t upto = done + block;
          if (upto >= idx_.size() || block * 8 >= idx_.size() - done) {
            upto = idx_.size();  // a large share left: one full sort beats a heap selection
            std::sort(first, idx_.end(), cmp);
          } else {
            std::nth_element(first, idx_.begin() + static_cast<std::ptrdiff_t>(upto), idx_.end(),
                             cmp);
            std::sort(first, idx_.begin() + static_cast<std::ptrdiff_t>(upto), cmp);
          }
          done = upto;
          block *= 4;
        }
        if (i >= done) break;
        cum += std::exp(static_cast<double>(l[idx_[i]]) - lmax);
        ++i;
        if (cum >= target) {
          keep = i;
          break;
        }
      }
      idx_.resize(std::max<size_t>(keep, 1));
    }

    // Temperature and the draw. The best candidate always survives (it leads every filter) and
    // has weight exp(0) = 1, so the total is ≥ 1.
    const double inv_t = 1.0 / static_cast<double>(p_.temperature);
    prob_.resize(idx_.size());
    double total = 0;
    for (size_t i = 0; i < idx_.size(); ++i) {
      prob_[i] = static_cast<float>(std::exp((static_cast<double>(l[idx_[i]]) - lmax) * inv_t));
      total += static_cast<double>(prob_[i]);
    }
    const double u =
        static_cast<double>(xoshiro_next(state_) >> 11) * (1.0 / 9007199254740992.0) * total;
    double acc = 0;
    chosen = best;  // if rounding leaves u at the very end
    for (size_t i = 0; i < idx_.size(); ++i) {
      acc += static_cast<double>(prob_[i]);
      if (u < acc) {  // strict: a zero weight is never chosen
        chosen = idx_[i];
        break;
      }
    }
  }

  out.id = chosen;
  out.logprob = logprob(chosen);
  return out;
}

}  // namespace dsv4::runtime
