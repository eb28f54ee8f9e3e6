// dsv4-convert: official DeepSeek-V4 Hugging Face checkpoint (FP8/FP4 safetensors) -> GGUF with
// upstream llama.cpp naming, no torch. Rules: dsv4/model/hf_convert.h.
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include "dsv4/model/hf_convert.h"

int main(int argc, char** argv) {
  CLI::App app{"dsv4-convert: official DeepSeek-V4 safetensors directory -> GGUF (upstream naming)"};
  std::string dir, out;
  dsv4::ConvertOptions opt;
  app.add_option("dir", dir, "checkpoint directory (config.json, tokenizer.json, *.safetensors)")->required();
  app.add_option("-o,--output", out, "output GGUF")->required();
  app.add_flag("--keep-fp8", opt.keep_fp8,
               "store dense FP8 weights losslessly as F8_E4M3_B128 (type 42, file type 41; not "
               "loadable by upstream llama.cpp) instead of re-quantizing them to Q8_0");
  app.add_option("--pre", opt.pre, "tokenizer.ggml.pre to write")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (auto st = dsv4::convert_hf_to_gguf(dir, out, opt); !st) {
    fmt::print(stderr, "error: {}\n", st.to_string());
    return 1;
  }
  fmt::print("wrote {}\n", out);
  return 0;
}
