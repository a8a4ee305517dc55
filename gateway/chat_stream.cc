// The daemon's AskStream as chat.completion.chunk events (see chat_stream.h).
#include "gateway/chat_stream.h"

#include "gateway/openai_error.h"

namespace vitrine::gateway {

using Json = nlohmann::json;

ChatStream::ChatStream(v1::ChatService::Stub& stub, ChatCall call,
                       const std::function<void(grpc::ClientContext&)>& prepare)
    : call_(std::move(call)), chunks_(call_.model), cutter_(call_.stop) {
  prepare(context_);
  reader_ = stub.AskStream(&context_, call_.request);
  has_event_ = reader_->Read(&event_);
  if (!has_event_) {
    const grpc::Status s = reader_->Finish();
    finished_ = true;
    throw s.ok() ? HttpError{500, "the daemon ended without an answer", "api_error", "internal"}
                 : error_of(s);
  }
}

ChatStream::~ChatStream() {
  if (finished_) return;
  context_.TryCancel();
  finish_reader();
}

void ChatStream::finish_reader() {
  v1::AskStreamEvent rest;
  while (reader_->Read(&rest)) {
  }
  reader_->Finish();
  finished_ = true;
}

bool ChatStream::next(std::string& out) {
  out.clear();
  if (finished_) return false;
  if (!opened_) {
    opened_ = true;
    out = sse_event(chunks_.chunk({{"role", "assistant"}, {"content", ""}}, nullptr));
  }
  if (!has_event_) has_event_ = reader_->Read(&event_);
  if (!has_event_) {
    on_end_without_answer(out);
    return false;
  }
  has_event_ = false;
  if (event_.has_answer()) {
    on_answer(event_.answer(), out);
    return false;
  }
  return on_text(event_.text(), out);
}

bool ChatStream::on_text(const std::string& text, std::string& out) {
  std::string piece = std::move(utf8_carry_) + text;
  const size_t whole = complete_utf8_prefix(piece);
  utf8_carry_ = piece.substr(whole);
  piece.resize(whole);
  const std::string visible = cutter_.push(piece);
  if (!visible.empty()) out += sse_event(chunks_.chunk({{"content", visible}}, nullptr));
  if (!cutter_.stopped()) return true;
  end_stopped(out);
  return false;
}

void ChatStream::end_stopped(std::string& out) {
  context_.TryCancel();  // the rest of the answer is not wanted
  out += sse_event(chunks_.chunk(Json::object(), "stop"));
  if (call_.include_usage) out += sse_event(chunks_.usage_chunk(nullptr));
  out += kSseDone;
  finish_reader();
}

void ChatStream::on_answer(const v1::AskResponse& answer, std::string& out) {
  std::string rest = cutter_.push(std::exchange(utf8_carry_, std::string()));
  if (cutter_.stopped()) {
    if (!rest.empty()) out += sse_event(chunks_.chunk({{"content", rest}}, nullptr));
    end_stopped(out);
    return;
  }
  rest += cutter_.finish();
  if (!rest.empty()) out += sse_event(chunks_.chunk({{"content", rest}}, nullptr));
  Json last = chunks_.chunk(Json::object(), finish_reason_of(answer.finish_reason()));
  last["vitrine"] = vitrine_of(answer);
  if (call_.include_usage) last["usage"] = nullptr;
  out += sse_event(last);
  if (call_.include_usage) out += sse_event(chunks_.usage_chunk(usage_of(answer)));
  out += kSseDone;
  finish_reader();
}

void ChatStream::on_end_without_answer(std::string& out) {
  const grpc::Status s = reader_->Finish();
  finished_ = true;
  const HttpError e =
      s.ok() ? HttpError{500, "the daemon ended without an answer", "api_error", "internal"}
             : error_of(s);
  // The 200 has gone: the error travels as an event, as OpenAI's servers do.
  out += sse_event(error_json(e));
  out += kSseDone;
}

}  // namespace vitrine::gateway
