#include "dsv4/quant/hf.h"

#include <cstring>
#include <string>

#include "dsv4/core/dtypes.h"

namespace dsv4::quant {
namespace {

Status bad_n(const char* what, int64_t n, int64_t mult) {
  return {ErrorCode::kInvalidArgument, std::string("quant: ") + what + ": element count " +
                                           std::to_string(n) + " is not a non-negative multiple of " +
                                           std::to_string(mult)};
}

}  // namespace

Status dequantize_hf_fp8_row(const uint8_t* q, const uint8_t* scale_row, float* dst, int64_t n) {
  if (n < 0) return bad_n("hf fp8 row", n, 1);
  for (int64_t j = 0; j < n; ++j) dst[j] = e4m3fn_to_f32(q[j]) * e8m0_to_f32(scale_row[j / 128]);
  return Status::ok();
}

Status dequantize_hf_fp4_row(const uint8_t* packed, const uint8_t* scales, float* dst, int64_t n) {
  if (n < 0 || n % 32 != 0) return bad_n("hf fp4 row", n, 32);
  for (int64_t j = 0; j < n; ++j) {
    const uint8_t byte = packed[j / 2];
    const uint8_t code = (j % 2 == 0) ? (byte & 0xF) : (byte >> 4);
    dst[j] = e2m1_to_f32(code) * e8m0_to_f32(scales[j / 32]);
  }
  return Status::ok();
}

Status repack_hf_fp4_row_to_mxfp4(const uint8_t* packed, const uint8_t* scales, void* dst,
                                  int64_t n) {
  if (n < 0 || n % 32 != 0) return bad_n("hf fp4 -> mxfp4", n, 32);
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t g = 0; g < n / 32; ++g) {
    const uint8_t* src = packed + 16 * g;
    uint8_t code[32];
    for (int i = 0; i < 16; ++i) {
      code[2 * i] = src[i] & 0xF;
      code[2 * i + 1] = src[i] >> 4;
    }
    uint8_t* blk = out + 17 * g;
    blk[0] = scales[g];
    for (int j = 0; j < 16; ++j) blk[1 + j] = static_cast<uint8_t>(code[j] | (code[j + 16] << 4));
  }
  return Status::ok();
}

Status repack_hf_fp8_row_to_b128(const uint8_t* q, const uint8_t* scale_row, void* dst, int64_t n) {
  if (n < 0 || n % 128 != 0) return bad_n("hf fp8 -> f8_e4m3_b128", n, 128);
  auto* out = static_cast<uint8_t*>(dst);
  for (int64_t k = 0; k < n / 128; ++k) {
    out[129 * k] = scale_row[k];
    std::memcpy(out + 129 * k + 1, q + 128 * k, 128);
  }
  return Status::ok();
}

}  // namespace dsv4::quant
