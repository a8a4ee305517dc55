// Raw TCP to the gateway, for what httplib's client will not send: headers
// trickled a byte at a time, HTTP/1.0, request targets that are not UTF-8,
// chunked bodies of any size. Loopback only.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <string_view>

namespace vitrine::testing {

// One client connection to "127.0.0.1:<port>".
class RawConnection {
 public:
  explicit RawConnection(const std::string& address) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(std::stoi(address.substr(address.rfind(':') + 1))));
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~RawConnection() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool connected() const { return fd_ >= 0; }

  // Sends all of `bytes`; false when the peer has gone.
  bool send(std::string_view bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }

  // Closes the sending side, as clients that end their request with EOF do.
  void close_write() { ::shutdown(fd_, SHUT_WR); }

  // Reads until the peer closes (true) or `limit` passes (false); what came
  // is appended to received().
  bool read_until_closed(std::chrono::milliseconds limit) {
    const auto give_up = std::chrono::steady_clock::now() + limit;
    char buf[16384];
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          give_up - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return true;  // closed (or reset)
      received_.append(buf, static_cast<size_t>(n));
    }
  }

  // Reads until `needle` has arrived (true), the peer closed or `limit` passed.
  bool read_until(std::string_view needle, std::chrono::milliseconds limit) {
    const auto give_up = std::chrono::steady_clock::now() + limit;
    char buf[16384];
    while (received_.find(needle) == std::string::npos) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          give_up - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) return false;
      received_.append(buf, static_cast<size_t>(n));
    }
    return true;
  }

  const std::string& received() const { return received_; }
  // The status code of the response received, or 0.
  int status() const {
    if (received_.rfind("HTTP/1.", 0) != 0 || received_.size() < 12) return 0;
    return std::stoi(received_.substr(9, 3));
  }
  // The response's body (after the blank line), as received.
  std::string body() const {
    const size_t at = received_.find("\r\n\r\n");
    return at == std::string::npos ? "" : received_.substr(at + 4);
  }
  // The response's head (status line and headers).
  std::string head() const { return received_.substr(0, received_.find("\r\n\r\n") + 2); }

 private:
  int fd_ = -1;
  std::string received_;
};

// Sends `request` on a fresh connection and reads the answer until the
// gateway closes it (the request should say Connection: close).
inline std::string raw_exchange(const std::string& address, std::string_view request,
                                std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  RawConnection c(address);
  if (!c.connected() || !c.send(request)) return "";
  c.read_until_closed(limit);
  return c.received();
}

}  // namespace vitrine::testing
