// One streamed chat completion: the daemon's AskStream turned into
// chat.completion.chunk server-sent events ending in `data: [DONE]`.
//
// The stream is opened, and its first event awaited, before any byte goes
// to the client: a daemon that refuses the request or cannot be reached
// becomes the HTTP status (400, 503, ...) instead of a 200 followed by an
// error event that SDKs and proxies take for success. Once the 200 has
// gone, a failure travels as an error event, as OpenAI's servers do.
// Stop sequences cut the text (stop_sequences.h); the daemon's request is
// cancelled as soon as one is seen, and so is it when the client leaves.
//
// Not goals: several choices, the daemon's usage and "vitrine" figures for
// an answer cut by a stop sequence (the daemon never finishes it: usage is
// null then).
#pragma once

#include <grpcpp/grpcpp.h>

#include <functional>
#include <memory>
#include <string>

#include "gateway/openai_request.h"
#include "gateway/openai_response.h"
#include "gateway/stop_sequences.h"
#include "vitrine/v1/chat.grpc.pb.h"

namespace vitrine::gateway {

class ChatStream {
 public:
  // Opens the daemon's stream with a context `prepare` sets up (deadline,
  // token) and reads its first event. Throws HttpError with the daemon's
  // status when the stream ends before sending anything.
  ChatStream(v1::ChatService::Stub& stub, ChatCall call,
             const std::function<void(grpc::ClientContext&)>& prepare);
  // Cancels the daemon's request if it is still running.
  ~ChatStream();
  ChatStream(const ChatStream&) = delete;
  ChatStream& operator=(const ChatStream&) = delete;

  // Sets `out` to the next bytes of the event stream (waiting for the
  // daemon's next event); false when they are the last.
  bool next(std::string& out);
  // The client went away: cancels the daemon's request.
  void cancel() { context_.TryCancel(); }

 private:
  bool on_text(const std::string& text, std::string& out);
  void on_answer(const v1::AskResponse& answer, std::string& out);
  void on_end_without_answer(std::string& out);
  void end_stopped(std::string& out);
  void finish_reader();

  ChatCall call_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<v1::AskStreamEvent>> reader_;
  v1::AskStreamEvent event_;
  bool has_event_ = false;  // event_ holds an event not yet relayed
  bool opened_ = false;     // the assistant's role chunk has been sent
  bool finished_ = false;   // the reader's status has been taken
  ChunkWriter chunks_;
  StopCutter cutter_;
  std::string utf8_carry_;  // the start of a character split across events
};

}  // namespace vitrine::gateway
