#include "common/net.h"

#include <fmt/format.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace vitrine {

std::string listen_problem(const std::string& address) {
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) return fmt::format("'{}' is not host:port", address);
  std::string host = address.substr(0, colon);
  const std::string port = address.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  if (const int rc = getaddrinfo(host.empty() ? nullptr : host.c_str(), port.c_str(), &hints,
                                 &found);
      rc != 0) {
    return fmt::format("cannot resolve '{}': {}", address, gai_strerror(rc));
  }
  std::string problem;
  for (const addrinfo* a = found; a != nullptr; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd < 0) continue;
    const int yes = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    const bool bound = bind(fd, a->ai_addr, a->ai_addrlen) == 0;
    const int error = errno;
    close(fd);
    if (bound) {
      problem.clear();
      break;
    }
    problem = error == EADDRINUSE
                  ? fmt::format("port {} is in use by another process", port)
                  : fmt::format("{} ({})", std::strerror(error), address);
  }
  freeaddrinfo(found);
  return problem;
}

}  // namespace vitrine
