// Bearer-token authentication for vitrine.v1.ChatService, in one place: the
// token sets, the parsing of "authorization: Bearer <token>" and which
// methods need an admin token. ChatService's one admission step calls
// check() first, for every method; no handler looks at tokens itself.
//
// Why not gRPC's own hooks: in gRPC 1.51 an AuthMetadataProcessor runs only
// with secure (TLS) server credentials (InsecureServerCredentials refuses
// one), and a server interceptor cannot end a call before its handler runs
// (Hijack is for client calls only). The daemon serves plaintext too, so
// neither can enforce tokens for every server.
//
// With both token sets empty there is no authentication: every call passes.
// Not goals: per-user quotas, token expiry, reloading the token files
// while serving (restart the pod).
#pragma once

#include <grpcpp/server_context.h>
#include <grpcpp/support/status.h>

#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "router/router_config.h"

namespace vitrine::router {

// What a method needs.
enum class Access {
  kUser,   // a user or an admin token
  kAdmin,  // an admin token
};

// Bearer tokens; both sets empty = no authentication.
struct Tokens {
  std::set<std::string> user;
  std::set<std::string> admin;  // also valid wherever a user token is
};

class Authenticator {
 public:
  explicit Authenticator(Tokens tokens = {});
  // The token files `auth` names (none: no authentication). Throws
  // std::runtime_error naming the key and path of a file it cannot read.
  static Authenticator from_config(const AuthConfig& auth);

  bool enabled() const { return !tokens_.user.empty() || !tokens_.admin.empty(); }

  // The access a ChatService method ("Ask", "ReloadAdapters") needs:
  // ReloadAdapters an admin token, every other method a user token.
  static Access access_of(std::string_view method);

  // OK when the call's "authorization" metadata allows `method`;
  // UNAUTHENTICATED for no, a malformed or an unknown token;
  // PERMISSION_DENIED for a user token on an admin method.
  grpc::Status check(const grpc::ServerContext& context, std::string_view method) const;
  // The same for the header's value (nullopt: no header).
  grpc::Status check(std::optional<std::string_view> authorization, std::string_view method) const;

 private:
  Tokens tokens_;
};

}  // namespace vitrine::router
