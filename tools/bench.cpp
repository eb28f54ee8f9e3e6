// dsv4-bench: prompt-processing (pp) and generation (tg) speed of the DeepSeek-V4 forward pass on
// the CPU backend, in the style of llama-bench (issue 7, scope 1; docs/design.md §5).
//
//   dsv4-bench -m FILE [-m FILE ...] [-p 512] [-n 128] [-d 0,4096] [-r 5] [-t 2] [-b 2048]
//              [-ub 512] [-o md|csv|json] [--no-warmup] [--stream-mb 128] [--stream-reps 5]
//              [--bw-probe-mb 256]
//
// Every list option takes comma separated values; each combination is one test row, named like
// llama-bench: "pp512", "tg128", "pp512 @ d4096".
//
// What is timed: only Forward::run calls. Token ids are drawn before the timed region from a
// fixed seed (uniform over the vocabulary; --seed); nothing is tokenized or sampled. pp runs the
// prompt in ubatch-sized Forward::run calls (min(-b, -ub) tokens each) with the logits of the
// last token of each call, as llama-bench's llama_decode does. tg runs one token per call; the
// next input is the next pre-drawn id (--tg-input random, default, like llama-bench's random
// tokens) or the argmax of the previous logits (--tg-input argmax; the argmax is inside the
// timed region, it costs one pass over n_vocab floats).
//
// Depth (-d): the state at depth d (d random tokens, in ubatch-sized calls) is built once per
// (file, depth) and snapshotted with SequenceState::checkpoint(); before every repetition (and
// the warm-up) the sequence is restored to it, so every repetition starts from the same state.
// restore() only goes backwards on the same sequence, so one SequenceState per depth is used.
//
// Statistics: each repetition gives tokens/s = tokens / time; the row shows the mean ± sample sd
// over the repetitions (as llama-bench: avg_ts, stddev_ts). One warm-up run precedes the
// repetitions of each test unless --no-warmup.
//
// Bandwidth: for tg the achieved GB/s = bytes read per token / time per token, where bytes read
// per token = Model::active_bytes_per_token() (dense weights + n_expert_used routed experts per
// layer + one embedding row; the output head is dense) + the state bytes one decode step reads
// at the test's mean position (an estimate from the hyperparameters, see state_read_bytes below).
// Next to it: the machine's bandwidth measured by a STREAM-style copy and triad over three float
// arrays of --stream-mb MiB each, threads = the largest -t, best of --stream-reps, counted as
// STREAM does (copy 2 × array bytes, triad 3 × array bytes; write-allocate traffic not counted).
// And, because a shared machine's bandwidth moves between phases within seconds, a read pass of
// --bw-probe-mb MiB right before and right after each tg repetition (best of 3 passes each side,
// outside the timed region): "% of read around" is the decode's GB/s over the mean of the two.
//
// Output: md (default), csv or json on stdout; progress and the model summary on stderr.
//
// Logits for correctness checks are dsv4-cli's job (--ids … --all-logits --dump-logits).
//
// "-ub" is accepted as llama-bench spells it (CLI11 2.1 takes only one-letter short names, so it
// is rewritten to --ubatch-size before parsing).
#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <span>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "dsv4/backend/cpu/cpu_ops.h"
#include "dsv4/model/forward.h"
#include "dsv4/model/model.h"

namespace {

using Clock = std::chrono::steady_clock;
using dsv4::Status;
using dsv4::model::Forward;
using dsv4::model::Model;
using dsv4::model::SeqInput;
using dsv4::model::SequenceState;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// ---- machine and build description

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  std::string line;
  while (std::getline(f, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t c = line.find(':');
      if (c != std::string::npos) {
        std::string v = line.substr(c + 1);
        const size_t b = v.find_first_not_of(" \t");
        return b == std::string::npos ? std::string() : v.substr(b);
      }
    }
  }
  return "unknown";
}

int online_cores() { return static_cast<int>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN))); }

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

std::string read_first_line(const std::string& path) {
  std::ifstream f(path);
  std::string line;
  if (!f || !std::getline(f, line)) return {};
  return trim(line);
}

// The source tree's commit: a DSV4_GIT_COMMIT compile definition if the build passes one, else
// the environment variable DSV4_COMMIT, else read from the .git directory of the source tree this
// file was compiled from (HEAD → ref → loose ref or packed-refs; no git process is started),
// abbreviated to 7 hex digits. "unknown" when none is available.
std::string source_commit() {
#ifdef DSV4_GIT_COMMIT
  return DSV4_GIT_COMMIT;
#else
  if (const char* e = std::getenv("DSV4_COMMIT"); e != nullptr && *e != '\0') return e;
  std::string dir = __FILE__;  // .../tools/bench.cpp
  for (int up = 0; up < 2; ++up) {
    const size_t s = dir.rfind('/');
    if (s == std::string::npos) return "unknown";
    dir.resize(s);
  }
  const std::string git = dir + "/.git";
  std::string head = read_first_line(git + "/HEAD");
  if (head.empty()) return "unknown";
  std::string hash;
  if (head.rfind("ref: ", 0) == 0) {
    const std::string ref = head.substr(5);
    hash = read_first_line(git + "/" + ref);
    if (hash.empty()) {
      std::ifstream pr(git + "/packed-refs");
      std::string line;
      while (std::getline(pr, line)) {
        line = trim(line);
        if (line.size() > 41 && line.compare(41, std::string::npos, ref) == 0) {
          hash = line.substr(0, 40);
          break;
        }
      }
    }
  } else {
    hash = head;  // detached
  }
  if (hash.size() < 7) return "unknown";
  return hash.substr(0, 7);
#endif
}

// ---- STREAM-style bandwidth

struct StreamResult {
  double copy_gbs = 0, triad_gbs = 0, read_gbs = 0;
  size_t array_bytes = 0;
  int threads = 0, reps = 0;
};

// Runs fn(begin, end) over [0, n) split into `threads` contiguous parts, one per thread.
template <class Fn>
void parallel_for(int threads, size_t n, Fn fn) {
  std::vector<std::thread> ts;
  const size_t per = (n + static_cast<size_t>(threads) - 1) / static_cast<size_t>(threads);
  for (int t = 0; t < threads; ++t) {
    const size_t b = std::min(n, per * static_cast<size_t>(t));
    const size_t e = std::min(n, b + per);
    ts.emplace_back([=] { fn(b, e); });
  }
  for (auto& t : ts) t.join();
}

// One read pass over `bytes` bytes at `p` (what a decode GEMV does: one array streamed in,
// nothing written): an xor of 64-bit words in 8 independent lanes (vectorizable, nothing to
// round), `threads` contiguous parts. Returns the seconds it took; the xor lands in *sink.
double read_pass(const void* p, size_t bytes, int threads, uint64_t* sink) {
  const auto* pw = static_cast<const uint64_t*>(p);
  const size_t nw = bytes / sizeof(uint64_t);
  std::vector<uint64_t> sinks(static_cast<size_t>(threads), 0);
  uint64_t* ps = sinks.data();
  const size_t per = (nw + static_cast<size_t>(threads) - 1) / static_cast<size_t>(threads);
  const auto t0 = Clock::now();
  parallel_for(threads, nw, [=](size_t i0, size_t i1) {
    uint64_t acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    size_t i = i0;
    for (; i + 8 <= i1; i += 8)
      for (int l = 0; l < 8; ++l) acc[l] ^= pw[i + static_cast<size_t>(l)];
    for (; i < i1; ++i) acc[0] ^= pw[i];
    uint64_t x = 0;
    for (uint64_t v : acc) x ^= v;
    ps[i0 / std::max<size_t>(per, 1)] ^= x;
  });
  const double secs = seconds_since(t0);
  for (uint64_t v : sinks) *sink ^= v;
  return secs;
}

StreamResult measure_bandwidth(size_t mib, int threads, int reps) {
  StreamResult r;
  const size_t n = mib * 1024 * 1024 / sizeof(float);
  r.array_bytes = n * sizeof(float);
  r.threads = threads;
  r.reps = reps;
  std::unique_ptr<float[]> a(new float[n]), b(new float[n]), c(new float[n]);
  float* pa = a.get();
  float* pb = b.get();
  float* pc = c.get();
  // First touch by the threads that later stream the same ranges.
  parallel_for(threads, n, [=](size_t i0, size_t i1) {
    for (size_t i = i0; i < i1; ++i) {
      pa[i] = 1.0f;
      pb[i] = 2.0f;
      pc[i] = 0.0f;
    }
  });
  double best_copy = 1e30, best_triad = 1e30, best_read = 1e30;
  const float s = 3.0f;
  uint64_t read_sink = 0;
  for (int rep = 0; rep < reps; ++rep) {
    best_read = std::min(best_read, read_pass(pb, r.array_bytes, threads, &read_sink));
    auto t0 = Clock::now();
    parallel_for(threads, n, [=](size_t i0, size_t i1) {
      for (size_t i = i0; i < i1; ++i) pc[i] = pa[i];
    });
    best_copy = std::min(best_copy, seconds_since(t0));
    t0 = Clock::now();
    parallel_for(threads, n, [=](size_t i0, size_t i1) {
      for (size_t i = i0; i < i1; ++i) pa[i] = pb[i] + s * pc[i];
    });
    best_triad = std::min(best_triad, seconds_since(t0));
  }
  // Keep the result observable so the loops cannot be dropped.
  volatile float sink = pa[n / 2] + pc[n / 3];
  (void)sink;
  volatile uint64_t rsink = read_sink;
  (void)rsink;
  r.read_gbs = static_cast<double>(r.array_bytes) / best_read / 1e9;
  r.copy_gbs = 2.0 * static_cast<double>(r.array_bytes) / best_copy / 1e9;
  r.triad_gbs = 3.0 * static_cast<double>(r.array_bytes) / best_triad / 1e9;
  return r;
}

// The read bandwidth right before and right after each tg repetition (--bw-probe-mb): this
// machine's bandwidth moves between phases (a shared host), so a decode's GB/s is also set against
// what a plain read got in the same seconds, not only against the best-of STREAM figure taken at
// start. Best of 3 passes over the buffer on each side, the two averaged, outside the timed region.
class ReadProbe {
 public:
  ReadProbe(size_t mib, int threads)
      : bytes_(mib * 1024 * 1024), buf_(new uint64_t[bytes_ / sizeof(uint64_t)]) {
    uint64_t* p = buf_.get();
    parallel_for(threads, bytes_ / sizeof(uint64_t), [=](size_t i0, size_t i1) {  // first touch by the readers
      for (size_t i = i0; i < i1; ++i) p[i] = i * 0x9E3779B97F4A7C15ull;
    });
  }
  // best of kPasses read passes: one pass (a few ms) can land in a dip of tens of ms that the
  // decode around it, seconds long, averages out
  double gbs(int threads) {
    double best = 1e30;
    for (int i = 0; i < kPasses; ++i) best = std::min(best, read_pass(buf_.get(), bytes_, threads, &sink_));
    return static_cast<double>(bytes_) / best / 1e9;
  }
  static constexpr int kPasses = 3;
  ~ReadProbe() {
    volatile uint64_t s = sink_;
    (void)s;
  }

 private:
  size_t bytes_;
  std::unique_ptr<uint64_t[]> buf_;
  uint64_t sink_ = 0;
};

// ---- state bytes one decode step reads

// Estimate of the state bytes a decode token at position `pos` (tokens already in the sequence)
// reads, from the layout documented in forward.h (official numerics: compact rows):
//  - every layer: the raw-KV ring rows attended, min(pos, n_swa) × kv_row;
//  - CSA (ratio 4): the indexer scores every indexer key row (n_idx = pos/4 rows × idx_row) and
//    attention reads min(top_k, n_comp) compressed rows (n_comp = pos/4);
//  - HCA (ratio 128): attention reads every compressed row (pos/128 × kv_row);
//  - compressors: their 2r-input buffers (coff·d floats, c and z) are read when a row is
//    emitted, once per r tokens: amortized 2 × 2r × coff·d × 4 / r bytes per token.
double state_read_bytes(const dsv4::HParams& h, bool official, double pos) {
  const int64_t dh = h.head_dim, nrot = h.n_rot, dn = dh - nrot;
  const bool kv_compact = official && dn % 64 == 0;
  const double kv_row = kv_compact ? static_cast<double>(dn + dn / 64 + nrot * 4) : static_cast<double>(dh * 4);
  const int64_t di = h.indexer_head_dim;
  const bool idx_compact = official && di % 32 == 0;
  const double idx_row = idx_compact ? static_cast<double>(di / 2 + di / 32) : static_cast<double>(di * 4);
  double b = 0;
  for (int64_t il = 0; il < h.n_layer; ++il) {
    const int32_t r = h.ratio(il);
    b += std::min(pos, static_cast<double>(h.n_swa)) * kv_row;
    if (r == 4) {
      const double n_rows = std::floor(pos / 4);
      b += n_rows * idx_row + std::min(n_rows, static_cast<double>(h.indexer_top_k)) * kv_row;
      b += 2.0 * 2 * 4 * 2.0 * static_cast<double>(dh) * 4 / 4;   // main compressor, coff 2
      b += 2.0 * 2 * 4 * 2.0 * static_cast<double>(di) * 4 / 4;   // indexer compressor, coff 2
    } else if (r == 128) {
      b += std::floor(pos / 128) * kv_row;
      b += 2.0 * 2 * 128 * 1.0 * static_cast<double>(dh) * 4 / 128;  // coff 1
    }
  }
  return b;
}

// ---- options and results

struct Options {
  std::vector<std::string> models;
  std::string p = "512", n = "128", d = "0", t, b = "2048", ub = "512";
  int reps = 5;
  std::string output = "md";
  bool no_warmup = false;
  bool use_mmap = false, no_mmap = false;
  bool raw_numerics = false;
  std::string act_quant = "q8";
  std::string tg_input = "random";
  uint64_t seed = 1234;
  size_t stream_mib = 128;
  int stream_reps = 5;
  size_t probe_mib = 256;
  bool no_stream = false;
  bool progress = false;
  bool worker = false;
};

struct Row {
  std::string file, type_mix, backend;
  uint64_t model_bytes = 0, active_bytes = 0;
  int threads = 0;
  int64_t n_batch = 0, n_ubatch = 0, n_prompt = 0, n_gen = 0, n_depth = 0;
  std::vector<double> seconds;  // per repetition
  double state_bytes = 0;       // tg: state bytes read per token (estimate)
  std::vector<double> probe_gbs;  // tg with --bw-probe-mb: mean of the read passes before and after each repetition
  std::string test_name() const {
    std::string s = n_prompt > 0 ? fmt::format("pp{}", n_prompt) : fmt::format("tg{}", n_gen);
    if (n_depth > 0) s += fmt::format(" @ d{}", n_depth);
    return s;
  }
  int64_t tokens() const { return n_prompt > 0 ? n_prompt : n_gen; }
  std::vector<double> ts() const {
    std::vector<double> v;
    for (double s : seconds) v.push_back(static_cast<double>(tokens()) / s);
    return v;
  }
  double bytes_per_token() const { return static_cast<double>(active_bytes) + state_bytes; }
  std::vector<double> gbs() const {
    std::vector<double> v;
    for (double x : ts()) v.push_back(x * bytes_per_token() / 1e9);
    return v;
  }
  // per repetition: the decode's GB/s over the read probe's GB/s around it (empty without probes)
  std::vector<double> probe_fraction() const {
    std::vector<double> v;
    const auto g = gbs();
    for (size_t i = 0; i < probe_gbs.size() && i < g.size(); ++i) v.push_back(g[i] / probe_gbs[i]);
    return v;
  }
};

double mean(const std::vector<double>& v) {
  double s = 0;
  for (double x : v) s += x;
  return v.empty() ? 0 : s / static_cast<double>(v.size());
}
double stdev(const std::vector<double>& v) {
  if (v.size() < 2) return 0;
  const double m = mean(v);
  double s = 0;
  for (double x : v) s += (x - m) * (x - m);
  return std::sqrt(s / static_cast<double>(v.size() - 1));
}

Status parse_list(const std::string& what, const std::string& s, int64_t lo, std::vector<int64_t>& out) {
  std::string t = s;
  for (char& c : t)
    if (c == ',') c = ' ';
  std::istringstream is(t);
  std::string tok;
  while (is >> tok) {
    char* end = nullptr;
    const long long v = std::strtoll(tok.c_str(), &end, 10);
    if (end == tok.c_str() || *end != '\0' || v < lo)
      return Status(dsv4::ErrorCode::kInvalidArgument, fmt::format("{}: bad value '{}' (need an integer ≥ {})", what, tok, lo));
    out.push_back(v);
  }
  if (out.empty()) return Status(dsv4::ErrorCode::kInvalidArgument, fmt::format("{}: empty list", what));
  return Status::ok();
}

int fail(const Status& s) {
  fmt::print(stderr, "dsv4-bench: {}\n", s.to_string());
  return 1;
}

std::string basename_of(const std::string& p) {
  const size_t s = p.rfind('/');
  return s == std::string::npos ? p : p.substr(s + 1);
}

std::string human_bytes(double b) {
  if (b >= 1024.0 * 1024 * 1024) return fmt::format("{:.2f} GiB", b / (1024.0 * 1024 * 1024));
  if (b >= 1024.0 * 1024) return fmt::format("{:.2f} MiB", b / (1024.0 * 1024));
  return fmt::format("{:.1f} KiB", b / 1024.0);
}

// One thread count's backend and forward pass.
struct Engine {
  std::unique_ptr<dsv4::backend::Ops> ops;
  std::unique_ptr<Forward> fwd;
};

Engine make_engine(const Model& m, int threads, const std::string& act_quant) {
  Engine e;
  e.ops = dsv4::backend::make_cpu_ops(threads);
  e.ops->set_act_quant(act_quant == "f32" ? dsv4::backend::ActQuant::kF32 : dsv4::backend::ActQuant::kQ8);
  e.fwd = std::make_unique<Forward>(m, *e.ops);
  return e;
}

// n token ids drawn uniformly from the vocabulary.
std::vector<int32_t> random_ids(std::mt19937_64& rng, int64_t n_vocab, int64_t n) {
  std::uniform_int_distribution<int32_t> u(0, static_cast<int32_t>(n_vocab - 1));
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (auto& x : v) x = u(rng);
  return v;
}

// Runs `tokens` through `st` in calls of `chunk` tokens (last-token logits each call).
Status run_chunks(Forward& fwd, SequenceState& st, std::span<const int32_t> tokens, int64_t chunk,
                  std::vector<float>& logits) {
  for (size_t i = 0; i < tokens.size(); i += static_cast<size_t>(chunk)) {
    const size_t n = std::min(static_cast<size_t>(chunk), tokens.size() - i);
    SeqInput in{&st, tokens.subspan(i, n), false};
    if (Status s = fwd.run(std::span<const SeqInput>(&in, 1), logits); !s) return s;
  }
  return Status::ok();
}

int32_t argmax(const std::vector<float>& v) {
  return static_cast<int32_t>(std::max_element(v.begin(), v.end()) - v.begin());
}

// --worker: our side of bench/pair-bench.py (upstream's is scripts/peer/bench_worker.cpp, same
// protocol): the model stays loaded and timed runs are done on request, one command per stdin
// line, one answer line on stdout each:
//   depth D  → "depth D SECONDS"  the state at depth D (random ids, ubatch-sized calls), snapshotted
//   tg N     → "tg N SECONDS"     restore the snapshot, N one-token Forward::run calls (timed)
//   pp N     → "pp N SECONDS"     restore, N tokens in ubatch-sized calls (timed)
//   quit
// "ready" once the model is loaded; "error: …" and exit 1 on a bad command or a failed run.
int run_worker(const Model& m, Forward& fwd, const dsv4::model::StateOptions& base, int64_t chunk,
               std::mt19937_64& rng) {
  auto die = [](const std::string& msg) {
    fmt::print("error: {}\n", msg);
    std::fflush(stdout);
    return 1;
  };
  auto draw = [&](int64_t n) { return random_ids(rng, m.hparams().n_vocab, n); };
  std::unique_ptr<SequenceState> st = std::make_unique<SequenceState>(m, base);
  SequenceState::Checkpoint cp = st->checkpoint();
  int64_t depth = 0;
  std::vector<float> logits;
  fmt::print("ready\n");
  std::fflush(stdout);
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream is(line);
    std::string cmd;
    int64_t n = -1;
    is >> cmd >> n;
    if (cmd == "quit") break;
    if ((cmd != "depth" && cmd != "tg" && cmd != "pp") || n < (cmd == "depth" ? 0 : 1))
      return die(fmt::format("bad command '{}'", line));
    if (cmd != "depth" && depth + n + 1 > base.n_ctx)
      return die(fmt::format("{} {} at depth {} needs n_ctx {} (have {}; raise -p/-n/-d)", cmd, n, depth,
                             depth + n + 1, base.n_ctx));
    const auto t0 = Clock::now();
    if (cmd == "depth") {
      if (n + 1 > base.n_ctx) return die(fmt::format("depth {} exceeds n_ctx {}", n, base.n_ctx));
      st = std::make_unique<SequenceState>(m, base);  // restore() only goes backwards
      if (n > 0)
        if (Status s = run_chunks(fwd, *st, draw(n), chunk, logits); !s) return die(s.to_string());
      cp = st->checkpoint();
      depth = n;
      fmt::print("depth {} {:.9f}\n", n, seconds_since(t0));
    } else {
      const std::vector<int32_t> ids = draw(n);
      st->restore(cp);
      const auto t1 = Clock::now();
      if (cmd == "pp") {
        if (Status s = run_chunks(fwd, *st, ids, chunk, logits); !s) return die(s.to_string());
      } else {
        for (int64_t i = 0; i < n; ++i) {
          SeqInput in{st.get(), std::span<const int32_t>(&ids[static_cast<size_t>(i)], 1), false};
          if (Status s = fwd.run(std::span<const SeqInput>(&in, 1), logits); !s) return die(s.to_string());
        }
      }
      fmt::print("{} {} {:.9f}\n", cmd, n, seconds_since(t1));
    }
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  for (auto& a : args)
    if (a == "-ub") a = "--ubatch-size";
  std::vector<char*> argp;
  for (auto& a : args) argp.push_back(a.data());
  argc = static_cast<int>(argp.size());
  argv = argp.data();

  CLI::App app{"dsv4-bench: prompt and generation speed of dsv4 (llama-bench style)"};
  Options o;
  app.add_option("-m,--model", o.models, "DeepSeek-V4 GGUF (repeatable)")->required();
  app.add_option("-p,--n-prompt", o.p, "prompt sizes, comma list (0: none)")->capture_default_str();
  app.add_option("-n,--n-gen", o.n, "generation lengths, comma list (0: none)")->capture_default_str();
  app.add_option("-d,--n-depth", o.d, "depths (tokens already in the sequence), comma list")->capture_default_str();
  app.add_option("-r,--repetitions", o.reps, "repetitions of each test")->check(CLI::Range(1, 1000))->capture_default_str();
  app.add_option("-t,--threads", o.t, "thread counts, comma list (default: all cores)");
  app.add_option("-b,--batch-size", o.b, "logical batch sizes, comma list")->capture_default_str();
  app.add_option("--ubatch-size", o.ub, "tokens per Forward::run call, comma list")->capture_default_str();
  app.add_option("-o,--output", o.output, "md | csv | json")->check(CLI::IsMember({"md", "csv", "json"}))->capture_default_str();
  app.add_flag("--no-warmup", o.no_warmup, "no warm-up run before each test's repetitions");
  auto* mmap_flag = app.add_flag("--mmap", o.use_mmap, "keep the weights memory-mapped (default: auto, see dsv4-cli --help)");
  app.add_flag("--no-mmap", o.no_mmap, "read the weights into memory (2 MiB pages) instead of mapping them")->excludes(mmap_flag);
  app.add_flag("--no-official-numerics", o.raw_numerics, "float32 KV/indexer rows (not the §9.2/§9.3 rounding)");
  app.add_option("--act-quant", o.act_quant, "activations against quantized weights: q8 (integer dots, like llama.cpp) | f32")
      ->check(CLI::IsMember({"q8", "f32"}))->capture_default_str();
  app.add_option("--tg-input", o.tg_input, "tg inputs: random (pre-drawn ids) | argmax (of the previous logits)")
      ->check(CLI::IsMember({"random", "argmax"}))->capture_default_str();
  app.add_option("--seed", o.seed, "seed of the random token ids")->capture_default_str();
  app.add_option("--stream-mb", o.stream_mib, "MiB per STREAM array (3 arrays)")->check(CLI::Range(size_t{1}, size_t{1} << 16))->capture_default_str();
  app.add_option("--stream-reps", o.stream_reps, "STREAM repetitions (best is kept)")->check(CLI::Range(1, 1000))->capture_default_str();
  app.add_flag("--no-stream", o.no_stream, "skip the bandwidth measurement");
  app.add_option("--bw-probe-mb", o.probe_mib, "MiB read right before and after each tg repetition, to set the decode's GB/s against the bandwidth of that moment (0: off)")
      ->check(CLI::Range(size_t{0}, size_t{1} << 16))->capture_default_str();
  app.add_flag("--progress", o.progress, "print each test as it runs (stderr)");
  app.add_flag("--worker", o.worker, "serve timed runs on request (stdin commands; bench/pair-bench.py); one -m, one -t");
  CLI11_PARSE(app, argc, argv);

  std::vector<int64_t> pps, tgs, depths, threads, batches, ubatches;
  if (o.t.empty()) o.t = std::to_string(online_cores());
  if (Status s = parse_list("-p", o.p, 0, pps); !s) return fail(s);
  if (Status s = parse_list("-n", o.n, 0, tgs); !s) return fail(s);
  if (Status s = parse_list("-d", o.d, 0, depths); !s) return fail(s);
  if (Status s = parse_list("-t", o.t, 1, threads); !s) return fail(s);
  if (Status s = parse_list("-b", o.b, 1, batches); !s) return fail(s);
  if (Status s = parse_list("-ub", o.ub, 1, ubatches); !s) return fail(s);
  std::erase(pps, 0);
  std::erase(tgs, 0);
  if (pps.empty() && tgs.empty()) return fail(Status(dsv4::ErrorCode::kInvalidArgument, "no test: every -p and -n is 0"));
  const int64_t max_threads = *std::max_element(threads.begin(), threads.end());
  const int64_t max_pp = pps.empty() ? 0 : *std::max_element(pps.begin(), pps.end());
  const int64_t max_tg = tgs.empty() ? 0 : *std::max_element(tgs.begin(), tgs.end());
  const dsv4::LoadMode load_mode = o.use_mmap ? dsv4::LoadMode::kMmap : o.no_mmap ? dsv4::LoadMode::kRead : dsv4::LoadMode::kAuto;
  if (o.worker) {
    if (o.models.size() != 1 || threads.size() != 1)
      return fail(Status(dsv4::ErrorCode::kInvalidArgument, "--worker takes one -m and one -t"));
    auto mr = Model::load(o.models[0], dsv4::MapOptions{load_mode, true});
    if (!mr) return fail(mr.status());
    const Model& m = **mr;
    fmt::print(stderr, "{}: weights {} ({})\n", o.models[0], human_bytes(static_cast<double>(m.weight_bytes())),
               m.weights_residency());
    Engine e = make_engine(m, static_cast<int>(max_threads), o.act_quant);
    dsv4::model::StateOptions so;
    so.n_ctx = *std::max_element(depths.begin(), depths.end()) + std::max(max_pp, max_tg) + 1;
    so.official_numerics = !o.raw_numerics;
    std::mt19937_64 wrng(o.seed);
    return run_worker(m, *e.fwd, so, std::min(ubatches.front(), batches.front()), wrng);
  }

  nlohmann::json header;
  header["cpu"] = cpu_model();
  header["cores"] = online_cores();
  header["commit"] = source_commit();
  header["repetitions"] = o.reps;
  header["warmup"] = !o.no_warmup;
  header["tg_input"] = o.tg_input;
  header["seed"] = o.seed;
  header["act_quant"] = o.act_quant;

  StreamResult bw;
  if (!o.no_stream) {
    if (o.progress) fmt::print(stderr, "measuring bandwidth ({} MiB x 3, {} threads, best of {})\n", o.stream_mib, max_threads, o.stream_reps);
    bw = measure_bandwidth(o.stream_mib, static_cast<int>(max_threads), o.stream_reps);
    header["stream"] = {{"copy_gbs", bw.copy_gbs}, {"triad_gbs", bw.triad_gbs}, {"read_gbs", bw.read_gbs},
                        {"array_bytes", bw.array_bytes}, {"threads", bw.threads}, {"best_of", bw.reps}};
  }

  std::unique_ptr<ReadProbe> probe;
  if (o.probe_mib > 0 && !tgs.empty()) probe = std::make_unique<ReadProbe>(o.probe_mib, static_cast<int>(max_threads));
  if (probe) header["bw_probe_bytes"] = o.probe_mib * 1024 * 1024;

  std::vector<Row> rows;
  nlohmann::json files = nlohmann::json::array();
  std::mt19937_64 rng(o.seed);

  for (const std::string& path : o.models) {
    auto mr = Model::load(path, dsv4::MapOptions{load_mode, true});
    if (!mr) return fail(mr.status());
    const Model& m = **mr;
    const dsv4::HParams& h = m.hparams();
    const std::string mix = m.type_mix();
    fmt::print(stderr, "{}: {} layers, n_embd {}, {} experts x {} ({} used), vocab {}; weights {} ({}), {} per token; types: {}\n",
               path, h.n_layer, h.n_embd, h.n_expert, h.n_ff_exp, h.n_expert_used, h.n_vocab,
               human_bytes(static_cast<double>(m.weight_bytes())), m.weights_residency(),
               human_bytes(static_cast<double>(m.active_bytes_per_token())), mix);
    files.push_back({{"file", path}, {"type_mix", mix}, {"weight_bytes", m.weight_bytes()},
                     {"weights", m.weights_residency()},
                     {"active_bytes_per_token", m.active_bytes_per_token()}, {"n_layer", h.n_layer},
                     {"n_embd", h.n_embd}, {"n_vocab", h.n_vocab}});

    // Engines per thread count (a fresh CpuOps each, so no idle workers of a larger pool).
    std::map<int64_t, Engine> engines;
    for (int64_t t : threads) {
      if (engines.count(t)) continue;
      engines.emplace(t, make_engine(m, static_cast<int>(t), o.act_quant));
    }

    auto draw = [&](int64_t n) { return random_ids(rng, h.n_vocab, n); };
    std::vector<int32_t> prompt = draw(std::max<int64_t>(max_pp, 1));
    std::vector<int32_t> gen = draw(std::max<int64_t>(max_tg, 1));
    std::vector<float> logits;

    for (int64_t depth : depths) {
      dsv4::model::StateOptions so;
      so.n_ctx = depth + std::max(max_pp, max_tg) + 1;
      so.official_numerics = !o.raw_numerics;
      SequenceState st(m, so);
      // Build the depth once (largest thread count, first ubatch size), then snapshot it.
      if (depth > 0) {
        Engine& e = engines.at(max_threads);
        const std::vector<int32_t> fill = draw(depth);
        const auto t0 = Clock::now();
        if (Status s = run_chunks(*e.fwd, st, fill, std::min(ubatches.front(), batches.front()), logits); !s) return fail(s);
        if (o.progress) fmt::print(stderr, "  depth {} built in {:.2f} s\n", depth, seconds_since(t0));
      }
      const SequenceState::Checkpoint cp = st.checkpoint();

      for (int64_t t : threads) {
        Engine& e = engines.at(t);
        for (int64_t nb : batches) {
          for (int64_t nub : ubatches) {
            const int64_t chunk = std::min(nb, nub);
            auto one = [&](int64_t n_prompt, int64_t n_gen, double& secs, double* probe_gbs) -> Status {
              st.restore(cp);
              if (n_prompt > 0) {
                const auto t0 = Clock::now();
                if (Status s = run_chunks(*e.fwd, st, std::span<const int32_t>(prompt.data(), static_cast<size_t>(n_prompt)), chunk, logits); !s) return s;
                secs = seconds_since(t0);
                return Status::ok();
              }
              int32_t tok = gen[0];
              const double before = probe_gbs != nullptr ? probe->gbs(static_cast<int>(t)) : 0.0;
              const auto t0 = Clock::now();
              for (int64_t i = 0; i < n_gen; ++i) {
                SeqInput in{&st, std::span<const int32_t>(&tok, 1), false};
                if (Status s = e.fwd->run(std::span<const SeqInput>(&in, 1), logits); !s) return s;
                tok = o.tg_input == "argmax" ? argmax(logits) : gen[static_cast<size_t>((i + 1) % static_cast<int64_t>(gen.size()))];
              }
              secs = seconds_since(t0);
              if (probe_gbs != nullptr) *probe_gbs = 0.5 * (before + probe->gbs(static_cast<int>(t)));
              return Status::ok();
            };
            auto test = [&](int64_t n_prompt, int64_t n_gen) -> Status {
              Row r;
              r.file = path;
              r.type_mix = mix;
              r.backend = e.ops->name() + " act " + dsv4::backend::act_quant_name(e.ops->act_quant());
              r.model_bytes = m.weight_bytes();
              r.active_bytes = m.active_bytes_per_token();
              r.threads = static_cast<int>(t);
              r.n_batch = nb;
              r.n_ubatch = nub;
              r.n_prompt = n_prompt;
              r.n_gen = n_gen;
              r.n_depth = depth;
              if (n_gen > 0)
                r.state_bytes = state_read_bytes(h, !o.raw_numerics, static_cast<double>(depth) + (static_cast<double>(n_gen) - 1) / 2);
              if (o.progress) fmt::print(stderr, "  {} t={} ub={}:", r.test_name(), t, nub);
              double secs = 0;
              if (!o.no_warmup)
                if (Status s = one(n_prompt, n_gen, secs, nullptr); !s) return s;
              for (int rep = 0; rep < o.reps; ++rep) {
                double pg = 0;
                if (Status s = one(n_prompt, n_gen, secs, n_gen > 0 && probe ? &pg : nullptr); !s) return s;
                r.seconds.push_back(secs);
                if (n_gen > 0 && probe) r.probe_gbs.push_back(pg);
                if (o.progress) fmt::print(stderr, " {:.2f}", static_cast<double>(r.tokens()) / secs);
              }
              if (o.progress) fmt::print(stderr, " t/s\n");
              rows.push_back(std::move(r));
              return Status::ok();
            };
            for (int64_t pp : pps)
              if (Status s = test(pp, 0); !s) return fail(s);
            for (int64_t tg : tgs)
              if (Status s = test(0, tg); !s) return fail(s);
          }
        }
      }
    }
  }

  // ---- output
  const double bw_best = std::max({bw.copy_gbs, bw.triad_gbs, bw.read_gbs});
  if (o.output == "json") {
    nlohmann::json j = header;
    j["files"] = files;
    nlohmann::json res = nlohmann::json::array();
    for (const Row& r : rows) {
      const auto ts = r.ts();
      std::vector<int64_t> ns;
      for (double s : r.seconds) ns.push_back(static_cast<int64_t>(std::llround(s * 1e9)));
      nlohmann::json x = {{"model_filename", r.file}, {"type_mix", r.type_mix}, {"backend", r.backend},
                          {"model_size", r.model_bytes}, {"active_bytes_per_token", r.active_bytes},
                          {"n_threads", r.threads}, {"n_batch", r.n_batch}, {"n_ubatch", r.n_ubatch},
                          {"n_prompt", r.n_prompt}, {"n_gen", r.n_gen}, {"n_depth", r.n_depth},
                          {"test", r.test_name()}, {"samples_ns", ns}, {"samples_ts", ts},
                          {"avg_ns", static_cast<int64_t>(std::llround(mean(r.seconds) * 1e9))},
                          {"stddev_ns", static_cast<int64_t>(std::llround(stdev(r.seconds) * 1e9))},
                          {"avg_ts", mean(ts)}, {"stddev_ts", stdev(ts)}};
      if (r.n_gen > 0) {
        x["state_bytes_per_token"] = r.state_bytes;
        x["bytes_per_token"] = r.bytes_per_token();
        x["avg_gbs"] = mean(r.gbs());
        x["stddev_gbs"] = stdev(r.gbs());
        if (bw_best > 0) x["bw_fraction"] = mean(r.gbs()) / bw_best;
        if (!r.probe_gbs.empty()) {
          x["probe_read_gbs"] = r.probe_gbs;
          x["probe_fraction"] = r.probe_fraction();
          x["avg_probe_fraction"] = mean(r.probe_fraction());
        }
      }
      res.push_back(x);
    }
    j["results"] = res;
    fmt::print("{}\n", j.dump(2));
    return 0;
  }
  if (o.output == "csv") {
    fmt::print("cpu,cores,commit,model_filename,type_mix,backend,model_size,active_bytes_per_token,n_threads,n_batch,n_ubatch,"
               "n_prompt,n_gen,n_depth,test,avg_ts,stddev_ts,avg_gbs,stddev_gbs,stream_copy_gbs,stream_triad_gbs,"
               "avg_probe_read_gbs,avg_probe_fraction\n");
    for (const Row& r : rows) {
      const auto ts = r.ts();
      const bool tg = r.n_gen > 0;
      const bool pr = !r.probe_gbs.empty();
      fmt::print("\"{}\",{},{},\"{}\",\"{}\",{},{},{},{},{},{},{},{},{},\"{}\",{:.4f},{:.4f},{},{},{:.3f},{:.3f},{},{}\n",
                 header["cpu"].get<std::string>(), online_cores(), header["commit"].get<std::string>(), r.file,
                 r.type_mix, r.backend, r.model_bytes, r.active_bytes, r.threads, r.n_batch, r.n_ubatch,
                 r.n_prompt, r.n_gen, r.n_depth, r.test_name(), mean(ts), stdev(ts),
                 tg ? fmt::format("{:.4f}", mean(r.gbs())) : "", tg ? fmt::format("{:.4f}", stdev(r.gbs())) : "",
                 bw.copy_gbs, bw.triad_gbs, pr ? fmt::format("{:.3f}", mean(r.probe_gbs)) : "",
                 pr ? fmt::format("{:.4f}", mean(r.probe_fraction())) : "");
    }
    return 0;
  }
  // markdown
  fmt::print("machine: {} ({} cores); commit: {}\n", header["cpu"].get<std::string>(), online_cores(),
             header["commit"].get<std::string>());
  if (!o.no_stream)
    fmt::print("bandwidth (STREAM-style, {} threads, 3 x {} MiB, best of {}): copy {:.2f} GB/s, triad {:.2f} GB/s, "
               "read {:.2f} GB/s; '% of bw' is against the largest\n",
               bw.threads, o.stream_mib, bw.reps, bw.copy_gbs, bw.triad_gbs, bw.read_gbs);
  for (const auto& f : files)
    fmt::print("file: {}: {}, {} read per token; types: {}\n", f["file"].get<std::string>(),
               human_bytes(static_cast<double>(f["weight_bytes"].get<uint64_t>())),
               human_bytes(static_cast<double>(f["active_bytes_per_token"].get<uint64_t>())),
               f["type_mix"].get<std::string>());
  if (probe)
    fmt::print("'% of read around': the decode's GB/s over a {} MiB read (best of 3 passes) right before and after each repetition\n",
               o.probe_mib);
  fmt::print("\n| model | size | backend | threads | n_ubatch | test | t/s | GB/s | % of bw | % of read around |\n");
  fmt::print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (const Row& r : rows) {
    const auto ts = r.ts();
    std::string gb = "", frac = "", around = "";
    if (r.n_gen > 0) {
      gb = fmt::format("{:.2f} ± {:.2f}", mean(r.gbs()), stdev(r.gbs()));
      if (bw_best > 0) frac = fmt::format("{:.0f}%", 100.0 * mean(r.gbs()) / bw_best);
      if (!r.probe_gbs.empty())
        around = fmt::format("{:.0f}% of {:.1f} GB/s", 100.0 * mean(r.probe_fraction()), mean(r.probe_gbs));
    }
    fmt::print("| {} | {} | {} | {} | {} | {} | {:.2f} ± {:.2f} | {} | {} | {} |\n", basename_of(r.file),
               human_bytes(static_cast<double>(r.model_bytes)), r.backend, r.threads, r.n_ubatch, r.test_name(),
               mean(ts), stdev(ts), gb, frac, around);
  }
  return 0;
}
