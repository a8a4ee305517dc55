// A request head's extent, version and body framing (see http_head.h).
#include "gateway/http_head.h"

#include <charconv>

#include "common/strings.h"

namespace vitrine::gateway {

namespace {

// Case-insensitive "does the comma-separated list hold `word`".
bool has_token(std::string_view list, std::string_view word) {
  while (!list.empty()) {
    const size_t comma = list.find(',');
    if (ascii_iequals(trim(list.substr(0, comma)), word)) return true;
    if (comma == std::string_view::npos) break;
    list.remove_prefix(comma + 1);
  }
  return false;
}

void read_header(std::string_view name, std::string_view value, RequestHead& head) {
  if (ascii_iequals(name, "Content-Length")) {
    uint64_t n = 0;
    const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
    if (ec == std::errc() && end == value.data() + value.size() && !value.empty()) {
      head.content_length = n;
    }
  } else if (ascii_iequals(name, "Transfer-Encoding")) {
    head.chunked = true;
  } else if (ascii_iequals(name, "Expect")) {
    head.expect_continue = ascii_iequals(value, "100-continue");
  } else if (ascii_iequals(name, "Connection")) {
    head.connection_close = has_token(value, "close");
  }
}

}  // namespace

bool RequestHead::is_health_probe() const {
  const std::string_view path = std::string_view(target).substr(0, target.find('?'));
  return method == "GET" && path == "/healthz" && !chunked && content_length.value_or(0) == 0;
}

std::optional<RequestHead> parse_request_head(std::string_view buffer) {
  const size_t end = buffer.find("\r\n\r\n");
  if (end == std::string_view::npos) return std::nullopt;
  RequestHead head;
  head.size = end + 4;
  std::string_view rest = buffer.substr(0, end + 2);
  const size_t line_end = rest.find("\r\n");
  const std::string_view line = rest.substr(0, line_end);
  rest.remove_prefix(line_end + 2);
  // "METHOD TARGET VERSION"
  const size_t a = line.find(' '), b = line.rfind(' ');
  if (a != std::string_view::npos && b > a) {
    head.method = line.substr(0, a);
    head.target = line.substr(a + 1, b - a - 1);
    head.http10 = line.substr(b + 1) == "HTTP/1.0";
  }
  while (!rest.empty()) {
    const size_t eol = rest.find("\r\n");
    const std::string_view header = rest.substr(0, eol);
    rest.remove_prefix(eol + 2);
    const size_t colon = header.find(':');
    if (colon == std::string_view::npos) continue;
    read_header(trim(header.substr(0, colon)), trim(header.substr(colon + 1)), head);
  }
  return head;
}

}  // namespace vitrine::gateway
