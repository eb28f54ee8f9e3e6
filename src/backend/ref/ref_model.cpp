// dsv4 backend/ref: scalar reference forward pass. See ref_model.h; section numbers refer to
// dsv4-architecture.md.
#include "dsv4/backend/ref/ref_model.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <utility>

#include "dsv4/model/model.h"
#include "dsv4/quant/quant.h"

namespace dsv4::ref {

namespace {

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
double silu(double x) { return x * sigmoid(x); }
// PyTorch's softplus returns x when x > 20 (§1).
double softplus(double x) { return x > 20.0 ? x : std::log1p(std::exp(x)); }

// ---- loading --------------------------------------------------------------------------------

Result<std::vector<double>> load_flat(const GgufModel& f, const std::string& name) {
  const GgufTensorInfo* t = f.find_tensor(name);
  if (t == nullptr) return Status(ErrorCode::kNotFound, "tensor " + name + " is missing");
  if (t->type == nullptr) return Status(ErrorCode::kUnsupported, "tensor " + name + ": no type");
  auto qt = quant::qtype_from_traits(*t->type);
  if (!qt) return qt.status();
  const int64_t ne0 = t->ne[0];
  const int64_t nrows = t->n_elements() / ne0;
  if (t->data.size() < t->n_bytes || nrows <= 0) {
    return Status(ErrorCode::kInvalidFile, "tensor " + name + ": no data");
  }
  const size_t row_bytes = static_cast<size_t>(t->n_bytes / static_cast<uint64_t>(nrows));
  std::vector<double> out(static_cast<size_t>(t->n_elements()));
  std::vector<float> tmp(static_cast<size_t>(ne0));
  for (int64_t r = 0; r < nrows; ++r) {
    Status s = quant::dequantize_row(*qt, t->data.data() + static_cast<size_t>(r) * row_bytes,
                                     tmp.data(), ne0);
    if (!s) return Status(s.code(), "tensor " + name + ": " + s.message());
    for (int64_t c = 0; c < ne0; ++c) out[static_cast<size_t>(r * ne0 + c)] = tmp[static_cast<size_t>(c)];
  }
  return out;
}

Result<Mat> load_mat(const GgufModel& f, const std::string& name) {
  auto v = load_flat(f, name);
  if (!v) return v.status();
  const GgufTensorInfo* t = f.find_tensor(name);
  Mat m;
  m.cols = t->ne[0];
  m.rows = t->n_elements() / t->ne[0];
  m.d = std::move(*v);
  return m;
}

// Splits a 3-D expert tensor {cols, rows, n_expert} into n_expert matrices [rows][cols].
Result<std::vector<Mat>> load_experts(const GgufModel& f, const std::string& name) {
  auto v = load_flat(f, name);
  if (!v) return v.status();
  const GgufTensorInfo* t = f.find_tensor(name);
  std::vector<Mat> out(static_cast<size_t>(t->ne[2]));
  const int64_t n = t->ne[0] * t->ne[1];
  for (int64_t e = 0; e < t->ne[2]; ++e) {
    Mat& m = out[static_cast<size_t>(e)];
    m.cols = t->ne[0];
    m.rows = t->ne[1];
    m.d.assign(v->begin() + e * n, v->begin() + (e + 1) * n);
  }
  return out;
}

#define DSV4_REF_TRY(dst, expr)            \
  do {                                     \
    auto r_ = (expr);                      \
    if (!r_) return r_.status();           \
    dst = std::move(*r_);                  \
  } while (0)

Result<HcParams> load_hc(const GgufModel& f, const std::string& pfx) {
  HcParams p;
  DSV4_REF_TRY(p.fn, load_mat(f, pfx + "_fn.weight"));
  DSV4_REF_TRY(p.base, load_flat(f, pfx + "_base.weight"));
  DSV4_REF_TRY(p.scale, load_flat(f, pfx + "_scale.weight"));
  return p;
}

Result<CompressorWeights> load_comp(const GgufModel& f, const std::string& pfx) {
  CompressorWeights c;
  DSV4_REF_TRY(c.wkv, load_mat(f, pfx + "_kv.weight"));
  DSV4_REF_TRY(c.wgate, load_mat(f, pfx + "_gate.weight"));
  DSV4_REF_TRY(c.ape, load_mat(f, pfx + "_ape.weight"));
  DSV4_REF_TRY(c.norm, load_flat(f, pfx + "_norm.weight"));
  return c;
}

// Indices of the k largest values, descending, ties to the lower index (stable sort).
std::vector<int64_t> top_k_stable(std::span<const double> v, int64_t k) {
  std::vector<int64_t> idx(v.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(),
                   [&](int64_t a, int64_t b) { return v[static_cast<size_t>(a)] > v[static_cast<size_t>(b)]; });
  idx.resize(static_cast<size_t>(std::min<int64_t>(k, static_cast<int64_t>(v.size()))));
  return idx;
}

}  // namespace

// ---- ops --------------------------------------------------------------------------------------

std::vector<double> matvec(const Mat& w, std::span<const double> x) {
  std::vector<double> y(static_cast<size_t>(w.rows));
  for (int64_t o = 0; o < w.rows; ++o) {
    const double* r = w.row(o);
    double s = 0;
    for (int64_t i = 0; i < w.cols; ++i) s += r[i] * x[static_cast<size_t>(i)];
    y[static_cast<size_t>(o)] = s;
  }
  return y;
}

std::vector<double> rms_norm(std::span<const double> x, std::span<const double> w, double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double r = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + eps);
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * r * (w.empty() ? 1.0 : w[i]);
  return y;
}

HcCoeffs hc_coeffs(std::span<const double> X, int hc, const HcParams& p, double norm_eps,
                   double hc_eps, int sinkhorn_iters) {
  // §5.1: m = (fn · f) / sqrt(mean(f²) + eps), f = the hc streams concatenated.
  std::vector<double> f = rms_norm(X, {}, norm_eps);
  std::vector<double> m = matvec(p.fn, f);
  HcCoeffs c;
  c.pre.resize(static_cast<size_t>(hc));
  c.post.resize(static_cast<size_t>(hc));
  c.comb.resize(static_cast<size_t>(hc * hc));
  for (int j = 0; j < hc; ++j) {
    c.pre[static_cast<size_t>(j)] = sigmoid(m[static_cast<size_t>(j)] * p.scale[0] + p.base[static_cast<size_t>(j)]) + hc_eps;
    c.post[static_cast<size_t>(j)] =
        2.0 * sigmoid(m[static_cast<size_t>(hc + j)] * p.scale[1] + p.base[static_cast<size_t>(hc + j)]);
  }
  auto C = [&](int j, int k) -> double& { return c.comb[static_cast<size_t>(j * hc + k)]; };
  // §5.2: row softmax + eps, column normalisation, then (iters − 1) × (row, column).
  for (int j = 0; j < hc; ++j) {
    double mx = -std::numeric_limits<double>::infinity();
    for (int k = 0; k < hc; ++k) {
      const size_t i = static_cast<size_t>(2 * hc + j * hc + k);
      C(j, k) = m[i] * p.scale[2] + p.base[i];
      mx = std::max(mx, C(j, k));
    }
    double s = 0;
    for (int k = 0; k < hc; ++k) s += (C(j, k) = std::exp(C(j, k) - mx));
    for (int k = 0; k < hc; ++k) C(j, k) = C(j, k) / s + hc_eps;
  }
  auto col_norm = [&] {
    for (int k = 0; k < hc; ++k) {
      double s = 0;
      for (int j = 0; j < hc; ++j) s += C(j, k);
      for (int j = 0; j < hc; ++j) C(j, k) /= (s + hc_eps);
    }
  };
  auto row_norm = [&] {
    for (int j = 0; j < hc; ++j) {
      double s = 0;
      for (int k = 0; k < hc; ++k) s += C(j, k);
      for (int k = 0; k < hc; ++k) C(j, k) /= (s + hc_eps);
    }
  };
  col_norm();
  for (int it = 0; it < sinkhorn_iters - 1; ++it) {
    row_norm();
    col_norm();
  }
  return c;
}

std::vector<double> hc_pre(std::span<const double> X, int hc, std::span<const double> pre) {
  const size_t D = X.size() / static_cast<size_t>(hc);
  std::vector<double> u(D, 0.0);
  for (int j = 0; j < hc; ++j)
    for (size_t c = 0; c < D; ++c) u[c] += pre[static_cast<size_t>(j)] * X[static_cast<size_t>(j) * D + c];
  return u;
}

std::vector<double> hc_post(std::span<const double> X, int hc, const HcCoeffs& cf,
                            std::span<const double> F) {
  const size_t D = F.size();
  std::vector<double> Y(X.size());
  for (int k = 0; k < hc; ++k) {
    for (size_t c = 0; c < D; ++c) {
      double s = cf.post[static_cast<size_t>(k)] * F[c];
      for (int j = 0; j < hc; ++j) s += cf.comb[static_cast<size_t>(j * hc + k)] * X[static_cast<size_t>(j) * D + c];
      Y[static_cast<size_t>(k) * D + c] = s;
    }
  }
  return Y;
}

std::vector<double> hc_head(std::span<const double> X, int hc, const Mat& fn,
                            std::span<const double> base, std::span<const double> scale,
                            double norm_eps, double hc_eps) {
  std::vector<double> f = rms_norm(X, {}, norm_eps);
  std::vector<double> m = matvec(fn, f);
  std::vector<double> w(static_cast<size_t>(hc));
  for (int j = 0; j < hc; ++j)
    w[static_cast<size_t>(j)] = sigmoid(m[static_cast<size_t>(j)] * scale[0] + base[static_cast<size_t>(j)]) + hc_eps;
  return hc_pre(X, hc, w);
}

void rope(std::span<double> x, std::span<const float> freqs, int64_t p, bool inverse) {
  const size_t n = freqs.size();
  const size_t off = x.size() - 2 * n;
  for (size_t i = 0; i < n; ++i) {
    const float ang = static_cast<float>(p) * freqs[i];  // one fp32 rounding (§7.1)
    const double c = static_cast<double>(std::cos(ang));
    const double s = (inverse ? -1.0 : 1.0) * static_cast<double>(std::sin(ang));
    const double x0 = x[off + 2 * i], x1 = x[off + 2 * i + 1];
    x[off + 2 * i] = x0 * c - x1 * s;
    x[off + 2 * i + 1] = x0 * s + x1 * c;
  }
}

namespace {
// 2^ceil(log2(v)) for a positive normal float, exact.
float pow2_ceil(float v) {
  int e = 0;
  const float m = std::frexp(v, &e);  // v = m·2^e, m in [0.5, 1)
  return std::ldexp(1.0f, m == 0.5f ? e - 1 : e);
}
// Round to the grid of a float format with `mbits` mantissa bits and minimum normal exponent
// `emin` (subnormals below), nearest, ties to even.
float round_minifloat(float v, int mbits, int emin) {
  if (v == 0.0f) return v;
  int e = 0;
  std::frexp(std::fabs(v), &e);
  const int ex = std::max(e - 1, emin);             // exponent of the binade (subnormal: emin)
  const float step = std::ldexp(1.0f, ex - mbits);
  return std::nearbyint(v / step) * step;           // default rounding mode: ties to even
}
template <class F>
void block_roundtrip(std::span<double> x, int64_t block, float qmax, float amin, F round) {
  for (size_t b0 = 0; b0 < x.size(); b0 += static_cast<size_t>(block)) {
    float amax = 0;
    for (size_t i = b0; i < b0 + static_cast<size_t>(block); ++i)
      amax = std::max(amax, std::fabs(static_cast<float>(x[i])));
    amax = std::max(amax, amin);
    const float s = pow2_ceil(amax / qmax);
    for (size_t i = b0; i < b0 + static_cast<size_t>(block); ++i) {
      const float y = std::clamp(static_cast<float>(x[i]) / s, -qmax, qmax);
      x[i] = static_cast<double>(round(y) * s);
    }
  }
}
}  // namespace

void fp8_roundtrip(std::span<double> x, int64_t block) {
  block_roundtrip(x, block, 448.0f, 1e-4f, [](float y) { return round_minifloat(y, 3, -6); });
}

void fp4_roundtrip(std::span<double> x, int64_t block) {
  block_roundtrip(x, block, 6.0f, 6.0f * std::ldexp(1.0f, -126),
                  [](float y) { return round_minifloat(y, 1, 0); });
}

void hadamard(std::span<double> x) {
  const size_t n = x.size();
  std::vector<float> y(x.begin(), x.end());
  for (size_t h = 1; h < n; h *= 2)
    for (size_t b = 0; b < n; b += 2 * h)
      for (size_t i = b; i < b + h; ++i) {
        const float a = y[i], c = y[i + h];
        y[i] = a + c;
        y[i + h] = a - c;
      }
  const float sc = static_cast<float>(1.0 / std::sqrt(static_cast<double>(n)));
  for (size_t i = 0; i < n; ++i) x[i] = static_cast<double>(y[i] * sc);
}

// ---- model ------------------------------------------------------------------------------------

Result<RefModel> RefModel::load(const std::string& path, RefOptions opts) {
  auto fr = GgufModel::open(path);
  if (!fr) return fr.status();
  const GgufModel& f = *fr;
  auto hr = hparams_from_gguf(f);
  if (!hr) return hr.status();
  RefModel m;
  m.hp_ = *hr;
  m.opts_ = opts;
  const HParams& h = m.hp_;
  RefWeights& w = m.w_;
  DSV4_REF_TRY(w.embed, load_mat(f, "token_embd.weight"));
  DSV4_REF_TRY(w.head, load_mat(f, "output.weight"));
  DSV4_REF_TRY(w.out_norm, load_flat(f, "output_norm.weight"));
  DSV4_REF_TRY(w.hc_head_fn, load_mat(f, "output_hc_fn.weight"));
  DSV4_REF_TRY(w.hc_head_base, load_flat(f, "output_hc_base.weight"));
  DSV4_REF_TRY(w.hc_head_scale, load_flat(f, "output_hc_scale.weight"));
  w.layers.resize(static_cast<size_t>(h.n_layer));
  for (int64_t il = 0; il < h.n_layer; ++il) {
    LayerWeights& L = w.layers[static_cast<size_t>(il)];
    const std::string b = "blk." + std::to_string(il) + ".";
    L.ratio = h.ratio(il);
    DSV4_REF_TRY(L.hc_attn, load_hc(f, b + "hc_attn"));
    DSV4_REF_TRY(L.hc_ffn, load_hc(f, b + "hc_ffn"));
    DSV4_REF_TRY(L.attn_norm, load_flat(f, b + "attn_norm.weight"));
    DSV4_REF_TRY(L.ffn_norm, load_flat(f, b + "ffn_norm.weight"));
    DSV4_REF_TRY(L.wq_a, load_mat(f, b + "attn_q_a.weight"));
    DSV4_REF_TRY(L.q_norm, load_flat(f, b + "attn_q_a_norm.weight"));
    DSV4_REF_TRY(L.wq_b, load_mat(f, b + "attn_q_b.weight"));
    DSV4_REF_TRY(L.wkv, load_mat(f, b + "attn_kv.weight"));
    DSV4_REF_TRY(L.kv_norm, load_flat(f, b + "attn_kv_a_norm.weight"));
    DSV4_REF_TRY(L.wo_a, load_mat(f, b + "attn_output_a.weight"));
    DSV4_REF_TRY(L.wo_b, load_mat(f, b + "attn_output_b.weight"));
    DSV4_REF_TRY(L.sinks, load_flat(f, b + "attn_sinks.weight"));
    if (L.ratio != 0) DSV4_REF_TRY(L.comp, load_comp(f, b + "attn_compressor"));
    if (L.ratio == 4) {
      DSV4_REF_TRY(L.idx_comp, load_comp(f, b + "indexer_compressor"));
      DSV4_REF_TRY(L.idx_wq_b, load_mat(f, b + "indexer.attn_q_b.weight"));
      DSV4_REF_TRY(L.idx_proj, load_mat(f, b + "indexer.proj.weight"));
    }
    DSV4_REF_TRY(L.gate, load_mat(f, b + "ffn_gate_inp.weight"));
    if (il < h.n_hash_layers) {
      std::vector<double> t;
      DSV4_REF_TRY(t, load_flat(f, b + "ffn_gate_tid2eid.weight"));
      L.tid2eid.resize(t.size());
      for (size_t i = 0; i < t.size(); ++i) L.tid2eid[i] = static_cast<int32_t>(std::lround(t[i]));
    } else {
      DSV4_REF_TRY(L.gate_bias, load_flat(f, b + "exp_probs_b.bias"));
    }
    DSV4_REF_TRY(L.w1, load_experts(f, b + "ffn_gate_exps.weight"));
    DSV4_REF_TRY(L.w3, load_experts(f, b + "ffn_up_exps.weight"));
    DSV4_REF_TRY(L.w2, load_experts(f, b + "ffn_down_exps.weight"));
    if (h.n_expert_shared > 0) {
      DSV4_REF_TRY(L.sh_w1, load_mat(f, b + "ffn_gate_shexp.weight"));
      DSV4_REF_TRY(L.sh_w3, load_mat(f, b + "ffn_up_shexp.weight"));
      DSV4_REF_TRY(L.sh_w2, load_mat(f, b + "ffn_down_shexp.weight"));
    }
  }
  m.reset();
  return m;
}

void RefModel::reset() {
  st_.assign(static_cast<size_t>(hp_.n_layer), LayerState{});
  last_sel_.assign(static_cast<size_t>(hp_.n_layer), {});
  pos_ = 0;
}

void RefModel::emit(const char* name, int layer, std::span<const double> v) const {
  if (obs_) obs_(name, layer, pos_, v);
}

namespace {

// Compressor input of one token (§7.4): c = wkv·a, z = wgate·a + ape[p mod r].
void compressor_push(const CompressorWeights& cw, int32_t r, std::span<const double> a, int64_t p,
                     std::vector<std::vector<double>>& cs, std::vector<std::vector<double>>& zs) {
  std::vector<double> c = matvec(cw.wkv, a);
  std::vector<double> z = matvec(cw.wgate, a);
  const double* ape = cw.ape.row(p % r);
  for (size_t i = 0; i < z.size(); ++i) z[i] += ape[i];
  cs.push_back(std::move(c));
  zs.push_back(std::move(z));
}

// Pools compressed row j (§7.4) once token r·j + r − 1 has been pushed; returns it normalised
// and RoPE'd at position j·r.
std::vector<double> compressor_row(const CompressorWeights& cw, int32_t r, int64_t j,
                                   const std::vector<std::vector<double>>& cs,
                                   const std::vector<std::vector<double>>& zs,
                                   std::span<const float> freqs, double eps,
                                   int64_t n_rot, bool fp8_nope, bool had_fp4) {
  const bool overlap = (r == 4);
  const size_t d = static_cast<size_t>(cw.norm.size());
  std::vector<double> g(d, 0.0);
  std::vector<std::pair<double, double>> cand;  // (score, value)
  for (size_t ch = 0; ch < d; ++ch) {
    cand.clear();
    if (overlap) {
      for (int64_t t = r * j - r; t < r * j; ++t)
        if (t >= 0) cand.emplace_back(zs[static_cast<size_t>(t)][ch], cs[static_cast<size_t>(t)][ch]);
      for (int64_t t = r * j; t < r * j + r; ++t)
        cand.emplace_back(zs[static_cast<size_t>(t)][d + ch], cs[static_cast<size_t>(t)][d + ch]);
    } else {
      for (int64_t t = r * j; t < r * j + r; ++t)
        cand.emplace_back(zs[static_cast<size_t>(t)][ch], cs[static_cast<size_t>(t)][ch]);
    }
    double mx = -std::numeric_limits<double>::infinity();
    for (auto& [z, c] : cand) mx = std::max(mx, z);
    double den = 0, num = 0;
    for (auto& [z, c] : cand) {
      const double e = std::exp(z - mx);
      den += e;
      num += e * c;
    }
    g[ch] = num / den;
  }
  std::vector<double> row = rms_norm(g, cw.norm, eps);
  rope(row, freqs, j * r, false);
  if (fp8_nope) fp8_roundtrip(std::span<double>(row.data(), d - static_cast<size_t>(n_rot)), 64);
  if (had_fp4) {
    hadamard(row);
    fp4_roundtrip(row, 32);
  }
  return row;
}

}  // namespace

std::vector<double> RefModel::attention(int il, std::span<const double> a, int64_t p) {
  const HParams& h = hp_;
  const LayerWeights& L = w_.layers[static_cast<size_t>(il)];
  LayerState& S = st_[static_cast<size_t>(il)];
  const double eps = h.rms_eps;
  const int64_t H = h.n_head, Dh = h.head_dim, r = L.ratio;
  const bool compressed = r != 0;
  const std::vector<float> freqs =
      compressed ? model::rope_frequencies(h.n_rot, h.compress_rope_freq_base, h.rope_yarn_factor > 1.0f,
                              h.rope_yarn_factor, h.rope_yarn_orig_ctx, h.rope_yarn_beta_fast,
                              h.rope_yarn_beta_slow)
                 : model::rope_frequencies(h.n_rot, h.rope_freq_base, false, 1, 0, 0, 0);

  // §7.2 query path
  std::vector<double> qr = rms_norm(matvec(L.wq_a, a), L.q_norm, eps);
  emit("qr", il, qr);
  std::vector<double> q = matvec(L.wq_b, qr);
  for (int64_t hh = 0; hh < H; ++hh) {
    std::span<double> qh(q.data() + hh * Dh, static_cast<size_t>(Dh));
    std::vector<double> n = rms_norm(qh, {}, eps);
    std::copy(n.begin(), n.end(), qh.begin());
  }
  emit("q_normed", il, q);
  for (int64_t hh = 0; hh < H; ++hh)
    rope(std::span<double>(q.data() + hh * Dh, static_cast<size_t>(Dh)), freqs, p, false);

  // §7.3 raw KV
  std::vector<double> kv = rms_norm(matvec(L.wkv, a), L.kv_norm, eps);
  emit("kv_unrounded", il, kv);
  if (opts_.kv_fp8) fp8_roundtrip(std::span<double>(kv.data(), static_cast<size_t>(Dh - h.n_rot)), 64);
  emit("kv", il, kv);  // the nope round-trip commutes with RoPE (other channels)
  rope(kv, freqs, p, false);
  S.raw.push_back(kv);

  // candidate rows
  std::vector<const std::vector<double>*> rows;
  for (int64_t t = std::max<int64_t>(0, p - h.n_swa + 1); t <= p; ++t)
    rows.push_back(&S.raw[static_cast<size_t>(t)]);

  if (compressed) {
    // §7.5 indexer (its compressor first, so a row completed by this token is eligible)
    if (r == 4) {
      compressor_push(L.idx_comp, 4, a, p, S.idx_c, S.idx_z);
      if ((p + 1) % 4 == 0) {
        S.idx_rows.push_back(compressor_row(L.idx_comp, 4, (p + 1) / 4 - 1, S.idx_c, S.idx_z, freqs, eps,
                                                h.n_rot, false, opts_.indexer_fp4));
        emit("indexer_key_row", il, S.idx_rows.back());
      }
    }
    // §7.4 attention compressor
    compressor_push(L.comp, static_cast<int32_t>(r), a, p, S.comp_c, S.comp_z);
    if ((p + 1) % r == 0) {
      S.comp_rows.push_back(compressor_row(L.comp, static_cast<int32_t>(r), (p + 1) / r - 1, S.comp_c,
                                           S.comp_z, freqs, eps, h.n_rot, opts_.kv_fp8, false));
      emit("compressed_row", il, S.comp_rows.back());
    }
    const int64_t n_vis = (p + 1) / r;
    if (r == 4) {
      const int64_t nI = h.n_indexer_head, dI = h.indexer_head_dim;
      std::vector<double> qI = matvec(L.idx_wq_b, qr);
      for (int64_t hh = 0; hh < nI; ++hh) {
        std::span<double> qh(qI.data() + hh * dI, static_cast<size_t>(dI));
        rope(qh, freqs, p, false);
        if (opts_.indexer_fp4) {
          hadamard(qh);
          fp4_roundtrip(qh, 32);
        }
      }
      std::vector<double> wI = matvec(L.idx_proj, a);
      const double wscale = 1.0 / std::sqrt(static_cast<double>(dI)) / std::sqrt(static_cast<double>(nI));
      std::vector<double> score(static_cast<size_t>(n_vis), 0.0);
      for (int64_t j = 0; j < n_vis; ++j) {
        const std::vector<double>& k = S.idx_rows[static_cast<size_t>(j)];
        double s = 0;
        for (int64_t hh = 0; hh < nI; ++hh) {
          double dot = 0;
          for (int64_t c = 0; c < dI; ++c) dot += qI[static_cast<size_t>(hh * dI + c)] * k[static_cast<size_t>(c)];
          s += wI[static_cast<size_t>(hh)] * wscale * std::max(0.0, dot);
        }
        score[static_cast<size_t>(j)] = s;
      }
      emit("indexer_scores", il, score);
      std::vector<int64_t> sel = top_k_stable(score, h.indexer_top_k);
      std::vector<double> seld(sel.begin(), sel.end());
      emit("indexer_topk", il, seld);
      for (int64_t j : sel) rows.push_back(&S.comp_rows[static_cast<size_t>(j)]);
      last_sel_[static_cast<size_t>(il)] = std::move(sel);
    } else {
      for (int64_t j = 0; j < n_vis; ++j) rows.push_back(&S.comp_rows[static_cast<size_t>(j)]);
    }
  }

  // §7.6 sparse attention with sinks; §7.7 inverse RoPE
  const double scale = 1.0 / std::sqrt(static_cast<double>(Dh));
  std::vector<double> o(static_cast<size_t>(H * Dh), 0.0);
  std::vector<double> s(rows.size());
  for (int64_t hh = 0; hh < H; ++hh) {
    const double* qh = q.data() + hh * Dh;
    double mx = L.sinks[static_cast<size_t>(hh)];
    for (size_t k = 0; k < rows.size(); ++k) {
      double dot = 0;
      for (int64_t c = 0; c < Dh; ++c) dot += qh[c] * (*rows[k])[static_cast<size_t>(c)];
      s[k] = dot * scale;
      mx = std::max(mx, s[k]);
    }
    double den = std::exp(L.sinks[static_cast<size_t>(hh)] - mx);
    for (size_t k = 0; k < rows.size(); ++k) den += (s[k] = std::exp(s[k] - mx));
    double* oh = o.data() + hh * Dh;
    for (size_t k = 0; k < rows.size(); ++k)
      for (int64_t c = 0; c < Dh; ++c) oh[c] += s[k] / den * (*rows[k])[static_cast<size_t>(c)];
    rope(std::span<double>(oh, static_cast<size_t>(Dh)), freqs, p, true);
  }


  // §7.7 grouped low-rank output
  const int64_t G = h.o_groups, Ro = h.o_lora_rank, gw = H * Dh / G;
  std::vector<double> z(static_cast<size_t>(G * Ro), 0.0);
  for (int64_t g = 0; g < G; ++g)
    for (int64_t rr = 0; rr < Ro; ++rr) {
      const double* wr = L.wo_a.row(g * Ro + rr);
      double acc = 0;
      for (int64_t i = 0; i < gw; ++i) acc += wr[i] * o[static_cast<size_t>(g * gw + i)];
      z[static_cast<size_t>(g * Ro + rr)] = acc;
    }
  std::vector<double> out = matvec(L.wo_b, z);
  emit("attn_out", il, out);
  return out;
}

std::vector<double> RefModel::moe(int il, std::span<const double> b, int32_t token) {
  const HParams& h = hp_;
  const LayerWeights& L = w_.layers[static_cast<size_t>(il)];
  // §8.1 router
  std::vector<double> l = matvec(L.gate, b);
  std::vector<double> sc(l.size());
  for (size_t e = 0; e < l.size(); ++e) sc[e] = std::sqrt(softplus(l[e]));
  std::vector<int64_t> idx;
  const int64_t k = h.n_expert_used;
  if (il < h.n_hash_layers) {
    for (int64_t i = 0; i < k; ++i) idx.push_back(L.tid2eid[static_cast<size_t>(token * k + i)]);
  } else {
    std::vector<double> biased(sc.size());
    for (size_t e = 0; e < sc.size(); ++e) biased[e] = sc[e] + L.gate_bias[e];
    idx = top_k_stable(biased, k);
  }
  double sum = 0;
  for (int64_t e : idx) sum += sc[static_cast<size_t>(e)];
  std::vector<double> idxd(idx.begin(), idx.end());
  emit("router_experts", il, idxd);
  std::vector<double> wts;
  for (int64_t e : idx)
    wts.push_back((h.expert_weights_norm ? sc[static_cast<size_t>(e)] / sum : sc[static_cast<size_t>(e)]) *
                  h.expert_weights_scale);
  emit("router_weights", il, wts);
  // §8.2 experts with clamped SwiGLU
  auto expert = [&](const Mat& w1, const Mat& w3, const Mat& w2, double omega, double limit,
                    std::vector<double>& acc) {
    std::vector<double> g = matvec(w1, b), u = matvec(w3, b);
    for (size_t i = 0; i < g.size(); ++i) {
      const double uu = std::clamp(u[i], -limit, limit);
      const double gg = std::min(g[i], limit);
      g[i] = omega * silu(gg) * uu;
    }
    std::vector<double> y = matvec(w2, g);
    for (size_t i = 0; i < y.size(); ++i) acc[i] += y[i];
  };
  std::vector<double> F(b.size(), 0.0);
  const double lim = h.swiglu_clamp_exp[static_cast<size_t>(il)];
  for (size_t i = 0; i < idx.size(); ++i) {
    const size_t e = static_cast<size_t>(idx[i]);
    expert(L.w1[e], L.w3[e], L.w2[e], wts[i], lim, F);
  }
  if (h.n_expert_shared > 0)
    expert(L.sh_w1, L.sh_w3, L.sh_w2, 1.0, h.swiglu_clamp_shexp[static_cast<size_t>(il)], F);
  emit("moe_out", il, F);
  return F;
}

std::vector<double> RefModel::step(int32_t token) {
  const HParams& h = hp_;
  const int hc = static_cast<int>(h.n_hc);
  const int64_t D = h.n_embd;
  const int64_t p = pos_;
  // §4: embedding copied into every HC stream
  std::vector<double> X(static_cast<size_t>(hc * D));
  for (int j = 0; j < hc; ++j)
    std::copy(w_.embed.row(token), w_.embed.row(token) + D, X.begin() + j * D);
  emit("embed", -1, std::span<const double>(w_.embed.row(token), static_cast<size_t>(D)));
  for (int il = 0; il < static_cast<int>(h.n_layer); ++il) {
    const LayerWeights& L = w_.layers[static_cast<size_t>(il)];
    // §6 attention sublayer
    HcCoeffs c = hc_coeffs(X, hc, L.hc_attn, h.rms_eps, h.hc_eps, static_cast<int>(h.hc_sinkhorn_iters));
    std::vector<double> a = rms_norm(hc_pre(X, hc, c.pre), L.attn_norm, h.rms_eps);
    emit("attn_norm", il, a);
    X = hc_post(X, hc, c, attention(il, a, p));
    emit("hc_after_attn", il, X);
    // MoE sublayer
    c = hc_coeffs(X, hc, L.hc_ffn, h.rms_eps, h.hc_eps, static_cast<int>(h.hc_sinkhorn_iters));
    std::vector<double> bb = rms_norm(hc_pre(X, hc, c.pre), L.ffn_norm, h.rms_eps);
    emit("ffn_norm", il, bb);
    X = hc_post(X, hc, c, moe(il, bb, token));
    emit("l_out", il, X);
  }
  std::vector<double> y =
      hc_head(X, hc, w_.hc_head_fn, w_.hc_head_base, w_.hc_head_scale, h.rms_eps, h.hc_eps);
  emit("hc_head_out", -1, y);
  y = rms_norm(y, w_.out_norm, h.rms_eps);
  emit("final_norm", -1, y);
  std::vector<double> logits = matvec(w_.head, y);
  ++pos_;
  return logits;
}

std::vector<double> RefModel::prefill(std::span<const int32_t> tokens) {
  std::vector<double> out;
  out.reserve(tokens.size() * static_cast<size_t>(hp_.n_vocab));
  for (int32_t t : tokens) {
    std::vector<double> l = step(t);
    out.insert(out.end(), l.begin(), l.end());
  }
  return out;
}

}  // namespace dsv4::ref
