#include "dsv4/format/gguf.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "dsv4/core/utf8.h"

namespace dsv4 {

const char* gguf_type_name(GgufType t) {
  switch (t) {
    case GgufType::kU8: return "u8";
    case GgufType::kI8: return "i8";
    case GgufType::kU16: return "u16";
    case GgufType::kI16: return "i16";
    case GgufType::kU32: return "u32";
    case GgufType::kI32: return "i32";
    case GgufType::kF32: return "f32";
    case GgufType::kBool: return "bool";
    case GgufType::kString: return "string";
    case GgufType::kArray: return "arr";
    case GgufType::kU64: return "u64";
    case GgufType::kI64: return "i64";
    case GgufType::kF64: return "f64";
  }
  return "?";
}

namespace {

// Bytes of one fixed-size scalar, or 0 for string/array/unknown.
uint64_t scalar_size(GgufType t) {
  switch (t) {
    case GgufType::kU8:
    case GgufType::kI8:
    case GgufType::kBool: return 1;
    case GgufType::kU16:
    case GgufType::kI16: return 2;
    case GgufType::kU32:
    case GgufType::kI32:
    case GgufType::kF32: return 4;
    case GgufType::kU64:
    case GgufType::kI64:
    case GgufType::kF64: return 8;
    default: return 0;
  }
}

bool is_known_type(uint32_t t) { return t <= static_cast<uint32_t>(GgufType::kF64); }

bool is_int_type(GgufType t) {
  switch (t) {
    case GgufType::kU8:
    case GgufType::kI8:
    case GgufType::kU16:
    case GgufType::kI16:
    case GgufType::kU32:
    case GgufType::kI32:
    case GgufType::kU64:
    case GgufType::kI64: return true;
    default: return false;
  }
}

template <class T>
T load_le(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Decodes a fixed-size scalar at p into (u, i, f). Integers are stored in u (unsigned types) or i.
void decode_scalar(GgufType t, const uint8_t* p, uint64_t& u, int64_t& i, double& f) {
  switch (t) {
    case GgufType::kU8: u = load_le<uint8_t>(p); break;
    case GgufType::kBool: u = load_le<uint8_t>(p); break;
    case GgufType::kI8: i = load_le<int8_t>(p); break;
    case GgufType::kU16: u = load_le<uint16_t>(p); break;
    case GgufType::kI16: i = load_le<int16_t>(p); break;
    case GgufType::kU32: u = load_le<uint32_t>(p); break;
    case GgufType::kI32: i = load_le<int32_t>(p); break;
    case GgufType::kU64: u = load_le<uint64_t>(p); break;
    case GgufType::kI64: i = load_le<int64_t>(p); break;
    case GgufType::kF32: f = load_le<float>(p); break;
    case GgufType::kF64: f = load_le<double>(p); break;
    default: break;
  }
}

bool is_unsigned(GgufType t) {
  return t == GgufType::kU8 || t == GgufType::kU16 || t == GgufType::kU32 || t == GgufType::kU64;
}

}  // namespace

// ---- GgufValue ----------------------------------------------------------------------------------

std::optional<uint64_t> GgufValue::as_u64() const {
  if (!is_int_type(type_)) return std::nullopt;
  if (is_unsigned(type_)) return u_;
  if (i_ < 0) return std::nullopt;
  return static_cast<uint64_t>(i_);
}

std::optional<int64_t> GgufValue::as_i64() const {
  if (!is_int_type(type_)) return std::nullopt;
  if (!is_unsigned(type_)) return i_;
  if (u_ > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
  return static_cast<int64_t>(u_);
}

std::optional<double> GgufValue::as_f64() const {
  if (type_ != GgufType::kF32 && type_ != GgufType::kF64) return std::nullopt;
  return f_;
}

std::optional<bool> GgufValue::as_bool() const {
  if (type_ != GgufType::kBool) return std::nullopt;
  return u_ != 0;
}

std::optional<std::string_view> GgufValue::as_string() const {
  if (type_ != GgufType::kString) return std::nullopt;
  return std::string_view(reinterpret_cast<const char*>(raw_.data()), raw_.size());
}

std::optional<std::vector<int64_t>> GgufValue::as_i64_array() const {
  if (type_ != GgufType::kArray || !is_int_type(elem_type_)) return std::nullopt;
  const uint64_t es = scalar_size(elem_type_);
  std::vector<int64_t> out;
  out.reserve(count_);
  for (uint64_t k = 0; k < count_; ++k) {
    uint64_t u = 0;
    int64_t i = 0;
    double f = 0;
    decode_scalar(elem_type_, raw_.data() + k * es, u, i, f);
    if (is_unsigned(elem_type_)) {
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
      out.push_back(static_cast<int64_t>(u));
    } else {
      out.push_back(i);
    }
  }
  return out;
}

std::optional<std::vector<double>> GgufValue::as_f64_array() const {
  if (type_ != GgufType::kArray) return std::nullopt;
  if (elem_type_ != GgufType::kF32 && elem_type_ != GgufType::kF64) return std::nullopt;
  const uint64_t es = scalar_size(elem_type_);
  std::vector<double> out;
  out.reserve(count_);
  for (uint64_t k = 0; k < count_; ++k) {
    uint64_t u = 0;
    int64_t i = 0;
    double f = 0;
    decode_scalar(elem_type_, raw_.data() + k * es, u, i, f);
    out.push_back(f);
  }
  return out;
}

std::optional<std::vector<std::string_view>> GgufValue::as_string_array() const {
  if (type_ != GgufType::kArray || elem_type_ != GgufType::kString) return std::nullopt;
  std::vector<std::string_view> out;
  out.reserve(count_);
  // The parser validated every length against the payload, so this walk stays in bounds.
  size_t pos = 0;
  for (uint64_t k = 0; k < count_; ++k) {
    const uint64_t len = load_le<uint64_t>(raw_.data() + pos);
    pos += 8;
    out.emplace_back(reinterpret_cast<const char*>(raw_.data() + pos), static_cast<size_t>(len));
    pos += static_cast<size_t>(len);
  }
  return out;
}

std::string GgufValue::type_string() const {
  if (type_ != GgufType::kArray) return gguf_type_name(type_);
  return std::string("arr[") + gguf_type_name(elem_type_) + "," + std::to_string(count_) + "]";
}

// ---- Parser -------------------------------------------------------------------------------------

class GgufParser {
 public:
  GgufParser(std::span<const uint8_t> bytes, GgufParseOptions opts) : b_(bytes), opts_(opts) {}

  Status run(GgufFile& f);

 private:
  uint64_t remaining() const { return b_.size() - pos_; }

  Status truncated(uint64_t need) const {
    return Status(ErrorCode::kInvalidFile, "truncated at offset " + std::to_string(pos_) +
                                               " (need " + std::to_string(need) + " bytes, " +
                                               std::to_string(remaining()) + " left)");
  }

  template <class T>
  Status read(T& v) {
    if (remaining() < sizeof(T)) return truncated(sizeof(T));
    std::memcpy(&v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return Status::ok();
  }

  Status read_string(std::string_view& out, uint64_t max_len, const char* what) {
    uint64_t len = 0;
    const uint64_t at = pos_;
    DSV4_RETURN_IF_ERROR(read(len));
    if (len > max_len) {
      return Status(ErrorCode::kInvalidFile, std::string(what) + " at offset " +
                                                 std::to_string(at) + " has length " +
                                                 std::to_string(len) + " (limit " +
                                                 std::to_string(max_len) + ")");
    }
    if (len > remaining()) return truncated(len);
    out = std::string_view(reinterpret_cast<const char*>(b_.data() + pos_), len);
    pos_ += len;
    return Status::ok();
  }

  Status read_value(GgufValue& v, std::string_view key);
  Status size_tensor(GgufTensorInfo& t, const GgmlTypeTraits& type, const std::string& where);
  Status resolve_type_42(GgufFile& f, uint64_t data_size);

  std::span<const uint8_t> b_;
  GgufParseOptions opts_;
  uint64_t pos_ = 0;
};

Status GgufParser::read_value(GgufValue& v, std::string_view key) {
  uint32_t type = 0;
  const uint64_t type_at = pos_;
  DSV4_RETURN_IF_ERROR(read(type));
  if (!is_known_type(type)) {
    return Status(ErrorCode::kInvalidFile, "key '" + std::string(key) + "': unknown value type " +
                                               std::to_string(type) + " at offset " +
                                               std::to_string(type_at));
  }
  v.type_ = static_cast<GgufType>(type);
  if (v.type_ == GgufType::kString) {
    std::string_view s;
    DSV4_RETURN_IF_ERROR(read_string(s, GgufLimits::kMaxStringBytes, "string value"));
    v.raw_ = {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
    return Status::ok();
  }
  if (v.type_ != GgufType::kArray) {
    const uint64_t sz = scalar_size(v.type_);
    if (remaining() < sz) return truncated(sz);
    decode_scalar(v.type_, b_.data() + pos_, v.u_, v.i_, v.f_);
    pos_ += sz;
    if (v.type_ == GgufType::kBool && v.u_ > 1) {
      return Status(ErrorCode::kInvalidFile,
                    "key '" + std::string(key) + "': bool value " + std::to_string(v.u_));
    }
    return Status::ok();
  }
  uint32_t et = 0;
  DSV4_RETURN_IF_ERROR(read(et));
  if (!is_known_type(et)) {
    return Status(ErrorCode::kInvalidFile,
                  "key '" + std::string(key) + "': unknown array element type " + std::to_string(et));
  }
  v.elem_type_ = static_cast<GgufType>(et);
  if (v.elem_type_ == GgufType::kArray) {
    return Status(ErrorCode::kInvalidFile,
                  "key '" + std::string(key) + "': arrays of arrays are not supported");
  }
  DSV4_RETURN_IF_ERROR(read(v.count_));
  if (v.count_ > GgufLimits::kMaxArrayElements) {
    return Status(ErrorCode::kInvalidFile, "key '" + std::string(key) + "': array of " +
                                               std::to_string(v.count_) + " elements (limit " +
                                               std::to_string(GgufLimits::kMaxArrayElements) + ")");
  }
  const uint64_t start = pos_;
  if (v.elem_type_ == GgufType::kString) {
    // Each element needs at least its 8-byte length: check before walking.
    if (v.count_ > remaining() / 8) return truncated(v.count_ * 8);
    for (uint64_t k = 0; k < v.count_; ++k) {
      std::string_view s;
      DSV4_RETURN_IF_ERROR(read_string(s, GgufLimits::kMaxStringBytes, "array string"));
    }
  } else {
    const uint64_t es = scalar_size(v.elem_type_);
    if (v.count_ > remaining() / es) return truncated(v.count_ * es);
    pos_ += v.count_ * es;
    if (v.elem_type_ == GgufType::kBool) {
      for (uint64_t k = 0; k < v.count_; ++k) {
        if (b_[start + k] > 1) {
          return Status(ErrorCode::kInvalidFile,
                        "key '" + std::string(key) + "': bool array element " + std::to_string(k) +
                            " is " + std::to_string(b_[start + k]));
        }
      }
    }
  }
  v.raw_ = b_.subspan(start, pos_ - start);
  return Status::ok();
}

// Sets t.type and t.n_bytes for `type`; the element count was overflow-checked already.
Status GgufParser::size_tensor(GgufTensorInfo& t, const GgmlTypeTraits& type,
                               const std::string& where) {
  const auto row = ggml_row_bytes(type, t.ne[0]);
  if (!row) {
    return Status(ErrorCode::kInvalidFile, where + ": ne[0] = " + std::to_string(t.ne[0]) +
                                               " is not a multiple of the " +
                                               std::string(type.name) + " block size " +
                                               std::to_string(type.block_size));
  }
  const uint64_t rows = static_cast<uint64_t>(t.n_elements() / t.ne[0]);
  uint64_t end = 0;
  if (__builtin_mul_overflow(*row, rows, &t.n_bytes) ||
      __builtin_add_overflow(t.offset, t.n_bytes, &end)) {
    return Status(ErrorCode::kInvalidFile, where + ": byte size overflows");
  }
  t.type = &type;
  return Status::ok();
}

// Type id 42 means Q2_0 upstream and F8_E4M3_B128 in the nsparks fork, whose files say
// general.file_type = 41 — which upstream also uses (MOSTLY_Q2_0). So 42 is F8_E4M3_B128 only
// when the file proves it: file type 41 and every id-42 tensor occupying 129 bytes per 128
// elements (its offset to the next tensor, or to the end of the data, minus alignment padding).
// Otherwise it is Q2_0 if every id-42 tensor fits Q2_0's 18 bytes per 64, else an error.
Status GgufParser::resolve_type_42(GgufFile& f, uint64_t data_size) {
  std::vector<size_t> ids;
  for (size_t k = 0; k < f.tensors_.size(); ++k) {
    if (f.tensors_[k].type_id == kGgmlTypeId42) ids.push_back(k);
  }
  if (ids.empty()) return Status::ok();
  // Byte span of each tensor: distance to the next offset (or to the end of the data).
  std::vector<size_t> order(f.tensors_.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return f.tensors_[a].offset < f.tensors_[b].offset; });
  std::vector<uint64_t> span(f.tensors_.size(), 0);
  std::vector<bool> known(f.tensors_.size(), false);
  for (size_t k = 0; k < order.size(); ++k) {
    const uint64_t off = f.tensors_[order[k]].offset;
    if (k + 1 < order.size()) {
      span[order[k]] = f.tensors_[order[k + 1]].offset - off;
      known[order[k]] = true;
    } else if (data_size > off) {
      span[order[k]] = data_size - off;
      known[order[k]] = true;
    }
  }
  std::vector<Id42Tensor> evidence;
  for (size_t k : ids) {
    if (known[k]) evidence.push_back({f.tensors_[k].name, f.tensors_[k].n_elements(), span[k]});
  }
  if (evidence.empty()) {
    return Status(ErrorCode::kInvalidFile,
                  "tensor '" + std::string(f.tensors_[ids.front()].name) +
                      "': ggml type 42 (Q2_0 or F8_E4M3_B128) cannot be resolved without the data "
                      "section");
  }
  const GgufValue* ft = f.find("general.file_type");
  std::optional<uint32_t> file_type;
  if (ft != nullptr && ft->as_u64() && *ft->as_u64() <= 0xffffffffu) {
    file_type = static_cast<uint32_t>(*ft->as_u64());
  }
  auto chosen = resolve_type_id_42(file_type, evidence, f.alignment_);
  if (!chosen) return chosen.status();
  for (size_t k : ids) {
    DSV4_RETURN_IF_ERROR(size_tensor(f.tensors_[k], **chosen, "tensor '" +
                                                                 std::string(f.tensors_[k].name) + "'"));
  }
  return Status::ok();
}

Status GgufParser::run(GgufFile& f) {
  if (b_.size() < 4) return truncated(4);
  if (std::memcmp(b_.data(), "GGUF", 4) != 0) {
    return Status(ErrorCode::kInvalidFile, "bad magic (not a GGUF file)");
  }
  pos_ = 4;
  DSV4_RETURN_IF_ERROR(read(f.version_));
  if (f.version_ != 2 && f.version_ != 3) {
    return Status(ErrorCode::kUnsupported,
                  "unsupported GGUF version " + std::to_string(f.version_) + " (need 2 or 3)");
  }
  uint64_t n_tensors = 0, n_kv = 0;
  DSV4_RETURN_IF_ERROR(read(n_tensors));
  DSV4_RETURN_IF_ERROR(read(n_kv));
  // Minimum record sizes: KV = key length (8) + type (4) + 1 byte; tensor info = name length (8)
  // + n_dims (4) + one dim (8) + type (4) + offset (8).
  if (n_kv > remaining() / 13) {
    return Status(ErrorCode::kInvalidFile, "n_kv = " + std::to_string(n_kv) +
                                               " cannot fit in the " +
                                               std::to_string(remaining()) + " bytes left");
  }
  if (n_tensors > remaining() / 32) {
    return Status(ErrorCode::kInvalidFile, "n_tensors = " + std::to_string(n_tensors) +
                                               " cannot fit in the " +
                                               std::to_string(remaining()) + " bytes left");
  }

  f.kvs_.reserve(n_kv);
  for (uint64_t k = 0; k < n_kv; ++k) {
    GgufKv kv;
    const uint64_t at = pos_;
    DSV4_RETURN_IF_ERROR(read_string(kv.key, GgufLimits::kMaxKeyBytes, "metadata key"));
    if (kv.key.empty()) {
      return Status(ErrorCode::kInvalidFile, "empty metadata key at offset " + std::to_string(at));
    }
    if (!is_valid_utf8(kv.key)) {
      return Status(ErrorCode::kInvalidFile,
                    "metadata key at offset " + std::to_string(at) + " is not valid UTF-8");
    }
    if (f.kv_index_.count(kv.key) != 0) {
      return Status(ErrorCode::kInvalidFile, "duplicate metadata key '" + std::string(kv.key) + "'");
    }
    DSV4_RETURN_IF_ERROR(read_value(kv.value, kv.key));
    f.kv_index_.emplace(kv.key, f.kvs_.size());
    f.kvs_.push_back(kv);
  }

  if (const GgufValue* a = f.find("general.alignment")) {
    if (a->type() != GgufType::kU32) {
      return Status(ErrorCode::kInvalidFile,
                    "key 'general.alignment': expected u32, got " + a->type_string());
    }
    const uint64_t al = *a->as_u64();
    if (al == 0 || (al & (al - 1)) != 0 || al > (1u << 20)) {
      return Status(ErrorCode::kInvalidFile, "key 'general.alignment': " + std::to_string(al) +
                                                 " is not a power of two in [1, 2^20]");
    }
    f.alignment_ = al;
  }

  f.tensors_.reserve(n_tensors);
  for (uint64_t k = 0; k < n_tensors; ++k) {
    GgufTensorInfo t;
    const uint64_t at = pos_;
    DSV4_RETURN_IF_ERROR(read_string(t.name, GgufLimits::kMaxTensorNameBytes, "tensor name"));
    const std::string where = "tensor '" + std::string(t.name) + "' (info at offset " +
                              std::to_string(at) + ")";
    if (t.name.empty() || !is_valid_utf8(t.name)) {
      return Status(ErrorCode::kInvalidFile, where + ": empty or non-UTF-8 name");
    }
    if (f.tensor_index_.count(t.name) != 0) {
      return Status(ErrorCode::kInvalidFile, "duplicate tensor name '" + std::string(t.name) + "'");
    }
    DSV4_RETURN_IF_ERROR(read(t.n_dims));
    if (t.n_dims == 0 || t.n_dims > GgufLimits::kMaxDims) {
      return Status(ErrorCode::kInvalidFile,
                    where + ": n_dims = " + std::to_string(t.n_dims) + " (need 1..4)");
    }
    uint64_t n_el = 1;
    for (uint32_t d = 0; d < t.n_dims; ++d) {
      uint64_t ne = 0;
      DSV4_RETURN_IF_ERROR(read(ne));
      if (ne == 0 || ne > static_cast<uint64_t>(GgufLimits::kMaxDim)) {
        return Status(ErrorCode::kInvalidFile, where + ": dimension " + std::to_string(d) + " = " +
                                                   std::to_string(ne) + " (need 1..2^40)");
      }
      t.ne[d] = static_cast<int64_t>(ne);
      if (__builtin_mul_overflow(n_el, ne, &n_el) ||
          n_el > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Status(ErrorCode::kInvalidFile, where + ": element count overflows");
      }
    }
    DSV4_RETURN_IF_ERROR(read(t.type_id));
    if (t.type_id != kGgmlTypeId42) {  // 42 is resolved once the whole table is known
      t.type = ggml_type_traits(t.type_id);
      if (t.type == nullptr) {
        return Status(ErrorCode::kUnsupported,
                      where + ": unknown ggml type id " + std::to_string(t.type_id));
      }
      DSV4_RETURN_IF_ERROR(size_tensor(t, *t.type, where));
    }
    DSV4_RETURN_IF_ERROR(read(t.offset));
    if (t.offset % f.alignment_ != 0) {
      return Status(ErrorCode::kInvalidFile, where + ": data offset " + std::to_string(t.offset) +
                                                 " is not a multiple of the alignment " +
                                                 std::to_string(f.alignment_));
    }
    uint64_t end = 0;
    if (__builtin_add_overflow(t.offset, t.n_bytes, &end)) {
      return Status(ErrorCode::kInvalidFile, where + ": offset + size overflows");
    }
    f.tensor_index_.emplace(t.name, f.tensors_.size());
    f.tensors_.push_back(t);
  }

  // Data section starts at the next multiple of the alignment.
  const uint64_t pad = (f.alignment_ - pos_ % f.alignment_) % f.alignment_;
  f.data_offset_ = pos_ + pad;
  const uint64_t data_size = b_.size() > f.data_offset_ ? b_.size() - f.data_offset_ : 0;
  DSV4_RETURN_IF_ERROR(resolve_type_42(f, data_size));
  if (opts_.require_data && !f.tensors_.empty() && f.data_offset_ > b_.size()) {
    return Status(ErrorCode::kInvalidFile, "truncated in the padding before the data section (at " +
                                               std::to_string(b_.size()) + ", need " +
                                               std::to_string(f.data_offset_) + ")");
  }

  // Overlap check between non-empty tensors (G9), in offset order.
  std::vector<size_t> order(f.tensors_.size());
  for (size_t k = 0; k < order.size(); ++k) order[k] = k;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    return f.tensors_[a].offset < f.tensors_[b].offset;
  });
  for (size_t k = 0; k + 1 < order.size(); ++k) {
    const auto& a = f.tensors_[order[k]];
    const auto& b = f.tensors_[order[k + 1]];
    if (a.offset + a.n_bytes > b.offset) {
      return Status(ErrorCode::kInvalidFile, "tensors '" + std::string(a.name) + "' and '" +
                                                 std::string(b.name) + "' overlap in the data section");
    }
  }

  for (auto& t : f.tensors_) {
    const uint64_t end = t.offset + t.n_bytes;
    if (opts_.require_data) {
      if (end > data_size) {
        return Status(ErrorCode::kInvalidFile,
                      "tensor '" + std::string(t.name) + "' [" + std::to_string(t.offset) + ", " +
                          std::to_string(end) + ") exceeds the data section (size " +
                          std::to_string(data_size) + ")");
      }
      t.data = b_.subspan(f.data_offset_ + t.offset, t.n_bytes);
    }
  }
  return Status::ok();
}

// ---- GgufFile -----------------------------------------------------------------------------------

Result<GgufFile> GgufFile::parse(std::span<const uint8_t> bytes, GgufParseOptions opts) {
  GgufFile f;
  GgufParser p(bytes, opts);
  Status st = p.run(f);
  if (!st.is_ok()) return st;
  return f;
}

Result<GgufFile> GgufFile::open(const std::string& path, GgufParseOptions opts) {
  auto mf = MappedFile::open(path, opts.map);
  if (!mf) return mf.status();
  auto shared = std::make_shared<MappedFile>(std::move(mf).value());
  GgufFile f;
  GgufParser p(shared->data(), opts);
  Status st = p.run(f);
  if (!st.is_ok()) return Status(st.code(), path + ": " + st.message());
  f.file_ = std::move(shared);
  return f;
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = kv_index_.find(key);
  return it == kv_index_.end() ? nullptr : &kvs_[it->second].value;
}

const GgufTensorInfo* GgufFile::find_tensor(std::string_view name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

namespace {
Status key_error(std::string_view key, const char* want, const GgufValue& v) {
  return Status(ErrorCode::kInvalidFile,
                "key '" + std::string(key) + "': expected " + want + ", got " + v.type_string());
}
Status key_missing(std::string_view key) {
  return Status(ErrorCode::kNotFound, "missing metadata key '" + std::string(key) + "'");
}
}  // namespace

Result<uint64_t> GgufFile::get_u64(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return key_missing(key);
  auto u = v->as_u64();
  if (!u) return key_error(key, "a non-negative integer", *v);
  return *u;
}

Result<double> GgufFile::get_f64(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return key_missing(key);
  auto d = v->as_f64();
  if (!d) return key_error(key, "a float", *v);
  return *d;
}

Result<std::string_view> GgufFile::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return key_missing(key);
  auto s = v->as_string();
  if (!s) return key_error(key, "a string", *v);
  return *s;
}

}  // namespace dsv4
