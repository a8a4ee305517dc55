// What the connection front needs of a request head before httplib parses
// it: where the head ends, the HTTP version, the body's framing, and
// whether it is a bare liveness probe the front answers itself.
//
// Not goals: validating the head (httplib does, and answers 400).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace vitrine::gateway {

struct RequestHead {
  size_t size = 0;  // bytes, the blank line included
  std::string method, target;
  bool http10 = false;
  bool connection_close = false;
  std::optional<uint64_t> content_length;  // absent, or not a plain number
  bool chunked = false;                    // any Transfer-Encoding
  bool expect_continue = false;

  // GET /healthz with no body: answered by the front itself.
  bool is_health_probe() const;
};

// The head at the start of `buffer`; nothing until its blank line has arrived.
std::optional<RequestHead> parse_request_head(std::string_view buffer);

}  // namespace vitrine::gateway
