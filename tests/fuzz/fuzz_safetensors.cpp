// libFuzzer target: the safetensors header parser and the data-section tiling checks.
#include <cstddef>
#include <cstdint>
#include <span>

#include "dsv4/format/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto r = dsv4::SafetensorsFile::parse(std::span<const uint8_t>(data, size), "fuzz");
  if (!r) return 0;
  size_t sink = 0;
  for (const auto& t : r->tensors()) {
    sink += static_cast<size_t>(t.n_elements());
    for (uint8_t b : t.data) sink += b;
  }
  return sink == 0xdeadbeef ? 1 : 0;
}
