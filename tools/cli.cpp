// dsv4-cli: one-shot generation from a prompt with a DeepSeek-V4 GGUF (issue 5, scope 6).
//
//   dsv4-cli -m model.gguf -p "Hello" -n 64 [--chat] [-t N] [-tb N] [-c CTX] [-b N] [-ub N]
//            [--temp T] [--top-k K] [--top-p P] [--min-p P] [--seed S] [--dump-logits FILE]
//
// Prints the model summary and memory plan (weights, state per token, state at the chosen
// context) to stderr, streams the generated text to stdout, then prompt and generation
// tokens/s. --dump-logits writes the logits of every generated step (the prompt's last
// position first) as a float32 .npy [steps][n_vocab], for tests. --dump-intermediates FILE
// writes every named intermediate of the forward pass (forward.h Observer) as text lines
// "name<TAB>layer<TAB>pos<TAB>v0 v1 …" (%.9g), for locating where two engines part.
// --force-selections PREFIX (testing) replaces the routers' and the indexer's choices by recorded
// ones (another engine's) where they differ, printing each replaced choice to stderr as
// "force-selections<TAB>router|indexer<TAB>layer<TAB>pos<TAB>our ids<TAB>recorded ids<TAB>our scores"
// (scripts/peer/flavour-logits.sh: the flavour comparison with the discrete choices taken alike).
#include <CLI/CLI.hpp>
#include <fmt/core.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <sstream>
#include <string>
#include <vector>

#include "dsv4/backend/cpu/cpu_ops.h"
#include "dsv4/backend/ref/ref_ops.h"
#include "dsv4/chat/chat.h"
#include "dsv4/format/npy.h"
#include "dsv4/model/forward.h"
#include "dsv4/model/model.h"
#include "dsv4/runtime/sampler.h"
#include "dsv4/tokenizer/tokenizer.h"

namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

std::string gib(double bytes) {
  if (bytes >= 1024.0 * 1024 * 1024) return fmt::format("{:.2f} GiB", bytes / (1024.0 * 1024 * 1024));
  if (bytes >= 1024.0 * 1024) return fmt::format("{:.1f} MiB", bytes / (1024.0 * 1024));
  return fmt::format("{:.1f} KiB", bytes / 1024.0);
}

int fail(const dsv4::Status& s) {
  fmt::print(stderr, "dsv4-cli: {}\n", s.to_string());
  return 1;
}

// The recorded choice of row `pos` of a [n][k] int array (entries < 0 dropped), or nullopt when
// the array is absent or has no such row.
std::optional<std::vector<int32_t>> recorded_row(const dsv4::NpyArray& a, int64_t pos) {
  if (a.shape.size() != 2 || pos < 0 || pos >= a.shape[0]) return std::nullopt;
  std::vector<int32_t> r;
  for (int64_t j = 0; j < a.shape[1]; ++j)
    if (const int64_t v = a.as_i64(pos * a.shape[1] + j); v >= 0) r.push_back(static_cast<int32_t>(v));
  return r;
}

// Prints a replaced choice: kind, layer, position, our ids, the recorded ids, and the scores we
// chose from (the whole row: n_expert router scores, or the visible indexer rows).
void print_forced(const char* kind, int layer, int64_t pos, const std::vector<int32_t>& ours,
                  const std::vector<int32_t>& rec, std::span<const float> scores) {
  fmt::print(stderr, "force-selections\t{}\t{}\t{}\t{}\t{}\t{:.9g}\n", kind, layer, pos, fmt::join(ours, ","),
             fmt::join(rec, ","), fmt::join(scores, ","));
}

// --force-selections PREFIX: loads PREFIX.L<il>.experts.npy (score-routed layers: n_expert_used
// distinct ids < n_expert per row) and PREFIX.L<il>.topk.npy (CSA layers: indexer row ids, −1 for
// none) where present, and installs hooks that replace our choice by the recorded one when the
// two differ as sets (printed; a recorded indexer row beyond the rows we see is printed and not
// taken). Errors: kInvalidArgument naming the file for a bad shape, an id out of range or a
// repeated id in a row.
dsv4::Status install_forced_selections(dsv4::model::Forward& fwd, const dsv4::HParams& h, const std::string& prefix,
                                       std::vector<dsv4::NpyArray>& experts, std::vector<dsv4::NpyArray>& rows) {
  experts.assign(static_cast<size_t>(h.n_layer), {});
  rows.assign(static_cast<size_t>(h.n_layer), {});
  int n_files = 0;
  for (int64_t il = 0; il < h.n_layer; ++il) {
    for (const bool is_exp : {true, false}) {
      const std::string path = prefix + ".L" + std::to_string(il) + (is_exp ? ".experts.npy" : ".topk.npy");
      if (!std::filesystem::exists(path)) continue;
      auto r = dsv4::npy_read(path);
      if (!r) return r.status();
      dsv4::NpyArray& a = (is_exp ? experts : rows)[static_cast<size_t>(il)];
      a = std::move(*r);
      const bool int_type = a.descr == "<i4" || a.descr == "<i8";
      if (!int_type || a.shape.size() != 2 || (is_exp && a.shape[1] != h.n_expert_used))
        return dsv4::Status(dsv4::ErrorCode::kInvalidArgument,
                            path + ": want int32/int64 [n_tokens][" + (is_exp ? std::to_string(h.n_expert_used) : "k") + "]");
      for (int64_t k = 0; k < a.size(); ++k) {
        const int64_t v = a.as_i64(k);
        if (is_exp ? (v < 0 || v >= h.n_expert) : (v < -1 || v > INT32_MAX))
          return dsv4::Status(dsv4::ErrorCode::kInvalidArgument, path + ": id " + std::to_string(v) + " out of range");
      }
      for (int64_t p = 0; p < a.shape[0]; ++p) {
        std::vector<int32_t> v = *recorded_row(a, p);
        std::sort(v.begin(), v.end());
        if (std::adjacent_find(v.begin(), v.end()) != v.end())
          return dsv4::Status(dsv4::ErrorCode::kInvalidArgument,
                              path + ": row " + std::to_string(p) + (is_exp ? " repeats an expert" : " repeats a row id"));
      }
      ++n_files;
    }
  }
  if (n_files == 0)
    return dsv4::Status(dsv4::ErrorCode::kInvalidArgument, "--force-selections: no " + prefix + ".L<il>.{experts,topk}.npy");
  auto same_set = [](std::vector<int32_t> a, std::vector<int32_t> b) {
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    return a == b;
  };
  // (layers ≥ n_layer, e.g. an MTP block, are never forced)
  fwd.set_route_hook([&experts, same_set](int layer, int64_t pos, std::span<const float> biased, std::vector<int32_t>& ids) {
    if (layer < 0 || static_cast<size_t>(layer) >= experts.size()) return;
    auto rec = recorded_row(experts[static_cast<size_t>(layer)], pos);
    if (!rec || same_set(ids, *rec)) return;
    print_forced("router", layer, pos, ids, *rec, biased);
    ids = *rec;
  });
  fwd.set_hooks(nullptr, [&rows, same_set](int layer, int64_t pos, std::span<const float> scores, std::vector<int32_t>& sel) {
    if (layer < 0 || static_cast<size_t>(layer) >= rows.size()) return;
    auto rec = recorded_row(rows[static_cast<size_t>(layer)], pos);
    if (!rec || same_set(sel, *rec)) return;
    print_forced("indexer", layer, pos, sel, *rec, scores);
    // a recorded row we do not see (beyond our visible rows) is printed above, not taken
    if (std::any_of(rec->begin(), rec->end(), [&](int32_t j) { return static_cast<size_t>(j) >= scores.size(); })) return;
    sel = *rec;
  });
  return dsv4::Status::ok();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dsv4-cli: generate text with a DeepSeek-V4 model"};
  std::string model_path, prompt, dump_logits, backend = "cpu";
  int n_predict = 64, threads = 0, threads_batch = 0;
  int64_t n_ctx = 4096, n_batch = 2048, n_ubatch = 512;
  bool chat = false, no_think = false, raw_numerics = false;
  dsv4::runtime::SamplingParams sp;
  sp.temperature = 0.8f;
  sp.top_k = 40;
  sp.top_p = 0.95f;
  sp.min_p = 0.05f;
  int64_t seed = -1;
  app.add_option("-m,--model", model_path, "DeepSeek-V4 GGUF (first shard of a split set)")->required();
  std::string ids_arg;
  bool all_logits = false;
  auto* p_opt = app.add_option("-p,--prompt", prompt, "prompt text");
  app.add_option("--ids", ids_arg, "prompt as token ids (comma/space separated) instead of -p")->excludes(p_opt);
  app.add_option("-n,--n-predict", n_predict, "tokens to generate")->check(CLI::Range(0, 1 << 20));
  app.add_flag("--chat", chat, "wrap the prompt as one user message in the DeepSeek-V4 chat format");
  app.add_flag("--no-think", no_think, "with --chat: chat mode instead of thinking mode");
  app.add_option("-t,--threads", threads, "threads for generation (default: all cores)");
  // -tb and -ub are accepted as llama.cpp spells them (rewritten before parsing, see below)
  app.add_option("--threads-batch", threads_batch, "threads for the prompt (default: -t)");
  app.add_option("-c,--ctx-size", n_ctx, "context length")->check(CLI::Range(int64_t{1}, int64_t{1} << 24));
  app.add_option("-b,--batch-size", n_batch, "logical batch (accepted; prompt chunks are -ub)");
  app.add_option("--ubatch-size", n_ubatch, "prompt tokens per forward call")->check(CLI::Range(int64_t{1}, int64_t{1} << 20));
  app.add_option("--temp", sp.temperature, "temperature (0: greedy)");
  app.add_option("--top-k", sp.top_k, "top-k (0: off)");
  app.add_option("--top-p", sp.top_p, "top-p (1: off)");
  app.add_option("--min-p", sp.min_p, "min-p (0: off)");
  app.add_option("--seed", seed, "sampling seed (default: random)");
  bool use_mmap = false, no_mmap = false;
  auto* mmap_flag = app.add_flag("--mmap", use_mmap, "keep the weights memory-mapped (default: read into memory, in 2 MiB pages, "
                                 "when the file takes at most half the RAM; mapped otherwise)");
  app.add_flag("--no-mmap", no_mmap, "read the weights into memory (2 MiB pages) instead of mapping them")->excludes(mmap_flag);
  app.add_option("--backend", backend, "cpu or ref (the scalar oracle; slow)")->check(CLI::IsMember({"cpu", "ref"}));
  app.add_flag("--no-official-numerics", raw_numerics,
               "store KV and indexer keys in float32 instead of the official FP8/FP4 round trips");
  std::string act_quant = "q8";
  app.add_option("--act-quant", act_quant,
                 "activations against quantized weights: q8 (8-bit blocks + integer dots, like "
                 "llama.cpp; default) or f32 (exact float32)")
      ->check(CLI::IsMember({"q8", "f32"}));
  app.add_option("--dump-logits", dump_logits, "write every step's logits as float32 .npy");
  std::string dump_inter;
  app.add_option("--dump-intermediates", dump_inter,
                 "write the forward pass's named intermediates as text (name, layer, pos, values)");
  app.add_flag("--all-logits", all_logits,
               "with --dump-logits: the logits of every prompt position [n_prompt][n_vocab] (one "
               "prefill), then the generated steps' rows");
  std::string force_sel;
  app.add_option("--force-selections", force_sel,
                 "testing: take the routers' experts and the indexer's rows from PREFIX.L<il>.experts.npy "
                 "/ PREFIX.L<il>.topk.npy ([n_tokens][k] int, row = position; -1 = no row, .topk only) where "
                 "they differ from ours; each differing choice is printed with the scores we chose from");
  // llama.cpp's multi-letter single-dash flags (CLI11 allows one letter after a single dash)
  std::vector<std::string> args(argv, argv + argc);
  for (std::string& a : args) {
    if (a == "-tb") a = "--threads-batch";
    if (a == "-ub") a = "--ubatch-size";
  }
  std::vector<char*> av;
  for (std::string& a : args) av.push_back(a.data());
  CLI11_PARSE(app, static_cast<int>(av.size()), av.data());
  (void)n_batch;
  sp.seed = seed >= 0 ? static_cast<uint64_t>(seed)
                      : static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  if (dsv4::Status s = dsv4::runtime::validate(sp); !s) return fail(s);
  const bool tty = isatty(STDERR_FILENO) != 0;

  // ---- load
  const auto t_load = std::chrono::steady_clock::now();
  fmt::print(stderr, "loading {}\n", model_path);
  const dsv4::LoadMode load_mode = use_mmap ? dsv4::LoadMode::kMmap : no_mmap ? dsv4::LoadMode::kRead : dsv4::LoadMode::kAuto;
  auto mr = dsv4::model::Model::load(model_path, dsv4::MapOptions{load_mode, true});
  if (!mr) return fail(mr.status());
  const dsv4::model::Model& m = **mr;
  const dsv4::HParams& h = m.hparams();
  auto tr = dsv4::Tokenizer::from_gguf(m.file().meta(), model_path);
  if (!tr) return fail(tr.status());
  const dsv4::Tokenizer& tok = *tr;
  if (threads <= 0) threads = static_cast<int>(std::max(1L, sysconf(_SC_NPROCESSORS_ONLN)));
  if (threads_batch <= 0) threads_batch = threads;
  std::unique_ptr<dsv4::backend::Ops> ops;
  dsv4::backend::CpuOps* cpu = nullptr;
  if (backend == "ref") {
    ops = std::make_unique<dsv4::backend::RefOps>();
  } else {
    ops = dsv4::backend::make_cpu_ops(threads_batch);
    cpu = dynamic_cast<dsv4::backend::CpuOps*>(ops.get());
  }
  ops->set_act_quant(act_quant == "f32" ? dsv4::backend::ActQuant::kF32 : dsv4::backend::ActQuant::kQ8);
  dsv4::model::Forward fwd(m, *ops);
  std::unique_ptr<FILE, int (*)(FILE*)> inter(nullptr, fclose);
  if (!dump_inter.empty()) {
    inter.reset(std::fopen(dump_inter.c_str(), "w"));
    if (!inter) return fail(dsv4::Status(dsv4::ErrorCode::kIo, "cannot write " + dump_inter));
    fwd.set_observer([f = inter.get()](const std::string& name, int layer, int64_t pos,
                                       std::span<const float> v) {
      fmt::print(f, "{}\t{}\t{}\t", name, layer, pos);
      for (size_t i = 0; i < v.size(); ++i) fmt::print(f, "{}{:.9g}", i ? " " : "", v[i]);
      fmt::print(f, "\n");
    });
  }
  std::vector<dsv4::NpyArray> forced_experts, forced_rows;  // per layer; empty = not forced
  if (!force_sel.empty())
    if (dsv4::Status s = install_forced_selections(fwd, h, force_sel, forced_experts, forced_rows); !s) return fail(s);
  dsv4::model::SequenceState st(m, dsv4::model::StateOptions{n_ctx, !raw_numerics});
  fmt::print(stderr, "model: {} layers (n_embd {}, {} heads x {}, {} experts x {} ({} used), vocab {})\n",
             h.n_layer, h.n_embd, h.n_head, h.head_dim, h.n_expert, h.n_ff_exp, h.n_expert_used, h.n_vocab);
  fmt::print(stderr, "types: {}\n", m.type_mix());
  fmt::print(stderr,
             "memory plan: weights {} ({}; {} read per token), state {} fixed + {:.0f} B/token "
             "= {} at n_ctx {}\n",
             gib(static_cast<double>(m.weight_bytes())), m.weights_residency(),
             gib(static_cast<double>(m.active_bytes_per_token())),
             gib(static_cast<double>(st.bytes_fixed())), st.bytes_per_token(),
             gib(static_cast<double>(st.bytes_fixed()) + st.bytes_per_token() * static_cast<double>(n_ctx)), n_ctx);
  fmt::print(stderr, "backend: {} (activations {}), threads {} / batch {}; loaded in {:.0f} ms\n", ops->name(),
             dsv4::backend::act_quant_name(ops->act_quant()), threads,
             threads_batch, ms_since(t_load));

  // ---- prompt
  std::vector<int32_t> ids;
  if (!ids_arg.empty()) {
    for (char& c : ids_arg)
      if (c == ',') c = ' ';
    std::istringstream is(ids_arg);
    long long v = 0;
    while (is >> v) {
      if (v < 0 || v >= h.n_vocab)
        return fail(dsv4::Status(dsv4::ErrorCode::kInvalidArgument,
                                 fmt::format("--ids: token id {} out of range [0, {})", v, h.n_vocab)));
      ids.push_back(static_cast<int32_t>(v));
    }
  } else if (prompt.empty()) {
    return fail(dsv4::Status(dsv4::ErrorCode::kInvalidArgument, "give a prompt with -p or --ids"));
  } else if (chat) {
    dsv4::chat::Json msgs = dsv4::chat::Json::array();
    msgs.push_back({{"role", "user"}, {"content", prompt}});
    dsv4::chat::RenderOptions ro;
    ro.thinking = !no_think;
    auto text = dsv4::chat::render(msgs, ro);
    if (!text) return fail(text.status());
    auto e = tok.encode_rendered(*text);
    if (!e) return fail(e.status());
    ids.assign(e->begin(), e->end());
  } else {
    auto e = tok.encode_text(prompt);
    if (!e) return fail(e.status());
    ids.assign(e->begin(), e->end());
  }
  if (ids.empty()) return fail(dsv4::Status(dsv4::ErrorCode::kInvalidArgument, "the prompt has no tokens"));
  if (static_cast<int64_t>(ids.size()) + n_predict > n_ctx)
    return fail(dsv4::Status(dsv4::ErrorCode::kInvalidArgument,
                             fmt::format("prompt ({} tokens) + n_predict ({}) exceeds the context ({})",
                                         ids.size(), n_predict, n_ctx)));
  std::optional<int64_t> eos;
  if (const dsv4::GgufValue* v = m.file().find("tokenizer.ggml.eos_token_id")) eos = v->as_i64();

  std::vector<float> logits, dump;
  const auto t_prompt = std::chrono::steady_clock::now();
  for (size_t i = 0; i < ids.size(); i += static_cast<size_t>(n_ubatch)) {
    const size_t n = std::min(static_cast<size_t>(n_ubatch), ids.size() - i);
    dsv4::model::SeqInput in{&st, std::span<const int32_t>(ids.data() + i, n), all_logits};
    if (dsv4::Status s = fwd.run(std::span<const dsv4::model::SeqInput>(&in, 1), logits); !s) return fail(s);
    if (all_logits) {
      dump.insert(dump.end(), logits.begin(), logits.end());
      logits.erase(logits.begin(), logits.end() - h.n_vocab);
    }
    if (ids.size() > static_cast<size_t>(n_ubatch)) {
      if (tty)
        fmt::print(stderr, "\rprompt {}/{}", i + n, ids.size());
      else
        fmt::print(stderr, "prompt {}/{}\n", i + n, ids.size());
    }
  }
  if (tty && ids.size() > static_cast<size_t>(n_ubatch)) fmt::print(stderr, "\n");
  const double prompt_ms = ms_since(t_prompt);

  // ---- generate
  if (cpu != nullptr) cpu->set_threads(threads);
  dsv4::runtime::Sampler sampler(sp);
  dsv4::StreamDecoder dec(tok);
  int n_gen = 0;
  const auto t_gen = std::chrono::steady_clock::now();
  for (; n_gen < n_predict; ++n_gen) {
    if (!dump_logits.empty() && (n_gen > 0 || !all_logits)) dump.insert(dump.end(), logits.begin(), logits.end());
    auto smp = sampler.sample(logits);
    if (!smp) return fail(smp.status());
    const int32_t next = smp->id;
    if (eos && next == *eos) break;
    auto piece = dec.push(next);
    if (!piece) return fail(piece.status());
    std::fwrite(piece->data(), 1, piece->size(), stdout);
    std::fflush(stdout);
    if (n_gen + 1 == n_predict) {
      ++n_gen;
      break;
    }
    dsv4::model::SeqInput in{&st, std::span<const int32_t>(&next, 1), false};
    if (dsv4::Status s = fwd.run(std::span<const dsv4::model::SeqInput>(&in, 1), logits); !s) return fail(s);
  }
  const std::string tail = dec.finish();
  std::fwrite(tail.data(), 1, tail.size(), stdout);
  std::fputs("\n", stdout);
  const double gen_ms = ms_since(t_gen);
  fmt::print(stderr, "prompt: {} tokens in {:.1f} ms ({:.2f} t/s); generation: {} tokens in {:.1f} ms ({:.2f} t/s)\n",
             ids.size(), prompt_ms, 1000.0 * static_cast<double>(ids.size()) / prompt_ms, n_gen, gen_ms,
             n_gen > 0 ? 1000.0 * n_gen / gen_ms : 0.0);
  if (!dump_logits.empty()) {
    const int64_t steps = static_cast<int64_t>(dump.size()) / h.n_vocab;
    if (dsv4::Status s = dsv4::npy_write_f32(dump_logits, {steps, h.n_vocab}, dump.data()); !s) return fail(s);
  }
  return 0;
}
