// dsv4-server: OpenAI-compatible HTTP server for DeepSeek-V4, a drop-in for llama-server.
//
//   dsv4-server -m DeepSeek-V4-Flash.gguf -c 8192 -np 1 --host 127.0.0.1 --port 8080 --alias deepseek-v4
//
// Flags, endpoints and limits: docs/server.md. The program lives in the dsv4_server library
// (server_main); this file only supplies the real engine (runtime::make_model_engine).
#include <fmt/core.h>

#include "dsv4/runtime/model_engine.h"
#include "dsv4/server/server.h"

int main(int argc, char** argv) {
  dsv4::server::ServerHooks hooks;
  hooks.program = "dsv4-server";
  hooks.description = "dsv4-server: OpenAI-compatible DeepSeek-V4 server (flags follow llama-server)";
  hooks.make_engine = [](const dsv4::server::ServerOptions& o, const dsv4::Tokenizer&)
      -> dsv4::Result<std::unique_ptr<dsv4::runtime::Engine>> {
    if (o.model_path.empty()) return dsv4::Status(dsv4::ErrorCode::kInvalidArgument, "-m MODEL is required");
    dsv4::runtime::ModelEngineOptions mo;
    mo.model_path = o.model_path;
    mo.n_slots = o.n_parallel;
    mo.n_ctx = o.n_ctx;
    mo.n_threads = o.n_threads;
    mo.n_threads_batch = o.n_threads_batch;
    mo.n_ubatch = o.n_ubatch;
    mo.load_mode = o.load_mode;
    mo.act_quant = o.act_quant == "f32" ? dsv4::backend::ActQuant::kF32 : dsv4::backend::ActQuant::kQ8;
    return dsv4::runtime::make_model_engine(mo);
  };
  return dsv4::server::server_main(argc, argv, hooks);
}
