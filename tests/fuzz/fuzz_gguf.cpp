// libFuzzer target: the GGUF container parser (header, metadata, tensor table, data ranges) and
// every typed accessor on what it accepted. Built with clang -fsanitize=fuzzer in the `fuzz`
// preset; in other builds the corpus is replayed through replay_main.cpp as an ordinary test.
#include <cstddef>
#include <cstdint>
#include <span>

#include "dsv4/format/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  for (bool require_data : {true, false}) {
    dsv4::GgufParseOptions opts;
    opts.require_data = require_data;
    auto r = dsv4::GgufFile::parse(std::span<const uint8_t>(data, size), opts);
    if (!r) continue;
    size_t sink = 0;
    for (const auto& kv : r->metadata()) {
      const auto& v = kv.value;
      sink += v.type_string().size();
      if (auto s = v.as_string()) sink += s->size();
      if (auto a = v.as_string_array()) sink += a->size();
      if (auto a = v.as_i64_array()) sink += a->size();
      if (auto a = v.as_f64_array()) sink += a->size();
      (void)v.as_u64();
      (void)v.as_i64();
      (void)v.as_f64();
      (void)v.as_bool();
    }
    for (const auto& t : r->tensors()) {
      for (uint8_t b : t.data) sink += b;  // touches every byte the reader claims is in range
    }
    if (sink == 0xdeadbeef) return 1;  // keep the loop observable
  }
  return 0;
}
