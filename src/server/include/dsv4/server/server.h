// dsv4 server: the llama-server-compatible HTTP front end (issue 6). docs/server.md is the user
// documentation (flags, endpoints, limits, what is and is not enforced).
//
// server_main() is the whole program behind `dsv4-server` (tools/server.cpp) and the test binary
// `dsv4-server-scripted` (tests/server): it parses the command line, loads the tokenizer, asks
// the hooks for an Engine, runs one runtime::Scheduler over it and serves HTTP until SIGTERM /
// SIGINT (drain: stop accepting, give in-flight requests a grace period and a terminal event,
// exit 0; a second signal exits at once with status 130).
//
// Threading: HTTP worker threads parse, validate, tokenize and submit; the scheduler thread owns
// the Engine; the scheduler's callbacks only enqueue events into a per-request channel that the
// HTTP thread drains (so a slow client never blocks decoding).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dsv4/core/mapped_file.h"
#include "dsv4/core/status.h"
#include "dsv4/runtime/engine.h"
#include "dsv4/server/api.h"
#include "dsv4/tokenizer/tokenizer.h"

namespace httplib {
class Server;
struct Request;
}  // namespace httplib

namespace dsv4::server {

struct ServerOptions {
  // Model and engine (llama-server names).
  std::string model_path;          // -m
  std::string tokenizer_path;      // --tokenizer: tokenizer.json (default: from the model)
  int64_t n_ctx = 4096;            // -c, per slot
  int n_parallel = 1;              // -np
  int n_threads = 0;               // -t
  int n_threads_batch = 0;         // -tb
  int64_t n_batch = 2048;          // -b: prefill chunk per slot per scheduler step
  int64_t n_ubatch = 512;          // -ub: engine micro-batch
  std::string act_quant = "q8";    // --act-quant: q8 (integer dots, like llama.cpp) | f32
  LoadMode load_mode = LoadMode::kAuto;  // --mmap (kMmap) | --no-mmap (kRead) | neither (kAuto)
  int n_gpu_layers = 0;            // -ngl: accepted, ignored until a GPU backend exists
  std::vector<std::string> override_tensor;  // -ot: accepted, ignored
  // HTTP.
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string alias;
  std::string api_key;
  bool metrics = false;
  int timeout_s = 600;             // read/write timeout of a connection
  int http_threads = 0;            // worker threads (0: automatic, see docs/server.md)
  std::string cors_origin;         // "" = CORS off
  double sse_ping_s = 10.0;        // keep-alive comment interval while a stream is silent
  double drain_grace_s = 10.0;     // SIGTERM: time in-flight requests get to finish
  int64_t max_queue = 64;          // waiting requests beyond the slots (then 503)
  // Chat format.
  std::string chat_template_kwargs;  // JSON object: default thinking / enable_thinking
  std::string reasoning_format = "deepseek";
  int reasoning_budget = -1;       // -1 unlimited, 0 thinking off by default
  std::string reasoning_effort;    // default effort ("" = high)
  std::string revision;            // "preview" | "0731" | "" (detect from the model file)
  bool jinja = true;               // accepted (the format is built in)
  Limits limits;
};

struct ServerHooks {
  std::string program = "dsv4-server";
  std::string description = "dsv4-server: OpenAI-compatible DeepSeek-V4 server";
  // Creates the engine once the options are parsed and the tokenizer is loaded.
  std::function<Result<std::unique_ptr<runtime::Engine>>(const ServerOptions&, const Tokenizer&)> make_engine;
  // Loads the tokenizer when --tokenizer is not given (default: from the GGUF / safetensors dir).
  std::function<Result<Tokenizer>(const ServerOptions&)> load_tokenizer;
  // TEST-ONLY extension points (dsv4-server-scripted): extra routes, and a per-request hook run
  // before submit that may return a cleanup action (run when the request ends) or an error.
  std::function<void(httplib::Server&)> add_routes;
  std::function<Result<std::function<void()>>(const httplib::Request&, const PreparedRequest&)> before_submit;
};

// Loads a tokenizer from a GGUF (tokenizer.ggml.*) or a directory holding tokenizer.json.
Result<Tokenizer> load_model_tokenizer(const std::string& model_path);

// The whole program; returns the process exit status.
int server_main(int argc, char** argv, const ServerHooks& hooks);

}  // namespace dsv4::server
