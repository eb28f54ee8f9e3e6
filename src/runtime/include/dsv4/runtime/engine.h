// dsv4 runtime: the engine seen by the scheduler (issue 5 scope 4, issue 6 scope 4).
//
// An Engine owns a fixed number of slots; each slot is one sequence timeline (per-sequence
// state of src/model) that grows by prefill/decode and can be rewound to any earlier length.
// Implementations: ModelEngine (model_engine.h: a DeepSeek-V4 model on a backend) and, in tests
// only, a scripted stand-in (tests/support/scripted_engine.h) that emits given tokens.
//
// Threading: not thread-safe. The scheduler thread is the only caller (docs/design.md §3,
// "one owner of mutable inference state").
// Errors: kInvalidArgument for a bad slot, token id or length (the caller's bug or a request
// that slipped through validation); kOutOfMemory / kInvalidArgument when a slot would exceed
// n_ctx; a backend failure answers an error and leaves the slot's timeline at its last good
// length (n_past() says where).
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "dsv4/core/status.h"

namespace dsv4::runtime {

struct EngineInfo {
  int64_t n_vocab = 0;    // logits per token
  int64_t n_ctx = 0;      // positions per slot (prompt + generated)
  int n_slots = 0;
  std::string model_path;
  std::string description;  // one line: architecture, sizes, quant mix
};

class Engine {
 public:
  virtual ~Engine() = default;
  virtual const EngineInfo& info() const = 0;

  // Tokens already in slot's timeline (its next position).
  virtual int64_t n_past(int slot) const = 0;

  // Appends `tokens` (≥ 1) to the slot's timeline at positions n_past .. n_past + T − 1 and
  // writes the logits of the LAST token into logits [n_vocab]. The engine may split the call
  // into chunks internally; the result does not depend on how it is split beyond the bound of
  // the forward-pass issue.
  virtual Status prefill(int slot, std::span<const int32_t> tokens, std::span<float> logits) = 0;

  // One token for each listed slot (distinct slots), run as one batch; logits [k][n_vocab] in
  // the order of `slots`. A slot's logits are bit-identical to running it alone.
  virtual Status decode(std::span<const int> slots, std::span<const int32_t> tokens,
                        std::span<float> logits) = 0;

  // Truncates the slot's timeline to its first n tokens (0 ≤ n ≤ n_past); the next token runs at
  // position n. Results after a rewind are bit-identical to a timeline that never went further.
  // Cost: may recompute up to one checkpoint interval of tokens (ModelEngine) — the engine
  // keeps the slot's token ids for that.
  virtual Status rewind(int slot, int64_t n) = 0;
};

}  // namespace dsv4::runtime
