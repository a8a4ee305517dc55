// The gateway's client connections, in front of httplib's request parsing
// and routing. httplib alone gives each connection a worker thread from
// accept to close, so a dozen clients trickling header bytes (slow loris)
// hold every worker and the health checks time out; and its chunked bodies
// have no size limit.
//
// Here one event-loop thread holds every open connection at once: it
// accepts, reads request heads (and bodies of a known, allowed length),
// keeps idle keep-alive connections, enforces the idle, header and body
// deadlines (408), and answers GET /healthz itself, so liveness probes pass
// even while every worker is busy. Worker threads get only requests whose
// head has arrived whole; they run httplib's process_request over a stream
// with the body deadline, a write timeout and a byte cap, then hand the
// connection back. At max_connections a new connection closes the one that
// has waited longest without a request being answered. Connections closed
// after an error first linger (write side shut, input drained for a
// moment), so the client reads the error instead of a reset.
//
// Not goals: TLS (terminate it at the Ingress), HTTP/2, pipelining beyond
// reading the next request after the current answer.
#pragma once

#include <httplib.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace vitrine::gateway {

struct FrontLimits {
  int threads = 8;                     // requests processed at once
  int max_connections = 256;           // open client connections
  double idle_timeout_seconds = 5;     // a kept-alive connection's wait for its next request
  double header_timeout_seconds = 10;  // a request's line and headers, from their first byte
  double body_timeout_seconds = 30;    // its body, from the end of its headers
  double write_timeout_seconds = 30;   // the longest a client may leave the answer unread
  int64_t max_body_bytes = 65536;      // bodies the loop reads ahead; the worker's byte cap
};

// What the connection loop has done, for the gateway's /metrics.
struct FrontStats {
  int open_connections = 0;  // wherever they are: waiting, in a worker, lingering
  uint64_t evicted = 0;      // closed at max_connections to make room
  uint64_t timed_out = 0;    // 408: head or body too slow
  uint64_t probes = 0;       // GET /healthz answered by the loop itself
};

class HttpFront : public httplib::Server {
 public:
  explicit HttpFront(FrontLimits limits);
  ~HttpFront() override;
  HttpFront(const HttpFront&) = delete;
  HttpFront& operator=(const HttpFront&) = delete;

  // Binds host:port (false when it cannot) and serves until shutdown().
  bool serve(const std::string& host, int port);
  // Makes serve() return: accepting stops, answers being written end at
  // their next piece, the other connections close. Safe from any thread,
  // before or during serve().
  void shutdown();

  FrontStats stats() const {
    return {.open_connections = open_.load(),
            .evicted = evicted_.load(),
            .timed_out = timed_out_.load(),
            .probes = probes_.load()};
  }

  // For handlers, about the connection of the request they answer: close
  // it once this response is written.
  static void close_after_response();
  // True when the request's body did not arrive within body_timeout_seconds.
  static bool body_timed_out();

  struct Connection;  // one client connection (http_front.cc)

 private:
  void loop_once();
  void read_from(Connection& c);
  void progress(std::unique_ptr<Connection>& c);
  void advance(std::unique_ptr<Connection>& c);
  void answer_probe(Connection& c, size_t head_size, bool close);
  void refuse(Connection& c, int status, const char* code, const std::string& message);
  void expire(std::unique_ptr<Connection>& c);
  void accept_new();
  bool evict_one();
  void take_returned();
  void work();
  bool answer(Connection& c);

  FrontLimits limits_;
  int wake_[2] = {-1, -1};  // a pipe: workers and shutdown() wake the loop
  std::atomic<bool> stopping_{false};
  std::atomic<int> open_{0};                          // connections open, wherever they are
  std::atomic<uint64_t> evicted_{0}, timed_out_{0}, probes_{0};
  std::vector<std::unique_ptr<Connection>> waiting_;  // the loop's alone

  std::mutex mutex_;  // guards ready_ and returned_
  std::condition_variable ready_cv_;
  std::deque<std::unique_ptr<Connection>> ready_;      // heads whole, for the workers
  std::vector<std::unique_ptr<Connection>> returned_;  // answered, for the loop
  std::vector<std::thread> workers_;
};

}  // namespace vitrine::gateway
