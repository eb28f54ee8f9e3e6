// Streaming UTF-8 assembly and lossy replacement (U+FFFD per maximal invalid subpart).
#include <cstdint>
#include <string>
#include <string_view>

#include "dsv4/tokenizer/tokenizer.h"

namespace dsv4 {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";

// Classifies the sequence starting at p[0] (n ≥ 1 bytes available).
// Returns the length of a complete valid sequence (> 0), or −k when the first k bytes form a
// maximal invalid subpart, or 0 when the bytes so far are a valid but incomplete prefix.
int classify(const uint8_t* p, size_t n) {
  const uint8_t c = p[0];
  if (c < 0x80) return 1;
  int len = 0;
  uint8_t lo = 0x80, hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    if (c == 0xe0) lo = 0xa0;
    if (c == 0xed) hi = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    if (c == 0xf0) lo = 0x90;
    if (c == 0xf4) hi = 0x8f;
  } else {
    return -1;
  }
  for (int k = 1; k < len; ++k) {
    if (static_cast<size_t>(k) >= n) return 0;  // incomplete so far
    const uint8_t b = p[k];
    const uint8_t l = k == 1 ? lo : 0x80;
    const uint8_t h = k == 1 ? hi : 0xbf;
    if (b < l || b > h) return -k;
  }
  return len;
}

// Appends the decodable part of `bytes` to `out`; returns the number of bytes consumed (the rest
// is an incomplete tail, at most 3 bytes).
size_t convert(std::string_view bytes, std::string& out) {
  const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
  const size_t n = bytes.size();
  size_t i = 0;
  size_t run = 0;  // start of the current run of valid bytes not yet copied
  while (i < n) {
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    const int r = classify(p + i, n - i);
    if (r > 0) {
      i += static_cast<size_t>(r);
    } else if (r < 0) {
      out.append(bytes.substr(run, i - run));
      out.append(kReplacement);
      i += static_cast<size_t>(-r);
      run = i;
    } else {
      break;
    }
  }
  out.append(bytes.substr(run, i - run));
  return i;
}

}  // namespace

std::string utf8_replace_invalid(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  const size_t used = convert(bytes, out);
  if (used < bytes.size()) out.append(kReplacement);
  return out;
}

std::string Utf8StreamBuffer::push(std::string_view bytes) {
  std::string out;
  if (tail_.empty()) {
    const size_t used = convert(bytes, out);
    tail_.assign(bytes.substr(used));
    return out;
  }
  tail_.append(bytes);
  const size_t used = convert(tail_, out);
  tail_.erase(0, used);
  return out;
}

std::string Utf8StreamBuffer::finish() {
  std::string out;
  if (!tail_.empty()) out.assign(kReplacement);
  tail_.clear();
  return out;
}

Result<std::string> StreamDecoder::push(TokenId id) {
  if (!tok_->is_valid_id(id)) {
    return Status(ErrorCode::kInvalidArgument,
                  "token id " + std::to_string(id) + " is out of range [0, " +
                      std::to_string(tok_->vocab_size()) + ")");
  }
  return buf_.push(tok_->token_bytes(id));
}

}  // namespace dsv4
