// dsv4 model: the DeepSeek-V4 forward pass, written once against backend::Ops (issue 5, scope
// 2-4), and the per-sequence state it reads and extends.
//
// One call of Forward::run takes any number of sequences, each with ≥ 1 tokens at its next
// positions (a prefill chunk, or one decode token), and runs them as one batch: token-wise work
// (matmuls, norms, HC, MoE) over all tokens together, attention / compressors / indexer per
// sequence. Because every op computes a token's row independently of the others (ops.h), a
// sequence's results are bit-identical whatever shares its batch, however its prompt is split
// into calls (one prefill, chunks, token by token), and whatever the thread count.
//
// Numerics (dsv4-architecture.md §9): activations are float32 between ops (more precise than
// the official bf16 + §9.1 FP8 activation quantisation, which is not applied). With
// official_numerics (the default) the stored KV is FP8-rounded (§9.2) and the indexer q/keys
// Hadamard-rotated and FP4-rounded (§9.3), as the reference does; off, both are plain float32.
//
// State layout (§11): per layer a raw-KV ring of n_swa rows, the compressor's last 2·r inputs,
// and the emitted compressed rows (CSA, HCA) and indexer key rows (CSA), stored in the lossless
// compact form of §11.2 when official_numerics is on: a KV row = Dh−n_rot e4m3 bytes + one E8M0
// scale per 64 + n_rot float32 (float32 rather than the reference's bf16, because our
// activations are float32); an indexer row = dI/2 bytes of e2m1 pairs + one E8M0 per 32.
// Without official_numerics rows are float32.
//
// Threading: a Forward and the states it runs are used by one thread at a time (the engine's);
// the Ops object may use worker threads inside each op.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "dsv4/backend/ops.h"
#include "dsv4/core/status.h"
#include "dsv4/model/model.h"

namespace dsv4::model {

struct StateOptions {
  int64_t n_ctx = 4096;           // positions this sequence may reach
  bool official_numerics = true;  // §9.2 / §9.3 (see above)
};

class SequenceState {
 public:
  SequenceState(const Model& m, const StateOptions& opts);

  int64_t n_past() const { return pos_; }
  int64_t mtp_n_past() const { return mtp_pos_; }
  int64_t n_ctx() const { return opts_.n_ctx; }
  const StateOptions& options() const { return opts_; }
  void reset();

  // Bytes that grow with the sequence, per token on average at long length (compressed and
  // indexer rows), the fixed part (rings and compressor inputs), and what is in use now.
  double bytes_per_token() const;
  size_t bytes_fixed() const;
  size_t bytes_used() const;

  // A copy of everything but the append-only row arrays (their lengths only). Restoring it onto
  // this same sequence after it advanced further (and did not rewind below it) gives exactly the
  // state it had at the checkpoint; restoring onto any other sequence is a programming error. The
  // MTP block's state is not part of it: restore() starts it over (mtp_n_past() = 0).
  struct Checkpoint {
    int64_t pos = -1;
    std::vector<std::vector<uint8_t>> ring;
    std::vector<std::vector<float>> comp_c, comp_z, idx_c, idx_z;
    std::vector<int64_t> n_comp, n_idx;
    size_t bytes() const;
  };
  Checkpoint checkpoint() const;
  void restore(const Checkpoint& cp);

 private:
  friend class Forward;
 public:
  struct LayerState {
    std::vector<uint8_t> ring;            // n_swa raw rows (row p at p mod n_swa)
    std::vector<float> comp_c, comp_z;    // [2r][coff·d], input p at p mod 2r
    std::vector<float> idx_c, idx_z;      // CSA indexer compressor, same layout
    std::vector<uint8_t> comp_rows;       // n_comp compressed rows
    std::vector<uint8_t> idx_rows;        // n_idx indexer key rows
    int64_t n_comp = 0, n_idx = 0;
  };

 private:
  const Model* model_;
  StateOptions opts_;
  std::vector<LayerState> layers_;
  int64_t pos_ = 0;
  LayerState mtp_;       // the MTP block's state (not part of checkpoints)
  int64_t mtp_pos_ = 0;
  void init_layer(LayerState& s, const Layer& L);
};

// Named intermediates (names of RefModel's observer, ref_model.h, plus "router_biased_scores"
// [n_expert] of score-routed layers and "mtp_"-prefixed head outputs): called per token with the
// layer (−1 for globals), the absolute position and the values.
using Observer = std::function<void(const std::string& name, int layer, int64_t pos,
                                    std::span<const float> values)>;

// Test hooks that may REPLACE what the forward pass stores (teacher forcing against a reference
// that rounded a near-tie the other way), called before the value is used:
//   RowHook: "kv" (the FP8-rounded nope part of a raw KV row, before RoPE), "compressed_row"
//            (final, as stored), "indexer_key_row" (final, as stored);
//   SelHook: an indexer selection with the scores it was taken from (CSA layers);
//   RouteHook: a score-routed layer's experts (n_expert_used ids, best first) with the biased
//              scores [n_expert] they were taken from (§8.1); a replacement must hold
//              n_expert_used distinct ids < n_expert (the routing weights follow the ids).
using RowHook = std::function<void(const std::string& name, int layer, int64_t pos, std::span<float> row)>;
using SelHook = std::function<void(int layer, int64_t pos, std::span<const float> scores,
                                   std::vector<int32_t>& selection)>;
using RouteHook = std::function<void(int layer, int64_t pos, std::span<const float> biased,
                                     std::vector<int32_t>& experts)>;

struct SeqInput {
  SequenceState* state = nullptr;
  std::span<const int32_t> tokens;  // ≥ 1, each < n_vocab
  bool all_logits = false;          // logits of every token, else of the last one only
};

class Forward {
 public:
  Forward(const Model& m, backend::Ops& ops);

  // Runs every sequence's tokens. `logits` receives, in sequence order, T rows (all_logits) or
  // one row per sequence, each n_vocab floats. Errors (kInvalidArgument): a token id out of
  // range, a sequence that would pass its n_ctx, an empty sequence; nothing is changed then.
  Status run(std::span<const SeqInput> seqs, std::vector<float>& logits);

  // MTP (dsv4-architecture.md §10), when the model has an MTP block: for positions p =
  // st.mtp_n_past() … + T − 1, given the trunk's final HC states X[p] ([T][n_hc][n_embd], e.g.
  // hidden() after run()) and the next tokens t_{p+1}, writes the logits for t_{p+2} ([T][n_vocab]).
  // The MTP block keeps its own sliding-window state in `st` (positions advance with each call).
  // Errors: kUnsupported without an MTP block, kInvalidArgument for bad shapes / ids / n_ctx.
  Status run_mtp(SequenceState& st, std::span<const float> X, std::span<const int32_t> next,
                 std::vector<float>& logits);
  // The final HC states [N][n_hc][n_embd] of every token of the last run() (before the HC head).
  std::span<const float> hidden() const;

  void set_observer(Observer obs) { obs_ = std::move(obs); }
  void set_hooks(RowHook row, SelHook sel) {
    row_hook_ = std::move(row);
    sel_hook_ = std::move(sel);
  }
  void set_route_hook(RouteHook route) { route_hook_ = std::move(route); }
  // Indexer selection (row ids, in selection order) of the last token run, per layer (empty
  // for non-CSA layers); for tests.
  const std::vector<std::vector<int32_t>>& last_selection() const { return last_sel_; }

 private:
  const Model& m_;
  backend::Ops& ops_;
  Observer obs_;
  RowHook row_hook_;
  SelHook sel_hook_;
  RouteHook route_hook_;
  std::vector<std::vector<int32_t>> last_sel_;
  struct Scratch;
  std::shared_ptr<Scratch> s_;
  int64_t n_hidden_ = 0;
  // One sequence's view of a layer during a call.
  struct SeqLayer {
    SequenceState::LayerState* ls;
    int64_t p0;      // position of its first token
    int64_t T;       // tokens
    bool numerics;   // official numerics
  };
  // One layer (§6) over the batch: X [N][n_hc][n_embd] in place.
  void layer(const Layer& L, int li, const std::vector<SeqLayer>& sl, int64_t N, const int64_t* pos,
             const int32_t* toks, float* X);
  void head_logits(const HcParams& hcp, const std::vector<float>& norm, const float* X,
                   const std::vector<int64_t>& want, const int64_t* pos, const char* prefix,
                   std::vector<float>& logits);
};

// §9.2 / §9.3 helpers (exposed for tests), computed in float32 like the reference:
// FP8 e4m3 round-trip per block of `block` values (amax floor 1e-4, power-of-two scale).
void fp8_roundtrip(std::span<float> x, int64_t block);
// FP4 e2m1 round-trip per block of 32 (amax floor 6·2^-126).
void fp4_roundtrip(std::span<float> x, int64_t block);
// Orthonormal Walsh–Hadamard transform (size a power of two), butterfly (a+b, a−b), × 1/sqrt(n).
void hadamard(std::span<float> x);

}  // namespace dsv4::model
