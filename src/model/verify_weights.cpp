#include "dsv4/model/verify_weights.h"

#include <cmath>

#include "dsv4/quant/quant.h"

namespace dsv4 {

Status verify_weights(const GgufModel& f, std::vector<std::string>* problems) {
  std::vector<std::string> local;
  std::vector<std::string>& out = problems != nullptr ? *problems : local;
  std::vector<float> row;
  for (const GgufTensorInfo* t : f.tensors()) {
    if (t->data.empty()) {
      return Status(ErrorCode::kInvalidArgument, "tensor '" + std::string(t->name) + "' has no data to verify");
    }
    auto q = quant::qtype_from_traits(*t->type);
    if (!q) return q.status();
    if (*q == quant::QType::kI32) continue;  // integer tables (tid2eid)
    const int64_t n = t->ne[0], rows = t->n_elements() / n;
    const uint64_t row_bytes = t->n_bytes / static_cast<uint64_t>(rows);
    row.resize(static_cast<size_t>(n));
    for (int64_t r = 0; r < rows; ++r) {
      DSV4_RETURN_IF_ERROR(quant::dequantize_row(*q, t->data.data() + static_cast<uint64_t>(r) * row_bytes,
                                                 row.data(), n));
      int64_t bad = -1;
      for (int64_t i = 0; i < n && bad < 0; ++i) {
        if (!std::isfinite(row[static_cast<size_t>(i)])) bad = i;
      }
      if (bad >= 0) {
        out.push_back(std::string(t->name) + ": non-finite value " + std::to_string(row[static_cast<size_t>(bad)]) +
                      " at element " + std::to_string(r * n + bad));
        break;
      }
    }
  }
  if (out.empty()) return Status::ok();
  return Status(ErrorCode::kInvalidFile, out.front() + (out.size() > 1 ? " (and " + std::to_string(out.size() - 1) +
                                                                            " more tensors)" : ""));
}

}  // namespace dsv4
