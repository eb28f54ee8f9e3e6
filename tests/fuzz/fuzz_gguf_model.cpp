// libFuzzer target: a GGUF all the way to the architecture check — container parse, deepseek4
// hyperparameters (family rules) and the tensor table's names, shapes and types. No tensor data is
// interpreted beyond the container's range checks.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "dsv4/format/gguf.h"
#include "dsv4/format/gguf_model.h"
#include "dsv4/model/hparams.h"
#include "dsv4/model/tensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto f = dsv4::GgufFile::parse(std::span<const uint8_t>(data, size));
  if (!f) return 0;
  auto m = dsv4::GgufModel::from_file(std::move(f).value());
  if (!m) return 0;
  auto h = dsv4::hparams_from_gguf(*m);
  if (!h) return 0;
  std::vector<std::string> problems;
  (void)dsv4::validate_tensors(*m, *h, &problems);
  return 0;
}
