// Request bodies of the gateway's endpoints -> the daemon's requests, with
// every parameter's type and range checked before anything is sent: a
// mistyped or unimplemented parameter gets a 400 that names it (OpenAI's
// error "param"), never a 500 or a silent default.
//
// A chat completion is answered from its last message, which must be the
// user's; the messages before it are the daemon's history at the same
// indices (system and developer messages as system turns); `model` picks
// the route. Implemented: max_completion_tokens / max_tokens (integers >= 1;
// past int32 clamped to its largest value, the daemon clamps to its own
// limit), temperature (0..2), top_p (0..1), seed (an integer), user, stream,
// stream_options.include_usage, stop (a string or up to 4; the gateway cuts
// the answer there). Refused unless harmless: tools, tool_choice, functions,
// function_call, response_format other than text, logprobs, top_logprobs,
// n > 1, frequency and presence penalties, logit_bias, content parts other
// than text. null means "not given", as in OpenAI's API; other keys are
// ignored.
//
// Not goals: tool calls, images and audio in content parts.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "vitrine/v1/chat.pb.h"

namespace vitrine::gateway {

// Model names, in /v1/models order, and the route each stands for.
const std::vector<std::pair<std::string, v1::Route>>& model_routes();

// What a chat completion (or a comparison) asks of the daemon.
struct ChatCall {
  v1::AskRequest request;
  std::string model;
  bool stream = false;
  bool include_usage = false;
  std::vector<std::string> stop;  // the answer ends before the first of these
};

// POST /v1/chat/completions. Throws HttpError: 400 naming the parameter,
// 404 model_not_found.
ChatCall parse_chat_request(std::string_view body);

// POST /v1/compare: {"text", "model", "max_tokens", "temperature", "seed"}.
ChatCall parse_compare_request(std::string_view body);

// POST /v1/feedback: {"response_id", "rating" (1 or -1), "comment"}.
v1::FeedbackRequest parse_feedback_request(std::string_view body);

}  // namespace vitrine::gateway
