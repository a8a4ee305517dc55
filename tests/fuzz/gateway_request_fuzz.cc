// Fuzz target: a request body of the gateway's POST endpoints through the
// mapping to the daemon's requests (gateway/openai_request.h):
// parse_chat_request, parse_compare_request and parse_feedback_request. The
// first byte picks the endpoint; the rest is the body.
//
// Documented errors: HttpError (400 naming the parameter, 404 for an unknown
// model). Properties of an accepted request, which the daemon would receive:
// its bytes parse again as the daemon parses them (protobuf refuses a string
// that is not UTF-8), the text is not empty (a blank one is the daemon's to
// refuse, with a 400 like any of its refusals), every earlier turn has a
// role, the settings are finite and in the documented ranges, and there are
// at most four stop sequences, none empty.
#include <cmath>
#include <string>

#include "gateway/openai_error.h"
#include "gateway/openai_request.h"
#include "tests/fuzz/fuzz_support.h"

using namespace vitrine;

namespace {

// What the daemon would parse from the bytes the gateway sends.
template <typename Message>
Message as_daemon_reads(const Message& sent) {
  std::string bytes;
  VITRINE_FUZZ_CHECK(sent.SerializeToString(&bytes), "an accepted request serializes");
  Message received;
  VITRINE_FUZZ_CHECK(received.ParseFromString(bytes), "the daemon can parse what it is sent");
  return received;
}

void check_ask(const gateway::ChatCall& call) {
  const v1::AskRequest r = as_daemon_reads(call.request);
  VITRINE_FUZZ_CHECK(!r.text().empty(), "the text is not empty");
  for (const v1::Turn& turn : r.history()) {
    VITRINE_FUZZ_CHECK(turn.role() != v1::Turn::ROLE_UNSPECIFIED, "every earlier turn has a role");
  }
  const v1::GenerationSettings& g = r.generation();
  VITRINE_FUZZ_CHECK(g.max_new_tokens() >= 0, "max_new_tokens is not negative");
  VITRINE_FUZZ_CHECK(std::isfinite(g.temperature()) && g.temperature() >= 0 &&
                         g.temperature() <= 2,
                     "temperature in 0..2");
  VITRINE_FUZZ_CHECK(std::isfinite(g.top_p()) && g.top_p() >= 0 && g.top_p() <= 1,
                     "top_p in 0..1");
  VITRINE_FUZZ_CHECK(call.stop.size() <= 4, "at most four stop sequences");
  for (const std::string& s : call.stop) VITRINE_FUZZ_CHECK(!s.empty(), "no empty stop");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view body = fuzz::as_text(data + 1, size - 1);
  try {
    switch (data[0] % 3) {
      case 0:
        check_ask(gateway::parse_chat_request(body));
        break;
      case 1:
        check_ask(gateway::parse_compare_request(body));
        break;
      default:
        as_daemon_reads(gateway::parse_feedback_request(body));
        break;
    }
  } catch (const gateway::HttpError&) {
    // refused with a status and a message: the documented outcome
  }
  return 0;
}
