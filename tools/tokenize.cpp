// dsv4-tokenize: text → token ids with the DeepSeek-V4 tokenizer (tokenizer.json).
//
//   dsv4-tokenize -t tokenizer.json -p "Hello 世界"          # plain user text
//   echo -n '<｜User｜>hi<｜Assistant｜>' | dsv4-tokenize -t tokenizer.json --rendered
//   dsv4-tokenize -m model.gguf -p "text"                 # vocabulary from GGUF tokenizer.ggml.*
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
  CLI11_PARSE(app, argc, argv);

  if (p_opt->count() == 0) {
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
