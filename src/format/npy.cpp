#include "dsv4/format/npy.h"

#include <cstdio>
#include <cstring>
#include <memory>

#include "dsv4/core/mapped_file.h"

namespace dsv4 {
namespace {

size_t descr_size(const std::string& d) {
  if (d == "<f4" || d == "<i4" || d == "<u4") return 4;
  if (d == "<f8" || d == "<i8") return 8;
  if (d == "|u1") return 1;
  if (d == "<u2") return 2;
  return 0;
}

// Returns the value of `key` in a python dict literal header, e.g. 'descr': '<f4'.
bool header_field(const std::string& h, const std::string& key, std::string& out) {
  const std::string k = "'" + key + "':";
  size_t p = h.find(k);
  if (p == std::string::npos) return false;
  p += k.size();
  while (p < h.size() && h[p] == ' ') ++p;
  if (p >= h.size()) return false;
  if (h[p] == '\'') {
    size_t e = h.find('\'', p + 1);
    if (e == std::string::npos) return false;
    out = h.substr(p + 1, e - p - 1);
  } else if (h[p] == '(') {
    size_t e = h.find(')', p);
    if (e == std::string::npos) return false;
    out = h.substr(p + 1, e - p - 1);
  } else {
    size_t e = h.find_first_of(",}", p);
    if (e == std::string::npos) return false;
    out = h.substr(p, e - p);
  }
  return true;
}

}  // namespace

int64_t NpyArray::size() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

size_t NpyArray::item_size() const { return descr_size(descr); }

double NpyArray::as_f64(int64_t k) const {
  DSV4_CHECK(k >= 0 && k < size());
  const uint8_t* p = data.data() + static_cast<size_t>(k) * item_size();
  if (descr == "<f4") {
    float v;
    std::memcpy(&v, p, 4);
    return v;
  }
  if (descr == "<f8") {
    double v;
    std::memcpy(&v, p, 8);
    return v;
  }
  return static_cast<double>(as_i64(k));
}

int64_t NpyArray::as_i64(int64_t k) const {
  DSV4_CHECK(k >= 0 && k < size());
  const uint8_t* p = data.data() + static_cast<size_t>(k) * item_size();
  if (descr == "<i4") {
    int32_t v;
    std::memcpy(&v, p, 4);
    return v;
  }
  if (descr == "<i8") {
    int64_t v;
    std::memcpy(&v, p, 8);
    return v;
  }
  if (descr == "<u4") {
    uint32_t v;
    std::memcpy(&v, p, 4);
    return v;
  }
  if (descr == "<u2") {
    uint16_t v;
    std::memcpy(&v, p, 2);
    return v;
  }
  if (descr == "|u1") return p[0];
  return static_cast<int64_t>(as_f64(k));
}

Result<NpyArray> npy_parse(const uint8_t* b, size_t n, const std::string& name) {
  auto bad = [&](const std::string& m) { return Status(ErrorCode::kInvalidFile, name + ": " + m); };
  if (n < 10 || std::memcmp(b, "\x93NUMPY", 6) != 0) return bad("not a .npy file");
  const uint8_t major = b[6];
  size_t hlen = 0, hstart = 0;
  if (major == 1) {
    hlen = static_cast<size_t>(b[8]) | (static_cast<size_t>(b[9]) << 8);
    hstart = 10;
  } else if (major == 2 || major == 3) {
    if (n < 12) return bad("truncated header");
    uint32_t l;
    std::memcpy(&l, b + 8, 4);
    hlen = l;
    hstart = 12;
  } else {
    return Status(ErrorCode::kUnsupported, name + ": npy format version " + std::to_string(major));
  }
  if (hlen > n - hstart) return bad("truncated header");
  const std::string h(reinterpret_cast<const char*>(b + hstart), hlen);
  NpyArray a;
  std::string fortran, shape;
  if (!header_field(h, "descr", a.descr) || !header_field(h, "fortran_order", fortran) ||
      !header_field(h, "shape", shape)) {
    return bad("malformed header");
  }
  if (descr_size(a.descr) == 0) {
    return Status(ErrorCode::kUnsupported, name + ": dtype '" + a.descr + "'");
  }
  if (fortran != "False") return Status(ErrorCode::kUnsupported, name + ": Fortran order");
  size_t p = 0;
  uint64_t count = 1;
  while (p < shape.size()) {
    while (p < shape.size() && (shape[p] == ' ' || shape[p] == ',')) ++p;
    if (p >= shape.size()) break;
    size_t e = p;
    uint64_t d = 0;
    while (e < shape.size() && shape[e] >= '0' && shape[e] <= '9') {
      if (d > (uint64_t{1} << 40)) return bad("dimension too large");
      d = d * 10 + static_cast<uint64_t>(shape[e] - '0');
      ++e;
    }
    if (e == p) return bad("malformed shape '" + shape + "'");
    if (__builtin_mul_overflow(count, d, &count)) return bad("shape overflows");
    a.shape.push_back(static_cast<int64_t>(d));
    p = e;
  }
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(count, descr_size(a.descr), &bytes)) return bad("size overflows");
  const size_t data_at = hstart + hlen;
  if (bytes != n - data_at) {
    return bad("data has " + std::to_string(n - data_at) + " bytes, shape needs " +
               std::to_string(bytes));
  }
  a.data.assign(b + data_at, b + n);
  return a;
}

Result<NpyArray> npy_read(const std::string& path) {
  auto mf = MappedFile::open(path);
  if (!mf) return mf.status();
  return npy_parse(mf->data().data(), mf->size(), path);
}

Status npy_write_f32(const std::string& path, const std::vector<int64_t>& shape,
                     const float* data) {
  std::string sh;
  int64_t count = 1;
  for (int64_t d : shape) {
    sh += std::to_string(d) + ", ";
    count *= d;
  }
  if (shape.size() > 1) sh.resize(sh.size() - 1);  // "(2, 3)" rather than "(2, 3, )"
  if (shape.size() > 1) sh.pop_back();
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + sh + "), }";
  const size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header.push_back('\n');
  std::unique_ptr<FILE, int (*)(FILE*)> f(std::fopen(path.c_str(), "wb"), &std::fclose);
  if (!f) return Status(ErrorCode::kIo, "cannot create '" + path + "'");
  const uint8_t pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                           static_cast<uint8_t>(header.size() & 0xff),
                           static_cast<uint8_t>(header.size() >> 8)};
  bool ok = std::fwrite(pre, 1, 10, f.get()) == 10 &&
            std::fwrite(header.data(), 1, header.size(), f.get()) == header.size() &&
            std::fwrite(data, sizeof(float), static_cast<size_t>(count), f.get()) ==
                static_cast<size_t>(count);
  if (!ok) return Status(ErrorCode::kIo, "short write to '" + path + "'");
  return Status::ok();
}

}  // namespace dsv4
