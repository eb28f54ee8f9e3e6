// dsv4-tokenize: text → token ids with the DeepSeek-V4 tokenizer (tokenizer.json).
//
//   dsv4-tokenize -t tokenizer.json -p "Hello 世界"          # plain user text
//   echo -n '<｜User｜>hi<｜Assistant｜>' | dsv4-tokenize -t tokenizer.json --rendered
//   dsv4-tokenize -m model.gguf -p "text"                 # vocabulary from GGUF tokenizer.ggml.*
//   dsv4-tokenize --render chat.json [-m model.gguf] [--revision 0731]
//       # renders a chat (a messages array, or {"messages": [...], "reasoning_effort": "high",
//       # "thinking": true}) with the official DeepSeek-V4 prompt format; prints the prompt, or
//       # with -t/-m its ids in rendered mode. The format revision defaults from the model file
//       # (name or embedded template containing "0731") and is logged on stderr.
//
// Prints the ids, one line per token (id, the token's stored string, its decoded bytes), and the
// count. --ids-only prints just the ids on one line. Plain mode never matches added tokens (user
// content); --rendered matches them longest-first (text the chat renderer produced).
// Exit status: 0 ok, 1 bad input or file (message on stderr).
#include <CLI/CLI.hpp>
#include <cstdio>
#include <fmt/core.h>
#include <iostream>
#include <iterator>
#include <string>

#include <fstream>

#include "dsv4/chat/chat.h"
#include "dsv4/format/gguf.h"
#include "dsv4/tokenizer/tokenizer.h"

namespace {

// Shows a byte string readably: printable UTF-8 as is, controls and invalid bytes escaped.
std::string show(const std::string& s) {
  std::string out;
  const std::string fixed = dsv4::utf8_replace_invalid(s);
  const bool valid = fixed.size() == s.size() && fixed == s;
  for (unsigned char c : s) {
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\\') {
      out += "\\\\";
    } else if (c < 0x20 || c == 0x7f || (!valid && c >= 0x80)) {
      out += fmt::format("\\x{:02x}", c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dsv4-tokenize: DeepSeek-V4 tokenizer (ids, pieces, count)"};
  std::string tokenizer_path, gguf_path, prompt;
  bool rendered = false, ids_only = false;
  auto* t_opt = app.add_option("-t,--tokenizer", tokenizer_path, "tokenizer.json (HF tokenizers format)");
  auto* m_opt = app.add_option("-m,--model", gguf_path, "GGUF file whose tokenizer.ggml.* metadata to use");
  t_opt->excludes(m_opt);
  m_opt->excludes(t_opt);
  auto* p_opt = app.add_option("-p,--prompt", prompt, "text to tokenize (default: read stdin)");
  app.add_flag("--rendered", rendered,
               "match added tokens (<｜User｜>, </think>, ...) longest-first, as for a rendered prompt; "
               "default treats the text as plain user content");
  app.add_flag("--ids-only", ids_only, "print only the ids, space-separated, on one line");
  std::string render_path, revision_s;
  auto* r_opt = app.add_option("--render", render_path,
                               "chat JSON file ('-' = stdin) to render with the DeepSeek-V4 prompt format");
  r_opt->excludes(p_opt);
  app.add_option("--revision", revision_s, "prompt-format revision: preview | 0731 (default: from the model file)")
      ->check(CLI::IsMember({"preview", "0731"}));
  CLI11_PARSE(app, argc, argv);

  if (!render_path.empty()) {
    std::string text;
    if (render_path == "-") {
      text.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    } else {
      std::ifstream in(render_path, std::ios::binary);
      if (!in) {
        fmt::print(stderr, "dsv4-tokenize: cannot open '{}'\n", render_path);
        return 1;
      }
      text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    }
    dsv4::chat::Json j = dsv4::chat::Json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !(j.is_array() || (j.is_object() && j.contains("messages")))) {
      fmt::print(stderr, "dsv4-tokenize: {}: not a messages array or an object with \"messages\"\n", render_path);
      return 1;
    }
    // Revision: the flag, else the model file (GGUF general.name / embedded template, or the path).
    std::string source = !gguf_path.empty() ? gguf_path : tokenizer_path;
    if (!gguf_path.empty()) {
      dsv4::GgufParseOptions o;
      o.require_data = false;
      if (auto g = dsv4::GgufFile::open(gguf_path, o)) {
        for (const char* k : {"general.name", "tokenizer.chat_template"}) {
          if (auto s = g->get_string(k)) source += std::string(" ") + std::string(*s);
        }
      }
    }
    dsv4::chat::RenderOptions ro;
    ro.revision = revision_s.empty() ? dsv4::chat::detect_revision(source)
                                     : (revision_s == "0731" ? dsv4::chat::Revision::r0731 : dsv4::chat::Revision::preview);
    fmt::print(stderr, "chat format revision: {} ({})\n", dsv4::chat::revision_name(ro.revision),
               revision_s.empty() ? "from the model file" : "--revision");
    const dsv4::chat::Json messages = j.is_array() ? j : j["messages"];
    std::string effort = j.is_object() ? j.value("reasoning_effort", std::string()) : std::string();
    auto choice = dsv4::chat::resolve_effort(ro.revision, effort);
    if (!choice) {
      fmt::print(stderr, "dsv4-tokenize: {}\n", choice.status().to_string());
      return 1;
    }
    ro.thinking = j.is_object() && j.contains("thinking") && j["thinking"].is_boolean() ? j["thinking"].get<bool>()
                                                                                       : choice->thinking;
    ro.reasoning_effort = ro.thinking ? choice->encoder_effort : std::string();
    auto out = dsv4::chat::render(messages, ro);
    if (!out) {
      fmt::print(stderr, "dsv4-tokenize: {}\n", out.status().to_string());
      return 1;
    }
    if (tokenizer_path.empty() && gguf_path.empty()) {
      fmt::print("{}", *out);
      return 0;
    }
    prompt = *out;
    rendered = true;
  } else if (p_opt->count() == 0) {
    prompt.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  }
  if (tokenizer_path.empty() && gguf_path.empty()) {
    fmt::print(stderr, "dsv4-tokenize: give -t tokenizer.json or -m model.gguf\n");
    return 1;
  }
  auto tok = [&]() -> dsv4::Result<dsv4::Tokenizer> {
    if (!tokenizer_path.empty()) return dsv4::Tokenizer::from_file(tokenizer_path);
    dsv4::GgufParseOptions opts;
    opts.require_data = false;
    auto g = dsv4::GgufFile::open(gguf_path, opts);
    if (!g) return g.status();
    return dsv4::Tokenizer::from_gguf(*g, gguf_path);
  }();
  if (!tok) {
    fmt::print(stderr, "dsv4-tokenize: {}\n", tok.status().to_string());
    return 1;
  }
  auto ids = rendered ? tok->encode_rendered(prompt) : tok->encode_text(prompt);
  if (!ids) {
    fmt::print(stderr, "dsv4-tokenize: {}\n", ids.status().to_string());
    return 1;
  }
  if (ids_only) {
    std::string line;
    for (size_t i = 0; i < ids->size(); ++i) line += (i ? " " : "") + std::to_string((*ids)[i]);
    fmt::print("{}\n", line);
    return 0;
  }
  fmt::print("ids: [");
  for (size_t i = 0; i < ids->size(); ++i) fmt::print("{}{}", i ? ", " : "", (*ids)[i]);
  fmt::print("]\n");
  for (dsv4::TokenId id : *ids) {
    fmt::print("{:>7}  {:<24}  '{}'{}\n", id, show(tok->token_text(id)), show(tok->token_bytes(id)),
               tok->is_added(id) ? (tok->is_special(id) ? "  [special]" : "  [added]") : "");
  }
  fmt::print("count: {} tokens, {} bytes ({})\n", ids->size(), prompt.size(), rendered ? "rendered" : "plain");
  return 0;
}
