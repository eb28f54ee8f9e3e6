#include "dsv4/format/gguf_writer.h"

#include <cstdio>
#include <cstring>
#include <memory>

namespace dsv4 {
namespace {

void put(std::vector<uint8_t>& out, const void* p, size_t n) {
  // resize + memcpy rather than insert(): GCC 12 reports a false -Wstringop-overflow on the latter
  const size_t at = out.size();
  out.resize(at + n);
  if (n != 0) std::memcpy(out.data() + at, p, n);
}
template <class T>
void put_le(std::vector<uint8_t>& out, T v) {
  put(out, &v, sizeof v);
}
void put_str(std::vector<uint8_t>& out, std::string_view s) {
  put_le<uint64_t>(out, s.size());
  put(out, s.data(), s.size());
}

}  // namespace

void GgufWriter::key(std::string_view k, GgufType t) {
  put_str(kv_bytes_, k);
  put_le<uint32_t>(kv_bytes_, static_cast<uint32_t>(t));
  ++n_kv_;
}

void GgufWriter::scalar(std::string_view k, GgufType t, const void* v, size_t n) {
  key(k, t);
  put(kv_bytes_, v, n);
}

void GgufWriter::array_header(std::string_view k, GgufType elem, uint64_t count) {
  key(k, GgufType::kArray);
  put_le<uint32_t>(kv_bytes_, static_cast<uint32_t>(elem));
  put_le<uint64_t>(kv_bytes_, count);
}

void GgufWriter::add_string(std::string_view k, std::string_view v) {
  key(k, GgufType::kString);
  put_str(kv_bytes_, v);
}

void GgufWriter::add_array_i32(std::string_view k, std::span<const int32_t> v) {
  array_header(k, GgufType::kI32, v.size());
  put(kv_bytes_, v.data(), v.size_bytes());
}

void GgufWriter::add_array_u32(std::string_view k, std::span<const uint32_t> v) {
  array_header(k, GgufType::kU32, v.size());
  put(kv_bytes_, v.data(), v.size_bytes());
}

void GgufWriter::add_array_f32(std::string_view k, std::span<const float> v) {
  array_header(k, GgufType::kF32, v.size());
  put(kv_bytes_, v.data(), v.size_bytes());
}

void GgufWriter::add_array_string(std::string_view k, std::span<const std::string> v) {
  array_header(k, GgufType::kString, v.size());
  for (const auto& s : v) put_str(kv_bytes_, s);
}

void GgufWriter::add_value(std::string_view k, const GgufValue& v) {
  key(k, v.type_);
  switch (v.type_) {
    case GgufType::kString: put_str(kv_bytes_, *v.as_string()); return;
    case GgufType::kArray:
      put_le<uint32_t>(kv_bytes_, static_cast<uint32_t>(v.elem_type_));
      put_le<uint64_t>(kv_bytes_, v.count_);
      put(kv_bytes_, v.raw_.data(), v.raw_.size());  // the payload exactly as read
      return;
    case GgufType::kU8: case GgufType::kBool: put_le<uint8_t>(kv_bytes_, static_cast<uint8_t>(v.u_)); return;
    case GgufType::kI8: put_le<int8_t>(kv_bytes_, static_cast<int8_t>(v.i_)); return;
    case GgufType::kU16: put_le<uint16_t>(kv_bytes_, static_cast<uint16_t>(v.u_)); return;
    case GgufType::kI16: put_le<int16_t>(kv_bytes_, static_cast<int16_t>(v.i_)); return;
    case GgufType::kU32: put_le<uint32_t>(kv_bytes_, static_cast<uint32_t>(v.u_)); return;
    case GgufType::kI32: put_le<int32_t>(kv_bytes_, static_cast<int32_t>(v.i_)); return;
    case GgufType::kU64: put_le<uint64_t>(kv_bytes_, v.u_); return;
    case GgufType::kI64: put_le<int64_t>(kv_bytes_, v.i_); return;
    case GgufType::kF32: put_le<float>(kv_bytes_, static_cast<float>(v.f_)); return;
    case GgufType::kF64: put_le<double>(kv_bytes_, v.f_); return;
  }
}

void GgufWriter::add_tensor(std::string_view name, uint32_t type_id, std::span<const int64_t> ne,
                            std::span<const uint8_t> data) {
  tensors_.push_back(Tensor{std::string(name), type_id, std::vector<int64_t>(ne.begin(), ne.end()),
                            std::vector<uint8_t>(data.begin(), data.end()), data.size()});
}

void GgufWriter::add_tensor_info(std::string_view name, uint32_t type_id,
                                 std::span<const int64_t> ne, uint64_t n_bytes) {
  tensors_.push_back(Tensor{std::string(name), type_id, std::vector<int64_t>(ne.begin(), ne.end()),
                            {}, n_bytes});
}

std::vector<uint8_t> GgufWriter::header() const {
  std::vector<uint8_t> out;
  put(out, "GGUF", 4);
  put_le<uint32_t>(out, 3);
  put_le<uint64_t>(out, tensors_.size());
  put_le<uint64_t>(out, n_kv_);
  put(out, kv_bytes_.data(), kv_bytes_.size());
  const auto align_up = [this](uint64_t x) { return (x + alignment_ - 1) / alignment_ * alignment_; };
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    put_str(out, t.name);
    put_le<uint32_t>(out, static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) put_le<uint64_t>(out, static_cast<uint64_t>(d));
    put_le<uint32_t>(out, t.type_id);
    put_le<uint64_t>(out, offset);
    offset = align_up(offset + t.n_bytes);
  }
  out.resize(align_up(out.size()), 0);
  return out;
}

std::vector<uint8_t> GgufWriter::bytes() const {
  const auto align_up = [this](uint64_t x) { return (x + alignment_ - 1) / alignment_ * alignment_; };
  std::vector<uint8_t> out = header();
  for (const auto& t : tensors_) {
    put(out, t.data.data(), t.data.size());
    out.resize(align_up(out.size()), 0);
  }
  return out;
}

Status GgufWriter::stream(const Put& put, const Fill& fill, const std::string& what) const {
  const std::vector<uint8_t> h = header();
  if (!put(h.data(), h.size())) return Status(ErrorCode::kIo, "short write to '" + what + "'");
  std::vector<uint8_t> buf;
  const std::vector<uint8_t> zeros(alignment_, 0);
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const Tensor& t = tensors_[i];
    std::span<const uint8_t> bytes = t.data;
    if (t.data.size() != t.n_bytes) {
      buf.assign(t.n_bytes, 0);
      DSV4_RETURN_IF_ERROR(fill(i, buf));
      bytes = buf;
    }
    const size_t pad = (alignment_ - t.n_bytes % alignment_) % alignment_;
    if (!put(bytes.data(), bytes.size()) || !put(zeros.data(), pad)) {
      return Status(ErrorCode::kIo, "short write to '" + what + "' (disk full?)");
    }
  }
  return Status::ok();
}

Status GgufWriter::write_streaming(const std::string& path, const Fill& fill) const {
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (!f) return Status(ErrorCode::kIo, "cannot create '" + path + "'");
  DSV4_RETURN_IF_ERROR(stream([&](const void* p, size_t n) { return std::fwrite(p, 1, n, f.get()) == n; },
                              fill, path));
  if (std::fflush(f.get()) != 0) return Status(ErrorCode::kIo, "cannot flush '" + path + "'");
  return Status::ok();
}

Result<std::vector<uint8_t>> GgufWriter::bytes_streaming(const Fill& fill) const {
  std::vector<uint8_t> out;
  size_t total = header().size();
  for (const Tensor& t : tensors_) total += t.n_bytes + (alignment_ - t.n_bytes % alignment_) % alignment_;
  out.reserve(total);  // one allocation: the whole model, no growth copies
  DSV4_RETURN_IF_ERROR(stream(
      [&](const void* p, size_t n) {
        const auto* b = static_cast<const uint8_t*>(p);
        out.insert(out.end(), b, b + n);
        return true;
      },
      fill, "memory"));
  return out;
}

Status GgufWriter::write(const std::string& path) const {
  const std::vector<uint8_t> b = bytes();
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (!f) return Status(ErrorCode::kIo, "cannot create '" + path + "'");
  if (std::fwrite(b.data(), 1, b.size(), f.get()) != b.size()) {
    return Status(ErrorCode::kIo, "short write to '" + path + "'");
  }
  if (std::fflush(f.get()) != 0) return Status(ErrorCode::kIo, "cannot flush '" + path + "'");
  return Status::ok();
}

}  // namespace dsv4
