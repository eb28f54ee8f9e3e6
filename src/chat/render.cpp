// DeepSeek-V4 prompt rendering: a line-by-line port of encode_messages() from the official
// encoding_dsv4.py (see protocol_text.h for the source and hashes). Function names follow the
// Python ones so the two can be read side by side.
#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "dsv4/chat/chat.h"
#include "protocol_text.h"

namespace dsv4::chat {

namespace {

constexpr std::string_view kImagePlaceholder = "<｜deepseek_image｜>";  // vLLM addition

Status bad(const std::string& msg) { return Status(ErrorCode::kInvalidArgument, msg); }

// Python truthiness.
bool truthy(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null: return false;
    case Json::value_t::boolean: return v.get<bool>();
    case Json::value_t::number_integer: return v.get<int64_t>() != 0;
    case Json::value_t::number_unsigned: return v.get<uint64_t>() != 0;
    case Json::value_t::number_float: return v.get<double>() != 0.0;
    case Json::value_t::string: return !v.get_ref<const std::string&>().empty();
    case Json::value_t::array:
    case Json::value_t::object: return !v.empty();
    default: return false;
  }
}

// msg.get(key) with None for a missing key.
const Json& get(const Json& obj, const char* key) {
  static const Json kNull;
  if (!obj.is_object()) return kNull;
  auto it = obj.find(key);
  return it == obj.end() ? kNull : *it;
}

std::string py_float_repr(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d < 0 ? "-Infinity" : "Infinity";
  std::array<char, 64> buf{};
  auto r = std::to_chars(buf.data(), buf.data() + buf.size(), d, std::chars_format::scientific);
  std::string s(buf.data(), r.ptr);
  std::string sign;
  if (!s.empty() && s[0] == '-') {
    sign = "-";
    s.erase(0, 1);
  }
  size_t epos = s.find('e');
  std::string mant = s.substr(0, epos);
  int exp10 = std::atoi(s.c_str() + epos + 1);
  std::string digits;
  for (char c : mant)
    if (c != '.') digits += c;
  while (digits.size() > 1 && digits.back() == '0') digits.pop_back();
  int decpt = exp10 + 1;  // digits d1 d2 ... with the point after decpt digits
  std::string out;
  if (decpt <= -4 || decpt > 16) {
    out = digits.substr(0, 1);
    if (digits.size() > 1) out += "." + digits.substr(1);
    char e[16];
    std::snprintf(e, sizeof e, "e%c%02d", exp10 < 0 ? '-' : '+', std::abs(exp10));
    out += e;
  } else if (decpt <= 0) {
    out = "0." + std::string(static_cast<size_t>(-decpt), '0') + digits;
  } else if (static_cast<size_t>(decpt) >= digits.size()) {
    out = digits + std::string(static_cast<size_t>(decpt) - digits.size(), '0') + ".0";
  } else {
    out = digits.substr(0, static_cast<size_t>(decpt)) + "." + digits.substr(static_cast<size_t>(decpt));
  }
  return sign + out;
}

void dump_string(const std::string& s, std::string& out) {
  out += '"';
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (c < 0x20) {
          char e[8];
          std::snprintf(e, sizeof e, "\\u%04x", c);
          out += e;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  out += '"';
}

void dump(const Json& v, std::string& out) {
  switch (v.type()) {
    case Json::value_t::null: out += "null"; break;
    case Json::value_t::boolean: out += v.get<bool>() ? "true" : "false"; break;
    case Json::value_t::number_integer: out += std::to_string(v.get<int64_t>()); break;
    case Json::value_t::number_unsigned: out += std::to_string(v.get<uint64_t>()); break;
    case Json::value_t::number_float: out += py_float_repr(v.get<double>()); break;
    case Json::value_t::string: dump_string(v.get_ref<const std::string&>(), out); break;
    case Json::value_t::array: {
      out += '[';
      bool first = true;
      for (const auto& e : v) {
        if (!first) out += ", ";
        first = false;
        dump(e, out);
      }
      out += ']';
      break;
    }
    case Json::value_t::object: {
      out += '{';
      bool first = true;
      for (auto it = v.begin(); it != v.end(); ++it) {
        if (!first) out += ", ";
        first = false;
        dump_string(it.key(), out);
        out += ": ";
        dump(it.value(), out);
      }
      out += '}';
      break;
    }
    default: out += "null"; break;  // binary / discarded: not produced by JSON input
  }
}

// str(value) as str.format would write it (repr-like for non-strings; containers as JSON).
std::string py_str(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_null()) return "None";
  if (v.is_boolean()) return v.get<bool>() ? "True" : "False";
  return py_json_dumps(v);
}

// `value or ""`
std::string or_empty(const Json& v) { return truthy(v) ? py_str(v) : std::string(); }

// flatten_content_blocks (vLLM 0.33): list content -> text parts joined by "\n\n".
Json flatten_content_blocks(const Json& content) {
  if (!content.is_array()) return content;
  std::string out;
  bool first = true;
  for (const auto& b : content) {
    if (!first) out += "\n\n";
    first = false;
    if (!b.is_object()) {
      out += py_str(b);
    } else {
      const Json& t = get(b, "type");
      if (t == "image" || t == "image_url") {
        out += kImagePlaceholder;
      } else if (t == "text") {
        out += b.contains("text") ? py_str(b["text"]) : std::string();
      } else {
        // The Python raises here; we keep the text-only reading.
        out += "[Unsupported " + py_str(t) + "]";
      }
    }
  }
  return out;
}

std::string render_tools(const Json& tools) {
  std::string s(text::kToolsTemplateHead);
  bool first = true;
  for (const auto& t : tools) {
    if (!first) s += "\n";
    first = false;
    s += py_json_dumps(get(t, "function"));
  }
  s += text::kToolsTemplateTail;
  return s;
}

std::string_view effort_prefix(Revision rev, const std::string& effort) {
  if (rev == Revision::preview) return effort == "max" ? text::kEffortAbsoluteMaximum : std::string_view();
  if (effort == "high") return text::kEffortAbsoluteMaximum;
  if (effort == "max") return text::kEffortBeyondMaximum;
  return {};
}

int find_last_user_index(const Json& messages) {
  for (int i = static_cast<int>(messages.size()) - 1; i >= 0; --i) {
    const Json& r = get(messages[static_cast<size_t>(i)], "role");
    if (r == "user" || r == "developer") return i;
  }
  return -1;
}

Json merge_tool_messages(const Json& messages, bool vllm) {
  Json merged = Json::array();
  for (const auto& msg : messages) {
    const Json& role = get(msg, "role");
    if (role == "tool") {
      Json block = Json::object();
      block["type"] = "tool_result";
      block["tool_use_id"] = msg.contains("tool_call_id") ? msg["tool_call_id"] : Json("");
      block["content"] = msg.contains("content") ? msg["content"] : Json("");
      if (!merged.empty() && get(merged.back(), "role") == "user" && merged.back().contains("content_blocks")) {
        merged.back()["content_blocks"].push_back(block);
      } else {
        Json m = Json::object();
        m["role"] = "user";
        m["content_blocks"] = Json::array({block});
        merged.push_back(std::move(m));
      }
    } else if (role == "user") {
      Json text_content = msg.contains("content") ? msg["content"] : Json("");
      if (vllm) text_content = flatten_content_blocks(text_content);
      Json text_block = Json::object();
      text_block["type"] = "text";
      text_block["text"] = text_content;
      if (!merged.empty() && get(merged.back(), "role") == "user" && merged.back().contains("content_blocks") &&
          get(merged.back(), "task").is_null()) {
        merged.back()["content_blocks"].push_back(text_block);
      } else {
        Json m = Json::object();
        m["role"] = "user";
        m["content"] = text_content;
        m["content_blocks"] = Json::array({text_block});
        for (const char* key : {"task", "wo_eos", "mask"})
          if (msg.contains(key)) m[key] = msg[key];
        merged.push_back(std::move(m));
      }
    } else {
      merged.push_back(msg);
    }
  }
  return merged;
}

void sort_tool_results_by_call_order(Json& messages) {
  std::vector<std::pair<Json, int>> order;  // Python dict: later ids overwrite earlier ones
  auto lookup = [&](const Json& id) {
    for (auto it = order.rbegin(); it != order.rend(); ++it)
      if (it->first == id) return it->second;
    return 0;
  };
  for (auto& msg : messages) {
    const Json& role = get(msg, "role");
    if (role == "assistant" && truthy(get(msg, "tool_calls"))) {
      order.clear();
      int idx = 0;
      for (const auto& tc : msg["tool_calls"]) {
        Json id = get(tc, "id");
        if (!truthy(id)) {
          id = get(get(tc, "function"), "id");
          if (id.is_null()) id = "";
        }
        if (truthy(id)) order.emplace_back(id, idx);
        ++idx;
      }
    } else if (role == "user" && truthy(get(msg, "content_blocks"))) {
      Json& blocks = msg["content_blocks"];
      std::vector<Json> tool_blocks;
      for (const auto& b : blocks)
        if (get(b, "type") == "tool_result") tool_blocks.push_back(b);
      if (tool_blocks.size() > 1 && !order.empty()) {
        std::stable_sort(tool_blocks.begin(), tool_blocks.end(), [&](const Json& x, const Json& y) {
          const Json& ix = x.contains("tool_use_id") ? x["tool_use_id"] : Json("");
          const Json& iy = y.contains("tool_use_id") ? y["tool_use_id"] : Json("");
          return lookup(ix) < lookup(iy);
        });
        size_t k = 0;
        for (auto& b : blocks)
          if (get(b, "type") == "tool_result") b = tool_blocks[k++];
      }
    }
  }
}

Json drop_thinking_messages(const Json& messages) {
  int last_user_idx = find_last_user_index(messages);
  Json result = Json::array();
  int idx = 0;
  for (const auto& msg : messages) {
    const Json& role = get(msg, "role");
    if (role == "user" || role == "system" || role == "tool" || role == "latest_reminder" ||
        role == "direct_search_results" || idx >= last_user_idx) {
      result.push_back(msg);
    } else if (role == "assistant") {
      Json m = msg;
      m.erase("reasoning");
      result.push_back(std::move(m));
    }
    ++idx;
  }
  return result;
}

Result<std::string> encode_arguments_to_dsml(const Json& tc, size_t mi) {
  const Json& fn = get(tc, "function");
  Json args = get(fn, "arguments");
  if (args.is_string()) {
    args = Json::parse(args.get<std::string>(), nullptr, false);
    if (args.is_discarded())
      return bad("messages[" + std::to_string(mi) + "].tool_calls: arguments is not valid JSON");
  }
  if (!args.is_object())
    return bad("messages[" + std::to_string(mi) + "].tool_calls: arguments must be a JSON object");
  std::string out;
  bool first = true;
  for (auto it = args.begin(); it != args.end(); ++it) {
    if (!first) out += "\n";
    first = false;
    const bool is_str = it.value().is_string();
    out += "<";
    out += text::kDsml;
    out += "parameter name=\"" + it.key() + "\" string=\"" + (is_str ? "true" : "false") + "\">";
    out += is_str ? it.value().get<std::string>() : py_json_dumps(it.value());
    out += "</";
    out += text::kDsml;
    out += "parameter>";
  }
  return out;
}

std::string_view task_token(const Json& task) {
  if (!task.is_string()) return {};
  for (const auto& t : text::kTaskTokens)
    if (t.task == task.get_ref<const std::string&>()) return t.token;
  return {};
}

Result<std::string> render_message(size_t index, const Json& messages, const RenderOptions& o, bool drop_thinking,
                                   int last_user_idx) {
  const Json& msg = messages[index];
  const std::string where = "messages[" + std::to_string(index) + "]";
  std::string prompt;
  const Json& role = get(msg, "role");
  Json content = o.vllm_additions ? flatten_content_blocks(get(msg, "content")) : get(msg, "content");
  const Json& tools = get(msg, "tools");
  const Json& response_format = get(msg, "response_format");
  const Json& tool_calls = get(msg, "tool_calls");
  const bool wo_eos = truthy(get(msg, "wo_eos"));
  const int iidx = static_cast<int>(index);

  if (index == 0 && o.thinking) prompt += effort_prefix(o.revision, o.reasoning_effort);

  if (role == "system") {
    prompt += or_empty(content);
    if (truthy(tools)) prompt += "\n\n" + render_tools(tools);
    if (truthy(response_format)) {
      prompt += "\n\n";
      prompt += text::kResponseFormatPrefix;
      prompt += py_json_dumps(response_format);
    }
  } else if (role == "developer") {
    if (!truthy(content)) return bad(where + ": a developer message needs content");
    prompt += text::kUser;
    prompt += py_str(content);
    if (truthy(tools)) prompt += "\n\n" + render_tools(tools);
    if (truthy(response_format)) {
      prompt += "\n\n";
      prompt += text::kResponseFormatPrefix;
      prompt += py_json_dumps(response_format);
    }
  } else if (role == "user") {
    prompt += text::kUser;
    const Json& blocks = get(msg, "content_blocks");
    if (truthy(blocks)) {
      bool first = true;
      for (const auto& block : blocks) {
        if (!first) prompt += "\n\n";
        first = false;
        const Json& type = get(block, "type");
        if (type == "text") {
          const Json& t = get(block, "text");
          prompt += t.is_null() ? std::string() : py_str(t);
        } else if (o.vllm_additions && (type == "image" || type == "image_url")) {
          prompt += kImagePlaceholder;
        } else if (type == "tool_result") {
          const Json& tc = block.contains("content") ? block["content"] : Json("");
          std::string tool_content;
          if (tc.is_array()) {
            bool f2 = true;
            for (const auto& b : tc) {
              if (!f2) tool_content += "\n\n";
              f2 = false;
              if (get(b, "type") == "text") {
                tool_content += b.contains("text") ? py_str(b["text"]) : std::string();
              } else {
                tool_content += "[Unsupported " + py_str(get(b, "type")) + "]";
              }
            }
          } else {
            tool_content = tc.is_null() ? std::string() : py_str(tc);
          }
          prompt += text::kToolResultOpen;
          prompt += tool_content;
          prompt += text::kToolResultClose;
        } else {
          prompt += "[Unsupported " + py_str(type) + "]";
        }
      }
    } else {
      prompt += or_empty(content);
    }
  } else if (role == "latest_reminder") {
    prompt += text::kLatestReminder;
    prompt += content.is_null() ? std::string() : py_str(content);
  } else if (role == "assistant") {
    std::string thinking_part, tc_content;
    if (truthy(tool_calls)) {
      if (!tool_calls.is_array()) return bad(where + ".tool_calls must be an array");
      tc_content += "\n\n<";
      tc_content += text::kDsml;
      tc_content += text::kToolCallsBlockName;
      tc_content += ">\n";
      bool first = true;
      for (const auto& tc : tool_calls) {
        if (!first) tc_content += "\n";
        first = false;
        auto args = encode_arguments_to_dsml(tc, index);
        if (!args) return args.status();
        tc_content += "<";
        tc_content += text::kDsml;
        tc_content += "invoke name=\"" + py_str(get(get(tc, "function"), "name")) + "\">\n" + *args + "\n</";
        tc_content += text::kDsml;
        tc_content += "invoke>";
      }
      tc_content += "\n</";
      tc_content += text::kDsml;
      tc_content += text::kToolCallsBlockName;
      tc_content += ">";
    }
    const bool prev_has_task = index >= 1 && !get(messages[index - 1], "task").is_null();
    if (o.thinking && !prev_has_task && (!drop_thinking || iidx > last_user_idx)) {
      thinking_part = or_empty(get(msg, "reasoning"));
      thinking_part += text::kThinkEnd;
    }
    prompt += thinking_part + or_empty(content) + tc_content;
    if (!wo_eos) prompt += text::kEos;
  } else if (role == "tool") {
    return bad(where + ": tool message was not merged");  // unreachable after merge
  } else {
    return bad(where + ": invalid role " + py_str(role));
  }

  // Transition tokens, based on what follows.
  if (index + 1 < messages.size()) {
    const Json& next = get(messages[index + 1], "role");
    if (next != "assistant" && next != "latest_reminder") return prompt;
  }
  const Json& task = get(msg, "task");
  if (!task.is_null()) {
    std::string_view tok = task_token(task);
    if (tok.empty()) return bad(where + ": invalid task " + py_str(task));
    if (task != "action") {
      prompt += tok;
    } else {
      prompt += text::kAssistant;
      prompt += o.thinking ? text::kThinkStart : text::kThinkEnd;
      prompt += tok;
    }
  } else if (role == "user" || role == "developer" ||
             (o.vllm_additions && role == "system" &&
              (index + 1 == messages.size() || get(messages[index + 1], "role") == "assistant"))) {
    prompt += text::kAssistant;
    const bool open = o.thinking && (!drop_thinking || iidx >= last_user_idx);
    prompt += open ? text::kThinkStart : text::kThinkEnd;
  }
  return prompt;
}

}  // namespace

const char* revision_name(Revision r) { return r == Revision::preview ? "preview" : "0731"; }

Revision detect_revision(std::string_view s) {
  return s.find("0731") != std::string_view::npos ? Revision::r0731 : Revision::preview;
}

std::string py_json_dumps(const Json& value) {
  std::string out;
  dump(value, out);
  return out;
}

Result<EffortChoice> resolve_effort(Revision revision, std::string_view requested) {
  std::string r(requested.empty() ? "high" : requested);
  if (r == "none") return EffortChoice{false, ""};
  if (revision == Revision::preview) {
    if (r == "low" || r == "minimal" || r == "medium" || r == "high") return EffortChoice{true, "high"};
    if (r == "max" || r == "xhigh") return EffortChoice{true, "max"};
  } else {
    if (r == "low" || r == "minimal") return EffortChoice{true, "low"};
    if (r == "medium" || r == "high") return EffortChoice{true, "high"};
    if (r == "max" || r == "xhigh") return EffortChoice{true, "max"};
  }
  return Status(ErrorCode::kInvalidArgument, "reasoning_effort: unknown value '" + r + "'");
}

Result<std::string> render(const Json& messages_in, const RenderOptions& o) {
  if (!messages_in.is_array()) return bad("messages must be an array");
  for (size_t i = 0; i < messages_in.size(); ++i)
    if (!messages_in[i].is_object()) return bad("messages[" + std::to_string(i) + "] must be an object");
  const std::string& e = o.reasoning_effort;
  const bool ok_effort = o.revision == Revision::preview ? (e.empty() || e == "high" || e == "max")
                                                         : (e.empty() || e == "low" || e == "high" || e == "max");
  if (!ok_effort)
    return bad(std::string("reasoning_effort '") + e + "' is not accepted by the " + revision_name(o.revision) +
               " encoder");

  Json messages = merge_tool_messages(messages_in, o.vllm_additions);
  sort_tool_results_by_call_order(messages);

  std::string prompt = o.add_bos ? std::string(text::kBos) : std::string();
  bool drop = o.drop_thinking;
  for (const auto& m : messages)
    if (truthy(get(m, "tools"))) drop = false;
  if (o.thinking && drop) messages = drop_thinking_messages(messages);
  const int last_user_idx = find_last_user_index(messages);
  for (size_t i = 0; i < messages.size(); ++i) {
    auto part = render_message(i, messages, o, drop, last_user_idx);
    if (!part) return part.status();
    prompt += *part;
  }
  return prompt;
}

}  // namespace dsv4::chat
