// OpenAI request parsing and validation: see api.h for the policies.
#include "dsv4/server/api.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <unordered_map>

#include "dsv4/core/utf8.h"

namespace dsv4::server {

namespace {

std::string num(int64_t v) { return std::to_string(v); }

// A field that is absent or null counts as not given (OpenAI's behaviour for optional fields).
const Json* opt(const Json& b, const char* key) {
  auto it = b.find(key);
  if (it == b.end() || it->is_null()) return nullptr;
  return &*it;
}

std::optional<ApiError> get_bool(const Json& b, const char* key, bool& out) {
  const Json* v = opt(b, key);
  if (!v) return std::nullopt;
  if (!v->is_boolean()) return bad_request(std::string("'") + key + "' must be a boolean", key);
  out = v->get<bool>();
  return std::nullopt;
}

// Integer in [lo, hi]; floats (even 10.0), strings and booleans are rejected.
std::optional<ApiError> get_int(const Json& b, const char* key, int64_t lo, int64_t hi, int64_t& out,
                                bool& given) {
  given = false;
  const Json* v = opt(b, key);
  if (!v) return std::nullopt;
  const std::string range = "[" + num(lo) + ", " + num(hi) + "]";
  if (v->is_number_unsigned()) {
    const uint64_t u = v->get<uint64_t>();
    if (u > static_cast<uint64_t>(hi) || (lo > 0 && u < static_cast<uint64_t>(lo)))
      return bad_request(std::string("'") + key + "' = " + std::to_string(u) + " is out of range " + range, key);
    out = static_cast<int64_t>(u);
  } else if (v->is_number_integer()) {
    const int64_t s = v->get<int64_t>();
    if (s < lo || s > hi)
      return bad_request(std::string("'") + key + "' = " + num(s) + " is out of range " + range, key);
    out = s;
  } else {
    return bad_request(std::string("'") + key + "' must be an integer in " + range, key);
  }
  given = true;
  return std::nullopt;
}

// Finite number in [lo, hi] (bounds inclusive unless lo_open).
std::optional<ApiError> get_num(const Json& b, const char* key, double lo, double hi, bool lo_open, double& out,
                                bool& given) {
  given = false;
  const Json* v = opt(b, key);
  if (!v) return std::nullopt;
  auto range = [&] {
    char buf[96];
    std::snprintf(buf, sizeof buf, "%s%g, %g]", lo_open ? "(" : "[", lo, hi);
    return std::string(buf);
  };
  if (!v->is_number()) return bad_request(std::string("'") + key + "' must be a number in " + range(), key);
  const double d = v->get<double>();
  if (!std::isfinite(d) || d < lo || d > hi || (lo_open && d <= lo))
    return bad_request(std::string("'") + key + "' is out of range " + range(), key);
  out = d;
  given = true;
  return std::nullopt;
}

std::optional<ApiError> check_model(const Json& body, const ApiConfig& cfg, std::string& model) {
  model = cfg.model_name;
  const Json* m = opt(body, "model");
  if (!m) return std::nullopt;
  if (!m->is_string()) return bad_request("'model' must be a string", "model");
  const auto& s = m->get_ref<const std::string&>();
  if (s.empty() || cfg.model_names.empty()) return std::nullopt;
  for (const auto& n : cfg.model_names)
    if (n == s) {
      model = s;
      return std::nullopt;
    }
  ApiError e = bad_request("The model '" + s + "' does not exist (this server serves '" + cfg.model_name + "')",
                           "model", "model_not_found");
  e.status = 404;
  return e;
}

// Sampling, limits and stop settings shared by both generation endpoints.
std::optional<ApiError> parse_common(const Json& body, const ApiConfig& cfg, const Tokenizer& tok,
                                     PreparedRequest& out) {
  const Limits& L = cfg.limits;
  bool given = false;
  int64_t iv = 0;
  double dv = 0;
  if (auto e = get_bool(body, "stream", out.stream)) return e;
  if (const Json* so = opt(body, "stream_options")) {
    if (!so->is_object()) return bad_request("'stream_options' must be an object", "stream_options");
    if (auto e = get_bool(*so, "include_usage", out.include_usage)) {
      e->param = "stream_options.include_usage";
      return e;
    }
  }
  // n: one choice only.
  if (auto e = get_int(body, "n", 1, 1, iv, given)) {
    e->message = "'n' must be 1 (only one choice per request is supported)";
    return e;
  }
  if (auto e = get_int(body, "best_of", 1, 1, iv, given)) return e;
  // max tokens: max_completion_tokens wins over max_tokens; absent = until the context ends.
  out.gen.max_tokens = -1;
  for (const char* key : {"max_tokens", "max_completion_tokens"}) {
    if (auto e = get_int(body, key, 1, std::numeric_limits<int32_t>::max(), iv, given)) return e;
    if (given) out.gen.max_tokens = iv;
  }
  auto& sp = out.gen.sampling;
  sp = runtime::SamplingParams{};
  sp.temperature = 1.0f;
  if (auto e = get_num(body, "temperature", 0.0, 2.0, false, dv, given)) return e;
  if (given) sp.temperature = static_cast<float>(dv);
  if (auto e = get_num(body, "top_p", 0.0, 1.0, true, dv, given)) return e;
  if (given) sp.top_p = static_cast<float>(dv);
  if (auto e = get_int(body, "top_k", 0, std::numeric_limits<int32_t>::max(), iv, given)) return e;
  if (given) sp.top_k = static_cast<int32_t>(std::min<int64_t>(iv, cfg.n_vocab));
  if (auto e = get_num(body, "min_p", 0.0, 1.0, false, dv, given)) return e;
  if (given) sp.min_p = dv >= 1.0 ? std::nextafter(1.0f, 0.0f) : static_cast<float>(dv);
  // Accepted and validated, not applied (docs/server.md).
  for (const char* key : {"presence_penalty", "frequency_penalty"})
    if (auto e = get_num(body, key, -2.0, 2.0, false, dv, given)) return e;
  if (auto e = get_num(body, "repeat_penalty", 0.0, 10.0, false, dv, given)) return e;
  // seed: any 64-bit integer (negative values wrap, as llama-server's -1 = "random" is just a seed here).
  if (const Json* s = opt(body, "seed")) {
    if (s->is_number_unsigned()) {
      sp.seed = s->get<uint64_t>();
    } else if (s->is_number_integer()) {
      sp.seed = static_cast<uint64_t>(s->get<int64_t>());
    } else {
      return bad_request("'seed' must be an integer in [-2^63, 2^64 - 1]", "seed");
    }
  }
  // logit_bias: validated; a non-empty map is refused (no logit processor yet).
  if (const Json* lb = opt(body, "logit_bias")) {
    if (!lb->is_object()) return bad_request("'logit_bias' must be an object", "logit_bias");
    if (lb->size() > L.max_logit_bias)
      return bad_request("'logit_bias' has more than " + std::to_string(L.max_logit_bias) + " entries", "logit_bias");
    for (auto it = lb->begin(); it != lb->end(); ++it) {
      const std::string& k = it.key();
      char* end = nullptr;
      errno = 0;
      const long long id = std::strtoll(k.c_str(), &end, 10);
      if (k.empty() || end != k.c_str() + k.size() || errno != 0 || id < 0 || id >= cfg.n_vocab)
        return bad_request("'logit_bias' key '" + log_escape(k, 40) + "' is not a token id in [0, " +
                               num(cfg.n_vocab) + ")",
                           "logit_bias");
      if (!it.value().is_number() || !std::isfinite(it.value().get<double>()) ||
          std::fabs(it.value().get<double>()) > 100.0)
        return bad_request("'logit_bias' values must be numbers in [-100, 100]", "logit_bias");
    }
    if (!lb->empty()) return bad_request("'logit_bias' is not supported by this server", "logit_bias", "unsupported");
  }
  // Stop strings.
  out.stop.clear();
  if (const Json* st = opt(body, "stop")) {
    if (st->is_string()) {
      if (!st->get_ref<const std::string&>().empty()) out.stop.push_back(st->get<std::string>());
    } else if (st->is_array()) {
      if (st->size() > L.max_stop)
        return bad_request("'stop' has " + std::to_string(st->size()) + " strings; at most " +
                               std::to_string(L.max_stop) + " are allowed",
                           "stop");
      for (const auto& s : *st) {
        if (!s.is_string()) return bad_request("'stop' must be a string or an array of strings", "stop");
        if (!s.get_ref<const std::string&>().empty()) out.stop.push_back(s.get<std::string>());
      }
    } else {
      return bad_request("'stop' must be a string or an array of strings", "stop");
    }
    for (const auto& s : out.stop)
      if (s.size() > L.max_stop_bytes)
        return bad_request("a stop string is longer than " + std::to_string(L.max_stop_bytes) + " bytes", "stop");
  }
  out.gen.stop_tokens = {cfg.eos_id};
  bool ignore_eos = false;
  if (auto e = get_bool(body, "ignore_eos", ignore_eos)) return e;
  if (ignore_eos) out.gen.stop_tokens.clear();
  if (const Json* st = opt(body, "stop_token_ids")) {
    if (!st->is_array() || st->size() > L.max_stop)
      return bad_request("'stop_token_ids' must be an array of at most " + std::to_string(L.max_stop) + " token ids",
                         "stop_token_ids");
    for (const auto& t : *st) {
      if (!t.is_number_integer() || (t.is_number_unsigned() ? t.get<uint64_t>() >= static_cast<uint64_t>(cfg.n_vocab)
                                                             : (t.get<int64_t>() < 0 || t.get<int64_t>() >= cfg.n_vocab)))
        return bad_request("'stop_token_ids' holds a value that is not a token id in [0, " + num(cfg.n_vocab) + ")",
                           "stop_token_ids");
      out.gen.stop_tokens.push_back(t.get<int32_t>());
    }
  }
  (void)tok;
  return std::nullopt;
}

std::optional<ApiError> check_context(const PreparedRequest& r, const ApiConfig& cfg) {
  const auto n = static_cast<int64_t>(r.gen.prompt.size());
  if (n == 0) return bad_request("the prompt is empty", "prompt");
  if (n >= cfg.n_ctx) {
    ApiError e = bad_request("This model's maximum context length is " + num(cfg.n_ctx) + " tokens; the prompt has " +
                                 num(n) + " tokens (at least one position must remain for generation)",
                             "messages", "context_length_exceeded");
    e.extra = Json{{"n_prompt_tokens", n}, {"n_ctx", cfg.n_ctx}};
    return e;
  }
  return std::nullopt;
}

// ------------------------------------------------------------------- special-token protection

// Finds whether `s` contains the text of any added token (or our placeholder marker).
class AddedTokenScanner {
 public:
  explicit AddedTokenScanner(const Tokenizer& tok) {
    for (const auto& a : tok.added_tokens())
      if (!a.content.empty()) by_first_[static_cast<unsigned char>(a.content[0])].push_back(&a.content);
  }
  bool contains_any(std::string_view s) const {
    if (s.find("\xEE\x80\x80") != std::string_view::npos) return true;  // U+E000, our placeholder
    for (size_t i = 0; i < s.size(); ++i) {
      auto it = by_first_.find(static_cast<unsigned char>(s[i]));
      if (it == by_first_.end()) continue;
      for (const std::string* c : it->second)
        if (s.compare(i, c->size(), *c) == 0) return true;
    }
    return false;
  }

 private:
  std::unordered_map<unsigned char, std::vector<const std::string*>> by_first_;
};

constexpr std::string_view kPhOpen = "\xEE\x80\x80";   // U+E000
constexpr std::string_view kPhClose = "\xEE\x80\x81";  // U+E001

// Replaces `s` by a placeholder when it contains special-token text; the original goes to `saved`.
void protect(Json& s, const AddedTokenScanner& scan, std::vector<std::string>& saved) {
  if (!s.is_string()) return;
  const auto& str = s.get_ref<const std::string&>();
  if (!scan.contains_any(str)) return;
  std::string ph = std::string(kPhOpen) + std::to_string(saved.size()) + std::string(kPhClose);
  saved.push_back(str);
  s = ph;
}

// Splits the rendered text at placeholders: protocol text is tokenized with added tokens matched,
// protected message text as plain text.
std::optional<ApiError> tokenize_protected(const std::string& rendered, const std::vector<std::string>& saved,
                                           const Tokenizer& tok, bool tokenize, std::string& text,
                                           std::vector<int32_t>& ids) {
  text.clear();
  ids.clear();
  size_t pos = 0;
  auto add = [&](std::string_view piece, bool plain) -> std::optional<ApiError> {
    text += piece;
    if (!tokenize || piece.empty()) return std::nullopt;
    auto r = plain ? tok.encode_text(piece) : tok.encode_rendered(piece);
    if (!r) return bad_request("tokenizer: " + r.status().message(), "messages");
    ids.insert(ids.end(), r->begin(), r->end());
    return std::nullopt;
  };
  while (pos < rendered.size()) {
    const size_t open = rendered.find(kPhOpen, pos);
    if (open == std::string::npos) break;
    const size_t close = rendered.find(kPhClose, open + kPhOpen.size());
    size_t idx = saved.size();
    if (close != std::string::npos) {
      const std::string digits = rendered.substr(open + kPhOpen.size(), close - open - kPhOpen.size());
      if (!digits.empty() && digits.size() < 10 && digits.find_first_not_of("0123456789") == std::string::npos)
        idx = static_cast<size_t>(std::stoull(digits));
    }
    if (idx >= saved.size()) {  // not ours: ordinary text
      if (auto e = add(std::string_view(rendered).substr(pos, open + kPhOpen.size() - pos), false)) return e;
      pos = open + kPhOpen.size();
      continue;
    }
    if (auto e = add(std::string_view(rendered).substr(pos, open - pos), false)) return e;
    if (auto e = add(saved[idx], true)) return e;
    pos = close + kPhClose.size();
  }
  return add(std::string_view(rendered).substr(pos), false);
}

// content: string, null, or an array of {"type":"text","text":...} parts (joined with "\n").
std::optional<ApiError> normalise_content(const Json& c, const std::string& where, Json& out) {
  if (c.is_null() || c.is_string()) {
    out = c;
    return std::nullopt;
  }
  if (!c.is_array()) return bad_request(where + " must be a string, null or an array of content parts", where);
  std::string joined;
  for (size_t j = 0; j < c.size(); ++j) {
    const Json& part = c[j];
    const std::string pw = where + "[" + std::to_string(j) + "]";
    if (!part.is_object()) return bad_request(pw + " must be an object", pw);
    const Json* type = opt(part, "type");
    if (!type || !type->is_string()) return bad_request(pw + ".type must be a string", pw + ".type");
    if (*type != "text" && *type != "input_text")
      return bad_request(pw + ".type '" + log_escape(type->get<std::string>(), 40) + "' is not supported (text only)",
                         pw + ".type");
    const Json* t = opt(part, "text");
    if (!t || !t->is_string()) return bad_request(pw + ".text must be a string", pw + ".text");
    if (j) joined += "\n";
    joined += t->get_ref<const std::string&>();
  }
  out = joined;
  return std::nullopt;
}

}  // namespace

// ----------------------------------------------------------------------------------- errors

Json ApiError::to_json() const {
  Json e = Json::object();
  e["message"] = message;
  e["type"] = type;
  e["param"] = param.empty() ? Json(nullptr) : Json(param);
  e["code"] = code.empty() ? Json(nullptr) : Json(code);
  if (extra.is_object())
    for (auto it = extra.begin(); it != extra.end(); ++it) e[it.key()] = it.value();
  return Json{{"error", e}};
}

ApiError bad_request(std::string message, std::string param, std::string code) {
  ApiError e;
  e.status = 400;
  e.message = std::move(message);
  e.param = std::move(param);
  e.code = std::move(code);
  return e;
}

bool is_valid_utf8(std::string_view s) { return dsv4::is_valid_utf8(s); }

std::string log_escape(std::string_view s, size_t max_len) {
  std::string out;
  const bool valid = dsv4::is_valid_utf8(s);
  for (size_t i = 0; i < s.size() && out.size() < max_len; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c < 0x20 || c == 0x7f || (!valid && c >= 0x80)) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (out.size() >= max_len && s.size() > max_len) out += "...";
  return out;
}

bool constant_time_equals(std::string_view a, std::string_view b) {
  // Time depends on the lengths only: every byte of the expected key is touched.
  volatile unsigned char diff = static_cast<unsigned char>(a.size() != b.size());
  const size_t n = a.size();
  for (size_t i = 0; i < n; ++i) {
    const unsigned char cb = i < b.size() ? static_cast<unsigned char>(b[i]) : 0;
    diff = static_cast<unsigned char>(diff | (static_cast<unsigned char>(a[i]) ^ cb));
  }
  return diff == 0;
}

JsonShape json_shape(std::string_view body) {
  // One pass, no recursion: nesting depth, and Σ k² over objects with k members (each member of
  // an object has exactly one ':' at that object's level). The cost bound matters because the
  // ordered JSON type inserts keys by linear search.
  JsonShape shape;
  struct Level {
    bool object;
    uint64_t keys;
  };
  std::vector<Level> stack;
  bool in_str = false, esc = false;
  for (char c : body) {
    if (in_str) {
      if (esc) {
        esc = false;
      } else if (c == '\\') {
        esc = true;
      } else if (c == '"') {
        in_str = false;
      }
      continue;
    }
    if (c == '"') {
      in_str = true;
    } else if (c == '[' || c == '{') {
      stack.push_back({c == '{', 0});
      shape.max_depth = std::max(shape.max_depth, static_cast<int>(stack.size()));
      if (stack.size() > 100000) break;  // the depth limit rejects it anyway
    } else if (c == ':') {
      if (!stack.empty() && stack.back().object) ++stack.back().keys;
    } else if (c == ']' || c == '}') {
      if (stack.empty()) continue;
      const uint64_t k = stack.back().keys;
      shape.key_cost += k * k;
      stack.pop_back();
    }
  }
  for (const auto& l : stack) shape.key_cost += l.keys * l.keys;
  return shape;
}

int json_depth(std::string_view body) { return json_shape(body).max_depth; }

std::optional<ApiError> parse_body(std::string_view body, const Limits& limits, Json& out) {
  if (body.empty()) return bad_request("the request body is empty (expected a JSON object)");
  if (body.size() > limits.max_body_bytes) {
    ApiError e = bad_request("the request body exceeds " + std::to_string(limits.max_body_bytes) + " bytes");
    e.status = 413;
    return e;
  }
  const JsonShape shape = json_shape(body);
  if (shape.max_depth > limits.max_json_depth)
    return bad_request("the JSON body nests deeper than " + std::to_string(limits.max_json_depth) + " levels");
  if (shape.key_cost > limits.max_json_key_cost)
    return bad_request("the JSON body has objects with too many keys (at most a few thousand per object)");
  try {
    out = Json::parse(body.begin(), body.end());
  } catch (const nlohmann::json::parse_error& e) {
    // nlohmann's message quotes the last bytes read, which may be invalid UTF-8: keep it ASCII.
    return bad_request("invalid JSON at byte " + std::to_string(e.byte) + ": " + log_escape(e.what(), 300));
  } catch (const nlohmann::json::exception& e) {
    return bad_request(std::string("invalid JSON: ") + log_escape(e.what(), 300));
  }
  if (!out.is_object()) return bad_request("the request body must be a JSON object");
  return std::nullopt;
}

// --------------------------------------------------------------------------------------- chat

std::optional<ApiError> render_chat(const Json& body, const ApiConfig& cfg, const Tokenizer& tok, bool tokenize,
                                    RenderedChat& out) {
  const Limits& L = cfg.limits;
  const Json* msgs = opt(body, "messages");
  if (!msgs) return bad_request("'messages' is required", "messages");
  if (!msgs->is_array()) return bad_request("'messages' must be an array", "messages");
  if (msgs->empty()) return bad_request("'messages' must hold at least one message", "messages");
  if (msgs->size() > L.max_messages)
    return bad_request("'messages' holds more than " + std::to_string(L.max_messages) + " messages", "messages");

  // Tools and tool_choice.
  Json tools = nullptr;
  if (const Json* t = opt(body, "tools")) {
    if (!t->is_array()) return bad_request("'tools' must be an array", "tools");
    if (t->size() > L.max_tools)
      return bad_request("'tools' holds more than " + std::to_string(L.max_tools) + " tools", "tools");
    if (t->dump().size() > L.max_tools_bytes)
      return bad_request("'tools' is larger than " + std::to_string(L.max_tools_bytes) + " bytes", "tools");
    for (size_t i = 0; i < t->size(); ++i) {
      const Json& tool = (*t)[i];
      const std::string w = "tools[" + std::to_string(i) + "]";
      if (!tool.is_object()) return bad_request(w + " must be an object", w);
      const Json* type = opt(tool, "type");
      if (type && *type != "function") return bad_request(w + ".type must be \"function\"", w + ".type");
      const Json* fn = opt(tool, "function");
      if (!fn || !fn->is_object()) return bad_request(w + ".function must be an object", w + ".function");
      const Json* name = opt(*fn, "name");
      if (!name || !name->is_string() || name->get_ref<const std::string&>().empty() ||
          name->get_ref<const std::string&>().size() > 256)
        return bad_request(w + ".function.name must be a non-empty string of at most 256 bytes", w + ".function.name");
      if (const Json* p = opt(*fn, "parameters"); p && !p->is_object())
        return bad_request(w + ".function.parameters must be an object", w + ".function.parameters");
    }
    if (!t->empty()) tools = *t;
  }
  bool tools_in_prompt = !tools.is_null();
  if (const Json* tc = opt(body, "tool_choice")) {
    if (tc->is_string()) {
      const auto& s = tc->get_ref<const std::string&>();
      if (s == "none") {
        tools_in_prompt = false;
      } else if (s != "auto" && s != "required") {
        return bad_request("'tool_choice' must be \"none\", \"auto\", \"required\" or a function", "tool_choice");
      }
    } else if (tc->is_object()) {
      const Json* fn = opt(*tc, "function");
      const Json* name = fn && fn->is_object() ? opt(*fn, "name") : nullptr;
      if (!name || !name->is_string())
        return bad_request("'tool_choice.function.name' must be a string", "tool_choice");
      bool found = false;
      if (tools.is_array())
        for (const auto& t : tools)
          if (t["function"]["name"] == *name) found = true;
      if (!found) return bad_request("'tool_choice' names a function that is not in 'tools'", "tool_choice");
    } else {
      return bad_request("'tool_choice' must be a string or an object", "tool_choice");
    }
  }
  bool ptc = true;
  if (auto e = get_bool(body, "parallel_tool_calls", ptc)) return e;

  // response_format → the system message's response_format (rendered, not enforced).
  Json response_format = nullptr;
  if (const Json* rf = opt(body, "response_format")) {
    if (!rf->is_object()) return bad_request("'response_format' must be an object", "response_format");
    const Json* type = opt(*rf, "type");
    if (!type || !type->is_string())
      return bad_request("'response_format.type' must be a string", "response_format.type");
    if (rf->dump().size() > L.max_response_format_bytes)
      return bad_request("'response_format' is too large", "response_format");
    if (*type == "json_schema") {
      const Json* js = opt(*rf, "json_schema");
      if (!js || !js->is_object())
        return bad_request("'response_format.json_schema' must be an object", "response_format.json_schema");
      response_format = *rf;
    } else if (*type == "json_object") {
      response_format = *rf;
    } else if (*type != "text") {
      return bad_request("'response_format.type' must be text, json_object or json_schema", "response_format.type");
    }
  }

  // Thinking / effort (tokenizer-and-chat.md "Decisions").
  std::optional<bool> thinking;
  std::string effort;
  if (const Json* k = opt(body, "chat_template_kwargs")) {
    if (!k->is_object()) return bad_request("'chat_template_kwargs' must be an object", "chat_template_kwargs");
    for (const char* key : {"thinking", "enable_thinking"}) {
      if (const Json* v = opt(*k, key)) {
        if (!v->is_boolean())
          return bad_request(std::string("'chat_template_kwargs.") + key + "' must be a boolean",
                             std::string("chat_template_kwargs.") + key);
        thinking = v->get<bool>();
      }
    }
    if (const Json* v = opt(*k, "reasoning_effort")) {
      if (!v->is_string())
        return bad_request("'chat_template_kwargs.reasoning_effort' must be a string",
                           "chat_template_kwargs.reasoning_effort");
      effort = v->get<std::string>();
    }
  }
  if (const Json* t = opt(body, "thinking")) {  // DeepSeek API: {"type":"enabled"|"disabled"}; also a boolean
    if (t->is_boolean()) {
      thinking = t->get<bool>();
    } else if (t->is_object() && opt(*t, "type") && (*t)["type"].is_string() &&
               ((*t)["type"] == "enabled" || (*t)["type"] == "disabled")) {
      thinking = (*t)["type"] == "enabled";
    } else {
      return bad_request("'thinking' must be a boolean or {\"type\": \"enabled\"|\"disabled\"}", "thinking");
    }
  }
  bool effort_given = !effort.empty();
  if (const Json* r = opt(body, "reasoning_effort")) {
    if (!r->is_string()) return bad_request("'reasoning_effort' must be a string", "reasoning_effort");
    effort = r->get<std::string>();
    effort_given = true;
  }
  if (!effort_given) effort = cfg.default_effort;
  auto choice = chat::resolve_effort(cfg.revision, effort);
  if (!choice) return bad_request(choice.status().message(), "reasoning_effort");
  bool think = thinking.has_value() ? *thinking : (effort_given ? choice->thinking : cfg.default_thinking && choice->thinking);
  if (effort_given && !choice->thinking) think = false;

  // Messages → the encoder's form.
  AddedTokenScanner scan(tok);
  std::vector<std::string> saved;
  Json conv = Json::array();
  for (size_t i = 0; i < msgs->size(); ++i) {
    const Json& m = (*msgs)[i];
    const std::string w = "messages[" + std::to_string(i) + "]";
    if (!m.is_object()) return bad_request(w + " must be an object", w);
    const Json* role = opt(m, "role");
    if (!role || !role->is_string()) return bad_request(w + ".role must be a string", w + ".role");
    std::string r = role->get<std::string>();
    if (r == "developer") r = "system";  // OpenAI's newer name for the system role
    if (r != "system" && r != "user" && r != "assistant" && r != "tool")
      return bad_request(w + ".role '" + log_escape(r, 40) + "' is not one of system, user, assistant, tool",
                         w + ".role");
    Json nm = Json::object();
    nm["role"] = r;
    Json content;
    if (auto e = normalise_content(m.contains("content") ? m["content"] : Json(nullptr), w + ".content", content))
      return e;
    const Json* tcs = opt(m, "tool_calls");
    if (r == "assistant") {
      if (tcs) {
        if (!tcs->is_array()) return bad_request(w + ".tool_calls must be an array", w + ".tool_calls");
        Json calls = Json::array();
        for (size_t j = 0; j < tcs->size(); ++j) {
          const Json& tc = (*tcs)[j];
          const std::string cw = w + ".tool_calls[" + std::to_string(j) + "]";
          const Json* fn = tc.is_object() ? opt(tc, "function") : nullptr;
          if (!fn || !fn->is_object()) return bad_request(cw + ".function must be an object", cw + ".function");
          const Json* name = opt(*fn, "name");
          if (!name || !name->is_string()) return bad_request(cw + ".function.name must be a string", cw + ".function.name");
          const Json* args = opt(*fn, "arguments");
          Json a = args ? *args : Json("{}");
          if (a.is_string()) {
            try {
              Json parsed = Json::parse(a.get_ref<const std::string&>());
              if (!parsed.is_object()) throw std::runtime_error("not an object");
            } catch (const std::exception&) {
              return bad_request(cw + ".function.arguments must be a JSON object (as a string)",
                                 cw + ".function.arguments");
            }
          } else if (!a.is_object()) {
            return bad_request(cw + ".function.arguments must be a JSON object (as a string)", cw + ".function.arguments");
          }
          Json call = Json::object();
          if (const Json* id = opt(tc, "id"); id && id->is_string()) call["id"] = *id;
          call["type"] = "function";
          call["function"] = Json{{"name", *name}, {"arguments", a}};
          calls.push_back(call);
        }
        if (!calls.empty()) nm["tool_calls"] = calls;
      }
      if (content.is_null() && !nm.contains("tool_calls"))
        return bad_request(w + ".content must be set when there are no tool_calls", w + ".content");
      Json reasoning = nullptr;
      for (const char* key : {"reasoning_content", "reasoning"}) {
        if (const Json* rc = opt(m, key)) {
          if (!rc->is_string()) return bad_request(w + "." + key + " must be a string", w + "." + key);
          reasoning = *rc;
        }
      }
      if (!reasoning.is_null()) {
        protect(reasoning, scan, saved);
        nm["reasoning"] = reasoning;
      }
      nm["content"] = content.is_null() ? Json("") : content;
    } else {
      if (content.is_null()) return bad_request(w + ".content must be a string or an array of text parts", w + ".content");
      if (tcs) return bad_request(w + ": only assistant messages carry tool_calls", w + ".tool_calls");
      nm["content"] = content;
      if (r == "tool") {
        const Json* id = opt(m, "tool_call_id");
        if (id && !id->is_string()) return bad_request(w + ".tool_call_id must be a string", w + ".tool_call_id");
        if (id) nm["tool_call_id"] = *id;
      }
    }
    protect(nm["content"], scan, saved);
    conv.push_back(std::move(nm));
  }
  // Tools and response_format live on the first message when it is a system message, else on a
  // new empty system message in front (the official encoder renders them with the system text).
  if ((tools_in_prompt && !tools.is_null()) || !response_format.is_null()) {
    if (conv[0]["role"] != "system") conv.insert(conv.begin(), Json{{"role", "system"}, {"content", ""}});
    if (tools_in_prompt && !tools.is_null()) conv[0]["tools"] = tools;
    if (!response_format.is_null()) conv[0]["response_format"] = response_format;
  }

  chat::RenderOptions ro;
  ro.revision = cfg.revision;
  ro.thinking = think;
  ro.reasoning_effort = think ? choice->encoder_effort : std::string();
  auto rendered = chat::render(conv, ro);
  if (!rendered) return bad_request(rendered.status().message(), "messages");
  out.thinking = think;
  out.tools = tools;
  return tokenize_protected(*rendered, saved, tok, tokenize, out.text, out.ids);
}

std::optional<ApiError> prepare_chat(const Json& body, const ApiConfig& cfg, const Tokenizer& tok,
                                     PreparedRequest& out) {
  out = PreparedRequest{};
  out.endpoint = Endpoint::kChat;
  if (auto e = check_model(body, cfg, out.model)) return e;
  if (auto e = parse_common(body, cfg, tok, out)) return e;
  if (auto e = get_bool(body, "logprobs", out.logprobs)) return e;
  bool given = false;
  int64_t iv = 0;
  if (auto e = get_int(body, "top_logprobs", 0, cfg.limits.max_top_logprobs, iv, given)) return e;
  if (given) {
    if (!out.logprobs) return bad_request("'top_logprobs' requires 'logprobs': true", "top_logprobs");
    out.top_logprobs = static_cast<int>(iv);
  }
  out.gen.sampling.n_probs = out.logprobs ? out.top_logprobs : 0;
  RenderedChat rc;
  if (auto e = render_chat(body, cfg, tok, /*tokenize=*/true, rc)) return e;
  out.prompt_text = std::move(rc.text);
  out.gen.prompt = std::move(rc.ids);
  out.thinking = rc.thinking;
  out.tools = std::move(rc.tools);
  out.reasoning_inline = cfg.reasoning_format == "none";
  return check_context(out, cfg);
}

// ------------------------------------------------------------------------------- completions

namespace {
std::optional<ApiError> token_ids(const Json& arr, const ApiConfig& cfg, const std::string& param,
                                  std::vector<int32_t>& ids) {
  ids.clear();
  ids.reserve(arr.size());
  for (const auto& t : arr) {
    bool ok = t.is_number_integer();
    if (ok && t.is_number_unsigned()) ok = t.get<uint64_t>() < static_cast<uint64_t>(cfg.n_vocab);
    else if (ok) ok = t.get<int64_t>() >= 0 && t.get<int64_t>() < cfg.n_vocab;
    if (!ok)
      return bad_request("'" + param + "' holds " + log_escape(t.dump(), 40) + ", not a token id in [0, " +
                             num(cfg.n_vocab) + ")",
                         param);
    ids.push_back(t.get<int32_t>());
  }
  return std::nullopt;
}
}  // namespace

std::optional<ApiError> prepare_completion(const Json& body, const ApiConfig& cfg, const Tokenizer& tok,
                                           PreparedRequest& out) {
  out = PreparedRequest{};
  out.endpoint = Endpoint::kCompletion;
  if (auto e = check_model(body, cfg, out.model)) return e;
  if (auto e = parse_common(body, cfg, tok, out)) return e;
  bool given = false;
  int64_t iv = 0;
  if (auto e = get_int(body, "logprobs", 0, cfg.limits.max_top_logprobs, iv, given)) return e;
  if (given) {
    out.logprobs = true;
    out.top_logprobs = static_cast<int>(iv);
    out.gen.sampling.n_probs = out.top_logprobs;
  }
  bool echo = false;
  if (auto e = get_bool(body, "echo", echo)) return e;
  if (echo) return bad_request("'echo' is not supported", "echo", "unsupported");
  if (const Json* s = opt(body, "suffix"); s && !(s->is_string() && s->get_ref<const std::string&>().empty()))
    return bad_request("'suffix' is not supported", "suffix", "unsupported");
  const Json* p = opt(body, "prompt");
  if (!p) return bad_request("'prompt' is required", "prompt");
  Json prompt = *p;
  if (prompt.is_array() && prompt.size() == 1 && (prompt[0].is_string() || prompt[0].is_array())) {
    Json inner = prompt[0];
    prompt = inner;
  } else if (prompt.is_array() && !prompt.empty() && (prompt[0].is_string() || prompt[0].is_array())) {
    return bad_request("only one prompt per request is supported", "prompt");
  }
  if (prompt.is_string()) {
    out.prompt_text = prompt.get<std::string>();
    auto ids = tok.encode_rendered(out.prompt_text);
    if (!ids) return bad_request("tokenizer: " + ids.status().message(), "prompt");
    out.gen.prompt = std::move(*ids);
  } else if (prompt.is_array()) {
    if (auto e = token_ids(prompt, cfg, "prompt", out.gen.prompt)) return e;
  } else {
    return bad_request("'prompt' must be a string or an array of token ids", "prompt");
  }
  if (auto e = check_context(out, cfg)) {
    e->param = "prompt";
    return e;
  }
  return std::nullopt;
}

// --------------------------------------------------------------------------- tokenize/detok

std::optional<ApiError> handle_tokenize(const Json& body, const Tokenizer& tok, Json& out) {
  const Json* c = opt(body, "content");
  if (!c || !c->is_string()) return bad_request("'content' must be a string", "content");
  bool parse_special = true, with_pieces = false, add_special = false;
  if (auto e = get_bool(body, "parse_special", parse_special)) return e;
  if (auto e = get_bool(body, "with_pieces", with_pieces)) return e;
  if (auto e = get_bool(body, "add_special", add_special)) return e;
  const auto& text = c->get_ref<const std::string&>();
  auto ids = parse_special ? tok.encode_rendered(text) : tok.encode_text(text);
  if (!ids) return bad_request("tokenizer: " + ids.status().message(), "content");
  Json arr = Json::array();
  for (int32_t id : *ids) {
    if (!with_pieces) {
      arr.push_back(id);
      continue;
    }
    const std::string& b = tok.token_bytes(id);
    Json piece;
    if (dsv4::is_valid_utf8(b)) {
      piece = b;
    } else {
      piece = Json::array();
      for (unsigned char ch : b) piece.push_back(static_cast<int>(ch));
    }
    arr.push_back(Json{{"id", id}, {"piece", piece}});
  }
  out = Json{{"tokens", arr}};
  return std::nullopt;
}

std::optional<ApiError> handle_detokenize(const Json& body, const Tokenizer& tok, Json& out) {
  const Json* t = opt(body, "tokens");
  if (!t || !t->is_array()) return bad_request("'tokens' must be an array of token ids", "tokens");
  ApiConfig cfg;
  cfg.n_vocab = tok.vocab_size();
  std::vector<int32_t> ids;
  if (auto e = token_ids(*t, cfg, "tokens", ids)) return e;
  auto text = tok.decode(ids);
  if (!text) return bad_request(text.status().message(), "tokens");
  out = Json{{"content", *text}};
  return std::nullopt;
}

}  // namespace dsv4::server
