// dsv4 quant: act_format_of and act_round_trip (act_quant.h).
#include <cmath>
#include <limits>
#include <vector>

#include "dsv4/core/dtypes.h"
#include "dsv4/core/status.h"
#include "dsv4/quant/act_quant.h"

namespace dsv4::quant {

ActFormat act_format_of(QType weight_type) {
  switch (weight_type) {
    case QType::kQ8_0:
    case QType::kMXFP4:
    case QType::kIQ4_NL: return ActFormat::kQ8_0;
    case QType::kQ2_K:
    case QType::kQ3_K:
    case QType::kQ4_K:
    case QType::kQ5_K:
    case QType::kQ6_K:
    case QType::kIQ2_XXS:
    case QType::kIQ2_XS:
    case QType::kIQ2_S:
    case QType::kIQ3_XXS:
    case QType::kIQ3_S:
    case QType::kIQ1_S:
    case QType::kIQ1_M:
    case QType::kIQ4_XS: return ActFormat::kQ8_K;
    case QType::kBF16: return ActFormat::kBF16;
    case QType::kF16: return ActFormat::kF16;
    default: return ActFormat::kNone;
  }
}

void act_round_trip(ActFormat f, const float* x, float* y, int64_t n) {
  // A row holding inf or NaN has no quantized form: every value becomes NaN (the CPU backend
  // marks such a row's block scales NaN, so its dots are NaN as well).
  if (f == ActFormat::kQ8_0 || f == ActFormat::kQ8_K)
    for (int64_t i = 0; i < n; ++i)
      if (!std::isfinite(x[i])) {
        for (int64_t j = 0; j < n; ++j) y[j] = std::numeric_limits<float>::quiet_NaN();
        return;
      }
  switch (f) {
    case ActFormat::kNone:
      for (int64_t i = 0; i < n; ++i) y[i] = x[i];
      return;
    case ActFormat::kQ8_0: {
      DSV4_CHECK(n % 32 == 0);
      std::vector<BlockQ8_0> q(static_cast<size_t>(n / 32));
      quantize_act_q8_0(x, q.data(), n);
      DSV4_CHECK(static_cast<bool>(dequantize_row(QType::kQ8_0, q.data(), y, n)));
      return;
    }
    case ActFormat::kBF16:
      for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_f32(f32_to_bf16(x[i]));
      return;
    case ActFormat::kF16:
      for (int64_t i = 0; i < n; ++i) y[i] = fp16_to_f32(f32_to_fp16(x[i]));
      return;
    case ActFormat::kQ8_K: {
      DSV4_CHECK(n % kQK_K == 0);
      std::vector<BlockQ8_K> q(static_cast<size_t>(n / kQK_K));
      quantize_act_q8_K(x, q.data(), n);
      dequantize_act_q8_K(q.data(), y, n);
      return;
    }
  }
}

}  // namespace dsv4::quant
