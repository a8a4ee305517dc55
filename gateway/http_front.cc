// The connection front: one event loop for every connection, workers for
// requests whose head has arrived (see http_front.h).
#include "gateway/http_front.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <fmt/format.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>

#include "gateway/http_head.h"

namespace vitrine::gateway {

namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxHeadBytes = 16 * 1024;  // request line and headers; past it: 431
constexpr int kMaxRequestsPerConnection = 100;
constexpr int kAcceptsPerTurn = 64;                     // then the loop serves the others
constexpr auto kTick = std::chrono::milliseconds(100);  // deadline resolution
constexpr auto kLingerTime = std::chrono::seconds(1);   // draining a refused client's input
constexpr size_t kLingerBytes = 1 << 20;
constexpr int kListenBacklog = 512;

Clock::duration seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

int millis_until(Clock::time_point t) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(t - Clock::now());
  return static_cast<int>(std::clamp<int64_t>(left.count(), 0, 1000));
}

void address_of(int fd, bool peer, std::string& ip, int& port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  const int rc = peer ? getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len)
                      : getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  if (rc != 0) return;
  char text[INET6_ADDRSTRLEN] = "";
  if (addr.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &a->sin_addr, text, sizeof text);
    port = ntohs(a->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof text);
    port = ntohs(a->sin6_port);
  }
  ip = text;
}

// A small response written at once from the loop (the socket does not
// block; a short write is not retried: the connection closes anyway).
void write_now(int fd, const std::string& bytes) {
  [[maybe_unused]] const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
}

std::string error_response(int status, const char* reason, const char* code,
                           const std::string& message, bool close) {
  const std::string body = fmt::format(
      R"({{"error":{{"message":"{}","type":"invalid_request_error","param":null,"code":"{}"}}}})",
      message, code);
  return fmt::format(
      "HTTP/1.1 {} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n{}", status,
      reason, body.size(), close ? "Connection: close\r\n" : "", body);
}

}  // namespace

struct HttpFront::Connection {
  enum class State {
    kIdle,    // waiting for a request's first byte
    kHead,    // reading a request line and headers
    kBody,    // the head is whole; a body of known length is read ahead (awaited)
    kLinger,  // closing: write side shut, input drained
  };

  Connection(int socket, std::atomic<int>& open) : fd(socket), open_count(open) { ++open_count; }
  ~Connection() {
    ::close(fd);
    --open_count;
  }

  int fd;
  std::atomic<int>& open_count;
  State state = State::kIdle;
  Clock::time_point since;          // the state's start (kHead: the head's first byte)
  Clock::time_point body_deadline;  // the body's, from the end of the head
  std::string buffer;               // received, not yet consumed
  size_t awaited = 0;               // kBody: head and body bytes to have (0: go now)
  size_t lingered = 0;              // kLinger: bytes drained
  int requests = 0;
  bool http10 = false;       // the request being answered is HTTP/1.0
  bool close_after = false;  // close once the answer is written
  bool body_timed_out = false;
  bool peer_closed = false;  // the client closed its side (or the socket broke)
  std::string remote_ip, local_ip;
  int remote_port = 0, local_port = 0;
};

namespace {

thread_local HttpFront::Connection* t_current = nullptr;

// httplib's view of a connection while a worker answers on it: reads
// come from what the loop buffered, then from the socket until the body
// deadline and at most a byte cap; writes wait at most the write timeout.
class ConnectionStream final : public httplib::Stream {
 public:
  ConnectionStream(HttpFront::Connection& c, const FrontLimits& limits)
      : c_(c),
        write_timeout_ms_(static_cast<int>(limits.write_timeout_seconds * 1000)),
        // Chunk framing and headers never need more than this for a body
        // within the limit; the handler's own count stops the body itself.
        read_cap_(static_cast<size_t>(limits.max_body_bytes) * 2 + kMaxHeadBytes + 65536) {}

  bool is_readable() const override { return !c_.buffer.empty() || wait(POLLIN, 0); }
  bool is_writable() const override { return wait(POLLOUT, write_timeout_ms_); }

  ssize_t read(char* ptr, size_t size) override {
    while (c_.buffer.empty()) {
      if (read_ >= read_cap_) return -1;
      if (Clock::now() >= c_.body_deadline) {
        c_.body_timed_out = true;
        return -1;
      }
      if (!wait(POLLIN, millis_until(c_.body_deadline))) continue;
      char chunk[16384];
      const ssize_t n = ::recv(c_.fd, chunk, sizeof chunk, 0);
      if (n == 0) return 0;
      if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
        return -1;
      }
      read_ += static_cast<size_t>(n);
      c_.buffer.append(chunk, static_cast<size_t>(n));
    }
    const size_t n = std::min(size, c_.buffer.size());
    std::memcpy(ptr, c_.buffer.data(), n);
    c_.buffer.erase(0, n);
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    size_t sent = 0;
    while (sent < size) {
      const ssize_t n = ::send(c_.fd, ptr + sent, size - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<size_t>(n);
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        if (!wait(POLLOUT, write_timeout_ms_)) return -1;  // the client reads nothing
      } else if (!(n < 0 && errno == EINTR)) {
        return -1;
      }
    }
    return static_cast<ssize_t>(size);
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    ip = c_.remote_ip;
    port = c_.remote_port;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    ip = c_.local_ip;
    port = c_.local_port;
  }
  socket_t socket() const override { return c_.fd; }

 private:
  // True when the socket is ready for `events` within `ms`, and not broken.
  bool wait(short events, int ms) const {
    pollfd p{c_.fd, events, 0};
    const int rc = ::poll(&p, 1, ms);
    return rc > 0 && !(p.revents & (POLLERR | POLLNVAL)) &&
           !((events & POLLOUT) && (p.revents & POLLHUP));
  }

  HttpFront::Connection& c_;
  int write_timeout_ms_;
  size_t read_cap_;
  size_t read_ = 0;
};

}  // namespace

HttpFront::HttpFront(FrontLimits limits) : limits_(limits) {
  if (::pipe2(wake_, O_NONBLOCK | O_CLOEXEC) != 0) throw std::runtime_error("pipe2 failed");
  // What httplib's Keep-Alive header announces; the loop enforces it.
  set_keep_alive_max_count(kMaxRequestsPerConnection);
  set_keep_alive_timeout(static_cast<time_t>(std::max(1.0, limits_.idle_timeout_seconds)));
  // SO_REUSEADDR only: httplib's default SO_REUSEPORT would let a second
  // gateway bind the same port and silently take half the connections.
  set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  // Connections whose answer was an error close: what is left of their
  // request (an unread body, a broken framing) must not be read as the next.
  set_post_routing_handler([](const httplib::Request& req, httplib::Response& res) {
    Connection* c = t_current;
    if (c == nullptr) return;
    const bool has_body =
        req.has_header("Transfer-Encoding") ||
        (req.has_header("Content-Length") && req.get_header_value("Content-Length") != "0");
    if (res.status >= 400 && (has_body || res.status == 400 || res.status == 408 ||
                              res.status == 414 || res.status == 431)) {
      c->close_after = true;
    }
    if (c->close_after) {
      res.headers.erase("Keep-Alive");
      res.headers.erase("Connection");
      res.set_header("Connection", "close");
    }
  });
}

HttpFront::~HttpFront() {
  shutdown();
  for (int fd : wake_) ::close(fd);
}

void HttpFront::close_after_response() {
  if (t_current != nullptr) t_current->close_after = true;
}

bool HttpFront::body_timed_out() {
  return t_current != nullptr && t_current->body_timed_out;
}

void HttpFront::shutdown() {
  stopping_ = true;
  const char byte = 1;
  [[maybe_unused]] const ssize_t n = ::write(wake_[1], &byte, 1);
}

bool HttpFront::serve(const std::string& host, int port) {
  if (!bind_to_port(host, port)) return false;
  ::listen(svr_sock_, kListenBacklog);  // httplib's backlog is 5
  ::fcntl(svr_sock_, F_SETFL, ::fcntl(svr_sock_, F_GETFL) | O_NONBLOCK);
  for (int i = 0; i < limits_.threads; ++i) workers_.emplace_back([this] { work(); });
  while (!stopping_) loop_once();
  // Closing the listening socket is also what httplib's content providers
  // check between pieces: streams in flight end at their next one.
  ::close(svr_sock_.exchange(INVALID_SOCKET));
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ready_.clear();
  }
  ready_cv_.notify_all();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
  waiting_.clear();
  std::lock_guard<std::mutex> lock(mutex_);
  returned_.clear();
  return true;
}

void HttpFront::loop_once() {
  std::vector<pollfd> fds = {{svr_sock_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
  for (const auto& c : waiting_) {
    fds.push_back({c->fd, static_cast<short>(c->peer_closed ? 0 : POLLIN), 0});
  }
  ::poll(fds.data(), fds.size(), static_cast<int>(kTick.count()));
  for (size_t i = 0; i < waiting_.size(); ++i) {
    if (fds[i + 2].revents == 0) continue;
    read_from(*waiting_[i]);
    progress(waiting_[i]);
  }
  for (auto& c : waiting_) {
    if (c != nullptr) expire(c);
  }
  std::erase(waiting_, nullptr);
  if (fds[1].revents != 0) {
    char drain[64];
    while (::read(wake_[0], drain, sizeof drain) > 0) {
    }
    take_returned();
  }
  if (fds[0].revents != 0) accept_new();
}

// Reads what has arrived, noting a client that closed its side.
void HttpFront::read_from(Connection& c) {
  char chunk[16384];
  for (size_t total = 0; total < 4 * sizeof chunk;) {
    const ssize_t n = ::recv(c.fd, chunk, sizeof chunk, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {  // closed or broken: what came may still be a request
      c.peer_closed = true;
      return;
    }
    total += static_cast<size_t>(n);
    if (c.state == Connection::State::kLinger) {
      c.lingered += static_cast<size_t>(n);
      continue;
    }
    if (c.state == Connection::State::kIdle) {
      c.state = Connection::State::kHead;
      c.since = Clock::now();
    }
    c.buffer.append(chunk, static_cast<size_t>(n));
  }
}

// Moves a connection on once its head (and a short body) is whole: to a
// worker, or answered here (GET /healthz, as many as are pipelined; a head
// too large). A client that closed its side and has no whole request left
// is closed.
void HttpFront::progress(std::unique_ptr<Connection>& c) {
  advance(c);
  if (c != nullptr && c->peer_closed) {
    c->state = Connection::State::kLinger;
    c->since = Clock::now() - kLingerTime;  // nothing to wait for: expire() closes it
  }
}

void HttpFront::advance(std::unique_ptr<Connection>& c) {
  using State = Connection::State;
  while (c->state != State::kBody) {
    if (c->state == State::kLinger) return;
    if (c->state == State::kIdle) {
      if (c->buffer.empty()) return;
      c->state = State::kHead;  // pipelined: the next head is here already
      c->since = Clock::now();
    }
    const std::optional<RequestHead> head = parse_request_head(c->buffer);
    if (!head || head->size > kMaxHeadBytes) {
      if (c->buffer.size() > kMaxHeadBytes) {
        refuse(*c, 431, "request_header_fields_too_large",
               fmt::format("the request line and headers exceed {} bytes", kMaxHeadBytes));
      }
      return;
    }
    if (head->is_health_probe()) {
      answer_probe(*c, head->size, head->http10 || head->connection_close);
      continue;
    }
    c->http10 = head->http10;
    c->body_deadline = Clock::now() + seconds(limits_.body_timeout_seconds);
    // A body of known, allowed length is read here too; the rest (chunked,
    // 100-continue, over the limit) is the worker's, with the deadline.
    c->awaited = 0;
    if (head->content_length && !head->chunked && !head->expect_continue &&
        *head->content_length <= static_cast<uint64_t>(limits_.max_body_bytes)) {
      c->awaited = head->size + static_cast<size_t>(*head->content_length);
    }
    c->state = State::kBody;
  }
  if (c->buffer.size() < c->awaited) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ready_.push_back(std::move(c));  // leaves a null in waiting_
  }
  ready_cv_.notify_one();
}

void HttpFront::answer_probe(Connection& c, size_t head_size, bool close) {
  ++probes_;
  write_now(c.fd, fmt::format("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                              "Content-Length: 3\r\n{}\r\nok\n",
                              close ? "Connection: close\r\n" : ""));
  c.buffer.erase(0, head_size);
  if (close) {
    refuse(c, 0, "", "");  // nothing more to say: linger and close
    return;
  }
  c.state = Connection::State::kIdle;
  c.since = Clock::now();
}

// Writes an error (status 0: none) and starts closing.
void HttpFront::refuse(Connection& c, int status, const char* code, const std::string& message) {
  if (status != 0) {
    const char* reason = status == 408   ? "Request Timeout"
                         : status == 431 ? "Request Header Fields Too Large"
                                         : "Service Unavailable";
    write_now(c.fd, error_response(status, reason, code, message, /*close=*/true));
  }
  ::shutdown(c.fd, SHUT_WR);
  c.state = Connection::State::kLinger;
  c.since = Clock::now();
  c.buffer.clear();
}

// Applies the deadlines: idle connections close, slow heads and bodies get
// 408, lingering ones end.
void HttpFront::expire(std::unique_ptr<Connection>& c) {
  using State = Connection::State;
  const Clock::time_point now = Clock::now();
  switch (c->state) {
    case State::kIdle:
      if (now - c->since >= seconds(limits_.idle_timeout_seconds)) c.reset();
      break;
    case State::kHead:
      if (now - c->since >= seconds(limits_.header_timeout_seconds)) {
        ++timed_out_;
        refuse(*c, 408, "request_timeout",
               fmt::format("the request's headers did not arrive within {} s",
                           limits_.header_timeout_seconds));
      }
      break;
    case State::kBody:
      if (now >= c->body_deadline) {
        ++timed_out_;
        refuse(*c, 408, "request_timeout",
               fmt::format("the request's body did not arrive within {} s",
                           limits_.body_timeout_seconds));
      }
      break;
    case State::kLinger:
      if (now - c->since >= kLingerTime || c->lingered > kLingerBytes) c.reset();
      break;
  }
}

void HttpFront::accept_new() {
  for (int i = 0; i < kAcceptsPerTurn; ++i) {
    const int fd = ::accept4(svr_sock_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      // Out of descriptors: free one, or the listening socket stays
      // readable and the loop spins.
      if ((errno == EMFILE || errno == ENFILE) && !evict_one()) {
        std::this_thread::sleep_for(kTick);
      }
      return;  // none left, or the next turn retries
    }
    if (open_ >= limits_.max_connections && !evict_one()) {
      // Every connection is being answered or waits for a worker.
      write_now(fd, error_response(503, "Service Unavailable", "overloaded",
                                   "the gateway is at its connection limit: retry shortly", true));
      ::close(fd);
      continue;
    }
    int yes = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &yes, sizeof yes);
    auto c = std::make_unique<Connection>(fd, open_);
    c->since = Clock::now();
    address_of(fd, /*peer=*/true, c->remote_ip, c->remote_port);
    address_of(fd, /*peer=*/false, c->local_ip, c->local_port);
    waiting_.push_back(std::move(c));
  }
}

// Closes the connection that has waited longest without being answered
// (lingering ones first); false when every connection is with the workers.
bool HttpFront::evict_one() {
  auto oldest = waiting_.end();
  for (auto it = waiting_.begin(); it != waiting_.end(); ++it) {
    if (*it == nullptr) continue;
    auto rank = [](const Connection& c) {
      return std::make_pair(c.state != Connection::State::kLinger, c.since);
    };
    if (oldest == waiting_.end() || rank(**it) < rank(**oldest)) oldest = it;
  }
  if (oldest == waiting_.end()) return false;
  waiting_.erase(oldest);
  ++evicted_;
  return true;
}

void HttpFront::take_returned() {
  std::vector<std::unique_ptr<Connection>> back;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    back.swap(returned_);
  }
  for (auto& c : back) {
    if (c->close_after) {
      refuse(*c, 0, "", "");
    } else {
      c->state = Connection::State::kIdle;
      c->since = Clock::now();
    }
    waiting_.push_back(std::move(c));
    progress(waiting_.back());
  }
  std::erase(waiting_, nullptr);
}

void HttpFront::work() {
  for (;;) {
    std::unique_ptr<Connection> c;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      ready_cv_.wait(lock, [&] { return stopping_ || !ready_.empty(); });
      if (stopping_) return;
      c = std::move(ready_.front());
      ready_.pop_front();
    }
    c->close_after = !answer(*c);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      returned_.push_back(std::move(c));
    }
    const char byte = 1;
    [[maybe_unused]] const ssize_t n = ::write(wake_[1], &byte, 1);
  }
}

// One request on `c`, by httplib; true when the connection may be kept.
bool HttpFront::answer(Connection& c) {
  t_current = &c;
  c.close_after = false;
  c.body_timed_out = false;
  if (c.awaited == 0) {  // the body was not read ahead: its time starts now
    c.body_deadline = Clock::now() + seconds(limits_.body_timeout_seconds);
  }
  const bool close = c.http10 || ++c.requests >= kMaxRequestsPerConnection || stopping_;
  ConnectionStream stream(c, limits_);
  bool connection_closed = false;
  bool written = false;
  try {
    written = process_request(stream, close, connection_closed, nullptr);
  } catch (...) {  // a handler's exception is already an answer; this is anything else
    written = false;
  }
  t_current = nullptr;
  return written && !close && !connection_closed && !c.close_after && !stopping_;
}

}  // namespace vitrine::gateway
