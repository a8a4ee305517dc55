// OpenAI's `stop`: the answer ends just before a stop sequence, which is not
// part of it — the one completed first, as a generator checking its text
// after every token stops (of two completed by the same character, the
// longer). Streamed or whole, the same text is kept. The daemon knows
// nothing of them, so the gateway cuts the text it relays: a whole answer at
// once, a streamed one as its pieces arrive — holding back a tail that may
// be the start of a stop sequence split across pieces, so nothing of a stop
// sequence is ever sent.
//
// Not goals: token-level stops (the daemon's generation runs on until the
// gateway cancels it), regular expressions.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace vitrine::gateway {

// Cuts `text` before the stop sequence completed first; true when one occurs.
bool cut_at_stop(std::string& text, const std::vector<std::string>& stops);

// Streamed text in, text safe to send out.
class StopCutter {
 public:
  explicit StopCutter(std::vector<std::string> stops);

  // Takes the next piece; returns what may be sent now. Once a stop
  // sequence has been seen, stopped() is true and every piece returns "".
  std::string push(std::string_view piece);
  // The text held back, once the stream has ended without a stop.
  std::string finish();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string pending_;  // held back: a suffix that begins some stop sequence
  bool stopped_ = false;
};

// The length of the longest prefix of `text` that does not end inside a
// UTF-8 sequence, so a character split across pieces is sent whole.
size_t complete_utf8_prefix(std::string_view text);

}  // namespace vitrine::gateway
