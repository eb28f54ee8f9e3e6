// Sampler (src/runtime/sampler.cpp): greedy, each filter, filter order, never-empty, NaN/Inf,
// log-probabilities, seeding and the drawn distribution.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <vector>

#include "dsv4/runtime/sampler.h"

namespace dsv4::runtime {
namespace {

std::vector<float> log_of(const std::vector<double>& p) {
  std::vector<float> l;
  for (double x : p) l.push_back(static_cast<float>(std::log(x)));
  return l;
}

SamplingParams params(float temp, int32_t top_k = 0, float top_p = 1.0f, float min_p = 0.0f,
                      uint64_t seed = 1234) {
  SamplingParams p;
  p.temperature = temp;
  p.top_k = top_k;
  p.top_p = top_p;
  p.min_p = min_p;
  p.seed = seed;
  return p;
}

// Ids drawn in `n` samples.
std::set<int32_t> drawn(const SamplingParams& p, const std::vector<float>& logits, int n = 2000) {
  Sampler s(p);
  std::set<int32_t> ids;
  for (int i = 0; i < n; ++i) {
    auto r = s.sample(logits);
    EXPECT_TRUE(r.is_ok()) << r.status().to_string();
    ids.insert(r->id);
  }
  return ids;
}

// Pearson chi-square of `n` draws against probabilities `p`.
double chi_square(const SamplingParams& sp, const std::vector<float>& logits,
                  const std::vector<double>& p, int n) {
  Sampler s(sp);
  std::vector<int> count(p.size(), 0);
  for (int i = 0; i < n; ++i) {
    auto r = s.sample(logits);
    EXPECT_TRUE(r.is_ok());
    ++count[static_cast<size_t>(r->id)];
  }
  double chi = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const double e = p[i] * n;
    if (e == 0) {
      EXPECT_EQ(count[i], 0) << "id " << i << " has probability 0 but was drawn";
      continue;
    }
    chi += (count[i] - e) * (count[i] - e) / e;
  }
  return chi;
}

TEST(Sampler, GreedyArgmaxTiesToLowerId) {
  Sampler s(params(0.0f));
  auto r = s.sample(std::vector<float>{1.0f, 5.0f, 5.0f, 2.0f});
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->id, 1);
  r = s.sample(std::vector<float>{-3.0f, -3.0f});
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->id, 0);
  // Negative temperature (not accepted by validate, but documented as greedy) is greedy too.
  Sampler neg(params(-1.0f));
  EXPECT_EQ(neg.sample(std::vector<float>{0.0f, 0.5f, 0.1f})->id, 1);
}

TEST(Sampler, GreedyIgnoresFiltersAndSeed) {
  const std::vector<float> l = {0.1f, 0.2f, 3.0f, 0.3f};
  for (uint64_t seed : {0ull, 1ull, 99ull}) {
    Sampler s(params(0.0f, 2, 0.5f, 0.5f, seed));
    for (int i = 0; i < 10; ++i) EXPECT_EQ(s.sample(l)->id, 2);
  }
}

TEST(Sampler, TopKKeepsTheKBestTiesToLowerIds) {
  // Three tied best tokens; top_k = 2 keeps ids 0 and 1 (ties to the lower id).
  const std::vector<float> l = {3.0f, 3.0f, 3.0f, 0.0f, 2.9f};
  EXPECT_EQ(drawn(params(1.0f, 2), l), (std::set<int32_t>{0, 1}));
  EXPECT_EQ(drawn(params(1.0f, 1), l), (std::set<int32_t>{0}));
  // top_k ≥ vocab: off.
  EXPECT_EQ(drawn(params(1.0f, 10), std::vector<float>{0.0f, 0.0f, 0.0f}),
            (std::set<int32_t>{0, 1, 2}));
}

TEST(Sampler, TopPKeepsSmallestPrefixReachingP) {
  const auto l = log_of({0.5, 0.3, 0.15, 0.05});
  EXPECT_EQ(drawn(params(1.0f, 0, 0.7f), l), (std::set<int32_t>{0, 1}));   // 0.5 < 0.7 ≤ 0.8
  EXPECT_EQ(drawn(params(1.0f, 0, 0.45f), l), (std::set<int32_t>{0}));     // 0.5 ≥ 0.45
  EXPECT_EQ(drawn(params(1.0f, 0, 0.9f), l), (std::set<int32_t>{0, 1, 2})); // 0.8 < 0.9 ≤ 0.95
  EXPECT_EQ(drawn(params(1.0f, 0, 1.0f), l), (std::set<int32_t>{0, 1, 2, 3}));
}

TEST(Sampler, MinPKeepsTokensAboveFractionOfBest) {
  const auto l = log_of({0.5, 0.3, 0.15, 0.05});  // ratios to the best: 1, .6, .3, .1
  EXPECT_EQ(drawn(params(1.0f, 0, 1.0f, 0.35f), l), (std::set<int32_t>{0, 1}));
  EXPECT_EQ(drawn(params(1.0f, 0, 1.0f, 0.25f), l), (std::set<int32_t>{0, 1, 2}));
  EXPECT_EQ(drawn(params(1.0f, 0, 1.0f, 0.7f), l), (std::set<int32_t>{0}));
}

TEST(Sampler, TopPMeasuresAgainstTheMassLeftByTopK) {
  // Full distribution .4/.3/.2/.1. After top_k = 2 the mass is .4/.3 → 4/7 ≈ .571 for id 0, so
  // top_p = 0.5 keeps only id 0. (Measured against the full mass, .4 < .5 would keep id 1 too.)
  const auto l = log_of({0.4, 0.3, 0.2, 0.1});
  EXPECT_EQ(drawn(params(1.0f, 2, 0.5f), l), (std::set<int32_t>{0}));
  EXPECT_EQ(drawn(params(1.0f, 2, 0.6f), l), (std::set<int32_t>{0, 1}));
}

TEST(Sampler, TemperatureAppliesAfterTheFilters) {
  // min-p on the raw probabilities: ratios 1, .6, .3, .1 → min_p .5 keeps {0, 1}. A high
  // temperature flattens the draw but must not bring id 2 or 3 back.
  const auto l = log_of({0.5, 0.3, 0.15, 0.05});
  EXPECT_EQ(drawn(params(5.0f, 0, 1.0f, 0.5f), l), (std::set<int32_t>{0, 1}));
  EXPECT_EQ(drawn(params(5.0f, 0, 0.7f), l), (std::set<int32_t>{0, 1}));
}

TEST(Sampler, NeverEmpty) {
  const auto l = log_of({0.25, 0.25, 0.25, 0.25});
  EXPECT_EQ(drawn(params(1.0f, 1, 1e-6f, 0.999f), l), (std::set<int32_t>{0}));
  EXPECT_EQ(drawn(params(1e-6f, 0, 1e-6f), l), (std::set<int32_t>{0}));
  EXPECT_EQ(drawn(params(1.0f, 0, 1.0f, 0.999f), std::vector<float>{-80.0f, -1.0f, -80.0f}),
            (std::set<int32_t>{1}));
  // One-token vocabulary, every filter on.
  EXPECT_EQ(drawn(params(0.7f, 5, 0.1f, 0.9f), std::vector<float>{-1000.0f}),
            (std::set<int32_t>{0}));
  // Extreme logits: no overflow/underflow to an empty or NaN distribution.
  EXPECT_EQ(drawn(params(0.01f), std::vector<float>{-3e38f, 3e38f, -3e38f}),
            (std::set<int32_t>{1}));
}

TEST(Sampler, NanAndInfFailNamingTheId) {
  for (float bad : {std::numeric_limits<float>::quiet_NaN(),
                    std::numeric_limits<float>::infinity(),
                    -std::numeric_limits<float>::infinity()}) {
    for (float temp : {0.0f, 1.0f}) {
      Sampler s(params(temp));
      std::vector<float> l = {0.0f, 1.0f, 2.0f, bad, 0.5f, bad};
      auto r = s.sample(l);
      ASSERT_FALSE(r.is_ok());
      EXPECT_EQ(r.status().code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(r.status().message().find("id 3"), std::string::npos) << r.status().message();
    }
  }
  Sampler s(params(1.0f));
  EXPECT_FALSE(s.sample(std::vector<float>{}).is_ok());
}

TEST(Sampler, LogprobsAreRawLogSoftmaxWithTopNDescending) {
  SamplingParams p = params(0.0f);
  p.n_probs = 3;
  const std::vector<float> l = {1.0f, 3.0f, 2.0f, 3.0f, -1.0f};
  double z = 0;
  for (float x : l) z += std::exp(static_cast<double>(x));
  auto lp = [&](int i) { return static_cast<float>(l[static_cast<size_t>(i)] - std::log(z)); };
  Sampler s(p);
  auto r = s.sample(l);
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->id, 1);
  EXPECT_NEAR(r->logprob, lp(1), 1e-6);
  ASSERT_EQ(r->top.size(), 3u);
  EXPECT_EQ(r->top[0].id, 1);  // tie with id 3: lower id first
  EXPECT_EQ(r->top[1].id, 3);
  EXPECT_EQ(r->top[2].id, 2);
  for (const auto& t : r->top) EXPECT_NEAR(t.logprob, lp(t.id), 1e-6);

  // Temperature and filters do not change the reported log-probabilities.
  SamplingParams q = params(0.3f, 2, 0.5f);
  q.n_probs = 20;  // more than the vocabulary: all 5, descending
  Sampler s2(q);
  auto r2 = s2.sample(l);
  ASSERT_TRUE(r2.is_ok());
  EXPECT_NEAR(r2->logprob, lp(r2->id), 1e-6);
  ASSERT_EQ(r2->top.size(), 5u);
  const std::vector<int32_t> order = {1, 3, 2, 0, 4};
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(r2->top[i].id, order[i]);
  // n_probs 0: none.
  Sampler s3(params(1.0f));
  EXPECT_TRUE(s3.sample(l)->top.empty());
}

TEST(Sampler, SameSeedSameTokensDifferentSeedDifferent) {
  std::vector<float> l(1000);
  for (size_t i = 0; i < l.size(); ++i) l[i] = static_cast<float>(std::sin(i * 0.37) * 3.0);
  auto run = [&](uint64_t seed) {
    Sampler s(params(1.0f, 0, 0.95f, 0.01f, seed));
    std::vector<int32_t> ids;
    for (int i = 0; i < 500; ++i) ids.push_back(s.sample(l)->id);
    return ids;
  };
  EXPECT_EQ(run(7), run(7));
  EXPECT_NE(run(7), run(8));
}

TEST(Sampler, GoldenDrawsPinTheGenerator) {
  // The first draws for seed 42 over 16 equal logits. They depend only on xoshiro256** with
  // splitmix64 seeding (sampler.cpp), so they must be the same on every machine; a change here
  // means saved seeds no longer reproduce old outputs.
  Sampler s(params(1.0f, 0, 1.0f, 0.0f, 42));
  const std::vector<float> l(16, 0.0f);
  std::vector<int32_t> ids;
  for (int i = 0; i < 12; ++i) ids.push_back(s.sample(l)->id);
  // Computed independently by a 20-line Python transcription of splitmix64 + xoshiro256**
  // (u = (next >> 11) * 2^-53, id = floor(u * 16)).
  const std::vector<int32_t> golden = {1, 6, 10, 14, 15, 12, 11, 13, 12, 9, 10, 4};
  EXPECT_EQ(ids, golden);
}

// Chi-square tolerance: the draw is deterministic for a fixed seed, so the test cannot flake;
// the bound only decides how unlucky a correct sampler may be for the chosen seed. We use the
// 1e-4 upper quantile of the chi-square distribution (df 4: 23.51; df 2: 18.42), so a correct
// implementation fails for about one seed in 10^4. Power: a sampler 3 percentage points off on
// the 0.5 token over 10k draws gives chi ≈ 2 · 300² / 5000 ≈ 36 and fails; a wrong temperature
// or filter order moves whole cells and gives hundreds.
TEST(Sampler, DistributionMatchesSoftmaxAtTemperature) {
  const std::vector<double> p = {0.5, 0.25, 0.125, 0.0625, 0.0625};
  const auto l = log_of(p);
  EXPECT_LT(chi_square(params(1.0f, 0, 1.0f, 0.0f, 2024), l, p, 10000), 23.51);

  // T = 0.5 squares the probabilities.
  std::vector<double> q;
  double z = 0;
  for (double x : p) z += x * x;
  for (double x : p) q.push_back(x * x / z);
  EXPECT_LT(chi_square(params(0.5f, 0, 1.0f, 0.0f, 2025), l, q, 10000), 23.51);

  // top_k = 3 then T = 2: survivors .5/.25/.125 → sqrt → renormalised; the rest never drawn.
  std::vector<double> r = {std::sqrt(0.5), std::sqrt(0.25), std::sqrt(0.125), 0.0, 0.0};
  const double zr = r[0] + r[1] + r[2];
  for (double& x : r) x /= zr;
  EXPECT_LT(chi_square(params(2.0f, 3, 1.0f, 0.0f, 2026), l, r, 10000), 18.42);
}

// The filters on a real-sized vocabulary against a straightforward reference (full sort, the
// documented order): every drawn token must be in the reference candidate set.
TEST(Sampler, LargeVocabularyMatchesReferenceCandidateSet) {
  const int n = 129280;
  std::vector<float> l(n);
  uint64_t x = 99;
  for (int i = 0; i < n; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    l[static_cast<size_t>(i)] = static_cast<float>((x >> 40) % 10000) / 1000.0f;  // 0..10
  }
  struct Case {
    int32_t top_k;
    float top_p, min_p;
  };
  for (const Case c : {Case{0, 0.9f, 0.0f}, Case{40, 0.95f, 0.05f}, Case{0, 0.5f, 0.0f},
                       Case{0, 1.0f, 0.5f}, Case{1000, 0.3f, 0.0f}}) {
    // Reference candidate set.
    std::vector<int32_t> idx(n);
    for (int i = 0; i < n; ++i) idx[static_cast<size_t>(i)] = i;
    std::sort(idx.begin(), idx.end(), [&](int32_t a, int32_t b) {
      return l[a] > l[b] || (l[a] == l[b] && a < b);
    });
    if (c.top_k > 0) idx.resize(static_cast<size_t>(c.top_k));
    const double m = l[idx[0]];
    double z = 0;
    for (int32_t i : idx) z += std::exp(l[i] - m);
    double cum = 0;
    size_t keep = idx.size();
    for (size_t i = 0; i < idx.size(); ++i) {
      cum += std::exp(l[idx[i]] - m) / z;
      if (cum >= c.top_p) {
        keep = i + 1;
        break;
      }
    }
    idx.resize(keep);
    std::erase_if(idx, [&](int32_t i) { return std::exp(l[i] - m) < c.min_p; });
    const std::set<int32_t> ref(idx.begin(), idx.end());
    ASSERT_FALSE(ref.empty());

    Sampler s(params(1.0f, c.top_k, c.top_p, c.min_p, 5));
    for (int i = 0; i < 20; ++i) {
      auto r = s.sample(l);
      ASSERT_TRUE(r.is_ok());
      EXPECT_TRUE(ref.count(r->id)) << "token " << r->id << " outside the reference set (top_k "
                                    << c.top_k << ", top_p " << c.top_p << ")";
    }
  }
}

TEST(Sampler, ValidateNamesTheField) {
  EXPECT_TRUE(validate(SamplingParams{}).is_ok());
  auto msg = [](SamplingParams p) { return validate(p).message(); };
  SamplingParams p;
  p.temperature = -0.5f;
  EXPECT_NE(msg(p).find("temperature"), std::string::npos);
  p = {};
  p.temperature = std::numeric_limits<float>::quiet_NaN();
  EXPECT_NE(msg(p).find("temperature"), std::string::npos);
  p = {};
  p.top_p = 0.0f;
  EXPECT_NE(msg(p).find("top_p"), std::string::npos);
  p.top_p = 1.01f;
  EXPECT_NE(msg(p).find("top_p"), std::string::npos);
  p = {};
  p.min_p = 1.0f;
  EXPECT_NE(msg(p).find("min_p"), std::string::npos);
  p.min_p = -0.1f;
  EXPECT_NE(msg(p).find("min_p"), std::string::npos);
  p = {};
  p.n_probs = 21;
  EXPECT_NE(msg(p).find("n_probs"), std::string::npos);
  p.n_probs = -1;
  EXPECT_EQ(validate(p).code(), ErrorCode::kInvalidArgument);
  p = {};
  p.temperature = 0.0f;
  p.top_k = -5;  // off
  p.min_p = 0.0f;
  p.n_probs = 20;
  EXPECT_TRUE(validate(p).is_ok());
}

}  // namespace
}  // namespace dsv4::runtime
