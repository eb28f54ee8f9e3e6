// DeepSeek-V4 output parsing: one state machine serves both the streaming and the whole-text
// parser, so the two agree by construction. On well-formed text it gives the official
// parse_message_from_completion_text() result (tests/chat checks this on the goldens).
#include <algorithm>
#include <array>

#include "dsv4/chat/chat.h"
#include "protocol_text.h"

namespace dsv4::chat {

namespace {

using namespace std::string_literals;

struct Marker {
  std::string s;
  enum Action { think_end, think_start, tool_start, tool_end, eos } action;
};

std::string cat(std::string_view a, std::string_view b, std::string_view c = {}, std::string_view d = {}) {
  std::string s;
  s.reserve(a.size() + b.size() + c.size() + d.size());
  s += a;
  s += b;
  s += c;
  s += d;
  return s;
}

const std::vector<Marker>& markers_text() {  // reasoning and content states
  static const std::vector<Marker> m = {
      {std::string(text::kThinkEnd), Marker::think_end},
      {std::string(text::kThinkStart), Marker::think_start},
      {cat("\n\n<", text::kDsml, text::kToolCallsBlockName), Marker::tool_start},
      {cat("<", text::kDsml, text::kToolCallsBlockName), Marker::tool_start},
      {cat("\n\n<", text::kDsmlAscii, text::kToolCallsBlockName), Marker::tool_start},
      {cat("<", text::kDsmlAscii, text::kToolCallsBlockName), Marker::tool_start},
      {std::string(text::kEos), Marker::eos},
  };
  return m;
}

const std::vector<Marker>& markers_block() {
  static const std::vector<Marker> m = {
      {cat("</", text::kDsml, text::kToolCallsBlockName, ">"), Marker::tool_end},
      {cat("</", text::kDsmlAscii, text::kToolCallsBlockName, ">"), Marker::tool_end},
      {std::string(text::kEos), Marker::eos},
  };
  return m;
}

// Length of the UTF-8 sequence starting at s[i] if it is complete and valid (>0); 0 if it is a
// valid but truncated prefix (only possible at the end); -k if invalid, where k >= 1 is the length
// of the maximal valid prefix to replace with one U+FFFD.
int utf8_seq(std::string_view s, size_t i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) return 1;
  int len;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return -1;
  }
  for (int k = 1; k < len; ++k) {
    if (i + static_cast<size_t>(k) >= s.size()) return 0;
    const auto b = static_cast<unsigned char>(s[i + static_cast<size_t>(k)]);
    const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) return -k;
  }
  return len;
}

// Appends the valid UTF-8 of `s` to `out` (invalid parts as U+FFFD); returns the number of bytes
// consumed: an incomplete trailing sequence is left unconsumed unless `final`.
size_t utf8_sanitize(std::string_view s, bool final, std::string& out) {
  size_t i = 0;
  while (i < s.size()) {
    const int r = utf8_seq(s, i);
    if (r > 0) {
      out.append(s.substr(i, static_cast<size_t>(r)));
      i += static_cast<size_t>(r);
    } else if (r == 0) {
      if (!final) return i;
      out += "\xEF\xBF\xBD";
      return s.size();
    } else {
      out += "\xEF\xBF\xBD";
      i += static_cast<size_t>(-r);
    }
  }
  return i;
}

bool starts_with_at(std::string_view s, size_t pos, std::string_view m) {
  return s.size() - pos >= m.size() && s.compare(pos, m.size(), m) == 0;
}

// Earliest position of any of `opts` in s at or after `from`; npos if none. *len = its length.
size_t find_any(std::string_view s, size_t from, std::initializer_list<std::string_view> opts, size_t* len) {
  size_t best = std::string_view::npos;
  for (auto o : opts) {
    size_t p = s.find(o, from);
    if (p < best) {
      best = p;
      *len = o.size();
    }
  }
  return best;
}

void skip_ws(std::string_view s, size_t& i) {
  while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r')) ++i;
}

// Reads `key="value"` at i (after whitespace); returns false if not there.
bool read_attr(std::string_view s, size_t& i, std::string_view key, std::string& value) {
  size_t j = i;
  skip_ws(s, j);
  if (!starts_with_at(s, j, key) || !starts_with_at(s, j + key.size(), "=\"")) return false;
  j += key.size() + 2;
  size_t q = s.find('"', j);
  if (q == std::string_view::npos) return false;
  value.assign(s.substr(j, q - j));
  i = q + 1;
  return true;
}

const Json* param_schema(const Json& tools, const std::string& tool, const std::string& param) {
  if (!tools.is_array()) return nullptr;
  for (const auto& t : tools) {
    if (!t.is_object()) continue;
    const Json* fn = t.contains("function") ? &t["function"] : &t;
    if (!fn->is_object() || !fn->contains("name") || (*fn)["name"] != tool) continue;
    if (!fn->contains("parameters")) return nullptr;
    const Json& p = (*fn)["parameters"];
    if (!p.is_object() || !p.contains("properties") || !p["properties"].is_object()) return nullptr;
    auto it = p["properties"].find(param);
    return it == p["properties"].end() ? nullptr : &*it;
  }
  return nullptr;
}

bool schema_is_string(const Json* schema) {
  if (schema == nullptr || !schema->is_object() || !schema->contains("type")) return false;
  const Json& t = (*schema)["type"];
  if (t.is_string()) return t == "string";
  if (!t.is_array()) return false;
  bool any_string = false;
  for (const auto& x : t) {
    if (x == "string") any_string = true;
    else if (x != "null") return false;
  }
  return any_string;
}

// Parses the inside of a tool_calls block (after "<｜DSML｜tool_calls", before its end marker).
std::vector<ToolCall> parse_block(std::string_view b, const Json& tools) {
  const std::string inv_open = cat("<", text::kDsml, "invoke"), inv_open_a = cat("<", text::kDsmlAscii, "invoke");
  const std::string inv_close = cat("</", text::kDsml, "invoke>"), inv_close_a = cat("</", text::kDsmlAscii, "invoke>");
  const std::string p_open = cat("<", text::kDsml, "parameter"), p_open_a = cat("<", text::kDsmlAscii, "parameter");
  const std::string p_close = cat("</", text::kDsml, "parameter>"),
                    p_close_a = cat("</", text::kDsmlAscii, "parameter>");
  std::vector<ToolCall> calls;
  size_t i = 0;
  while (true) {
    size_t ol = 0;
    size_t o = find_any(b, i, {inv_open, inv_open_a}, &ol);
    if (o == std::string_view::npos) break;
    size_t j = o + ol;
    std::string name;
    if (!read_attr(b, j, "name", name)) {
      i = o + ol;
      continue;
    }
    skip_ws(b, j);
    if (j >= b.size() || b[j] != '>') {
      i = o + ol;
      continue;
    }
    ++j;
    size_t cl = 0;
    size_t c = find_any(b, j, {inv_close, inv_close_a}, &cl);
    if (c == std::string_view::npos) break;  // unterminated invoke: dropped
    std::string_view body = b.substr(j, c - j);
    i = c + cl;

    ToolCall call;
    call.name = name;
    std::vector<std::string> seen;
    std::string text = "{";
    size_t k = 0;
    while (true) {
      size_t pl = 0;
      size_t p = find_any(body, k, {p_open, p_open_a}, &pl);
      if (p == std::string_view::npos) break;
      size_t q = p + pl;
      std::string pname, pstr;
      if (!read_attr(body, q, "name", pname)) {
        k = p + pl;
        continue;
      }
      const bool has_str = read_attr(body, q, "string", pstr);
      skip_ws(body, q);
      if (q >= body.size() || body[q] != '>') {
        k = p + pl;
        continue;
      }
      ++q;
      size_t vl = 0;
      size_t v = find_any(body, q, {p_close, p_close_a}, &vl);
      std::string value(body.substr(q, v == std::string_view::npos ? std::string_view::npos : v - q));
      k = v == std::string_view::npos ? body.size() : v + vl;
      if (std::find(seen.begin(), seen.end(), pname) != seen.end()) continue;  // duplicate: first wins
      seen.push_back(pname);
      const bool is_string = has_str && pstr == "true";
      if (text.size() > 1) text += ", ";
      text += py_json_dumps(Json(pname)) + ": " + (is_string ? py_json_dumps(Json(value)) : value);
      if (is_string || schema_is_string(param_schema(tools, name, pname))) {
        call.arguments[pname] = value;
      } else {
        Json parsed = Json::parse(value, nullptr, false);
        call.arguments[pname] = parsed.is_discarded() ? Json(value) : std::move(parsed);
      }
    }
    text += "}";
    call.arguments_text = std::move(text);
    calls.push_back(std::move(call));
  }
  return calls;
}

}  // namespace

StreamParser::StreamParser(ParseOptions options)
    : opts_(std::move(options)), state_(opts_.thinking ? State::reasoning : State::content) {}

void StreamParser::emit_text(std::string_view s, std::vector<Delta>& out) {
  // s is followed by a marker or the end of the stream: flush everything.
  std::string buf = utf8_tail_;
  buf.append(s);
  utf8_tail_.clear();
  std::string clean;
  utf8_sanitize(buf, true, clean);
  if (clean.empty()) return;
  const Delta::Kind kind = state_ == State::reasoning ? Delta::Kind::reasoning : Delta::Kind::content;
  out.push_back(Delta{kind, std::move(clean), {}});
}

void StreamParser::step(bool at_end, std::vector<Delta>& out) {
  while (state_ != State::done) {
    const auto& markers = state_ == State::tool_block ? markers_block() : markers_text();
    std::string_view s = pending_;
    size_t hold = std::string_view::npos;  // first position of a possible (partial) marker
    const Marker* match = nullptr;
    size_t pos = 0;
    for (size_t q = s.find_first_of("<\n"); q != std::string_view::npos; q = s.find_first_of("<\n", q + 1)) {
      const Marker* full = nullptr;
      for (const auto& m : markers)
        if (starts_with_at(s, q, m.s) && (full == nullptr || m.s.size() > full->s.size())) full = &m;
      // A longer marker may still complete here: wait for more text.
      bool partial_longer = false;
      for (const auto& m : markers)
        if (s.size() - q < m.s.size() && (full == nullptr || m.s.size() > full->s.size()) &&
            std::string_view(m.s).substr(0, s.size() - q) == s.substr(q))
          partial_longer = true;
      if (partial_longer && !at_end) {
        hold = q;
        break;
      }
      if (full != nullptr) {
        match = full;
        pos = q;
        break;
      }
    }
    if (match == nullptr) {
      const size_t upto = hold == std::string_view::npos ? s.size() : hold;
      if (state_ == State::tool_block) {
        block_.append(s.substr(0, upto));
      } else if (upto > 0) {
        // Text not followed by a marker yet: keep an incomplete UTF-8 tail for the next chunk.
        std::string buf = utf8_tail_;
        buf.append(s.substr(0, upto));
        std::string clean;
        size_t used = utf8_sanitize(buf, at_end, clean);
        utf8_tail_ = buf.substr(used);
        if (!clean.empty())
          out.push_back(Delta{state_ == State::reasoning ? Delta::Kind::reasoning : Delta::Kind::content,
                              std::move(clean), {}});
      }
      pending_.erase(0, upto);
      if (at_end) {
        if (state_ == State::tool_block) {
          for (auto& c : parse_block(block_, opts_.tools)) out.push_back(Delta{Delta::Kind::tool_call, {}, std::move(c)});
          block_.clear();
        } else if (!pending_.empty() || !utf8_tail_.empty()) {
          emit_text(pending_, out);
        }
        pending_.clear();
        state_ = State::done;
      }
      return;
    }
    // A marker at `pos`.
    if (state_ == State::tool_block) {
      block_.append(s.substr(0, pos));
      for (auto& c : parse_block(block_, opts_.tools)) out.push_back(Delta{Delta::Kind::tool_call, {}, std::move(c)});
      block_.clear();
    } else if (pos > 0 || !utf8_tail_.empty()) {
      emit_text(s.substr(0, pos), out);
    }
    const Marker::Action action = match->action;
    pending_.erase(0, pos + match->s.size());
    switch (action) {
      case Marker::think_end:
        if (state_ == State::reasoning) state_ = State::content;  // repeated </think>: dropped
        break;
      case Marker::think_start: break;  // stray <think>: dropped
      case Marker::tool_start: state_ = State::tool_block; break;
      case Marker::tool_end: state_ = State::content; break;
      case Marker::eos: state_ = State::done; break;
    }
  }
}

std::vector<Delta> StreamParser::feed(std::string_view chunk) {
  std::vector<Delta> out;
  if (finished_ || state_ == State::done) return out;
  pending_.append(chunk);
  step(false, out);
  return out;
}

std::vector<Delta> StreamParser::finish() {
  std::vector<Delta> out;
  if (finished_) return out;
  finished_ = true;
  if (state_ != State::done) step(true, out);
  pending_.clear();
  utf8_tail_.clear();
  return out;
}

void apply_deltas(ParsedMessage& m, const std::vector<Delta>& deltas) {
  for (const auto& d : deltas) {
    switch (d.kind) {
      case Delta::Kind::reasoning: m.reasoning += d.text; break;
      case Delta::Kind::content: m.content += d.text; break;
      case Delta::Kind::tool_call: m.tool_calls.push_back(d.call); break;
    }
  }
}

ParsedMessage parse(std::string_view text, const ParseOptions& options) {
  StreamParser p(options);
  ParsedMessage m;
  apply_deltas(m, p.feed(text));
  apply_deltas(m, p.finish());
  return m;
}

}  // namespace dsv4::chat
