// dsv4 backend/cpu: the integer-dot kernel tables (qdot.h).
#include "qdot.h"

#include <array>

#include "dsv4/quant/act_quant.h"
#include "dsv4/quant/blocks.h"

namespace dsv4::backend::cpu {

const QDotKernels& qdot_kernels(int level) {
  static const std::array<QDotKernels, 3> tables = [] {
    std::array<QDotKernels, 3> t;
    fill_qdot32_scalar(t[0]);
    fill_qdotK_scalar(t[0]);
    fill_qdot32_avx2(t[1]);
    fill_qdotK_avx2(t[1]);
    fill_qdot32_avx512(t[2]);
    fill_qdot32_pairs_avx512(t[2]);
    fill_qdot_bf16_avx512(t[2]);
    fill_qdotK_avx512(t[2]);
    return t;
  }();
  return tables[static_cast<size_t>(level < 0 ? 0 : level > 2 ? 2 : level)];
}

size_t act_row_bytes(ActFormat f, int64_t k) {
  switch (f) {
    case ActFormat::kQ8_0: return static_cast<size_t>(k / 32) * sizeof(quant::BlockQ8_0);
    case ActFormat::kQ8_K: return static_cast<size_t>(k / quant::kQK_K) * sizeof(quant::BlockQ8_K);
    case ActFormat::kBF16: return static_cast<size_t>(k) * 2;
    default: break;
  }
  return 0;
}

QDotTileFn qdot_fn(const QDotKernels& k, quant::QType type) {
  switch (type) {
    case quant::QType::kQ8_0: return k.q8_0;
    case quant::QType::kMXFP4: return k.mxfp4;
    case quant::QType::kIQ4_NL: return k.iq4_nl;
    case quant::QType::kQ2_K: return k.q2_K;
    case quant::QType::kQ4_K: return k.q4_K;
    case quant::QType::kIQ2_XXS: return k.iq2_xxs;
    case quant::QType::kBF16: return k.bf16;
    default: return nullptr;
  }
}

}  // namespace dsv4::backend::cpu
