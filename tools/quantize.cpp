// dsv4-quantize: requantizes a DeepSeek-V4 GGUF. Routed experts go to --experts TYPE (q4_K, q2_K,
// q8_0, mxfp4), the dense projections (attention q/kv/output, shared experts, indexer q: the
// official checkpoint's FP8 weights) to --dense TYPE (q8_0), everything else (embeddings, router,
// compressors, norms, biases, HC parameters, tid2eid) is copied unchanged. Per-tensor
// overrides: --override REGEX=TYPE (PCRE2, matched against the whole tensor name; first match
// wins), like llama-quantize's --tensor-type. Quantizers: dsv4/quant (Q8_0/MXFP4 byte-identical
// to gguf-py; Q2_K/Q4_K = ggml's reference quantizers without an importance matrix).
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "dsv4/format/gguf_model.h"
#include "dsv4/format/gguf_writer.h"
#include "dsv4/model/hparams.h"
#include "dsv4/model/tensors.h"
#include "dsv4/quant/quant.h"

namespace {

using dsv4::quant::QType;

struct Override {
  std::string pattern;
  std::unique_ptr<pcre2_code, decltype(&pcre2_code_free)> re{nullptr, &pcre2_code_free};
  QType type;
};

bool full_match(const Override& o, std::string_view s) {
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
      pcre2_match_data_create_from_pattern(o.re.get(), nullptr), &pcre2_match_data_free);
  const int rc = pcre2_match(o.re.get(), reinterpret_cast<PCRE2_SPTR>(s.data()), s.size(), 0,
                             PCRE2_ANCHORED | PCRE2_ENDANCHORED, md.get(), nullptr);
  return rc >= 0;
}

dsv4::Result<QType> parse_type(const std::string& name) {
  size_t n = 0;
  const auto* table = dsv4::quant::qtype_table(&n);
  for (size_t i = 0; i < n; ++i) {
    if (table[i].name == name && table[i].can_quantize) return table[i].type;
  }
  return dsv4::Status(dsv4::ErrorCode::kInvalidArgument,
                      "'" + name + "' is not a type dsv4-quantize can write (f32, f16, bf16, q8_0, "
                      "q2_K, q4_K, mxfp4)");
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dsv4-quantize: requantize a DeepSeek-V4 GGUF (routed experts, dense weights, overrides)"};
  std::string in, out, experts_s = "q4_K", dense_s = "q8_0";
  std::vector<std::string> overrides_s;
  app.add_option("input", in, "input GGUF (any shard of a split set)")->required();
  app.add_option("output", out, "output GGUF (one file)")->required();
  app.add_option("--experts", experts_s, "type of the routed experts (ffn_*_exps)")->capture_default_str();
  app.add_option("--dense", dense_s, "type of the other matmul weights")->capture_default_str();
  app.add_option("--override", overrides_s, "REGEX=TYPE for the tensors whose whole name matches");
  CLI11_PARSE(app, argc, argv);

  auto experts = parse_type(experts_s);
  auto dense = parse_type(dense_s);
  for (auto* r : {&experts, &dense}) {
    if (!*r) {
      fmt::print(stderr, "error: {}\n", r->status().message());
      return 2;
    }
  }
  std::vector<Override> overrides;
  for (const auto& o : overrides_s) {
    const size_t eq = o.rfind('=');
    if (eq == std::string::npos) {
      fmt::print(stderr, "error: --override '{}' is not REGEX=TYPE\n", o);
      return 2;
    }
    auto t = parse_type(o.substr(eq + 1));
    if (!t) {
      fmt::print(stderr, "error: --override '{}': {}\n", o, t.status().message());
      return 2;
    }
    Override ov;
    ov.pattern = o.substr(0, eq);
    int err = 0;
    PCRE2_SIZE off = 0;
    ov.re.reset(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(ov.pattern.data()), ov.pattern.size(),
                              PCRE2_UTF, &err, &off, nullptr));
    if (!ov.re) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof msg);
      fmt::print(stderr, "error: --override regex '{}' at {}: {}\n", ov.pattern, off,
                 reinterpret_cast<const char*>(msg));
      return 2;
    }
    ov.type = *t;
    overrides.push_back(std::move(ov));
  }

  auto model = dsv4::GgufModel::open(in);
  if (!model) {
    fmt::print(stderr, "error: {}\n", model.status().to_string());
    return 1;
  }
  auto h = dsv4::hparams_from_gguf(*model);
  if (!h) {
    fmt::print(stderr, "error: {}\n", h.status().to_string());
    return 1;
  }
  std::map<std::string, dsv4::TensorClass, std::less<>> cls;
  for (const auto& s : dsv4::expected_tensors(*h)) cls[s.name] = s.cls;

  dsv4::GgufWriter w;
  for (const auto& kv : model->meta().metadata()) {
    if (kv.key.starts_with("split.") || kv.key == "general.file_type") continue;
    w.add_value(kv.key, kv.value);
  }
  struct Job {
    const dsv4::GgufTensorInfo* t;
    QType from, to;
    bool copy;
  };
  std::vector<Job> jobs;
  for (const dsv4::GgufTensorInfo* t : model->tensors()) {
    auto from = dsv4::quant::qtype_from_traits(*t->type);
    if (!from) {
      fmt::print(stderr, "error: tensor {}: {}\n", t->name, from.status().message());
      return 1;
    }
    auto it = cls.find(t->name);
    const dsv4::TensorClass c = it == cls.end() ? dsv4::TensorClass::kVector : it->second;
    QType to = *from;
    if (c == dsv4::TensorClass::kExperts) to = *experts;
    if (c == dsv4::TensorClass::kProjection) to = *dense;
    for (const auto& o : overrides) {
      if (full_match(o, t->name)) {
        to = o.type;
        break;
      }
    }
    const auto* info = dsv4::quant::qtype_info(to);
    if (c == dsv4::TensorClass::kIndex || c == dsv4::TensorClass::kVector || t->ne[0] % info->block_size != 0) {
      to = *from;  // integers and vectors stay; a row that is not whole blocks stays too
    }
    const bool copy = to == *from;
    const uint64_t bytes = copy ? t->n_bytes
                                : static_cast<uint64_t>(t->n_elements() / info->block_size) * info->type_size;
    const uint32_t id = to == QType::kF8_E4M3_B128 ? 42u : static_cast<uint32_t>(to);
    w.add_tensor_info(t->name, id, std::span<const int64_t>(t->ne, t->n_dims), bytes);
    jobs.push_back({t, *from, to, copy});
  }
  fmt::print("{} -> {}: experts {}, dense {}, {} override(s)\n", in, out, experts_s, dense_s, overrides.size());
  std::vector<float> row;
  auto st = w.write_streaming(out, [&](size_t i, std::span<uint8_t> buf) -> dsv4::Status {
    const Job& j = jobs[i];
    if (j.copy) {
      std::memcpy(buf.data(), j.t->data.data(), buf.size());
      return dsv4::Status::ok();
    }
    const int64_t n = j.t->ne[0], rows = j.t->n_elements() / n;
    const uint64_t in_row = j.t->n_bytes / static_cast<uint64_t>(rows), out_row = buf.size() / static_cast<uint64_t>(rows);
    row.resize(static_cast<size_t>(n));
    for (int64_t r = 0; r < rows; ++r) {
      DSV4_RETURN_IF_ERROR(dsv4::quant::dequantize_row(j.from, j.t->data.data() + r * in_row, row.data(), n));
      DSV4_RETURN_IF_ERROR(dsv4::quant::quantize_row(j.to, row.data(), buf.data() + r * out_row, n));
    }
    return dsv4::Status::ok();
  });
  if (!st) {
    fmt::print(stderr, "error: {}\n", st.to_string());
    return 1;
  }
  return 0;
}
