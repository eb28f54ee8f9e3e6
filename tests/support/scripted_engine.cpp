// TEST-ONLY CODE: see scripted_engine.h.
#include "scripted_engine.h"

#include <algorithm>
#include <string>
#include <thread>
#include <utility>

namespace dsv4::testing {

namespace {
Status bad(std::string msg) { return Status(ErrorCode::kInvalidArgument, std::move(msg)); }
}  // namespace

ScriptedEngine::ScriptedEngine(ScriptedEngineOptions opts) : opts_(opts) {
  DSV4_CHECK(opts.n_slots >= 1 && opts.n_vocab >= 2 && opts.n_ctx >= 2);
  info_.n_vocab = opts.n_vocab;
  info_.n_ctx = opts.n_ctx;
  info_.n_slots = opts.n_slots;
  info_.model_path = "<scripted>";
  info_.description = "scripted test engine (no model)";
  slots_.resize(static_cast<size_t>(opts.n_slots));
}

int32_t ScriptedEngine::default_next(int32_t last, int64_t n_vocab) {
  // splitmix64 finaliser of the last token: cheap, well mixed, the same everywhere.
  uint64_t z = static_cast<uint64_t>(static_cast<uint32_t>(last)) + 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<int32_t>(z % static_cast<uint64_t>(n_vocab));
}

void ScriptedEngine::set_script(std::vector<int32_t> tokens) {
  std::lock_guard lk(mu_);
  script_ = std::move(tokens);
}
void ScriptedEngine::queue_script(std::vector<int32_t> tokens) {
  std::lock_guard lk(mu_);
  queue_.push_back(std::move(tokens));
}
void ScriptedEngine::set_script_fn(ScriptFn fn) {
  std::lock_guard lk(mu_);
  fn_ = std::move(fn);
}
void ScriptedEngine::clear_scripts() {
  std::lock_guard lk(mu_);
  script_.clear();
  queue_.clear();
  fn_ = nullptr;
  for (auto& s : slots_) s.own_script.reset();
}
void ScriptedEngine::set_decode_delay(std::chrono::microseconds d) {
  std::lock_guard lk(mu_);
  opts_.decode_delay = d;
}
void ScriptedEngine::set_prefill_token_delay(std::chrono::microseconds d) {
  std::lock_guard lk(mu_);
  opts_.prefill_token_delay = d;
}
void ScriptedEngine::set_poison_token(std::optional<int32_t> id) {
  std::lock_guard lk(mu_);
  poison_ = id;
}
void ScriptedEngine::fail_next_calls(int n) {
  std::lock_guard lk(mu_);
  fail_next_ = n;
}
ScriptedEngineCounters ScriptedEngine::counters() const {
  std::lock_guard lk(mu_);
  return counters_;
}
void ScriptedEngine::reset_counters() {
  std::lock_guard lk(mu_);
  counters_ = {};
}
std::vector<int32_t> ScriptedEngine::history(int slot) const {
  std::lock_guard lk(mu_);
  if (slot < 0 || slot >= info_.n_slots) return {};
  return slots_[static_cast<size_t>(slot)].hist;
}

int64_t ScriptedEngine::n_past(int slot) const {
  std::lock_guard lk(mu_);
  if (slot < 0 || slot >= info_.n_slots) return 0;
  return static_cast<int64_t>(slots_[static_cast<size_t>(slot)].hist.size());
}

Status ScriptedEngine::check_slot(int slot) const {
  if (slot < 0 || slot >= info_.n_slots)
    return bad("slot " + std::to_string(slot) + " out of range [0, " +
               std::to_string(info_.n_slots) + ")");
  return Status::ok();
}

Status ScriptedEngine::check_token(int32_t id) const {
  if (id < 0 || id >= info_.n_vocab)
    return bad("token id " + std::to_string(id) + " out of range [0, " +
               std::to_string(info_.n_vocab) + ")");
  return Status::ok();
}

Status ScriptedEngine::maybe_fail(std::span<const int32_t> tokens) {
  if (fail_next_ > 0) {
    --fail_next_;
    ++counters_.failed_calls;
    return bad("injected failure");
  }
  if (poison_) {
    for (int32_t t : tokens) {
      if (t == *poison_) {
        ++counters_.failed_calls;
        return bad("poison token " + std::to_string(t));
      }
    }
  }
  return Status::ok();
}

int32_t ScriptedEngine::next_token(const Slot& s) const {
  const int64_t k = static_cast<int64_t>(s.hist.size()) - s.gen_start;
  if (s.own_script && k >= 0 && k < static_cast<int64_t>(s.own_script->size()))
    return (*s.own_script)[static_cast<size_t>(k)];
  if (!s.own_script && k >= 0 && k < static_cast<int64_t>(script_.size()))
    return script_[static_cast<size_t>(k)];
  if (fn_) {
    const int32_t t = fn_(std::span<const int32_t>(s.hist));
    if (t >= 0 && t < info_.n_vocab) return t;
  }
  return default_next(s.hist.back());
}

void ScriptedEngine::write_logits(int32_t next, std::span<float> out) const {
  std::fill(out.begin(), out.end(), 0.0f);
  out[static_cast<size_t>(next)] = opts_.peak;
}

Status ScriptedEngine::prefill(int slot, std::span<const int32_t> tokens,
                               std::span<float> logits) {
  DSV4_RETURN_IF_ERROR(check_slot(slot));
  if (tokens.empty()) return bad("prefill of 0 tokens");
  for (int32_t t : tokens) DSV4_RETURN_IF_ERROR(check_token(t));
  if (static_cast<int64_t>(logits.size()) < info_.n_vocab)
    return bad("logits span holds " + std::to_string(logits.size()) + " < n_vocab " +
               std::to_string(info_.n_vocab));
  std::chrono::microseconds delay{0};
  {
    std::lock_guard lk(mu_);
    const Slot& s = slots_[static_cast<size_t>(slot)];
    const int64_t end = static_cast<int64_t>(s.hist.size()) + static_cast<int64_t>(tokens.size());
    if (end > info_.n_ctx)
      return bad("slot " + std::to_string(slot) + ": " + std::to_string(end) +
                 " positions exceed n_ctx " + std::to_string(info_.n_ctx));
    DSV4_RETURN_IF_ERROR(maybe_fail(tokens));
    delay = opts_.prefill_token_delay * static_cast<int64_t>(tokens.size());
  }
  if (delay.count() > 0) std::this_thread::sleep_for(delay);
  std::lock_guard lk(mu_);
  Slot& s = slots_[static_cast<size_t>(slot)];
  if (s.new_request) {
    s.new_request = false;
    s.own_script.reset();
    if (!queue_.empty()) {
      s.own_script = std::move(queue_.front());
      queue_.pop_front();
    }
  }
  s.hist.insert(s.hist.end(), tokens.begin(), tokens.end());
  s.gen_start = static_cast<int64_t>(s.hist.size());
  ++counters_.prefill_calls;
  counters_.prefill_tokens += static_cast<int64_t>(tokens.size());
  counters_.max_prefill_chunk =
      std::max(counters_.max_prefill_chunk, static_cast<int64_t>(tokens.size()));
  write_logits(next_token(s), logits.first(static_cast<size_t>(info_.n_vocab)));
  return Status::ok();
}

Status ScriptedEngine::decode(std::span<const int> slots, std::span<const int32_t> tokens,
                              std::span<float> logits) {
  if (slots.empty()) return bad("decode of 0 slots");
  if (slots.size() != tokens.size())
    return bad("decode: " + std::to_string(slots.size()) + " slots but " +
               std::to_string(tokens.size()) + " tokens");
  const size_t nv = static_cast<size_t>(info_.n_vocab);
  if (logits.size() < slots.size() * nv)
    return bad("decode: logits span holds " + std::to_string(logits.size()) + " < " +
               std::to_string(slots.size() * nv));
  std::vector<bool> seen(static_cast<size_t>(info_.n_slots), false);
  for (size_t i = 0; i < slots.size(); ++i) {
    DSV4_RETURN_IF_ERROR(check_slot(slots[i]));
    if (seen[static_cast<size_t>(slots[i])])
      return bad("decode: slot " + std::to_string(slots[i]) + " listed twice");
    seen[static_cast<size_t>(slots[i])] = true;
    DSV4_RETURN_IF_ERROR(check_token(tokens[i]));
  }
  std::chrono::microseconds delay{0};
  {
    std::lock_guard lk(mu_);
    for (int sl : slots) {
      const int64_t np = static_cast<int64_t>(slots_[static_cast<size_t>(sl)].hist.size());
      if (np + 1 > info_.n_ctx)
        return bad("slot " + std::to_string(sl) + ": " + std::to_string(np + 1) +
                   " positions exceed n_ctx " + std::to_string(info_.n_ctx));
    }
    DSV4_RETURN_IF_ERROR(maybe_fail(tokens));
    delay = opts_.decode_delay;
  }
  if (delay.count() > 0) std::this_thread::sleep_for(delay);
  std::lock_guard lk(mu_);
  for (size_t i = 0; i < slots.size(); ++i) {
    Slot& s = slots_[static_cast<size_t>(slots[i])];
    s.hist.push_back(tokens[i]);
    s.new_request = true;  // a prefill after a decode starts a new request
    write_logits(next_token(s), logits.subspan(i * nv, nv));
  }
  ++counters_.decode_calls;
  counters_.decode_tokens += static_cast<int64_t>(slots.size());
  counters_.max_decode_batch =
      std::max(counters_.max_decode_batch, static_cast<int64_t>(slots.size()));
  counters_.decode_batch_sizes.push_back(static_cast<int>(slots.size()));
  return Status::ok();
}

Status ScriptedEngine::rewind(int slot, int64_t n) {
  DSV4_RETURN_IF_ERROR(check_slot(slot));
  std::lock_guard lk(mu_);
  Slot& s = slots_[static_cast<size_t>(slot)];
  if (n < 0 || n > static_cast<int64_t>(s.hist.size()))
    return bad("rewind of slot " + std::to_string(slot) + " to " + std::to_string(n) +
               " outside [0, n_past " + std::to_string(s.hist.size()) + "]");
  s.hist.resize(static_cast<size_t>(n));
  s.gen_start = std::min(s.gen_start, n);
  s.new_request = true;
  ++counters_.rewind_calls;
  return Status::ok();
}

}  // namespace dsv4::testing
