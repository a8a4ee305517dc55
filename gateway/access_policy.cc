// Host allow-list, origins and tokens (see access_policy.h).
#include "gateway/access_policy.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <stdexcept>

#include "common/strings.h"

namespace vitrine::gateway {

namespace {

bool host_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '-' || c == '_';
}

bool ipv6_char(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == ':' ||
         c == '.';
}

// ":port" (or nothing: 0); -1 when malformed.
int port_of(std::string_view rest) {
  if (rest.empty()) return 0;
  if (rest.front() != ':' || rest.size() == 1 || rest.size() > 6) return -1;
  int port = 0;
  const auto [end, ec] = std::from_chars(rest.data() + 1, rest.data() + rest.size(), port);
  return ec == std::errc() && end == rest.data() + rest.size() && port >= 1 && port <= 65535 ? port
                                                                                             : -1;
}

// Constant-time equality, so a token cannot be guessed byte by byte from timings.
bool same_secret(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) {
    diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  }
  return diff == 0;
}

// A list of header names, as Access-Control-Request-Headers carries.
bool header_name_list(std::string_view s) {
  return !s.empty() && s.size() <= 2048 && std::all_of(s.begin(), s.end(), [](char c) {
    return host_char(c) || c == ',' || c == ' ';
  });
}

std::vector<Authority> default_hosts(const std::string& listen) {
  const size_t colon = listen.rfind(':');
  const std::string port = colon == std::string::npos ? "" : listen.substr(colon);
  std::vector<std::string> names = {"localhost", "127.0.0.1", "[::1]"};
  const std::string host = ascii_lower(listen.substr(0, colon == std::string::npos ? 0 : colon));
  if (!host.empty() && host != "0.0.0.0" && host != "[::]" && host != "::" &&
      std::find(names.begin(), names.end(), host) == names.end()) {
    names.push_back(host);  // a specific address: clients name it
  }
  std::vector<Authority> hosts;
  for (const std::string& name : names) {
    if (const auto a = parse_authority(name + port)) hosts.push_back(*a);
  }
  return hosts;
}

}  // namespace

std::optional<Authority> parse_authority(std::string_view text) {
  Authority a;
  std::string_view rest;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos || close < 2 ||
        !std::all_of(text.begin() + 1, text.begin() + close, ipv6_char)) {
      return std::nullopt;
    }
    a.host = ascii_lower(text.substr(0, close + 1));
    rest = text.substr(close + 1);
  } else {
    const size_t colon = text.find(':');
    std::string_view host = text.substr(0, colon);
    if (!host.empty() && host.back() == '.') host.remove_suffix(1);  // "localhost." is localhost
    if (host.empty() || !std::all_of(host.begin(), host.end(), host_char)) return std::nullopt;
    a.host = ascii_lower(host);
    rest = colon == std::string_view::npos ? std::string_view() : text.substr(colon);
  }
  a.port = port_of(rest);
  if (a.port < 0) return std::nullopt;
  return a;
}

AccessPolicy::AccessPolicy(const GatewayConfig& config, std::set<std::string> tokens)
    : tokens_(std::move(tokens)) {
  if (config.allowed_hosts.empty()) hosts_ = default_hosts(config.listen);
  for (const std::string& entry : config.allowed_hosts) {
    if (entry == "*") {
      any_host_ = true;
      continue;
    }
    const std::optional<Authority> a = parse_authority(entry);
    if (!a) {
      throw std::invalid_argument(fmt::format(
          "config key 'gateway.allowed_hosts': '{}' is not a host name or host:port", entry));
    }
    hosts_.push_back(*a);
  }
  for (const std::string& origin : config.cors_origins) {
    if (origin == "*") any_origin_ = true;
    origins_.push_back(ascii_lower(origin));
  }
}

bool AccessPolicy::listed(const Authority& a, int default_port) const {
  const int port = a.port != 0 ? a.port : default_port;
  return std::any_of(hosts_.begin(), hosts_.end(), [&](const Authority& h) {
    return h.host == a.host && (h.port == 0 || h.port == port);
  });
}

bool AccessPolicy::host_allowed(std::string_view host) const {
  if (any_host_) return true;
  const std::optional<Authority> a = parse_authority(host);
  return a && listed(*a, 80);
}

bool AccessPolicy::origin_allowed(std::string_view origin, std::string_view host) const {
  const std::string lower = ascii_lower(origin);
  if (any_origin_ || std::find(origins_.begin(), origins_.end(), lower) != origins_.end()) {
    return true;
  }
  int default_port = 0;
  std::string_view rest = lower;
  if (rest.starts_with("http://")) {
    default_port = 80;
  } else if (rest.starts_with("https://")) {
    default_port = 443;
  } else {
    return false;  // "null", file:, extensions...
  }
  rest.remove_prefix(rest.find("//") + 2);
  const std::optional<Authority> a = parse_authority(rest);
  if (!a) return false;
  // The request's own host: the gateway's page calling its API.
  const std::optional<Authority> h = parse_authority(host);
  const int port = a->port != 0 ? a->port : default_port;
  if (h && h->host == a->host && (h->port != 0 ? h->port : default_port) == port) return true;
  return !any_host_ && listed(*a, default_port);
}

bool AccessPolicy::authorized(std::string_view authorization) const {
  if (tokens_.empty()) return true;
  constexpr std::string_view kBearer = "bearer ";
  if (authorization.size() <= kBearer.size() ||
      !ascii_iequals(authorization.substr(0, kBearer.size()), kBearer)) {
    return false;
  }
  const std::string_view token = authorization.substr(kBearer.size());
  bool known = false;
  for (const std::string& t : tokens_) known |= same_secret(t, token);
  return known;
}

void AccessPolicy::add_cors_headers(const httplib::Request& req, httplib::Response& res) const {
  if (!req.has_header("Origin")) return;
  res.set_header("Access-Control-Allow-Origin", any_origin_ ? "*" : req.get_header_value("Origin"));
  if (req.method != "OPTIONS") {
    if (!any_origin_) res.set_header("Vary", "Origin");
    return;
  }
  const std::string asked = req.get_header_value("Access-Control-Request-Headers");
  res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
  res.set_header("Access-Control-Allow-Headers",
                 header_name_list(asked) ? asked : "Authorization, Content-Type");
  res.set_header("Access-Control-Max-Age", "600");
  res.set_header("Vary", "Origin, Access-Control-Request-Headers");
}

}  // namespace vitrine::gateway
