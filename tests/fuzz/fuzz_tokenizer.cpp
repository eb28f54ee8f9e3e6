// libFuzzer target: the tokenizer round trip. For every input:
//   - valid UTF-8: encode_text and encode_rendered succeed and decode(encode(s)) == s, and the
//     streaming decoder (one token at a time) yields the same text in valid UTF-8 chunks;
//   - invalid UTF-8: both encoders return an error (never a crash, never ids).
// A mismatch aborts. The tokenizer is loaded once: $DSV4_FUZZ_TOKENIZER if set, else the toy
// tokenizer.json whose path is compiled in as DSV4_TOY_TOKENIZER (tests/fixtures/tokenizer.json).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "dsv4/core/utf8.h"
#include "dsv4/tokenizer/tokenizer.h"

#ifndef DSV4_TOY_TOKENIZER
#error "define DSV4_TOY_TOKENIZER as the path of tests/fixtures/tokenizer.json"
#endif

namespace {

const dsv4::Tokenizer& tokenizer() {
  static const dsv4::Tokenizer* tok = [] {
    const char* env = std::getenv("DSV4_FUZZ_TOKENIZER");
    const std::string path = env && *env ? env : DSV4_TOY_TOKENIZER;
    auto t = dsv4::Tokenizer::from_file(path);
    if (!t) {
      std::fprintf(stderr, "fuzz_tokenizer: cannot load %s: %s\n", path.c_str(), t.status().to_string().c_str());
      std::abort();
    }
    return new dsv4::Tokenizer(std::move(*t));
  }();
  return *tok;
}

[[noreturn]] void fail(const char* what, std::string_view s) {
  std::fprintf(stderr, "fuzz_tokenizer: %s for a %zu-byte input\n", what, s.size());
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const dsv4::Tokenizer& tok = tokenizer();
  const std::string_view s(reinterpret_cast<const char*>(data), size);
  const bool valid = dsv4::is_valid_utf8(s);
  for (int mode = 0; mode < 2; ++mode) {
    auto ids = mode ? tok.encode_rendered(s) : tok.encode_text(s);
    if (!valid) {
      if (ids.is_ok()) fail("invalid UTF-8 accepted", s);
      continue;
    }
    if (!ids.is_ok()) fail("valid UTF-8 rejected", s);
    auto text = tok.decode(*ids);
    if (!text.is_ok() || *text != s) fail("decode(encode(s)) != s", s);
    dsv4::StreamDecoder sd(tok);
    std::string streamed;
    for (dsv4::TokenId id : *ids) {
      auto chunk = sd.push(id);
      if (!chunk.is_ok() || !dsv4::is_valid_utf8(*chunk)) fail("stream chunk error or invalid UTF-8", s);
      streamed += *chunk;
    }
    streamed += sd.finish();
    if (streamed != s) fail("streamed decode != s", s);
  }
  // The byte stream split at its middle decodes to the whole-text replacement.
  dsv4::Utf8StreamBuffer u;
  std::string out = u.push(s.substr(0, size / 2));
  out += u.push(s.substr(size / 2));
  out += u.finish();
  if (out != dsv4::utf8_replace_invalid(s)) fail("split UTF-8 stream != whole", s);
  return 0;
}
