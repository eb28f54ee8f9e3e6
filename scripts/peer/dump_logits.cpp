// dump_logits: run upstream llama.cpp (libllama C API) on a token id sequence and write the logits
// at every position as a float32 .npy of shape [n_tokens, n_vocab].
//
// This is our own harness (not upstream code); scripts/peer/build.sh compiles it against the
// libllama built from the vendored llama.cpp tree under build/peer/.
//
// Usage:
//   dump_logits -m MODEL.gguf -t TOKENS (.npy int32/int64/uint32, or a text file of ids separated by
//               whitespace/commas) -o OUT.npy [--mode batch|chunked|token] [--chunk N]
//               [--threads N] [--fa auto|on|off] [--kv f32|f16|bf16|q8_0] [--n-ctx N] [--verbose]
//               [--dump-topk PREFIX] [--prefill P] [--dump-tensors NAMES --dump-prefix PREFIX]
//
// --dump-topk PREFIX: also capture, through the scheduler's eval callback, the lightning indexer's
//   selections (graph tensor "lid_top_k-<il>", int32 indices into the layer's compressed rows) and its
//   masked scores ("lid_score_masked-<il>") for every CSA layer, and write
//   PREFIX.L<il>.topk.npy   int32 [n_tokens, top_k]   (-1 where the index points at a masked row)
//   PREFIX.L<il>.score.npy  float32 [n_tokens, n_rows] (n_rows = n_tokens/4 rounded up; -inf = masked)
//   Row r of both is position r. Slower (the graph is evaluated in pieces).
//
// --dump-tensors NAMES --dump-prefix PREFIX: NAMES a comma list of graph tensor base names (e.g.
//   "kv,attn_norm,ffn_out"); every F32 or I32 graph tensor named "<base>-<il>" (il ≥ 0 or -1) is
//   written, once per llama_decode call c, as PREFIX.<base>-<il>.<c>.npy, float32 / int32
//   [ne3, ne2, ne1, ne0] (contiguous copies; views are skipped). For locating the first op where
//   two engines part, and for the routers' choices ("ffn_moe_argsort": every expert, best first).
//   May be combined with --dump-topk.
//
// Modes:
//   batch   : all tokens in one llama_decode (n_batch = n_ubatch = n_tokens), logits for all.
//   chunked : consecutive llama_decode calls of --chunk tokens each (n_batch = n_ubatch = chunk).
//   token   : one llama_decode per token (n_batch = n_ubatch = 1).
//   decode  : the first --prefill P tokens in one llama_decode, then one token per call
//             (n_batch = n_ubatch = P); the reference's "prefill then decode" protocol.
// Positions are given explicitly (0..n-1), sequence id 0, one sequence, fresh context per run.
#include "llama.h"

#include "ggml-backend.h"

#include <cerrno>
#include <cmath>
#include <map>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

[[noreturn]] void die(const std::string & msg) {
    std::fprintf(stderr, "dump_logits: %s\n", msg.c_str());
    std::exit(1);
}

std::string read_all(const std::string & path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) die("cannot open " + path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// Minimal .npy reader for 1-D (or N-D, flattened) little-endian integer arrays, C order.
std::vector<llama_token> read_npy_tokens(const std::string & path) {
    const std::string data = read_all(path);
    if (data.size() < 10 || data.compare(0, 6, "\x93NUMPY") != 0) die(path + ": not a .npy file");
    const uint8_t major = static_cast<uint8_t>(data[6]);
    size_t hlen = 0, hoff = 0;
    if (major == 1) {
        hlen = static_cast<uint8_t>(data[8]) | (static_cast<uint8_t>(data[9]) << 8);
        hoff = 10;
    } else {
        if (data.size() < 12) die(path + ": truncated header");
        hlen = static_cast<uint32_t>(static_cast<uint8_t>(data[8])) |
               (static_cast<uint32_t>(static_cast<uint8_t>(data[9])) << 8) |
               (static_cast<uint32_t>(static_cast<uint8_t>(data[10])) << 16) |
               (static_cast<uint32_t>(static_cast<uint8_t>(data[11])) << 24);
        hoff = 12;
    }
    const std::string header = data.substr(hoff, hlen);
    if (header.find("'fortran_order': True") != std::string::npos) die(path + ": fortran order not supported");
    const size_t dpos = header.find("'descr':");
    if (dpos == std::string::npos) die(path + ": no descr");
    const size_t q1 = header.find('\'', dpos + 8);
    const size_t q2 = header.find('\'', q1 + 1);
    const std::string descr = header.substr(q1 + 1, q2 - q1 - 1);
    const char * p = data.data() + hoff + hlen;
    const size_t nbytes = data.size() - hoff - hlen;
    std::vector<llama_token> out;
    auto check_le = [&](const std::string & d) {
        if (!(d[0] == '<' || d[0] == '|')) die(path + ": big-endian dtype " + d + " not supported");
    };
    check_le(descr);
    const std::string t = descr.substr(1);
    if (t == "i4" || t == "u4") {
        out.resize(nbytes / 4);
        for (size_t i = 0; i < out.size(); ++i) {
            int32_t v;
            std::memcpy(&v, p + 4 * i, 4);
            out[i] = v;
        }
    } else if (t == "i8" || t == "u8") {
        out.resize(nbytes / 8);
        for (size_t i = 0; i < out.size(); ++i) {
            int64_t v;
            std::memcpy(&v, p + 8 * i, 8);
            if (v < 0 || v > INT32_MAX) die(path + ": token id out of range");
            out[i] = static_cast<llama_token>(v);
        }
    } else {
        die(path + ": unsupported dtype " + descr + " (want int32/int64)");
    }
    return out;
}

std::vector<llama_token> read_text_tokens(const std::string & path) {
    std::string s = read_all(path);
    for (char & c : s) {
        if (c == ',' || c == '[' || c == ']') c = ' ';
    }
    std::istringstream is(s);
    std::vector<llama_token> out;
    long long v;
    while (is >> v) out.push_back(static_cast<llama_token>(v));
    if (!is.eof()) die(path + ": could not parse token list");
    return out;
}

void write_npy_f32(const std::string & path, const std::vector<float> & data, size_t rows, size_t cols) {
    std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(rows) + ", " +
                         std::to_string(cols) + "), }";
    // total header (magic 6 + ver 2 + len 2 + header + '\n') padded to a multiple of 64
    size_t total = 10 + header.size() + 1;
    const size_t pad = (64 - total % 64) % 64;
    header.append(pad, ' ');
    header.push_back('\n');
    FILE * f = std::fopen(path.c_str(), "wb");
    if (!f) die("cannot write " + path + ": " + std::strerror(errno));
    const unsigned char magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    std::fwrite(magic, 1, 8, f);
    const uint16_t hl = static_cast<uint16_t>(header.size());
    const unsigned char hlb[2] = {static_cast<unsigned char>(hl & 0xff), static_cast<unsigned char>(hl >> 8)};
    std::fwrite(hlb, 1, 2, f);
    std::fwrite(header.data(), 1, header.size(), f);
    if (std::fwrite(data.data(), sizeof(float), data.size(), f) != data.size()) die("short write to " + path);
    std::fclose(f);
}

// .npy v1.0: descr a numpy dtype ("<f4", "<i4"), shape a Python tuple ("(2, 3)")
void write_npy_shaped(const std::string & path, const void * data, size_t nbytes, const char * descr,
                      const std::string & shape) {
    std::string header = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': " + shape + ", }";
    const size_t total = 10 + header.size() + 1;
    header.append((64 - total % 64) % 64, ' ');
    header.push_back('\n');
    FILE * f = std::fopen(path.c_str(), "wb");
    if (!f) die("cannot write " + path + ": " + std::strerror(errno));
    const unsigned char magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    std::fwrite(magic, 1, 8, f);
    const uint16_t hl = static_cast<uint16_t>(header.size());
    const unsigned char hlb[2] = {static_cast<unsigned char>(hl & 0xff), static_cast<unsigned char>(hl >> 8)};
    std::fwrite(hlb, 1, 2, f);
    std::fwrite(header.data(), 1, header.size(), f);
    if (std::fwrite(data, 1, nbytes, f) != nbytes) die("short write to " + path);
    std::fclose(f);
}

void write_npy(const std::string & path, const void * data, size_t nbytes, const char * descr, size_t rows,
               size_t cols) {
    write_npy_shaped(path, data, nbytes, descr, "(" + std::to_string(rows) + ", " + std::to_string(cols) + ")");
}

bool g_verbose = false;

// A ggml tensor's contiguous copy, shape [ne3, ne2, ne1, ne0]; descr "<f4" or "<i4" (4-byte elements)
void write_npy_nd(const std::string & path, const void * data, const int64_t * ne, const char * descr) {
    write_npy_shaped(path, data, static_cast<size_t>(ne[0] * ne[1] * ne[2] * ne[3]) * 4, descr,
                     "(" + std::to_string(ne[3]) + ", " + std::to_string(ne[2]) + ", " + std::to_string(ne[1]) + ", " +
                         std::to_string(ne[0]) + ")");
}

// Indexer capture: per layer, rows appended in decode order (= position order, one sequence).
struct topk_capture {
    std::map<int, std::vector<std::vector<int32_t>>> topk;   // il -> per position indices
    std::map<int, std::vector<std::vector<float>>>   score;  // il -> per position masked scores
    int cur_tokens = 0;
};

// exact "<prefix><digits>" (views are named "<name> (view)" and are skipped)
bool name_is(const char * name, const char * prefix) {
    const size_t n = std::strlen(prefix);
    if (std::strncmp(name, prefix, n) != 0 || name[n] == '\0') return false;
    for (const char * c = name + n; *c; ++c) {
        if (*c < '0' || *c > '9') return false;
    }
    return true;
}

// Generic capture (--dump-tensors).
struct tensor_capture {
    std::vector<std::string> bases;
    std::string prefix;
    int call = 0;
};
tensor_capture g_tcap;

bool tcap_wants(const char * name) {
    for (const auto & b : g_tcap.bases) {
        const std::string p = b + "-";
        if (std::strncmp(name, p.c_str(), p.size()) != 0) continue;
        const char * c = name + p.size();
        if (*c == '-') ++c;
        if (*c == '\0') continue;
        bool digits = true;
        for (; *c; ++c) digits = digits && *c >= '0' && *c <= '9';
        if (digits) return true;
    }
    return false;
}

bool eval_cb(struct ggml_tensor * t, bool ask, void * ud) {
    if (!g_tcap.bases.empty() && tcap_wants(t->name)) {
        if (ask) return true;
        if ((t->type == GGML_TYPE_F32 || t->type == GGML_TYPE_I32) && ggml_is_contiguous(t)) {
            std::vector<uint32_t> buf(ggml_nelements(t));
            ggml_backend_tensor_get(t, buf.data(), 0, buf.size() * 4);
            write_npy_nd(g_tcap.prefix + "." + t->name + "." + std::to_string(g_tcap.call) + ".npy", buf.data(), t->ne,
                         t->type == GGML_TYPE_F32 ? "<f4" : "<i4");
        } else if (g_verbose) {
            std::fprintf(stderr, "dump_logits: skip %s (%s, contiguous %d)\n", t->name, ggml_type_name(t->type),
                         ggml_is_contiguous(t) ? 1 : 0);
        }
        return true;
    }
    if (ud == nullptr) return !ask;  // --dump-tensors alone: nothing else to capture
    const bool is_topk = name_is(t->name, "lid_top_k-");
    const bool is_score = name_is(t->name, "lid_score_masked-");
    if (ask) return is_topk || is_score;
    if (!is_topk && !is_score) return true;
    auto * cap = static_cast<topk_capture *>(ud);
    const int il = std::atoi(std::strchr(t->name, '-') + 1);
    const int64_t ne0 = t->ne[0];
    const int64_t nrow = ggml_nrows(t);
    if (g_verbose) {
        std::fprintf(stderr, "dump_logits: capture %s type %s ne [%lld %lld %lld %lld]\n", t->name, ggml_type_name(t->type),
                     (long long) t->ne[0], (long long) t->ne[1], (long long) t->ne[2], (long long) t->ne[3]);
    }
    if (nrow != cap->cur_tokens) {
        std::fprintf(stderr, "dump_logits: warning: %s has %lld rows for %d tokens; skipped\n", t->name,
                     (long long) nrow, cap->cur_tokens);
        return true;
    }
    if (!ggml_is_contiguous(t)) die(std::string("non-contiguous ") + t->name);
    if (is_topk) {
        if (t->type != GGML_TYPE_I32) die(std::string("unexpected type for ") + t->name);
        std::vector<int32_t> buf(ne0 * nrow);
        ggml_backend_tensor_get(t, buf.data(), 0, buf.size() * sizeof(int32_t));
        for (int64_t r = 0; r < nrow; ++r)
            cap->topk[il].emplace_back(buf.begin() + r * ne0, buf.begin() + (r + 1) * ne0);
    } else {
        if (t->type != GGML_TYPE_F32) die(std::string("unexpected type for ") + t->name);
        std::vector<float> buf(ne0 * nrow);
        ggml_backend_tensor_get(t, buf.data(), 0, buf.size() * sizeof(float));
        for (int64_t r = 0; r < nrow; ++r)
            cap->score[il].emplace_back(buf.begin() + r * ne0, buf.begin() + (r + 1) * ne0);
    }
    return true;
}


void log_cb(enum ggml_log_level level, const char * text, void *) {
    if (g_verbose || level >= GGML_LOG_LEVEL_WARN) std::fputs(text, stderr);
}

ggml_type parse_kv(const std::string & s) {
    if (s == "f32") return GGML_TYPE_F32;
    if (s == "f16") return GGML_TYPE_F16;
    if (s == "bf16") return GGML_TYPE_BF16;
    if (s == "q8_0") return GGML_TYPE_Q8_0;
    die("unknown --kv type " + s);
}

}  // namespace

int main(int argc, char ** argv) {
    std::string model_path, tokens_path, out_path, mode = "batch", fa = "off", kv = "f32", topk_prefix;
    int chunk = 64, threads = 2, n_ctx_arg = 0, prefill = 0;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) die("missing value for " + a);
            return argv[++i];
        };
        if (a == "-m") model_path = next();
        else if (a == "-t") tokens_path = next();
        else if (a == "-o") out_path = next();
        else if (a == "--mode") mode = next();
        else if (a == "--chunk") chunk = std::atoi(next().c_str());
        else if (a == "--prefill") prefill = std::atoi(next().c_str());
        else if (a == "--threads") threads = std::atoi(next().c_str());
        else if (a == "--fa") fa = next();
        else if (a == "--kv") kv = next();
        else if (a == "--n-ctx") n_ctx_arg = std::atoi(next().c_str());
        else if (a == "--verbose") g_verbose = true;
        else if (a == "--dump-topk") topk_prefix = next();
        else if (a == "--dump-tensors") {
            std::stringstream ss(next());
            for (std::string b; std::getline(ss, b, ',');) if (!b.empty()) g_tcap.bases.push_back(b);
        }
        else if (a == "--dump-prefix") g_tcap.prefix = next();
        else die("unknown argument " + a);
    }
    if (model_path.empty() || tokens_path.empty() || out_path.empty()) {
        die("usage: dump_logits -m MODEL.gguf -t TOKENS(.npy|.txt) -o OUT.npy [--mode batch|chunked|token|decode] "
            "[--chunk N] [--prefill P] [--threads N] [--fa auto|on|off] [--kv f32|f16|bf16|q8_0] [--n-ctx N] [--verbose]");
    }
    if (mode != "batch" && mode != "chunked" && mode != "token" && mode != "decode") die("bad --mode " + mode);
    if (chunk < 1) die("bad --chunk");

    const bool is_npy = tokens_path.size() > 4 && tokens_path.compare(tokens_path.size() - 4, 4, ".npy") == 0;
    const std::vector<llama_token> toks = is_npy ? read_npy_tokens(tokens_path) : read_text_tokens(tokens_path);
    const int n = static_cast<int>(toks.size());
    if (n == 0) die("empty token sequence");

    llama_log_set(log_cb, nullptr);
    llama_backend_init();

    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    // read the weights into memory (no mmap): the run does not depend on the file after loading
    mp.load_mode = LLAMA_LOAD_MODE_NONE;
    llama_model * model = llama_model_load_from_file(model_path.c_str(), mp);
    if (!model) die("failed to load model " + model_path);
    const llama_vocab * vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);
    for (int i = 0; i < n; ++i) {
        if (toks[i] < 0 || toks[i] >= n_vocab) die("token id out of range at index " + std::to_string(i));
    }

    if (mode == "decode" && (prefill < 1 || prefill > n)) die("--mode decode needs 1 <= --prefill <= n_tokens");
    const int step = mode == "batch" ? n : mode == "chunked" ? std::min(chunk, n) : mode == "decode" ? prefill : 1;

    llama_context_params cp = llama_context_default_params();
    // context large enough for the whole sequence (rounded up to 256)
    cp.n_ctx = n_ctx_arg > 0 ? static_cast<uint32_t>(n_ctx_arg) : static_cast<uint32_t>(((n + 255) / 256) * 256);
    cp.n_batch = static_cast<uint32_t>(step);
    cp.n_ubatch = static_cast<uint32_t>(step);
    cp.n_seq_max = 1;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.flash_attn_type = fa == "on" ? LLAMA_FLASH_ATTN_TYPE_ENABLED
                       : fa == "auto" ? LLAMA_FLASH_ATTN_TYPE_AUTO
                                      : LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.type_k = parse_kv(kv);
    cp.type_v = cp.type_k;  // DSV4 requires type_k == type_v
    cp.no_perf = true;
    topk_capture cap;
    if (!g_tcap.bases.empty() && g_tcap.prefix.empty()) die("--dump-tensors needs --dump-prefix");
    if (!topk_prefix.empty() || !g_tcap.bases.empty()) {
        cp.cb_eval = eval_cb;
        cp.cb_eval_user_data = topk_prefix.empty() ? nullptr : &cap;
    }
    llama_context * ctx = llama_init_from_model(model, cp);
    if (!ctx) die("failed to create context");

    std::fprintf(stderr,
                 "dump_logits: n_tokens=%d n_vocab=%d mode=%s step=%d n_ctx=%u n_batch=%u n_ubatch=%u threads=%d "
                 "fa=%s kv=%s\n",
                 n, n_vocab, mode.c_str(), step, llama_n_ctx(ctx), llama_n_batch(ctx), llama_n_ubatch(ctx), threads,
                 fa.c_str(), kv.c_str());

    std::vector<float> out(static_cast<size_t>(n) * n_vocab);
    llama_batch batch = llama_batch_init(step, 0, 1);
    for (int start = 0; start < n;) {
        const int m = mode == "decode" ? (start == 0 ? prefill : 1) : std::min(step, n - start);
        batch.n_tokens = m;
        cap.cur_tokens = m;
        for (int j = 0; j < m; ++j) {
            batch.token[j] = toks[start + j];
            batch.pos[j] = start + j;
            batch.n_seq_id[j] = 1;
            batch.seq_id[j][0] = 0;
            batch.logits[j] = 1;
        }
        const int rc = llama_decode(ctx, batch);
        ++g_tcap.call;
        if (rc != 0) die("llama_decode failed rc=" + std::to_string(rc) + " at position " + std::to_string(start));
        for (int j = 0; j < m; ++j) {
            const float * lg = llama_get_logits_ith(ctx, j);
            if (!lg) die("no logits for position " + std::to_string(start + j));
            std::memcpy(out.data() + static_cast<size_t>(start + j) * n_vocab, lg, sizeof(float) * n_vocab);
        }
        start += m;
    }
    llama_batch_free(batch);
    if (!topk_prefix.empty()) {
        const size_t n_rows = static_cast<size_t>((n + 3) / 4);
        for (auto & kvp : cap.topk) {
            const int il = kvp.first;
            auto & rows = kvp.second;
            auto & srows = cap.score[il];
            if (static_cast<int>(rows.size()) != n || static_cast<int>(srows.size()) != n) {
                std::fprintf(stderr, "dump_logits: warning: layer %d captured %zu/%zu rows for %d tokens\n", il,
                             rows.size(), srows.size(), n);
                continue;
            }
            size_t k = 0;
            for (auto & r : rows) k = std::max(k, r.size());
            std::vector<int32_t> tk(static_cast<size_t>(n) * k, -1);
            std::vector<float> sc(static_cast<size_t>(n) * n_rows, -INFINITY);
            for (int p = 0; p < n; ++p) {
                const auto & sr = srows[p];
                for (size_t j = 0; j < std::min(sr.size(), n_rows); ++j) sc[p * n_rows + j] = sr[j];
                for (size_t j = 0; j < rows[p].size(); ++j) {
                    const int32_t idx = rows[p][j];
                    const bool valid = idx >= 0 && static_cast<size_t>(idx) < sr.size() && std::isfinite(sr[idx]);
                    tk[p * k + j] = valid ? idx : -1;
                }
            }
            write_npy(topk_prefix + ".L" + std::to_string(il) + ".topk.npy", tk.data(), tk.size() * 4, "<i4", n, k);
            write_npy(topk_prefix + ".L" + std::to_string(il) + ".score.npy", sc.data(), sc.size() * 4, "<f4", n,
                      n_rows);
        }
        std::fprintf(stderr, "dump_logits: wrote indexer captures for %zu layers to %s.L*.{topk,score}.npy\n",
                     cap.topk.size(), topk_prefix.c_str());
    }
    write_npy_f32(out_path, out, static_cast<size_t>(n), static_cast<size_t>(n_vocab));
    std::fprintf(stderr, "dump_logits: wrote %s [%d, %d]\n", out_path.c_str(), n, n_vocab);

    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
