// Why a server cannot listen on an address, in words: gRPC's builder says
// only that it failed. Used by the programs' start-up errors.
#pragma once

#include <string>

namespace vitrine {

// Binds a probe socket to `address` ("host:port", "[v6]:port" or
// "0.0.0.0:port") the way a careful server does (SO_REUSEADDR, not
// SO_REUSEPORT) and closes it. Returns "" when that works, else the reason:
// "port 50061 is in use by another process", "cannot resolve host 'x'",
// or the system's words for anything else.
std::string listen_problem(const std::string& address);

}  // namespace vitrine
