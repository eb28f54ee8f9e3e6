// dsv4 model: the forward pass over backend::Ops. See forward.h; section numbers refer to
// dsv4-architecture.md.
#include "dsv4/model/forward.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "dsv4/core/dtypes.h"
#include "dsv4/quant/quant.h"

namespace dsv4::model {

namespace {

// 2^ceil(log2(v)) for a positive normal float, exact.
float pow2_ceil(float v) {
  int e = 0;
  const float m = std::frexp(v, &e);  // v = m·2^e, m in [0.5, 1)
  return std::ldexp(1.0f, m == 0.5f ? e - 1 : e);
}

uint8_t e8m0_of(float pow2) {
  int e = 0;
  (void)std::frexp(pow2, &e);  // pow2 = 0.5·2^e → exponent e − 1
  return static_cast<uint8_t>(std::clamp(e - 1 + 127, 0, 254));
}

// Block scale of §9.2/§9.3: s = 2^ceil(log2(max(amax, amin)/qmax)).
float block_scale(const float* x, int64_t n, float qmax, float amin) {
  float amax = 0;
  for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  return pow2_ceil(std::max(amax, amin) / qmax);
}

// FP8 (§9.2): rounds x[0..n) in place (n a multiple of 64 when codes != nullptr) and, when
// codes/scales are given, writes the e4m3 codes and E8M0 block scales.
void fp8_round(float* x, int64_t n, int64_t block, uint8_t* codes, uint8_t* scales) {
  for (int64_t b0 = 0; b0 < n; b0 += block) {
    const float s = block_scale(x + b0, block, 448.0f, 1e-4f);
    if (scales != nullptr) scales[b0 / block] = e8m0_of(s);
    for (int64_t i = b0; i < b0 + block; ++i) {
      const uint8_t c = f32_to_e4m3fn(std::clamp(x[i] / s, -448.0f, 448.0f));
      if (codes != nullptr) codes[i] = c;
      x[i] = e4m3fn_to_f32(c) * s;
    }
  }
}

// FP4 (§9.3) likewise, block 32; codes packed two per byte (even element in the low nibble).
void fp4_round(float* x, int64_t n, uint8_t* codes, uint8_t* scales) {
  constexpr int64_t kBlock = 32;
  for (int64_t b0 = 0; b0 < n; b0 += kBlock) {
    const float s = block_scale(x + b0, kBlock, 6.0f, 6.0f * std::ldexp(1.0f, -126));
    if (scales != nullptr) scales[b0 / kBlock] = e8m0_of(s);
    for (int64_t i = b0; i < b0 + kBlock; ++i) {
      const uint8_t c = f32_to_e2m1(std::clamp(x[i] / s, -6.0f, 6.0f));
      if (codes != nullptr) {
        uint8_t& byte = codes[i / 2];
        byte = (i % 2 == 0) ? static_cast<uint8_t>((byte & 0xf0u) | c)
                            : static_cast<uint8_t>((byte & 0x0fu) | (c << 4));
      }
      x[i] = e2m1_to_f32(c) * s;
    }
  }
}

double softplus(double x) { return x > 20.0 ? x : std::log1p(std::exp(x)); }

// Stable top-k: indices of the k largest scores, descending, ties to the lower index.
void top_k(const float* score, int64_t n, int64_t k, std::vector<int32_t>& out) {
  out.resize(static_cast<size_t>(n));
  std::iota(out.begin(), out.end(), 0);
  auto better = [&](int32_t a, int32_t b) {
    return score[a] > score[b] || (score[a] == score[b] && a < b);
  };
  k = std::min(k, n);
  if (k < n) std::nth_element(out.begin(), out.begin() + k, out.end(), better);
  out.resize(static_cast<size_t>(k));
  std::sort(out.begin(), out.end(), better);
}

// Decoding tables of the state's element formats (values identical to core/dtypes.h's
// conversions; built once): e4m3 code → float, and a byte of two e2m1 codes → two floats.
struct DecodeTables {
  float e4m3[256];
  float e2m1_pair[256][2];
  DecodeTables() {
    for (int c = 0; c < 256; ++c) {
      e4m3[c] = e4m3fn_to_f32(static_cast<uint8_t>(c));
      e2m1_pair[c][0] = e2m1_to_f32(static_cast<uint8_t>(c & 0xf));
      e2m1_pair[c][1] = e2m1_to_f32(static_cast<uint8_t>(c >> 4));
    }
  }
};
const DecodeTables& tables() {
  static const DecodeTables t;
  return t;
}

// Row codecs of the per-sequence state (forward.h, "State layout").
struct KvCodec {
  int64_t dh = 0, n_rot = 0;
  bool compact = false;
  size_t bytes() const {
    const int64_t dn = dh - n_rot;
    return compact ? static_cast<size_t>(dn + dn / 64 + n_rot * 4) : static_cast<size_t>(dh * 4);
  }
  // `row` already rounded by fp8_round (compact): stores codes that reproduce it exactly.
  void encode(float* row, uint8_t* dst) const {
    if (!compact) {
      std::memcpy(dst, row, static_cast<size_t>(dh) * 4);
      return;
    }
    const int64_t dn = dh - n_rot;
    fp8_round(row, dn, 64, dst, dst + dn);  // idempotent on rounded values
    std::memcpy(dst + dn + dn / 64, row + dn, static_cast<size_t>(n_rot) * 4);
  }
  void decode(const uint8_t* src, float* row) const {
    if (!compact) {
      std::memcpy(row, src, static_cast<size_t>(dh) * 4);
      return;
    }
    const int64_t dn = dh - n_rot;
    const float* lut = tables().e4m3;
    for (int64_t b = 0; b < dn / 64; ++b) {
      const float s = e8m0_to_f32(src[dn + b]);
      for (int64_t i = b * 64; i < (b + 1) * 64; ++i) row[i] = lut[src[i]] * s;
    }
    std::memcpy(row + dn, src + dn + dn / 64, static_cast<size_t>(n_rot) * 4);
  }
};

struct IdxCodec {
  int64_t d = 0;
  bool compact = false;
  size_t bytes() const { return compact ? static_cast<size_t>(d / 2 + d / 32) : static_cast<size_t>(d * 4); }
  void encode(float* row, uint8_t* dst) const {
    if (!compact) {
      std::memcpy(dst, row, static_cast<size_t>(d) * 4);
      return;
    }
    std::memset(dst, 0, static_cast<size_t>(d / 2));
    fp4_round(row, d, dst, dst + d / 2);
  }
  void decode(const uint8_t* src, float* row) const {
    if (!compact) {
      std::memcpy(row, src, static_cast<size_t>(d) * 4);
      return;
    }
    const auto& lut = tables().e2m1_pair;
    for (int64_t b = 0; b < d / 32; ++b) {
      const float s = e8m0_to_f32(src[d / 2 + b]);
      for (int64_t i = b * 32; i < (b + 1) * 32; i += 2) {
        const uint8_t byte = src[i / 2];
        row[i] = lut[byte][0] * s;
        row[i + 1] = lut[byte][1] * s;
      }
    }
  }
};

KvCodec kv_codec(const HParams& h, bool numerics) {
  return {h.head_dim, h.n_rot, numerics && (h.head_dim - h.n_rot) % 64 == 0};
}
IdxCodec idx_codec(const HParams& h, bool numerics) {
  return {h.indexer_head_dim, numerics && h.indexer_head_dim % 32 == 0};
}

}  // namespace

void fp8_roundtrip(std::span<float> x, int64_t block) {
  fp8_round(x.data(), static_cast<int64_t>(x.size()), block, nullptr, nullptr);
}
void fp4_roundtrip(std::span<float> x, int64_t /*block*/) {
  fp4_round(x.data(), static_cast<int64_t>(x.size()), nullptr, nullptr);
}
void hadamard(std::span<float> x) {
  const size_t n = x.size();
  for (size_t h = 1; h < n; h *= 2)
    for (size_t b = 0; b < n; b += 2 * h)
      for (size_t i = b; i < b + h; ++i) {
        const float a = x[i], c = x[i + h];
        x[i] = a + c;
        x[i + h] = a - c;
      }
  const float sc = static_cast<float>(1.0 / std::sqrt(static_cast<double>(n)));
  for (size_t i = 0; i < n; ++i) x[i] *= sc;
}

// ---- SequenceState ------------------------------------------------------------------------------

SequenceState::SequenceState(const Model& m, const StateOptions& opts) : model_(&m), opts_(opts) {
  const HParams& h = m.hparams();
  layers_.resize(static_cast<size_t>(h.n_layer));
  for (int64_t il = 0; il < h.n_layer; ++il)
    init_layer(layers_[static_cast<size_t>(il)], m.layers()[static_cast<size_t>(il)]);
  if (m.mtp() != nullptr) init_layer(mtp_, m.mtp()->block);
}

void SequenceState::init_layer(LayerState& s, const Layer& L) {
  const HParams& h = model_->hparams();
  const KvCodec kc = kv_codec(h, opts_.official_numerics);
  const IdxCodec ic = idx_codec(h, opts_.official_numerics);
  s.ring.assign(static_cast<size_t>(h.n_swa) * kc.bytes(), 0);
  if (L.ratio != 0) {
    const size_t n = static_cast<size_t>(2 * L.ratio * L.comp.coff * L.comp.d);
    s.comp_c.assign(n, 0.0f);
    s.comp_z.assign(n, 0.0f);
    s.comp_rows.reserve(static_cast<size_t>(opts_.n_ctx / L.ratio) * kc.bytes());
  }
  if (L.ratio == 4) {
    const size_t n = static_cast<size_t>(2 * 4 * L.idx_comp.coff * L.idx_comp.d);
    s.idx_c.assign(n, 0.0f);
    s.idx_z.assign(n, 0.0f);
    s.idx_rows.reserve(static_cast<size_t>(opts_.n_ctx / 4) * ic.bytes());
  }
}

void SequenceState::reset() {
  for (LayerState& s : layers_) {
    s.comp_rows.clear();
    s.idx_rows.clear();
    s.n_comp = s.n_idx = 0;
  }
  mtp_.comp_rows.clear();
  mtp_.idx_rows.clear();
  mtp_.n_comp = mtp_.n_idx = 0;
  pos_ = 0;
  mtp_pos_ = 0;
}

double SequenceState::bytes_per_token() const {
  const HParams& h = model_->hparams();
  const KvCodec kc = kv_codec(h, opts_.official_numerics);
  const IdxCodec ic = idx_codec(h, opts_.official_numerics);
  double b = 0;
  for (int64_t il = 0; il < h.n_layer; ++il) {
    const int32_t r = h.ratio(il);
    if (r != 0) b += static_cast<double>(kc.bytes()) / r;
    if (r == 4) b += static_cast<double>(ic.bytes()) / 4;
  }
  return b;
}

size_t SequenceState::bytes_fixed() const {
  size_t b = 0;
  for (const LayerState& s : layers_)
    b += s.ring.size() + 4 * (s.comp_c.size() + s.comp_z.size() + s.idx_c.size() + s.idx_z.size());
  return b;
}

size_t SequenceState::bytes_used() const {
  size_t b = bytes_fixed();
  for (const LayerState& s : layers_) b += s.comp_rows.size() + s.idx_rows.size();
  return b;
}

size_t SequenceState::Checkpoint::bytes() const {
  size_t b = 0;
  for (auto& v : ring) b += v.size();
  for (auto* vv : {&comp_c, &comp_z, &idx_c, &idx_z})
    for (auto& v : *vv) b += 4 * v.size();
  return b;
}

SequenceState::Checkpoint SequenceState::checkpoint() const {
  Checkpoint cp;
  cp.pos = pos_;
  for (const LayerState& s : layers_) {
    cp.ring.push_back(s.ring);
    cp.comp_c.push_back(s.comp_c);
    cp.comp_z.push_back(s.comp_z);
    cp.idx_c.push_back(s.idx_c);
    cp.idx_z.push_back(s.idx_z);
    cp.n_comp.push_back(s.n_comp);
    cp.n_idx.push_back(s.n_idx);
  }
  return cp;
}

void SequenceState::restore(const Checkpoint& cp) {
  const HParams& h = model_->hparams();
  const KvCodec kc = kv_codec(h, opts_.official_numerics);
  const IdxCodec ic = idx_codec(h, opts_.official_numerics);
  for (size_t i = 0; i < layers_.size(); ++i) {
    LayerState& s = layers_[i];
    if (cp.n_comp[i] > s.n_comp || cp.n_idx[i] > s.n_idx) {
      std::fprintf(stderr, "dsv4: SequenceState::restore onto a sequence that never reached it\n");
      std::abort();
    }
    s.ring = cp.ring[i];
    s.comp_c = cp.comp_c[i];
    s.comp_z = cp.comp_z[i];
    s.idx_c = cp.idx_c[i];
    s.idx_z = cp.idx_z[i];
    s.n_comp = cp.n_comp[i];
    s.n_idx = cp.n_idx[i];
    s.comp_rows.resize(static_cast<size_t>(s.n_comp) * kc.bytes());
    s.idx_rows.resize(static_cast<size_t>(s.n_idx) * ic.bytes());
  }
  pos_ = cp.pos;
  // the MTP block's window is not checkpointed: it starts over
  mtp_.comp_rows.clear();
  mtp_.idx_rows.clear();
  mtp_.n_comp = mtp_.n_idx = 0;
  mtp_pos_ = 0;
}

// ---- Forward ------------------------------------------------------------------------------------

struct Forward::Scratch {
  std::vector<float> X, pre, post, comb, a, qr, q, kv, F, o, z, c, zz, ic, iz, qI, wI, rl, rw;
  std::vector<int32_t> rid;
  std::vector<int64_t> pos;
  // per-sequence attention tables
  std::vector<float> table, keys, score, row;
  std::vector<int64_t> offsets, n_vis;
  std::vector<int32_t> indices, sel;
  std::vector<int32_t> map;
};

Forward::Forward(const Model& m, backend::Ops& ops)
    : m_(m), ops_(ops), s_(std::make_shared<Scratch>()) {
  last_sel_.assign(static_cast<size_t>(m.hparams().n_layer), {});
}

namespace {

template <class T>
T* grow(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// Compressor pooling of row j (§7.4) from the inputs ring [2r][coff·d]: softmax over the
// candidates' z per channel, weighted sum of their c, in double.
void pool_row(const Compressor& cw, int32_t r, int64_t j, const float* cs, const float* zs,
              float* g) {
  const int64_t d = cw.d, w = cw.coff * d, ring = 2 * r;
  auto slot = [&](int64_t t) { return (t % ring) * w; };
  for (int64_t ch = 0; ch < d; ++ch) {
    double mx = -std::numeric_limits<double>::infinity();
    auto each = [&](auto&& fn) {
      if (cw.coff == 2) {
        for (int64_t t = r * j - r; t < r * j; ++t)
          if (t >= 0) fn(zs[slot(t) + ch], cs[slot(t) + ch]);
        for (int64_t t = r * j; t < r * j + r; ++t) fn(zs[slot(t) + d + ch], cs[slot(t) + d + ch]);
      } else {
        for (int64_t t = r * j; t < r * j + r; ++t) fn(zs[slot(t) + ch], cs[slot(t) + ch]);
      }
    };
    each([&](float z, float) { mx = std::max(mx, static_cast<double>(z)); });
    double den = 0, num = 0;
    each([&](float z, float c) {
      const double e = std::exp(static_cast<double>(z) - mx);
      den += e;
      num += e * static_cast<double>(c);
    });
    g[ch] = static_cast<float>(num / den);
  }
}

}  // namespace

Status Forward::run(std::span<const SeqInput> seqs, std::vector<float>& logits) {
  const HParams& h = m_.hparams();
  const int64_t D = h.n_embd, hc = h.n_hc, V = h.n_vocab;
  // ---- validate (nothing changes on error)
  int64_t N = 0, n_out = 0;
  for (size_t si = 0; si < seqs.size(); ++si) {
    const SeqInput& in = seqs[si];
    if (in.state == nullptr || in.tokens.empty())
      return Status(ErrorCode::kInvalidArgument, "sequence " + std::to_string(si) + " has no tokens");
    if (in.state->n_past() + static_cast<int64_t>(in.tokens.size()) > in.state->n_ctx())
      return Status(ErrorCode::kInvalidArgument,
                    "sequence " + std::to_string(si) + ": " + std::to_string(in.state->n_past()) +
                        " + " + std::to_string(in.tokens.size()) + " tokens exceed n_ctx " +
                        std::to_string(in.state->n_ctx()));
    for (int32_t t : in.tokens)
      if (t < 0 || t >= V)
        return Status(ErrorCode::kInvalidArgument,
                      "token id " + std::to_string(t) + " out of range [0, " + std::to_string(V) + ")");
    if (in.state->options().official_numerics != seqs[0].state->options().official_numerics)
      return Status(ErrorCode::kInvalidArgument, "sequences of one batch must share official_numerics");
    N += static_cast<int64_t>(in.tokens.size());
    n_out += in.all_logits ? static_cast<int64_t>(in.tokens.size()) : 1;
  }
  if (N == 0) {
    logits.clear();
    return Status::ok();
  }
  Scratch& S = *s_;
  const size_t uN = static_cast<size_t>(N);
  int64_t* pos = grow(S.pos, uN);
  {
    size_t t = 0;
    for (size_t si = 0; si < seqs.size(); ++si)
      for (size_t k = 0; k < seqs[si].tokens.size(); ++k, ++t)
        pos[t] = seqs[si].state->n_past() + static_cast<int64_t>(k);
  }

  // ---- §4 embedding into every HC stream
  float* X = grow(S.X, uN * static_cast<size_t>(hc * D));
  {
    size_t t = 0;
    for (const SeqInput& in : seqs)
      for (int32_t tok : in.tokens) {
        const Weight& E = m_.embed();
        float* x0 = X + t * static_cast<size_t>(hc * D);
        Status st = quant::dequantize_row(E.type, E.data + static_cast<size_t>(tok) * E.row_bytes, x0, D);
        if (!st) return st;
        if (obs_) obs_("embed", -1, pos[t], std::span<const float>(x0, static_cast<size_t>(D)));
        for (int64_t j = 1; j < hc; ++j) std::memcpy(x0 + j * D, x0, static_cast<size_t>(D) * 4);
        ++t;
      }
  }
  {
    std::vector<SeqLayer> sl;
    std::vector<int32_t> toks;
    for (const SeqInput& in : seqs) toks.insert(toks.end(), in.tokens.begin(), in.tokens.end());
    for (int64_t il = 0; il < h.n_layer; ++il) {
      sl.clear();
      for (const SeqInput& in : seqs)
        sl.push_back({&in.state->layers_[static_cast<size_t>(il)], in.state->n_past(),
                      static_cast<int64_t>(in.tokens.size()), in.state->options().official_numerics});
      layer(m_.layers()[static_cast<size_t>(il)], static_cast<int>(il), sl, N, pos, toks.data(), X);
    }
  }

  // ---- head (§5.4, final norm, LM head) for the tokens whose logits are wanted
  std::vector<int64_t> want;
  {
    int64_t t = 0;
    for (const SeqInput& in : seqs) {
      const int64_t T = static_cast<int64_t>(in.tokens.size());
      if (in.all_logits)
        for (int64_t k = 0; k < T; ++k) want.push_back(t + k);
      else
        want.push_back(t + T - 1);
      t += T;
    }
  }
  head_logits(m_.hc_head(), m_.out_norm(), X, want, pos, "", logits);
  n_hidden_ = N;
  (void)n_out;
  for (const SeqInput& in : seqs) in.state->pos_ += static_cast<int64_t>(in.tokens.size());
  return Status::ok();
}


void Forward::layer(const Layer& L, int li, const std::vector<SeqLayer>& sl, int64_t N, const int64_t* pos,
                    const int32_t* toks, float* X) {
  const HParams& h = m_.hparams();
  const int64_t D = h.n_embd, hc = h.n_hc, H = h.n_head, Dh = h.head_dim, nrot = h.n_rot;
  const int64_t Rq = h.q_lora_rank, G = h.o_groups, Ro = h.o_lora_rank;
  const float eps = h.rms_eps;
  Scratch& S = *s_;
  const size_t uN = static_cast<size_t>(N);
  auto emit = [&](const char* name, int layer, const float* base, int64_t stride, int64_t n) {
    if (!obs_) return;
    for (int64_t t = 0; t < N; ++t)
      obs_(name, layer, pos[t], std::span<const float>(base + t * stride, static_cast<size_t>(n)));
  };
  const KvCodec kc = kv_codec(h, sl[0].numerics);
  float* pre = grow(S.pre, uN * static_cast<size_t>(hc));
  float* post = grow(S.post, uN * static_cast<size_t>(hc));
  float* comb = grow(S.comb, uN * static_cast<size_t>(hc * hc));
  float* a = grow(S.a, uN * static_cast<size_t>(D));
  float* F = grow(S.F, uN * static_cast<size_t>(D));
  const int32_t r = L.ratio;
  const std::vector<float>& freqs = m_.rope_freqs(r != 0);
  const int64_t nf = static_cast<int64_t>(freqs.size());
  // ---- §6 attention sublayer: HC pre + norm
  ops_.hc_coeffs(X, N, hc, D, L.hc_attn.view(), eps, h.hc_eps, h.hc_sinkhorn_iters, pre, post, comb);
  ops_.hc_pre(X, N, hc, D, pre, a);
  ops_.rms_norm(a, L.attn_norm.data(), N, D, eps, a);
  emit("attn_norm", li, a, D, D);
  // §7.2 query path
  float* qr = grow(S.qr, uN * static_cast<size_t>(Rq));
  ops_.matmul(L.wq_a, a, D, N, qr, Rq);
  ops_.rms_norm(qr, L.q_norm.data(), N, Rq, eps, qr);
  emit("qr", li, qr, Rq, Rq);
  float* q = grow(S.q, uN * static_cast<size_t>(H * Dh));
  ops_.matmul(L.wq_b, qr, Rq, N, q, H * Dh);
  ops_.rms_norm(q, nullptr, N * H, Dh, eps, q);
  emit("q_normed", li, q, H * Dh, H * Dh);
  ops_.rope(q, N, H, Dh, freqs.data(), nf, pos, false);
  // §7.3 raw KV
  float* kv = grow(S.kv, uN * static_cast<size_t>(Dh));
  ops_.matmul(L.wkv, a, D, N, kv, Dh);
  ops_.rms_norm(kv, L.kv_norm.data(), N, Dh, eps, kv);
  emit("kv_unrounded", li, kv, Dh, Dh);
  if (kc.compact)
    for (int64_t t = 0; t < N; ++t) fp8_round(kv + t * Dh, Dh - nrot, 64, nullptr, nullptr);
  if (row_hook_)
    for (int64_t t = 0; t < N; ++t) row_hook_("kv", li, pos[t], std::span<float>(kv + t * Dh, static_cast<size_t>(Dh - nrot)));
  emit("kv", li, kv, Dh, Dh);
  ops_.rope(kv, N, 1, Dh, freqs.data(), nf, pos, false);
  // compressor inputs (§7.4) and indexer query (§7.5), token-wise
  float *cc = nullptr, *cz = nullptr, *ic = nullptr, *iz = nullptr, *qI = nullptr, *wI = nullptr;
  const int64_t cw = r != 0 ? L.comp.coff * L.comp.d : 0;
  const int64_t iw = r == 4 ? L.idx_comp.coff * L.idx_comp.d : 0;
  const int64_t nI = h.n_indexer_head, dI = h.indexer_head_dim;
  const bool idx_compact = sl[0].numerics;
  if (r != 0) {
    cc = grow(S.c, uN * static_cast<size_t>(cw));
    cz = grow(S.zz, uN * static_cast<size_t>(cw));
    ops_.matmul(L.comp.wkv, a, D, N, cc, cw);
    ops_.matmul(L.comp.wgate, a, D, N, cz, cw);
    for (int64_t t = 0; t < N; ++t) {
      const float* ape = L.comp.ape.data() + (pos[t] % r) * cw;
      for (int64_t i = 0; i < cw; ++i) cz[t * cw + i] += ape[i];
    }
  }
  if (r == 4) {
    ic = grow(S.ic, uN * static_cast<size_t>(iw));
    iz = grow(S.iz, uN * static_cast<size_t>(iw));
    ops_.matmul(L.idx_comp.wkv, a, D, N, ic, iw);
    ops_.matmul(L.idx_comp.wgate, a, D, N, iz, iw);
    for (int64_t t = 0; t < N; ++t) {
      const float* ape = L.idx_comp.ape.data() + (pos[t] % 4) * iw;
      for (int64_t i = 0; i < iw; ++i) iz[t * iw + i] += ape[i];
    }
    qI = grow(S.qI, uN * static_cast<size_t>(nI * dI));
    ops_.matmul(L.idx_wq_b, qr, Rq, N, qI, nI * dI);
    ops_.rope(qI, N, nI, dI, freqs.data(), nf, pos, false);
    if (idx_compact)
      for (int64_t t = 0; t < N * nI; ++t) {
        hadamard(std::span<float>(qI + t * dI, static_cast<size_t>(dI)));
        fp4_round(qI + t * dI, dI, nullptr, nullptr);
      }
    wI = grow(S.wI, uN * static_cast<size_t>(nI));
    ops_.matmul(L.idx_proj, a, D, N, wI, nI);
  }

  // ---- per sequence: state update, row tables, indexer, attention
  float* o = grow(S.o, uN * static_cast<size_t>(H * Dh));
  int64_t t0 = 0;
  for (size_t si = 0; si < sl.size(); ++si) {
    SequenceState::LayerState& ls = *sl[si].ls;
    const int64_t T = sl[si].T;
    const int64_t p0 = sl[si].p0;
    const IdxCodec icodec = idx_codec(h, sl[si].numerics);
    const KvCodec kcodec = kv_codec(h, sl[si].numerics);
    // 1. compressor steps for every token of the chunk (rows become visible by n_vis)
    std::vector<float>& rowbuf = S.row;
    if (r != 0) {
      for (int64_t k = 0; k < T; ++k) {
        const int64_t p = p0 + k, t = t0 + k;
        if (r == 4) {
          const int64_t slot = (p % 8) * iw;
          std::memcpy(ls.idx_c.data() + slot, ic + t * iw, static_cast<size_t>(iw) * 4);
          std::memcpy(ls.idx_z.data() + slot, iz + t * iw, static_cast<size_t>(iw) * 4);
          if ((p + 1) % 4 == 0) {
            const int64_t j = (p + 1) / 4 - 1;
            rowbuf.resize(static_cast<size_t>(dI));
            pool_row(L.idx_comp, 4, j, ls.idx_c.data(), ls.idx_z.data(), rowbuf.data());
            ops_.rms_norm(rowbuf.data(), L.idx_comp.norm.data(), 1, dI, eps, rowbuf.data());
            const int64_t pj = j * 4;
            ops_.rope(rowbuf.data(), 1, 1, dI, freqs.data(), nf, &pj, false);
            if (icodec.compact) {
              hadamard(rowbuf);
              fp4_round(rowbuf.data(), dI, nullptr, nullptr);
            }
            if (row_hook_) row_hook_("indexer_key_row", li, p, rowbuf);
            ls.idx_rows.resize(static_cast<size_t>(ls.n_idx + 1) * icodec.bytes());
            icodec.encode(rowbuf.data(), ls.idx_rows.data() + static_cast<size_t>(ls.n_idx) * icodec.bytes());
            ++ls.n_idx;
            if (obs_) obs_("indexer_key_row", li, p, rowbuf);
          }
        }
        const int64_t ring = 2 * r;
        const int64_t slot = (p % ring) * cw;
        std::memcpy(ls.comp_c.data() + slot, cc + t * cw, static_cast<size_t>(cw) * 4);
        std::memcpy(ls.comp_z.data() + slot, cz + t * cw, static_cast<size_t>(cw) * 4);
        if ((p + 1) % r == 0) {
          const int64_t j = (p + 1) / r - 1;
          rowbuf.resize(static_cast<size_t>(Dh));
          pool_row(L.comp, r, j, ls.comp_c.data(), ls.comp_z.data(), rowbuf.data());
          ops_.rms_norm(rowbuf.data(), L.comp.norm.data(), 1, Dh, eps, rowbuf.data());
          const int64_t pj = j * r;
          ops_.rope(rowbuf.data(), 1, 1, Dh, freqs.data(), nf, &pj, false);
          if (kcodec.compact) fp8_round(rowbuf.data(), Dh - nrot, 64, nullptr, nullptr);
          if (row_hook_) row_hook_("compressed_row", li, p, rowbuf);
          ls.comp_rows.resize(static_cast<size_t>(ls.n_comp + 1) * kcodec.bytes());
          kcodec.encode(rowbuf.data(), ls.comp_rows.data() + static_cast<size_t>(ls.n_comp) * kcodec.bytes());
          ++ls.n_comp;
          if (obs_) obs_("compressed_row", li, p, rowbuf);
        }
      }
    }
    // 2. row table: window rows before the chunk (from the ring), the chunk's rows, then
    //    compressed rows (HCA: all visible; CSA: the selected ones)
    const int64_t w0 = std::max<int64_t>(0, p0 - h.n_swa + 1);
    const int64_t n_before = p0 - w0;
    std::vector<float>& table = S.table;
    size_t n_rows = static_cast<size_t>(n_before + T);
    table.resize(n_rows * static_cast<size_t>(Dh));
    for (int64_t p = w0; p < p0; ++p)
      kcodec.decode(ls.ring.data() + static_cast<size_t>(p % h.n_swa) * kcodec.bytes(),
                    table.data() + static_cast<size_t>(p - w0) * static_cast<size_t>(Dh));
    std::memcpy(table.data() + static_cast<size_t>(n_before * Dh), kv + t0 * Dh,
                static_cast<size_t>(T * Dh) * 4);
    // CSA: indexer scores + top-k per token
    std::vector<std::vector<int32_t>> sel_of;
    if (r == 4) {
      const int64_t n_keys = ls.n_idx;
      float* keys = grow(S.keys, static_cast<size_t>(std::max<int64_t>(1, n_keys * dI)));
      for (int64_t j = 0; j < n_keys; ++j)
        icodec.decode(ls.idx_rows.data() + static_cast<size_t>(j) * icodec.bytes(), keys + j * dI);
      int64_t* nv = grow(S.n_vis, static_cast<size_t>(T));
      for (int64_t k = 0; k < T; ++k) nv[k] = (p0 + k + 1) / 4;
      const int64_t ld = std::max<int64_t>(1, n_keys);
      float* score = grow(S.score, static_cast<size_t>(T * ld));
      const float wscale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(dI)) /
                                              std::sqrt(static_cast<double>(nI)));
      ops_.indexer_scores(qI + t0 * nI * dI, wI + t0 * nI, T, nI, dI, keys, nv, wscale, score, ld);
      sel_of.resize(static_cast<size_t>(T));
      std::vector<int32_t>& map = S.map;
      map.assign(static_cast<size_t>(ls.n_comp), -1);
      for (int64_t k = 0; k < T; ++k) {
        top_k(score + k * ld, nv[k], h.indexer_top_k, sel_of[static_cast<size_t>(k)]);
        if (sel_hook_)
          sel_hook_(li, p0 + k, std::span<const float>(score + k * ld, static_cast<size_t>(nv[k])),
                    sel_of[static_cast<size_t>(k)]);
        if (obs_) {
          obs_("indexer_scores", li, p0 + k, std::span<const float>(score + k * ld, static_cast<size_t>(nv[k])));
          std::vector<float> sf(sel_of[static_cast<size_t>(k)].begin(), sel_of[static_cast<size_t>(k)].end());
          obs_("indexer_topk", li, p0 + k, sf);
        }
        for (int32_t j : sel_of[static_cast<size_t>(k)])
          if (map[static_cast<size_t>(j)] < 0) {
            map[static_cast<size_t>(j)] = static_cast<int32_t>(n_rows++);
            table.resize(n_rows * static_cast<size_t>(Dh));
            kcodec.decode(ls.comp_rows.data() + static_cast<size_t>(j) * kcodec.bytes(),
                          table.data() + (n_rows - 1) * static_cast<size_t>(Dh));
          }
      }
      if (static_cast<size_t>(li) < last_sel_.size()) last_sel_[static_cast<size_t>(li)] = sel_of.back();
    }
    const size_t comp_base = n_rows;
    if (r == 128) {
      table.resize((n_rows + static_cast<size_t>(ls.n_comp)) * static_cast<size_t>(Dh));
      for (int64_t j = 0; j < ls.n_comp; ++j)
        kcodec.decode(ls.comp_rows.data() + static_cast<size_t>(j) * kcodec.bytes(),
                      table.data() + (n_rows + static_cast<size_t>(j)) * static_cast<size_t>(Dh));
      n_rows += static_cast<size_t>(ls.n_comp);
    }
    // index lists
    int64_t* off = grow(S.offsets, static_cast<size_t>(T + 1));
    std::vector<int32_t>& idx = S.indices;
    idx.clear();
    for (int64_t k = 0; k < T; ++k) {
      const int64_t p = p0 + k;
      off[k] = static_cast<int64_t>(idx.size());
      for (int64_t pw = std::max<int64_t>(0, p - h.n_swa + 1); pw <= p; ++pw)
        idx.push_back(static_cast<int32_t>(pw - w0));
      if (r == 4) {
        for (int32_t j : sel_of[static_cast<size_t>(k)]) idx.push_back(S.map[static_cast<size_t>(j)]);
      } else if (r == 128) {
        for (int64_t j = 0; j < (p + 1) / r; ++j) idx.push_back(static_cast<int32_t>(comp_base + static_cast<size_t>(j)));
      }
    }
    off[T] = static_cast<int64_t>(idx.size());
    ops_.attention(q + t0 * H * Dh, T, H, Dh, table.data(), off, idx.data(), L.sinks.data(),
                   static_cast<float>(1.0 / std::sqrt(static_cast<double>(Dh))), o + t0 * H * Dh);
    // 3. ring update: the chunk's raw rows (last n_swa of them)
    for (int64_t k = std::max<int64_t>(0, T - h.n_swa); k < T; ++k) {
      rowbuf.assign(kv + (t0 + k) * Dh, kv + (t0 + k + 1) * Dh);
      kcodec.encode(rowbuf.data(), ls.ring.data() + static_cast<size_t>((p0 + k) % h.n_swa) * kcodec.bytes());
    }
    t0 += T;
  }
  // §7.7 inverse RoPE, grouped low-rank output
  ops_.rope(o, N, H, Dh, freqs.data(), nf, pos, true);
  const int64_t gw = H * Dh / G;
  float* z = grow(S.z, uN * static_cast<size_t>(G * Ro));
  for (int64_t g = 0; g < G; ++g) {
    Weight wg = L.wo_a;
    wg.rows = Ro;
    wg.data = L.wo_a.data + static_cast<size_t>(g * Ro) * L.wo_a.row_bytes;
    ops_.matmul(wg, o + g * gw, H * Dh, N, z + g * Ro, G * Ro);
  }
  ops_.matmul(L.wo_b, z, G * Ro, N, F, D);
  emit("attn_out", li, F, D, D);
  ops_.hc_post(X, N, hc, D, post, comb, F);
  emit("hc_after_attn", li, X, hc * D, hc * D);

  // ---- MoE sublayer (§8)
  ops_.hc_coeffs(X, N, hc, D, L.hc_ffn.view(), eps, h.hc_eps, h.hc_sinkhorn_iters, pre, post, comb);
  ops_.hc_pre(X, N, hc, D, pre, a);
  ops_.rms_norm(a, L.ffn_norm.data(), N, D, eps, a);
  emit("ffn_norm", li, a, D, D);
  const int64_t E = h.n_expert, K = h.n_expert_used;
  float* rl = grow(S.rl, uN * static_cast<size_t>(E));
  ops_.matmul(L.gate, a, D, N, rl, E);
  int32_t* rid = grow(S.rid, uN * static_cast<size_t>(K));
  float* rw = grow(S.rw, uN * static_cast<size_t>(K));
  {
    std::vector<float> biased(static_cast<size_t>(E));
    std::vector<double> sc(static_cast<size_t>(E));
    std::vector<int32_t> top;
    for (size_t t = 0; t < uN; ++t) {
        const int32_t tok = toks[t];
        for (int64_t e = 0; e < E; ++e) sc[static_cast<size_t>(e)] = std::sqrt(softplus(rl[t * static_cast<size_t>(E) + static_cast<size_t>(e)]));
        if (li < h.n_hash_layers) {
          top.assign(L.tid2eid.begin() + tok * K, L.tid2eid.begin() + (tok + 1) * K);
        } else {
          for (int64_t e = 0; e < E; ++e)
            biased[static_cast<size_t>(e)] = static_cast<float>(sc[static_cast<size_t>(e)] + L.gate_bias[static_cast<size_t>(e)]);
          top_k(biased.data(), E, K, top);
          if (route_hook_) {
            route_hook_(li, pos[t], biased, top);
            // the hook's contract (forward.h): K distinct ids < E
            DSV4_CHECK(static_cast<int64_t>(top.size()) == K);
            for (size_t k = 0; k < top.size(); ++k) {
              DSV4_CHECK(top[k] >= 0 && top[k] < E);
              DSV4_CHECK(std::find(top.begin(), top.begin() + static_cast<std::ptrdiff_t>(k), top[k]) == top.begin() + static_cast<std::ptrdiff_t>(k));
            }
          }
          if (obs_) obs_("router_biased_scores", li, pos[t], biased);
        }
        double sum = 0;
        for (int32_t e : top) sum += sc[static_cast<size_t>(e)];
        for (int64_t k = 0; k < K; ++k) {
          const double s = sc[static_cast<size_t>(top[static_cast<size_t>(k)])];
          rid[t * static_cast<size_t>(K) + static_cast<size_t>(k)] = top[static_cast<size_t>(k)];
          rw[t * static_cast<size_t>(K) + static_cast<size_t>(k)] =
              static_cast<float>((h.expert_weights_norm ? s / sum : s) * h.expert_weights_scale);
        }
        if (obs_) {
          std::vector<float> ids(top.begin(), top.end());
          obs_("router_experts", li, pos[t], ids);
          obs_("router_weights", li, pos[t], std::span<const float>(rw + t * static_cast<size_t>(K), static_cast<size_t>(K)));
        }
      }
  }
  std::fill(F, F + uN * static_cast<size_t>(D), 0.0f);
  ops_.moe(L.experts, a, N, K, rid, rw, L.clamp_exp, F);
  if (!L.shared.gate.empty()) {
    std::vector<int32_t> zero(uN, 0);
    std::vector<float> one(uN, 1.0f);
    ops_.moe(L.shared, a, N, 1, zero.data(), one.data(), L.clamp_shexp, F);
  }
  emit("moe_out", li, F, D, D);
  ops_.hc_post(X, N, hc, D, post, comb, F);
  emit("l_out", li, X, hc * D, hc * D);
}


void Forward::head_logits(const HcParams& hcp, const std::vector<float>& norm, const float* X,
                          const std::vector<int64_t>& want, const int64_t* pos, const char* prefix,
                          std::vector<float>& logits) {
  const HParams& h = m_.hparams();
  const int64_t D = h.n_embd, hc = h.n_hc, V = h.n_vocab;
  const float eps = h.rms_eps;
  const int64_t M = static_cast<int64_t>(want.size());
  std::vector<float> Xs(static_cast<size_t>(M * hc * D)), y(static_cast<size_t>(M * D));
  for (int64_t i = 0; i < M; ++i)
    std::memcpy(Xs.data() + i * hc * D, X + want[static_cast<size_t>(i)] * hc * D, static_cast<size_t>(hc * D) * 4);
  ops_.hc_head(Xs.data(), M, hc, D, hcp.view(), eps, h.hc_eps, y.data());
  if (obs_)
    for (int64_t i = 0; i < M; ++i)
      obs_(std::string(prefix) + "hc_head_out", -1, pos[want[static_cast<size_t>(i)]],
           std::span<const float>(y.data() + i * D, static_cast<size_t>(D)));
  ops_.rms_norm(y.data(), norm.data(), M, D, eps, y.data());
  if (obs_)
    for (int64_t i = 0; i < M; ++i)
      obs_(std::string(prefix) + "final_norm", -1, pos[want[static_cast<size_t>(i)]],
           std::span<const float>(y.data() + i * D, static_cast<size_t>(D)));
  logits.resize(static_cast<size_t>(M * V));
  ops_.matmul(m_.head(), y.data(), D, M, logits.data(), V);
}

std::span<const float> Forward::hidden() const {
  const HParams& h = m_.hparams();
  return std::span<const float>(s_->X.data(), static_cast<size_t>(n_hidden_ * h.n_hc * h.n_embd));
}

Status Forward::run_mtp(SequenceState& st, std::span<const float> X, std::span<const int32_t> next,
                        std::vector<float>& logits) {
  const HParams& h = m_.hparams();
  const Mtp* mtp = m_.mtp();
  if (mtp == nullptr) return Status(ErrorCode::kUnsupported, "the model file has no MTP block");
  const int64_t D = h.n_embd, hc = h.n_hc, V = h.n_vocab;
  const int64_t T = static_cast<int64_t>(next.size());
  if (T == 0) return Status(ErrorCode::kInvalidArgument, "MTP of zero positions");
  if (X.size() != static_cast<size_t>(T * hc * D))
    return Status(ErrorCode::kInvalidArgument, "MTP: hidden states are not [T][n_hc][n_embd]");
  if (st.mtp_pos_ + T > st.n_ctx())
    return Status(ErrorCode::kInvalidArgument, "MTP positions exceed n_ctx");
  for (int32_t t : next)
    if (t < 0 || t >= V)
      return Status(ErrorCode::kInvalidArgument, "token id " + std::to_string(t) + " out of range");
  const float eps = h.rms_eps;
  std::vector<int64_t> pos(static_cast<size_t>(T));
  for (int64_t k = 0; k < T; ++k) pos[static_cast<size_t>(k)] = st.mtp_pos_ + k;
  // §10: e = enorm(embed[t_{p+1}]); X'[j] = e_proj·e + h_proj·hnorm(X[p][j])
  std::vector<float> e(static_cast<size_t>(T * D)), hn(static_cast<size_t>(T * hc * D));
  for (int64_t k = 0; k < T; ++k) {
    const Weight& E = m_.embed();
    DSV4_RETURN_IF_ERROR(quant::dequantize_row(E.type, E.data + static_cast<size_t>(next[static_cast<size_t>(k)]) * E.row_bytes,
                                               e.data() + k * D, D));
  }
  ops_.rms_norm(e.data(), mtp->enorm.data(), T, D, eps, e.data());
  ops_.rms_norm(X.data(), mtp->hnorm.data(), T * hc, D, eps, hn.data());
  std::vector<float> Y(static_cast<size_t>(T * hc * D)), tmp(static_cast<size_t>(T * hc * D));
  if (!mtp->e_proj.empty()) {
    std::vector<float> ep(static_cast<size_t>(T * D));
    ops_.matmul(mtp->e_proj, e.data(), D, T, ep.data(), D);
    ops_.matmul(mtp->h_proj, hn.data(), D, T * hc, Y.data(), D);
    for (int64_t k = 0; k < T; ++k)
      for (int64_t j = 0; j < hc; ++j)
        for (int64_t c = 0; c < D; ++c) Y[static_cast<size_t>((k * hc + j) * D + c)] += ep[static_cast<size_t>(k * D + c)];
  } else {  // upstream's eh_proj: [e ; hnorm(X_j)] (2D inputs) → D
    std::vector<float> cat(static_cast<size_t>(T * hc * 2 * D));
    for (int64_t k = 0; k < T; ++k)
      for (int64_t j = 0; j < hc; ++j) {
        float* r = cat.data() + (k * hc + j) * 2 * D;
        std::memcpy(r, e.data() + k * D, static_cast<size_t>(D) * 4);
        std::memcpy(r + D, hn.data() + (k * hc + j) * D, static_cast<size_t>(D) * 4);
      }
    ops_.matmul(mtp->eh_proj, cat.data(), 2 * D, T * hc, Y.data(), D);
  }
  // the MTP block (its own window state), then its HC head, norm and the shared LM head
  std::vector<SeqLayer> sl{{&st.mtp_, st.mtp_pos_, T, st.options().official_numerics}};
  std::vector<int32_t> toks(next.begin(), next.end());
  layer(mtp->block, static_cast<int>(h.n_layer), sl, T, pos.data(), toks.data(), Y.data());
  std::vector<int64_t> want(static_cast<size_t>(T));
  for (int64_t k = 0; k < T; ++k) want[static_cast<size_t>(k)] = k;
  head_logits(mtp->hc_head, mtp->norm, Y.data(), want, pos.data(), "mtp_", logits);
  st.mtp_pos_ += T;
  return Status::ok();
}

}  // namespace dsv4::model
