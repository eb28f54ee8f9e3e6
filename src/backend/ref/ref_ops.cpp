// dsv4 backend/ref: RefOps (see ref_ops.h). Section numbers refer to dsv4-architecture.md.
#include "dsv4/backend/ref/ref_ops.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <span>
#include <vector>

#include "dsv4/backend/ref/ref_model.h"
#include "dsv4/core/status.h"
#include "dsv4/quant/act_quant.h"

namespace dsv4::backend {
namespace {

using dvec = std::vector<double>;

double sigmoid(double v) { return 1.0 / (1.0 + std::exp(-v)); }
double silu(double v) { return v * sigmoid(v); }

dvec to_double(const float* p, int64_t n) { return dvec(p, p + n); }

void store(const dvec& v, float* out) {
  for (size_t i = 0; i < v.size(); ++i) out[i] = static_cast<float>(v[i]);
}

// Row r of a weight, dequantized (dequantize_row) and widened to double.
dvec weight_row(const Weight& w, int64_t r) {
  std::vector<float> tmp(static_cast<size_t>(w.cols));
  const Status s = quant::dequantize_row(w.type, w.data + static_cast<size_t>(r) * w.row_bytes,
                                         tmp.data(), w.cols);
  DSV4_CHECK(s.is_ok());
  return dvec(tmp.begin(), tmp.end());
}

double dot(const dvec& a, const double* b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
  return s;
}

// The whole weight as a reference Mat (for the free functions of ref_model.h; small matrices).
ref::Mat to_mat(const Weight& w) {
  ref::Mat m;
  m.rows = w.rows;
  m.cols = w.cols;
  m.d.reserve(static_cast<size_t>(w.rows * w.cols));
  for (int64_t r = 0; r < w.rows; ++r) {
    dvec row = weight_row(w, r);
    m.d.insert(m.d.end(), row.begin(), row.end());
  }
  return m;
}

// The activation row a dot with a `type` weight multiplies (ops.h ActQuant): x itself, or with
// kQ8 the dequantized value of its q8_0 / q8_K form.
dvec act_input(ActQuant aq, quant::QType type, const float* x, int64_t n) {
  const quant::ActFormat f = aq == ActQuant::kQ8 ? quant::act_format_of(type) : quant::ActFormat::kNone;
  if (f == quant::ActFormat::kNone) return to_double(x, n);
  std::vector<float> r(static_cast<size_t>(n));
  quant::act_round_trip(f, x, r.data(), n);
  return to_double(r.data(), n);
}

}  // namespace

// §1: y[t][r] = Σ_c W[r][c]·x[t][c], each weight row dequantized once.
void RefOps::matmul(const Weight& w, const float* x, int64_t ldx, int64_t n, float* y,
                    int64_t ldy) {
  std::vector<dvec> xs;
  for (int64_t t = 0; t < n; ++t) xs.push_back(act_input(act_quant_, w.type, x + t * ldx, w.cols));
  for (int64_t r = 0; r < w.rows; ++r) {
    const dvec row = weight_row(w, r);
    for (int64_t t = 0; t < n; ++t) y[t * ldy + r] = static_cast<float>(dot(row, xs[static_cast<size_t>(t)].data()));
  }
}

// §1 RMSNorm.
void RefOps::rms_norm(const float* x, const float* w, int64_t n, int64_t dim, float eps,
                      float* y) {
  const dvec wd = w != nullptr ? to_double(w, dim) : dvec();
  for (int64_t t = 0; t < n; ++t) store(ref::rms_norm(to_double(x + t * dim, dim), wd, eps), y + t * dim);
}

// §5.1, §5.2.
void RefOps::hc_coeffs(const float* X, int64_t n, int64_t hc, int64_t D, const HcWeights& p,
                       float norm_eps, float hc_eps, int64_t sinkhorn_iters, float* pre,
                       float* post, float* comb) {
  ref::HcParams hp;
  hp.fn = to_mat(p.fn);
  const int64_t nm = (2 + hc) * hc;
  hp.base = to_double(p.base, nm);
  hp.scale = to_double(p.scale, 3);
  for (int64_t t = 0; t < n; ++t) {
    const ref::HcCoeffs c = ref::hc_coeffs(to_double(X + t * hc * D, hc * D), static_cast<int>(hc), hp,
                                           norm_eps, hc_eps, static_cast<int>(sinkhorn_iters));
    store(c.pre, pre + t * hc);
    store(c.post, post + t * hc);
    store(c.comb, comb + t * hc * hc);
  }
}

// §5.3 collapse.
void RefOps::hc_pre(const float* X, int64_t n, int64_t hc, int64_t D, const float* pre,
                    float* u) {
  for (int64_t t = 0; t < n; ++t)
    store(ref::hc_pre(to_double(X + t * hc * D, hc * D), static_cast<int>(hc), to_double(pre + t * hc, hc)),
          u + t * D);
}

// §5.3 expand: X'[k] = post[k]·F + Σ_j C[j][k]·X[j].
void RefOps::hc_post(float* X, int64_t n, int64_t hc, int64_t D, const float* post,
                     const float* comb, const float* F) {
  for (int64_t t = 0; t < n; ++t) {
    ref::HcCoeffs c;
    c.post = to_double(post + t * hc, hc);
    c.comb = to_double(comb + t * hc * hc, hc * hc);
    store(ref::hc_post(to_double(X + t * hc * D, hc * D), static_cast<int>(hc), c, to_double(F + t * D, D)),
          X + t * hc * D);
  }
}

// §5.4.
void RefOps::hc_head(const float* X, int64_t n, int64_t hc, int64_t D, const HcWeights& p,
                     float norm_eps, float hc_eps, float* y) {
  const ref::Mat fn = to_mat(p.fn);
  const dvec base = to_double(p.base, hc), scale = to_double(p.scale, 1);
  for (int64_t t = 0; t < n; ++t)
    store(ref::hc_head(to_double(X + t * hc * D, hc * D), static_cast<int>(hc), fn, base, scale, norm_eps,
                       hc_eps),
          y + t * D);
}

// §7.1.
void RefOps::rope(float* x, int64_t n, int64_t heads, int64_t dim, const float* freqs,
                  int64_t n_freq, const int64_t* pos, bool inverse) {
  const std::span<const float> f(freqs, static_cast<size_t>(n_freq));
  for (int64_t t = 0; t < n; ++t)
    for (int64_t h = 0; h < heads; ++h) {
      float* v = x + (t * heads + h) * dim;
      dvec d = to_double(v, dim);
      ref::rope(d, f, pos[t], inverse);
      store(d, v);
    }
}

// §7.6: softmax over the selected rows plus the sink logit; the sink adds no value.
void RefOps::attention(const float* q, int64_t n, int64_t H, int64_t Dh, const float* kv,
                       const int64_t* offsets, const int32_t* indices, const float* sinks,
                       float scale, float* out) {
  for (int64_t t = 0; t < n; ++t) {
    const int64_t k0 = offsets[t], nk = offsets[t + 1] - offsets[t];
    std::vector<dvec> rows;
    for (int64_t k = 0; k < nk; ++k) rows.push_back(to_double(kv + static_cast<int64_t>(indices[k0 + k]) * Dh, Dh));
    for (int64_t h = 0; h < H; ++h) {
      const dvec qh = to_double(q + (t * H + h) * Dh, Dh);
      dvec o(static_cast<size_t>(Dh), 0.0);
      if (nk > 0) {
        const double sink = sinks != nullptr ? sinks[h] : -std::numeric_limits<double>::infinity();
        dvec s(static_cast<size_t>(nk));
        double mx = sink;
        for (int64_t k = 0; k < nk; ++k) {
          s[static_cast<size_t>(k)] = dot(qh, rows[static_cast<size_t>(k)].data()) * static_cast<double>(scale);
          mx = std::max(mx, s[static_cast<size_t>(k)]);
        }
        double den = std::exp(sink - mx);
        for (auto& v : s) den += (v = std::exp(v - mx));
        for (int64_t k = 0; k < nk; ++k)
          for (int64_t c = 0; c < Dh; ++c)
            o[static_cast<size_t>(c)] += s[static_cast<size_t>(k)] / den * rows[static_cast<size_t>(k)][static_cast<size_t>(c)];
      }
      store(o, out + (t * H + h) * Dh);
    }
  }
}

// §7.5: score[t][j] = Σ_h wI[t][h]·scale·relu(qI[t][h]·keys[j]).
void RefOps::indexer_scores(const float* qI, const float* wI, int64_t n, int64_t nI, int64_t dI,
                            const float* keys, const int64_t* n_vis, float scale, float* score,
                            int64_t ld_score) {
  for (int64_t t = 0; t < n; ++t) {
    std::vector<dvec> qs;
    for (int64_t h = 0; h < nI; ++h) qs.push_back(to_double(qI + (t * nI + h) * dI, dI));
    for (int64_t j = 0; j < n_vis[t]; ++j) {
      const dvec kj = to_double(keys + j * dI, dI);
      double s = 0;
      for (int64_t h = 0; h < nI; ++h)
        s += static_cast<double>(wI[t * nI + h]) * scale * std::max(0.0, dot(qs[static_cast<size_t>(h)], kj.data()));
      score[t * ld_score + j] = static_cast<float>(s);
    }
  }
}

// §8.2: y[t] += Σ_k down_e · (w · silu(min(gate_e·x, limit)) ⊙ clamp(up_e·x, ±limit)), k in order.
void RefOps::moe(const ExpertWeights& ew, const float* x, int64_t n, int64_t n_used,
                 const int32_t* ids, const float* weights, float limit, float* y) {
  const int64_t I = ew.n_ff, D = ew.n_embd;
  const double lim = limit;
  // ActQuant::kQ8: x rounded per gate / up format, h (without the routing weight) per down
  // format, the weight applied after the down projection (as CpuOps and upstream)
  const bool q8 = act_quant_ == ActQuant::kQ8;
  const ActQuant aq = act_quant_;
  for (int64_t t = 0; t < n; ++t) {
    const dvec xg = act_input(aq, ew.gate.type, x + t * D, D);
    const dvec xu = act_input(aq, ew.up.type, x + t * D, D);
    dvec acc = to_double(y + t * D, D);
    for (int64_t k = 0; k < n_used; ++k) {
      const int32_t e = ids[t * n_used + k];
      if (e < 0) continue;
      const double w = weights[t * n_used + k];
      const Weight g = ew.gate.expert(e, I), u = ew.up.expert(e, I), dn = ew.down.expert(e, D);
      dvec h(static_cast<size_t>(I));
      for (int64_t i = 0; i < I; ++i) {
        const double gi = std::min(dot(weight_row(g, i), xg.data()), lim);
        const double ui = std::clamp(dot(weight_row(u, i), xu.data()), -lim, lim);
        h[static_cast<size_t>(i)] = silu(gi) * ui;
      }
      if (q8) {  // the CPU backend quantizes its float32 h (without the routing weight)
        std::vector<float> hf(h.begin(), h.end());
        h = act_input(aq, dn.type, hf.data(), I);
      }
      for (int64_t r = 0; r < D; ++r) acc[static_cast<size_t>(r)] += w * dot(weight_row(dn, r), h.data());
    }
    store(acc, y + t * D);
  }
}

}  // namespace dsv4::backend
