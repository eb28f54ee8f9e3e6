// The HTTP front end and the program's main logic: see server.h. Handlers are thin: request →
// api.h (validation, PreparedRequest) → Scheduler::submit → Output (output.h) → bytes.
#include <dirent.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <ctime>
#include <deque>
#include <fmt/core.h>
#include <httplib.h>
#include <list>
#include <map>
#include <mutex>
#include <thread>

#include "dsv4/format/gguf.h"
#include "dsv4/runtime/scheduler.h"
#include "dsv4/server/output.h"
#include "dsv4/server/server.h"

namespace dsv4::server {

namespace {

using Clock = std::chrono::steady_clock;

std::string dump(const Json& j) { return j.dump(-1, ' ', false, Json::error_handler_t::replace); }

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(dump(e.to_json()), "application/json");
}

ApiError server_error(std::string msg, int status = 500, std::string type = "server_error") {
  ApiError e;
  e.status = status;
  e.message = std::move(msg);
  e.type = std::move(type);
  return e;
}

// ------------------------------------------------------------------ connection liveness (H9)

// httplib 0.11 does not expose the connection's socket to handlers; find it by its addresses.
int find_socket(const httplib::Request& req) {
  DIR* d = opendir("/proc/self/fd");
  if (!d) return -1;
  int found = -1;
  while (dirent* e = readdir(d)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd < 0) continue;
    sockaddr_storage peer{}, local{};
    socklen_t pl = sizeof peer, ll = sizeof local;
    if (getpeername(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&peer), &pl) != 0) continue;
    if (getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&local), &ll) != 0) continue;
    auto port_of = [](const sockaddr_storage& s) -> int {
      if (s.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in&>(s).sin_port);
      if (s.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6&>(s).sin6_port);
      return -1;
    };
    auto addr_of = [](const sockaddr_storage& s) -> std::string {
      char buf[INET6_ADDRSTRLEN] = {0};
      if (s.ss_family == AF_INET) inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(s).sin_addr, buf, sizeof buf);
      if (s.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(s).sin6_addr, buf, sizeof buf);
      return buf;
    };
    if (port_of(peer) == req.remote_port && port_of(local) == req.local_port && addr_of(peer) == req.remote_addr) {
      found = static_cast<int>(fd);
      break;
    }
  }
  closedir(d);
  return found;
}

// True once the client has closed or reset the connection (FIN or RST).
bool peer_closed(int fd) {
  if (fd < 0) return false;
  pollfd p{fd, static_cast<short>(POLLRDHUP), 0};
  const int r = poll(&p, 1, 0);
  return r > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

// --------------------------------------------------------------------------- worker threads

// Grows on demand up to `max_threads` (idle keep-alive or slow clients hold a thread each; a
// fixed small pool would let 200 slow sockets starve everyone else, H8).
class DynamicPool : public httplib::TaskQueue {
 public:
  explicit DynamicPool(size_t max_threads) : max_(max_threads) {}
  ~DynamicPool() override = default;
  void enqueue(std::function<void()> fn) override {
    std::unique_lock lk(mu_);
    jobs_.push_back(std::move(fn));
    // Idle threads may already be promised to earlier jobs: spawn while jobs outnumber them.
    if (jobs_.size() > idle_ && threads_.size() < max_) threads_.emplace_back([this] { work(); });
    cv_.notify_one();
  }
  void shutdown() override {
    {
      std::lock_guard lk(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }

 private:
  void work() {
    std::unique_lock lk(mu_);
    for (;;) {
      ++idle_;
      cv_.wait(lk, [&] { return stop_ || !jobs_.empty(); });
      --idle_;
      if (jobs_.empty()) return;  // stop_ and nothing left
      auto fn = std::move(jobs_.front());
      jobs_.pop_front();
      lk.unlock();
      fn();
      lk.lock();
    }
  }
  size_t max_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::list<std::thread> threads_;
  size_t idle_ = 0;
  bool stop_ = false;
};

// ------------------------------------------------------------------------ request channels

// Events of one request, from the scheduler thread to the HTTP thread. Bounded: a client that
// does not read its stream gets its request cancelled instead of blocking the scheduler (H8).
struct Channel {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<runtime::TokenEvent> events;
  bool terminal = false;
  std::atomic<bool> cancel{false};
  std::atomic<bool> shutdown{false};  // cancelled by the SIGTERM grace timeout
  static constexpr size_t kMaxPending = 1u << 16;
};

struct State {
  ServerOptions opts;
  ApiConfig cfg;
  const ServerHooks* hooks = nullptr;
  std::unique_ptr<Tokenizer> tok;
  std::unique_ptr<runtime::Engine> engine;
  std::unique_ptr<runtime::Scheduler> sched;
  std::atomic<bool> draining{false};
  std::atomic<int64_t> active_http{0};
  std::atomic<int64_t> http_requests{0}, http_errors{0}, cancelled_by_client{0}, stream_pings{0};
  std::mutex reg_mu;
  std::map<uint64_t, std::shared_ptr<Channel>> active;
  Clock::time_point started = Clock::now();
};

struct ActiveGuard {
  std::atomic<int64_t>& n;
  explicit ActiveGuard(std::atomic<int64_t>& c) : n(c) { ++n; }
  ~ActiveGuard() { --n; }
};

bool content_type_ok(const httplib::Request& req) {
  if (!req.has_header("Content-Type")) return true;
  std::string ct = req.get_header_value("Content-Type");
  for (auto& c : ct) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ct.rfind("application/json", 0) == 0 || ct.find("+json") != std::string::npos ||
         ct.rfind("application/x-www-form-urlencoded", 0) == 0 || ct.rfind("text/plain", 0) == 0;
}

std::optional<ApiError> read_json(const httplib::Request& req, const Limits& limits, Json& body) {
  if (!content_type_ok(req))
    return bad_request("Content-Type '" + log_escape(req.get_header_value("Content-Type"), 80) +
                           "' is not supported; send application/json",
                       "", "unsupported_content_type");
  return parse_body(req.body, limits, body);
}

int64_t unix_now() { return static_cast<int64_t>(std::time(nullptr)); }

// ------------------------------------------------------------------------- generation

class Generation {
 public:
  Generation(State& st, PreparedRequest req) : st_(st), req_(std::move(req)) {}

  // Validation passed: submit, then answer (non-stream) or install the SSE provider (stream).
  void run(const httplib::Request& http_req, httplib::Response& res) {
    std::function<void()> cleanup;
    if (st_.hooks->before_submit) {
      auto c = st_.hooks->before_submit(http_req, req_);
      if (!c) return send_error(res, bad_request(c.status().message(), "", "test_hook"));
      cleanup = *c;
    }
    auto ch = std::make_shared<Channel>();
    auto sub = st_.sched->submit(req_.gen, [ch](const runtime::TokenEvent& ev) {
      std::lock_guard lk(ch->mu);
      if (ch->terminal) return false;
      if (ev.kind != runtime::TokenEvent::kToken) ch->terminal = true;
      if (ch->events.size() >= Channel::kMaxPending) ch->cancel = true;  // slow reader
      ch->events.push_back(ev);
      ch->cv.notify_all();
      return !ch->cancel.load();
    });
    if (!sub) {
      if (cleanup) cleanup();
      const Status& s = sub.status();
      if (s.code() == ErrorCode::kUnavailable) {
        res.set_header("Retry-After", "1");
        return send_error(res, server_error(s.message(), 503, "unavailable_error"));
      }
      if (s.code() == ErrorCode::kInvalidArgument) return send_error(res, bad_request(s.message()));
      return send_error(res, server_error(s.message()));
    }
    const uint64_t id = *sub;
    {
      std::lock_guard lk(st_.reg_mu);
      st_.active[id] = ch;
    }
    auto out = std::make_shared<Output>(req_, *st_.tok,
                                        make_request_id(req_.endpoint == Endpoint::kChat ? "chatcmpl-" : "cmpl-"),
                                        unix_now());
    const int fd = find_socket(http_req);
    State* st = &st_;
    auto finish_request = [st, id, cleanup]() {
      {
        std::lock_guard lk(st->reg_mu);
        st->active.erase(id);
      }
      if (cleanup) cleanup();
    };
    if (!req_.stream) {
      answer_whole(res, ch, out, id, fd);
      finish_request();
      return;
    }
    auto sse = std::make_shared<SseState>(SseState{ch, out, id, fd, false, false, Clock::now(), st_.opts.sse_ping_s,
                                                    req_.endpoint == Endpoint::kChat});
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream",
        [st, sse](size_t, httplib::DataSink& sink) { return sse_step(*st, *sse, sink); },
        [st, sse, finish_request](bool) {
          if (!sse->finished) {
            st->sched->cancel(sse->id);
            ++st->cancelled_by_client;
          }
          finish_request();
        });
  }

 private:
  struct SseState {
    std::shared_ptr<Channel> ch;
    std::shared_ptr<Output> out;
    uint64_t id;
    int fd;
    bool sent_role;
    bool finished;
    Clock::time_point last_write;
    double ping_s;
    bool chat;
  };

  static bool write_event(httplib::DataSink& sink, const std::string& data) { return sink.write(data.data(), data.size()); }
  static std::string sse(const Json& j) { return "data: " + dump(j) + "\n\n"; }

  // One call of the chunked provider: waits up to 100 ms for events, writes what is final.
  // Returns false to drop the connection (client gone).
  static bool sse_step(State& st, SseState& s, httplib::DataSink& sink) {
    if (s.finished) {
      sink.done();
      return true;
    }
    std::string buf;
    if (!s.sent_role) {  // chat streams start with the role; completions have no role chunk
      s.sent_role = true;
      if (s.chat) buf += sse(s.out->role_chunk());
    }
    std::deque<runtime::TokenEvent> evs;
    {
      std::unique_lock lk(s.ch->mu);
      s.ch->cv.wait_for(lk, std::chrono::milliseconds(100), [&] { return !s.ch->events.empty(); });
      evs.swap(s.ch->events);
    }
    bool done = false;
    for (const auto& ev : evs) {
      if (done) break;
      if (ev.kind == runtime::TokenEvent::kToken) {
        for (const auto& p : s.out->on_token(ev.token, ev)) buf += sse(p);
        if (s.out->stop_hit()) {
          st.sched->cancel(s.id);
          for (const auto& p : s.out->finish(runtime::FinishReason::kStop, ev)) buf += sse(p);
          buf += "data: [DONE]\n\n";
          done = true;
        }
      } else if (ev.kind == runtime::TokenEvent::kDone && ev.finish != runtime::FinishReason::kCancelled &&
                 ev.finish != runtime::FinishReason::kError) {
        for (const auto& p : s.out->finish(ev.finish, ev)) buf += sse(p);
        buf += "data: [DONE]\n\n";
        done = true;
      } else {
        // Error or a cancellation we did not ask for (shutdown): an error event, then the end.
        ApiError e = s.ch->shutdown ? server_error("server shutting down", 503, "unavailable_error")
                     : ev.kind == runtime::TokenEvent::kError
                         ? server_error("generation failed: " + ev.error.message())
                         : server_error("generation cancelled", 500);
        buf += sse(e.to_json());
        done = true;
      }
    }
    if (done) s.finished = true;
    if (buf.empty()) {
      const double idle = std::chrono::duration<double>(Clock::now() - s.last_write).count();
      if (idle >= s.ping_s) {
        buf = ": keep-alive\n\n";
        ++st.stream_pings;
      }
    }
    if (!buf.empty()) {
      if (!write_event(sink, buf)) {
        st.sched->cancel(s.id);
        s.ch->cancel = true;
        ++st.cancelled_by_client;
        s.finished = true;  // counted here; the releaser must not count it again
        return false;
      }
      s.last_write = Clock::now();
    }
    if (!s.finished && peer_closed(s.fd)) {
      st.sched->cancel(s.id);
      s.ch->cancel = true;
      ++st.cancelled_by_client;
      s.finished = true;
      return false;
    }
    if (s.finished) sink.done();
    return true;
  }

  void answer_whole(httplib::Response& res, const std::shared_ptr<Channel>& ch, const std::shared_ptr<Output>& out,
                    uint64_t id, int fd) {
    for (;;) {
      std::deque<runtime::TokenEvent> evs;
      {
        std::unique_lock lk(ch->mu);
        ch->cv.wait_for(lk, std::chrono::milliseconds(100), [&] { return !ch->events.empty(); });
        evs.swap(ch->events);
      }
      for (const auto& ev : evs) {
        if (ev.kind == runtime::TokenEvent::kToken) {
          (void)out->on_token(ev.token, ev);
          if (out->stop_hit()) {
            st_.sched->cancel(id);
            (void)out->finish(runtime::FinishReason::kStop, ev);
            res.set_content(dump(out->response()), "application/json");
            return;
          }
        } else if (ev.kind == runtime::TokenEvent::kDone && ev.finish != runtime::FinishReason::kCancelled &&
                   ev.finish != runtime::FinishReason::kError) {
          (void)out->finish(ev.finish, ev);
          res.set_content(dump(out->response()), "application/json");
          return;
        } else {
          if (ch->shutdown) return send_error(res, server_error("server shutting down", 503, "unavailable_error"));
          if (ev.kind == runtime::TokenEvent::kError)
            return send_error(res, server_error("generation failed: " + ev.error.message()));
          return send_error(res, server_error("generation cancelled"));
        }
      }
      if (peer_closed(fd)) {  // non-streaming client gone: stop generating for it (B15)
        st_.sched->cancel(id);
        ch->cancel = true;
        ++st_.cancelled_by_client;
        return send_error(res, server_error("client closed the connection", 499));
      }
    }
  }

  State& st_;
  PreparedRequest req_;
};

// ------------------------------------------------------------------------------ handlers

void handle_generate(State& st, const httplib::Request& req, httplib::Response& res, Endpoint ep) {
  ActiveGuard g(st.active_http);
  if (st.draining) {
    res.set_header("Retry-After", "5");
    return send_error(res, server_error("server shutting down", 503, "unavailable_error"));
  }
  Json body;
  if (auto e = read_json(req, st.opts.limits, body)) return send_error(res, *e);
  PreparedRequest p;
  auto err = ep == Endpoint::kChat ? prepare_chat(body, st.cfg, *st.tok, p) : prepare_completion(body, st.cfg, *st.tok, p);
  if (err) return send_error(res, *err);
  Generation gen(st, std::move(p));
  gen.run(req, res);
}

std::string metrics_text(State& st) {
  const auto s = st.sched->stats();
  std::string m;
  auto metric = [&](const char* name, const char* type, const char* help, double v) {
    m += fmt::format("# HELP dsv4_{} {}\n# TYPE dsv4_{} {}\ndsv4_{} {}\n", name, help, name, type, name, v);
  };
  metric("requests_total", "counter", "Generation requests submitted to the scheduler.", static_cast<double>(s.requests_total));
  metric("requests_active", "gauge", "Requests admitted or queued and not finished.", static_cast<double>(s.requests_active));
  metric("queue_depth", "gauge", "Requests waiting for a slot.", static_cast<double>(s.queue_depth));
  metric("slots_busy", "gauge", "Slots running a request.", static_cast<double>(s.busy_slots));
  metric("slots_total", "gauge", "Slots (--parallel).", static_cast<double>(st.opts.n_parallel));
  metric("prompt_tokens_total", "counter", "Prompt tokens processed.", static_cast<double>(s.prompt_tokens_total));
  metric("tokens_predicted_total", "counter", "Tokens generated.", static_cast<double>(s.gen_tokens_total));
  metric("prompt_seconds_total", "counter", "Time spent on prompt processing.", s.prompt_ms_total / 1000.0);
  metric("tokens_predicted_seconds_total", "counter", "Time spent generating.", s.gen_ms_total / 1000.0);
  metric("prompt_tokens_per_second", "gauge", "Average prompt throughput.",
         s.prompt_ms_total > 0 ? 1000.0 * static_cast<double>(s.prompt_tokens_total) / s.prompt_ms_total : 0.0);
  metric("predicted_tokens_per_second", "gauge", "Average generation throughput.",
         s.gen_ms_total > 0 ? 1000.0 * static_cast<double>(s.gen_tokens_total) / s.gen_ms_total : 0.0);
  metric("http_requests_total", "counter", "HTTP requests answered.", static_cast<double>(st.http_requests.load()));
  metric("http_errors_total", "counter", "HTTP answers with status >= 400.", static_cast<double>(st.http_errors.load()));
  metric("client_cancellations_total", "counter", "Requests cancelled because the client went away.",
         static_cast<double>(st.cancelled_by_client.load()));
  return m;
}

void install_routes(httplib::Server& svr, State& st) {
  const Limits& L = st.opts.limits;
  // Before routing: header limits (431), CORS, auth (401).
  svr.set_pre_routing_handler([&st, L](const httplib::Request& req, httplib::Response& res) {
    size_t header_bytes = 0;
    for (const auto& [k, v] : req.headers) header_bytes += k.size() + v.size() + 4;
    if (req.headers.size() > L.max_header_count || header_bytes > L.max_header_bytes) {
      ApiError e = bad_request("request headers too large");
      e.status = 431;
      send_error(res, e);
      return httplib::Server::HandlerResponse::Handled;
    }
    if (!st.opts.cors_origin.empty()) {
      res.set_header("Access-Control-Allow-Origin", st.opts.cors_origin);
      res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type");
      res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
      if (req.method == "OPTIONS") {
        res.status = 204;
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    const bool open = req.path == "/health" || req.path == "/v1/health";
    if (!st.opts.api_key.empty() && !open) {
      std::string auth = req.get_header_value("Authorization");
      std::string key;
      if (auth.rfind("Bearer ", 0) == 0) key = auth.substr(7);
      else if (req.has_header("X-Api-Key")) key = req.get_header_value("X-Api-Key");
      if (!constant_time_equals(st.opts.api_key, key)) {
        ApiError e = bad_request("Invalid API Key", "", "invalid_api_key");
        e.status = 401;
        send_error(res, e);
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  svr.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return;
    ApiError e;
    e.status = res.status;
    if (res.status == 404) {
      e.message = "no such endpoint: " + log_escape(req.path, 100);
      e.type = "not_found_error";
    } else if (res.status == 413) {
      e.message = "request body too large";
    } else if (res.status == 405) {
      e.message = "method not allowed";
    } else {
      e.message = "bad request";
    }
    send_error(res, e);
  });
  svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      if (ep) std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = std::string("internal error: ") + e.what();
    } catch (...) {
    }
    send_error(res, server_error(log_escape(what, 300)));
  });
  svr.set_logger([&st](const httplib::Request& req, const httplib::Response& res) {
    ++st.http_requests;
    if (res.status >= 400) ++st.http_errors;
    if (req.path == "/health" || req.path == "/metrics") return;
    fmt::print(stderr, "http: {} {} {} {}:{}\n", log_escape(req.method, 16), log_escape(req.path, 120), res.status,
               log_escape(req.remote_addr, 64), req.remote_port);
  });

  auto health = [&st](const httplib::Request&, httplib::Response& res) {
    if (st.draining) {
      send_error(res, server_error("server shutting down", 503, "unavailable_error"));
      return;
    }
    res.set_content(R"({"status":"ok"})", "application/json");
  };
  svr.Get("/health", health);
  svr.Get("/v1/health", health);

  auto models = [&st](const httplib::Request&, httplib::Response& res) {
    const auto& info = st.engine->info();
    Json m = Json::object();
    m["id"] = st.cfg.model_name;
    m["object"] = "model";
    m["created"] = unix_now();
    m["owned_by"] = "dsv4";
    m["meta"] = Json{{"n_ctx", info.n_ctx}, {"n_vocab", info.n_vocab}, {"n_slots", info.n_slots},
                     {"description", info.description}};
    res.set_content(dump(Json{{"object", "list"}, {"data", Json::array({m})}}), "application/json");
  };
  svr.Get("/v1/models", models);
  svr.Get("/models", models);

  for (const char* p : {"/v1/chat/completions", "/chat/completions"})
    svr.Post(p, [&st](const httplib::Request& req, httplib::Response& res) {
      handle_generate(st, req, res, Endpoint::kChat);
    });
  for (const char* p : {"/v1/completions", "/completions", "/completion"})
    svr.Post(p, [&st](const httplib::Request& req, httplib::Response& res) {
      handle_generate(st, req, res, Endpoint::kCompletion);
    });

  svr.Post("/tokenize", [&st](const httplib::Request& req, httplib::Response& res) {
    Json body, out;
    if (auto e = read_json(req, st.opts.limits, body)) return send_error(res, *e);
    if (auto e = handle_tokenize(body, *st.tok, out)) return send_error(res, *e);
    res.set_content(dump(out), "application/json");
  });
  svr.Post("/detokenize", [&st](const httplib::Request& req, httplib::Response& res) {
    Json body, out;
    if (auto e = read_json(req, st.opts.limits, body)) return send_error(res, *e);
    if (auto e = handle_detokenize(body, *st.tok, out)) return send_error(res, *e);
    res.set_content(dump(out), "application/json");
  });
  for (const char* p : {"/apply-template", "/apply_template", "/v1/apply-template"})
    svr.Post(p, [&st](const httplib::Request& req, httplib::Response& res) {
      Json body;
      if (auto e = read_json(req, st.opts.limits, body)) return send_error(res, *e);
      RenderedChat rc;
      if (auto e = render_chat(body, st.cfg, *st.tok, /*tokenize=*/false, rc)) return send_error(res, *e);
      res.set_content(dump(Json{{"prompt", rc.text}}), "application/json");
    });
  svr.Get("/metrics", [&st](const httplib::Request&, httplib::Response& res) {
    if (!st.opts.metrics) {
      ApiError e = server_error("metrics are disabled; start the server with --metrics", 501, "not_supported_error");
      return send_error(res, e);
    }
    res.set_content(metrics_text(st), "text/plain; version=0.0.4");
  });
  if (st.hooks->add_routes) st.hooks->add_routes(svr);
}

// ---------------------------------------------------------------------------- command line

// llama-server spells some flags with one dash and several letters; CLI11 wants "--long".
std::vector<std::string> normalise_args(int argc, char** argv) {
  static const std::map<std::string, std::string> kAlias = {
      {"-np", "--parallel"},       {"-tb", "--threads-batch"},  {"-ub", "--ubatch-size"},
      {"-ngl", "--n-gpu-layers"},  {"-ot", "--override-tensor"}, {"-to", "--timeout"},
      {"--gpu-layers", "--n-gpu-layers"}};
  std::vector<std::string> out;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto it = kAlias.find(a);
    out.push_back(it == kAlias.end() ? a : it->second);
  }
  return out;
}

}  // namespace

Result<Tokenizer> load_model_tokenizer(const std::string& model_path) {
  struct stat sb {};
  if (stat(model_path.c_str(), &sb) != 0) return Status(ErrorCode::kIo, "cannot open model '" + model_path + "'");
  if (S_ISDIR(sb.st_mode)) return Tokenizer::from_file(model_path + "/tokenizer.json");
  GgufParseOptions o;
  o.require_data = false;
  auto g = GgufFile::open(model_path, o);
  if (!g) return g.status();
  return Tokenizer::from_gguf(*g, model_path);
}

int server_main(int argc, char** argv, const ServerHooks& hooks) {
  // Signals: SIGPIPE/SIGXFSZ ignored (a reset client must not kill us); SIGINT/SIGTERM are taken
  // by a dedicated thread, so block them before any other thread starts.
  signal(SIGPIPE, SIG_IGN);
  signal(SIGXFSZ, SIG_IGN);
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

  auto st = std::make_unique<State>();
  ServerOptions& o = st->opts;
  st->hooks = &hooks;
  CLI::App app{hooks.description, hooks.program};
  app.add_option("-m,--model", o.model_path, "model: GGUF file (first shard) or safetensors directory");
  app.add_option("--tokenizer", o.tokenizer_path, "tokenizer.json to use instead of the model's");
  app.add_option("-c,--ctx-size", o.n_ctx, "context size per slot (prompt + generation)")->check(CLI::Range(16, 1 << 24));
  app.add_option("--parallel", o.n_parallel, "-np: number of slots (parallel requests)")->check(CLI::Range(1, 256));
  app.add_option("-t,--threads", o.n_threads, "threads for generation (0: all cores)")->check(CLI::Range(0, 1024));
  app.add_option("--threads-batch", o.n_threads_batch, "-tb: threads for prompt processing")->check(CLI::Range(0, 1024));
  app.add_option("-b,--batch-size", o.n_batch, "prefill chunk per slot and step")->check(CLI::Range(1, 1 << 20));
  app.add_option("--ubatch-size", o.n_ubatch, "-ub: engine micro-batch")->check(CLI::Range(1, 1 << 20));
  app.add_option("--act-quant", o.act_quant,
                 "activations against quantized weights: q8 (8-bit blocks + integer dots, like llama.cpp) "
                 "or f32 (exact float32)")
      ->check(CLI::IsMember({"q8", "f32"}));
  bool use_mmap = false, no_mmap = false;
  auto* mmap_flag = app.add_flag("--mmap", use_mmap, "keep the weights memory-mapped (default: read into memory, in 2 MiB pages, "
                                 "when the file takes at most half the RAM; mapped otherwise)");
  app.add_flag("--no-mmap", no_mmap, "read the weights into memory (2 MiB pages) instead of mapping them")->excludes(mmap_flag);
  app.add_option("--n-gpu-layers", o.n_gpu_layers, "-ngl: accepted; ignored until a GPU backend exists");
  app.add_option("--override-tensor", o.override_tensor, "-ot: accepted; ignored")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--host", o.host, "address to bind (default 127.0.0.1)");
  app.add_option("--port", o.port, "port to listen on")->check(CLI::Range(0, 65535));
  app.add_option("-a,--alias", o.alias, "model name reported by /v1/models and accepted in requests");
  app.add_option("--api-key", o.api_key, "require 'Authorization: Bearer KEY' (not for /health)");
  app.add_flag("--metrics", o.metrics, "enable the Prometheus /metrics endpoint");
  app.add_option("--timeout", o.timeout_s, "-to: connection write timeout in seconds")->check(CLI::Range(1, 86400));
  int read_timeout = 5;
  app.add_option("--read-timeout", read_timeout, "seconds a client may stay silent while sending a request")
      ->check(CLI::Range(1, 3600));
  app.add_option("--threads-http", o.http_threads, "most HTTP worker threads (0: 256 + 4 x slots)")
      ->check(CLI::Range(0, 4096));
  app.add_flag("--jinja", o.jinja, "accepted (the DeepSeek-V4 format is built in)");
  app.add_option("--chat-template-kwargs", o.chat_template_kwargs,
                 "JSON object of defaults, e.g. '{\"thinking\": false}'");
  app.add_option("--reasoning-format", o.reasoning_format,
                 "deepseek (reasoning_content, default) | none (reasoning stays in content)")
      ->check(CLI::IsMember({"deepseek", "deepseek-legacy", "auto", "none"}));
  app.add_option("--reasoning-budget", o.reasoning_budget, "-1: unrestricted thinking, 0: thinking off by default")
      ->check(CLI::IsMember({-1, 0}));
  app.add_option("--reasoning-effort", o.reasoning_effort, "default reasoning effort (none|low|medium|high|max)");
  app.add_option("--chat-revision", o.revision, "prompt-format revision: preview | 0731 (default: from the model name)")
      ->check(CLI::IsMember({"preview", "0731"}));
  app.add_option("--cors", o.cors_origin, "enable CORS for this origin ('*' for any); off by default");
  app.add_option("--max-queue", o.max_queue, "requests waiting beyond the slots before 503")->check(CLI::Range(0, 1 << 20));
  app.add_option("--sse-ping", o.sse_ping_s, "seconds of silence before a keep-alive comment in a stream")
      ->check(CLI::Range(0.05, 3600.0));
  app.add_option("--drain-grace", o.drain_grace_s, "seconds in-flight requests get after SIGTERM")
      ->check(CLI::Range(0.0, 3600.0));
  size_t max_body = o.limits.max_body_bytes;
  app.add_option("--max-body-size", max_body, "largest request body in bytes (then 413)");
  std::vector<std::string> args = normalise_args(argc, argv);
  std::reverse(args.begin(), args.end());
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  o.limits.max_body_bytes = max_body;
  o.load_mode = use_mmap ? LoadMode::kMmap : no_mmap ? LoadMode::kRead : LoadMode::kAuto;
  if (o.n_gpu_layers != 0) fmt::print(stderr, "note: -ngl {} accepted and ignored (no GPU backend yet)\n", o.n_gpu_layers);
  if (!o.override_tensor.empty()) fmt::print(stderr, "note: -ot accepted and ignored\n");

  // Tokenizer.
  Result<Tokenizer> tok = Status(ErrorCode::kNotFound, "no tokenizer: give -m MODEL or --tokenizer tokenizer.json");
  if (!o.tokenizer_path.empty()) {
    tok = Tokenizer::from_file(o.tokenizer_path);
  } else if (hooks.load_tokenizer) {
    tok = hooks.load_tokenizer(o);
  } else if (!o.model_path.empty()) {
    tok = load_model_tokenizer(o.model_path);
  }
  if (!tok) {
    fmt::print(stderr, "{}: tokenizer: {}\n", hooks.program, tok.status().to_string());
    return 1;
  }
  st->tok = std::make_unique<Tokenizer>(std::move(*tok));

  // Chat defaults.
  ApiConfig& cfg = st->cfg;
  cfg.limits = o.limits;
  cfg.revision = o.revision.empty() ? chat::detect_revision(o.model_path)
                                    : (o.revision == "0731" ? chat::Revision::r0731 : chat::Revision::preview);
  cfg.default_thinking = o.reasoning_budget != 0;
  cfg.default_effort = o.reasoning_effort;
  cfg.reasoning_format = o.reasoning_format == "none" ? "none" : "deepseek";
  if (!o.chat_template_kwargs.empty()) {
    Json k = Json::parse(o.chat_template_kwargs, nullptr, false);
    if (k.is_discarded() || !k.is_object()) {
      fmt::print(stderr, "{}: --chat-template-kwargs must be a JSON object\n", hooks.program);
      return 1;
    }
    for (const char* key : {"thinking", "enable_thinking"})
      if (k.contains(key) && k[key].is_boolean()) cfg.default_thinking = k[key].get<bool>();
    if (k.contains("reasoning_effort") && k["reasoning_effort"].is_string())
      cfg.default_effort = k["reasoning_effort"].get<std::string>();
  }
  if (auto c = chat::resolve_effort(cfg.revision, cfg.default_effort); !c) {
    fmt::print(stderr, "{}: --reasoning-effort: {}\n", hooks.program, c.status().message());
    return 1;
  }
  if (auto eos = st->tok->find_token("<｜end▁of▁sentence｜>")) cfg.eos_id = *eos;

  // Engine and scheduler.
  if (!hooks.make_engine) {
    fmt::print(stderr, "{}: no engine\n", hooks.program);
    return 1;
  }
  auto eng = hooks.make_engine(o, *st->tok);
  if (!eng) {
    fmt::print(stderr, "{}: {}\n", hooks.program, eng.status().to_string());
    return 1;
  }
  st->engine = std::move(*eng);
  const auto& info = st->engine->info();
  cfg.n_ctx = info.n_ctx;
  cfg.n_vocab = std::min<int64_t>(info.n_vocab, st->tok->vocab_size());
  std::string base = o.model_path;
  while (!base.empty() && base.back() == '/') base.pop_back();
  if (auto s = base.find_last_of('/'); s != std::string::npos) base = base.substr(s + 1);
  cfg.model_name = !o.alias.empty() ? o.alias : (!base.empty() ? base : std::string("dsv4"));
  cfg.model_names = {cfg.model_name};
  if (!base.empty()) cfg.model_names.push_back(base);
  if (!o.model_path.empty()) cfg.model_names.push_back(o.model_path);
  runtime::SchedulerOptions so;
  so.n_batch = o.n_batch;
  so.max_queue = o.max_queue;
  st->sched = std::make_unique<runtime::Scheduler>(*st->engine, so);

  // HTTP.
  httplib::Server svr;
  const size_t max_threads = o.http_threads > 0 ? static_cast<size_t>(o.http_threads)
                                                : static_cast<size_t>(256 + 4 * o.n_parallel);
  svr.new_task_queue = [max_threads] { return new DynamicPool(max_threads); };
  svr.set_payload_max_length(o.limits.max_body_bytes);
  svr.set_read_timeout(read_timeout, 0);
  svr.set_write_timeout(o.timeout_s, 0);
  svr.set_keep_alive_timeout(5);
  svr.set_keep_alive_max_count(1000);
  install_routes(svr, *st);
  if (!svr.bind_to_port(o.host, o.port)) {
    fmt::print(stderr, "{}: cannot bind {}:{}\n", hooks.program, o.host, o.port);
    return 1;
  }
  fmt::print(stderr, "{}: model '{}' ({}), n_ctx {} per slot, {} slot(s), chat format {} (thinking {}), listening on http://{}:{}\n",
             hooks.program, cfg.model_name, info.description, info.n_ctx, info.n_slots,
             chat::revision_name(cfg.revision), cfg.default_thinking ? "on" : "off", o.host, o.port);
  std::thread listener([&svr] { svr.listen_after_bind(); });

  // Wait for SIGINT/SIGTERM.
  std::mutex sig_mu;
  std::condition_variable sig_cv;
  bool stop_requested = false;
  std::thread sig_thread([&, sigs] {  // the signal set by value: the thread may outlive this frame
    int n = 0;
    for (;;) {
      int sig = 0;
      if (sigwait(&sigs, &sig) != 0) continue;
      if (++n == 1) {
        fmt::print(stderr, "{}: signal {}: draining (a second signal exits at once)\n", hooks.program, sig);
        std::lock_guard lk(sig_mu);
        stop_requested = true;
        sig_cv.notify_all();
      } else {
        std::_Exit(130);
      }
    }
  });
  sig_thread.detach();
  {
    std::unique_lock lk(sig_mu);
    sig_cv.wait(lk, [&] { return stop_requested; });
  }

  // Drain: refuse new work, let in-flight requests finish within the grace period, then cancel
  // the rest with a terminal error event; stop HTTP; exit 0.
  st->draining = true;
  std::atomic<bool> drained{false};
  std::thread drainer([&] {
    st->sched->drain();
    drained = true;
  });
  const auto deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.drain_grace_s));
  while (!drained && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (!drained) {
    std::vector<std::pair<uint64_t, std::shared_ptr<Channel>>> act;
    {
      std::lock_guard lk(st->reg_mu);
      act.assign(st->active.begin(), st->active.end());
    }
    for (auto& [id, ch] : act) {
      ch->shutdown = true;
      st->sched->cancel(id);
    }
  }
  drainer.join();
  // Let handlers write their terminal events.
  const auto flush_deadline = Clock::now() + std::chrono::seconds(3);
  while (Clock::now() < flush_deadline) {
    bool idle;
    {
      std::lock_guard lk(st->reg_mu);
      idle = st->active.empty();
    }
    if (idle) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  svr.stop();
  listener.join();
  st->sched.reset();
  st->engine.reset();
  fmt::print(stderr, "{}: stopped\n", hooks.program);
  return 0;
}

}  // namespace dsv4::server
