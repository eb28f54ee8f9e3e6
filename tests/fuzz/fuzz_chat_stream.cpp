// libFuzzer target: the DeepSeek-V4 streaming output parser. For every input (byte 0 picks the
// mode and the split seed, the rest is model text):
//   - the parser never crashes or throws;
//   - every emitted text chunk is valid UTF-8 and contains no complete marker;
//   - the streamed result (chunks split by a seeded generator) equals the whole-text parse.
// A mismatch aborts. Corpus: tests/fuzz/corpus/chat_stream.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "dsv4/chat/chat.h"
#include "dsv4/core/utf8.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  using namespace dsv4::chat;
  ParseOptions o;
  o.thinking = (data[0] & 1) != 0;
  uint32_t seed = data[0] >> 1;
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  const ParsedMessage whole = parse(text, o);
  StreamParser p(o);
  ParsedMessage m;
  auto check = [&](const std::vector<Delta>& ds) {
    for (const auto& d : ds) {
      if (d.kind == Delta::Kind::tool_call) continue;
      if (!dsv4::is_valid_utf8(d.text) || d.text.find("</think>") != std::string::npos ||
          d.text.find("<｜end▁of▁sentence｜>") != std::string::npos) {
        std::fprintf(stderr, "fuzz_chat_stream: bad chunk\n");
        std::abort();
      }
    }
    apply_deltas(m, ds);
  };
  size_t pos = 0;
  while (pos < text.size()) {
    seed = seed * 1103515245u + 12345u;
    const size_t n = 1 + (seed >> 16) % 9;
    check(p.feed(text.substr(pos, n)));
    pos += n;
  }
  check(p.finish());
  if (!(m == whole)) {
    std::fprintf(stderr, "fuzz_chat_stream: streamed result differs from whole-text parse\n");
    std::abort();
  }
  return 0;
}
