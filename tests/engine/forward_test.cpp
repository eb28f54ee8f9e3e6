// The forward pass (dsv4::model::Forward) on the `ref` and `cpu` backends against the
// transformers reference fixtures (issue 5, acceptance "Model vs the reference fixtures",
// "Consistency", "Long context", "Greedy continuations").
//
// Bound: logits NMSE ≤ 1e-6 per position. An independent float64 reference and upstream
// llama.cpp agree to ~1e-14 on these files, and real bugs show as 1e-8 … 1e-3 (issue 5), so the
// bound has room for our float32 activations (measured ~1e-12) and still catches bugs.
// With the quantisation simulation on (§9.2 FP8 KV, §9.3 Hadamard + FP4 indexer: our default),
// an FP8/FP4 rounding or a near-tied indexer selection can flip on a last-bit difference; the
// bound must then hold at ≥ 99% of positions and every other position is traced to such a flip
// (recorded rounded rows and selections of the fixture).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dsv4/backend/cpu/cpu_ops.h"
#include "dsv4/backend/ref/ref_ops.h"
#include "dsv4/model/forward.h"
#include "dsv4/model/model.h"
#include "fixture_util.h"

namespace {

using dsv4::NpyArray;
using dsv4::model::Forward;
using dsv4::model::Model;
using dsv4::model::SeqInput;
using dsv4::model::SequenceState;
using dsv4::model::StateOptions;
using namespace dsv4::test;

constexpr double kMaxNmse = 1e-6;

// Names the first diverging named intermediate of cfg on backend as a test failure (below).
void report_first_diverging(const std::string& cfg, const std::string& backend);

std::unique_ptr<Model> load_model(const std::string& cfg) {
  auto m = Model::load(fx(cfg, "model.gguf"));
  if (!m) {
    ADD_FAILURE() << cfg << ": " << m.status().to_string();
    return nullptr;
  }
  return std::move(*m);
}

std::unique_ptr<dsv4::backend::Ops> make_ops(const std::string& backend, int threads = 1) {
  if (backend == "ref") return std::make_unique<dsv4::backend::RefOps>();
  return dsv4::backend::make_cpu_ops(threads);
}

// Runs tokens as one prefill with every position's logits.
std::vector<float> prefill_all(Forward& f, SequenceState& st, const std::vector<int32_t>& toks) {
  std::vector<float> out;
  SeqInput in{&st, toks, true};
  dsv4::Status s = f.run(std::span<const SeqInput>(&in, 1), out);
  EXPECT_TRUE(s.is_ok()) << s.to_string();
  return out;
}

std::vector<int64_t> recorded_selection(const NpyArray& s, int64_t p) {
  std::vector<int64_t> want;
  for (int64_t i = 0; i < s.shape[1]; ++i) {
    const int64_t v = s.as_i64(p * s.shape[1] + i);
    if (v >= 0) want.push_back(v);
  }
  std::sort(want.begin(), want.end());
  return want;
}

struct Param {
  std::string cfg, backend;
};
std::string param_name(const ::testing::TestParamInfo<Param>& pi) {
  std::string s = pi.param.cfg + "_" + pi.param.backend;
  std::replace(s.begin(), s.end(), '-', '_');
  return s;
}

class Simoff : public ::testing::TestWithParam<Param> {};

// One prefill of tokens/main, simulation off on both sides: every position within the bound,
// every indexer selection equal to the recorded one.
TEST_P(Simoff, PrefillMain) {
  const auto [cfg, backend] = GetParam();
  auto m = load_model(cfg);
  ASSERT_TRUE(m);
  auto ops = make_ops(backend);
  Forward f(*m, *ops);
  SequenceState st(*m, StateOptions{4096, false});
  const auto toks = tokens_of(load_npy(fx(cfg, "tokens/main.npy")));
  const NpyArray ref = load_npy(fx(cfg, "simoff/prefill_main.npy"));
  std::vector<std::pair<int, NpyArray>> sel_ref;
  for (int il = 0; il < static_cast<int>(m->hparams().n_layer); ++il)
    if (m->hparams().ratio(il) == 4)
      sel_ref.emplace_back(il, load_npy(fx(cfg, "simoff/indexer_topk.L" + std::to_string(il) + ".npy")));
  int64_t sel_bad = 0;
  f.set_observer([&](const std::string& name, int layer, int64_t pos, std::span<const float> v) {
    if (name != "indexer_topk") return;
    for (auto& [il, s] : sel_ref) {
      if (il != layer) continue;
      std::vector<int64_t> got(v.begin(), v.end());
      std::sort(got.begin(), got.end());
      if (got != recorded_selection(s, pos)) ++sel_bad;
    }
  });
  const std::vector<float> logits = prefill_all(f, st, toks);
  const int64_t V = m->hparams().n_vocab;
  double worst = 0;
  int64_t bad = 0;
  for (size_t p = 0; p < toks.size(); ++p) {
    const double e = nmse(logits.data() + static_cast<int64_t>(p) * V, ref, static_cast<int64_t>(p));
    worst = std::max(worst, e);
    if (!(e <= kMaxNmse)) ++bad;
  }
  std::printf("[forward] %s %s prefill_main simoff: max NMSE %.3e, %lld positions over %.0e, "
              "%lld selection mismatches\n", cfg.c_str(), backend.c_str(), worst,
              static_cast<long long>(bad), kMaxNmse, static_cast<long long>(sel_bad));
  EXPECT_EQ(bad, 0);
  if (bad != 0) report_first_diverging(cfg, backend);
  EXPECT_EQ(sel_bad, 0);
}

// Prefill then one token per call (the decode fixtures, simulation off).
TEST_P(Simoff, PrefillThenDecode) {
  const auto [cfg, backend] = GetParam();
  auto m = load_model(cfg);
  ASSERT_TRUE(m);
  auto ops = make_ops(backend);
  Forward f(*m, *ops);
  for (const char* seq : {"main", "short"}) {
    const std::string file = std::string("simoff/decode_") + seq + ".npy";
    if (!std::filesystem::exists(fx(cfg, file))) continue;
    const auto toks = tokens_of(load_npy(fx(cfg, std::string("tokens/") + seq + ".npy")));
    const NpyArray ref = load_npy(fx(cfg, file));
    const int64_t n = ref.shape[0];
    const size_t first = toks.size() - static_cast<size_t>(n);  // position of row 0
    SequenceState st(*m, StateOptions{4096, false});
    std::vector<float> out;
    std::vector<int32_t> head(toks.begin(), toks.begin() + static_cast<std::ptrdiff_t>(first) + 1);
    SeqInput in{&st, head, false};
    ASSERT_TRUE(f.run(std::span<const SeqInput>(&in, 1), out).is_ok());
    double worst = nmse(out.data(), ref, 0);
    int64_t bad = worst <= kMaxNmse ? 0 : 1;
    for (size_t p = first + 1; p < toks.size(); ++p) {
      SeqInput one{&st, std::span<const int32_t>(&toks[p], 1), false};
      ASSERT_TRUE(f.run(std::span<const SeqInput>(&one, 1), out).is_ok());
      const double e = nmse(out.data(), ref, static_cast<int64_t>(p - first));
      worst = std::max(worst, e);
      if (!(e <= kMaxNmse)) ++bad;
    }
    std::printf("[forward] %s %s decode_%s simoff: max NMSE %.3e over %lld positions\n", cfg.c_str(),
                backend.c_str(), seq, worst, static_cast<long long>(n));
    EXPECT_EQ(bad, 0) << seq;
    if (bad != 0) report_first_diverging(cfg, backend);
  }
}

// Greedy continuations of the fixture prompts (simoff with numerics off, simon with them on).
TEST_P(Simoff, Greedy) {
  const auto [cfg, backend] = GetParam();
  auto m = load_model(cfg);
  ASSERT_TRUE(m);
  auto ops = make_ops(backend);
  Forward f(*m, *ops);
  int checked = 0;
  for (const char* mode : {"simoff", "simon"}) {
    for (int k = 0; k < 3; ++k) {
      const std::string pr = fx(cfg, "tokens/prompt" + std::to_string(k) + ".npy");
      const std::string gr = fx(cfg, std::string(mode) + "/greedy" + std::to_string(k) + ".npy");
      if (!std::filesystem::exists(pr) || !std::filesystem::exists(gr)) continue;
      const auto prompt = tokens_of(load_npy(pr));
      const auto want = tokens_of(load_npy(gr));
      SequenceState st(*m, StateOptions{4096, std::string(mode) == "simon"});
      std::vector<float> out;
      SeqInput in{&st, prompt, false};
      ASSERT_TRUE(f.run(std::span<const SeqInput>(&in, 1), out).is_ok());
      std::vector<int32_t> got;
      for (size_t i = 0; i < want.size(); ++i) {
        const int32_t next = static_cast<int32_t>(std::max_element(out.begin(), out.end()) - out.begin());
        got.push_back(next);
        if (i + 1 < want.size()) {
          SeqInput one{&st, std::span<const int32_t>(&got.back(), 1), false};
          ASSERT_TRUE(f.run(std::span<const SeqInput>(&one, 1), out).is_ok());
        }
      }
      EXPECT_EQ(got, want) << cfg << " " << mode << " prompt" << k;
      ++checked;
    }
  }
  EXPECT_GE(checked, 3);
}

INSTANTIATE_TEST_SUITE_P(Configs, Simoff,
                         ::testing::Values(Param{"tiny", "ref"}, Param{"tiny", "cpu"},
                                           Param{"tiny-clamp", "cpu"}, Param{"tiny-quant", "ref"},
                                           Param{"tiny-quant", "cpu"}, Param{"tiny-pro", "ref"},
                                           Param{"tiny-pro", "cpu"}),
                         param_name);

// Simulation on (our default numerics), one prefill of tokens/main, every over-bound position
// traced to a rounding flip (a stored row that differs from the recorded one) or a selection
// that differs from the recorded one.
class Simon : public ::testing::TestWithParam<Param> {};

TEST_P(Simon, PrefillMainTraced) {
  const auto [cfg, backend] = GetParam();
  auto m = load_model(cfg);
  ASSERT_TRUE(m);
  const dsv4::HParams& hp = m->hparams();
  auto ops = make_ops(backend);
  Forward f(*m, *ops);
  SequenceState st(*m, StateOptions{4096, true});
  const auto toks = tokens_of(load_npy(fx(cfg, "tokens/main.npy")));
  const NpyArray ref = load_npy(fx(cfg, "simon/prefill_main.npy"));
  auto rec = [&](const std::string& file) -> NpyArray {
    const std::string path = fx(cfg, "simon/" + file + ".npy");
    return std::filesystem::exists(path) ? load_npy(path) : NpyArray{};
  };
  std::map<std::string, NpyArray> recorded;
  for (int il = 0; il < static_cast<int>(hp.n_layer); ++il)
    for (const char* f0 : {"kv_raw", "kv_comp", "indexer_kv", "indexer_topk", "indexer_scores"})
      recorded[std::string(f0) + ".L" + std::to_string(il)] = rec(std::string(f0) + ".L" + std::to_string(il));
  // Teacher forcing: a stored row or a selection that differs from the recorded one is checked
  // to be a near-tie flip (every differing element one rounding step away; the selection's
  // boundary scores within 1e-4 relative) and replaced by the recorded one, so one flip does not
  // propagate into every later position.
  std::vector<std::string> flips;
  std::vector<int> flip_pos;
  int64_t not_near_tie = 0;
  f.set_hooks(
      [&](const std::string& name, int layer, int64_t pos, std::span<float> v) {
        std::string file;
        int64_t row = 0;
        if (name == "kv") {
          file = "kv_raw";
          row = pos;
        } else if (name == "compressed_row") {
          file = "kv_comp";
          row = (pos + 1) / hp.ratio(layer) - 1;
        } else {
          file = "indexer_kv";
          row = (pos + 1) / 4 - 1;
        }
        const NpyArray& r = recorded[file + ".L" + std::to_string(layer)];
        if (r.shape.size() != 2 || row >= r.shape[0]) return;
        // the rounded part: the nope channels of KV rows, the whole indexer row (float noise
        // of ~1e-7 in unrounded channels is not a flip)
        const size_t n_rounded = name == "indexer_key_row" ? v.size() : static_cast<size_t>(hp.head_dim - hp.n_rot);
        bool differs = false;
        for (size_t i = 0; i < n_rounded; ++i) {
          const double want = r.as_f64(row * r.shape[1] + static_cast<int64_t>(i));
          const double d = std::fabs(static_cast<double>(v[i]) - want);
          if (d > 1e-5 * (1 + std::fabs(want))) {
            differs = true;
            // one step of e4m3 (3 mantissa bits: ≤ 1/8 relative) at this magnitude, or a block
            // scale one binade apart (≤ 1/2 relative); e2m1 steps are coarser (≤ 1/2 relative
            // above 1, a whole code at the bottom)
            const double mag = std::max(std::fabs(want), std::fabs(static_cast<double>(v[i])));
            if (d > 0.5 * mag + 1e-30 && name != "indexer_key_row") {
              ++not_near_tie;
              std::printf("[forward]   not a near tie: %s L%d pos %lld [%zu] ours %.9g recorded %.9g\n", name.c_str(),
                          layer, static_cast<long long>(pos), i, static_cast<double>(v[i]), want);
            }
          }
        }
        if (!differs) return;
        flips.push_back(file + ".L" + std::to_string(layer) + " row " + std::to_string(row) + " (pos " +
                        std::to_string(pos) + ")");
        flip_pos.push_back(static_cast<int>(pos));
        for (size_t i = 0; i < v.size(); ++i)
          v[i] = static_cast<float>(r.as_f64(row * r.shape[1] + static_cast<int64_t>(i)));
      },
      [&](int layer, int64_t pos, std::span<const float> scores, std::vector<int32_t>& sel) {
        const NpyArray& s = recorded["indexer_topk.L" + std::to_string(layer)];
        if (s.shape.size() != 2) return;
        std::vector<int64_t> got(sel.begin(), sel.end()), want = recorded_selection(s, pos);
        std::sort(got.begin(), got.end());
        if (got == want) return;
        // near tie: the lowest score we kept and the highest recorded one we dropped agree
        double ours_min = 1e300, theirs_max = -1e300;
        for (int64_t j : got)
          if (!std::binary_search(want.begin(), want.end(), j)) ours_min = std::min(ours_min, static_cast<double>(scores[static_cast<size_t>(j)]));
        for (int64_t j : want)
          if (!std::binary_search(got.begin(), got.end(), j)) theirs_max = std::max(theirs_max, static_cast<double>(scores[static_cast<size_t>(j)]));
        // or the scores themselves differ from the recorded ones: a rounding flip upstream of
        // them (the FP4-rounded indexer query is not recorded, so it cannot be forced)
        double score_diff = 0;
        const NpyArray& rs = recorded["indexer_scores.L" + std::to_string(layer)];
        if (rs.shape.size() == 2 && pos < rs.shape[0])
          for (size_t j = 0; j < scores.size() && static_cast<int64_t>(j) < rs.shape[1]; ++j)
            score_diff = std::max(score_diff, std::fabs(static_cast<double>(scores[j]) - rs.as_f64(pos * rs.shape[1] + static_cast<int64_t>(j))));
        if (score_diff > 1e-4)
          flips.push_back("indexer query rounding L" + std::to_string(layer) + " at " + std::to_string(pos) +
                          " (scores differ from the recorded ones by " + std::to_string(score_diff) + ")");
        else if (std::fabs(ours_min - theirs_max) > 1e-4 * (std::fabs(ours_min) + 1e-3)) {
          ++not_near_tie;
          std::printf("[forward]   not a near tie: selection L%d pos %lld: kept %.9g, recorded %.9g\n", layer,
                      static_cast<long long>(pos), ours_min, theirs_max);
        }
        flips.push_back("selection L" + std::to_string(layer) + " at " + std::to_string(pos));
        flip_pos.push_back(static_cast<int>(pos));
        // the recorded selection, in recorded (score) order
        sel.clear();
        for (int64_t i = 0; i < s.shape[1]; ++i) {
          const int64_t v = s.as_i64(pos * s.shape[1] + i);
          if (v >= 0) sel.push_back(static_cast<int32_t>(v));
        }
      });
  const std::vector<float> logits = prefill_all(f, st, toks);
  const int64_t V = hp.n_vocab;
  const int earliest_flip = flip_pos.empty() ? 1 << 30 : *std::min_element(flip_pos.begin(), flip_pos.end());
  int64_t bad = 0, untraced = 0;
  double worst = 0;
  for (size_t p = 0; p < toks.size(); ++p) {
    const double e = nmse(logits.data() + static_cast<int64_t>(p) * V, ref, static_cast<int64_t>(p));
    worst = std::max(worst, e);
    if (!(e <= kMaxNmse)) {
      ++bad;
      // a flip at or before this position explains it (it propagates through the state)
      if (static_cast<int>(p) < earliest_flip) ++untraced;
      std::printf("[forward]   position %zu: NMSE %.3e\n", p, e);
    }
  }
  std::printf("[forward] %s %s prefill_main simon: max NMSE %.3e; %lld of %zu positions over %.0e; "
              "%zu near-tie flips replaced by the recorded rows/selections\n", cfg.c_str(), backend.c_str(),
              worst, static_cast<long long>(bad), toks.size(), kMaxNmse, flips.size());
  for (size_t i = 0; i < std::min<size_t>(flips.size(), 12); ++i)
    std::printf("[forward]   flip: %s\n", flips[i].c_str());
  EXPECT_EQ(not_near_tie, 0);
  EXPECT_EQ(untraced, 0);
  EXPECT_LE(bad, static_cast<int64_t>(toks.size()) / 100) << "more than 1% of positions over the bound";
  if (bad > static_cast<int64_t>(toks.size()) / 100) report_first_diverging(cfg, backend);
}

INSTANTIATE_TEST_SUITE_P(Configs, Simon,
                         ::testing::Values(Param{"tiny", "ref"}, Param{"tiny", "cpu"},
                                           Param{"tiny-quant", "cpu"}),
                         param_name);

// ---- first diverging named intermediate ---------------------------------------------------------
//
// The fixtures record the reference's named intermediates (norms, HC mixes, q/kv, compressor and
// indexer rows, router scores/experts, layer outputs, …) at position kIntermediatesAt of
// tokens/main with the official numerics. capture_intermediates runs our forward pass over the
// first kIntermediatesAt + 1 tokens and keeps what the observer emits at that position, in the
// order the forward pass computes it; first_diverging compares them with the recorded ones and
// names the first beyond the bound (router expert ids: exact). Every model test calls
// report_first_diverging when it fails, so a failure says where the computation left the
// reference, not only that the logits did.
constexpr int64_t kIntermediatesAt = 299;
using Trace = std::vector<std::pair<std::string, std::vector<float>>>;

Trace capture_intermediates(const std::string& cfg, const std::string& backend) {
  Trace got;
  auto m = load_model(cfg);
  if (!m) return got;
  auto ops = make_ops(backend);
  Forward f(*m, *ops);
  SequenceState st(*m, StateOptions{4096, true});
  const auto toks = tokens_of(load_npy(fx(cfg, "tokens/main.npy")));
  f.set_observer([&](const std::string& name, int layer, int64_t pos, std::span<const float> v) {
    if (pos != kIntermediatesAt) return;
    got.emplace_back(layer < 0 ? name : "L" + std::to_string(layer) + "." + name,
                     std::vector<float>(v.begin(), v.end()));
  });
  (void)prefill_all(f, st, std::vector<int32_t>(toks.begin(), toks.begin() + kIntermediatesAt + 1));
  return got;
}

struct Divergence {
  int checked = 0;
  std::string first;  // empty: none
  double nmse = 0;
  std::vector<std::string> all;  // every name beyond the bound, in order
};

Divergence first_diverging(const std::string& cfg, const Trace& got) {
  Divergence d;
  for (const auto& [name, v] : got) {
    const std::string path = fx(cfg, "intermediates/" + name + ".npy");
    if (!std::filesystem::exists(path)) continue;
    const NpyArray r = load_npy(path);
    if (r.size() != static_cast<int64_t>(v.size())) {
      d.all.push_back(name + " (size " + std::to_string(v.size()) + " vs " + std::to_string(r.size()) + ")");
      if (d.first.empty()) d.first = name;
      continue;
    }
    double num = 0, den = 0;
    for (int64_t i = 0; i < r.size(); ++i) {
      const double e = static_cast<double>(v[static_cast<size_t>(i)]) - r.as_f64(i);
      num += e * e;
      den += r.as_f64(i) * r.as_f64(i);
    }
    const bool ids = name.find("router_experts") != std::string::npos;
    const double e = ids ? num : (den > 0 ? num / den : num);
    ++d.checked;
    if (!(e <= (ids ? 0.0 : kMaxNmse))) {
      d.all.push_back(name + " (NMSE " + std::to_string(e) + ")");
      if (d.first.empty()) {
        d.first = name;
        d.nmse = e;
      }
    }
  }
  return d;
}

// Called by a failing model test: names the first diverging intermediate of cfg on backend.
void report_first_diverging(const std::string& cfg, const std::string& backend) {
  if (!std::filesystem::exists(fx(cfg, "intermediates"))) {
    ADD_FAILURE() << cfg << ": no recorded intermediates to locate the divergence";
    return;
  }
  const Divergence d = first_diverging(cfg, capture_intermediates(cfg, backend));
  ADD_FAILURE() << cfg << " " << backend << ": first diverging named intermediate at position "
                << kIntermediatesAt << " (official numerics): "
                << (d.first.empty() ? std::string("none (the divergence is elsewhere)") : d.first + " NMSE " + std::to_string(d.nmse))
                << " (" << d.checked << " compared)";
}

// Named intermediates at position 299 (sim on) against <cfg>/intermediates; the first diverging
// one is named.
TEST(ForwardIntermediates, TinyCpu) {
  const Trace got = capture_intermediates("tiny", "cpu");
  const Divergence d = first_diverging("tiny", got);
  for (const std::string& n : d.all) ADD_FAILURE() << n;
  std::printf("[forward] tiny intermediates at %lld: %d checked, first diverging: %s\n",
              static_cast<long long>(kIntermediatesAt), d.checked, d.first.empty() ? "none" : d.first.c_str());
  EXPECT_GE(d.checked, 40);
}

// The reporter finds a planted divergence: perturbing one recorded-named intermediate of a clean
// trace (and everything after it, as a real bug would) makes exactly that one the first named.
TEST(ForwardIntermediates, ReporterNamesAPlantedDivergence) {
  Trace got = capture_intermediates("tiny", "cpu");
  ASSERT_TRUE(first_diverging("tiny", got).first.empty());
  std::vector<size_t> recorded;
  for (size_t i = 0; i < got.size(); ++i)
    if (std::filesystem::exists(fx("tiny", "intermediates/" + got[i].first + ".npy")) &&
        got[i].first.find("router_experts") == std::string::npos)
      recorded.push_back(i);
  ASSERT_GE(recorded.size(), 10u);
  const size_t k = recorded[recorded.size() / 2];
  for (size_t i = k; i < got.size(); ++i)
    for (float& x : got[i].second) x *= 1.01f;  // NMSE 1e-4: over the 1e-6 bound
  const Divergence d = first_diverging("tiny", got);
  EXPECT_EQ(d.first, got[k].first);
}

// The route hook (dsv4-cli --force-selections: another engine's expert choice at a near tie):
// sees the biased scores and our top-k (the k best of those scores, best first); leaving the
// choice alone changes nothing bit for bit; replacing it at one (layer, position) routes that
// token through the given experts (observed, weights renormalised over them) and changes no
// earlier position.
TEST(ForwardHooks, RouteHookReplacesExperts) {
  auto m = load_model("tiny");
  ASSERT_TRUE(m);
  const dsv4::HParams& hp = m->hparams();
  ASSERT_LT(hp.n_hash_layers, hp.n_layer);
  const int li = static_cast<int>(hp.n_hash_layers);  // the first score-routed layer
  const int64_t at = 5, V = hp.n_vocab;
  auto ops = make_ops("cpu");
  const auto toks0 = tokens_of(load_npy(fx("tiny", "tokens/main.npy")));
  const std::vector<int32_t> toks(toks0.begin(), toks0.begin() + 12);
  auto run = [&](dsv4::model::RouteHook hook, std::vector<float>* experts_at, std::vector<float>* weights_at) {
    Forward f(*m, *ops);
    f.set_route_hook(std::move(hook));
    f.set_observer([&](const std::string& name, int layer, int64_t pos, std::span<const float> v) {
      if (layer != li || pos != at) return;
      if (name == "router_experts" && experts_at) experts_at->assign(v.begin(), v.end());
      if (name == "router_weights" && weights_at) weights_at->assign(v.begin(), v.end());
    });
    SequenceState st(*m, StateOptions{256, true});
    return prefill_all(f, st, toks);
  };
  std::vector<float> free_experts;
  const std::vector<float> base = run(nullptr, &free_experts, nullptr);
  int64_t calls = 0;
  std::vector<int32_t> worst;  // the n_expert_used lowest-scored experts at (li, at)
  const std::vector<float> same = run(
      [&](int layer, int64_t pos, std::span<const float> biased, std::vector<int32_t>& ids) {
        ++calls;
        ASSERT_EQ(biased.size(), static_cast<size_t>(hp.n_expert));
        ASSERT_EQ(ids.size(), static_cast<size_t>(hp.n_expert_used));
        for (size_t k = 1; k < ids.size(); ++k) EXPECT_GE(biased[static_cast<size_t>(ids[k - 1])], biased[static_cast<size_t>(ids[k])]);
        for (int32_t e = 0; e < hp.n_expert; ++e) {
          if (std::find(ids.begin(), ids.end(), e) == ids.end()) {
            EXPECT_LE(biased[static_cast<size_t>(e)], biased[static_cast<size_t>(ids.back())]);
          }
        }
        if (layer == li && pos == at) {
          std::vector<int32_t> order(static_cast<size_t>(hp.n_expert));
          for (int32_t e = 0; e < hp.n_expert; ++e) order[static_cast<size_t>(e)] = e;
          std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return biased[static_cast<size_t>(a)] < biased[static_cast<size_t>(b)]; });
          worst.assign(order.begin(), order.begin() + hp.n_expert_used);
        }
      },
      nullptr, nullptr);
  EXPECT_EQ(calls, (hp.n_layer - hp.n_hash_layers) * static_cast<int64_t>(toks.size()));
  EXPECT_EQ(same, base);  // the hook alone changes nothing
  ASSERT_EQ(worst.size(), static_cast<size_t>(hp.n_expert_used));
  std::vector<float> forced_experts, forced_weights;
  const std::vector<float> forced = run(
      [&](int layer, int64_t pos, std::span<const float>, std::vector<int32_t>& ids) {
        if (layer == li && pos == at) ids = worst;
      },
      &forced_experts, &forced_weights);
  EXPECT_EQ(forced_experts, std::vector<float>(worst.begin(), worst.end()));
  EXPECT_NE(forced_experts, free_experts);
  double wsum = 0;
  for (float w : forced_weights) wsum += w;
  if (hp.expert_weights_norm) {
    EXPECT_NEAR(wsum, hp.expert_weights_scale, 1e-5);
  }
  ASSERT_EQ(forced.size(), base.size());
  EXPECT_TRUE(std::equal(base.begin(), base.begin() + at * V, forced.begin()));  // earlier positions untouched
  EXPECT_FALSE(std::equal(base.begin() + at * V, base.begin() + (at + 1) * V, forced.begin() + at * V));
}

// A route hook that breaks its contract (forward.h: n_expert_used distinct ids < n_expert) stops
// the process with the check named, instead of reading past the routing tables.
TEST(ForwardHooksDeathTest, RouteHookContractIsChecked) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  auto m = load_model("tiny");
  ASSERT_TRUE(m);
  const auto toks0 = tokens_of(load_npy(fx("tiny", "tokens/main.npy")));
  const std::vector<int32_t> toks(toks0.begin(), toks0.begin() + 4);
  auto run_with = [&](std::function<void(std::vector<int32_t>&)> breaker) {
    auto ops = make_ops("cpu");
    Forward f(*m, *ops);
    f.set_route_hook([&](int, int64_t, std::span<const float>, std::vector<int32_t>& ids) { breaker(ids); });
    SequenceState st(*m, StateOptions{64, true});
    prefill_all(f, st, toks);
  };
  const int32_t E = static_cast<int32_t>(m->hparams().n_expert);
  EXPECT_DEATH(run_with([](std::vector<int32_t>& ids) { ids.push_back(0); }), "internal check failed");
  EXPECT_DEATH(run_with([&](std::vector<int32_t>& ids) { ids[0] = E; }), "internal check failed");
  EXPECT_DEATH(run_with([](std::vector<int32_t>& ids) { ids[1] = ids[0]; }), "internal check failed");
}

// ---- consistency (cpu backend): bit-identical across chunking, batching, threads ------------

std::vector<float> run_chunked(Forward& f, SequenceState& st, const std::vector<int32_t>& toks,
                               size_t chunk) {
  std::vector<float> all, out;
  for (size_t i = 0; i < toks.size(); i += chunk) {
    const size_t n = std::min(chunk, toks.size() - i);
    SeqInput in{&st, std::span<const int32_t>(toks.data() + i, n), true};
    EXPECT_TRUE(f.run(std::span<const SeqInput>(&in, 1), out).is_ok());
    all.insert(all.end(), out.begin(), out.end());
  }
  return all;
}

TEST(ForwardConsistency, ChunkedPrefillIsBitIdentical) {
  for (const char* cfg : {"tiny", "tiny-pro"}) {
    auto m = load_model(cfg);
    ASSERT_TRUE(m);
    auto ops = make_ops("cpu");
    Forward f(*m, *ops);
    const auto toks = tokens_of(load_npy(fx(cfg, "tokens/main.npy")));
    SequenceState s0(*m, StateOptions{4096, true});
    const std::vector<float> whole = prefill_all(f, s0, toks);
    const size_t W = static_cast<size_t>(m->hparams().n_swa);
    for (size_t chunk : {size_t{1}, size_t{3}, size_t{64}, W - 1, W, W + 1, size_t{4}, size_t{127}, size_t{128}, size_t{129}}) {
      SequenceState s(*m, StateOptions{4096, true});
      const std::vector<float> got = run_chunked(f, s, toks, chunk);
      ASSERT_EQ(got.size(), whole.size());
      EXPECT_EQ(std::memcmp(got.data(), whole.data(), got.size() * 4), 0) << cfg << " chunk " << chunk;
    }
  }
}

TEST(ForwardConsistency, BatchAndThreadsAreBitIdentical) {
  const std::string cfg = "tiny";
  auto m = load_model(cfg);
  ASSERT_TRUE(m);
  const auto main_toks = tokens_of(load_npy(fx(cfg, "tokens/main.npy")));
  // four different sequences: different lengths and contents
  std::vector<std::vector<int32_t>> seqs;
  for (int k = 0; k < 4; ++k)
    seqs.emplace_back(main_toks.begin() + 10 * k, main_toks.begin() + 10 * k + 40 + 37 * k);
  auto alone = [&](int threads) {
    auto ops = make_ops("cpu", threads);
    Forward f(*m, *ops);
    std::vector<std::vector<float>> res;
    for (auto& s : seqs) {
      SequenceState st(*m, StateOptions{4096, true});
      std::vector<float> prompt_logits = prefill_all(f, st, s);
      // then 5 decode steps of fixed tokens
      std::vector<float> out;
      for (int k = 0; k < 5; ++k) {
        const int32_t t = static_cast<int32_t>(7 * k + 3);
        SeqInput one{&st, std::span<const int32_t>(&t, 1), false};
        EXPECT_TRUE(f.run(std::span<const SeqInput>(&one, 1), out).is_ok());
        prompt_logits.insert(prompt_logits.end(), out.begin(), out.end());
      }
      res.push_back(prompt_logits);
    }
    return res;
  };
  const auto ref1 = alone(1);
  const auto ref2 = alone(2);
  for (size_t i = 0; i < seqs.size(); ++i)
    EXPECT_EQ(std::memcmp(ref1[i].data(), ref2[i].data(), ref1[i].size() * 4), 0) << "threads, seq " << i;
  // all four in one batch: prefill together, then batched decode
  auto ops = make_ops("cpu", 2);
  Forward f(*m, *ops);
  std::vector<std::unique_ptr<SequenceState>> st;
  std::vector<SeqInput> in;
  for (auto& s : seqs) {
    st.push_back(std::make_unique<SequenceState>(*m, StateOptions{4096, true}));
    in.push_back({st.back().get(), s, true});
  }
  std::vector<float> out;
  ASSERT_TRUE(f.run(in, out).is_ok());
  const int64_t V = m->hparams().n_vocab;
  std::vector<std::vector<float>> got(seqs.size());
  size_t off = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    got[i].assign(out.begin() + static_cast<std::ptrdiff_t>(off),
                  out.begin() + static_cast<std::ptrdiff_t>(off + seqs[i].size() * static_cast<size_t>(V)));
    off += seqs[i].size() * static_cast<size_t>(V);
  }
  for (int k = 0; k < 5; ++k) {
    const int32_t t = static_cast<int32_t>(7 * k + 3);
    std::vector<SeqInput> step;
    for (auto& s : st) step.push_back({s.get(), std::span<const int32_t>(&t, 1), false});
    ASSERT_TRUE(f.run(step, out).is_ok());
    for (size_t i = 0; i < seqs.size(); ++i)
      got[i].insert(got[i].end(), out.begin() + static_cast<std::ptrdiff_t>(i) * V,
                    out.begin() + static_cast<std::ptrdiff_t>(i + 1) * V);
  }
  for (size_t i = 0; i < seqs.size(); ++i) {
    ASSERT_EQ(got[i].size(), ref1[i].size());
    EXPECT_EQ(std::memcmp(got[i].data(), ref1[i].data(), got[i].size() * 4), 0) << "batch, seq " << i;
  }
}

TEST(ForwardConsistency, CheckpointRestoreIsBitIdentical) {
  const std::string cfg = "tiny";
  auto m = load_model(cfg);
  ASSERT_TRUE(m);
  auto ops = make_ops("cpu");
  Forward f(*m, *ops);
  const auto toks = tokens_of(load_npy(fx(cfg, "tokens/main.npy")));
  SequenceState st(*m, StateOptions{4096, true});
  const std::vector<float> whole = prefill_all(f, st, toks);
  const int64_t V = m->hparams().n_vocab;
  for (size_t cut : {size_t{1}, size_t{16}, size_t{129}, size_t{200}}) {
    SequenceState s(*m, StateOptions{4096, true});
    std::vector<int32_t> head(toks.begin(), toks.begin() + static_cast<std::ptrdiff_t>(cut));
    (void)prefill_all(f, s, head);
    const auto cp = s.checkpoint();
    // go elsewhere, then come back
    std::vector<int32_t> other(toks.rbegin(), toks.rbegin() + 50);
    (void)prefill_all(f, s, other);
    s.restore(cp);
    ASSERT_EQ(s.n_past(), static_cast<int64_t>(cut));
    std::vector<int32_t> tail(toks.begin() + static_cast<std::ptrdiff_t>(cut), toks.end());
    const std::vector<float> got = prefill_all(f, s, tail);
    EXPECT_EQ(std::memcmp(got.data(), whole.data() + static_cast<int64_t>(cut) * V, got.size() * 4), 0)
        << "cut " << cut;
  }
}

// §9.1 activation quantisation is not applied (forward.h); report how far tiny-quant is from the
// reference that applies it (simact) next to the bound we meet against simon.
TEST(ForwardNumerics, TinyQuantDistanceToActivationQuant) {
  const std::string cfg = "tiny-quant";
  if (!std::filesystem::exists(fx(cfg, "simact/prefill_main.npy"))) GTEST_SKIP() << "no simact fixture";
  auto m = load_model(cfg);
  ASSERT_TRUE(m);
  auto ops = make_ops("cpu");
  Forward f(*m, *ops);
  SequenceState st(*m, StateOptions{4096, true});
  const auto toks = tokens_of(load_npy(fx(cfg, "tokens/main.npy")));
  const NpyArray act = load_npy(fx(cfg, "simact/prefill_main.npy"));
  const std::vector<float> logits = prefill_all(f, st, toks);
  double sum = 0, worst = 0;
  for (size_t p = 0; p < toks.size(); ++p) {
    const double e = nmse(logits.data() + static_cast<int64_t>(p) * m->hparams().n_vocab, act, static_cast<int64_t>(p));
    sum += e;
    worst = std::max(worst, e);
  }
  std::printf("[forward] tiny-quant vs simact (§9.1 FP8 activations): mean NMSE %.3e, max %.3e\n",
              sum / static_cast<double>(toks.size()), worst);
  EXPECT_TRUE(std::isfinite(sum));

  // ActQuant::kQ8 (the tools' default: 8-bit activation blocks and integer dots for the MXFP4
  // experts, llama.cpp's CPU numerics): its distance to the reference without §9.1 (simon) and
  // with it (simact). q8_0 blocks (8-bit integers, one scale per 32) are finer than §9.1's e4m3
  // values (3 mantissa bits, one scale per 128), so q8 must land closer to simon than the official
  // §9.1 quantization itself does: bound = half of the simact distance above (measured: q8 ≈ 9e-3
  // mean, dominated by near-tie selection flips of this tiny random model; §9.1 ≈ 3.8e-2).
  ops->set_act_quant(dsv4::backend::ActQuant::kQ8);
  SequenceState st8(*m, StateOptions{4096, true});
  const std::vector<float> q8 = prefill_all(f, st8, toks);
  const NpyArray on = load_npy(fx(cfg, "simon/prefill_main.npy"));
  double s_on = 0, s_act = 0, s_act_on = 0, w_on = 0;
  const int64_t V = m->hparams().n_vocab;
  for (size_t p = 0; p < toks.size(); ++p) {
    const auto pp = static_cast<int64_t>(p);
    const double e_on = nmse(q8.data() + pp * V, on, pp);
    s_on += e_on;
    w_on = std::max(w_on, e_on);
    s_act += nmse(q8.data() + pp * V, act, pp);
    s_act_on += nmse(logits.data() + pp * V, on, pp);
  }
  const double np = static_cast<double>(toks.size());
  std::printf("[forward] tiny-quant q8 activations: vs simon mean NMSE %.3e (max %.3e), vs simact %.3e; "
              "f32 activations vs simon %.3e\n", s_on / np, w_on, s_act / np, s_act_on / np);
  EXPECT_LE(s_on / np, 0.5 * sum / np);
  EXPECT_GT(s_on / np, s_act_on / np) << "q8 mode did not change anything";
}

}  // namespace

namespace {

// The 8,192-token fixture of tiny (logits recorded at every 32nd position of one prefill, and at
// positions 7680.. after a prefill of 7680 then one token per call), for both numerics:
// * simulation off: NMSE ≤ 1e-6 at EVERY recorded position, one prefill, chunked, and prefill +
//   token-by-token decode (upstream users report perplexity blowing up at 16k: we must not);
// * simulation on (our default): near-tie FP8/FP4 rounding flips cannot be traced or forced here
//   (the long fixture records no rounded rows: size budget), so the guard is against accumulation:
//   ≤ 10% of positions over the bound, no position far off (a real bug gives 1e-3 … 1 everywhere),
//   and the argmax equal wherever the reference's top-2 margin exceeds 1e-3 (≤ 2% exceptions).
struct LongResult {
  int64_t n = 0, bad = 0, argmax_bad = 0, margin_checked = 0;
  double worst = 0;
};

LongResult compare_long(const std::vector<float>& logits, int64_t V, const NpyArray& ref,
                        const std::vector<int64_t>& rows_at) {
  LongResult r;
  for (size_t i = 0; i < rows_at.size(); ++i) {
    const float* got = logits.data() + rows_at[i] * V;
    const int64_t row = static_cast<int64_t>(i);
    const double e = nmse(got, ref, row);
    r.worst = std::max(r.worst, e);
    ++r.n;
    if (!(e <= kMaxNmse)) ++r.bad;
    int64_t a = 0, b = -1;
    for (int64_t v = 1; v < V; ++v)
      if (ref.as_f64(row * V + v) > ref.as_f64(row * V + a)) a = v;
    for (int64_t v = 0; v < V; ++v)
      if (v != a && (b < 0 || ref.as_f64(row * V + v) > ref.as_f64(row * V + b))) b = v;
    if (ref.as_f64(row * V + a) - ref.as_f64(row * V + b) > 1e-3) {
      ++r.margin_checked;
      if (std::max_element(got, got + V) - got != a) ++r.argmax_bad;
    }
  }
  return r;
}

void check_long(const std::string& mode, size_t chunk) {
  const std::string cfg = "tiny";
  auto m = load_model(cfg);
  ASSERT_TRUE(m);
  auto ops = make_ops("cpu", 2);
  Forward f(*m, *ops);
  const bool numerics = mode == "simon";
  const auto toks = tokens_of(load_npy(fx(cfg, "tokens/long.npy")));
  const NpyArray pos = load_npy(fx(cfg, "tokens/long_positions.npy"));
  const NpyArray ref = load_npy(fx(cfg, mode + "/prefill_long.npy"));
  ASSERT_EQ(ref.shape[0], pos.size());
  SequenceState st(*m, StateOptions{8192, numerics});
  const std::vector<float> logits = run_chunked(f, st, toks, chunk);
  const int64_t V = m->hparams().n_vocab;
  std::vector<int64_t> at;
  for (int64_t i = 0; i < pos.size(); ++i) at.push_back(pos.as_i64(i));
  const LongResult r = compare_long(logits, V, ref, at);
  std::printf("[forward] tiny long %s (8192 tokens, chunk %zu): max NMSE %.3e, %lld of %lld recorded positions "
              "over %.0e; argmax differs at %lld of %lld clear-margin positions\n",
              mode.c_str(), chunk, r.worst, static_cast<long long>(r.bad), static_cast<long long>(r.n), kMaxNmse,
              static_cast<long long>(r.argmax_bad), static_cast<long long>(r.margin_checked));
  if (!numerics) {
    EXPECT_EQ(r.bad, 0);
    EXPECT_EQ(r.argmax_bad, 0);
  } else {
    // measured: 8–14 of 256 over the bound and 0–2 argmax differences depending on the SIMD
    // level's summation order (each level flips different near-ties)
    EXPECT_LE(r.bad, r.n / 10);
    EXPECT_LE(r.argmax_bad, std::max<int64_t>(2, r.margin_checked / 50));
    EXPECT_LE(r.worst, 2e-2);
  }
  if (::testing::Test::HasFailure()) report_first_diverging("tiny", "cpu");
}

TEST(ForwardLong, SimoffOnePrefill) { check_long("simoff", 8192); }
TEST(ForwardLong, SimoffChunked) { check_long("simoff", 1000); }
TEST(ForwardLong, SimonOnePrefill) { check_long("simon", 8192); }

// Prefill 7680 then one token per call (the reference's decode protocol), simulation off.
TEST(ForwardLong, SimoffPrefillThenDecode) {
  const std::string cfg = "tiny";
  auto m = load_model(cfg);
  ASSERT_TRUE(m);
  auto ops = make_ops("cpu", 2);
  Forward f(*m, *ops);
  const auto toks = tokens_of(load_npy(fx(cfg, "tokens/long.npy")));
  const NpyArray dpos = load_npy(fx(cfg, "tokens/long_decode_positions.npy"));
  const NpyArray ref = load_npy(fx(cfg, "simoff/decode_long.npy"));
  ASSERT_EQ(ref.shape[0], dpos.size());
  const size_t P = static_cast<size_t>(dpos.as_i64(0)) + 1;  // row 0 = the prefill's last position
  SequenceState st(*m, StateOptions{8192, false});
  const int64_t V = m->hparams().n_vocab;
  std::vector<float> all(toks.size() * static_cast<size_t>(V)), out;
  SeqInput in{&st, std::span<const int32_t>(toks.data(), P), false};
  ASSERT_TRUE(f.run(std::span<const SeqInput>(&in, 1), out).is_ok());
  std::copy(out.begin(), out.end(), all.begin() + static_cast<std::ptrdiff_t>((P - 1) * static_cast<size_t>(V)));
  for (size_t p = P; p < toks.size(); ++p) {
    SeqInput one{&st, std::span<const int32_t>(&toks[p], 1), false};
    ASSERT_TRUE(f.run(std::span<const SeqInput>(&one, 1), out).is_ok());
    std::copy(out.begin(), out.end(), all.begin() + static_cast<std::ptrdiff_t>(p * static_cast<size_t>(V)));
  }
  std::vector<int64_t> at;
  for (int64_t i = 0; i < dpos.size(); ++i) at.push_back(dpos.as_i64(i));
  const LongResult r = compare_long(all, V, ref, at);
  std::printf("[forward] tiny long simoff decode (prefill %zu + %zu tokens one per call): max NMSE %.3e, "
              "%lld of %lld recorded positions over %.0e\n", P, toks.size() - P, r.worst,
              static_cast<long long>(r.bad), static_cast<long long>(r.n), kMaxNmse);
  EXPECT_EQ(r.bad, 0);
}

}  // namespace
