#include "dsv4/model/vocab_meta.h"

#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "dsv4/core/utf8.h"

namespace dsv4 {

Status validate_vocab_metadata(const GgufModel& f, int64_t n_vocab) {
  auto bad = [](const std::string& key, const std::string& why) {
    return Status(ErrorCode::kInvalidFile, key + " " + why);
  };
  const GgufValue* model = f.find("tokenizer.ggml.model");
  if (model == nullptr) return Status(ErrorCode::kNotFound, "missing metadata key 'tokenizer.ggml.model'");
  if (model->as_string() != std::optional<std::string_view>("gpt2")) {
    return bad("tokenizer.ggml.model", "is " + model->type_string() + " '" +
                                           std::string(model->as_string().value_or("")) +
                                           "'; DeepSeek-V4 uses byte-level BPE ('gpt2')");
  }
  const GgufValue* pre = f.find("tokenizer.ggml.pre");
  const auto pre_s = pre != nullptr ? pre->as_string() : std::nullopt;
  if (!pre_s || (*pre_s != "deepseek-v3" && *pre_s != "joyai-llm")) {
    return bad("tokenizer.ggml.pre", "is '" + std::string(pre_s.value_or("(missing)")) +
                                         "'; dsv4 implements 'deepseek-v3' and its alias 'joyai-llm' "
                                         "exactly and does not fall back to another pre-tokenizer");
  }
  const GgufValue* tv = f.find("tokenizer.ggml.tokens");
  if (tv == nullptr) return Status(ErrorCode::kNotFound, "missing metadata key 'tokenizer.ggml.tokens'");
  auto tokens = tv->as_string_array();
  if (!tokens) return bad("tokenizer.ggml.tokens", "must be a string array, got " + tv->type_string());
  if (static_cast<int64_t>(tokens->size()) != n_vocab) {
    return bad("tokenizer.ggml.tokens", "has " + std::to_string(tokens->size()) +
                                            " entries, the model's vocabulary has " + std::to_string(n_vocab));
  }
  std::unordered_set<std::string_view> vocab;
  vocab.reserve(tokens->size());
  for (size_t i = 0; i < tokens->size(); ++i) {
    const std::string_view t = (*tokens)[i];
    if (t.empty() || !is_valid_utf8(t)) {
      return bad("tokenizer.ggml.tokens", "entry " + std::to_string(i) + " is empty or not valid UTF-8");
    }
    vocab.insert(t);
  }
  if (const GgufValue* tt = f.find("tokenizer.ggml.token_type")) {
    auto types = tt->as_i64_array();
    if (!types) return bad("tokenizer.ggml.token_type", "must be an integer array, got " + tt->type_string());
    if (types->size() != tokens->size()) {
      return bad("tokenizer.ggml.token_type", "has " + std::to_string(types->size()) + " entries for " +
                                                  std::to_string(tokens->size()) + " tokens");
    }
  }
  for (const char* k : {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                        "tokenizer.ggml.padding_token_id", "tokenizer.ggml.unknown_token_id",
                        "tokenizer.ggml.eot_token_id"}) {
    const GgufValue* v = f.find(k);
    if (v == nullptr) continue;
    auto id = v->as_i64();
    if (!id || *id < 0 || *id >= n_vocab) {
      return bad(k, "= " + (id ? std::to_string(*id) : v->type_string()) + " is not a token id (vocabulary " +
                        std::to_string(n_vocab) + ")");
    }
  }
  const GgufValue* mv = f.find("tokenizer.ggml.merges");
  if (mv == nullptr) return Status(ErrorCode::kNotFound, "missing metadata key 'tokenizer.ggml.merges'");
  auto merges = mv->as_string_array();
  if (!merges) return bad("tokenizer.ggml.merges", "must be a string array, got " + mv->type_string());
  std::string joined;
  for (size_t i = 0; i < merges->size(); ++i) {
    const std::string_view m = (*merges)[i];
    const size_t sp = m.find(' ');
    if (sp == std::string_view::npos || sp == 0 || sp + 1 >= m.size() || m.find(' ', sp + 1) != std::string_view::npos) {
      return bad("tokenizer.ggml.merges", "entry " + std::to_string(i) + " is not 'left right'");
    }
    const std::string_view a = m.substr(0, sp), b = m.substr(sp + 1);
    joined.assign(a);
    joined.append(b);
    if (!vocab.count(a) || !vocab.count(b) || !vocab.count(joined)) {
      return bad("tokenizer.ggml.merges", "entry " + std::to_string(i) + " ('" + std::string(m) +
                                              "') names a token the vocabulary lacks");
    }
  }
  return Status::ok();
}

}  // namespace dsv4
