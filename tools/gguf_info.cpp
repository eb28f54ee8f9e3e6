// dsv4-gguf-info: metadata and tensor table of a GGUF file (like gguf-dump), plus a DeepSeek-V4
// model summary. Exit status: 0 ok, 1 the file is invalid, 2 bad command line.
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "dsv4/format/ggml_types.h"
#include "dsv4/format/gguf.h"
#include "dsv4/format/gguf_model.h"
#include "dsv4/model/hparams.h"
#include "dsv4/model/tensors.h"
#include "dsv4/model/verify_weights.h"
#include "dsv4/model/vocab_meta.h"

namespace {

using dsv4::GgufFile;
using dsv4::GgufType;
using dsv4::GgufValue;

// Scalars as JSON values; arrays as their element list when short, else a summary object.
nlohmann::json value_json(const GgufValue& v, size_t max_array) {
  if (!v.is_array()) {
    if (auto s = v.as_string()) return std::string(*s);
    if (auto b = v.as_bool()) return *b;
    if (auto f = v.as_f64()) return *f;
    if (auto u = v.as_u64()) return *u;
    if (auto i = v.as_i64()) return *i;
    return nullptr;
  }
  if (v.array_size() > max_array) {
    return nlohmann::json{{"type", v.type_string()}, {"count", v.array_size()}};
  }
  nlohmann::json a = nlohmann::json::array();
  if (auto s = v.as_string_array()) {
    for (auto x : *s) a.push_back(std::string(x));
  } else if (auto i = v.as_i64_array()) {
    for (auto x : *i) a.push_back(x);
  } else if (auto f = v.as_f64_array()) {
    for (auto x : *f) a.push_back(x);
  } else if (v.array_type() == GgufType::kBool) {
    a = nlohmann::json{{"type", v.type_string()}, {"count", v.array_size()}};
  }
  return a;
}

std::string value_text(const GgufValue& v) {
  nlohmann::json j = value_json(v, 16);
  std::string s = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (s.size() > 120) s = s.substr(0, 117) + "...";
  return s;
}

std::string shape_text(const dsv4::GgufTensorInfo& t) {
  std::string s = "{";
  for (uint32_t d = 0; d < t.n_dims; ++d) s += (d ? ", " : "") + std::to_string(t.ne[d]);
  return s + "}";
}

// A DeepSeek-V4 summary from the validated hyperparameters of the whole (possibly split) model.
void print_summary(const std::string& path, dsv4::GgufParseOptions opts) {
  auto model = dsv4::GgufModel::open(path, opts);
  if (!model) {
    fmt::print("model: {}\n", model.status().to_string());
    return;
  }
  auto arch = model->meta().get_string("general.architecture");
  fmt::print("architecture: {}\n", arch ? std::string(*arch) : std::string("(none)"));
  if (!arch || *arch != "deepseek4") return;
  auto hr = dsv4::hparams_from_gguf(*model);
  if (!hr) {
    fmt::print("  not a valid deepseek4 model: {}\n", hr.status().to_string());
    return;
  }
  const dsv4::HParams& h = *hr;
  fmt::print("  n_layer {} (+{} MTP)  n_embd {}  n_vocab {}  n_ctx_train {}\n", h.n_layer, h.n_nextn,
             h.n_embd, h.n_vocab, h.n_ctx_train);
  fmt::print("  attention: n_head {}  head_dim {} (rope {})  q_lora_rank {}  o_groups {} x {}  window {}\n",
             h.n_head, h.head_dim, h.n_rot, h.q_lora_rank, h.o_groups, h.o_lora_rank, h.n_swa);
  fmt::print("  indexer: n_head {}  head_dim {}  top_k {}\n", h.n_indexer_head, h.indexer_head_dim,
             h.indexer_top_k);
  fmt::print("  moe: n_expert {}  n_expert_used {}  n_expert_shared {}  n_ff_exp {}  hash layers {}\n",
             h.n_expert, h.n_expert_used, h.n_expert_shared, h.n_ff_exp, h.n_hash_layers);
  std::string sched;
  for (int64_t il = 0; il < h.n_layer_all; ++il) {
    sched += (il ? " " : "") + std::string(dsv4::layer_kind_name(h.ratio(il)));
  }
  const size_t extra = h.compress_ratios.size() - static_cast<size_t>(h.n_layer_all);
  fmt::print("  layers: {}{}\n", sched,
             extra ? fmt::format("  (+{} compress_ratios entries for blocks not in this file: MTP/draft)", extra)
                   : std::string());
  std::map<std::string, std::pair<int64_t, uint64_t>> by_type;  // elements, bytes
  int64_t params = 0;
  for (const dsv4::GgufTensorInfo* t : model->tensors()) {
    auto& e = by_type[std::string(t->type->name)];
    e.first += t->n_elements();
    e.second += t->n_bytes;
    params += t->n_elements();
  }
  fmt::print("  shards: {}  tensors: {}  parameters: {}\n", model->n_shards(), model->tensors().size(), params);
  for (const auto& [name, e] : by_type) {
    fmt::print("    {:13} {:>14} elements {:>16} bytes\n", name, e.first, e.second);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dsv4-gguf-info: print a GGUF file's metadata, tensor table and model summary"};
  std::string path;
  bool json = false, types = false, header_only = false, no_tensors = false, validate = false,
       verify = false;
  app.add_option("file", path, "GGUF file");
  app.add_flag("--json", json, "machine-readable output");
  app.add_flag("--types", types, "print the known ggml type table as JSON and exit");
  app.add_flag("--header-only", header_only,
               "do not require the data section (sparse or header-only files)");
  app.add_flag("--no-tensors", no_tensors, "omit the tensor table");
  app.add_flag("--verify-weights", verify,
               "with --validate: also dequantize every tensor and reject NaN/Inf values (reads the "
               "whole file)");
  app.add_flag("--validate", validate,
               "check the deepseek4 hyperparameters and every tensor's name, shape and type "
               "(reads no tensor data with --header-only); exit 1 on any problem");
  CLI11_PARSE(app, argc, argv);

  if (types) {
    nlohmann::json j = nlohmann::json::array();
    for (const auto& t : dsv4::ggml_type_table()) {
      j.push_back({{"id", t.id}, {"name", t.name}, {"block_size", t.block_size},
                   {"type_size", t.type_size}});
    }
    fmt::print("{}\n", j.dump(1));
    return 0;
  }
  if (path.empty()) {
    fmt::print(stderr, "error: a GGUF file is required (see --help)\n");
    return 2;
  }
  dsv4::GgufParseOptions opts;
  opts.require_data = !header_only;
  auto r = GgufFile::open(path, opts);
  if (!r) {
    fmt::print(stderr, "error: {}\n", r.status().to_string());
    return 1;
  }
  const GgufFile& f = r.value();

  if (validate) {
    // Opens every shard of a split set (from any shard's path).
    auto model = dsv4::GgufModel::open(path, opts);
    if (!model) {
      fmt::print(stderr, "{}: invalid: {}\n", path, model.status().to_string());
      return 1;
    }
    auto hp = dsv4::hparams_from_gguf(*model);
    if (!hp) {
      fmt::print(stderr, "{}: invalid: {}\n", path, hp.status().to_string());
      return 1;
    }
    std::vector<std::string> problems;
    auto st = dsv4::validate_tensors(*model, *hp, &problems);
    if (st && verify) st = dsv4::verify_weights(*model, &problems);
    // A standalone MTP file (ds4's mtp.0.*) carries no vocabulary of its own.
    if (model->find("tokenizer.ggml.tokens") != nullptr || model->find_tensor("token_embd.weight") != nullptr) {
      if (auto v = dsv4::validate_vocab_metadata(*model, hp->n_vocab); !v) {
        problems.push_back(v.message());
        if (st) st = v;
      }
    }
    for (const auto& p : problems) fmt::print(stderr, "{}: {}\n", path, p);
    if (!st) {
      fmt::print(stderr, "{}: invalid: {} problems\n", path, problems.size());
      return 1;
    }
    fmt::print("{}: valid deepseek4 file: {} shard(s), {} trunk layers + {} MTP, {} tensors\n",
               path, model->n_shards(), hp->n_layer, hp->n_nextn, model->tensors().size());
    return 0;
  }

  if (json) {
    nlohmann::json j;
    j["version"] = f.version();
    j["alignment"] = f.alignment();
    j["data_offset"] = f.data_offset();
    nlohmann::json md = nlohmann::json::object();
    nlohmann::json mt = nlohmann::json::object();
    for (const auto& kv : f.metadata()) {
      md[std::string(kv.key)] = value_json(kv.value, 1u << 16);
      mt[std::string(kv.key)] = kv.value.type_string();
    }
    j["metadata"] = md;
    j["metadata_types"] = mt;
    nlohmann::json ts = nlohmann::json::array();
    if (!no_tensors) {
      for (const auto& t : f.tensors()) {
        ts.push_back({{"name", t.name},
                      {"type", t.type->name},
                      {"type_id", t.type_id},
                      {"ne", std::vector<int64_t>(t.ne, t.ne + t.n_dims)},
                      {"offset", t.offset},
                      {"n_bytes", t.n_bytes}});
      }
    }
    j["tensors"] = ts;
    fmt::print("{}\n", j.dump(1, ' ', false, nlohmann::json::error_handler_t::replace));
    return 0;
  }

  fmt::print("{}: GGUF v{}, {} metadata keys, {} tensors, data at offset {}\n", path, f.version(),
             f.metadata().size(), f.tensors().size(), f.data_offset());
  for (const auto& kv : f.metadata()) {
    fmt::print("  {:<52} {:<16} {}\n", kv.key, kv.value.type_string(), value_text(kv.value));
  }
  if (!no_tensors) {
    fmt::print("tensors:\n");
    for (const auto& t : f.tensors()) {
      fmt::print("  {:<48} {:<8} {:<24} {:>12} bytes\n", t.name, t.type->name, shape_text(t),
                 t.n_bytes);
    }
  }
  print_summary(path, opts);
  return 0;
}
