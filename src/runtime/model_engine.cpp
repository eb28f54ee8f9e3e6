// dsv4 runtime: ModelEngine, the Engine over model::Forward (see model_engine.h, engine.h).
#include "dsv4/runtime/model_engine.h"

#include <algorithm>
#include <map>
#include <new>
#include <thread>

#include <unistd.h>
#include <vector>

#include "dsv4/backend/cpu/cpu_ops.h"
#include "dsv4/backend/ref/ref_ops.h"
#include "dsv4/model/forward.h"
#include "dsv4/model/model.h"

namespace dsv4::runtime {

namespace {

class ModelEngine final : public Engine {
 public:
  Status init(const ModelEngineOptions& o) {
    opts_ = o;
    auto m = model::Model::load(o.model_path, MapOptions{o.load_mode, true});
    if (!m) return m.status();
    model_ = std::move(*m);
    const HParams& h = model_->hparams();
    if (o.n_slots < 1) return Status(ErrorCode::kInvalidArgument, "n_slots must be ≥ 1");
    int64_t n_ctx = o.n_ctx > 0 ? o.n_ctx : h.n_ctx_train;
    if (n_ctx <= 0) n_ctx = 4096;
    threads_ = o.n_threads > 0 ? o.n_threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    threads_batch_ = o.n_threads_batch > 0 ? o.n_threads_batch : threads_;
    if (o.backend == "ref") {
      ops_ = std::make_unique<backend::RefOps>();
    } else if (o.backend == "cpu") {
      auto cpu = backend::make_cpu_ops(threads_);
      cpu_ = dynamic_cast<backend::CpuOps*>(cpu.get());
      ops_ = std::move(cpu);
    } else {
      return Status(ErrorCode::kInvalidArgument, "unknown backend '" + o.backend + "' (cpu, ref)");
    }
    ops_->set_act_quant(o.act_quant);
    fwd_ = std::make_unique<model::Forward>(*model_, *ops_);
    // automatic: every 1024 positions, or n_ctx/16 for long contexts (kMaxCheckpoints bounds the
    // memory either way)
    interval_ = o.checkpoint_interval > 0 ? o.checkpoint_interval : std::max<int64_t>(1024, n_ctx / 16);
    ubatch_ = std::max<int64_t>(1, o.n_ubatch);
    model::StateOptions so{n_ctx, o.official_numerics};
    {  // reliability R1: refuse a state that cannot fit, before allocating it
      model::SequenceState probe(*model_, model::StateOptions{1, o.official_numerics});
      const double per_slot = static_cast<double>(probe.bytes_fixed()) + probe.bytes_per_token() * static_cast<double>(n_ctx);
      const double need = per_slot * o.n_slots;
      const double phys = static_cast<double>(sysconf(_SC_PHYS_PAGES)) * static_cast<double>(sysconf(_SC_PAGESIZE));
      if (phys > 0 && need > phys)
        return Status(ErrorCode::kOutOfMemory,
                      "not enough memory: " + std::to_string(o.n_slots) + " slot(s) of n_ctx " + std::to_string(n_ctx) +
                          " need " + std::to_string(static_cast<int64_t>(need / (1 << 20))) + " MiB of state, the machine has " +
                          std::to_string(static_cast<int64_t>(phys / (1 << 20))) + " MiB");
    }
    slots_.resize(static_cast<size_t>(o.n_slots));
    for (Slot& s : slots_) s.state = std::make_unique<model::SequenceState>(*model_, so);
    info_.n_vocab = h.n_vocab;
    info_.n_ctx = n_ctx;
    info_.n_slots = o.n_slots;
    info_.model_path = o.model_path;
    info_.description = "deepseek4: " + std::to_string(h.n_layer) + " layers, n_embd " +
                        std::to_string(h.n_embd) + ", " + std::to_string(h.n_expert) +
                        " experts (" + std::to_string(h.n_expert_used) + " used); " +
                        model_->type_mix() + "; weights " + model_->weights_residency() + "; backend " + ops_->name() + ", activations " + backend::act_quant_name(ops_->act_quant());
    return Status::ok();
  }

  const EngineInfo& info() const override { return info_; }

  int64_t n_past(int slot) const override {
    return valid(slot) ? slots_[static_cast<size_t>(slot)].state->n_past() : -1;
  }

  Status prefill(int slot, std::span<const int32_t> tokens, std::span<float> logits) override {
    if (!valid(slot)) return bad_slot(slot);
    if (tokens.empty()) return Status(ErrorCode::kInvalidArgument, "prefill of zero tokens");
    if (static_cast<int64_t>(logits.size()) < info_.n_vocab)
      return Status(ErrorCode::kInvalidArgument, "logits buffer too small");
    Slot& s = slots_[static_cast<size_t>(slot)];
    if (s.state->n_past() + static_cast<int64_t>(tokens.size()) > info_.n_ctx)
      return Status(ErrorCode::kInvalidArgument,
                    "prompt of " + std::to_string(s.state->n_past() + static_cast<int64_t>(tokens.size())) +
                        " tokens exceeds the context of " + std::to_string(info_.n_ctx));
    set_threads(threads_batch_);
    return run_chunks(s, tokens, logits.data());
  }

  Status decode(std::span<const int> slots, std::span<const int32_t> tokens,
                std::span<float> logits) override {
    if (slots.size() != tokens.size())
      return Status(ErrorCode::kInvalidArgument, "decode: slots and tokens differ in length");
    if (logits.size() < slots.size() * static_cast<size_t>(info_.n_vocab))
      return Status(ErrorCode::kInvalidArgument, "logits buffer too small");
    std::vector<model::SeqInput> in;
    for (size_t i = 0; i < slots.size(); ++i) {
      if (!valid(slots[i])) return bad_slot(slots[i]);
      for (size_t k = 0; k < i; ++k)
        if (slots[k] == slots[i]) return Status(ErrorCode::kInvalidArgument, "decode: slot listed twice");
      in.push_back({slots_[static_cast<size_t>(slots[i])].state.get(), tokens.subspan(i, 1), false});
    }
    if (in.empty()) return Status::ok();
    set_threads(threads_);
    DSV4_RETURN_IF_ERROR(fwd_->run(in, out_));
    std::copy(out_.begin(), out_.end(), logits.begin());
    for (size_t i = 0; i < slots.size(); ++i) {
      Slot& s = slots_[static_cast<size_t>(slots[i])];
      s.tokens.push_back(tokens[i]);
      maybe_checkpoint(s);
    }
    return Status::ok();
  }

  Status rewind(int slot, int64_t n) override {
    if (!valid(slot)) return bad_slot(slot);
    Slot& s = slots_[static_cast<size_t>(slot)];
    if (n < 0 || n > s.state->n_past())
      return Status(ErrorCode::kInvalidArgument, "rewind to " + std::to_string(n) + " of " +
                                                     std::to_string(s.state->n_past()) + " tokens");
    if (n == s.state->n_past()) return Status::ok();
    // drop checkpoints past n, restore the latest one at or before n, replay the rest
    s.cps.erase(s.cps.upper_bound(n), s.cps.end());
    if (s.cps.empty()) {
      s.state->reset();
    } else {
      s.state->restore(s.cps.rbegin()->second);
    }
    const int64_t from = s.state->n_past();
    std::vector<int32_t> replay(s.tokens.begin() + from, s.tokens.begin() + n);
    s.tokens.resize(static_cast<size_t>(from));
    if (replay.empty()) return Status::ok();
    std::vector<float> tmp(static_cast<size_t>(info_.n_vocab));
    set_threads(threads_batch_);
    return run_chunks(s, replay, tmp.data());
  }

 private:
  struct Slot {
    std::unique_ptr<model::SequenceState> state;
    std::vector<int32_t> tokens;
    std::map<int64_t, model::SequenceState::Checkpoint> cps;
  };

  bool valid(int slot) const { return slot >= 0 && slot < static_cast<int>(slots_.size()); }
  static Status bad_slot(int slot) {
    return Status(ErrorCode::kInvalidArgument, "no slot " + std::to_string(slot));
  }
  void set_threads(int n) {
    if (cpu_ != nullptr) cpu_->set_threads(n);
  }
  // At most kMaxCheckpoints per slot (each is the whole fixed state, tens of MiB at Flash sizes):
  // the oldest goes first; a rewind below the oldest replays from position 0.
  static constexpr size_t kMaxCheckpoints = 16;
  void maybe_checkpoint(Slot& s) {
    const int64_t p = s.state->n_past();
    if (p > 0 && p % interval_ == 0) {
      s.cps[p] = s.state->checkpoint();
      while (s.cps.size() > kMaxCheckpoints) s.cps.erase(s.cps.begin());
    }
  }

  // Runs tokens in chunks of ≤ n_ubatch that end at checkpoint boundaries; the last chunk's
  // last logits go to `logits`.
  Status run_chunks(Slot& s, std::span<const int32_t> tokens, float* logits) {
    size_t i = 0;
    while (i < tokens.size()) {
      const int64_t p = s.state->n_past();
      int64_t len = std::min<int64_t>(ubatch_, static_cast<int64_t>(tokens.size() - i));
      len = std::min(len, interval_ - p % interval_);
      model::SeqInput in{s.state.get(), tokens.subspan(i, static_cast<size_t>(len)), false};
      DSV4_RETURN_IF_ERROR(fwd_->run(std::span<const model::SeqInput>(&in, 1), out_));
      s.tokens.insert(s.tokens.end(), tokens.begin() + static_cast<std::ptrdiff_t>(i),
                      tokens.begin() + static_cast<std::ptrdiff_t>(i) + len);
      maybe_checkpoint(s);
      i += static_cast<size_t>(len);
    }
    std::copy(out_.end() - info_.n_vocab, out_.end(), logits);
    return Status::ok();
  }

  ModelEngineOptions opts_;
  EngineInfo info_;
  std::unique_ptr<model::Model> model_;
  std::unique_ptr<backend::Ops> ops_;
  backend::CpuOps* cpu_ = nullptr;
  std::unique_ptr<model::Forward> fwd_;
  std::vector<Slot> slots_;
  std::vector<float> out_;
  int threads_ = 1, threads_batch_ = 1;
  int64_t interval_ = 1024, ubatch_ = 512;
};

}  // namespace

Result<std::unique_ptr<Engine>> make_model_engine(const ModelEngineOptions& opts) {
  try {
    auto e = std::make_unique<ModelEngine>();
    DSV4_RETURN_IF_ERROR(e->init(opts));
    return std::unique_ptr<Engine>(std::move(e));
  } catch (const std::bad_alloc&) {
    return Status(ErrorCode::kOutOfMemory, "not enough memory for " + std::to_string(opts.n_slots) +
                                               " slot(s) of n_ctx " + std::to_string(opts.n_ctx));
  }
}

}  // namespace dsv4::runtime
