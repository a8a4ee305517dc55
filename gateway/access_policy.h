// Who may use the gateway: the Host a request names, the Origin a browser
// sends, and the bearer token.
//
// Host: a page on attacker.example whose name is re-pointed at 127.0.0.1
// (DNS rebinding) makes the browser send same-origin requests to the
// gateway, with Host: attacker.example. Only the Host values listed in
// allowed_hosts (default: the listen port's loopback names) are served; an
// entry without a port allows any port. Origin: allowed when it is listed
// in cors_origins, is the request's own host, or names an allowed host;
// allowed origins get CORS headers, preflights echoing the headers asked
// for (the openai SDK sends X-Stainless-* ones). Tokens compare in
// constant time.
//
// Not goals: per-token permissions or quotas (the daemon's tokens do that).
#pragma once

#include <httplib.h>

#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/gateway_config.h"

namespace vitrine::gateway {

// host[:port] of a Host header or an origin: host lowercased (IPv6 in
// brackets), port 0 when not given.
struct Authority {
  std::string host;
  int port = 0;
};
std::optional<Authority> parse_authority(std::string_view text);

class AccessPolicy {
 public:
  // `tokens`: what clients must present (none: no authentication).
  AccessPolicy(const GatewayConfig& config, std::set<std::string> tokens);

  // May a request naming this Host be served?
  bool host_allowed(std::string_view host) const;
  // May a page from `origin` call the API, for a request to `host`?
  bool origin_allowed(std::string_view origin, std::string_view host) const;
  // Does this Authorization header carry a known token?
  bool authorized(std::string_view authorization) const;
  // The CORS headers for a request from an allowed origin (a preflight's
  // too); nothing without an Origin header.
  void add_cors_headers(const httplib::Request& req, httplib::Response& res) const;

 private:
  bool listed(const Authority& a, int default_port) const;

  bool any_host_ = false;
  std::vector<Authority> hosts_;
  bool any_origin_ = false;
  std::vector<std::string> origins_;
  std::set<std::string> tokens_;
};

}  // namespace vitrine::gateway
