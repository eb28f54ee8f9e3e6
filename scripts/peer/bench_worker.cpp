// bench_worker: upstream llama.cpp's side of bench/pair-bench.py — one model loaded and one context
// kept, timed decode runs on request, so that two engines loaded at the same time can be measured
// in turns seconds apart (the pairing the machine's bandwidth phases need; bench/RESULTS.md).
//
// What it runs is what llama-bench runs (tools/llama-bench/llama-bench.cpp of the pinned tree:
// test_prompt / test_gen, the depth state cached with llama_state_seq_get_data and restored with
// llama_state_seq_set_data before every run, a ggml threadpool with poll 50, llama-bench's context
// parameters: n_ctx = depth + n_gen + n_prompt, n_batch, n_ubatch, f16 KV, flash attention auto),
// one request at a time:
//
//   bench_worker -m FILE -t THREADS -c N_CTX [-b 2048] [-ub 512] [--seed 1]
//   stdin, one command per line          stdout, one line per command
//   depth D   (build the state at D)     depth D SECONDS
//   tg N      (restore, N decode calls)  tg N SECONDS        (only the N llama_decode calls timed)
//   pp N      (restore, N tokens)        pp N SECONDS
//   quit
// "ready" is printed once the model and context are up. Errors: "error: …" on stdout and exit 1.
// Token ids are random (std::rand after srand(seed)), as llama-bench's.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

#include "ggml-cpu.h"
#include "llama.h"

namespace {

[[noreturn]] void die(const std::string& m) {
    std::printf("error: %s\n", m.c_str());
    std::fflush(stdout);
    std::exit(1);
}

void quiet_log(enum ggml_log_level, const char*, void*) {}

struct Worker {
    llama_context* ctx = nullptr;
    int n_vocab = 0, n_batch = 2048;
    bool add_bos = false;
    llama_token bos = 0;
    int depth = 0;
    std::vector<uint8_t> state;  // the sequence at `depth`

    void decode(std::vector<llama_token>& toks) {
        if (llama_decode(ctx, llama_batch_get_one(toks.data(), static_cast<int32_t>(toks.size()))) != 0)
            die("llama_decode failed");
    }
    // llama-bench test_prompt: n tokens in n_batch-sized calls, the first a BOS where the vocab adds one
    void prompt(int n) {
        std::vector<llama_token> t;
        for (int done = 0; done < n;) {
            const int k = std::min(n - done, n_batch);
            t.resize(static_cast<size_t>(k));
            t[0] = done == 0 && add_bos ? bos : std::rand() % n_vocab;
            for (int i = 1; i < k; ++i) t[static_cast<size_t>(i)] = std::rand() % n_vocab;
            decode(t);
            done += k;
        }
        llama_synchronize(ctx);
    }
    void restore() {
        llama_memory_clear(llama_get_memory(ctx), false);
        if (depth > 0 && llama_state_seq_set_data(ctx, state.data(), state.size(), 0) == 0)
            die("llama_state_seq_set_data failed");
    }
    // llama-bench test_gen: one token per call, logits of it, synchronized
    void gen(int n) {
        llama_token tok = add_bos ? bos : std::rand() % n_vocab;
        std::vector<llama_token> t(1);
        for (int i = 0; i < n; ++i) {
            t[0] = tok;
            decode(t);
            llama_synchronize(ctx);
            tok = std::rand() % n_vocab;
        }
    }
};

double secs_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
    std::string model;
    int threads = 1, n_ctx = 0, n_batch = 2048, n_ubatch = 512;
    unsigned seed = 1;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) die("missing value after " + a);
            return argv[++i];
        };
        if (a == "-m") model = next();
        else if (a == "-t") threads = std::atoi(next().c_str());
        else if (a == "-c") n_ctx = std::atoi(next().c_str());
        else if (a == "-b") n_batch = std::atoi(next().c_str());
        else if (a == "-ub") n_ubatch = std::atoi(next().c_str());
        else if (a == "--seed") seed = static_cast<unsigned>(std::atoi(next().c_str()));
        else die("unknown argument " + a);
    }
    if (model.empty() || threads < 1 || n_ctx < 1) die("usage: bench_worker -m FILE -t THREADS -c N_CTX [-b B] [-ub UB]");
    std::srand(seed);
    llama_log_set(quiet_log, nullptr);
    llama_backend_init();

    llama_model_params mp = llama_model_default_params();
    llama_model* m = llama_model_load_from_file(model.c_str(), mp);
    if (m == nullptr) die("cannot load " + model);
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = static_cast<uint32_t>(n_ctx);
    cp.n_batch = static_cast<uint32_t>(n_batch);
    cp.n_ubatch = static_cast<uint32_t>(n_ubatch);
    cp.type_k = GGML_TYPE_F16;
    cp.type_v = GGML_TYPE_F16;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_AUTO;
    cp.swa_full = false;
    Worker w;
    w.ctx = llama_init_from_model(m, cp);
    if (w.ctx == nullptr) die("cannot create a context");
    ggml_threadpool_params tpp = ggml_threadpool_params_default(threads);
    tpp.poll = 50;
    ggml_threadpool* tp = ggml_threadpool_new(&tpp);
    if (tp == nullptr) die("cannot create the threadpool");
    llama_attach_threadpool(w.ctx, tp, nullptr);
    llama_set_n_threads(w.ctx, threads, threads);
    const llama_vocab* vocab = llama_model_get_vocab(m);
    w.n_vocab = llama_vocab_n_tokens(vocab);
    w.add_bos = llama_vocab_get_add_bos(vocab);
    w.bos = llama_vocab_bos(vocab);
    w.n_batch = n_batch;

    std::printf("ready\n");
    std::fflush(stdout);
    std::string line;
    while (std::getline(std::cin, line)) {
        std::istringstream is(line);
        std::string cmd;
        int n = 0;
        is >> cmd >> n;
        if (cmd == "quit") break;
        if (n < 0 || (cmd != "depth" && n < 1)) die("bad command: " + line);
        const auto t0 = std::chrono::steady_clock::now();
        if (cmd == "depth") {
            llama_memory_clear(llama_get_memory(w.ctx), false);
            w.depth = n;
            if (n > 0) {
                w.prompt(n);
                w.state.resize(llama_state_seq_get_size(w.ctx, 0));
                if (llama_state_seq_get_data(w.ctx, w.state.data(), w.state.size(), 0) == 0)
                    die("llama_state_seq_get_data failed");
            }
            std::printf("depth %d %.9f\n", n, secs_since(t0));
        } else if (cmd == "tg" || cmd == "pp") {
            w.restore();
            const auto t1 = std::chrono::steady_clock::now();
            if (cmd == "tg") w.gen(n);
            else w.prompt(n);
            std::printf("%s %d %.9f\n", cmd.c_str(), n, secs_since(t1));
        } else {
            die("bad command: " + line);
        }
        std::fflush(stdout);
    }
    llama_free(w.ctx);
    ggml_threadpool_free(tp);
    llama_model_free(m);
    llama_backend_free();
    return 0;
}
