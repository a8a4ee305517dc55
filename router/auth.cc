#include "router/auth.h"

#include <vector>

#include "common/text_file.h"

namespace vitrine::router {
namespace {

std::set<std::string> read_tokens(const std::string& path, const char* key) {
  if (path.empty()) return {};
  const std::vector<std::string> listed = read_token_file(path, key);
  return {listed.begin(), listed.end()};
}

}  // namespace

Authenticator::Authenticator(Tokens tokens) : tokens_(std::move(tokens)) {}

Authenticator Authenticator::from_config(const AuthConfig& auth) {
  return Authenticator(
      Tokens{.user = read_tokens(auth.user_tokens_file, "auth.user_tokens_file"),
             .admin = read_tokens(auth.admin_tokens_file, "auth.admin_tokens_file")});
}

Access Authenticator::access_of(std::string_view method) {
  return method == "ReloadAdapters" ? Access::kAdmin : Access::kUser;
}

grpc::Status Authenticator::check(const grpc::ServerContext& context,
                                  std::string_view method) const {
  if (!enabled()) return grpc::Status::OK;
  const auto& metadata = context.client_metadata();
  const auto it = metadata.find("authorization");
  if (it == metadata.end()) return check(std::nullopt, method);
  return check(std::string_view(it->second.data(), it->second.size()), method);
}

grpc::Status Authenticator::check(std::optional<std::string_view> authorization,
                                  std::string_view method) const {
  if (!enabled()) return grpc::Status::OK;
  if (!authorization) {
    return {grpc::StatusCode::UNAUTHENTICATED, "missing 'authorization: Bearer <token>'"};
  }
  constexpr std::string_view kBearer = "Bearer ";
  if (!authorization->starts_with(kBearer)) {
    return {grpc::StatusCode::UNAUTHENTICATED, "the authorization is not 'Bearer <token>'"};
  }
  const std::string token(authorization->substr(kBearer.size()));
  const bool admin = tokens_.admin.count(token) > 0;
  if (!admin && tokens_.user.count(token) == 0) {
    return {grpc::StatusCode::UNAUTHENTICATED, "unknown token"};
  }
  if (access_of(method) == Access::kAdmin && !admin) {
    return {grpc::StatusCode::PERMISSION_DENIED, "this call needs an admin token"};
  }
  return grpc::Status::OK;
}

}  // namespace vitrine::router
