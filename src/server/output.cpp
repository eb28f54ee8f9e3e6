// Generated tokens → OpenAI JSON: see output.h.
#include "dsv4/server/output.h"

#include <algorithm>
#include <atomic>
#include <mutex>
#include <random>

#include "dsv4/core/utf8.h"

namespace dsv4::server {

// ------------------------------------------------------------------------------- StopMatcher

StopMatcher::StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  stops_.erase(std::remove_if(stops_.begin(), stops_.end(), [](const std::string& s) { return s.empty(); }),
               stops_.end());
}

std::string StopMatcher::push(std::string_view text) {
  if (hit_) return {};
  if (stops_.empty()) return std::string(text);
  held_ += text;
  size_t first = std::string::npos;
  for (const auto& s : stops_) first = std::min(first, held_.find(s));
  if (first != std::string::npos) {
    hit_ = true;
    std::string out = held_.substr(0, first);
    held_.clear();
    return out;
  }
  // Hold back the longest tail that is a proper prefix of some stop string. A stop string starts
  // with a UTF-8 lead byte, so the cut never falls inside a character.
  size_t keep = 0;
  for (const auto& s : stops_) {
    const size_t max_k = std::min(held_.size(), s.size() - 1);
    for (size_t k = max_k; k > keep; --k) {
      if (held_.compare(held_.size() - k, k, s, 0, k) == 0) {
        keep = k;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

std::string StopMatcher::finish() {
  std::string out;
  if (!hit_) out.swap(held_);
  held_.clear();
  return out;
}

// ------------------------------------------------------------------------------------- ids

namespace {
std::mutex g_rng_mu;
std::mt19937_64& rng() {
  static std::mt19937_64 r{std::random_device{}()};
  return r;
}
std::string random_alnum(size_t n) {
  static constexpr char kChars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
  std::lock_guard lk(g_rng_mu);
  std::string s(n, 'x');
  for (auto& c : s) c = kChars[rng()() % (sizeof kChars - 1)];
  return s;
}

double safe_div(double a, double b) { return b > 0 ? a / b : 0.0; }
}  // namespace

std::string make_call_id() { return "call_" + random_alnum(24); }
std::string make_request_id(std::string_view prefix) { return std::string(prefix) + random_alnum(24); }

Json timings_json(const runtime::TokenEvent& ev) {
  const int64_t prompt_n = std::max<int64_t>(0, ev.n_prompt - ev.n_cached);
  Json t = Json::object();
  t["cache_n"] = ev.n_cached;
  t["prompt_n"] = prompt_n;
  t["prompt_ms"] = ev.prompt_ms;
  t["prompt_per_token_ms"] = safe_div(ev.prompt_ms, static_cast<double>(prompt_n));
  t["prompt_per_second"] = safe_div(1000.0 * static_cast<double>(prompt_n), ev.prompt_ms);
  t["predicted_n"] = ev.n_generated;
  t["predicted_ms"] = ev.gen_ms;
  t["predicted_per_token_ms"] = safe_div(ev.gen_ms, static_cast<double>(ev.n_generated));
  t["predicted_per_second"] = safe_div(1000.0 * static_cast<double>(ev.n_generated), ev.gen_ms);
  return t;
}

Json usage_json(const runtime::TokenEvent& ev) {
  Json u = Json::object();
  u["prompt_tokens"] = ev.n_prompt;
  u["completion_tokens"] = ev.n_generated;
  u["total_tokens"] = ev.n_prompt + ev.n_generated;
  u["prompt_tokens_details"] = Json{{"cached_tokens", ev.n_cached}};
  return u;
}

// ------------------------------------------------------------------------------------ Output

namespace {
chat::ParseOptions parse_options(const PreparedRequest& r) {
  chat::ParseOptions o;
  o.thinking = r.thinking;
  o.tools = r.tools;
  return o;
}
}  // namespace

Output::Output(const PreparedRequest& req, const Tokenizer& tok, std::string id, int64_t created)
    : req_(req), tok_(&tok), id_(std::move(id)), created_(created), decoder_(tok), stop_(req.stop),
      parser_(parse_options(req)) {}

Json Output::chunk(Json delta) const {
  Json c = Json::object();
  c["id"] = id_;
  if (req_.endpoint == Endpoint::kChat) {
    c["object"] = "chat.completion.chunk";
  } else {
    c["object"] = "text_completion";
  }
  c["created"] = created_;
  c["model"] = req_.model;
  c["system_fingerprint"] = "dsv4";
  Json choice = Json::object();
  choice["index"] = 0;
  if (req_.endpoint == Endpoint::kChat) {
    choice["delta"] = std::move(delta);
  } else {
    choice["text"] = delta.is_string() ? delta : Json("");
  }
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = nullptr;
  c["choices"] = Json::array({choice});
  return c;
}

Json Output::role_chunk() const { return chunk(Json{{"role", "assistant"}, {"content", ""}}); }

Json Output::logprob_entry(const runtime::Sampled& s) const {
  auto one = [&](int32_t id, float lp) {
    const std::string& b = tok_->is_valid_id(id) ? tok_->token_bytes(id) : std::string();
    Json e = Json::object();
    e["token"] = utf8_replace_invalid(b);
    e["logprob"] = lp;
    Json bytes = Json::array();
    for (unsigned char c : b) bytes.push_back(static_cast<int>(c));
    e["bytes"] = bytes;
    e["id"] = id;
    return e;
  };
  Json e = one(s.id, s.logprob);
  Json top = Json::array();
  for (const auto& t : s.top) top.push_back(one(t.id, t.logprob));
  e["top_logprobs"] = top;
  return e;
}

std::vector<Json> Output::on_token(const runtime::Sampled& s, const runtime::TokenEvent& ev) {
  last_ = ev;
  if (stop_.hit()) return {};
  if (req_.logprobs) {
    Json e = logprob_entry(s);
    pending_logprobs_.push_back(e);
    all_logprobs_.push_back(e);
  }
  const bool is_stop_token =
      std::find(req_.gen.stop_tokens.begin(), req_.gen.stop_tokens.end(), s.id) != req_.gen.stop_tokens.end();
  if (is_stop_token) return {};
  auto piece = decoder_.push(s.id);
  if (!piece) return {};
  return feed_text(stop_.push(*piece), false);
}

std::vector<Json> Output::feed_text(const std::string& text, bool at_end) {
  std::vector<Json> out;
  if (req_.endpoint == Endpoint::kCompletion) {
    text_ += text;
    if (req_.stream && !text.empty()) out.push_back(chunk(Json(text)));
  } else {
    std::vector<chat::Delta> deltas = text.empty() ? std::vector<chat::Delta>{} : parser_.feed(text);
    if (at_end) {
      auto rest = parser_.finish();
      deltas.insert(deltas.end(), std::make_move_iterator(rest.begin()), std::make_move_iterator(rest.end()));
    }
    for (auto& d : deltas)
      if (d.kind == chat::Delta::Kind::tool_call) d.call.id = make_call_id();
    // Inline reasoning (reasoning_format none): the reasoning stays in content between <think> tags.
    if (req_.reasoning_inline) {
      std::vector<chat::Delta> inl;
      for (auto& d : deltas) {
        if (d.kind == chat::Delta::Kind::reasoning) {
          if (!in_reasoning_inline_) {
            in_reasoning_inline_ = true;
            inl.push_back({chat::Delta::Kind::content, "<think>", {}});
          }
          d.kind = chat::Delta::Kind::content;
        } else if (in_reasoning_inline_) {
          in_reasoning_inline_ = false;
          inl.push_back({chat::Delta::Kind::content, "</think>", {}});
        }
        inl.push_back(std::move(d));
      }
      if (at_end && in_reasoning_inline_) {
        in_reasoning_inline_ = false;
        inl.push_back({chat::Delta::Kind::content, "</think>", {}});
      }
      deltas = std::move(inl);
    }
    chat::apply_deltas(message_, deltas);
    if (req_.stream) {
      for (const auto& d : deltas) {
        switch (d.kind) {
          case chat::Delta::Kind::reasoning:
            if (!d.text.empty()) out.push_back(chunk(Json{{"reasoning_content", d.text}}));
            break;
          case chat::Delta::Kind::content:
            if (!d.text.empty()) out.push_back(chunk(Json{{"content", d.text}}));
            break;
          case chat::Delta::Kind::tool_call: {
            const int idx = tool_index_++;
            Json head = Json::object();
            head["index"] = idx;
            head["id"] = d.call.id;
            head["type"] = "function";
            head["function"] = Json{{"name", d.call.name}, {"arguments", ""}};
            out.push_back(chunk(Json{{"tool_calls", Json::array({head})}}));
            Json args = Json::object();
            args["index"] = idx;
            args["function"] = Json{{"arguments", chat::py_json_dumps(d.call.arguments)}};
            out.push_back(chunk(Json{{"tool_calls", Json::array({args})}}));
            break;
          }
        }
      }
    }
  }
  if (req_.logprobs && !out.empty() && !pending_logprobs_.empty()) {
    if (req_.endpoint == Endpoint::kChat) {
      out.front()["choices"][0]["logprobs"] = Json{{"content", pending_logprobs_}};
    } else {
      Json lp = Json::object();
      Json toks = Json::array(), lps = Json::array(), tops = Json::array();
      for (const auto& e : pending_logprobs_) {
        toks.push_back(e["token"]);
        lps.push_back(e["logprob"]);
        Json m = Json::object();
        for (const auto& t : e["top_logprobs"]) m[t["token"].get<std::string>()] = t["logprob"];
        tops.push_back(m);
      }
      out.front()["choices"][0]["logprobs"] = Json{{"tokens", toks}, {"token_logprobs", lps}, {"top_logprobs", tops}};
    }
    pending_logprobs_ = Json::array();
  }
  return out;
}

std::vector<Json> Output::finish(runtime::FinishReason reason, const runtime::TokenEvent& last) {
  last_ = last;
  std::string rest;
  if (!stop_.hit()) {
    rest = stop_.push(decoder_.finish());
    rest += stop_.finish();
  }
  std::vector<Json> out = feed_text(rest, true);
  finish_reason_ = reason == runtime::FinishReason::kLength && !stop_.hit() ? "length" : "stop";
  if (req_.endpoint == Endpoint::kChat && !message_.tool_calls.empty() && finish_reason_ != "length")
    finish_reason_ = "tool_calls";
  if (!req_.stream) return out;
  Json fin = chunk(req_.endpoint == Endpoint::kChat ? Json::object() : Json(""));
  fin["choices"][0]["finish_reason"] = finish_reason_;
  if (req_.logprobs && !pending_logprobs_.empty()) {
    if (req_.endpoint == Endpoint::kChat) fin["choices"][0]["logprobs"] = Json{{"content", pending_logprobs_}};
    pending_logprobs_ = Json::array();
  }
  fin["timings"] = timings_json(last_);
  out.push_back(std::move(fin));
  if (req_.include_usage) {
    Json u = chunk(Json::object());
    u["choices"] = Json::array();
    u["usage"] = usage_json(last_);
    out.push_back(std::move(u));
  }
  return out;
}

Json Output::response() const {
  Json r = Json::object();
  r["id"] = id_;
  r["object"] = req_.endpoint == Endpoint::kChat ? "chat.completion" : "text_completion";
  r["created"] = created_;
  r["model"] = req_.model;
  r["system_fingerprint"] = "dsv4";
  Json choice = Json::object();
  choice["index"] = 0;
  if (req_.endpoint == Endpoint::kChat) {
    Json msg = Json::object();
    msg["role"] = "assistant";
    msg["content"] = message_.content.empty() && !message_.tool_calls.empty() ? Json(nullptr) : Json(message_.content);
    if (!message_.reasoning.empty()) msg["reasoning_content"] = message_.reasoning;
    if (!message_.tool_calls.empty()) {
      Json calls = Json::array();
      for (const auto& c : message_.tool_calls) {
        Json call = Json::object();
        call["id"] = c.id;
        call["type"] = "function";
        call["function"] = Json{{"name", c.name}, {"arguments", chat::py_json_dumps(c.arguments)}};
        calls.push_back(call);
      }
      msg["tool_calls"] = calls;
    }
    choice["message"] = msg;
    choice["logprobs"] = req_.logprobs ? Json{{"content", all_logprobs_}} : Json(nullptr);
  } else {
    choice["text"] = text_;
    if (req_.logprobs) {
      Json toks = Json::array(), lps = Json::array(), tops = Json::array();
      for (const auto& e : all_logprobs_) {
        toks.push_back(e["token"]);
        lps.push_back(e["logprob"]);
        Json m = Json::object();
        for (const auto& t : e["top_logprobs"]) m[t["token"].get<std::string>()] = t["logprob"];
        tops.push_back(m);
      }
      choice["logprobs"] = Json{{"tokens", toks}, {"token_logprobs", lps}, {"top_logprobs", tops}};
    } else {
      choice["logprobs"] = nullptr;
    }
  }
  choice["finish_reason"] = finish_reason_;
  r["choices"] = Json::array({choice});
  r["usage"] = usage_json(last_);
  r["timings"] = timings_json(last_);
  return r;
}

}  // namespace dsv4::server
