#include "dsv4/format/safetensors.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "dsv4/core/utf8.h"

namespace dsv4 {
namespace {

constexpr uint64_t kMaxHeader = 100ull << 20;

struct DtypeInfo {
  const char* name;
  StDtype dtype;
  size_t size;
};
constexpr DtypeInfo kDtypes[] = {
    {"F64", StDtype::kF64, 8},       {"F32", StDtype::kF32, 4},       {"F16", StDtype::kF16, 2},
    {"BF16", StDtype::kBF16, 2},     {"I64", StDtype::kI64, 8},       {"I32", StDtype::kI32, 4},
    {"I16", StDtype::kI16, 2},       {"I8", StDtype::kI8, 1},         {"U8", StDtype::kU8, 1},
    {"BOOL", StDtype::kBool, 1},     {"F8_E4M3", StDtype::kF8E4M3, 1}, {"F8_E5M2", StDtype::kF8E5M2, 1},
    {"F8_E8M0", StDtype::kF8E8M0, 1},
};

}  // namespace

const char* st_dtype_name(StDtype t) {
  for (const auto& d : kDtypes) {
    if (d.dtype == t) return d.name;
  }
  return "?";
}

size_t st_dtype_size(StDtype t) {
  for (const auto& d : kDtypes) {
    if (d.dtype == t) return d.size;
  }
  return 0;
}

int64_t StTensor::n_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // checked at parse time
  return n;
}

Result<SafetensorsFile> SafetensorsFile::parse(std::span<const uint8_t> b, const std::string& name) {
  auto bad = [&](const std::string& m) { return Status(ErrorCode::kInvalidFile, name + ": " + m); };
  if (b.size() < 8) return bad("truncated: " + std::to_string(b.size()) + " bytes, need 8");
  uint64_t n = 0;
  std::memcpy(&n, b.data(), 8);
  if (n > kMaxHeader) return bad("header length " + std::to_string(n) + " exceeds 100 MiB");
  if (n > b.size() - 8) {
    return bad("header length " + std::to_string(n) + " exceeds the " +
               std::to_string(b.size() - 8) + " bytes after it");
  }
  const std::string_view text(reinterpret_cast<const char*>(b.data() + 8), n);
  if (!is_valid_utf8(text)) return bad("header is not valid UTF-8");
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return bad("header is not a JSON object");
  const uint64_t data_size = b.size() - 8 - n;
  const auto data = b.subspan(8 + n);

  SafetensorsFile f;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& key = it.key();
    const nlohmann::json& v = it.value();
    if (key == "__metadata__") {
      if (!v.is_object()) return bad("__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string()) return bad("__metadata__." + m.key() + " is not a string");
        f.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor '" + key + "'";
    if (!v.is_object() || !v.contains("dtype") || !v.contains("shape") || !v.contains("data_offsets")) {
      return bad(where + ": needs dtype, shape and data_offsets");
    }
    StTensor t;
    t.name = key;
    const nlohmann::json& dt = v["dtype"];
    const DtypeInfo* info = nullptr;
    if (dt.is_string()) {
      for (const auto& d : kDtypes) {
        if (dt.get<std::string>() == d.name) info = &d;
      }
    }
    if (info == nullptr) return bad(where + ": unknown dtype " + dt.dump());
    t.dtype = info->dtype;
    const nlohmann::json& sh = v["shape"];
    if (!sh.is_array() || sh.size() > 8) return bad(where + ": shape must be an array of ≤ 8 dims");
    uint64_t count = 1;
    for (const auto& d : sh) {
      if (!d.is_number_unsigned()) return bad(where + ": shape entry " + d.dump() + " is not a count");
      const uint64_t x = d.get<uint64_t>();
      if (__builtin_mul_overflow(count, x, &count) || count > (uint64_t{1} << 50)) {
        return bad(where + ": element count overflows");
      }
      t.shape.push_back(static_cast<int64_t>(x));
    }
    const nlohmann::json& off = v["data_offsets"];
    if (!off.is_array() || off.size() != 2 || !off[0].is_number_unsigned() ||
        !off[1].is_number_unsigned()) {
      return bad(where + ": data_offsets must be [begin, end]");
    }
    t.begin = off[0].get<uint64_t>();
    t.end = off[1].get<uint64_t>();
    uint64_t bytes = 0;
    if (__builtin_mul_overflow(count, info->size, &bytes)) return bad(where + ": byte size overflows");
    if (t.end < t.begin || t.end - t.begin != bytes) {
      return bad(where + ": data_offsets [" + std::to_string(t.begin) + ", " +
                 std::to_string(t.end) + ") do not hold " + std::to_string(count) + " x " +
                 info->name);
    }
    if (t.end > data_size) {
      return bad(where + ": data_offsets end " + std::to_string(t.end) +
                 " exceeds the data section (" + std::to_string(data_size) + " bytes)");
    }
    t.data = data.subspan(t.begin, bytes);
    if (!f.index_.emplace(key, f.tensors_.size()).second) return bad("duplicate " + where);
    f.tensors_.push_back(std::move(t));
  }
  // The tensors must tile the data section: sorted, no gap, no overlap, nothing left over.
  std::vector<const StTensor*> order;
  for (const auto& t : f.tensors_) order.push_back(&t);
  std::sort(order.begin(), order.end(), [](const StTensor* a, const StTensor* c) {
    return a->begin != c->begin ? a->begin < c->begin : a->end < c->end;
  });
  uint64_t at = 0;
  for (const StTensor* t : order) {
    if (t->begin != at) {
      return bad("tensor '" + t->name + "' starts at " + std::to_string(t->begin) + ", expected " +
                 std::to_string(at) + (t->begin < at ? " (overlap)" : " (gap)"));
    }
    at = t->end;
  }
  if (at != data_size) {
    return bad("tensors end at " + std::to_string(at) + " but the data section has " +
               std::to_string(data_size) + " bytes");
  }
  return f;
}

Result<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  auto mf = MappedFile::open(path);
  if (!mf) return mf.status();
  auto shared = std::make_shared<MappedFile>(std::move(mf).value());
  auto f = parse(shared->data(), path);
  if (!f) return f.status();
  SafetensorsFile out = std::move(f).value();
  out.file_ = std::move(shared);
  return out;
}

const StTensor* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace dsv4
